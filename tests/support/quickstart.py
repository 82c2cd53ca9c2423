"""The README's Quickstart as a test runs it: the console block between `<!-- quickstart -->`
and `<!-- /quickstart -->`, its `$ ` commands run in order by one bash, each command's output
compared with the lines the README shows under it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.constants import ROOT

README = ROOT / "README.md"
START, END = "<!-- quickstart -->", "<!-- /quickstart -->"
_MARK = "@@quickstart-step@@"
# What differs from run to run, replaced by a name in the README's lines and in the output.
_VARYING = [
    (re.compile(r"\bgks_[0-9A-Za-z]{49}\b"), "<client_secret>"),
    (re.compile(r"\bgk_[0-9A-Za-z]{28}\b"), "<client_id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]+"), "<jwt>"),
]


@dataclass
class Step:
    command: str  # as bash runs it (continuation lines joined by their backslash-newline)
    expected: list[str]  # the lines the README shows; `...` stands for any text


def steps(readme: Path = README) -> list[Step]:
    text = readme.read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = block.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    found: list[Step] = []
    continued = False
    for line in lines:
        if continued:
            found[-1].command += "\n" + line
        elif line.startswith("$ "):
            found.append(Step(line[2:], []))
        elif line.strip():
            found[-1].expected.append(line)
        continued = (continued or line.startswith("$ ")) and line.endswith("\\")
    return found


def normalized(line: str) -> str:
    for pattern, name in _VARYING:
        line = pattern.sub(name, line)
    return line.rstrip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, after normalizing; `...` within a line is any text, a line of `...` any
    number of lines."""
    pattern = "".join(
        "(?:.*\n)*?" if line == "..." else ".*".join(map(re.escape, line.split("..."))) + "\n"
        for line in map(normalized, expected)
    )
    text = "".join(normalized(line) + "\n" for line in actual if line.strip())
    return re.fullmatch(pattern, text) is not None


def run(found: list[Step], environment: dict[str, str], timeout: float) -> list[list[str]]:
    """Run the commands in one bash (stderr with stdout, as a terminal shows both): each
    command's output lines."""
    script = "exec 2>&1\n" + "".join(f"printf '\\n{_MARK}\\n'\n{step.command}\n" for step in found)
    result = subprocess.run(  # noqa: S603 - the README's own commands
        ["/bin/bash", "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    parts = result.stdout.split(f"\n{_MARK}\n")[1:]
    return [[line for line in part.splitlines() if line.strip()] for part in parts]
