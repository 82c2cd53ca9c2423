"""The lifecycle run, daily by functions/lifecycle: it finds the tokens with work due and
hands each to its work: reminders, the expiry notice and rotation of `auto` tokens
(expiry.py, auto_rotation.py), removal of previous-secret hashes past their grace
(auto_rotation.py), and (optionally) disabling tokens idle for too long (idle.py). Each
notice goes out exactly once per channel (notices.py).

Work is found through sparse indexes keyed on when it falls due (by-due: the next notice or
rotation, store/due.py; by-grace-end: the grace's end; by-idle: the idle clock), never by
scanning, so a run reads on the order of the work it does. A run is bounded by the time it is
given: it takes one page of each source in turn, so no source's backlog starves another, and
records after each page where it stands (`RunState`); `resume` goes on from there, working
through what was due when the run began.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Final

from gatekey.auto_rotation import AutoRotation, SecretDelivery
from gatekey.durations import DAY
from gatekey.errors import (
    ConcurrentModification,
    ConfigurationError,
    DependencyError,
    InvalidTransition,
    NotFound,
)
from gatekey.expiry import ExpiryWork
from gatekey.hashing import Hasher
from gatekey.idle import IdleWork
from gatekey.notices import Notices, Notifier
from gatekey.store import DueSchedule, Page, RunState, TokenStore

logger = logging.getLogger(__name__)
ACTOR: Final = "gatekey:lifecycle"
# A run stops taking work when less than this share of the time it was given is left: enough
# for the tokens in hand to finish and the run's state to be written.
RESERVE: Final = 0.2


@dataclass
class RunReport:
    reminded: list[str] = field(default_factory=list)  # "client_id:days"
    expired: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "client_id: reason"
    # False when the run stopped for time (or a newer run took over): `resume` goes on.
    finished: bool = True
    # When it stopped for time: how long ago the run began (seconds), else 0.
    unfinished_for: int = 0


class _Deadline:
    """The run's time: `time_left()` seconds as given at its start, less the reserve."""

    def __init__(self, time_left: Callable[[], float] | None) -> None:
        self._time_left = time_left
        self._reserve = RESERVE * time_left() if time_left is not None else 0.0

    def passed(self) -> bool:
        return self._time_left is not None and self._time_left() < self._reserve


Work = Callable[[str, "RunReport"], None]


class Lifecycle:
    def __init__(
        self,
        *,
        store: TokenStore,
        hasher: Hasher,
        notifier: Notifier,
        delivery: SecretDelivery,
        reminder_days: tuple[int, ...] | None = None,
        grace_seconds: int = 7 * DAY,
        idle_days: int = 0,
        clock: Callable[[], int],
        workers: int = 1,
        page_size: int = 100,
    ) -> None:
        # The store keeps due times by its schedule: the run must decide by the same one.
        schedule = store.schedule
        if reminder_days is not None and DueSchedule(reminder_days) != schedule:
            raise ConfigurationError(
                f"reminder days {reminder_days} differ from the store's {schedule.reminder_days}"
            )
        self._store = store
        self._clock = clock
        self._idle_days = idle_days  # 0: never disable idle tokens
        notices = Notices(
            store=store,
            notifier=notifier,
            claim_timeout=schedule.claim_timeout,
            clock=clock,
            actor=ACTOR,
        )
        self._rotation = AutoRotation(
            store=store,
            hasher=hasher,
            delivery=delivery,
            notices=notices,
            grace_seconds=grace_seconds,
            clock=clock,
            actor=ACTOR,
        )
        self._expiry = ExpiryWork(
            store=store, schedule=schedule, notices=notices, rotation=self._rotation, clock=clock
        )
        self._idle = IdleWork(store=store, notices=notices, idle_days=idle_days, clock=clock)
        self.workers = workers  # tokens worked on at once
        self.page_size = page_size
        # Per run (in this container): for each kind of work, the tokens it was done for.
        self._worked: dict[str, dict[str, set[str]]] = {}
        self._lock = threading.Lock()

    def run(self, *, time_left: Callable[[], float] | None = None) -> RunReport:
        """A new run over what is due now. A failure of one token's work is reported and the
        run goes on; the next run picks up whatever is left. Given `time_left` (seconds), it
        stops while a share of that is left, and `resume` goes on."""
        state = RunState(secrets.token_hex(8), self._clock())
        self._store.save_run_state(state, replaces=None)
        return self._work(state, time_left)

    def resume(self, *, time_left: Callable[[], float] | None = None) -> RunReport | None:
        """Go on with the last run if it stopped before its end; None when there is nothing
        to go on with."""
        state = self._store.run_state()
        if state is None or state.finished(self._sources(state)):
            return None
        return self._work(state, time_left)

    def _sources(self, state: RunState) -> dict[str, tuple[Callable[..., Page[str]], Work]]:
        """Where each kind of work is found, and what to do with each token found there."""
        before = state.due_before
        sources: dict[str, tuple[Callable[..., Page[str]], Work]] = {
            "due": (partial(self._store.due, before), self._expiry.expiry),
            "unscheduled": (self._store.unscheduled, self._expiry.expiry),
            "grace": (partial(self._store.grace_ended, before), self._rotation.clean),
        }
        if self._idle_days:
            idle_before = before - self._idle_days * DAY
            sources["idle"] = (
                partial(self._store.idle_since_before, idle_before),
                self._idle.disable_idle,
            )
        return sources

    def _work(self, state: RunState, time_left: Callable[[], float] | None) -> RunReport:
        """One page of each unfinished source in turn until all are read to their end or time
        runs out; where it stands is recorded after each page. A page is done once every token
        on it was worked on: those whose work succeeded no longer fall due by the run's bound,
        and those that stay (a failure, or nothing to do yet) are behind the recorded position."""
        report = RunReport()
        deadline = _Deadline(time_left)
        sources = self._sources(state)
        positions = dict(state.positions)
        with self._lock:  # a new run forgets the last one's
            worked = self._worked.get(state.run_id, {})
            self._worked = {state.run_id: worked}
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        try:
            while pending := [n for n in sources if n not in positions or positions[n]]:
                for name in pending:
                    fetch, work = sources[name]
                    if deadline.passed():
                        return self._unfinished(report, state)
                    page = fetch(limit=self.page_size, next_token=positions.get(name))
                    seen = worked.setdefault(work.__name__, set())
                    if not self._each(page.items, work, seen, report, deadline, pool):
                        return self._unfinished(report, state)  # the page is read again
                    positions[name] = page.next_token
                    saved = replace(state, positions=dict(positions))
                    if not self._store.save_run_state(saved, replaces=state.run_id):
                        logger.info("a newer lifecycle run took over", extra={"run": state.run_id})
                        report.finished = False
                        return report
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return report

    def _unfinished(self, report: RunReport, state: RunState) -> RunReport:
        report.finished = False
        report.unfinished_for = max(0, self._clock() - state.due_before)
        return report

    def _each(
        self,
        client_ids: list[str],
        work: Work,
        seen: set[str],
        report: RunReport,
        deadline: _Deadline,
        pool: ThreadPoolExecutor | None,
    ) -> bool:
        """Work on each token of a page (on the pool's threads, if any) unless this run did
        this work for it already (in `seen`); False when time ran out before all of them were
        started.

        Once a run: a token whose due time its work moved, but still within the run's bound
        and past the page it was read on, is found again by a later page. An `auto` token whose
        duration is shorter than the first reminder threshold is such a one: rotated again, its
        consumer's secret from before the run would be dropped with no grace."""

        def one(client_id: str) -> bool:
            if deadline.passed():
                return False
            with self._lock:
                if client_id in seen:
                    return True
                seen.add(client_id)
            self._guarded(report, client_id, partial(work, client_id, report))
            return True

        done = pool.map(one, client_ids) if pool is not None else map(one, client_ids)
        return all(list(done))

    def _guarded(self, report: RunReport, client_id: str, work: Callable[[], object]) -> None:
        try:
            work()
        except (DependencyError, ConcurrentModification, InvalidTransition, NotFound) as exc:
            logger.warning(
                "lifecycle work failed", extra={"client_id": client_id, "reason": exc.message}
            )
            report.failed.append(f"{client_id}: {exc.message}")
