"""Check the `sam build` artifact: the arm64 / python3.13 layer Lambda will run.

Run with python3.13 (`make package-check`). This machine is x86_64, so the layer's compiled
extensions (built for aarch64) cannot be loaded here. The check therefore splits in two:

1. the artifact itself: every package in the layer is the version pinned in
   requirements/lock.txt (what the tests ran against), and every compiled extension is an
   AArch64 ELF built for CPython 3.13 (or the stable ABI);
2. the import: python3.13 imports every module of the core from the built layer and exercises
   hashing, signing and validation, with the same pinned versions of the compiled packages
   installed for this machine ahead of the layer on sys.path (pure-Python code, the core
   included, comes from the artifact), and boto3 standing in for the Lambda runtime's.

Every function's built handler must also compile under python3.13.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
ELF_MACHINE_AARCH64 = 0xB7
# Compiled packages of the layer, installed for this machine for the import check.
NATIVE = ("cryptography", "cffi", "pydantic-core")
# What the Lambda python3.13 runtime provides beside the layer.
RUNTIME = ("boto3",)

SMOKE = """
import pkgutil, importlib, sys
import gatekey
layer = sys.argv[1]
assert gatekey.__file__.startswith(layer), f"gatekey imported from {gatekey.__file__}"
names = [m.name for m in pkgutil.walk_packages(gatekey.__path__, "gatekey.")]
for name in names:
    importlib.import_module(name)
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from gatekey.admin_api import CreateTokenRequest
from gatekey.credentials import ClientSecret
from gatekey.hashing import Hasher
from gatekey.signing import LocalKeySigner
secret = ClientSecret.generate()
hasher = Hasher({"p1": b"pepper" * 8}, "p1")
assert hasher.verify(secret, hasher.hash(secret))
for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())):
    signer = LocalKeySigner(key)
    assert signer.public_key.verify(signer.sign(b"header.payload"), b"header.payload")
assert CreateTokenRequest.model_validate({"name": "bot"}).duration == "8760h"
print(f"python {sys.version.split()[0]}: imported {len(names)} gatekey modules from the layer")
"""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def check_versions(layer: Path, pins: dict[str, str]) -> list[str]:
    problems = []
    for dist in sorted(layer.glob("*.dist-info")):
        name, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
        if pins.get(normalise(name)) != version:
            problems.append(f"{name} {version} in the layer, {pins.get(normalise(name))} pinned")
    if not problems and not list(layer.glob("*.dist-info")):
        problems.append("no installed package in the layer")
    return problems


def check_extensions(layer: Path) -> list[str]:
    problems = []
    extensions = sorted(layer.rglob("*.so"))
    for path in extensions:
        header = path.read_bytes()[:20]
        machine = int.from_bytes(header[18:20], "little")
        if header[:4] != b"\x7fELF" or machine != ELF_MACHINE_AARCH64:
            problems.append(f"{path.relative_to(layer)} is not an AArch64 ELF")
        if ".cpython-" in path.name and ".cpython-313-aarch64" not in path.name:
            problems.append(f"{path.relative_to(layer)} is not built for CPython 3.13 on aarch64")
    if not extensions:
        problems.append("no compiled extension found: was the layer built for arm64?")
    return problems


def check_handlers(build: Path) -> list[str]:
    problems = []
    handlers = sorted(build.glob("*Function/app.py"))
    for handler in handlers:
        try:
            compile(handler.read_text(), str(handler), "exec")
        except SyntaxError as exc:
            problems.append(f"{handler.relative_to(build)}: {exc}")
    if not handlers:
        problems.append("no function handler in the build")
    return problems


def check_import(layer: Path, pins: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        native, runtime = Path(scratch, "native"), Path(scratch, "runtime")
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        pip += ["--root-user-action=ignore"]
        installs = [
            ["--no-deps", "--only-binary=:all:", "--target", str(native)]
            + [f"{name}=={pins[name]}" for name in NATIVE],
            ["--target", str(runtime), "--constraint", str(LOCK), *RUNTIME],
        ]
        for arguments in installs:
            command = [*pip, *arguments]
            installed = subprocess.run(command, capture_output=True, text=True)  # noqa: S603 - this interpreter, our arguments
            if installed.returncode:
                return [f"pip could not install {arguments[-1]}:\n{installed.stderr}"]
        path = [str(native), str(layer), str(runtime)]
        code = f"import sys; sys.path[:0] = {path!r}\n{SMOKE}"
        smoke = [sys.executable, "-I", "-c", code, str(layer)]
        answer = subprocess.run(smoke, capture_output=True, text=True)  # noqa: S603 - this interpreter, our arguments
    if answer.returncode:
        return [f"the core does not import from the layer:\n{answer.stderr}"]
    print(answer.stdout.strip())
    return []


def main(build: Path) -> int:
    version = platform.python_version()
    if not version.startswith("3.13."):
        print(f"run this with python3.13, not {version}", file=sys.stderr)
        return 2
    build = build.resolve()
    layer = build / "CoreLayer" / "python"
    if not (layer / "gatekey").is_dir():
        print(f"{layer}/gatekey is missing: run `make build` first", file=sys.stderr)
        return 2
    pins = pinned()
    problems = [
        *check_versions(layer, pins),
        *check_extensions(layer),
        *check_handlers(build),
    ]
    if not problems:
        problems = check_import(layer, pins)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {build} is an arm64 / python3.13 build whose layer imports the core")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".aws-sam" / "build"))
