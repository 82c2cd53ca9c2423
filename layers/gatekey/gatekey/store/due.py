"""When a token's lifecycle work is next due: the sort key of the by-due index.

Every write of a token item stores `next_due_at(token, schedule)` beside it (store/layout.py), so
the daily run asks for what is due (`next_due_at <= now`) and reads on the order of the notices
it sends, not every token near its expiry every day. It mirrors gatekey.expiry's work:

- a notice being sent (a claim in `reminders_pending`): when its claim lapses, or at once when
  a failed send released it; unless a more urgent notice has gone out since (a reminder
  threshold below it, or the expiry notice), which supersedes it: it is never sent;
- an automatic rotation whose new secret is not yet current (`delivery_pending`): at once;
- an `auto` token: its rotation, at the first reminder threshold before expiry;
- otherwise the next reminder threshold below the lowest one sent (a run sends the most urgent
  threshold reached, so one above a sent threshold never falls due), then the expiry notice.

The idle notice is not here: the authorizer moves the idle clock without reading the token, so
that work is found through by-idle, keyed on the idle clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekey.durations import DAY
from gatekey.model import EXPIRED, IDLE, RotationMode, ServiceToken, TokenStatus, superseded


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """The lifecycle settings due times depend on: the reminder thresholds (REMINDER_DAYS) and
    how long a claim on a notice holds before another run may take it over."""

    reminder_days: tuple[int, ...] = (30, 7, 1)
    claim_timeout: int = 900

    def __post_init__(self) -> None:
        days = tuple(sorted(set(self.reminder_days), reverse=True))
        if not days or days[-1] < 1:
            raise ValueError("reminder_days must hold at least one positive number of days")
        object.__setattr__(self, "reminder_days", days)


def next_due_at(token: ServiceToken, schedule: DueSchedule) -> int | None:
    """The epoch second the token's next lifecycle work falls due; None when none ever will."""
    if token.status is not TokenStatus.ACTIVE:
        return None
    due = [
        pending.claimed_at + schedule.claim_timeout if pending.claimed_at else token.updated_at
        for pending in token.reminders_pending
        if pending.key != IDLE and not superseded(pending.key, token.reminders_sent)
    ]
    auto = token.rotation.mode is RotationMode.AUTO
    if auto and token.delivery_pending is not None:
        due.append(token.updated_at)
    expires_at = token.expires_at
    if expires_at is not None and EXPIRED not in token.reminders_sent:
        if auto:
            due.append(expires_at - schedule.reminder_days[0] * DAY)
        else:
            lowest_sent = min((d for d in token.reminders_sent if isinstance(d, int)), default=None)
            left = [d for d in schedule.reminder_days if lowest_sent is None or d < lowest_sent]
            due.append(expires_at - left[0] * DAY if left else expires_at)
    return min(due, default=None)
