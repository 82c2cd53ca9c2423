"""The one place AWS clients are built, with timeouts and retries that fit each function.

botocore's defaults (60 s to connect, 60 s to read, 3 retries) are longer than any Gatekey
function may run: a throttled read would outlive a 5 s authorizer, which Lambda then kills
before it can count the failure. Each function gets a `CallBudget` whose worst case, every
attempt timing out and every backoff at its longest, is well inside its Lambda timeout
(tests/unit/test_aws.py holds each budget against template.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import boto3
from botocore.config import Config as BotoConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# botocore's standard retry mode waits at most min(2 ** (retry - 1), 20) s before a retry,
# plus up to 5 s more when the answer carries x-amz-retry-after; legacy mode waits at most
# base * 2 ** (retry - 1) s and reads no such header, with a base of 1 s (0.05 s for DynamoDB,
# botocore's data/_retry.json).
_MAX_BACKOFF: Final = 20
_RETRY_AFTER_EXTRA: Final = 5
_LEGACY_BASE: Final = {"dynamodb": 0.05}


@dataclass(frozen=True, slots=True)
class CallBudget:
    """How long one AWS call of a function may take: per attempt, the time to connect and to
    read the answer; the attempts in all (the first included); the retry mode."""

    connect_timeout: float
    read_timeout: float
    attempts: int
    mode: Literal["standard", "legacy"] = "standard"

    def worst_case(self, service: str) -> float:
        """Seconds a call to `service` may take before it fails: every attempt timing out,
        every wait between attempts at its longest."""
        waits = 0.0
        for retry in range(1, self.attempts):
            if self.mode == "standard":
                waits += min(2 ** (retry - 1), _MAX_BACKOFF) + _RETRY_AFTER_EXTRA
            else:
                waits += _LEGACY_BASE.get(service, 1.0) * 2 ** (retry - 1)
        return self.attempts * (self.connect_timeout + self.read_timeout) + waits

    def boto_config(self) -> BotoConfig:
        return BotoConfig(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": self.mode, "total_max_attempts": self.attempts},
        )


# Per function, from its Lambda timeout in template.yaml. In-region DynamoDB, KMS and Secrets
# Manager answer in milliseconds; these bound the rare slow call. Functions that answer a
# request retry once in legacy mode, whose wait no header can stretch. tests/unit/test_aws.py
# adds up the calls a request may chain and holds the sum against the function's timeout.
# The authorizer's status read (and its pepper at a cold start): 1.25 s for DynamoDB.
AUTHORIZER: Final = CallBudget(connect_timeout=0.2, read_timeout=0.4, attempts=2, mode="legacy")
# What the authorizer may do without (its last-seen write; a refresh of the signing keys,
# which keeps the keys it has when it fails): one attempt, 0.6 s.
BOOKKEEPING: Final = CallBudget(connect_timeout=0.2, read_timeout=0.4, attempts=1, mode="legacy")
# The token endpoint and the admin API (10 s timeout): 1.85 s for DynamoDB, 2.8 s for KMS.
# The token function refreshes its key ring with BOOKKEEPING: a failed refresh keeps the ring.
API: Final = CallBudget(connect_timeout=0.3, read_timeout=0.6, attempts=2, mode="legacy")
# API Gateway's control plane, from the admin (a metered token's API key, gatekey.usage_plans):
# one attempt, 1.3 s. A change makes at most 6 such calls besides its read and its write (a
# move to another plan and a key disabled, then their undo after a failed write): 11.5 s in
# all, so the admin function has a 20 s timeout. A throttled call fails the change, undone.
CONTROL_PLANE: Final = CallBudget(connect_timeout=0.3, read_timeout=1.0, attempts=1, mode="legacy")
# Signing-key rotation (60 s): 5.05 s for DynamoDB, 6.0 s for KMS.
ROTATION: Final = CallBudget(connect_timeout=0.5, read_timeout=2.0, attempts=2, mode="legacy")
# The lifecycle run (300 s): standard mode, whose retry quota stops retrying a failing
# service, 31.0 s a call; the run bounds its own work.
LIFECYCLE: Final = CallBudget(connect_timeout=1.0, read_timeout=5.0, attempts=3)


@overload
def client(service: Literal["dynamodb"], budget: CallBudget) -> DynamoDBClient: ...
@overload
def client(service: Literal["kms"], budget: CallBudget) -> KMSClient: ...
@overload
def client(service: Literal["secretsmanager"], budget: CallBudget) -> SecretsManagerClient: ...
@overload
def client(
    service: Literal["sns", "events", "apigateway"], budget: CallBudget
) -> Any: ...  # no stubs pinned
def client(service: str, budget: CallBudget) -> Any:
    """A boto3 client whose calls fit `budget`."""
    return boto3.client(service, config=budget.boto_config())  # type: ignore[call-overload]
