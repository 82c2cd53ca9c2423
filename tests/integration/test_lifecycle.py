"""Lifecycle runs against moto with an injected clock: reminders exactly once, auto rotation
into the delivery secret, grace clean-up, reading only what is due, and failing senders."""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from conftest import (
    AWS_ACTIONS,
    NOW,
    REGION,
    TABLE_NAME,
    FakeLambdaContext,
    load_handler,
    policy_actions,
)
from gatekey.admin import Actor, TokenAdmin
from gatekey.credentials import ClientSecret
from gatekey.durations import Duration
from gatekey.errors import DependencyError, InvalidCredentials
from gatekey.hashing import Hasher
from gatekey.lifecycle import DAY, AwsNotifier, Lifecycle, Notice, SecretsManagerDelivery
from gatekey.model import RotationMode, RotationPolicy
from gatekey.store import DynamoDBTokenStore
from gatekey.store.items import token_to_item

ADMIN = Actor("arn:aws:iam::123456789012:user/admin")


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class RecordingNotifier:
    """The real AWS notifier (moto's SNS and EventBridge), recording what went out, and able
    to fail a channel on demand."""

    inner: AwsNotifier
    sent: list[tuple[str, str]] = field(default_factory=list)  # (notice_id, channel)
    fail_after: dict[str, int] = field(default_factory=dict)  # channel -> successful sends left
    lock: threading.Lock = field(default_factory=threading.Lock)
    channels: tuple[str, ...] = ("sns", "events")

    def send(self, notice: Notice, channel: str) -> None:
        with self.lock:
            left = self.fail_after.get(channel)
            if left is not None and left <= 0:
                raise DependencyError(f"{channel} notification failed: EndpointConnectionError")
            if left is not None:
                self.fail_after[channel] = left - 1
        self.inner.send(notice, channel)
        with self.lock:
            self.sent.append((notice.notice_id, channel))

    def duplicates(self) -> list[tuple[str, str]]:
        return [key for key, count in Counter(self.sent).items() if count > 1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def notifier(aws: None) -> RecordingNotifier:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="gatekey-reminders")["TopicArn"]
    events = boto3.client("events", region_name=REGION)
    return RecordingNotifier(AwsNotifier(sns=sns, events=events, topic_arn=topic))


@pytest.fixture
def secrets(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


@pytest.fixture
def make_lifecycle(
    store: DynamoDBTokenStore,
    hasher: Hasher,
    notifier: RecordingNotifier,
    secrets: Any,
    clock: Clock,
) -> Any:
    def build(idle_days: int = 0) -> Lifecycle:
        return Lifecycle(
            store=store,
            hasher=hasher,
            notifier=notifier,
            delivery=SecretsManagerDelivery(secrets),
            reminder_days=(30, 7, 1),
            grace_seconds=2 * DAY,
            idle_days=idle_days,
            clock=clock,
        )

    return build


@pytest.fixture
def admin(store: DynamoDBTokenStore, hasher: Hasher, clock: Clock) -> TokenAdmin:
    return TokenAdmin(store=store, hasher=hasher, clock=clock)


def create(admin: TokenAdmin, name: str, hours: int | None, **rotation: Any) -> Any:
    policy = RotationPolicy(**rotation) if rotation else RotationPolicy()
    return admin.create(
        ADMIN,
        name=name,
        duration=Duration(hours),
        routes=("*",),
        scopes=(),
        owner=f"{name}@example.com",
        rotation=policy,
    )


def delivery_secret(secrets: Any) -> str:
    return str(
        secrets.create_secret(
            Name="bot/gatekey",
            SecretString="{}",
            Tags=[{"Key": "gatekey-delivery", "Value": "true"}],
        )["ARN"]
    )


def create_auto(admin: TokenAdmin, delivery: str) -> Any:
    return create(admin, "auto-bot", 40 * 24, mode=RotationMode.AUTO, delivery_secret_arn=delivery)


def delivered(secrets: Any, arn: str) -> dict[str, str]:
    """What the consumer reads: the AWSCURRENT version of its delivery secret."""
    answer = secrets.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    return dict(json.loads(answer["SecretString"]))


def test_a_year_of_daily_runs_overlapping_and_retried_sends_each_threshold_once(
    atomic_dynamodb_requests: None,
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: DynamoDBTokenStore,
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
        assert store.get(token.client_id, consistent=True).reminders_sent == tuple(
            sorted(expected, reverse=True)
        )
    assert not [i for i, _ in notifier.sent if i.startswith(forever.client_id)]


def test_auto_rotation_lands_in_the_delivery_secret_and_the_old_secret_stops_after_grace(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    secrets: Any,
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
    assert after.reminders_sent == (30, 7, 1, 0)
    assert not [
        i for i, _ in notifier.sent if i.startswith(issued.token.client_id) and "rotated" not in i
    ]


def test_a_failed_promotion_is_finished_by_the_next_run_without_minting_again(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    secrets: Any,
    clock: Clock,
) -> None:
    delivery = delivery_secret(secrets)
    issued = create(
        admin, "auto-bot", 40 * 24, mode=RotationMode.AUTO, delivery_secret_arn=delivery
    )
    client_id = issued.token.client_id
    lifecycle = make_lifecycle()

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.invalid")

    # GIVEN making the new version AWSCURRENT fails, after the token accepted it
    hook = "before-send.secrets-manager.UpdateSecretVersionStage"
    secrets.meta.events.register(hook, unreachable)
    clock.now = NOW + 10 * DAY
    report = lifecycle.run()
    assert report.rotated == []
    assert report.failed == [
        f"{client_id}: cannot make the new secret current: EndpointConnectionError"
    ]
    # THEN the consumer still reads the old secret, which still works, and the expiry stays
    assert delivered(secrets, delivery) == {}
    token = store.get(client_id, consistent=True)
    assert token.authenticate(issued.secret, hasher, clock.now) is not None
    assert token.expires_at == issued.token.expires_at
    assert token.delivery_pending is not None
    # AND past the grace (2 days here) the old secret still works while delivery is pending:
    # each failing run keeps it until a day past the next
    assert token.previous_client_secret_expires_at == clock.now + 3 * DAY
    clock.now += 3 * DAY
    assert lifecycle.run().cleaned == []
    token = store.get(client_id, consistent=True)
    assert token.authenticate(issued.secret, hasher, clock.now) is not None
    # WHEN the next run finds Secrets Manager working again
    secrets.meta.events.unregister(hook, unreachable)
    clock.now += DAY
    report = lifecycle.run()
    assert report.rotated == [client_id]
    # THEN it made the staged secret current and moved the expiry, minting no other secret
    current = delivered(secrets, delivery)
    token = store.get(client_id, consistent=True)
    assert (
        token.authenticate(
            ClientSecret.parse(current["client_secret"]),
            hasher,
            clock.now,
        )
        is not None
    )
    assert (token.client_secret_version, token.delivery_pending) == (2, None)
    assert token.expires_at == issued.token.expires_at + 40 * DAY
    assert [c for i, c in notifier.sent if "rotated" in i] == ["sns", "events"]
    # AND the old secret goes once its grace, extended while delivery failed, is over
    assert token.previous_client_secret_expires_at is not None
    clock.now = token.previous_client_secret_expires_at
    assert lifecycle.run().cleaned == [client_id]
    assert lifecycle.run().rotated == []


def test_a_rotation_notice_that_fails_is_finished_by_the_next_run_without_repeats(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    secrets: Any,
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


def test_idle_tokens_are_disabled_with_an_event_only_when_switched_on(
    admin: TokenAdmin,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    store: DynamoDBTokenStore,
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


def test_a_run_reads_on_the_order_of_the_due_tokens_not_the_table(
    dynamodb: Any,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    make_lifecycle: Any,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # moto deep-copies the whole table before every transaction, for its rollback: with
    # 10,000 items that is minutes per run. No transaction here fails, so no rollback is
    # needed; the copy is skipped to keep the test at the scale in seconds.
    import moto.dynamodb.models as moto_dynamodb

    no_copy = SimpleNamespace(deepcopy=lambda value, *_: value)
    monkeypatch.setattr(moto_dynamodb, "copy", no_copy)  # this module's name only
    # GIVEN 10,000 tokens of which 100 expire within the reminder window
    from gatekey.model import new_service_token

    items = []
    for i in range(10_000):
        hours = 10 * 24 if i % 100 == 0 else 300 * 24
        token, _ = new_service_token(
            name=f"bot-{i}", hasher=hasher, now=NOW, duration=Duration(hours)
        )
        items.append({"PutRequest": {"Item": token_to_item(token)}})
    for start in range(0, len(items), 25):
        dynamodb.batch_write_item(RequestItems={TABLE_NAME: items[start : start + 25]})
    returned = Counter()

    def count(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            returned[model.name] += parsed.get("Count", 0)
        elif model.name == "GetItem" and "Item" in parsed:
            returned["GetItem"] += 1

    store.client.meta.events.register("after-call.dynamodb.*", count)
    # WHEN one run goes over them
    report = make_lifecycle().run()
    # THEN it reminded the 100 and read about that many items, never the 10,000
    assert len(report.reminded) == 100
    assert returned["Scan"] == 0
    assert returned["Query"] == 100
    assert returned["GetItem"] == 100
    print(f"\n10,000 tokens, 100 due: items returned {dict(returned)}")


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


def test_an_aws_failure_is_a_dependency_error(notifier: RecordingNotifier) -> None:
    sns = notifier.inner._sns

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://sns.invalid")

    sns.meta.events.register("before-send.sns.Publish", unreachable)
    notice = Notice("Service Token Expiring", "gk_x", "n", None, NOW, 7, None, "id")
    with pytest.raises(DependencyError, match="sns notification failed"):
        notifier.inner.send(notice, "sns")


def test_the_daily_function_does_its_work_within_the_permissions_of_its_role(
    monkeypatch: pytest.MonkeyPatch,
    admin: TokenAdmin,
    store: DynamoDBTokenStore,
    pepper_secret_arn: str,
    notifier: RecordingNotifier,
    secrets: Any,
    clock: Clock,
    template: dict[str, Any],
) -> None:
    # GIVEN, 20 days on, a token to remind, one to rotate and one idle for 20 days
    remind = create(admin, "remind-bot", 40 * 24).token.client_id
    auto = create_auto(admin, delivery_secret(secrets)).token.client_id
    idle = create(admin, "idle-bot", None).token.client_id
    for client_id in (remind, auto):
        store.record_last_seen(client_id, NOW + 19 * DAY, min_interval=900)
    monkeypatch.setattr("time.time", lambda: float(NOW + 20 * DAY))
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/unused-here",
        "NOTIFICATION_TOPIC_ARN": notifier.inner._topic_arn,
        "IDLE_DISABLE_DAYS": "10",
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    # WHEN the scheduled function runs, as Lambda would run it
    handler = load_handler("lifecycle")
    summary = handler.lambda_handler({"job": "lifecycle"}, FakeLambdaContext())
    # THEN it did each piece of work
    assert summary["reminded"] == [f"{remind}:30"]
    assert summary["rotated"] == [auto]
    assert summary["disabled"] == [idle]
    assert summary["failed"] == []
    # AND every call it made is one its role allows (checked when the test ends): the writes,
    # the delivery, both notification channels
    made = {action for function, action in AWS_ACTIONS if function == "lifecycle"}
    expected = {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "sns:Publish",
        "events:PutEvents",
    }
    assert expected <= made
    # AND the check would fail without the audit item's permission
    without = copy.deepcopy(template)
    statements = without["Resources"]["LifecycleFunction"]["Properties"]["Policies"][1]
    statements["Statement"] = [
        s for s in statements["Statement"] if s["Action"] != "dynamodb:PutItem"
    ]
    assert "dynamodb:PutItem" in policy_actions(template, "lifecycle")
    assert "dynamodb:PutItem" not in policy_actions(without, "lifecycle")
