"""The console's view of tokens: states, countdowns, filters, sorting and the expiry timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gatekey_cli.console.views import Filters, countdown, counts, select, state_of, timeline

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def token(client_id: str, days: float | None, **fields: Any) -> dict[str, Any]:
    expires = None if days is None else (NOW + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": None,
        "status": "active",
        "enabled": True,
        "expires_at": expires,
        "rotation": {"mode": "remind", "delivery_secret_arn": None},
    } | fields


def test_the_state_is_the_most_final_of_revoked_expired_disabled_active() -> None:
    assert state_of(token("a", 3), NOW) == "active"
    assert state_of(token("a", None), NOW) == "active"
    assert state_of(token("a", 3, enabled=False), NOW) == "disabled"
    assert state_of(token("a", -1, enabled=False), NOW) == "expired"
    assert state_of(token("a", -1, status="revoked"), NOW) == "revoked"


def test_countdowns_read_as_people_say_them() -> None:
    assert countdown(NOW + timedelta(days=30), NOW) == "in 30 days"
    assert countdown(NOW + timedelta(days=29, hours=23), NOW) == "in 30 days"
    assert countdown(NOW + timedelta(hours=5), NOW) == "in 5 hours"
    assert countdown(NOW - timedelta(days=3), NOW) == "3 days ago"
    assert countdown(NOW + timedelta(minutes=10), NOW) == "in 10 minutes"
    assert countdown(None, NOW) == "never"


def test_filters_keep_state_owner_and_name_and_sort_by_expiry() -> None:
    tokens = [
        token("late", 80, owner="Ops@example.com"),
        token("soon", 5, owner="ops@example.com"),
        token("never", None),
        token("off", 10, enabled=False, owner="data@example.com"),
    ]
    ids = [t["client_id"] for t in select(tokens, Filters(), NOW)]
    assert ids == ["soon", "off", "late", "never"]  # no expiry last
    latest_first = select(tokens, Filters(sort="-expiry"), NOW)
    assert [t["client_id"] for t in latest_first] == ["never", "late", "off", "soon"]
    assert [t["client_id"] for t in select(tokens, Filters(owner="OPS@"), NOW)] == ["soon", "late"]
    assert [t["client_id"] for t in select(tokens, Filters(state="disabled"), NOW)] == ["off"]
    assert [t["client_id"] for t in select(tokens, Filters(name="LAT"), NOW)] == ["late"]


def test_unknown_filter_values_fall_back_to_none() -> None:
    assert Filters.of({"state": "<script>", "sort": "drop table"}) == Filters()


def test_counts_by_state_name_every_state() -> None:
    tokens = [token("a", 3), token("b", -3), token("c", 3, status="revoked")]
    assert counts(tokens, NOW) == {"active": 1, "disabled": 0, "expired": 1, "revoked": 1}


def test_the_timeline_holds_the_next_90_days_and_no_two_marks_overlap() -> None:
    auto = {"mode": "auto", "delivery_secret_arn": "arn"}
    tokens = [
        token("a", 10),
        token("b", 10.5, rotation=auto),  # beside a: a lane of its own
        token("c", 45),
        token("past", -1),
        token("far", 120),
        token("gone", 20, status="revoked"),
        token("never", None),
    ]
    marks = timeline(tokens, NOW)
    assert [(m.token["client_id"], m.lane, m.rotation) for m in marks] == [
        ("a", 0, "remind"),
        ("b", 1, "auto"),
        ("c", 0, "remind"),
    ]
    assert marks[2].position == 0.5
