"""The admin's decisions on the in-memory store, without AWS: what each field a person sets may
be, what create, update, rotate, refresh, revoke and delete do to a token and its audit trail,
lost races, paging, and the secret that leaves only once. The admin API's routes, its error
bodies and the DynamoDB adapter's paths stay on moto, in tests/integration/test_admin_*.py."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gatekey.admin import Actor, Issued, TokenAdmin, parse_grace
from gatekey.credentials import ClientSecret, generate_client_id
from gatekey.durations import DAY, HOUR, Duration, parse_duration
from gatekey.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    GatekeyError,
    InvalidCredentials,
    InvalidDuration,
    InvalidTransition,
    MalformedCredential,
    NotFound,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.model import (
    PROMOTED,
    AuditAction,
    AuditEvent,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
)
from gatekey.store import InMemoryTokenStore
from support.admin import (
    ACTOR,
    RacingStore,
    access_credential,
    admin_builder,
    bring,
    cognito_credential,
    issue,
)
from support.constants import ADMIN_ARN, DELIVERY, NOW
from support.lifecycle import Clock, FakeDelivery, RecordingNotifier, lifecycle_builder

AUTO = RotationPolicy(RotationMode.AUTO, DELIVERY)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> RacingStore:
    return RacingStore()


@pytest.fixture
def hasher(unit_hasher: Hasher) -> Hasher:
    return unit_hasher


@pytest.fixture
def make_admin(store: RacingStore, hasher: Hasher, clock: Clock) -> Callable[[], TokenAdmin]:
    return admin_builder(store, hasher, clock)


@pytest.fixture
def admin(make_admin: Callable[[], TokenAdmin]) -> TokenAdmin:
    return make_admin()


def at(epoch: str) -> int:
    return int(datetime.fromisoformat(epoch).replace(tzinfo=UTC).timestamp())


def stored(store: InMemoryTokenStore, client_id: str) -> ServiceToken:
    return store.get(client_id, consistent=True)


def actions(admin: TokenAdmin, client_id: str) -> list[str]:
    """The token's audit trail, newest first."""
    return [e.action.value for e in admin.events(client_id, limit=100).items]


def works(token: ServiceToken, secret: ClientSecret, hasher: Hasher, now: int) -> bool:
    try:
        token.authenticate(secret, hasher, now)
    except InvalidCredentials:
        return False
    return True


def refused(call: Callable[[], object], error: type[GatekeyError] = ValidationError) -> Any:
    """The error `call` raises, of type `error`."""
    with pytest.raises(error) as raised:
        call()
    return raised.value


# -- create ----------------------------------------------------------------------------------


def test_create_hands_out_the_secret_once_and_stores_every_field_but_the_secret(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    issued = issue(
        admin,
        duration=Duration(960),
        routes=("GET /items/*",),
        scopes=("read",),
        owner="platform@example.com",
        rotation=AUTO,
    )
    token = issued.token
    assert token.client_id.startswith("gk_")
    assert issued.secret.reveal().startswith("gks_")
    assert token.expires_at == at("2027-02-24T08:00:00")
    assert (token.routes, token.scopes, token.owner) == (
        ("GET /items/*",),
        ("read",),
        "platform@example.com",
    )
    assert token.rotation == AUTO
    assert (token.status, token.enabled, token.client_secret_version) == (
        TokenStatus.ACTIVE,
        True,
        1,
    )
    assert (token.created_at, token.updated_at, token.idle_since, token.version) == (
        NOW,
        NOW,
        NOW,
        1,
    )
    # AND the store holds what was answered, which the secret authenticates against
    assert stored(store, token.client_id) == token
    assert stored(store, token.client_id).authenticate(issued.secret, hasher, NOW).version == 1
    # AND reading it again never shows the secret
    assert issued.secret.reveal() not in repr(admin.get(token.client_id))
    assert issued.secret.reveal() not in repr(issued)


def test_create_is_audited_with_every_field_set_naming_the_actor_and_source(
    admin: TokenAdmin,
) -> None:
    client_id = issue(admin, scopes=("read", "write"), owner="ops@example.com").token.client_id
    [event] = admin.events(client_id).items
    assert event == AuditEvent(
        client_id,
        AuditAction.CREATED,
        ADMIN_ARN,
        NOW,
        "198.51.100.7",
        {
            "name": "ci-bot",
            "duration": "8760h",
            "routes": ["*"],
            "scopes": ["read", "write"],
            "owner": "ops@example.com",
            "rotation": "remind",
        },
    )


def test_a_token_of_forever_never_expires(admin: TokenAdmin) -> None:
    token = issue(admin, duration=parse_duration("forever")).token
    assert (token.expires_at, str(token.duration)) == (None, "forever")


def test_repeated_routes_and_scopes_are_kept_once(admin: TokenAdmin) -> None:
    token = issue(admin, routes=("GET /a", "GET /a"), scopes=("read", "read")).token
    assert (token.routes, token.scopes) == (("GET /a",), ("read",))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": " padded"}, "name"),
        ({"name": 42}, "name"),
        ({"routes": ("items",)}, "routes"),
        ({"routes": ()}, "routes"),
        ({"routes": tuple(f"GET /{i}" for i in range(101))}, "routes"),
        ({"scopes": ("has space",)}, "scopes"),
        ({"scopes": tuple(f"{i:02d}" + "s" * 126 for i in range(9))}, "scopes"),
        ({"scopes": tuple(f"s{i}" for i in range(51))}, "scopes"),
        ({"owner": "ops@example.com\u202e"}, "owner"),
        ({"owner": "ops\x85"}, "owner"),
        ({"owner": ""}, "owner"),
        # rotated at its first reminder (30 days before expiry), it would be due again at once
        ({"duration": Duration(720), "rotation": AUTO}, "duration"),
    ],
)
def test_bad_fields_are_refused_on_create_naming_the_field_and_nothing_is_stored(
    admin: TokenAdmin, fields: dict[str, Any], field: str
) -> None:
    error = refused(lambda: issue(admin, **fields))
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert admin.list().items == []


@pytest.mark.parametrize("text", ["1w", "2h45m", "-5h", "999999h", "0h", "bad", "\uff18h"])
def test_a_duration_that_is_not_whole_hours_in_range_or_forever_is_refused_naming_it(
    text: str,
) -> None:
    error = refused(lambda: parse_duration(text), InvalidDuration)
    assert (error.field, error.reason) == ("duration", "invalid_duration")


@pytest.mark.parametrize(
    ("mode", "arn", "message"),
    [
        (RotationMode.AUTO, None, "is required for 'auto'"),
        (RotationMode.AUTO, "bot/creds", "must be a Secrets Manager ARN"),
        (RotationMode.REMIND, DELIVERY, "is only used with 'auto'"),
    ],
)
def test_auto_rotation_needs_a_secrets_manager_arn_to_deliver_to_and_remind_none(
    mode: RotationMode, arn: str | None, message: str
) -> None:
    error = refused(lambda: RotationPolicy(mode, arn))
    assert error.field == "rotation.delivery_secret_arn"
    assert message in error.message


def test_auto_rotation_is_refused_where_it_would_rotate_every_day(
    admin: TokenAdmin, store: InMemoryTokenStore
) -> None:
    # An `auto` token rotates at its first reminder (30 days before expiry): with a duration of
    # 30 days or less its new expiry would be due again at once, and rotate in every run.
    short = issue(admin, duration=Duration(720)).token
    error = refused(lambda: admin.update(ACTOR, short.client_id, rotation=AUTO))
    assert (error.field, error.reason) == ("rotation.mode", "invalid_input")
    assert "720h" in error.message
    rotating = issue(admin, duration=Duration(8760), rotation=AUTO).token
    error = refused(lambda: admin.refresh(ACTOR, rotating.client_id, duration=Duration(24)))
    assert error.field == "duration"
    assert "24h" in error.message
    # AND nothing was written: both tokens are as they were created
    for token in (short, rotating):
        assert stored(store, token.client_id) == token
        assert actions(admin, token.client_id) == ["created"]
    # AND a day longer than the first reminder is enough
    assert issue(admin, duration=Duration(721), rotation=AUTO).token.rotation == AUTO


# -- list, get and events ----------------------------------------------------------------------


def test_list_pages_and_filters_by_name_and_status(admin: TokenAdmin) -> None:
    made = [issue(admin, name=f"bot-{i % 2}").token.client_id for i in range(5)]
    admin.revoke(ACTOR, made[0])
    seen: list[str] = []
    next_token = None
    while True:
        page = admin.list(limit=2, next_token=next_token)
        assert len(page.items) <= 2
        seen += [t.client_id for t in page.items]
        next_token = page.next_token
        if next_token is None:
            break
    assert sorted(seen) == sorted(made)
    assert {t.client_id for t in admin.list(name="bot-1").items} == set(made[1::2])
    assert [t.client_id for t in admin.list(status=TokenStatus.REVOKED).items] == [made[0]]
    assert made[0] not in {t.client_id for t in admin.list(status=TokenStatus.ACTIVE).items}


def test_a_page_token_the_store_did_not_issue_is_refused_naming_next_token(
    admin: TokenAdmin,
) -> None:
    client_id = issue(admin).token.client_id
    for read in (
        lambda: admin.list(next_token="garbage!"),
        lambda: admin.events(client_id, next_token="garbage!"),
    ):
        assert refused(read).field == "next_token"


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_a_page_size_out_of_range_is_refused(admin: TokenAdmin, limit: int) -> None:
    refused(lambda: admin.list(limit=limit))


def test_a_malformed_client_id_is_refused_before_any_lookup(admin: TokenAdmin) -> None:
    for call in (
        lambda: admin.get("gk_not-an-id"),
        lambda: admin.events("../../etc"),
        lambda: admin.revoke(ACTOR, "gk_bad"),
    ):
        assert refused(call, MalformedCredential).field == "client_id"


def test_events_name_the_actor_and_source_newest_first_and_page(
    admin: TokenAdmin, clock: Clock
) -> None:
    client_id = issue(admin).token.client_id
    for i in range(4):
        clock.now = NOW + i + 1
        admin.update(ACTOR, client_id, name=f"n{i}")
    first = admin.events(client_id, limit=3)
    assert [e.action for e in first.items] == [AuditAction.UPDATED] * 3
    newest = first.items[0]
    assert (newest.actor, newest.source_ip, newest.at) == (ADMIN_ARN, "198.51.100.7", NOW + 4)
    assert newest.details == {"name": "n3"}
    assert first.next_token is not None
    rest = admin.events(client_id, limit=3, next_token=first.next_token)
    assert [e.action.value for e in rest.items] == ["updated", "created"]
    assert rest.next_token is None


# -- update, disable and enable ---------------------------------------------------------------


def test_an_update_changes_only_what_is_given(
    admin: TokenAdmin, store: InMemoryTokenStore, clock: Clock
) -> None:
    token = issue(admin, owner="a@example.com", scopes=("read",)).token
    clock.now = NOW + 60
    changed = admin.update(ACTOR, token.client_id, name="renamed", routes=("POST /orders",))
    assert (changed.name, changed.routes, changed.scopes, changed.owner) == (
        "renamed",
        ("POST /orders",),
        ("read",),
        "a@example.com",
    )
    assert (changed.version, changed.updated_at, changed.secret_hash) == (
        2,
        NOW + 60,
        token.secret_hash,
    )
    assert stored(store, token.client_id) == changed
    [event, _] = admin.events(token.client_id).items
    assert (event.action, event.details) == (
        AuditAction.UPDATED,
        {"name": "renamed", "routes": ["POST /orders"]},
    )
    cleared = admin.update(ACTOR, token.client_id, clear_owner=True)
    assert cleared.owner is None
    assert admin.events(token.client_id).items[0].details == {"owner": None}


def test_an_update_naming_no_field_is_refused_and_writes_nothing(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    assert refused(lambda: admin.update(ACTOR, client_id)).field == "body"
    assert actions(admin, client_id) == ["created"]


def test_a_rotation_policy_change_is_audited_by_its_mode(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    assert admin.update(ACTOR, client_id, rotation=AUTO).rotation == AUTO
    assert admin.events(client_id).items[0].details == {"rotation": "auto"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"owner": "moc.elpmaxe\u202e"}, "owner"),
        ({"name": "tab\there"}, "name"),
        ({"routes": ("items",)}, "routes"),
        ({"scopes": ("has space",)}, "scopes"),
    ],
)
def test_a_bad_field_is_refused_on_update_too_and_the_token_stays_as_it_was(
    admin: TokenAdmin, store: InMemoryTokenStore, fields: dict[str, Any], field: str
) -> None:
    token = issue(admin, owner="ops@example.com").token
    assert refused(lambda: admin.update(ACTOR, token.client_id, **fields)).field == field
    assert stored(store, token.client_id) == token
    assert stored(store, token.client_id).owner == "ops@example.com"


def test_disable_and_enable_are_audited_as_such(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    assert admin.update(ACTOR, client_id, enabled=False).enabled is False
    assert admin.update(ACTOR, client_id, enabled=True).enabled is True
    assert actions(admin, client_id) == ["enabled", "disabled", "created"]
    assert admin.events(client_id).items[0].details == {"enabled": True}


def test_enabling_with_another_change_is_an_update(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    admin.update(ACTOR, client_id, enabled=False, name="parked")
    assert admin.events(client_id).items[0].details == {"name": "parked", "enabled": False}
    assert actions(admin, client_id) == ["updated", "created"]


def test_re_enabling_starts_the_idle_clock_again_and_enabling_an_enabled_token_does_not(
    admin: TokenAdmin, clock: Clock
) -> None:
    client_id = issue(admin).token.client_id
    clock.now = NOW + DAY
    assert admin.update(ACTOR, client_id, enabled=True).idle_since == NOW
    admin.update(ACTOR, client_id, enabled=False)
    clock.now = NOW + 2 * DAY
    assert admin.update(ACTOR, client_id, enabled=True).idle_since == NOW + 2 * DAY


# -- rotate ------------------------------------------------------------------------------------


def test_rotate_without_grace_stops_the_old_secret_at_once(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    token = issue(admin)
    rotated = admin.rotate(ACTOR, token.token.client_id)
    assert rotated.secret.reveal() != token.secret.reveal()
    assert rotated.token.client_secret_version == 2
    assert rotated.token.previous_client_secret_expires_at is None
    assert rotated.token.previous_secret_hash is None
    now = stored(store, token.token.client_id)
    with pytest.raises(InvalidCredentials, match="does not match"):
        now.authenticate(token.secret, hasher, NOW)
    assert now.authenticate(rotated.secret, hasher, NOW).version == 2
    [event, _] = admin.events(token.token.client_id).items
    assert (event.action, event.details) == (
        AuditAction.ROTATED,
        {"client_secret_version": 2, "previous_client_secret_expires_at": None},
    )


def test_rotate_with_a_grace_or_an_end_time(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    graced = admin.rotate(ACTOR, client_id, grace=parse_grace("24h")).token
    assert graced.previous_client_secret_expires_at == at("2027-01-16T08:00:00")
    dated = admin.rotate(ACTOR, client_id, previous_expires_at=at("2027-01-20T08:00:00")).token
    assert dated.previous_client_secret_expires_at == at("2027-01-20T08:00:00")
    assert dated.client_secret_version == 3
    assert admin.events(client_id).items[0].details == {
        "client_secret_version": 3,
        "previous_client_secret_expires_at": at("2027-01-20T08:00:00"),
    }


def test_a_grace_window_keeps_both_secrets_working_until_it_ends(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    old = issue(admin)
    client_id = old.token.client_id
    new = admin.rotate(ACTOR, client_id, grace=Duration(1)).secret
    token = stored(store, client_id)
    assert token.authenticate(old.secret, hasher, NOW + 3599).version == 1
    assert token.authenticate(new, hasher, NOW + 3599).version == 2
    assert not works(token, old.secret, hasher, NOW + 3600)
    assert works(token, new, hasher, NOW + 3600)
    assert not works(token, ClientSecret.generate(), hasher, NOW)


def test_the_grace_keeps_only_the_secret_just_replaced(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    first = issue(admin)
    client_id = first.token.client_id
    second = admin.rotate(ACTOR, client_id, grace=Duration(24)).secret
    admin.rotate(ACTOR, client_id, grace=Duration(24))
    token = stored(store, client_id)
    assert not works(token, first.secret, hasher, NOW)
    assert token.authenticate(second, hasher, NOW).version == 2


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"grace": "721h"}, "grace"),
        ({"grace": "forever"}, "grace"),
        ({"grace": "-1h"}, "grace"),
        ({"grace": "0h"}, "grace"),
        ({"grace": Duration(721)}, "grace"),
        ({"grace": Duration(None)}, "grace"),
        ({"previous_expires_at": "2027-03-01T00:00:00"}, "previous_client_secret_expires_at"),
        ({"previous_expires_at": "2026-01-01T00:00:00"}, "previous_client_secret_expires_at"),
        ({"previous_expires_at": "2027-01-15T08:00:00"}, "previous_client_secret_expires_at"),
        ({"grace": "1h", "previous_expires_at": "2027-01-16T00:00:00"}, "grace"),
    ],
)
def test_bad_rotation_windows_are_refused_naming_the_field_and_change_nothing(
    admin: TokenAdmin, store: InMemoryTokenStore, window: dict[str, Any], field: str
) -> None:
    token = issue(admin).token
    grace, end = window.get("grace"), window.get("previous_expires_at")

    def rotate() -> Issued:
        return admin.rotate(
            ACTOR,
            token.client_id,
            grace=parse_grace(grace) if isinstance(grace, str) else grace,
            previous_expires_at=at(end) if end else None,
        )

    assert refused(rotate).field == field
    assert stored(store, token.client_id) == token
    assert actions(admin, token.client_id) == ["created"]


def test_the_longest_grace_is_thirty_days(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    longest = NOW + 30 * DAY
    graced = admin.rotate(ACTOR, client_id, grace=Duration(720)).token
    assert graced.previous_client_secret_expires_at == longest
    dated = admin.rotate(ACTOR, client_id, previous_expires_at=longest).token
    assert dated.previous_client_secret_expires_at == longest


def test_a_manual_rotate_while_a_delivery_is_pending_keeps_the_secret_the_consumer_reads(
    admin: TokenAdmin,
    store: InMemoryTokenStore,
    hasher: Hasher,
    clock: Clock,
    fake_notifier: RecordingNotifier,
    fake_delivery: FakeDelivery,
) -> None:
    lifecycle = lifecycle_builder(store, hasher, fake_notifier, fake_delivery, clock)()
    # GIVEN an `auto` token whose consumer reads its secret from a delivery secret
    delivery = fake_delivery.create("bot/gatekey")
    issued = issue(
        admin,
        name="auto-bot",
        duration=Duration(960),
        rotation=RotationPolicy(RotationMode.AUTO, delivery),
    )
    client_id, consumers = issued.token.client_id, issued.secret
    # AND an automatic rotation that staged a new secret but could not make it current
    clock.now = NOW + 10 * DAY
    fake_delivery.promote_fails = True
    assert lifecycle.run().failed
    fake_delivery.promote_fails = False
    staged = ClientSecret.parse(fake_delivery.pending(delivery)["client_secret"])
    assert stored(store, client_id).delivery_pending is not None
    # WHEN an admin rotates the token by hand, with a day's grace
    mine = admin.rotate(ACTOR, client_id, grace=Duration(24))
    # THEN the admin's new secret works, and so does the one the consumer reads, for the grace;
    # the staged one, which nobody was given, does not
    token = stored(store, client_id)
    assert works(token, mine.secret, hasher, clock.now)
    assert works(token, consumers, hasher, clock.now + DAY - 1)
    assert not works(token, consumers, hasher, clock.now + DAY)
    assert not works(token, staged, hasher, clock.now)
    # AND the delivery is abandoned, and said to be
    assert (token.delivery_pending, PROMOTED in token.reminders_sent) == (None, False)
    assert admin.events(client_id, limit=1).items[0].details["abandoned_delivery"] is True
    # WHEN the next lifecycle run finds Secrets Manager working again
    clock.now = NOW + 11 * DAY
    report = lifecycle.run()
    assert (report.failed, report.rotated) == ([], [client_id])
    # THEN what the consumer reads now is a fresh secret that works, never the staged one
    fresh = ClientSecret.parse(fake_delivery.current(delivery)["client_secret"])
    assert fresh.reveal() not in (staged.reveal(), consumers.reveal(), mine.secret.reveal())
    token = stored(store, client_id)
    assert works(token, fresh, hasher, clock.now)
    assert not works(token, staged, hasher, clock.now)
    # AND the admin's secret keeps working through the new rotation's grace
    assert works(token, mine.secret, hasher, clock.now)


def test_a_manual_rotate_abandoning_a_delivery_with_no_earlier_secret_keeps_none(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    # GIVEN a staged delivery (not current) and no earlier secret any consumer could hold
    token = issue(admin, duration=Duration(960), rotation=AUTO).token
    store.update(
        replace(token, delivery_pending="v1"),
        AuditEvent(token.client_id, AuditAction.UPDATED, ADMIN_ARN, NOW),
    )
    # WHEN an admin rotates by hand, asking for a grace
    rotated = admin.rotate(ACTOR, token.client_id, grace=Duration(24)).token
    # THEN there is nothing to keep: no grace, and the staged secret is dropped
    assert (rotated.previous_secret_hash, rotated.previous_client_secret_expires_at) == (None, None)
    assert rotated.delivery_pending is None
    assert admin.events(token.client_id).items[0].details == {
        "client_secret_version": 2,
        "previous_client_secret_expires_at": None,
        "abandoned_delivery": True,
    }


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_extends_by_the_tokens_duration_or_a_given_one(
    admin: TokenAdmin, clock: Clock
) -> None:
    client_id = issue(admin, duration=Duration(24)).token.client_id
    clock.now = NOW + HOUR
    same = admin.refresh(ACTOR, client_id)
    assert (same.expires_at, str(same.duration)) == (at("2027-01-16T09:00:00"), "24h")
    longer = admin.refresh(ACTOR, client_id, duration=Duration(48))
    assert (longer.expires_at, str(longer.duration)) == (at("2027-01-17T09:00:00"), "48h")
    forever = admin.refresh(ACTOR, client_id, duration=Duration(None))
    assert forever.expires_at is None
    assert admin.events(client_id).items[0].details == {"duration": "forever", "expires_at": None}
    assert actions(admin, client_id) == ["refreshed"] * 3 + ["created"]


def test_a_refreshed_expiry_earns_its_reminders_again_but_a_pending_delivery_goes_on(
    admin: TokenAdmin, store: InMemoryTokenStore
) -> None:
    token = issue(admin, duration=Duration(960), rotation=AUTO).token
    reminded = replace(token, reminders_sent=(30, 7, PROMOTED), delivery_pending="v2")
    store.update(reminded, AuditEvent(token.client_id, AuditAction.UPDATED, ADMIN_ARN, NOW))
    refreshed = admin.refresh(ACTOR, token.client_id)
    assert (refreshed.reminders_sent, refreshed.reminders_pending) == ((PROMOTED,), ())
    assert refreshed.delivery_pending == "v2"


# -- revoke and delete -------------------------------------------------------------------------


def test_revocation_is_final(admin: TokenAdmin, store: InMemoryTokenStore) -> None:
    client_id = issue(admin).token.client_id
    revoked = admin.revoke(ACTOR, client_id)
    assert (revoked.status, stored(store, client_id).status) == (TokenStatus.REVOKED,) * 2
    for change in (
        lambda: admin.update(ACTOR, client_id, enabled=True),
        lambda: admin.update(ACTOR, client_id, name="again"),
        lambda: admin.rotate(ACTOR, client_id),
        lambda: admin.refresh(ACTOR, client_id),
        lambda: admin.revoke(ACTOR, client_id),
    ):
        error = refused(change, InvalidTransition)
        assert error.reason == "invalid_transition"
        assert "revoked" in error.message
    assert stored(store, client_id) == revoked
    assert actions(admin, client_id) == ["revoked", "created"]


def test_a_second_revoke_is_an_invalid_transition_that_writes_no_event(
    admin: TokenAdmin,
) -> None:
    client_id = issue(admin).token.client_id
    admin.revoke(ACTOR, client_id)
    error = refused(lambda: admin.revoke(ACTOR, client_id), InvalidTransition)
    assert error.message == f"service token {client_id} is revoked; it cannot be revoked again"
    assert isinstance(error, Conflict)
    assert actions(admin, client_id) == ["revoked", "created"]


def test_revoking_ends_a_grace_at_once(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    old = issue(admin)
    admin.rotate(ACTOR, old.token.client_id, grace=Duration(24))
    revoked = admin.revoke(ACTOR, old.token.client_id)
    assert (revoked.previous_secret_hash, revoked.previous_client_secret_expires_at) == (None, None)
    assert not works(stored(store, old.token.client_id), old.secret, hasher, NOW)


def test_delete_then_not_found_and_the_audit_trail_remains(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    admin.delete(ACTOR, client_id)
    error = refused(lambda: admin.get(client_id), NotFound)
    assert error.reason == "not_found"
    assert actions(admin, client_id) == ["deleted", "created"]
    assert admin.list().items == []


def test_a_revoked_token_can_still_be_deleted(admin: TokenAdmin) -> None:
    client_id = issue(admin).token.client_id
    admin.revoke(ACTOR, client_id)
    admin.delete(ACTOR, client_id)
    assert actions(admin, client_id) == ["deleted", "revoked", "created"]


def test_an_unknown_token_is_not_found_for_every_operation(admin: TokenAdmin) -> None:
    ghost = generate_client_id()
    for call in (
        lambda: admin.get(ghost),
        lambda: admin.update(ACTOR, ghost, name="x"),
        lambda: admin.delete(ACTOR, ghost),
        lambda: admin.rotate(ACTOR, ghost),
        lambda: admin.refresh(ACTOR, ghost),
        lambda: admin.revoke(ACTOR, ghost),
    ):
        assert refused(call, NotFound).reason == "not_found"
    assert admin.events(ghost).items == []


# -- races -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda admin, client_id: admin.update(ACTOR, client_id, enabled=False),
        lambda admin, client_id: admin.rotate(ACTOR, client_id, grace=Duration(1)),
        lambda admin, client_id: admin.refresh(ACTOR, client_id),
        lambda admin, client_id: admin.revoke(ACTOR, client_id),
        lambda admin, client_id: admin.delete(ACTOR, client_id),
    ],
    ids=["disable", "rotate", "refresh", "revoke", "delete"],
)
def test_a_change_that_loses_a_race_is_a_concurrent_modification_and_writes_nothing(
    make_admin: Callable[[], TokenAdmin], store: RacingStore, change: Any
) -> None:
    mine, theirs = make_admin(), make_admin()
    client_id = issue(mine).token.client_id
    # GIVEN another admin renaming the token between my read and my write
    store.before_write = lambda: theirs.update(ACTOR, client_id, name="theirs")
    error = refused(lambda: change(mine, client_id), ConcurrentModification)
    assert error.reason == "concurrent_modification"
    assert isinstance(error, Conflict)
    # THEN only their change is stored and audited
    assert (stored(store, client_id).name, stored(store, client_id).version) == ("theirs", 2)
    assert actions(mine, client_id) == ["updated", "created"]


def test_concurrent_rotate_refresh_enable_and_revoke_lose_nothing_and_revocation_holds(
    make_admin: Callable[[], TokenAdmin], store: InMemoryTokenStore, hasher: Hasher
) -> None:
    # GIVEN four admins and one token
    admins = [make_admin() for _ in range(4)]
    issued = issue(admins[0])
    client_id = issued.token.client_id
    operations: list[Callable[[TokenAdmin], object]] = [
        lambda a: a.rotate(ACTOR, client_id, grace=Duration(1)),
        lambda a: a.refresh(ACTOR, client_id),
        lambda a: a.update(ACTOR, client_id, enabled=True),
        lambda a: a.revoke(ACTOR, client_id),
    ]
    results: list[tuple[int, object]] = []  # (operation, answer or Conflict)
    barrier = threading.Barrier(len(admins))

    def run(admin: TokenAdmin, index: int) -> None:
        barrier.wait(timeout=10)
        for attempt in range(50):
            try:
                answer: object = operations[index](admin)
            except Conflict as exc:
                answer = exc
            results.append((index, answer))
            revoking = index == 3 and isinstance(answer, Conflict)
            if attempt >= 4 and not revoking:
                break

    # WHEN they all change the token at once
    threads = [threading.Thread(target=run, args=(a, i)) for i, a in enumerate(admins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # THEN every answer is a success or a conflict (no other error escaped a thread)
    assert len(results) >= 4 * 5
    successes = [(i, a) for i, a in results if not isinstance(a, Conflict)]
    # AND no update was lost: each success is one version step and one audit event
    final = stored(store, client_id)
    assert final.version == 1 + len(successes)
    assert len(admins[0].events(client_id, limit=100).items) == 1 + len(successes)
    # AND the revocation went through once and is final
    assert sum(1 for i, _ in successes if i == 3) == 1
    assert final.status is TokenStatus.REVOKED
    assert all(
        isinstance(a, ConcurrentModification | InvalidTransition)
        for _, a in results
        if isinstance(a, Conflict)
    )
    # AND no secret ever handed out authenticates any more
    secrets = [issued.secret] + [a.secret for i, a in successes if isinstance(a, Issued)]
    for secret in secrets:
        with pytest.raises(GatekeyError):
            final.authenticate(secret, hasher, NOW)


# -- the secret --------------------------------------------------------------------------------


def test_no_secret_in_logs_audit_events_stored_tokens_or_error_messages(
    captured_logs: pytest.LogCaptureFixture, admin: TokenAdmin, store: InMemoryTokenStore
) -> None:
    issued = issue(admin)
    client_id = issued.token.client_id
    rotated = admin.rotate(ACTOR, client_id, grace=Duration(1))
    secret, newer = issued.secret.reveal(), rotated.secret.reveal()
    errors = [
        refused(lambda: issue(admin, name="x", owner=secret + "\n")),
        refused(lambda: parse_duration("bad" + secret)),
        refused(lambda: admin.update(ACTOR, client_id, scopes=(newer + " x",))),
        refused(lambda: admin.update(ACTOR, client_id, name=newer + "\t")),
    ]
    haystack = repr(
        [
            captured_logs.text,
            [r.__dict__ for r in captured_logs.records],
            [str(e) for e in errors],
            [e.message for e in errors],
            store.list().items,
            admin.events(client_id, limit=100).items,
            issued,
            rotated,
        ]
    )
    for plaintext in (secret, newer):
        assert plaintext not in haystack
        assert plaintext[4:-6] not in haystack


def test_audit_events_hold_no_secret_hash(admin: TokenAdmin, store: InMemoryTokenStore) -> None:
    client_id = issue(admin).token.client_id
    admin.rotate(ACTOR, client_id, grace=Duration(1))
    admin.revoke(ACTOR, client_id)
    token = stored(store, client_id)
    details = repr([e.details for e in admin.events(client_id, limit=100).items])
    assert token.secret_hash.digest not in details
    assert "hash" not in details


def test_an_actor_without_a_source_ip_is_audited_without_one(admin: TokenAdmin) -> None:
    client_id = issue(admin, actor=Actor("arn:aws:iam::123456789012:role/ci")).token.client_id
    [event] = admin.events(client_id).items
    assert (event.actor, event.source_ip) == ("arn:aws:iam::123456789012:role/ci", None)


# -- import: an existing Client ID and Secret, brought from Cloudflare Access or Cognito ------


@pytest.mark.parametrize(
    ("credential", "source"), [(access_credential, "access"), (cognito_credential, "cognito")]
)
def test_an_import_keeps_the_id_stores_the_secret_hashed_and_audits_its_source(
    admin: TokenAdmin,
    store: InMemoryTokenStore,
    hasher: Hasher,
    credential: Callable[[], tuple[str, ClientSecret]],
    source: str,
) -> None:
    client_id, secret = credential()
    token = bring(admin, client_id, secret, scopes=("read",), owner="ops@example.com")
    # THEN the token has the id as given, the usual fields, and the secret authenticates
    assert token.client_id == client_id
    assert (token.scopes, token.owner, token.client_secret_version) == (
        ("read",),
        "ops@example.com",
        1,
    )
    assert stored(store, client_id) == token
    assert works(stored(store, client_id), secret, hasher, NOW)
    # AND the secret is nowhere but as its HMAC
    assert secret.reveal() not in repr(token)
    assert token.secret_hash == hasher.hash(secret)
    # AND the audit trail says it was imported, from where, never the secret
    [event] = admin.events(client_id).items
    assert event == AuditEvent(
        client_id,
        AuditAction.IMPORTED,
        ADMIN_ARN,
        NOW,
        "198.51.100.7",
        {
            "source": source,
            "name": "ci-bot",
            "duration": "8760h",
            "routes": ["*"],
            "scopes": ["read"],
            "owner": "ops@example.com",
            "rotation": "remind",
        },
    )
    assert secret.reveal() not in repr(event)


def test_an_id_already_here_is_a_conflict_and_the_first_token_is_untouched(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher
) -> None:
    client_id, secret = access_credential()
    first = bring(admin, client_id, secret)
    _, other = access_credential()
    refused(lambda: bring(admin, client_id, other, name="again"), AlreadyExists)
    assert stored(store, client_id) == first
    assert not works(stored(store, client_id), other, hasher, NOW)
    assert actions(admin, client_id) == ["imported"]


@pytest.mark.parametrize(
    ("client_id", "secret", "field", "message"),
    [
        # under 128 bits by the alphabet and length
        ("0" * 32 + ".access", "0123456789abcdef0123456789abcde", "client_secret", "124 bits"),
        ("0" * 26, "abcdefghij0123456789wxyz", "client_secret", "124 bits"),
        ("0" * 26, "9" * 38, "client_secret", "too weak"),  # 38 digits: 126 bits
        # enough bits, too few distinct characters: a placeholder
        ("0" * 32 + ".access", "0" * 64, "client_secret", "distinct"),
        ("0" * 32 + ".access", "ab" * 32, "client_secret", "distinct"),
        # not the format's secret
        ("0" * 32 + ".access", "0123456789ABCDEF" * 4, "client_secret", "64 lower-case hex"),
        ("0" * 32 + ".access", "0123456789abcdef" * 3, "client_secret", "64 lower-case hex"),
        ("0" * 26, "abcdefghij0123456789-wxyz-klmn", "client_secret", r"\[A-Za-z0-9_\+\]"),
        ("0" * 26, "gks_" + "abcdefghij0123456789" * 2, "client_secret", "gks_"),
        ("0" * 26, "é" * 40, "client_secret", "ASCII"),
        # not an id of an imported format
        (generate_client_id(), "0123456789abcdef" * 4, "client_id", "Gatekey Client ID"),
        ("0" * 32 + ".ACCESS", "0123456789abcdef" * 4, "client_id", "Access"),
        ("A" * 32 + ".access", "0123456789abcdef" * 4, "client_id", "Access"),
        ("0" * 31 + ".access", "0123456789abcdef" * 4, "client_id", "Access"),
        ("0" * 25, "0123456789abcdef" * 4, "client_id", "Cognito"),
        ("0" * 25 + "A", "0123456789abcdef" * 4, "client_id", "Cognito"),
        ("", "0123456789abcdef" * 4, "client_id", "Cognito"),
    ],
)
def test_a_weak_secret_or_foreign_id_is_refused_naming_what_is_wrong_and_nothing_is_written(
    admin: TokenAdmin, client_id: str, secret: str, field: str, message: str
) -> None:
    error = refused(lambda: bring(admin, client_id, ClientSecret(secret)))
    assert error.field == field
    assert re.search(message, error.message), error.message
    assert secret not in error.message
    assert admin.list().items == []


def test_an_imported_token_takes_every_field_as_create_does(admin: TokenAdmin) -> None:
    client_id, secret = access_credential()
    refused(lambda: bring(admin, client_id, secret, name=" padded "))
    refused(lambda: bring(admin, client_id, secret, routes=("FETCH /x",)))
    refused(lambda: bring(admin, client_id, secret, rotation=AUTO, duration=Duration(24)))
    assert admin.list().items == []
    token = bring(admin, client_id, secret, duration=Duration(None), rotation=AUTO)
    assert (token.expires_at, token.rotation) == (None, AUTO)


def test_a_rotation_gives_an_imported_token_a_gatekey_secret_and_keeps_its_id(
    admin: TokenAdmin, store: InMemoryTokenStore, hasher: Hasher, clock: Clock
) -> None:
    client_id, imported = access_credential()
    bring(admin, client_id, imported)
    clock.now = NOW + HOUR
    issued = admin.rotate(ACTOR, client_id, grace=Duration(24))
    # THEN the id stays, the new secret is Gatekey's own format, and both work in the grace
    assert issued.token.client_id == client_id
    assert ClientSecret.parse(issued.secret.reveal()) == issued.secret
    token = stored(store, client_id)
    assert works(token, issued.secret, hasher, clock.now)
    assert works(token, imported, hasher, clock.now)
    # AND after the grace only the new one does
    assert not works(token, imported, hasher, clock.now + 25 * HOUR)
    assert actions(admin, client_id) == ["rotated", "imported"]
