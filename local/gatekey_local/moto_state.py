"""moto's state on disk, for `GATEKEY_STATE=DIR make run`: every backend in use (the table, the
pepper secret, KMS keys with their key material, topics, ...) pickled into one file after each
request that may have changed it, and loaded back before moto's server answers its first one.

moto 5.2.5 has no persistence of its own: its recorder replays requests, which would give KMS
keys new key material (old JWTs would no longer verify). A pickle of the backends keeps them
as they were; cryptography's private keys, which do not pickle, are stored as PKCS#8 PEM. A
pickle is tied to the moto version that wrote it: the file records it, and another version is
refused rather than half-loaded. It runs inside moto's server process (gatekey_local.moto_serial).
"""

from __future__ import annotations

import io
import os
import pickle
import typing
from pathlib import Path
from typing import Any

import moto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from moto.core.base_backend import BackendDict

FORMAT = 1
# Operations that only read (X-Amz-Target's operation, by prefix): no save after them, so the
# authorizer's reads cost nothing more.
READ_ONLY = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Sign", "Verify")
_KEY_TYPES = tuple(t for t in typing.get_args(PrivateKeyTypes) if isinstance(t, type))


def _load_private_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _KEY_TYPES):
            key: Any = obj
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _load_private_key, (pem,)
        return NotImplemented


def snapshot() -> dict[str, Any]:
    """Every backend in use, as {service: {account: {region: backend}}}."""
    services: dict[str, Any] = {}
    in_use: list[BackendDict[Any]] = getattr(BackendDict, "_instances")  # noqa: B009 - moto's
    for backends in in_use:
        accounts = {account: dict(dict.items(regions)) for account, regions in dict.items(backends)}
        if any(accounts.values()):
            services[backends.service_name] = accounts
    return {"format": FORMAT, "moto": moto.__version__, "services": services}


def save(path: Path) -> None:
    """Write the snapshot atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(snapshot())
    partial = path.with_suffix(".partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, path)


def load(path: Path) -> None:
    """Put a saved snapshot's backends back into moto's registry."""
    from moto.backends import get_backend

    with path.open("rb") as file:
        saved = pickle.load(file)  # noqa: S301 - the user's own state directory
    if saved.get("format") != FORMAT or saved.get("moto") != moto.__version__:
        written = saved.get("moto")
        raise RuntimeError(f"{path} was written by moto {written}, this is {moto.__version__}")
    for service, accounts in saved["services"].items():
        backends = get_backend(service)
        for account, regions in accounts.items():
            live = backends[account]  # creates the account's (empty) backend dict
            for region, backend in regions.items():
                dict.__setitem__(live, region, backend)


def may_change(environ: dict[str, Any]) -> bool:
    """Whether a request to moto's server may change its state (a WSGI environ)."""
    if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
        return False
    # REST-style APIs (API Gateway's, which the gateway reads for each metered request) read
    # with GET; the JSON protocols POST every operation and name it in X-Amz-Target.
    if environ.get("REQUEST_METHOD") == "GET":
        return False
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    operation = target.rsplit(".", 1)[-1]
    return not (operation and operation.startswith(READ_ONLY))


def moto_version() -> str:
    return str(moto.__version__)
