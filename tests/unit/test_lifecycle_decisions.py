"""The lifecycle's decisions on the in-memory store, with a notifier and a delivery that need
no AWS: reminders exactly once, auto rotation into the delivery secret, grace clean-up, idle
tokens, and failing senders. Each AWS adapter's own path stays on moto, in
tests/integration/test_lifecycle.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from gatekey.admin import Actor, TokenAdmin
from gatekey.credentials import ClientSecret
from gatekey.durations import DAY, Duration
from gatekey.errors import InvalidCredentials
from gatekey.hashing import Hasher
from gatekey.model import (
    EXPIRED,
    AuditAction,
    AuditEvent,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    new_service_token,
)
from gatekey.notices import Notice
from gatekey.store import InMemoryTokenStore
from support import constants
from support.admin import access_credential, bring
from support.constants import NOW
from support.lifecycle import (
    Clock,
    FakeDelivery,
    RecordingNotifier,
    create,
    create_auto,
    lifecycle_builder,
)

ADMIN = Actor(constants.ADMIN)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(memory_store: InMemoryTokenStore) -> InMemoryTokenStore:
    return memory_store


@pytest.fixture
def hasher(unit_hasher: Hasher) -> Hasher:
    return unit_hasher


@pytest.fixture
def notifier(fake_notifier: RecordingNotifier) -> RecordingNotifier:
    return fake_notifier


@pytest.fixture
def secrets(fake_delivery: FakeDelivery) -> FakeDelivery:
    """The consumers' delivery secrets: what Secrets Manager is to the moto tests."""
    return fake_delivery


@pytest.fixture
def make_lifecycle(
    store: InMemoryTokenStore,
    hasher: Hasher,
    notifier: RecordingNotifier,
    secrets: FakeDelivery,
    clock: Clock,
) -> Any:
    return lifecycle_builder(store, hasher, notifier, secrets, clock)


@pytest.fixture
def admin(store: InMemoryTokenStore, hasher: Hasher, clock: Clock) -> TokenAdmin:
    return TokenAdmin(store=store, hasher=hasher, clock=clock)


@pytest.fixture
def authorizers_store(store: InMemoryTokenStore) -> Callable[[], InMemoryTokenStore]:
    """The store the authorizer records uses through: here the same one."""
    return lambda: store


def delivery_secret(secrets: FakeDelivery) -> str:
    return secrets.create("bot/gatekey")


def delivered(secrets: FakeDelivery, arn: str) -> dict[str, str]:
    """What the consumer reads: the AWSCURRENT version of its delivery secret."""
    return secrets.current(arn)


def test_a_year_of_daily_runs_overlapping_and_retried_sends_each_threshold_once(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    clock: Clock,
) -> None:
    # GIVEN tokens expiring at different times, and one that never expires
    expiring = [create(admin, f"bot-{d}", d * 24).token for d in (10, 45, 100, 200, 364)]
    forever = create(admin, "forever-bot", None).token
    runs = [make_lifecycle(), make_lifecycle()]
    # WHEN two runs overlap every day for a year, and one is retried
    for day in range(400):
        clock.now = NOW + day * DAY + 6 * 3600
        threads = [threading.Thread(target=run.run) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        runs[0].run()  # a retry of the day's run
    # THEN no notice went out twice on any channel
    assert notifier.duplicates() == []
    # AND each token got each reminder it had time for, and its expiry notice, once
    for token in expiring:
        # Every threshold is reached within the year (the first run sends the most urgent one
        # reached, so a token with 10 days left gets its 30-day reminder then), then the notice.
        expected = {30, 7, 1, 0}
        got = {
            int(i.split(":")[-1])
            for i, ch in notifier.sent
            if i.startswith(token.client_id) and ch == "sns"
        }
        assert got == expected, token.name
        assert store.get(token.client_id, consistent=True).reminders_sent == (30, 7, 1, EXPIRED)
    assert not [i for i, _ in notifier.sent if i.startswith(forever.client_id)]


def test_auto_rotation_lands_in_the_delivery_secret_and_the_old_secret_stops_after_grace(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    delivery = delivery_secret(secrets)
    issued = create_auto(admin, delivery)
    reminded = create(admin, "remind-bot", 40 * 24)
    lifecycle = make_lifecycle()
    before = store.get(reminded.token.client_id, consistent=True)
    rotated_on = None
    for day in range(45):  # one rotation: the next is due on day 50
        clock.now = NOW + day * DAY
        report = lifecycle.run()
        if report.rotated and rotated_on is None:
            rotated_on = day
    # THEN it rotated once, 30 days before expiry, into AWSCURRENT of the delivery secret
    assert rotated_on == 10
    current = delivered(secrets, delivery)
    token = store.get(issued.token.client_id, consistent=True)
    new_secret = ClientSecret.parse(current["client_secret"])
    assert current["client_id"] == token.client_id
    assert token.authenticate(new_secret, hasher, clock.now) is not None
    assert token.expires_at == issued.token.expires_at + 40 * 24 * 3600
    assert token.client_secret_version == 2
    # AND the old secret worked through the 2-day grace, and its hash is gone after it
    assert token.previous_secret_hash is None
    with pytest.raises(InvalidCredentials):
        token.authenticate(issued.secret, hasher, clock.now)
    events = store.events(token.client_id, limit=100).items
    ended = [e for e in events if e.action.value == "grace_ended"]
    assert len(ended) == 1
    assert ended[0].at == NOW + 12 * DAY
    # AND the remind-only token was never changed, only reminded
    after = store.get(reminded.token.client_id, consistent=True)
    assert (after.secret_hash, after.expires_at, after.client_secret_version, after.enabled) == (
        before.secret_hash,
        before.expires_at,
        before.client_secret_version,
        before.enabled,
    )
    assert after.reminders_sent == (30, 7, 1, EXPIRED)
    assert not [
        i for i, _ in notifier.sent if i.startswith(issued.token.client_id) and "rotated" not in i
    ]


def test_a_rotation_notice_that_fails_is_finished_by_the_next_run_without_repeats(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    delivery = delivery_secret(secrets)
    issued = create_auto(admin, delivery)
    lifecycle = make_lifecycle()
    # GIVEN EventBridge failing when the rotation's notice goes out
    notifier.fail_after["events"] = 0
    clock.now = NOW + 10 * DAY
    report = lifecycle.run()
    assert report.rotated == []
    assert len(report.failed) == 1
    # THEN the new secret is delivered and works, and the token stays due, expiry unmoved
    token = store.get(issued.token.client_id, consistent=True)
    new_secret = ClientSecret.parse(delivered(secrets, delivery)["client_secret"])
    assert token.authenticate(new_secret, hasher, clock.now) is not None
    assert token.expires_at == issued.token.expires_at
    # WHEN the next run finds EventBridge back
    del notifier.fail_after["events"]
    clock.now += DAY
    assert lifecycle.run().rotated == [issued.token.client_id]
    # THEN each channel got the notice once, and the rotation is complete with one new secret
    rotated = [(i, c) for i, c in notifier.sent if "rotated" in i]
    assert sorted(c for _, c in rotated) == ["events", "sns"]
    assert notifier.duplicates() == []
    token = store.get(issued.token.client_id, consistent=True)
    assert (token.client_secret_version, token.delivery_pending) == (2, None)
    assert token.expires_at == issued.token.expires_at + 40 * DAY
    assert token.reminders_sent == ()
    assert lifecycle.run().rotated == []


def test_a_run_rotates_a_token_once_even_when_its_new_expiry_is_still_due(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    # GIVEN an `auto` token of 10 days, stored before such durations were refused: shorter than
    # the 30-day first reminder, so its expiry is still due after a rotation, later in the index
    delivery = delivery_secret(secrets)
    short, secret = new_service_token(
        name="short",
        hasher=hasher,
        now=NOW,
        duration=Duration(10 * 24),
        rotation=RotationPolicy(RotationMode.AUTO, delivery),
    )
    store.create(short, AuditEvent(short.client_id, AuditAction.CREATED, ADMIN.arn, NOW))
    reminded = [create(admin, f"bot-{i}", (31 + i) * 24).token.client_id for i in range(3)]
    # WHEN a run reads the index one entry at a time
    clock.now = NOW + 3 * DAY
    report = make_lifecycle(page_size=1).run()
    # THEN it rotated the token once, with one notice, beside its other work
    assert report.rotated == [short.client_id]
    assert sorted(report.reminded) == sorted(f"{c}:30" for c in reminded)
    assert [c for i, c in notifier.sent if "rotated" in i] == ["sns", "events"]
    # AND the secret the consumer held before the run still works, for the grace
    token = store.get(short.client_id, consistent=True)
    assert token.client_secret_version == 2
    assert token.authenticate(secret, hasher, clock.now).version == 1
    assert (
        token.authenticate(
            ClientSecret.parse(delivered(secrets, delivery)["client_secret"]), hasher, clock.now
        ).version
        == 2
    )


def test_a_manual_rotate_after_the_new_secret_was_made_current_keeps_that_one_for_the_grace(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    # GIVEN an automatic rotation that made its new secret current, then failed to notify
    delivery = delivery_secret(secrets)
    client_id = create_auto(admin, delivery).token.client_id
    lifecycle = make_lifecycle()
    clock.now = NOW + 10 * DAY
    notifier.fail_after["sns"] = 0
    assert len(lifecycle.run().failed) == 1
    del notifier.fail_after["sns"]
    consumers = ClientSecret.parse(delivered(secrets, delivery)["client_secret"])
    assert store.get(client_id, consistent=True).delivery_pending is not None
    # WHEN an admin rotates the token by hand, with a 48-hour grace
    issued = admin.rotate(ADMIN, client_id, grace=Duration(48))
    # THEN the secret the consumer reads keeps working through that grace, beside the admin's
    token = store.get(client_id, consistent=True)
    assert token.authenticate(consumers, hasher, clock.now) is not None
    assert token.authenticate(consumers, hasher, clock.now + 48 * 3600 - 1) is not None
    assert token.authenticate(issued.secret, hasher, clock.now).version == 3
    # AND the next run rotates afresh into the delivery secret, keeping the admin's for its grace
    clock.now += DAY
    assert lifecycle.run().rotated == [client_id]
    token = store.get(client_id, consistent=True)
    fresh = ClientSecret.parse(delivered(secrets, delivery)["client_secret"])
    assert token.authenticate(fresh, hasher, clock.now).version == 4
    assert token.authenticate(issued.secret, hasher, clock.now).version == 3


def test_the_old_secret_goes_after_its_grace_once_the_new_one_is_current_though_notices_fail(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    # GIVEN a rotation whose new secret is current, and EventBridge failing for days
    delivery = delivery_secret(secrets)
    issued = create_auto(admin, delivery)
    lifecycle = make_lifecycle()
    notifier.fail_after["events"] = 0
    clock.now = NOW + 10 * DAY
    assert len(lifecycle.run().failed) == 1
    # WHEN a run comes after the 2-day grace, the notice still failing
    clock.now += 3 * DAY
    report = lifecycle.run()
    # THEN the old secret is gone, as the consumer reads the new one
    assert report.cleaned == [issued.token.client_id]
    token = store.get(issued.token.client_id, consistent=True)
    with pytest.raises(InvalidCredentials):
        token.authenticate(issued.secret, hasher, clock.now)
    new_secret = ClientSecret.parse(delivered(secrets, delivery)["client_secret"])
    assert token.authenticate(new_secret, hasher, clock.now).version == 2


def test_idle_tokens_are_disabled_with_an_event_only_when_switched_on(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    clock: Clock,
) -> None:
    never_used = create(admin, "never-used", None).token.client_id
    busy = create(admin, "busy", None).token.client_id
    paused = create(admin, "paused", None).token.client_id
    admin.update(ADMIN, paused, enabled=False)
    store.record_last_seen(busy, NOW + 95 * DAY, min_interval=900)
    clock.now = NOW + 100 * DAY
    admin.update(ADMIN, paused, enabled=True)  # re-enabling restarts the idle clock
    # GIVEN the default, idle tokens are left alone
    assert make_lifecycle().run().disabled == []
    # WHEN switched on at 90 days
    lifecycle = make_lifecycle(idle_days=90)
    assert lifecycle.run().disabled == [never_used]
    token = store.get(never_used, consistent=True)
    assert not token.enabled
    disabled = store.events(never_used, limit=1).items[0]
    assert (disabled.action.value, disabled.actor) == ("disabled", "gatekey:lifecycle")
    assert disabled.details == {"reason": "idle", "idle_days": 100}
    assert [(i, c) for i, c in notifier.sent if "disabled" in i] == [
        (f"{never_used}:disabled:{token.idle_clock()}", "sns"),
        (f"{never_used}:disabled:{token.idle_clock()}", "events"),
    ]
    # AND the next runs disable each token once, when its own idle clock passes 90 days
    assert lifecycle.run().disabled == []
    clock.now = NOW + 186 * DAY
    # (EventBridge failing: the token stays enabled until its notice is complete)
    notifier.fail_after["events"] = 0
    assert lifecycle.run().disabled == []
    assert store.get(busy, consistent=True).enabled
    del notifier.fail_after["events"]
    assert lifecycle.run().disabled == [busy]
    clock.now = NOW + 191 * DAY
    assert lifecycle.run().disabled == [paused]
    assert len([i for i, c in notifier.sent if "disabled" in i and c == "events"]) == 3
    assert notifier.duplicates() == []


def test_a_failing_sender_mid_run_is_completed_by_the_next_run_without_repeats(
    admin: TokenAdmin, make_lifecycle: Any, notifier: RecordingNotifier, clock: Clock
) -> None:
    tokens = [create(admin, f"bot-{i}", 20 * 24).token for i in range(5)]
    lifecycle = make_lifecycle()
    # WHEN SNS fails after two messages, and EventBridge after three
    notifier.fail_after = {"sns": 2, "events": 3}
    first = lifecycle.run()
    assert len(first.failed) == 3
    assert len(first.reminded) == 2
    # THEN the next run sends what is missing, and nothing twice
    notifier.fail_after = {}
    second = lifecycle.run()
    assert second.failed == []
    assert len(second.reminded) == 3
    assert notifier.duplicates() == []
    for token in tokens:
        sent = {ch for i, ch in notifier.sent if i.startswith(token.client_id)}
        assert sent == {"sns", "events"}


def test_a_reminder_whose_send_failed_is_dropped_once_a_more_urgent_one_goes_out(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    clock: Clock,
) -> None:
    # GIVEN a token 8 days from expiry whose 30-day reminder could not go out (SNS down)
    client_id = create(admin, "bot", 8 * 24).token.client_id
    lifecycle = make_lifecycle()
    notifier.fail_after["sns"] = 0
    assert len(lifecycle.run().failed) == 1
    del notifier.fail_after["sns"]
    # WHEN, 2 days later, the 7-day threshold is the most urgent and its reminder goes out
    clock.now = NOW + 2 * DAY
    assert lifecycle.run().reminded == [f"{client_id}:7"]
    # THEN the 30-day reminder's released claim goes with it: the token is due next at its
    # 1-day reminder, not in every run
    token = store.get(client_id, consistent=True)
    assert token.reminders_pending == ()
    assert store.due(clock.now + 4 * DAY).items == []
    assert store.due(NOW + 7 * DAY).items == [client_id]
    # AND after its expiry notice no run reads it again
    for day in range(3, 12):
        clock.now = NOW + day * DAY
        lifecycle.run()
    assert store.due(clock.now).items == []
    assert [int(i.split(":")[-1]) for i, c in notifier.sent if c == "sns"] == [7, 1, 0]


def test_a_use_recorded_while_the_idle_notice_goes_out_keeps_the_token_enabled(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    authorizers_store: Callable[[], InMemoryTokenStore],
) -> None:
    client_id = create(admin, "quiet-bot", None).token.client_id
    authorizer = authorizers_store()
    send = notifier.send

    def used_while_sending(notice: Notice, channel: str) -> None:
        send(notice, channel)
        if channel == "sns":  # the bot calls while the notice goes out
            assert authorizer.record_last_seen(client_id, clock.now, min_interval=900)

    monkeypatch.setattr(notifier, "send", used_while_sending)
    # WHEN the run finds it idle for 100 days and sends the notice, during which it is used
    clock.now = NOW + 100 * DAY
    report = make_lifecycle(idle_days=90).run()
    # THEN it stays enabled, and nothing failed
    token = store.get(client_id, consistent=True)
    assert (token.enabled, token.last_seen_at) == (True, clock.now)
    assert (report.disabled, report.failed) == ([], [])
    # AND the notice's claim is withdrawn, and the audit trail says why
    assert token.reminders_pending == ()
    withdrawn = store.events(client_id, limit=1).items[0]
    assert withdrawn.action.value == "reminder_released"
    assert (withdrawn.details["reason"], withdrawn.details["sent"]) == ("used", ["sns"])
    # AND its next idle spell disables it, with a notice of its own on every channel
    monkeypatch.setattr(notifier, "send", send)
    clock.now += 91 * DAY
    assert make_lifecycle(idle_days=90).run().disabled == [client_id]
    assert not store.get(client_id, consistent=True).enabled
    disabled = [(i, c) for i, c in notifier.sent if "disabled" in i]
    assert [c for _, c in disabled] == ["sns", "sns", "events"]
    assert disabled[0][0] != disabled[1][0] == disabled[2][0]


def test_a_use_recorded_between_the_read_and_the_claim_sends_nothing(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: InMemoryTokenStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    authorizers_store: Callable[[], InMemoryTokenStore],
) -> None:
    client_id = create(admin, "quiet-bot", None).token.client_id
    authorizer = authorizers_store()
    get = store.get
    reads: list[str] = []

    def read_then_used(client_id: str, *, consistent: bool = False) -> ServiceToken:
        token = get(client_id, consistent=consistent)
        if not reads:  # the run's read, then the bot's call
            assert authorizer.record_last_seen(client_id, clock.now, min_interval=900)
        reads.append(client_id)
        return token

    monkeypatch.setattr(store, "get", read_then_used)
    clock.now = NOW + 100 * DAY
    report = make_lifecycle(idle_days=90).run()
    token = get(client_id, consistent=True)
    assert (token.enabled, token.reminders_pending) == (True, ())
    assert (report.disabled, report.failed, notifier.sent) == ([], [], [])
    assert [e.action.value for e in store.events(client_id).items] == ["created"]


def test_auto_rotation_gives_an_imported_token_a_gatekey_secret_under_the_same_id(
    admin: TokenAdmin,
    make_lifecycle: Any,
    store: InMemoryTokenStore,
    hasher: Hasher,
    secrets: FakeDelivery,
    clock: Clock,
) -> None:
    # GIVEN an Access credential imported with automatic rotation
    delivery = delivery_secret(secrets)
    client_id, imported = access_credential()
    policy = RotationPolicy(RotationMode.AUTO, delivery)
    bring(admin, client_id, imported, actor=ADMIN, duration=Duration(40 * 24), rotation=policy)
    lifecycle = make_lifecycle()
    # WHEN the lifecycle runs past the first reminder (day 10) and the 2-day grace
    for day in range(14):
        clock.now = NOW + day * DAY
        lifecycle.run()
    # THEN the consumer reads the same Client ID with a Gatekey secret, which authenticates
    current = delivered(secrets, delivery)
    assert current["client_id"] == client_id
    new_secret = ClientSecret.parse(current["client_secret"])  # format and checksum
    token = store.get(client_id, consistent=True)
    assert token.authenticate(new_secret, hasher, clock.now).version == 2
    # AND the imported secret stopped with the grace
    with pytest.raises(InvalidCredentials):
        token.authenticate(imported, hasher, clock.now)
