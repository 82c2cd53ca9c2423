"""Notices: what the lifecycle tells people (SNS) and systems (EventBridge) about a token,
and the protocol that sends each exactly once per channel.

A notice is claimed with a conditional write before it is sent (a second run, overlapping or
retried, finds the claim and sends nothing), each channel is recorded as it goes out, the claim
is released if a send fails (the next run sends what is left, repeating no channel), and one
write confirms it. A claim left by a run that was killed between a send and its record is taken
over after `claim_timeout`: the one case where a channel can repeat, chosen over a notice that
is never sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gatekey.errors import DependencyError
from gatekey.model import (
    AuditAction,
    AuditEvent,
    AuditValue,
    NoticeKey,
    PendingNotice,
    ServiceToken,
    number,
    rfc3339,
    superseded,
)
from gatekey.store import TokenStore


@dataclass(frozen=True, slots=True)
class Notice:
    """A lifecycle event for people (SNS) and systems (EventBridge). Never a secret."""

    detail_type: str
    client_id: str
    name: str
    owner: str | None
    expires_at: int | None
    days_left: int | None
    last_seen_at: int | None
    # Stable for one notice of one token's expiry, so a consumer can drop a repeat.
    notice_id: str

    @classmethod
    def of(
        cls, detail_type: str, token: ServiceToken, notice_id: str, days_left: int | None = None
    ) -> Notice:
        return cls(
            detail_type,
            token.client_id,
            token.name,
            token.owner,
            token.expires_at,
            days_left,
            token.last_seen_at,
            f"{token.client_id}:{notice_id}",
        )

    def detail(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "client_id": self.client_id,
            "name": self.name,
            "owner": self.owner,
            "expires_at": rfc3339(self.expires_at),
            "days_left": self.days_left,
            "last_seen_at": rfc3339(self.last_seen_at),
        }


class Notifier(Protocol):
    @property
    def channels(self) -> tuple[str, ...]: ...

    def send(self, notice: Notice, channel: str) -> None:
        """Deliver on one channel or raise DependencyError."""


@dataclass(frozen=True, kw_only=True)
class Notices:
    """The exactly-once protocol over a token's `reminders_pending` (claims, with the channels
    done) and `reminders_sent` (confirmed). Every write is conditional on the token as read:
    a racing writer makes it raise ConcurrentModification and nothing is sent after that."""

    store: TokenStore
    notifier: Notifier
    claim_timeout: int
    clock: Callable[[], int]
    actor: str

    def send_once(
        self,
        token: ServiceToken,
        key: NoticeKey,
        notice: Notice,
        confirmed: AuditAction,
        *,
        now: int,
        announced: Callable[[ServiceToken], ServiceToken] | None = None,
        details: Mapping[str, AuditValue] | None = None,
        if_unused: bool = False,
        sent: list[str] | None = None,
    ) -> ServiceToken | None:
        """Send `notice` once per channel under the claim `key`, then `confirm` it. Return the
        token as stored, or None when another run holds the claim. With `if_unused`, the claim
        and each write after a send require that no use was recorded since the token was read
        (ConcurrentModification otherwise). Channels sent to by this call are added to `sent`."""
        done = self._claimable(token, key, now)
        if done is None:
            return None  # another run is sending it right now
        token = self.claim(token, key, done, now=now, if_unused=if_unused)
        for channel in self.notifier.channels:
            if channel in done:
                continue
            try:
                self.notifier.send(notice, channel)
            except DependencyError:
                self.release(token, key, done, now=now)
                raise
            done = (*done, channel)
            if sent is not None:
                sent.append(channel)
            if len(done) < len(self.notifier.channels):
                token = self.record(token, key, done, now=now, if_unused=if_unused)
        return self.confirm(
            token,
            key,
            confirmed,
            now=now,
            announced=announced,
            details=details,
            if_unused=if_unused,
        )

    def _claimable(self, token: ServiceToken, key: NoticeKey, now: int) -> tuple[str, ...] | None:
        """The channels a claim on `key` starts with (those an earlier run sent), or None while
        another run's claim holds."""
        previous = next((p for p in token.reminders_pending if p.key == key), None)
        if previous is None:
            return ()
        if previous.claimed_at > 0 and now - previous.claimed_at < self.claim_timeout:
            return None
        return previous.done

    def claim(
        self,
        token: ServiceToken,
        key: NoticeKey,
        done: tuple[str, ...],
        *,
        now: int,
        if_unused: bool = False,
    ) -> ServiceToken:
        """Claim the notice (keeping the channels an earlier run `done`): a racing run fails
        here and sends nothing."""
        return self.store.update(
            replace(token, updated_at=now, reminders_pending=_put(token, key, now, done)),
            self._event(token, AuditAction.REMINDER_CLAIMED, {"days": number(key)}),
            if_unused=if_unused,
        )

    def record(
        self,
        token: ServiceToken,
        key: NoticeKey,
        done: tuple[str, ...],
        *,
        now: int,
        if_unused: bool = False,
    ) -> ServiceToken:
        """Record the channels `done` under the claim, so a retry repeats none of them."""
        return self.store.update(
            replace(token, updated_at=now, reminders_pending=_put(token, key, now, done)),
            self._event(
                token, AuditAction.REMINDER_CLAIMED, {"days": number(key), "sent": list(done)}
            ),
            if_unused=if_unused,
        )

    def release(
        self, token: ServiceToken, key: NoticeKey, done: tuple[str, ...], *, now: int
    ) -> ServiceToken:
        """A send failed: free the claim for the next run, keeping the channels done."""
        return self.store.update(
            replace(token, updated_at=now, reminders_pending=_put(token, key, 0, done)),
            self._event(
                token, AuditAction.REMINDER_RELEASED, {"days": number(key), "sent": list(done)}
            ),
        )

    def confirm(
        self,
        token: ServiceToken,
        key: NoticeKey,
        confirmed: AuditAction,
        *,
        now: int,
        announced: Callable[[ServiceToken], ServiceToken] | None = None,
        details: Mapping[str, AuditValue] | None = None,
        if_unused: bool = False,
    ) -> ServiceToken:
        """Confirm the notice with one write that also applies what it `announced` (by default:
        `key` joins reminders_sent). Claims on reminders it supersedes (released or abandoned
        by an earlier run) go with it."""
        sent_now = (*token.reminders_sent, key)
        pending = tuple(
            p for p in token.reminders_pending if p.key != key and not superseded(p.key, sent_now)
        )
        confirming = replace(token, updated_at=now, reminders_pending=pending)
        return self.store.update(
            announced(confirming)
            if announced is not None
            else replace(confirming, reminders_sent=sent_now),
            self._event(
                token, confirmed, details if details is not None else {"days": number(key)}
            ),
            if_unused=if_unused,
        )

    def withdraw(
        self, token: ServiceToken, key: NoticeKey, sent: list[str], *, now: int, reason: str
    ) -> None:
        """Drop the claim on `key` unconfirmed, so the notice may start afresh later; the
        channels it went out on are audited."""
        claim = next((p for p in token.reminders_pending if p.key == key), None)
        if claim is None:
            return  # nothing was claimed, so nothing was sent
        self.store.update(
            replace(
                token,
                updated_at=now,
                reminders_pending=tuple(p for p in token.reminders_pending if p.key != key),
            ),
            self._event(
                token,
                AuditAction.REMINDER_RELEASED,
                {"days": number(key), "sent": sorted({*claim.done, *sent}), "reason": reason},
            ),
        )

    def _event(
        self, token: ServiceToken, action: AuditAction, details: Mapping[str, AuditValue]
    ) -> AuditEvent:
        return AuditEvent(token.client_id, action, self.actor, self.clock(), None, dict(details))


def _put(
    token: ServiceToken, key: NoticeKey, claimed_at: int, done: tuple[str, ...]
) -> tuple[PendingNotice, ...]:
    others = (p for p in token.reminders_pending if p.key != key)
    return (*others, PendingNotice(key, claimed_at, done))
