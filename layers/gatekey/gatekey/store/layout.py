"""The table's layout, as plain values (no boto3 types): its keys and index attributes, a token
as plain attribute values and back, notice keys as stored, and page tokens (which carry
DynamoDB's key shape, `{"S": ...}`, so both stores page alike). The DynamoDB adapter
(gatekey.aws.dynamodb_items) turns these into attribute values and requests.

One table holds both kinds of item, so a token's audit trail is one Query away:

=========  =======================  ==========================  ==================================
item       pk                       sk                          extra keys
=========  =======================  ==========================  ==================================
token      ``TOKEN#<client_id>``    ``TOKEN``                   ``entity`` (by-name index),
                                                                ``due_pk`` (by-due, sparse)
audit      ``TOKEN#<client_id>``    ``EVENT#<at>#<random>``     ``ttl`` (DynamoDB TTL)
run        ``LIFECYCLE``            ``RUN``                     (none: in no index)
=========  =======================  ==========================  ==================================

A token's key is its Client ID as given: Gatekey's ``gk_...``, or an imported ``<32 hex>.access``
or Cognito id (credentials.ImportedFormat). None holds ``#``, and each format admits lower case
only where case could vary, so one id is one key; ``TOKEN#`` keeps them apart from other items.

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

Every function here is pure.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from gatekey.durations import parse_duration
from gatekey.errors import UnreadableItem, ValidationError
from gatekey.hashing import SecretHash
from gatekey.model import (
    EXPIRED,
    Milestone,
    NoticeKey,
    PendingNotice,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
)
from gatekey.revocations import AccessTokenRevocations
from gatekey.store.due import DueSchedule, next_due_at
from gatekey.usage_plans import PlanKey

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
DEFAULT_SCHEDULE: Final = DueSchedule()

# Attributes a token update rewrites. `last_seen_at` is left out on purpose: the authorizer
# writes it without taking the optimistic lock, and an admin change must not move it back.
# `idle_since` is rewritten (re-enabling restarts it), so a racing last-seen write can be undone
# there; harmless, since the lifecycle decides on `idle_clock()`, which reads last_seen_at too.
UPDATABLE: Final = (
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
    # bindings: absent when the token is not bound
    "bound_cidrs",
    "bound_apis",
    "usage_plan",  # gatekey.usage_plans
    "dpop_required",
)

# Attributes of the revoked access tokens (gatekey.revocations), written only by
# `save_revocations` under their own lock (`revocations_version`), never by an update: an
# admin change and a revocation never undo each other, and the token function's role may write
# these three only (template.yaml; tests/unit/test_template.py).
REVOCATION_ATTRIBUTES: Final = (
    "revoked_access_tokens",
    "access_tokens_not_before",
    "revocations_version",
)


def token_pk(client_id: str) -> str:
    return f"TOKEN#{client_id}"


def _hash_to_plain(value: SecretHash | None) -> dict[str, str] | None:
    return None if value is None else {"key_id": value.key_id, "digest": value.digest}


def lifecycle_done(token: ServiceToken) -> bool:
    """Revoked, or expired and told so: no lifecycle index needs the token any more."""
    return token.status is not TokenStatus.ACTIVE or EXPIRED in token.reminders_sent


# Notice keys as stored, in `reminders_sent` (numbers) and `reminders_pending` (text): a
# reminder as its days before expiry (positive), a milestone as its code below. These codes
# are in the table: never renumber one.
_MILESTONE_CODES: Final = {
    Milestone.EXPIRED: 0,
    Milestone.ROTATED: -1,
    Milestone.IDLE: -2,
    Milestone.PROMOTED: -3,
}
_MILESTONES: Final = {code: milestone for milestone, code in _MILESTONE_CODES.items()}


def _key_to_code(key: NoticeKey) -> int:
    return key if isinstance(key, int) else _MILESTONE_CODES[key]


def _key_from_code(code: int) -> NoticeKey:
    if code > 0:
        return code
    if code not in _MILESTONES:
        raise UnreadableItem(f"notice code {code} is unknown to this release")
    return _MILESTONES[code]


def _pending_to_text(pending: PendingNotice) -> str:
    """`<key>@<claimed_at>@<channel>,<channel>...`"""
    return f"{_key_to_code(pending.key)}@{pending.claimed_at}@{','.join(pending.done)}"


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
        "managed_by": token.managed_by,
        # Absent (None, so removed on write) unless set: items from before DPoP read False.
        "dpop_required": True if token.dpop_required else None,
        **revocations_to_plain(token.revoked_access_tokens),
        # bindings: absent (removed on update) when the token is not bound
        "bound_cidrs": list(token.bound_cidrs) or None,
        "bound_apis": list(token.bound_apis) or None,
        "usage_plan": _plan_key_to_plain(token.usage_plan),
    }


def revocations_to_plain(revocations: AccessTokenRevocations) -> dict[str, Any]:
    """The revoked access tokens as attributes: a map jti -> exp, the watermark, their lock
    (all None, so absent, before the first revocation)."""
    if revocations.version == 0:
        return dict.fromkeys(REVOCATION_ATTRIBUTES)
    return {
        "revoked_access_tokens": dict(revocations.ids),
        "access_tokens_not_before": revocations.not_before,
        "revocations_version": revocations.version,
    }


def _revocations_from_plain(plain: Mapping[str, Any]) -> AccessTokenRevocations:
    ids = plain.get("revoked_access_tokens") or {}
    return AccessTokenRevocations(
        tuple((jti, int(exp)) for jti, exp in ids.items()),
        int(plain.get("access_tokens_not_before", 0)),
        int(plain.get("revocations_version", 0)),
    )


def _hash_from_plain(value: Mapping[str, str] | None) -> SecretHash | None:
    return None if value is None else SecretHash(value["key_id"], value["digest"])


def token_from_plain(plain: Mapping[str, Any]) -> ServiceToken:
    """The token from its plain attribute values (token_to_plain's)."""
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
        revoked_access_tokens=_revocations_from_plain(plain),
        bound_cidrs=tuple(plain.get("bound_cidrs") or ()),
        bound_apis=tuple(plain.get("bound_apis") or ()),
        managed_by=plain.get("managed_by"),
        usage_plan=_plan_key_from_plain(plain.get("usage_plan")),
        dpop_required=bool(plain.get("dpop_required", False)),
    )


# -- a metered token's usage plan and API key (gatekey.usage_plans) ---------------------------


def _plan_key_to_plain(key: PlanKey | None) -> dict[str, str] | None:
    if key is None:
        return None
    return {
        "plan": key.plan,
        "plan_id": key.plan_id,
        "api_key_id": key.api_key_id,
        "api_key_value": key.api_key_value,
    }


def _plan_key_from_plain(value: Mapping[str, str] | None) -> PlanKey | None:
    if value is None:
        return None
    return PlanKey(value["plan"], value["plan_id"], value["api_key_id"], value["api_key_value"])


def encode_page_token(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str | None, allowed_keys: frozenset[str]) -> dict[str, Any] | None:
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
