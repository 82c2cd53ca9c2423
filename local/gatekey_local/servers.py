"""Processes the local tools start: moto's server, on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoNotStarted(RuntimeError):
    """moto's server did not start (its own reason, if any, is on stderr)."""


@contextlib.contextmanager
def moto_server(state: Path | None = None) -> Iterator[str]:
    """moto's server on a free port; with `state`, its state is loaded from and saved to that
    file (gatekey_local.moto_state). Its errors go to this process's stderr."""
    port = free_port()
    command = [sys.executable, "-m", "gatekey_local.moto_serial", "127.0.0.1", str(port)]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, *([str(state)] if state is not None else [])],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None:
                raise MotoNotStarted("moto's server exited at start")
            time.sleep(0.05)
        else:
            raise MotoNotStarted("moto's server did not start within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
