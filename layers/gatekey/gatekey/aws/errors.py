"""The one translation of a failed AWS call into Gatekey's error tree."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from gatekey.errors import DependencyError, GatekeyError

# What botocore raises for a call that failed: AWS answered with an error, or no answer came.
AwsError = (BotoCoreError, ClientError)


def error_code(exc: BotoCoreError | ClientError) -> str:
    """The AWS error code of a failed call (or the botocore exception's name), for messages."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


@contextmanager
def translated(
    what: str,
    *,
    meaning: Mapping[str, Callable[[str], GatekeyError | None]] | None = None,
) -> Iterator[None]:
    """AWS calls inside fail as a `DependencyError` that says `what` failed and AWS's code;
    the botocore exception is its cause, never its message (it may quote request values).

    Where an error code means something to the caller (a condition that failed, a key that is
    unusable), `meaning` maps the code to the error to raise instead, made from the code; an
    error of None means the call's goal is reached (a deletion already scheduled)."""
    try:
        yield
    except AwsError as exc:
        code = error_code(exc)
        if meaning is not None and code in meaning:
            instead = meaning[code](code)
            if instead is None:
                return
            raise instead from exc
        raise DependencyError(f"{what}: {code}") from exc
