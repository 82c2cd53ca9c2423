"""Small helpers shared by the AWS adapters."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError


def error_code(exc: BotoCoreError | ClientError) -> str:
    """The AWS error code of a failed call (or the botocore exception's name), for messages."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
