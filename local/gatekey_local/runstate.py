"""What a running local stack leaves on disk: where it listens (for `make schedule`), and, with
`GATEKEY_STATE=DIR`, what it created, so a restart finds its table, pepper and keys again.

    .gatekey/run/<port>.json   {"url": ..., "port": ..., "pid": ...} while a stack runs
    DIR/stack.json             the names and ARNs provisioned, and the URL they were served at
    DIR/moto.pickle            moto's state (gatekey_local.moto_state)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gatekey_local.provision import Provisioned

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / ".gatekey" / "run"
STACK_FILE = "stack.json"
MOTO_FILE = "moto.pickle"


class StateError(RuntimeError):
    """A state directory the stack cannot use, said in one line."""


# -- the running stack's address -------------------------------------------------------------


def write_run_file(port: int, url: str, run_dir: Path = RUN_DIR) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{port}.json"
    path.write_text(json.dumps({"url": url, "port": port, "pid": os.getpid()}) + "\n")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(run_dir: Path = RUN_DIR) -> list[dict[str, Any]]:
    """The stacks running now, by their run files (a file left by a killed stack is removed)."""
    found = []
    for path in sorted(run_dir.glob("*.json")) if run_dir.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
            pid, port = int(entry["pid"]), int(entry["port"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            found.append({**entry, "pid": pid, "port": port})
        else:
            path.unlink(missing_ok=True)
    return found


def find_port(run_dir: Path = RUN_DIR) -> int:
    """The port of the one running stack; LookupError saying what to do otherwise."""
    stacks = running(run_dir)
    if not stacks:
        raise LookupError("no local stack is running: start one (make run) or set GATEKEY_PORT")
    if len(stacks) > 1:
        ports = ", ".join(str(s["port"]) for s in stacks)
        raise LookupError(f"several local stacks are running (ports {ports}): set GATEKEY_PORT")
    return int(stacks[0]["port"])


# -- GATEKEY_STATE=DIR ---------------------------------------------------------------------


def load_saved(directory: Path) -> tuple[Provisioned, str] | None:
    """What a previous run in `directory` provisioned, and the URL it served; None if nothing
    was saved there (a run that stopped before provisioning completed saved nothing)."""
    if directory.exists() and not directory.is_dir():
        raise StateError(f"GATEKEY_STATE={directory}: not a directory")
    path = directory / STACK_FILE
    if not path.exists():
        return None
    if not (directory / MOTO_FILE).exists():
        raise StateError(f"GATEKEY_STATE={directory}: {STACK_FILE} without {MOTO_FILE}")
    try:
        saved = json.loads(path.read_text())
        return Provisioned(**saved["provisioned"]), str(saved["url"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"GATEKEY_STATE={directory}: unreadable {STACK_FILE}: {exc}") from None


def save(directory: Path, provisioned: Provisioned, url: str) -> None:
    data = {"provisioned": asdict(provisioned), "url": url}
    (directory / STACK_FILE).write_text(json.dumps(data, indent=2) + "\n")


def prepare(directory: Path) -> None:
    """A directory for a new state: created, and any moto state without its stack.json (a
    run stopped while provisioning) removed, so provisioning starts from nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MOTO_FILE).unlink(missing_ok=True)
