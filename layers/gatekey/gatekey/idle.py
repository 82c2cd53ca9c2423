"""Disabling tokens idle for too long (IDLE_DISABLE_DAYS), announced as they are disabled."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gatekey.durations import DAY
from gatekey.errors import ConcurrentModification
from gatekey.model import IDLE, AuditAction, ServiceToken, TokenStatus
from gatekey.notices import Notice, Notices
from gatekey.store import TokenStore

if TYPE_CHECKING:
    from gatekey.lifecycle import RunReport

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IdleWork:
    store: TokenStore
    notices: Notices
    idle_days: int
    clock: Callable[[], int]

    def disable_idle(self, client_id: str, report: RunReport) -> None:
        """Announced, then disabled in the confirming write: a failed send leaves the token
        enabled and idle, so the next run completes the notice and the change.

        The authorizer records a use without taking the token's lock, so every write of the
        notice requires the idle clock to be the one read: a use recorded meanwhile keeps the
        token enabled. If that use lands after a channel went out, the claim is withdrawn (and
        audited) so the token's next idle spell starts a notice of its own."""
        now = self.clock()
        token = self.store.get(client_id, consistent=True)
        idle_clock = token.idle_clock()
        idle_days = (now - idle_clock) // DAY
        usable = token.status is TokenStatus.ACTIVE and token.enabled and not token.is_expired(now)
        if not usable or idle_days < self.idle_days:
            return
        notice = Notice.of("Service Token Disabled", token, f"disabled:{idle_clock}")
        sent: list[str] = []
        try:
            done = self.notices.send_once(
                token,
                IDLE,
                notice,
                AuditAction.DISABLED,
                now=now,
                announced=_disabled,
                details={"reason": "idle", "idle_days": idle_days},
                if_unused=True,
                sent=sent,
            )
        except ConcurrentModification:
            current = self.store.get(client_id, consistent=True)
            if current.idle_clock() == idle_clock:
                raise  # not a use: someone else changed the token
            logger.info("idle token used during its notice: kept", extra={"client_id": client_id})
            self.notices.withdraw(current, IDLE, sent, now=now, reason="used")
            return
        if done is not None:
            report.disabled.append(client_id)


def _disabled(token: ServiceToken) -> ServiceToken:
    return replace(token, enabled=False)
