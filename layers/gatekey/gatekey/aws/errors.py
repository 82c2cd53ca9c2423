"""The one translation of a failed AWS call into Gatekey's error tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from gatekey.errors import DependencyError

# What botocore raises for a call that failed: AWS answered with an error, or no answer came.
AwsError = (BotoCoreError, ClientError)


def error_code(exc: BotoCoreError | ClientError) -> str:
    """The AWS error code of a failed call (or the botocore exception's name), for messages."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


@contextmanager
def translated(what: str) -> Iterator[None]:
    """AWS calls inside fail as a `DependencyError` that says `what` failed and AWS's code;
    the botocore exception is its cause, never its message (it may quote request values)."""
    try:
        yield
    except AwsError as exc:
        raise DependencyError(f"{what}: {error_code(exc)}") from exc
