"""How the Quickstart test reads the README: the marked console block, its `$ ` commands
(continuation lines kept with theirs), the lines shown under each, and how they are compared
(ids, secrets, times and JWTs aside; `...` for any text)."""

from __future__ import annotations

from pathlib import Path

from support.quickstart import matches, steps

README = """# x

<!-- quickstart -->
```console
$ export A=1
$ curl -s "$URL" \\
    -H "X: 1"
{"client_id": "gk_7FcxtDqQTnR9wytlPIGM571LICJa", "expires_at": "2027-11-28T05:31:43Z"}
$ echo ok
ok
```
<!-- /quickstart -->

```console
$ not this
```
"""


def test_the_marked_block_is_read_command_by_command(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    found = steps(readme)
    assert [s.command for s in found] == [
        "export A=1",
        'curl -s "$URL" \\\n    -H "X: 1"',
        "echo ok",
    ]
    assert [s.expected for s in found] == [
        [],
        ['{"client_id": "gk_7FcxtDqQTnR9wytlPIGM571LICJa", "expires_at": "2027-11-28T05:31:43Z"}'],
        ["ok"],
    ]


def test_ids_and_times_may_differ_nothing_else_may() -> None:
    shown = ['{"client_id": "gk_7FcxtDqQTnR9wytlPIGM571LICJa", "at": "2027-11-28T05:31:43Z"}']
    same = ['{"client_id": "gk_0V4R7bz4ysp5GtLT96VrD84KmGyd", "at": "2026-01-01T00:00:00Z"}']
    assert matches(shown, same)
    assert not matches(shown, ['{"client_id": "gk_0V4R7bz4ysp5GtLT96VrD84KmGyd"}'])
    assert not matches(["revoked"], ["active"])
    assert not matches(["ok"], [])
    assert matches([], [])
    assert matches(["a ... c", "...", "z"], ["a b c", "x", "y", "z"])


def test_the_readme_has_a_quickstart() -> None:
    found = steps()
    commands = "\n".join(s.command for s in found)
    for needed in ("CLIENT_ID=", "CLIENT_SECRET=", "TOKEN=", "${GATEKEY_PORT:-3000}"):
        assert needed in commands
