"""Lifecycle runs against moto with an injected clock: each AWS adapter's path (Secrets
Manager's promotion and withdrawal, SNS and EventBridge), reading only what is due from
DynamoDB, tokens stored by an older release or under other reminder days, and the scheduled
function (its permissions, heartbeat and open-run metrics). The lifecycle's decisions run on the
in-memory store: tests/unit/test_lifecycle_decisions.py; a run's own logic (pages, the time
budget, resuming, each kind of work's turn): tests/unit/test_lifecycle_runs.py."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.admin import Actor, TokenAdmin
from gatekey.aws.delivery import SecretsManagerDelivery
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.dynamodb_items import token_to_item
from gatekey.aws.notify import AwsNotifier
from gatekey.credentials import ClientSecret
from gatekey.durations import DAY, Duration
from gatekey.errors import DependencyError, InvalidCredentials
from gatekey.hashing import Hasher
from gatekey.lifecycle import Lifecycle
from gatekey.model import (
    RotationMode,
    RotationPolicy,
    new_service_token,
)
from gatekey.notices import Notice
from gatekey.store import DueSchedule
from support import constants
from support.aws import AWS_ACTIONS, policy_actions
from support.constants import NOW, REGION, ROOT, TABLE_NAME, UNUSED_KEY_ARN
from support.events import FakeLambdaContext, load_handler
from support.lifecycle import (
    Clock,
    RecordingNotifier,
    create,
    create_auto,
    lifecycle_builder,
    sevenday_reminders_due,
)

# The lifecycle handler works on several tokens at once; moto is not safe across threads.
pytestmark = pytest.mark.usefixtures("atomic_dynamodb_requests")
ADMIN = Actor(constants.ADMIN)


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lifecycle_bench", ROOT / "bench/lifecycle_bench.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@dataclass
class LambdaContext(FakeLambdaContext):
    """As Lambda's context: with the time left to the invocation (the function's 300 s)."""

    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


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
    return lifecycle_builder(store, hasher, notifier, SecretsManagerDelivery(secrets), clock)


@pytest.fixture
def admin(store: DynamoDBTokenStore, hasher: Hasher, clock: Clock) -> TokenAdmin:
    return TokenAdmin(store=store, hasher=hasher, clock=clock)


def delivery_secret(secrets: Any) -> str:
    return str(
        secrets.create_secret(
            Name="bot/gatekey",
            SecretString="{}",
            Tags=[{"Key": "gatekey-delivery", "Value": "true"}],
        )["ARN"]
    )


def delivered(secrets: Any, arn: str) -> dict[str, str]:
    """What the consumer reads: the AWSCURRENT version of its delivery secret."""
    answer = secrets.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    return dict(json.loads(answer["SecretString"]))


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


def test_a_manual_rotate_landing_while_the_lifecycle_promotes_its_secret_is_never_undone(
    admin: TokenAdmin,
    make_lifecycle: Any,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    secrets: Any,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an `auto` token whose consumer reads its secret from its delivery secret
    delivery = delivery_secret(secrets)
    issued = create_auto(admin, delivery)
    client_id = issued.token.client_id
    consumers = json.dumps({"client_id": client_id, "client_secret": issued.secret.reveal()})
    secrets.put_secret_value(SecretId=delivery, SecretString=consumers)
    # AND an admin rotating it by hand (a day's grace) after the lifecycle accepted a new
    # secret, before that secret is made current
    promote = SecretsManagerDelivery.promote
    manual: list[Any] = []

    def rotated_meanwhile(self: SecretsManagerDelivery, secret_arn: str, version_id: str) -> None:
        if not manual:
            manual.append(admin.rotate(ADMIN, client_id, grace=Duration(24)))
        promote(self, secret_arn, version_id)

    monkeypatch.setattr(SecretsManagerDelivery, "promote", rotated_meanwhile)
    clock.now = NOW + 10 * DAY
    # WHEN the run goes on
    report = make_lifecycle().run()
    # THEN it withdrew its promotion: the consumer reads the secret it held, which works
    # through the admin's grace beside the admin's new one, and the abandoned one works nowhere
    assert (report.rotated, report.failed) == ([], [])
    assert delivered(secrets, delivery) == json.loads(consumers)
    token = store.get(client_id, consistent=True)
    assert token.authenticate(issued.secret, hasher, clock.now) is not None
    assert token.authenticate(manual[0].secret, hasher, clock.now).version == 3
    staged = secrets.get_secret_value(SecretId=delivery, VersionStage="AWSPENDING")
    abandoned = ClientSecret.parse(json.loads(staged["SecretString"])["client_secret"])
    with pytest.raises(InvalidCredentials):
        token.authenticate(abandoned, hasher, clock.now)
    # AND nothing the lifecycle wrote after the admin's rotation: it is the token's last change
    [last] = store.events(client_id, limit=1).items
    assert (last.actor, last.details["abandoned_delivery"]) == (ADMIN.arn, True)
    # AND the next run rotates afresh, keeping the admin's secret for its grace
    monkeypatch.setattr(SecretsManagerDelivery, "promote", promote)
    clock.now += DAY
    assert make_lifecycle().run().rotated == [client_id]
    token = store.get(client_id, consistent=True)
    fresh = ClientSecret.parse(delivered(secrets, delivery)["client_secret"])
    assert token.authenticate(fresh, hasher, clock.now).version == 4
    assert token.authenticate(manual[0].secret, hasher, clock.now).version == 3


@pytest.fixture
def no_rollback_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto copies the whole table before every transaction, for a rollback: with thousands of
    items, seconds per write. For tests where no transaction fails, the copy is skipped."""
    import moto.dynamodb.models as moto_dynamodb

    no_copy = SimpleNamespace(deepcopy=lambda value, *_: value)
    monkeypatch.setattr(moto_dynamodb, "copy", no_copy)  # this module's name only


def test_a_run_over_a_year_of_expiries_reads_about_two_entries_per_notice_it_sends(
    no_rollback_copies: None,
    dynamodb: Any,
    store: DynamoDBTokenStore,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
    clock: Clock,
) -> None:
    # The suite's copy of bench/lifecycle_bench.py's measurement, at 5,000 tokens (docs/scale.md
    # gives the 100,000-token figures).
    # GIVEN 5,000 tokens expiring evenly over the next year, each as yesterday's run left it
    tokens = bench.steady_state_tokens(5_000)
    bench.put_all(dynamodb, tokens, TABLE_NAME)
    reads = bench.Reads()
    reads.watch(store.client)
    lifecycle = make_lifecycle()
    for day in range(3):
        # WHEN the daily run goes over them, three days in a row
        clock.now = bench.RUN_AT + day * DAY
        before = (reads.index_entries, reads.items)
        report = lifecycle.run()
        # THEN each run sent every notice that fell due since the one before, once
        notices = len(report.reminded) + len(report.expired)
        assert notices == bench.due_today(tokens, clock.now) > 40
        assert notifier.duplicates() == []
        # AND read one index entry and one item per notice, never the tokens merely near expiry
        read = reads.index_entries - before[0] + reads.items - before[1]
        assert read == 2 * notices <= 4 * notices
        print(f"\nday {day}: {notices} notices, {read} entries and items read")
    assert reads.calls["dynamodb.Scan"] == 0


def test_a_run_reads_the_due_index_page_by_page_each_entry_once(
    dynamodb: Any,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
) -> None:
    # The by-due Query's paging (ExclusiveStartKey) on DynamoDB; a run's paging logic, cut
    # short and resumed, is tests/unit/test_lifecycle_runs.py's.
    # GIVEN 5 reminders due, in pages of 2
    tokens = sevenday_reminders_due(5, hasher)
    bench.put_all(dynamodb, tokens, TABLE_NAME)
    reads = bench.Reads()
    reads.watch(store.client)
    # WHEN a run goes over them
    report = make_lifecycle(page_size=2).run()
    # THEN every one got its reminder once, each index entry read once: three pages of by-due,
    # one of unscheduled and one of grace-ended
    assert sorted(report.reminded) == sorted(f"{t.client_id}:7" for t in tokens)
    assert notifier.duplicates() == []
    assert reads.index_entries == 5
    assert reads.calls["dynamodb.Query"] == 3 + 1 + 1


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
        "SIGNING_KEY_ID": UNUSED_KEY_ARN,
        "NOTIFICATION_TOPIC_ARN": notifier.inner._topic_arn,
        "IDLE_DISABLE_DAYS": "10",
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    # WHEN the scheduled function runs, as Lambda would run it
    handler = load_handler("lifecycle")
    summary = handler.lambda_handler({"job": "lifecycle"}, LambdaContext())
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


# -- the by-due index: tokens written before it, due times stored under other settings --------


def test_tokens_stored_before_by_due_get_their_notices_and_move_to_it(
    dynamodb: Any,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    secrets: Any,
    make_lifecycle: Any,
    clock: Clock,
) -> None:
    # GIVEN three tokens written as the release before by-due wrote them: in by-expiry only,
    # one of them `auto` and 60 days from expiry (its rotation is due in 30)
    soon, _ = new_service_token(name="soon", hasher=hasher, now=NOW - 355 * DAY)  # 10 days left
    later, _ = new_service_token(name="later", hasher=hasher, now=NOW - 100 * DAY)
    auto, _ = new_service_token(
        name="auto",
        hasher=hasher,
        now=NOW - 20 * DAY,
        duration=Duration(80 * 24),
        rotation=RotationPolicy(RotationMode.AUTO, delivery_secret(secrets)),
    )
    for token in (soon, later, auto):
        item = token_to_item(token)
        del item["due_pk"], item["next_due_at"]
        dynamodb.put_item(TableName=TABLE_NAME, Item={**item, "expiry_pk": {"S": "token"}})
    assert store.due(NOW + 400 * DAY).items == []
    # WHEN the run goes over them
    report = make_lifecycle().run()
    # THEN the one due got its reminder, the `auto` one was left alone, and all three left
    # by-expiry for by-due, each at its own time
    assert report.reminded == [f"{soon.client_id}:30"]
    assert report.rotated == []
    assert store.unscheduled().items == []
    assert store.due(NOW + 30 * DAY).items == [soon.client_id, auto.client_id]
    assert store.due(NOW + 400 * DAY).items == [soon.client_id, auto.client_id, later.client_id]
    for token in (later, auto):  # nothing a person sees
        assert store.get(token.client_id, consistent=True).version == 1
    # AND the next day's run, with nothing due, reads neither
    reads = bench.Reads()
    reads.watch(store.client)
    clock.now += DAY
    assert make_lifecycle().run().reminded == []
    assert reads.total == 0


def test_an_auto_token_rotates_at_the_first_reminder_of_the_reminder_days_in_force(
    dynamodb: Any,
    admin: TokenAdmin,
    hasher: Hasher,
    notifier: RecordingNotifier,
    secrets: Any,
    clock: Clock,
) -> None:
    # GIVEN an `auto` token 40 days from expiry, stored under ReminderDays 30,7,1: due on day 10
    delivery = delivery_secret(secrets)
    client_id = create_auto(admin, delivery).token.client_id
    # WHEN ReminderDays is lowered to 14,7,1, and the run of day 10 finds it through by-due
    lowered = DynamoDBTokenStore(TABLE_NAME, client=dynamodb, schedule=DueSchedule((14, 7, 1)))
    lifecycle = Lifecycle(
        store=lowered,
        hasher=hasher,
        notifier=notifier,
        delivery=SecretsManagerDelivery(secrets),
        grace_seconds=2 * DAY,
        clock=clock,
    )
    clock.now = NOW + 10 * DAY
    assert lowered.due(clock.now).items == [client_id]
    # THEN it is not rotated, and is due 14 days before its expiry
    assert lifecycle.run().rotated == []
    assert delivered(secrets, delivery) == {}
    assert lowered.due(NOW + 26 * DAY - 1).items == []
    assert lowered.due(NOW + 26 * DAY).items == [client_id]
    # AND it rotates then
    clock.now = NOW + 26 * DAY
    assert lifecycle.run().rotated == [client_id]


# -- the function --------------------------------------------------------------------------


@pytest.fixture
def lifecycle_environment(
    monkeypatch: pytest.MonkeyPatch, pepper_secret_arn: str, notifier: RecordingNotifier
) -> None:
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": UNUSED_KEY_ARN,
        "NOTIFICATION_TOPIC_ARN": notifier.inner._topic_arn,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)


def emitted(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def test_every_run_that_gets_to_its_end_counts_a_heartbeat_failed_work_included(
    lifecycle_environment: None,
    monkeypatch: pytest.MonkeyPatch,
    admin: TokenAdmin,
    notifier: RecordingNotifier,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a reminder due, and the reminder topic gone
    create(admin, "remind-bot", 20 * 24)
    monkeypatch.setattr("time.time", lambda: float(NOW + DAY))
    handler = load_handler("lifecycle")
    notifier.inner._sns.delete_topic(TopicArn=notifier.inner._topic_arn)
    capsys.readouterr()
    # WHEN the daily run fails to send it
    with pytest.raises(DependencyError, match="left work undone"):
        handler.lambda_handler({"job": "lifecycle"}, LambdaContext())
    # THEN it counted the failure and, having got to its end, the run
    [metrics] = emitted(capsys.readouterr().out)
    assert (metrics["LifecycleRuns"], metrics["LifecycleFailures"]) == ([1.0], [1.0])
    assert metrics["service"] == "gatekey"
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Gatekey"
    # WHEN a resume finds no run to go on with
    answer = handler.lambda_handler({"job": "lifecycle", "resume": True}, LambdaContext())
    # THEN it did nothing and counted no run: it never stands in for a daily one
    assert answer == {"resumed": False}
    assert [m["LifecycleRuns"] for m in emitted(capsys.readouterr().out)] == [[0.0]]


@dataclass
class OutOfTime(LambdaContext):
    """An invocation whose time runs out as soon as its run starts."""

    calls: int = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return 300_000 if self.calls == 1 else 10_000


def test_every_invocation_tells_how_long_the_run_it_leaves_unfinished_has_been_open(
    lifecycle_environment: None,
    monkeypatch: pytest.MonkeyPatch,
    admin: TokenAdmin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a reminder due
    create(admin, "remind-bot", 20 * 24)
    now = [float(NOW + DAY)]
    monkeypatch.setattr("time.time", lambda: now[0])
    handler = load_handler("lifecycle")
    capsys.readouterr()
    daily, resume = {"job": "lifecycle"}, {"job": "lifecycle", "resume": True}
    # WHEN the daily run, and a resume two hours later, have no time for it
    assert handler.lambda_handler(daily, OutOfTime())["finished"] is False
    now[0] += 2 * 3600
    assert handler.lambda_handler(resume, OutOfTime())["finished"] is False
    # AND a resume with time finishes the run, and the next finds nothing to go on with
    assert handler.lambda_handler(resume, LambdaContext())["reminded"]
    assert handler.lambda_handler(resume, LambdaContext()) == {"resumed": False}
    # THEN each invocation told the age of the run it left unfinished, 0 when none
    ages = [m["LifecycleUnfinishedSeconds"] for m in emitted(capsys.readouterr().out)]
    assert ages == [[0.0], [7200.0], [0.0], [0.0]]
