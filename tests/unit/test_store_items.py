"""The pure request builders: what the store asks DynamoDB, readable without AWS."""

import base64
from dataclasses import replace

import pytest

from gatekey.durations import Duration
from gatekey.errors import ValidationError
from gatekey.hashing import Hasher, SecretHash
from gatekey.model import (
    AuditAction,
    AuditEvent,
    RotationMode,
    RotationPolicy,
    TokenStatus,
    new_service_token,
)
from gatekey.store import items

NOW = 1_800_000_000
DELIVERY = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bot/creds-AbCdEf"


@pytest.fixture
def event() -> AuditEvent:
    return AuditEvent("gk_x", AuditAction.UPDATED, actor="arn:aws:iam::1:user/admin", at=NOW)


def test_every_field_survives_a_round_trip_through_an_item(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(
        name="deploy-bot",
        hasher=unit_hasher,
        now=NOW,
        owner="team@example.com",
        routes=("GET /items/*",),
        scopes=("read",),
        rotation=RotationPolicy(RotationMode.AUTO, DELIVERY),
    )
    token = replace(
        token,
        previous_secret_hash=SecretHash("p1", "ab" * 32),
        previous_client_secret_expires_at=NOW + 60,
        last_seen_at=NOW + 5,
        client_secret_version=2,
        version=7,
    )
    assert items.token_from_item(items.token_to_item(token)) == token


def test_absent_optionals_are_not_written(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, duration=Duration(None))
    item = items.token_to_item(token)
    for absent in ("owner", "expires_at", "previous_secret_hash", "last_seen_at", "expiry_pk"):
        assert absent not in item
    assert item["rotation"] == {"M": {"mode": {"S": "remind"}}}


def test_only_active_tokens_with_a_finite_expiry_are_in_the_expiry_index(
    unit_hasher: Hasher,
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    assert items.token_to_item(token)["expiry_pk"] == {"S": "token"}
    revoked = replace(token, status=TokenStatus.REVOKED)
    assert "expiry_pk" not in items.token_to_item(revoked)
    forever = replace(token, expires_at=None, duration=Duration(None))
    assert "expiry_pk" not in items.token_to_item(forever)


def test_update_is_conditional_on_version_and_not_revoked_and_spares_last_seen(
    unit_hasher: Hasher, event: AuditEvent
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, owner="o")
    stored = replace(token, owner=None, version=4)
    update, audit = items.update_request("t", stored, 3, event, retention_days=10)
    request = update["Update"]
    assert request["ConditionExpression"] == (
        "attribute_exists(pk) AND #version = :expected AND #status <> :revoked"
    )
    assert request["ExpressionAttributeValues"][":expected"] == {"N": "3"}
    assert request["ExpressionAttributeValues"][":revoked"] == {"S": "revoked"}
    names = request["ExpressionAttributeNames"]
    assert "last_seen_at" not in names.values()
    removed = request["UpdateExpression"].split(" REMOVE ")[1].split(", ")
    assert "owner" in {names[n] for n in removed}
    assert audit["Put"]["ConditionExpression"] == "attribute_not_exists(pk)"


def test_audit_items_sort_by_time_and_expire_through_ttl(event: AuditEvent) -> None:
    first = items.event_to_item(event, retention_days=10)
    later = items.event_to_item(replace(event, at=NOW + 1), retention_days=10)
    assert first["pk"] == {"S": "TOKEN#gk_x"}
    assert first["sk"]["S"] < later["sk"]["S"]
    assert first["ttl"] == {"N": str(NOW + 10 * 86400)}
    assert items.event_from_item(first) == event


def test_last_seen_is_written_at_most_once_per_interval() -> None:
    request = items.last_seen_request("t", "gk_x", now=1000, min_interval=300)
    assert request["ExpressionAttributeValues"][":threshold"] == {"N": "700"}
    assert "last_seen_at <= :threshold" in request["ConditionExpression"]


def test_page_tokens_round_trip() -> None:
    key = {"pk": {"S": "TOKEN#gk_x"}, "sk": {"S": "TOKEN"}}
    token = items.encode_page_token(key)
    assert token is not None
    assert items.decode_page_token(token, frozenset({"pk", "sk"})) == key
    assert items.encode_page_token(None) is None
    assert items.encode_page_token({}) is None


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"other": {"S": "x"}}').decode(),
        base64.urlsafe_b64encode(b'{"pk": {"B": "eA=="}}').decode(),
        base64.urlsafe_b64encode(b'{"pk": {"N": "1e9"}}').decode(),
        base64.urlsafe_b64encode(b"{}").decode(),
        "é",
        "A" * 5000,
    ],
)
def test_page_tokens_we_did_not_issue_are_rejected_naming_the_field(token: str) -> None:
    with pytest.raises(ValidationError, match="next_token"):
        items.decode_page_token(token, frozenset({"pk", "sk"}))
