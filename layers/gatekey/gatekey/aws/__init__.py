"""Gatekey's adapters to AWS services, and the one place their clients are built.

Domain modules speak to AWS only through these; none imports botocore. `clients`: budgets and
clients; `errors`: the one translation of a failed call; `kms`: signing, vouching for public
keys, the rotation's key calls; `secrets`: the pepper and the signing-key secret;
`keyring_store`: the signing key ring's table item; `dynamodb`, `dynamodb_items`: the token
store and its items; `notify`: SNS and EventBridge notices; `delivery`: a rotated secret into
its consumer's secret; `apigateway`: metered tokens' API keys and their usage plans. Import
the adapters by module: this package's root loads no domain code.
"""

from gatekey.aws.clients import (
    API,
    AUTHORIZER,
    BOOKKEEPING,
    CONTROL_PLANE,
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
    "CONTROL_PLANE",
    "LIFECYCLE",
    "ROTATION",
    "AwsError",
    "CallBudget",
    "client",
    "error_code",
    "translated",
]
