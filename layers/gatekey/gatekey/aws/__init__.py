"""Gatekey's adapters to AWS services, and the one place their clients are built.

Domain modules speak to AWS only through these; none imports botocore.
"""

from gatekey.aws.clients import (
    API,
    AUTHORIZER,
    BOOKKEEPING,
    LIFECYCLE,
    ROTATION,
    CallBudget,
    client,
)
from gatekey.aws.errors import AwsError, error_code, translated

__all__ = [
    "API",
    "AUTHORIZER",
    "BOOKKEEPING",
    "LIFECYCLE",
    "ROTATION",
    "AwsError",
    "CallBudget",
    "client",
    "error_code",
    "translated",
]
