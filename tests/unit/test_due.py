"""When a token's lifecycle work falls due: the by-due index's sort key, readable without AWS."""

from dataclasses import replace

import pytest

from gatekey.durations import DAY, Duration
from gatekey.hashing import Hasher
from gatekey.model import (
    EXPIRED,
    IDLE,
    ROTATED,
    PendingNotice,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
    new_service_token,
)
from gatekey.store.due import DueSchedule, next_due_at
from support.constants import DELIVERY, NOW

SCHEDULE = DueSchedule((30, 7, 1), claim_timeout=900)


def token(hasher: Hasher, days: int | None = 365, **changes: object) -> ServiceToken:
    hours = None if days is None else days * 24
    made, _ = new_service_token(name="bot", hasher=hasher, now=NOW, duration=Duration(hours))
    return replace(made, **changes)  # type: ignore[arg-type]


def test_each_reminder_falls_due_at_its_threshold_then_the_expiry_notice_then_nothing(
    unit_hasher: Hasher,
) -> None:
    bot = token(unit_hasher)
    expires_at = NOW + 365 * DAY
    steps = [((), 30), ((30,), 7), ((30, 7), 1)]
    for sent, threshold in steps:
        assert next_due_at(replace(bot, reminders_sent=sent), SCHEDULE) == (
            expires_at - threshold * DAY
        )
    assert next_due_at(replace(bot, reminders_sent=(30, 7, 1)), SCHEDULE) == expires_at
    assert next_due_at(replace(bot, reminders_sent=(30, 7, 1, EXPIRED)), SCHEDULE) is None


def test_a_threshold_above_the_lowest_sent_never_falls_due_again(unit_hasher: Hasher) -> None:
    # Created 5 days before expiry: the first run sent the 7-day reminder, the most urgent.
    bot = token(unit_hasher, days=5, reminders_sent=(7,))
    assert next_due_at(bot, SCHEDULE) == NOW + 4 * DAY  # the 1-day reminder, not the 30-day


def test_an_auto_token_falls_due_for_its_rotation_and_at_once_while_delivery_is_pending(
    unit_hasher: Hasher,
) -> None:
    auto = token(unit_hasher, rotation=RotationPolicy(RotationMode.AUTO, DELIVERY))
    assert next_due_at(auto, SCHEDULE) == NOW + 335 * DAY
    # Refreshed by an admin while its new secret waits to be made current: the delivery is
    # still due, whatever the new expiry.
    pending = replace(
        auto,
        delivery_pending="v2",
        reminders_sent=(ROTATED,),
        expires_at=NOW + 700 * DAY,
        updated_at=NOW + 340 * DAY,
    )
    assert next_due_at(pending, SCHEDULE) == NOW + 340 * DAY
    # Switched to reminders: a delivery left pending is no lifecycle work.
    remind = replace(pending, rotation=RotationPolicy(), reminders_sent=())
    assert next_due_at(remind, SCHEDULE) == NOW + 670 * DAY


def test_a_claimed_notice_falls_due_when_its_claim_lapses_and_a_released_one_at_once(
    unit_hasher: Hasher,
) -> None:
    bot = token(unit_hasher, updated_at=NOW + 10)
    claimed = replace(bot, reminders_pending=(PendingNotice(30, NOW + 5),))
    assert next_due_at(claimed, SCHEDULE) == NOW + 5 + 900
    released = replace(bot, reminders_pending=(PendingNotice(30, 0, ("sns",)),))
    assert next_due_at(released, SCHEDULE) == NOW + 10
    # The idle notice is found through by-idle, never through by-due.
    idle = replace(bot, reminders_pending=(PendingNotice(IDLE, NOW + 5),))
    assert next_due_at(idle, SCHEDULE) == NOW + 335 * DAY


def test_a_claim_on_a_reminder_superseded_by_a_more_urgent_one_or_the_expiry_is_never_due(
    unit_hasher: Hasher,
) -> None:
    # A released 30-day claim (its send failed), then the 7-day reminder went out.
    bot = token(unit_hasher, days=5, updated_at=NOW + DAY)
    stale = (PendingNotice(30, 0),)
    assert next_due_at(replace(bot, reminders_sent=(7,), reminders_pending=stale), SCHEDULE) == (
        NOW + 4 * DAY  # the 1-day reminder
    )
    expired = replace(bot, reminders_sent=(7, 1, EXPIRED), reminders_pending=stale)
    assert next_due_at(expired, SCHEDULE) is None
    # A claim on a more urgent threshold than any sent is still due, as are the other notices.
    urgent = (PendingNotice(1, 0), PendingNotice(ROTATED, 0))
    assert next_due_at(replace(bot, reminders_sent=(7,), reminders_pending=urgent), SCHEDULE) == (
        NOW + DAY
    )


@pytest.mark.parametrize(
    "changes",
    [{"status": TokenStatus.REVOKED}, {"expires_at": None, "duration": Duration(None)}],
)
def test_revoked_and_never_expiring_tokens_never_fall_due(
    unit_hasher: Hasher, changes: dict[str, object]
) -> None:
    assert next_due_at(token(unit_hasher, **changes), SCHEDULE) is None


def test_the_schedule_takes_its_thresholds_in_any_order_but_needs_one() -> None:
    assert DueSchedule((1, 30, 7, 7)).reminder_days == (30, 7, 1)
    with pytest.raises(ValueError, match="reminder_days"):
        DueSchedule(())
