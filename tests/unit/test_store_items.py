"""The pure request builders: what the store asks DynamoDB, readable without AWS."""

import base64
from dataclasses import replace
from typing import Any

import pytest

from gatekey.aws import dynamodb_items as items
from gatekey.durations import DAY, Duration
from gatekey.errors import UnreadableItem, ValidationError
from gatekey.hashing import Hasher, SecretHash
from gatekey.model import (
    EXPIRED,
    IDLE,
    PROMOTED,
    ROTATED,
    AuditAction,
    AuditEvent,
    PendingNotice,
    RotationMode,
    RotationPolicy,
    TokenStatus,
    new_service_token,
)
from gatekey.store import DueSchedule, layout
from support.constants import DELIVERY, NOW


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
        managed_by="arn:aws:cloudformation:us-east-1:123456789012:stack/bots-a/0f1e",
    )
    assert items.token_from_item(items.token_to_item(token)) == token


def test_absent_optionals_are_not_written(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, duration=Duration(None))
    item = items.token_to_item(token)
    absent = ("owner", "expires_at", "previous_secret_hash", "last_seen_at", "due_pk", "expiry_pk")
    absent += ("managed_by",)
    for name in absent:
        assert name not in item
    assert item["rotation"] == {"M": {"mode": {"S": "remind"}}}


def test_tokens_with_lifecycle_work_ahead_are_in_by_due_at_its_time_and_none_in_by_expiry(
    unit_hasher: Hasher,
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)  # 8760h by default
    item = items.token_to_item(token, DueSchedule((60, 7)))
    assert (item["due_pk"], item["next_due_at"]) == ({"S": "token"}, {"N": str(NOW + 305 * DAY)})
    assert "expiry_pk" not in item
    for done in (
        replace(token, status=TokenStatus.REVOKED),
        replace(token, reminders_sent=(EXPIRED,)),
    ):
        assert "due_pk" not in items.token_to_item(done)
        assert "next_due_at" not in items.token_to_item(done)


def test_every_update_rewrites_the_due_time_and_takes_the_token_out_of_by_expiry(
    unit_hasher: Hasher, event: AuditEvent
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    request = items.update_request("t", token, 1, event, 10)[0]["Update"]
    names = request["ExpressionAttributeNames"]
    sets, removes = request["UpdateExpression"].removeprefix("SET ").split(" REMOVE ")
    assert {"due_pk", "next_due_at"} <= {names[a.split(" = ")[0]] for a in sets.split(", ")}
    assert "expiry_pk" in {names[a] for a in removes.split(", ")}


def test_an_update_if_unused_holds_only_while_the_idle_clock_is_as_read(
    unit_hasher: Hasher, event: AuditEvent
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    plain = items.update_request("t", token, 1, event, 10)[0]["Update"]
    assert "#seen" not in plain["ConditionExpression"]
    never_seen = items.update_request("t", token, 1, event, 10, if_unused=True)[0]["Update"]
    assert never_seen["ConditionExpression"].endswith(
        " AND attribute_not_exists(#seen) AND #idle = :idle_read"
    )
    seen = replace(token, last_seen_at=NOW + 5, idle_since=NOW + 5)
    request = items.update_request("t", seen, 1, event, 10, if_unused=True)[0]["Update"]
    assert request["ConditionExpression"].endswith(" AND #seen = :seen_read AND #idle = :idle_read")
    values = request["ExpressionAttributeValues"]
    assert values[":seen_read"] == values[":idle_read"] == {"N": str(NOW + 5)}
    names = request["ExpressionAttributeNames"]
    assert (names["#seen"], names["#idle"]) == ("last_seen_at", "idle_since")


def test_reindex_writes_only_the_due_time_if_the_version_is_unchanged(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    request = items.reindex_request("t", replace(token, version=3))
    assert request["UpdateExpression"] == (
        "SET due_pk = :due_pk, next_due_at = :due REMOVE expiry_pk"
    )
    assert request["ConditionExpression"] == "attribute_exists(pk) AND #version = :expected"
    assert request["ExpressionAttributeValues"][":expected"] == {"N": "3"}
    assert request["ExpressionAttributeValues"][":due"] == {"N": str(NOW + 335 * DAY)}
    revoked = replace(token, status=TokenStatus.REVOKED)
    assert items.reindex_request("t", revoked)["UpdateExpression"] == (
        "REMOVE due_pk, next_due_at, expiry_pk"
    )


def test_a_runs_progress_is_written_only_while_the_item_is_that_runs() -> None:
    new = items.run_state_request("t", "run-1", NOW, {}, replaces=None)
    assert "ConditionExpression" not in new
    progress = items.run_state_request("t", "run-1", NOW, {"due": None, "grace": "abc"}, "run-1")
    assert progress["ConditionExpression"] == "run_id = :replaces"
    stored = {name[1:]: value for name, value in progress["ExpressionAttributeValues"].items()}
    item = {"run_id": stored["run"], "due_before": stored["before"], **stored}
    assert items.run_state_from_item(item) == ("run-1", NOW, {"due": None, "grace": "abc"})


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
    token = layout.encode_page_token(key)
    assert token is not None
    assert layout.decode_page_token(token, frozenset({"pk", "sk"})) == key
    assert layout.encode_page_token(None) is None
    assert layout.encode_page_token({}) is None


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
        layout.decode_page_token(token, frozenset({"pk", "sk"}))


def test_notice_keys_are_stored_as_the_numbers_items_already_in_the_table_hold(
    unit_hasher: Hasher,
) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    typed = replace(
        token,
        reminders_sent=(30, 7, EXPIRED, ROTATED, PROMOTED),
        reminders_pending=(PendingNotice(1, NOW, ("sns",)), PendingNotice(IDLE, 0)),
    )
    item = items.token_to_item(typed)
    assert item["reminders_sent"] == {"L": [{"N": n} for n in ("30", "7", "0", "-1", "-3")]}
    assert item["reminders_pending"] == {"L": [{"S": f"1@{NOW}@sns"}, {"S": "-2@0@"}]}
    assert items.token_from_item(item) == typed


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("reminders_sent", {"L": [{"N": "-9"}]}), ("reminders_pending", {"L": [{"S": "-9@0@"}]})],
)
def test_a_notice_code_this_release_does_not_know_is_an_unreadable_item_not_a_crash(
    unit_hasher: Hasher, attribute: str, value: dict[str, Any]
) -> None:
    # e.g. written by a newer release, then rolled back: the authorizer fails closed with a
    # reason, the lifecycle reports the token and goes on (both catch GatekeyError).
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    item = {**items.token_to_item(token), attribute: value}
    with pytest.raises(UnreadableItem, match="notice code -9"):
        items.token_from_item(item)
