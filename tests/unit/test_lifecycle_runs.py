"""A lifecycle run's own logic on the in-memory store: pages, the time budget, a run cut short
and resumed, each kind of work getting its turn, how long an unfinished run has been open, and
a run that leaves work undone still getting to its end. What the lifecycle decides for each
token is in tests/unit/test_lifecycle_decisions.py; what only DynamoDB or the function can show
(reads per notice, tokens from before by-due, due times stored under other reminder days, the
function's metrics and permissions) stays on moto: tests/integration/test_lifecycle.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gatekey.admin import TokenAdmin
from gatekey.durations import DAY, Duration
from gatekey.hashing import Hasher
from gatekey.model import new_service_token
from support.constants import NOW
from support.lifecycle import (
    Clock,
    CountingStore,
    FakeDelivery,
    RecordingNotifier,
    create,
    lifecycle_builder,
    sevenday_reminders_due,
    stored,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def hasher(unit_hasher: Hasher) -> Hasher:
    return unit_hasher


@pytest.fixture
def notifier(fake_notifier: RecordingNotifier) -> RecordingNotifier:
    return fake_notifier


@pytest.fixture
def make_lifecycle(
    store: CountingStore,
    hasher: Hasher,
    notifier: RecordingNotifier,
    fake_delivery: FakeDelivery,
    clock: Clock,
) -> Any:
    return lifecycle_builder(store, hasher, notifier, fake_delivery, clock)


@pytest.fixture
def admin(store: CountingStore, hasher: Hasher, clock: Clock) -> TokenAdmin:
    return TokenAdmin(store=store, hasher=hasher, clock=clock)


class OutOfTime:
    """An invocation's time left, running out as soon as its run starts."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return 300.0 if self.calls == 1 else 10.0


def test_a_run_cut_short_by_its_time_goes_on_where_it_stopped_and_sends_each_notice_once(
    store: CountingStore,
    hasher: Hasher,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
) -> None:
    # GIVEN 50 reminders due (three pages of 20 in the index)
    tokens = sevenday_reminders_due(50, hasher)
    stored(store, tokens)
    lifecycle = make_lifecycle(page_size=20)

    # WHEN the invocation's time falls below the reserve after 24 notices, in the second page
    def time_left() -> float:
        return 300.0 if len(notifier.sent) < 2 * 24 else 59.0

    first = lifecycle.run(time_left=time_left)
    # THEN the run stops there, unfinished
    assert (len(first.reminded), first.finished) == (24, False)
    # WHEN the next invocation resumes it
    resumed = lifecycle.resume(time_left=lambda: 300.0)
    # THEN it sends the rest, and every token got its reminder once
    assert resumed is not None
    assert resumed.finished
    assert sorted(first.reminded + resumed.reminded) == sorted(f"{t.client_id}:7" for t in tokens)
    assert notifier.duplicates() == []
    # AND it went on from the page it stopped in: one page read twice at most
    assert 50 <= store.index_entries <= 50 + 20
    # AND a finished run leaves nothing to resume
    assert lifecycle.resume(time_left=lambda: 300.0) is None


def test_each_kind_of_work_gets_its_turn_while_another_has_a_backlog(
    store: CountingStore,
    hasher: Hasher,
    make_lifecycle: Any,
    notifier: RecordingNotifier,
) -> None:
    # GIVEN 50 reminders due, a previous secret whose grace ended, a token idle for 100 days
    reminders = sevenday_reminders_due(50, hasher)
    rotated, _ = new_service_token(name="rotated", hasher=hasher, now=NOW - DAY)
    graced = replace(
        rotated,
        previous_secret_hash=rotated.secret_hash,
        previous_client_secret_expires_at=NOW - 60,
    )
    idle, _ = new_service_token(
        name="idle", hasher=hasher, now=NOW - 100 * DAY, duration=Duration(None)
    )
    stored(store, [*reminders, graced, idle])

    # WHEN a run, taking pages of 20, has time for 30 notices only
    def time_left() -> float:
        return 300.0 if len(notifier.sent) < 2 * 30 else 10.0

    report = make_lifecycle(idle_days=30, page_size=20).run(time_left=time_left)
    # THEN the grace clean-up and the idle token had their turn beside the reminders' backlog
    assert report.cleaned == [graced.client_id]
    assert report.disabled == [idle.client_id]
    assert (len(report.reminded), report.finished) == (29, False)
    assert store.get(graced.client_id, consistent=True).previous_secret_hash is None


def test_a_run_left_unfinished_tells_how_long_it_has_been_open(
    admin: TokenAdmin, make_lifecycle: Any, clock: Clock
) -> None:
    # GIVEN a reminder due
    create(admin, "remind-bot", 20 * 24)
    clock.now = NOW + DAY
    lifecycle = make_lifecycle()
    # WHEN the daily run, and a resume two hours later, have no time for it
    daily = lifecycle.run(time_left=OutOfTime())
    clock.now += 2 * 3600
    late = lifecycle.resume(time_left=OutOfTime())
    # AND a resume with time finishes the run
    finished = lifecycle.resume(time_left=lambda: 300.0)
    # THEN each left unfinished tells how long ago its run began, the finished one 0
    assert (daily.finished, daily.unfinished_for) == (False, 0)
    assert late is not None
    assert (late.finished, late.unfinished_for) == (False, 2 * 3600)
    assert finished is not None
    assert (finished.finished, finished.unfinished_for, len(finished.reminded)) == (True, 0, 1)
    # AND the next finds nothing to go on with
    assert lifecycle.resume(time_left=lambda: 300.0) is None


def test_a_run_that_leaves_work_undone_still_gets_to_its_end_and_leaves_nothing_to_resume(
    admin: TokenAdmin, make_lifecycle: Any, notifier: RecordingNotifier, clock: Clock
) -> None:
    # GIVEN a reminder due, and SNS failing
    client_id = create(admin, "remind-bot", 20 * 24).token.client_id
    notifier.fail_after["sns"] = 0
    clock.now = NOW + DAY
    lifecycle = make_lifecycle()
    # WHEN the daily run fails to send it
    report = lifecycle.run(time_left=lambda: 300.0)
    # THEN it reports the failure and got to its end (what the function's heartbeat counts)
    assert report.failed == [f"{client_id}: sns notification failed: EndpointConnectionError"]
    assert (report.finished, report.reminded) == (True, [])
    # AND a resume does not stand in for the next daily run, which sends it
    assert lifecycle.resume(time_left=lambda: 300.0) is None
    del notifier.fail_after["sns"]
    clock.now += DAY
    assert lifecycle.run().reminded == [f"{client_id}:30"]
