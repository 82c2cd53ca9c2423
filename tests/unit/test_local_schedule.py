"""`make schedule`: it finds the running stack by its run file (or GATEKEY_PORT), prints the
function's answer, or its error as Lambda reports one (type, message, trace) instead of a bare
HTTP status, and lists the scheduled functions for a name that is not one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekey_local import runstate
from gatekey_local.__main__ import schedule
from gatekey_local.gateway import Functions, Gateway
from gatekey_local.servers import free_port
from gatekey_local.template import Schedule


class Broken(RuntimeError):
    pass


def _keys(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"added": None, "retired": [], "lost_race": False}


def _lifecycle(event: dict[str, Any], context: Any) -> None:
    raise Broken("the table is gone")


@pytest.fixture
def port() -> Iterator[int]:
    gateway = Gateway(
        routes=[],
        schedules={
            "SigningKeysFunction": Schedule("SigningKeysFunction", "{}"),
            "LifecycleFunction": Schedule("LifecycleFunction", '{"source": "schedule"}'),
        },
        functions=Functions({"SigningKeysFunction": _keys, "LifecycleFunction": _lifecycle}),
        credentials={},
    )
    chosen = free_port()
    server = gateway.serve(chosen)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield chosen
    server.shutdown()
    server.server_close()


def test_the_answer_is_printed(port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert schedule("SigningKeysFunction", port) == 0
    assert json.loads(capsys.readouterr().out) == {
        "added": None,
        "retired": [],
        "lost_race": False,
    }


def test_a_failing_function_prints_its_error_not_an_http_status(
    port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schedule("LifecycleFunction", port) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "Traceback (most recent call last)" in printed.err
    assert 'raise Broken("the table is gone")' in printed.err
    assert printed.err.endswith(
        "gatekey_local: LifecycleFunction failed: Broken: the table is gone\n"
    )
    assert "HTTP Error" not in printed.err


def test_an_unknown_name_lists_the_scheduled_functions(
    port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schedule("SigningKeyFunction", port) == 1
    assert capsys.readouterr().err == (
        "gatekey_local: no schedule for 'SigningKeyFunction' (scheduled: LifecycleFunction,"
        " SigningKeysFunction)\n"
    )


def test_the_running_stack_is_found_by_its_run_file(
    port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schedule("SigningKeysFunction", None, run_dir=tmp_path) == 1
    assert "no local stack is running" in capsys.readouterr().err
    runstate.write_run_file(port, f"http://127.0.0.1:{port}", run_dir=tmp_path)
    assert schedule("SigningKeysFunction", None, run_dir=tmp_path) == 0
    assert '"lost_race": false' in capsys.readouterr().out


def test_a_run_file_of_a_stopped_stack_is_ignored_and_removed(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / "4000.json"
    stale.write_text(
        json.dumps({"url": "http://127.0.0.1:4000", "port": 4000, "pid": int(gone.stdout)})
    )
    live = runstate.write_run_file(5000, "http://127.0.0.1:5000", run_dir=tmp_path)
    assert json.loads(live.read_text())["pid"] == os.getpid()
    assert runstate.find_port(tmp_path) == 5000
    assert not stale.exists()
    runstate.write_run_file(5001, "http://127.0.0.1:5001", run_dir=tmp_path)
    with pytest.raises(LookupError, match=r"ports 5000, 5001\): set GATEKEY_PORT"):
        runstate.find_port(tmp_path)


def test_no_stack_on_the_port_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert schedule("SigningKeysFunction", free_port()) == 1
    assert "cannot reach the local stack on port" in capsys.readouterr().err
