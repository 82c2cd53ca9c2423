"""A token's expiry work: the reminders before its expiry and the expiry notice, or, for an
`auto` token, its rotation (auto_rotation.py) at the first reminder threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gatekey.auto_rotation import AutoRotation
from gatekey.durations import DAY
from gatekey.model import (
    EXPIRED,
    AuditAction,
    NoticeKey,
    RotationMode,
    ServiceToken,
    TokenStatus,
    number,
)
from gatekey.notices import Notice, Notices
from gatekey.store import DueSchedule, TokenStore
from gatekey.store.due import next_due_at

if TYPE_CHECKING:
    from gatekey.lifecycle import RunReport


@dataclass(frozen=True, kw_only=True)
class ExpiryWork:
    store: TokenStore
    schedule: DueSchedule
    notices: Notices
    rotation: AutoRotation
    clock: Callable[[], int]

    def expiry(self, client_id: str, report: RunReport) -> None:
        """Work only a token due now by the run's own schedule: the index may say otherwise
        (a token stored before by-due, found with no time bound, or under other reminder days).
        Otherwise, or when there was nothing to do, store when it is due, so it is not read
        again before then."""
        token = self.store.get(client_id, consistent=True)
        now = self.clock()
        due = next_due_at(token, self.schedule)
        if due is None or now < due or not self._notice_or_rotation(token, now, report):
            self.store.reindex(token)

    def _notice_or_rotation(self, token: ServiceToken, now: int, report: RunReport) -> bool:
        """The token's expiry work due now; False when there was none and nothing was written."""
        if token.status is TokenStatus.REVOKED or token.expires_at is None:
            return False
        if token.rotation.mode is RotationMode.AUTO and now < token.expires_at:
            rotation_at = token.expires_at - self.schedule.reminder_days[0] * DAY
            if token.delivery_pending is None and now < rotation_at:
                return False  # not yet: an `auto` token rotates at the first reminder threshold
            return self.rotation.rotate(token, now, report)
        key = self._due_notice(token.expires_at, now)
        if key is None or key in token.reminders_sent:
            return False
        expired = key is EXPIRED
        notice = Notice.of(
            "Service Token Expired" if expired else "Service Token Expiring",
            token,
            f"{token.expires_at}:{number(key)}",
            None if expired else max(0, token.expires_at - now) // DAY,
        )
        action = AuditAction.EXPIRED if expired else AuditAction.REMINDED
        if self.notices.send_once(token, key, notice, action, now=now) is None:
            return False  # another run is sending it
        (report.expired if expired else report.reminded).append(f"{token.client_id}:{number(key)}")
        return True

    def _due_notice(self, expires_at: int, now: int) -> NoticeKey | None:
        """The most urgent reminder reached (one message a run at most); past expiry, the
        expiry notice."""
        if now >= expires_at:
            return EXPIRED
        reached = [d for d in reversed(self.schedule.reminder_days) if now >= expires_at - d * DAY]
        return reached[0] if reached else None
