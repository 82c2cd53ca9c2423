"""The signing key ring's one item in the tokens table (``pk = SIGNING_KEYS``), written with a
version condition so two rotation runs cannot race."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from gatekey.aws.errors import translated
from gatekey.errors import ConcurrentModification, ConfigurationError, DependencyError
from gatekey.keyring import KeyRing, RingKey
from gatekey.signing import PublicKey

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

RING_KEY: Final = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING"}}
# Written beside the ring each time it is saved: a ring that is gone once it has existed is a
# failure to alarm on, not the start of a new one.
RING_MARKER_KEY: Final = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING_WRITTEN"}}
# A ring holds two or three keys (the signing one, the next, one retiring); more entries than
# this are not Gatekey's doing, and only the newest are read.
MAX_RING_KEYS: Final = 8


def _to_item(ring: KeyRing, version: int) -> dict[str, Any]:
    def entry(key: RingKey) -> dict[str, Any]:
        value: dict[str, Any] = {
            "key_id": {"S": key.key_id},
            "jwk": {"S": _json(key.public_key.jwk())},
            "created_at": {"N": str(key.created_at)},
            "active_from": {"N": str(key.active_from)},
            "managed": {"BOOL": key.managed},
        }
        if key.unpublish_at is not None:
            value["unpublish_at"] = {"N": str(key.unpublish_at)}
        return {"M": value}

    return {
        **RING_KEY,
        "keys": {"L": [entry(k) for k in ring.keys]},
        "version": {"N": str(version)},
    }


def _from_item(item: Mapping[str, Any]) -> KeyRing:
    """The ring as stored. Each entry is read on its own: one that cannot be read is left out
    (and logged), so a damaged entry costs only itself; none readable is a ConfigurationError."""
    try:
        entries, version = item["keys"]["L"][-MAX_RING_KEYS:], int(item["version"]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError("the signing key ring item is malformed") from exc
    keys = []
    for raw in entries:
        try:
            keys.append(_ring_key(raw["M"]))
        except (KeyError, TypeError, ValueError, AttributeError, ConfigurationError) as exc:
            logger.warning("signing key ring entry unreadable", extra={"error": repr(exc)[:200]})
    return KeyRing(tuple(keys), version)


def _ring_key(value: Mapping[str, Any]) -> RingKey:
    return RingKey(
        key_id=str(value["key_id"]["S"]),
        public_key=PublicKey.from_jwk(json.loads(value["jwk"]["S"])),
        created_at=int(value["created_at"]["N"]),
        active_from=int(value["active_from"]["N"]),
        unpublish_at=int(value["unpublish_at"]["N"]) if "unpublish_at" in value else None,
        managed=bool(value["managed"]["BOOL"]),
    )


def _json(value: Mapping[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class KeyRingStore:
    """The ring's one item in the tokens table (``pk = SIGNING_KEYS``)."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self.table_name = table_name
        self.client = client

    def load(self, *, consistent: bool = False) -> KeyRing | None:
        """The stored ring; None before the first rotation run has written one. A ring that
        was written and is gone (deleted, or lost to a restore) is a DependencyError, never
        None: falling back to the deployment's first key would refuse every token of the keys
        after it, and leave those keys out of any new ring."""
        item = self._get(RING_KEY, consistent)
        if item is not None:
            return _from_item(item)
        if self._get(RING_MARKER_KEY, consistent) is not None:
            raise DependencyError(
                "the signing key ring is missing, though one was written: restore it "
                "(docs/operations.md, signing keys)"
            )
        return None

    def _get(self, key: Mapping[str, Any], consistent: bool) -> Mapping[str, Any] | None:
        with translated("cannot read the key ring"):
            response = self.client.get_item(
                TableName=self.table_name, Key=dict(key), ConsistentRead=consistent
            )
        return response.get("Item")

    def save(self, ring: KeyRing) -> KeyRing:
        """Write `ring` if the stored one is still at `ring.version`; return it at version + 1."""
        with translated("cannot write the key ring", meaning={_CONDITION_FAILED: _changed}):
            self.client.put_item(**save_request(self.table_name, ring))
        self.mark_written()  # after the ring: never a marker without a ring
        return replace(ring, version=ring.version + 1)

    def mark_written(self) -> None:
        """Record that a ring exists (idempotent; a failure waits for the next run)."""
        try:
            with translated("ring marker not written"):
                self.client.put_item(TableName=self.table_name, Item=dict(RING_MARKER_KEY))
        except DependencyError as exc:
            logger.warning("ring marker not written", extra={"error": exc.message})


_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def _changed(_: str) -> ConcurrentModification:
    return ConcurrentModification("the key ring was changed by another run")


def save_request(table_name: str, ring: KeyRing) -> dict[str, Any]:
    """The PutItem of `ring` at its next version, if the stored one is still at its version
    (or, at version 0, if none is stored)."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "Item": _to_item(ring, ring.version + 1),
        "ConditionExpression": (
            "attribute_not_exists(pk)" if ring.version == 0 else "#version = :expected"
        ),
    }
    if ring.version:
        request["ExpressionAttributeNames"] = {"#version": "version"}
        request["ExpressionAttributeValues"] = {":expected": {"N": str(ring.version)}}
    return request
