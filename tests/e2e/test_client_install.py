"""`pip install ./client` into a fresh virtual environment, then the bot script of
client/README.md, run verbatim by that environment's Python against the local stack.

Offline by design (CI reaches only the package index, and this must not depend on it): the
wheel is built from a copy of client/ with the pinned setuptools of the test environment (as
`pip install ./client` builds it, minus fetching setuptools), and the fresh environment (no
system site-packages) gets `requests` and its dependencies as copies of the distributions the
test environment has installed (the versions requirements/ pins). pip then installs
`gatekey-client[requests]` with `--no-index`: it resolves the extra against those and downloads
nothing. What this leaves to pip itself is fetching `requests` from an index.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from support.constants import ROOT
from support.stack import LocalStack

CLIENT = ROOT / "client"
GATEKEY = str(Path(sys.executable).with_name("gatekey"))
PIP: list[str | Path] = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - fixed commands: pip, the venv's python, the CLI
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )
    assert result.returncode == 0, f"{command[:4]}...\n{result.stdout}\n{result.stderr}"
    return result


def _closure(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distribution ``name`` and, recursively, what it requires (no extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [name]
    while pending:
        dist = importlib.metadata.distribution(pending.pop())
        key = dist.metadata["Name"].lower()
        if key in found:
            continue
        found[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def _copy_installed(dist: importlib.metadata.Distribution, site_packages: Path) -> None:
    """What ``pip install`` of this distribution put in site-packages, copied (its metadata
    included, so pip in the new environment sees it installed); scripts are left out."""
    for file in dist.files or []:
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue
        target = site_packages / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(str(dist.locate_file(file))), target)


def _readme_block(after: str, language: str) -> str:
    """The first fenced ``language`` block after the line containing ``after``."""
    text = (CLIENT / "README.md").read_text(encoding="utf-8")
    start = text.index(after)
    match = re.compile(rf"^```{language}\n(.*?)^```$", re.M | re.S).search(text, start)
    assert match, f"no ```{language} block after {after!r} in client/README.md"
    return match.group(1)


def test_pip_install_then_the_readme_bot_runs_against_the_local_stack(
    stack: LocalStack, tmp_path: Path
) -> None:
    # A copy, so pip's in-tree build writes nothing into the checkout, and so the package
    # cannot lean on anything outside client/.
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__py*"))
    wheels = tmp_path / "wheels"
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source])

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(_run([python, "-c", purelib]).stdout.strip())
    for dist in _closure("requests"):
        _copy_installed(dist, site_packages)
    # pip of the test environment, run with the venv's interpreter (pip --python).
    offline: list[str | Path] = ["--no-index", "--find-links", wheels]
    _run([*PIP, "--python", python, "install", *offline, "gatekey-client[requests]"])

    probe = (
        "import importlib.util, json, pathlib, gatekey_client; "
        "print(json.dumps({'file': gatekey_client.__file__, "
        "'typed': (pathlib.Path(gatekey_client.__file__).parent / 'py.typed').exists(), "
        "'absent': [m for m in ('boto3', 'httpx', 'gatekey') if importlib.util.find_spec(m)]}))"
    )
    found = json.loads(_run([python, "-c", probe], cwd=tmp_path, env={}).stdout)
    assert Path(found["file"]).is_relative_to(site_packages)
    assert found["typed"] is True
    assert found["absent"] == []  # a clean environment: none of the test environment leaks in

    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    created = _run(
        [GATEKEY, "--endpoint", stack.url, "--json", "create", "demo-bot", "--scope", "read"],
        env={**os.environ, **aws},
    )
    token = json.loads(created.stdout)
    bot = tmp_path / "bot.py"
    bot.write_text(_readme_block("<!-- bot-script", "python"), encoding="utf-8")

    ran = _run(
        [python, bot],
        cwd=tmp_path,
        # Nothing of the test environment: no PYTHONPATH, no AWS credentials.
        env={
            "PATH": os.environ.get("PATH", ""),
            "API_URL": stack.url,
            "TOKEN_URL": f"{stack.url}/oauth2/token",
            "GATEKEY_CLIENT_ID": token["client_id"],
            "GATEKEY_CLIENT_SECRET": token["client_secret"],
        },
    )

    assert ran.stdout == _readme_block("It prints", "console")
    assert token["client_secret"] not in ran.stdout + ran.stderr
