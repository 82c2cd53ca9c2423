"""What a daily lifecycle run reads and calls, measured with real boto3 calls against moto.

    python bench/lifecycle_bench.py [--tokens 100000] [--due 10000] [--latency-ms 25]
                                    [--json bench/results/lifecycle.json]

1. Reads per notice: `--tokens` tokens whose expiries are spread evenly over the next year, each
   as a year of daily runs left it (every reminder threshold passed by yesterday's run sent).
   Today's run reads index entries (Query `Count`) and items (GetItem), and sends the notices
   falling due since yesterday; the ratio of the two is what docs/scale.md quotes.
2. A day with `--due` notices: that many tokens whose 7-day reminder fell due since yesterday,
   worked on exactly as the Lambda handler sets the run up (8 workers, 100 ids a page, a 300 s
   invocation, resumed until done), with `--latency-ms` added to every AWS call (moto answers in
   microseconds; AWS does not). It reports the time, every call by operation, and the calls
   each due token makes one after another.

moto copies the whole table before every transaction, for a rollback no transaction here needs
(no write conflicts): with 100,000 items that is seconds per write, so the copy is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in ("layers/gatekey", "local"):
    if str(ROOT / path) not in sys.path:
        sys.path.insert(0, str(ROOT / path))

from gatekey.aws.delivery import SecretsManagerDelivery  # noqa: E402
from gatekey.aws.dynamodb import DynamoDBTokenStore  # noqa: E402
from gatekey.aws.dynamodb_items import token_to_item  # noqa: E402
from gatekey.aws.notify import AwsNotifier  # noqa: E402
from gatekey.durations import DAY, Duration  # noqa: E402
from gatekey.hashing import Hasher  # noqa: E402
from gatekey.lifecycle import Lifecycle  # noqa: E402
from gatekey.model import RotationMode, RotationPolicy, ServiceToken, new_service_token  # noqa: E402
from gatekey.notices import Notice  # noqa: E402
from gatekey.store import DueSchedule  # noqa: E402
from gatekey.wiring import LIFECYCLE_WORKERS  # noqa: E402

REGION = "us-east-1"
TABLE = "gatekey-bench"
RUN_AT = 1_800_000_000 - 2 * 3600  # 2027-01-15T06:00:00Z, the daily run's time
LAMBDA_TIMEOUT = 300.0  # LifecycleFunction's Timeout in template.yaml
WORKERS = LIFECYCLE_WORKERS
SCHEDULE = DueSchedule((30, 7, 1))
HASHER = Hasher(peppers={"p1": b"b" * 64}, current_key_id="p1")


def steady_state_tokens(count: int, run_at: int = RUN_AT) -> list[ServiceToken]:
    """`count` year-long tokens whose expiries are spread evenly over the year after the last
    run (a day before `run_at`), each with the notices that run and those before it sent."""
    yesterday = run_at - DAY
    tokens = []
    for i in range(count):
        expires_at = yesterday + 1 + (i * 365 * DAY) // count
        sent = tuple(d for d in SCHEDULE.reminder_days if expires_at - d * DAY <= yesterday)
        token, _ = new_service_token(name=f"bot-{i}", hasher=HASHER, now=yesterday)
        tokens.append(
            replace(
                token,
                created_at=expires_at - 365 * DAY,
                expires_at=expires_at,
                duration=Duration(365 * 24),
                reminders_sent=sent,
            )
        )
    return tokens


def due_today(tokens: list[ServiceToken], run_at: int = RUN_AT) -> int:
    """The notices today's run owes: thresholds (and expiries) passed since yesterday's run."""
    points = (*SCHEDULE.reminder_days, 0)  # days before expiry; 0: the expiry notice
    return sum(
        1
        for t in tokens
        for d in points
        if t.expires_at is not None and run_at - DAY < t.expires_at - d * DAY <= run_at
    )


def put_all(dynamodb: Any, tokens: list[ServiceToken], table: str = TABLE) -> None:
    requests = [{"PutRequest": {"Item": token_to_item(t, SCHEDULE)}} for t in tokens]
    for start in range(0, len(requests), 25):
        dynamodb.batch_write_item(RequestItems={table: requests[start : start + 25]})


@dataclass
class Reads:
    """What the run's clients read and called: index entries (Query Count), items (GetItem),
    every call by operation, and the calls of each page by thread (a page starts with the
    run's Query on its own thread), for the run's critical path."""

    index_entries: int = 0
    items: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    pages: list[Counter[int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return self.index_entries + self.items

    @property
    def critical_path(self) -> int:
        """Calls one after another: per page, the run's own calls and its busiest worker's."""
        run = threading.get_ident()
        return sum(
            page[run] + max((n for t, n in page.items() if t != run), default=0)
            for page in self.pages
        )

    def watch(self, client: Any) -> None:
        def after(parsed: dict[str, Any], model: Any, **_: Any) -> None:
            with self.lock:
                self.calls[f"{client.meta.service_model.service_name}.{model.name}"] += 1
                if model.name == "Query":
                    self.index_entries += parsed.get("Count", 0)
                    self.pages.append(Counter())
                elif model.name == "GetItem" and "Item" in parsed:
                    self.items += 1
                if self.pages:
                    self.pages[-1][threading.get_ident()] += 1

        client.meta.events.register("after-call.*.*", after)


def skip_moto_rollback_copies() -> None:
    import moto.dynamodb.models as moto_dynamodb

    moto_dynamodb.copy = SimpleNamespace(deepcopy=lambda value, *_: value)  # type: ignore[assignment]


@contextmanager
def one_call_at_a_time(clients: list[Any], latency: float, moto: list[float]) -> Iterator[None]:
    """moto is not thread-safe, and DynamoDB, SNS and EventBridge each handle a request
    atomically: one lock around moto's handling of each call, and `latency` seconds of waiting
    before it, outside the lock, as network round trips overlap across threads. moto's own time
    (under the lock, so one call after another) is added up in `moto[0]`."""
    lock = threading.Lock()
    held = threading.local()

    def before(**_: Any) -> None:
        time.sleep(latency)
        lock.acquire()
        held.value = time.monotonic()

    def after(**_: Any) -> None:
        if getattr(held, "value", None) is not None:
            moto[0] += time.monotonic() - held.value
            held.value = None
            lock.release()

    hooks = [("before-call", before), ("after-call", after), ("after-call-error", after)]
    for client in clients:
        for event, hook in hooks:
            client.meta.events.register(event, hook)
    try:
        yield
    finally:
        for client in clients:
            for event, hook in hooks:
                client.meta.events.unregister(event, hook)


@dataclass
class CountingNotifier:
    inner: AwsNotifier
    sent: Counter[str] = field(default_factory=Counter)

    @property
    def channels(self) -> tuple[str, ...]:
        return self.inner.channels

    def send(self, notice: Notice, channel: str) -> None:
        self.inner.send(notice, channel)
        self.sent[notice.notice_id] += 1


def aws(latency: float = 0.0) -> dict[str, Any]:
    """The clients, table and topic of one measurement (call inside mock_aws)."""
    import boto3

    from gatekey_local.provision import load_template, table_definition

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName=TABLE, **table_definition(load_template()))
    sns = boto3.client("sns", region_name=REGION)
    notifier = CountingNotifier(
        AwsNotifier(
            sns=sns,
            events=boto3.client("events", region_name=REGION),
            topic_arn=sns.create_topic(Name="reminders")["TopicArn"],
        )
    )
    store = DynamoDBTokenStore(TABLE, client=dynamodb, schedule=SCHEDULE)
    return {"dynamodb": dynamodb, "store": store, "notifier": notifier, "sns": sns}


def lifecycle(made: dict[str, Any], workers: int = 1) -> Lifecycle:
    import boto3

    return Lifecycle(
        store=made["store"],
        hasher=HASHER,
        notifier=made["notifier"],
        delivery=SecretsManagerDelivery(boto3.client("secretsmanager", region_name=REGION)),
        clock=lambda: RUN_AT,
        workers=workers,
    )


def lambda_clock(timeout: float = LAMBDA_TIMEOUT) -> Callable[[], float]:
    """`context.get_remaining_time_in_millis() / 1000` of an invocation starting now."""
    started = time.monotonic()
    return lambda: timeout - (time.monotonic() - started)


def measure_reads(count: int) -> dict[str, Any]:
    from moto import mock_aws

    with mock_aws():
        made = aws()
        tokens = steady_state_tokens(count)
        started = time.monotonic()
        put_all(made["dynamodb"], tokens)
        loaded = time.monotonic() - started
        reads = Reads()
        reads.watch(made["dynamodb"])
        started = time.monotonic()
        report = lifecycle(made).run()
        took = time.monotonic() - started
    notices = len(report.reminded) + len(report.expired) + len(report.rotated)
    return {
        "tokens": count,
        "notices_owed": due_today(tokens),
        "notices_sent": notices,
        "index_entries_read": reads.index_entries,
        "items_read": reads.items,
        "reads_per_notice": round(reads.total / max(notices, 1), 3),
        # What the run before by-due read: every token expiring within the first threshold.
        "tokens_within_30_days": sum(1 for t in tokens if (t.expires_at or 0) <= RUN_AT + 30 * DAY),
        "dynamodb_calls": dict(reads.calls),
        "failed": len(report.failed),
        "load_seconds": round(loaded, 1),
        "run_seconds": round(took, 1),
    }


def measure_day(due: int, latency: float) -> dict[str, Any]:
    from moto import mock_aws

    with mock_aws():
        made = aws()
        # Each token's 7-day reminder fell due in the day since yesterday's run.
        tokens = [
            replace(t, expires_at=RUN_AT + 7 * DAY - 1 - (i * DAY) // due, reminders_sent=(30,))
            for i, t in enumerate(steady_state_tokens(due))
        ]
        put_all(made["dynamodb"], tokens)
        clients = [made["dynamodb"], made["sns"], made["notifier"].inner._events]
        calls = Reads()
        for client in clients:
            calls.watch(client)
        run = lifecycle(made, workers=WORKERS)
        seconds: list[float] = []
        moto = [0.0]
        with one_call_at_a_time(clients, latency, moto):
            started = time.monotonic()
            reports = [run.run(time_left=lambda_clock())]
            seconds.append(round(time.monotonic() - started, 1))
            while not reports[-1].finished:
                started = time.monotonic()
                resumed = run.resume(time_left=lambda_clock())
                assert resumed is not None
                reports.append(resumed)
                seconds.append(round(time.monotonic() - started, 1))
    reminded = sum(len(r.reminded) for r in reports)
    # Per token, one after another: its read, its three writes, one send per channel. Per
    # page of 100: the index query and the run's own state.
    per_token = (
        "dynamodb.GetItem",
        "dynamodb.TransactWriteItems",
        "sns.Publish",
        "events.PutEvents",
    )
    return {
        "due": due,
        "reminded": reminded,
        "notices_repeated": sum(1 for n in made["notifier"].sent.values() if n > 2),
        "failed": sum(len(r.failed) for r in reports),
        "latency_ms_added_per_call": latency * 1000,
        "workers": WORKERS,
        "invocations": len(seconds),
        "invocation_seconds": seconds,
        "moto_seconds_one_call_after_another": round(moto[0], 1),
        "calls": dict(sorted(calls.calls.items())),
        "sequential_calls_per_due_token": round(
            sum(calls.calls[op] for op in per_token) / max(reminded, 1), 2
        ),
        "critical_path_calls": calls.critical_path,
    }


def measure_kinds(count: int = 50) -> dict[str, Any]:
    """Calls per token, one after another, for each kind of work: `count` tokens of one kind
    at a time, as the handler's run would find them."""
    import boto3
    from moto import mock_aws

    found: dict[str, Any] = {}
    kinds = ("reminder", "auto_rotation", "grace_end", "idle_disable")
    for kind in kinds:
        with mock_aws():
            made = aws()
            secrets = boto3.client("secretsmanager", region_name=REGION)
            tokens = []
            for token in steady_state_tokens(count):
                if kind == "reminder":
                    token = replace(token, expires_at=RUN_AT + 7 * DAY - 1, reminders_sent=(30,))
                elif kind == "auto_rotation":
                    arn = secrets.create_secret(
                        Name=f"bot/{token.client_id}",
                        SecretString="{}",
                        Tags=[{"Key": "gatekey-delivery", "Value": "true"}],
                    )["ARN"]
                    policy = RotationPolicy(RotationMode.AUTO, arn)
                    token = replace(token, expires_at=RUN_AT + 29 * DAY, rotation=policy)
                elif kind == "grace_end":
                    token = replace(
                        token,
                        expires_at=RUN_AT + 200 * DAY,
                        reminders_sent=(),
                        previous_secret_hash=token.secret_hash,
                        previous_client_secret_expires_at=RUN_AT - 60,
                    )
                else:
                    token = replace(
                        token,
                        idle_since=RUN_AT - 100 * DAY,
                        expires_at=None,
                        duration=Duration(None),
                    )
                tokens.append(token)
            put_all(made["dynamodb"], tokens)
            calls = Reads()
            for client in (made["dynamodb"], made["sns"], made["notifier"].inner._events, secrets):
                calls.watch(client)
            run = Lifecycle(
                store=made["store"],
                hasher=HASHER,
                notifier=made["notifier"],
                delivery=SecretsManagerDelivery(secrets),
                clock=lambda: RUN_AT,
                idle_days=30 if kind == "idle_disable" else 0,
            )
            report = run.run()
            done = {
                "reminder": report.reminded,
                "auto_rotation": report.rotated,
                "grace_end": report.cleaned,
                "idle_disable": report.disabled,
            }[kind]
            assert len(done) == count, (kind, report)
            assert not report.failed, (kind, report)
            per_page = ("dynamodb.Query", "dynamodb.UpdateItem")  # the index and the run's state
            per_token = {op: n for op, n in calls.calls.items() if op not in per_page}
            found[kind] = {
                "calls_per_token": {op: round(n / count, 2) for op, n in sorted(per_token.items())},
                "sequential_calls_per_token": round(sum(per_token.values()) / count, 2),
            }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    skip_moto_rollback_copies()
    results = {
        "command": " ".join(["python", *sys.argv]),
        "reads": measure_reads(args.tokens),
        "day": measure_day(args.due, args.latency_ms / 1000),
        "kinds": measure_kinds(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
