"""`make interop`: Gatekey against software nobody here wrote, over real HTTP.

Starts the local stack (as `make run` does, on a free port), creates a service token through
the admin API with the `gatekey` CLI (as the e2e tests do; with the scope gatekey:introspect, so
it may introspect its own tokens), runs interop/node/interop.mjs
(openid-client and jose) against it, and stops the stack. Exits with the script's status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from gatekey_local.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
GATEKEY = Path(sys.executable).with_name("gatekey")  # the CLI installed into .venv
AUDIENCE = "gatekey"  # AccessTokenAudience's default, which the local stack keeps
STARTUP_SECONDS = 60


def start_stack(port: int, environment: dict[str, str], output: list[str]) -> subprocess.Popen[str]:
    """The local stack, answering on `port`; what it prints is kept in `output`."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, this checkout
        [sys.executable, "-m", "gatekey_local", "--port", str(port)],
        cwd=ROOT,
        env={**environment, "PYTHONPATH": os.pathsep.join(("layers/gatekey", "local"))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stdout = process.stdout
    if stdout is None:
        raise RuntimeError("the local stack's output is not a pipe")
    for line in stdout:  # the banner, then one JSON line when serving (none if it fails)
        output.append(line)
        if line.startswith('{"ready"'):
            break
    # Keep reading what it prints (its functions log to stdout), or its pipe fills up.
    threading.Thread(target=lambda: output.extend(stdout), daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=5
            ):
                return process
        except OSError:
            time.sleep(0.1)
    stop_stack(process)
    sys.stderr.writelines(output)
    raise SystemExit(f"interop: the local stack did not start within {STARTUP_SECONDS} s")


def stop_stack(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # the stack stops moto and its server on SIGTERM
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def create_service_token(url: str, environment: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(  # noqa: S603 - the CLI installed into .venv
        [
            str(GATEKEY),
            "--endpoint",
            url,
            "--json",
            "create",
            "interop-bot",
            "--scope",
            "read",
            "--scope",
            "gatekey:introspect",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"interop: `gatekey create` failed: {result.stderr.strip()}")
    created: dict[str, str] = json.loads(result.stdout)
    return created


def main() -> int:
    port = int(os.environ.get("GATEKEY_PORT") or free_port())
    url = f"http://127.0.0.1:{port}"
    # The local stack and the CLI's SigV4 use the same local credentials, never real ones.
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    environment.pop("AWS_SESSION_TOKEN", None)
    output: list[str] = []
    stack = start_stack(port, environment, output)
    status = 1
    try:
        token = create_service_token(url, environment)
        print(f"interop: local stack at {url}; service token {token['client_id']} created")
        script = subprocess.run(  # noqa: S603
            ["node", str(ROOT / "interop" / "node" / "interop.mjs")],  # noqa: S607 - node on PATH
            env={
                **os.environ,
                "GATEKEY_ISSUER": url,  # the local stack's issuer is its URL
                "GATEKEY_AUDIENCE": AUDIENCE,
                "GATEKEY_CLIENT_ID": token["client_id"],
                "GATEKEY_CLIENT_SECRET": token["client_secret"],
            },
            check=False,
            timeout=120,
        )
        status = script.returncode
    finally:
        stop_stack(stack)
        if status != 0:  # what the stack printed (its functions' logs), to see why
            sys.stderr.writelines(output)
    return status


if __name__ == "__main__":
    sys.exit(main())
