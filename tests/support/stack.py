"""The local stack (`make run`) as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from gatekey_local.servers import free_port
from support.constants import REGION, ROOT

E2E_STATUS_TTL = 1  # StatusCacheTtlSeconds for these tests
E2E_AUTHORIZER_TTL = 2  # AuthorizerCacheTtlSeconds for these tests
E2E_DAILY_QUOTA = 5  # DemoUsagePlanDailyQuota for these tests


@dataclass
class LocalStack:
    url: str
    process: subprocess.Popen[str]
    startup_seconds: float
    routes: list[str]
    console: str  # the admin console's URL, with its run token


E2E_OVERRIDES = (
    f"StatusCacheTtlSeconds={E2E_STATUS_TTL} AuthorizerCacheTtlSeconds={E2E_AUTHORIZER_TTL}"
    # HTTP API authorizers answer simple responses (REST events are not affected).
    " HttpApiSimpleResponses=true"
    # The demo's usage plan (2 a second, burst 2) with a daily quota of 5 per token.
    f" DemoUsagePlanDailyQuota={E2E_DAILY_QUOTA}"
)


@contextmanager
def local_stack(
    overrides: str = E2E_OVERRIDES, port: int | None = None, **environ: str
) -> Iterator[LocalStack]:
    """Start the stack (on a free port unless given one, with these parameter overrides and
    environment variables), wait until it answers, stop it afterwards."""
    port = port or free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/gatekey", "local", "cli")),
        "GATEKEY_PORT": str(port),
        "GATEKEY_PARAMETER_OVERRIDES": overrides,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        **environ,
    }
    environment.pop("AWS_SESSION_TOKEN", None)
    if "GATEKEY_STATE" not in environ:  # a state of the shell's is not the tests'
        environment.pop("GATEKEY_STATE", None)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekey_local"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    ready: dict[str, Any] = {}
    for line in process.stdout:  # the banner, then one JSON line when serving
        if line.startswith('{"ready"'):
            ready = json.loads(line)
            break
    # Keep reading what the stack prints (its functions log to stdout), or its pipe fills up.
    output: list[str] = []
    drain = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    drain.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/.well-known/jwks.json", timeout=5).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the local stack did not answer within 60 s")
    local = LocalStack(
        url, process, time.monotonic() - started, list(ready.get("routes", [])), ready["console"]
    )
    yield local
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    drain.join(timeout=10)
    process.stdout.close()
