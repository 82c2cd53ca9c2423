"""Lifecycle work, run daily by functions/lifecycle: reminders before expiry, rotation of
`auto` tokens, the expiry notice, removal of previous-secret hashes past their grace, and
(optionally) disabling tokens idle for too long.

Work is found through sparse indexes keyed on when it falls due (by-due: the next notice or
rotation, store/due.py; by-grace-end: the grace's end; by-idle: the idle clock), never by
scanning, so a run reads on the order of the work it does. A run is bounded by the time it is
given: it takes one page of each source in turn, so no source's backlog starves another, and
records after each page where it stands (`RunState`); `resume` goes on from there, working
through what was due when the run began.

Exactly once: a reminder is claimed with a conditional write before it is sent (a second run,
overlapping or retried, finds the claim and sends nothing), confirmed after the send, and
released if the send fails (the next run sends it). A claim left by a run that was killed
between its send and its confirmation is sent again after `claim_timeout`: the one case where
a reminder can repeat, chosen over a reminder that is never sent.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Protocol

from gatekey.credentials import ClientSecret
from gatekey.errors import (
    ConcurrentModification,
    ConfigurationError,
    DependencyError,
    InvalidTransition,
    NotFound,
)
from gatekey.hashing import Hasher
from gatekey.model import (
    EXPIRED,
    IDLE,
    PROMOTED,
    ROTATED,
    AuditAction,
    AuditEvent,
    AuditValue,
    NoticeKey,
    PendingNotice,
    RotationMode,
    ServiceToken,
    TokenStatus,
    number,
    superseded,
)
from gatekey.notices import Notice, Notifier
from gatekey.store import DueSchedule, Page, RunState, TokenStore
from gatekey.store.due import DAY, next_due_at

logger = logging.getLogger(__name__)
ACTOR: Final = "gatekey:lifecycle"
# A run stops taking work when less than this share of the time it was given is left: enough
# for the tokens in hand to finish and the run's state to be written.
RESERVE: Final = 0.2


class SecretDelivery(Protocol):
    def stage(self, secret_arn: str, client_id: str, secret: ClientSecret) -> str:
        """Write the secret as a new AWSPENDING version; return its version id."""

    def promote(self, secret_arn: str, version_id: str) -> None:
        """Make that version AWSCURRENT, the one the consumer reads."""

    def withdraw(self, secret_arn: str, version_id: str) -> None:
        """If that version is AWSCURRENT, make the one it replaced current again."""


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
        self._schedule = schedule
        self._hasher = hasher
        self._notifier = notifier
        self._delivery = delivery
        self.reminder_days = schedule.reminder_days
        self.claim_timeout = schedule.claim_timeout
        self.grace_seconds = grace_seconds
        self.idle_days = idle_days  # 0: never disable idle tokens
        self._clock = clock
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
            "due": (partial(self._store.due, before), self._expiry_work),
            "unscheduled": (self._store.unscheduled, self._expiry_work),
            "grace": (partial(self._store.grace_ended, before), self._clean),
        }
        if self.idle_days:
            idle_before = before - self.idle_days * DAY
            sources["idle"] = (
                partial(self._store.idle_since_before, idle_before),
                self._disable_idle,
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

    # -- expiry work ---------------------------------------------------------------------------

    def _expiry_work(self, client_id: str, report: RunReport) -> None:
        """Work only a token due now by the run's own schedule: the index may say otherwise
        (a token stored before by-due, found with no time bound, or under other reminder days).
        Otherwise, or when there was nothing to do, store when it is due, so it is not read
        again before then."""
        token = self._store.get(client_id, consistent=True)
        now = self._clock()
        due = next_due_at(token, self._schedule)
        if due is None or now < due or not self._notice_or_rotation(token, now, report):
            self._store.reindex(token)

    def _notice_or_rotation(self, token: ServiceToken, now: int, report: RunReport) -> bool:
        """The token's expiry work due now; False when there was none and nothing was written."""
        client_id = token.client_id
        if token.status is TokenStatus.REVOKED or token.expires_at is None:
            return False
        if token.rotation.mode is RotationMode.AUTO and now < token.expires_at:
            rotation_at = token.expires_at - self.reminder_days[0] * DAY
            if token.delivery_pending is None and now < rotation_at:
                return False  # not yet: an `auto` token rotates at the first reminder threshold
            return self._rotate(token, now, report)
        # The most urgent threshold reached (one message a run at most); past expiry, the notice.
        due = [d for d in reversed(self.reminder_days) if now >= token.expires_at - d * DAY]
        days: NoticeKey | None = EXPIRED if now >= token.expires_at else (due[0] if due else None)
        if days is None or days in token.reminders_sent:
            return False
        notice = Notice.of(
            "Service Token Expired" if days == EXPIRED else "Service Token Expiring",
            token,
            f"{token.expires_at}:{number(days)}",
            None if days == EXPIRED else max(0, token.expires_at - now) // DAY,
        )
        action = AuditAction.EXPIRED if days == EXPIRED else AuditAction.REMINDED
        if self._notify_once(token, days, now, notice, action) is None:
            return False  # another run is sending it
        (report.expired if days == EXPIRED else report.reminded).append(
            f"{client_id}:{number(days)}"
        )
        return True

    def _notify_once(
        self,
        token: ServiceToken,
        days: NoticeKey,
        now: int,
        notice: Notice,
        confirmed: AuditAction,
        announced: Callable[[ServiceToken], ServiceToken] | None = None,
        details: Mapping[str, AuditValue] | None = None,
        *,
        if_unused: bool = False,
        sent: list[str] | None = None,
    ) -> ServiceToken | None:
        """Send `notice` once per channel, under the claim `days` (a reminder threshold or one of
        the codes above); then confirm with one write that also applies `announced` (by
        default: `days` joins reminders_sent). Return the token as stored, or None when another
        run holds the claim. With `if_unused`, the claim and each write after a send require
        that no use was recorded since the token was read (ConcurrentModification otherwise).
        Channels sent to by this call are added to `sent`."""
        update = partial(self._store.update, if_unused=if_unused)
        previous = next((p for p in token.reminders_pending if p.days == days), None)
        claimed = previous is not None and previous.claimed_at > 0
        if claimed and now - previous.claimed_at < self.claim_timeout:  # type: ignore[union-attr]
            return None  # another run is sending it right now
        done = previous.done if previous is not None else ()
        # 1. claim: a conditional write; a racing run fails here and sends nothing
        token = update(
            replace(
                token, updated_at=now, reminders_pending=_put(token, PendingNotice(days, now, done))
            ),
            self._event(token, AuditAction.REMINDER_CLAIMED, days=number(days)),
        )
        # 2. send on each channel not yet done, recording each; a failure releases the claim
        #    and keeps what was sent, so the next run completes it and repeats nothing
        for channel in self._notifier.channels:
            if channel in done:
                continue
            try:
                self._notifier.send(notice, channel)
            except DependencyError:
                self._store.update(
                    replace(
                        token,
                        updated_at=now,
                        reminders_pending=_put(token, PendingNotice(days, 0, done)),
                    ),
                    self._event(
                        token, AuditAction.REMINDER_RELEASED, days=number(days), sent=list(done)
                    ),
                )
                raise
            done = (*done, channel)
            if sent is not None:
                sent.append(channel)
            if len(done) < len(self._notifier.channels):
                token = update(
                    replace(
                        token,
                        updated_at=now,
                        reminders_pending=_put(token, PendingNotice(days, now, done)),
                    ),
                    self._event(
                        token, AuditAction.REMINDER_CLAIMED, days=number(days), sent=list(done)
                    ),
                )
        # 3. confirm, and apply what the notice announced; claims on reminders this one
        #    supersedes (released or abandoned by an earlier run) go with it
        sent_now = (*token.reminders_sent, days)
        confirmed_token = replace(
            token,
            updated_at=now,
            reminders_pending=tuple(
                p
                for p in token.reminders_pending
                if p.days != days and not superseded(p.days, sent_now)
            ),
        )
        return update(
            announced(confirmed_token)
            if announced is not None
            else replace(confirmed_token, reminders_sent=sent_now),
            self._event(
                token, confirmed, **(details if details is not None else {"days": number(days)})
            ),
        )

    def _rotate(self, token: ServiceToken, now: int, report: RunReport) -> bool:
        """Auto rotation, conditional writes around making the new secret current:

        1. a new secret is staged (AWSPENDING: nothing reads it) and the token accepts it,
           keeping the old one for the grace;
        2. once the new secret is AWSCURRENT (what the consumer reads), the token records so
           (PROMOTED), so a manual rotation keeps that one for its grace;
        3. the expiry moves forward by the token's duration.

        Between 2 and 3, the "Service Token Rotated" notice goes out once per channel, like a
        reminder. The consumer never reads a secret that does not authenticate, and the old one
        works through the grace whatever fails. A run that fails before 3 leaves the token due
        with `delivery_pending` set: the next run finishes the delivery and the notice, minting
        nothing new and repeating no channel. Each write requires the token as this run read or
        wrote it, so a manual rotation landing meanwhile is never undone (see `_promote`).
        False when this run wrote nothing (another run holds the notice's claim).
        """
        arn = token.rotation.delivery_secret_arn
        assert arn is not None  # noqa: S101 - RotationPolicy requires it for AUTO
        wrote = token.delivery_pending is None
        if wrote:
            secret = ClientSecret.generate()
            version_id = self._delivery.stage(arn, token.client_id, secret)
            token = self._store.update(
                replace(
                    token,
                    updated_at=now,
                    secret_hash=self._hasher.hash(secret),
                    client_secret_version=token.client_secret_version + 1,
                    previous_secret_hash=token.secret_hash,
                    previous_client_secret_expires_at=now + self.grace_seconds,
                    delivery_pending=version_id,
                ),
                self._event(
                    token,
                    AuditAction.ROTATED,
                    client_secret_version=token.client_secret_version + 1,
                    previous_client_secret_expires_at=now + self.grace_seconds,
                ),
            )
        promoted = self._promote(token, arn, now)
        if promoted is None:
            return True  # a manual rotation abandoned the delivery; the next run rotates afresh
        wrote = wrote or promoted is not token
        token = promoted
        if ROTATED not in token.reminders_sent:
            notice = Notice.of(
                "Service Token Rotated", token, f"rotated:{token.client_secret_version}"
            )
            notified = self._notify_once(token, ROTATED, now, notice, AuditAction.NOTIFIED)
            if notified is None:
                return wrote  # another run holds the notice's claim and finishes the rotation
            token = notified
        expires_at = token.duration.after(token.expires_at or now)
        token = self._store.update(
            replace(
                token,
                updated_at=now,
                expires_at=expires_at,
                delivery_pending=None,
                reminders_sent=(),
                reminders_pending=(),
            ),
            self._event(token, AuditAction.REFRESHED, expires_at=expires_at),
        )
        report.rotated.append(token.client_id)
        return True

    def _promote(self, token: ServiceToken, arn: str, now: int) -> ServiceToken | None:
        """Make the staged secret AWSCURRENT, then record that on the token (PROMOTED, before
        the notice): from then on the consumer may hold it, and a manual rotation keeps it for
        its grace (TokenAdmin.rotate). Return the token as stored.

        The record requires the token as read. A manual rotation landing after that read
        abandoned the staged secret and kept the older one for its grace, so the record fails;
        the promotion is then withdrawn (the version it replaced is current again) and None is
        returned: the consumer reads a secret the token accepts, and the next run rotates
        afresh."""
        version_id = token.delivery_pending
        assert version_id is not None  # noqa: S101 - staged above or by an earlier run
        if PROMOTED in token.reminders_sent:
            return token
        try:
            self._delivery.promote(arn, version_id)
        except DependencyError:
            self._keep_previous_secret(token, now)
            raise
        try:
            return self._store.update(
                replace(token, updated_at=now, reminders_sent=(*token.reminders_sent, PROMOTED)),
                self._event(
                    token,
                    AuditAction.UPDATED,
                    reason="delivered",
                    client_secret_version=token.client_secret_version,
                ),
            )
        except ConcurrentModification:
            current = self._store.get(token.client_id, consistent=True)
            if current.delivery_pending == version_id:
                raise  # still this delivery (another run wrote): the next run records it
            self._delivery.withdraw(arn, version_id)
            logger.info(
                "delivery abandoned by a manual rotation: withdrawn",
                extra={"client_id": token.client_id},
            )
            return None

    def _keep_previous_secret(self, token: ServiceToken, now: int) -> None:
        """The consumer still reads the old secret: keep it working past the next daily run,
        for as long as the delivery keeps failing (LifecycleErrorsAlarm fires meanwhile)."""
        keep_until = now + self.grace_seconds + DAY
        ends = token.previous_client_secret_expires_at
        if token.previous_secret_hash is None or (ends or 0) >= keep_until:
            return
        self._store.update(
            replace(token, updated_at=now, previous_client_secret_expires_at=keep_until),
            self._event(
                token,
                AuditAction.UPDATED,
                previous_client_secret_expires_at=keep_until,
                reason="delivery_pending",
            ),
        )

    def _disable_idle(self, client_id: str, report: RunReport) -> None:
        """Announced, then disabled in the confirming write: a failed send leaves the token
        enabled and idle, so the next run completes the notice and the change.

        The authorizer records a use without taking the token's lock, so every write of the
        notice requires the idle clock to be the one read: a use recorded meanwhile keeps the
        token enabled. If that use lands after a channel went out, the claim is withdrawn (and
        audited) so the token's next idle spell starts a notice of its own."""
        now = self._clock()
        token = self._store.get(client_id, consistent=True)
        idle_clock = token.idle_clock()
        idle_days = (now - idle_clock) // DAY
        usable = token.status is TokenStatus.ACTIVE and token.enabled and not token.is_expired(now)
        if not usable or idle_days < self.idle_days:
            return
        notice = Notice.of("Service Token Disabled", token, f"disabled:{idle_clock}")
        details: dict[str, AuditValue] = {"reason": "idle", "idle_days": idle_days}
        sent: list[str] = []
        try:
            done = self._notify_once(
                token,
                IDLE,
                now,
                notice,
                AuditAction.DISABLED,
                _disabled,
                details,
                if_unused=True,
                sent=sent,
            )
        except ConcurrentModification:
            current = self._store.get(client_id, consistent=True)
            if current.idle_clock() == idle_clock:
                raise  # not a use: someone else changed the token
            self._withdraw_idle_notice(current, now, sent)
            return
        if done:
            report.disabled.append(client_id)

    def _withdraw_idle_notice(self, token: ServiceToken, now: int, sent: list[str]) -> None:
        claim = next((p for p in token.reminders_pending if p.days == IDLE), None)
        logger.info("idle token used during its notice: kept", extra={"client_id": token.client_id})
        if claim is None:
            return  # used before anything was claimed, so before anything was sent
        self._store.update(
            replace(
                token,
                updated_at=now,
                reminders_pending=tuple(p for p in token.reminders_pending if p.days != IDLE),
            ),
            self._event(
                token,
                AuditAction.REMINDER_RELEASED,
                days=number(IDLE),
                sent=sorted({*claim.done, *sent}),
                reason="used",
            ),
        )

    def _clean(self, client_id: str, report: RunReport) -> None:
        now = self._clock()
        token = self._store.get(client_id, consistent=True)
        ends = token.previous_client_secret_expires_at
        if token.previous_secret_hash is None or ends is None or ends > now:
            return
        if token.delivery_pending is not None and PROMOTED not in token.reminders_sent:
            return  # the consumer still reads the old secret (see _keep_previous_secret)
        self._store.update(
            replace(
                token,
                updated_at=now,
                previous_secret_hash=None,
                previous_client_secret_expires_at=None,
            ),
            self._event(token, AuditAction.GRACE_ENDED),
        )
        report.cleaned.append(client_id)

    def _event(self, token: ServiceToken, action: AuditAction, **details: Any) -> AuditEvent:
        return AuditEvent(token.client_id, action, ACTOR, self._clock(), None, details)


def _put(token: ServiceToken, pending: PendingNotice) -> tuple[PendingNotice, ...]:
    return (*(p for p in token.reminders_pending if p.days != pending.days), pending)


def _disabled(token: ServiceToken) -> ServiceToken:
    return replace(token, enabled=False)
