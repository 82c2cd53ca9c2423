"""DynamoDB's side of the table's layout (gatekey.store.layout): items as attribute values,
and builders of the requests the store makes. They turn model objects into request dictionaries
and back, with no I/O; only an audit item's key draws on the clock and a random suffix.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from gatekey.durations import DAY
from gatekey.model import AuditAction, AuditEvent, AuditValue, ServiceToken, TokenStatus
from gatekey.revocations import AccessTokenRevocations
from gatekey.store import layout
from gatekey.store.due import DueSchedule, next_due_at

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

Item = dict[str, "AttributeValueTypeDef"]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def token_key(client_id: str) -> Item:
    return {"pk": {"S": layout.token_pk(client_id)}, "sk": {"S": layout.TOKEN_SK}}


def _serialize(plain: Mapping[str, Any]) -> Item:
    return {k: _serializer.serialize(_drop_none(v)) for k, v in plain.items() if v is not None}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def token_to_item(token: ServiceToken, schedule: DueSchedule = layout.DEFAULT_SCHEDULE) -> Item:
    return _serialize(layout.token_to_plain(token, schedule))


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _to_python(_deserializer.deserialize(v)) for k, v in item.items()}


def _to_python(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    return value


def token_from_item(item: Mapping[str, Any]) -> ServiceToken:
    return layout.token_from_plain(_plain(item))


def event_to_item(event: AuditEvent, retention_days: int) -> Item:
    # Sorted by the event's second, then by when it was written (two changes in one second
    # keep their order), and a random suffix so no two keys collide.
    sk = f"{layout.EVENT_SK_PREFIX}{event.at:011d}#{time.time_ns():020d}#{secrets.token_hex(4)}"
    return _serialize(
        {
            "pk": layout.token_pk(event.client_id),
            "sk": sk,
            "client_id": event.client_id,
            "action": event.action.value,
            "actor": event.actor,
            "at": event.at,
            "source_ip": event.source_ip,
            "details": event.details,
            "ttl": event.at + retention_days * DAY,
        }
    )


def event_from_item(item: Mapping[str, Any]) -> AuditEvent:
    plain = _plain(item)
    details: dict[str, AuditValue] = plain.get("details", {})
    return AuditEvent(
        client_id=plain["client_id"],
        action=AuditAction(plain["action"]),
        actor=plain["actor"],
        at=plain["at"],
        source_ip=plain.get("source_ip"),
        details=details,
    )


# -- write requests ------------------------------------------------------------------------------


def create_request(
    table: str,
    token: ServiceToken,
    event: AuditEvent,
    retention_days: int,
    schedule: DueSchedule = layout.DEFAULT_SCHEDULE,
) -> list[TransactWriteItemTypeDef]:
    """Put the token only if no item has its key, and its audit item, in one transaction."""
    return [
        {
            "Put": {
                "TableName": table,
                "Item": token_to_item(token, schedule),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        audit_put(table, event, retention_days),
    ]


def audit_put(table: str, event: AuditEvent, retention_days: int) -> TransactWriteItemTypeDef:
    return {
        "Put": {
            "TableName": table,
            "Item": event_to_item(event, retention_days),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def update_request(
    table: str,
    token: ServiceToken,
    expected_version: int,
    event: AuditEvent,
    retention_days: int,
    schedule: DueSchedule = layout.DEFAULT_SCHEDULE,
    *,
    if_unused: bool = False,
) -> list[TransactWriteItemTypeDef]:
    """Rewrite the token's mutable attributes only if it is still at `expected_version` and not
    revoked: a racing change makes the whole transaction fail, and a revoked token stays revoked.

    With `if_unused`, also only if its idle clock is still the one `token` carries: the
    authorizer's last-seen write takes no lock, so the version alone cannot tell of a use."""
    plain = layout.token_to_plain(token, schedule)
    names: dict[str, str] = {}
    values: Item = {}
    sets: list[str] = []
    removes: list[str] = []
    for i, attr in enumerate(layout.UPDATABLE):
        names[f"#a{i}"] = attr
        if plain[attr] is None:
            removes.append(f"#a{i}")
        else:
            values[f":a{i}"] = _serializer.serialize(_drop_none(plain[attr]))
            sets.append(f"#a{i} = :a{i}")
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    names |= {"#version": "version", "#status": "status"}
    values |= {
        ":expected": {"N": str(expected_version)},
        ":revoked": {"S": TokenStatus.REVOKED.value},
    }
    condition = "attribute_exists(pk) AND #version = :expected AND #status <> :revoked"
    if if_unused:
        condition += " AND " + _unused_since_read(token, names, values)
    return [
        {
            "Update": {
                "TableName": table,
                "Key": token_key(token.client_id),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        },
        audit_put(table, event, retention_days),
    ]


def _unused_since_read(token: ServiceToken, names: dict[str, str], values: Item) -> str:
    """The condition that `last_seen_at` and `idle_since` are still as `token` was read."""
    names |= {"#seen": "last_seen_at", "#idle": "idle_since"}
    values[":idle_read"] = {"N": str(token.idle_since)}
    if token.last_seen_at is None:
        return "attribute_not_exists(#seen) AND #idle = :idle_read"
    values[":seen_read"] = {"N": str(token.last_seen_at)}
    return "#seen = :seen_read AND #idle = :idle_read"


def reindex_request(
    table: str, token: ServiceToken, schedule: DueSchedule = layout.DEFAULT_SCHEDULE
) -> dict[str, Any]:
    """Rewrite only when the token's lifecycle work is next due (and take it out of by-expiry),
    if it is still at the version read. Nothing a person sees changes: no audit item, and the
    version stays, so a racing change wins and writes the same keys from its own token."""
    due = next_due_at(token, schedule)
    if due is None:
        expression = "REMOVE due_pk, next_due_at, expiry_pk"
        values: Item = {":expected": {"N": str(token.version)}}
    else:
        expression = "SET due_pk = :due_pk, next_due_at = :due REMOVE expiry_pk"
        values = {
            ":expected": {"N": str(token.version)},
            ":due_pk": {"S": layout.TOKEN_ENTITY},
            ":due": {"N": str(due)},
        }
    return {
        "TableName": table,
        "Key": token_key(token.client_id),
        "UpdateExpression": expression,
        "ConditionExpression": "attribute_exists(pk) AND #version = :expected",
        "ExpressionAttributeNames": {"#version": "version"},
        "ExpressionAttributeValues": values,
    }


def delete_request(
    table: str, client_id: str, expected_version: int, event: AuditEvent, retention_days: int
) -> list[TransactWriteItemTypeDef]:
    """Delete the token if unchanged since read; its audit trail stays until its TTL."""
    return [
        {
            "Delete": {
                "TableName": table,
                "Key": token_key(client_id),
                "ConditionExpression": "attribute_exists(pk) AND #version = :expected",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        },
        audit_put(table, event, retention_days),
    ]


def last_seen_request(table: str, client_id: str, now: int, min_interval: int) -> dict[str, Any]:
    """Move `last_seen_at` (and the idle clock) to `now` unless written less than `min_interval`
    seconds ago."""
    return {
        "TableName": table,
        "Key": token_key(client_id),
        "UpdateExpression": "SET last_seen_at = :now, idle_since = :now",
        "ConditionExpression": (
            "attribute_exists(pk) AND "
            "(attribute_not_exists(last_seen_at) OR last_seen_at <= :threshold)"
        ),
        "ExpressionAttributeValues": {
            ":now": {"N": str(now)},
            ":threshold": {"N": str(now - min_interval)},
        },
    }


def revocations_request(
    table: str,
    client_id: str,
    revocations: AccessTokenRevocations,
    read_version: int,
    event: AuditEvent,
    retention_days: int,
) -> list[TransactWriteItemTypeDef]:
    """Write the token's revoked access tokens (store/layout.py's REVOCATION_ATTRIBUTES, and
    nothing else of it) if they are still at `read_version` and the token exists, with the
    audit item, in one transaction: of two concurrent revocations, the second fails and
    re-reads, so neither is lost."""
    plain = layout.revocations_to_plain(revocations)
    names = {f"#r{i}": attr for i, attr in enumerate(layout.REVOCATION_ATTRIBUTES)}
    values: Item = {
        f":r{i}": _serializer.serialize(plain[attr])
        for i, attr in enumerate(layout.REVOCATION_ATTRIBUTES)
    }
    if read_version == 0:
        condition = "attribute_exists(pk) AND attribute_not_exists(#r2)"
    else:
        condition = "attribute_exists(pk) AND #r2 = :read"
        values[":read"] = {"N": str(read_version)}
    return [
        {
            "Update": {
                "TableName": table,
                "Key": token_key(client_id),
                "UpdateExpression": "SET " + ", ".join(f"{n} = :{n[1:]}" for n in names),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        },
        audit_put(table, event, retention_days),
    ]


# -- the lifecycle run ---------------------------------------------------------------------------

RUN_KEY: Final[Item] = {"pk": {"S": layout.RUN_PK}, "sk": {"S": layout.RUN_SK}}


def run_state_request(
    table: str,
    run_id: str,
    due_before: int,
    positions: Mapping[str, str | None],
    replaces: str | None,
) -> dict[str, Any]:
    """Record where run `run_id` stands. A new run (`replaces` None) takes the item whatever it
    holds; a run's progress is written only while the item is still that run's, so a run that a
    newer one replaced stops instead of writing over it."""
    request: dict[str, Any] = {
        "TableName": table,
        "Key": RUN_KEY,
        "UpdateExpression": "SET run_id = :run, due_before = :before, positions = :positions",
        "ExpressionAttributeValues": {
            ":run": {"S": run_id},
            ":before": {"N": str(due_before)},
            ":positions": {"S": json.dumps(dict(positions), sort_keys=True)},
        },
    }
    if replaces is not None:
        request["ConditionExpression"] = "run_id = :replaces"
        request["ExpressionAttributeValues"][":replaces"] = {"S": replaces}
    return request


def run_state_from_item(item: Mapping[str, Any]) -> tuple[str, int, dict[str, str | None]]:
    positions = json.loads(item["positions"]["S"])
    return item["run_id"]["S"], int(item["due_before"]["N"]), dict(positions)


# -- pagination tokens ---------------------------------------------------------------------------
