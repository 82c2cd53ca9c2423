"""DPoP proofs used once across containers (RFC 9449 §11.1): one conditional PutItem per
proof, on an item that DynamoDB's TTL removes once the proof could no longer be accepted.

Item: pk ``DPOP#<jkt>``, sk ``JTI#<SHA-256 of the jti>`` (a client chooses its jti: hashed, so
the key's length is fixed), ``ttl``. The authorizer's role may put items whose partition key
starts with ``DPOP#`` and nothing else (template.yaml; tests/unit/test_template_iam.py).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

from gatekey.aws.errors import translated
from gatekey.errors import DPoPReplayed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION_PREFIX: Final = "DPOP#"
# An item whose TTL has passed may linger (DynamoDB deletes expired items within days): it
# is overwritten, its proof having expired with it.
_CONDITION: Final = "attribute_not_exists(pk) OR #ttl < :now"


def replay_item(jkt: str, jti: str, until: int) -> dict[str, Any]:
    digest = hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()
    return {
        "pk": {"S": f"{PARTITION_PREFIX}{jkt}"},
        "sk": {"S": f"JTI#{digest}"},
        "ttl": {"N": str(until)},
    }


def put_request(table_name: str, jkt: str, jti: str, until: int, now: int) -> dict[str, Any]:
    """The PutItem request: a pure builder, read by the tests."""
    return {
        "TableName": table_name,
        "Item": replay_item(jkt, jti, until),
        "ConditionExpression": _CONDITION,
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":now": {"N": str(now)}},
    }


class DynamoDBReplayGuard:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self.table_name = table_name
        self._client = client

    def first_use(self, jkt: str, jti: str, until: int, now: int) -> bool:
        """False if the proof was recorded before; a failed write is a DependencyError (the
        authorizer fails closed)."""
        try:
            with translated(
                "recording a DPoP proof",
                meaning={"ConditionalCheckFailedException": DPoPReplayed},
            ):
                self._client.put_item(**put_request(self.table_name, jkt, jti, until, now))
        except DPoPReplayed:
            return False
        return True
