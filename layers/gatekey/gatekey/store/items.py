"""The table's item layout and pure builders of DynamoDB requests.

One table holds both kinds of item, so a token's audit trail is one Query away:

=========  =======================  ==========================  ==================================
item       pk                       sk                          extra keys
=========  =======================  ==========================  ==================================
token      ``TOKEN#<client_id>``    ``TOKEN``                   ``entity`` (by-name index),
                                                                ``due_pk`` (by-due, sparse)
audit      ``TOKEN#<client_id>``    ``EVENT#<at>#<random>``     ``ttl`` (DynamoDB TTL)
run        ``LIFECYCLE``            ``RUN``                     (none: in no index)
=========  =======================  ==========================  ==================================

``by-name`` (partition ``entity``, sort ``name``) lists tokens without reading audit items.
``by-due`` (partition ``due_pk``, sort ``next_due_at``, keys only) holds tokens with lifecycle
work ahead, by when it is next due (store/due.py): the run reads what is due, and a token once
per notice. Every write of a token rewrites both attributes from the whole token.
``by-grace-end`` (partition ``grace_pk``, sort ``previous_client_secret_expires_at``, keys only)
holds only tokens that keep a previous secret's hash, for its removal after the grace.
``by-idle`` (partition ``idle_pk``, sort ``idle_since``, keys only) holds only tokens that could
be disabled for idleness (active, enabled, not expired). The authorizer's last-seen write moves
``idle_since`` too: one index write per token per last-seen interval at most.
``by-expiry`` (partition ``expiry_pk``, sort ``expires_at``, keys only) is what lifecycle work
was found by before by-due. Nothing writes ``expiry_pk`` any more and every token write removes
it, so the index holds only tokens last written before by-due existed; the run moves them over
(`reindex_request`). CloudFormation adds or removes one index per stack update: by-expiry goes in
the release after the one that added by-due.
The run item is where the lifecycle run stands, so a run cut short by its timeout continues.
Keys-only projections keep the authorizer's `last_seen_at` writes from touching any index but
by-idle.

Every function here is pure: it turns model objects into request dictionaries and back.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from gatekey.durations import parse_duration
from gatekey.errors import ValidationError
from gatekey.hashing import SecretHash
from gatekey.model import (
    EXPIRED,
    AuditAction,
    AuditEvent,
    AuditValue,
    Milestone,
    NoticeKey,
    PendingNotice,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
)
from gatekey.store.due import DueSchedule, next_due_at

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

BY_NAME_INDEX: Final = "by-name"
BY_DUE_INDEX: Final = "by-due"
BY_EXPIRY_INDEX: Final = "by-expiry"  # read only to move tokens written before by-due
BY_GRACE_END_INDEX: Final = "by-grace-end"
BY_IDLE_INDEX: Final = "by-idle"
TOKEN_ENTITY: Final = "token"
TOKEN_SK: Final = "TOKEN"
EVENT_SK_PREFIX: Final = "EVENT#"
RUN_PK: Final = "LIFECYCLE"
RUN_SK: Final = "RUN"
DAY: Final = 86_400
DEFAULT_SCHEDULE: Final = DueSchedule()

Item = dict[str, "AttributeValueTypeDef"]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Attributes a token update rewrites. `last_seen_at` is left out on purpose: the authorizer
# writes it without taking the optimistic lock, and an admin change must not move it back.
# `idle_since` is rewritten (re-enabling restarts it), so a racing last-seen write can be undone
# there; harmless, since the lifecycle decides on `idle_clock()`, which reads last_seen_at too.
_UPDATABLE: Final = (
    "name",
    "owner",
    "routes",
    "scopes",
    "enabled",
    "status",
    "secret_hash",
    "client_secret_version",
    "previous_secret_hash",
    "previous_client_secret_expires_at",
    "duration",
    "updated_at",
    "expires_at",
    "due_pk",
    "next_due_at",
    "expiry_pk",  # always None now: every write takes the token out of by-expiry
    "grace_pk",
    "idle_pk",
    "idle_since",
    "rotation",
    "reminders_sent",
    "reminders_pending",
    "delivery_pending",
    "version",
)


def token_pk(client_id: str) -> str:
    return f"TOKEN#{client_id}"


def token_key(client_id: str) -> Item:
    return {"pk": {"S": token_pk(client_id)}, "sk": {"S": TOKEN_SK}}


def _hash_to_plain(value: SecretHash | None) -> dict[str, str] | None:
    return None if value is None else {"key_id": value.key_id, "digest": value.digest}


def lifecycle_done(token: ServiceToken) -> bool:
    """Revoked, or expired and told so: no lifecycle index needs the token any more."""
    return token.status is not TokenStatus.ACTIVE or EXPIRED in token.reminders_sent


# Notice keys as stored, in `reminders_sent` (numbers) and `reminders_pending` (text): a
# reminder as its days before expiry (positive), a milestone as its number (0 or negative).
def _key_to_code(key: NoticeKey) -> int:
    return key if isinstance(key, int) else key.value


def _key_from_code(code: int) -> NoticeKey:
    return code if code > 0 else Milestone(code)


def _pending_to_text(pending: PendingNotice) -> str:
    """`<key>@<claimed_at>@<channel>,<channel>...`"""
    return f"{_key_to_code(pending.days)}@{pending.claimed_at}@{','.join(pending.done)}"


def _pending_from_text(text: str) -> PendingNotice:
    code, claimed_at, done = text.split("@", 2)
    return PendingNotice(
        _key_from_code(int(code)), int(claimed_at), tuple(c for c in done.split(",") if c)
    )


def token_to_plain(token: ServiceToken, schedule: DueSchedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """The token as plain attribute values; absent optionals are None (removed on write)."""
    done = lifecycle_done(token)
    due = next_due_at(token, schedule)
    return {
        "pk": token_pk(token.client_id),
        "sk": TOKEN_SK,
        "entity": TOKEN_ENTITY,
        "client_id": token.client_id,
        "name": token.name,
        "owner": token.owner,
        "routes": list(token.routes),
        "scopes": list(token.scopes),
        "enabled": token.enabled,
        "status": token.status.value,
        "secret_hash": _hash_to_plain(token.secret_hash),
        "client_secret_version": token.client_secret_version,
        "previous_secret_hash": _hash_to_plain(token.previous_secret_hash),
        "previous_client_secret_expires_at": token.previous_client_secret_expires_at,
        "duration": str(token.duration),
        "created_at": token.created_at,
        "updated_at": token.updated_at,
        "expires_at": token.expires_at,
        # In by-due while lifecycle work lies ahead of it.
        "due_pk": None if due is None else TOKEN_ENTITY,
        "next_due_at": due,
        "expiry_pk": None,
        # In the grace index while a previous secret's hash is kept.
        "grace_pk": TOKEN_ENTITY if token.previous_secret_hash is not None else None,
        "last_seen_at": token.last_seen_at,
        "idle_pk": TOKEN_ENTITY if token.enabled and not done else None,
        "idle_since": token.idle_since,
        "rotation": {
            "mode": token.rotation.mode.value,
            "delivery_secret_arn": token.rotation.delivery_secret_arn,
        },
        "reminders_sent": [_key_to_code(key) for key in token.reminders_sent],
        "reminders_pending": [_pending_to_text(pending) for pending in token.reminders_pending],
        "delivery_pending": token.delivery_pending,
        "version": token.version,
    }


def _serialize(plain: Mapping[str, Any]) -> Item:
    return {k: _serializer.serialize(_drop_none(v)) for k, v in plain.items() if v is not None}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def token_to_item(token: ServiceToken, schedule: DueSchedule = DEFAULT_SCHEDULE) -> Item:
    return _serialize(token_to_plain(token, schedule))


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


def _hash_from_plain(value: Mapping[str, str] | None) -> SecretHash | None:
    return None if value is None else SecretHash(value["key_id"], value["digest"])


def token_from_item(item: Mapping[str, Any]) -> ServiceToken:
    plain = _plain(item)
    rotation = plain["rotation"]
    return ServiceToken(
        client_id=plain["client_id"],
        name=plain["name"],
        owner=plain.get("owner"),
        routes=tuple(plain["routes"]),
        scopes=tuple(plain["scopes"]),
        enabled=plain["enabled"],
        status=TokenStatus(plain["status"]),
        secret_hash=SecretHash(**plain["secret_hash"]),
        client_secret_version=plain["client_secret_version"],
        previous_secret_hash=_hash_from_plain(plain.get("previous_secret_hash")),
        previous_client_secret_expires_at=plain.get("previous_client_secret_expires_at"),
        duration=parse_duration(plain["duration"]),
        created_at=plain["created_at"],
        updated_at=plain["updated_at"],
        expires_at=plain.get("expires_at"),
        last_seen_at=plain.get("last_seen_at"),
        idle_since=plain.get("idle_since", 0),
        rotation=RotationPolicy(
            RotationMode(rotation["mode"]), rotation.get("delivery_secret_arn")
        ),
        reminders_sent=tuple(_key_from_code(code) for code in plain.get("reminders_sent", [])),
        reminders_pending=tuple(_pending_from_text(t) for t in plain.get("reminders_pending", [])),
        delivery_pending=plain.get("delivery_pending"),
        version=plain["version"],
    )


def event_to_item(event: AuditEvent, retention_days: int) -> Item:
    # Sorted by the event's second, then by when it was written (two changes in one second
    # keep their order), and a random suffix so no two keys collide.
    sk = f"{EVENT_SK_PREFIX}{event.at:011d}#{time.time_ns():020d}#{secrets.token_hex(4)}"
    return _serialize(
        {
            "pk": token_pk(event.client_id),
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
    schedule: DueSchedule = DEFAULT_SCHEDULE,
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
    schedule: DueSchedule = DEFAULT_SCHEDULE,
    *,
    if_unused: bool = False,
) -> list[TransactWriteItemTypeDef]:
    """Rewrite the token's mutable attributes only if it is still at `expected_version` and not
    revoked: a racing change makes the whole transaction fail, and a revoked token stays revoked.

    With `if_unused`, also only if its idle clock is still the one `token` carries: the
    authorizer's last-seen write takes no lock, so the version alone cannot tell of a use."""
    plain = token_to_plain(token, schedule)
    names: dict[str, str] = {}
    values: Item = {}
    sets: list[str] = []
    removes: list[str] = []
    for i, attr in enumerate(_UPDATABLE):
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
    table: str, token: ServiceToken, schedule: DueSchedule = DEFAULT_SCHEDULE
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
            ":due_pk": {"S": TOKEN_ENTITY},
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


# -- the lifecycle run ---------------------------------------------------------------------------

RUN_KEY: Final[Item] = {"pk": {"S": RUN_PK}, "sk": {"S": RUN_SK}}


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


def encode_page_token(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str | None, allowed_keys: frozenset[str]) -> Item | None:
    """Decode a `next_token` we issued; anything else is a ValidationError naming the field."""
    if token is None:
        return None
    error = ValidationError("next_token", "is not a page token returned by this API")
    if not isinstance(token, str) or len(token) > 2048 or not token.isascii():
        raise error
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise error from exc
    if not isinstance(key, dict) or not key or not set(key) <= allowed_keys:
        raise error
    for value in key.values():
        if not (
            isinstance(value, dict)
            and len(value) == 1
            and (
                isinstance(value.get("S"), str)
                or (isinstance(value.get("N"), str) and value["N"].lstrip("-").isdigit())
            )
        ):
            raise error
    return key
