"""What the pages show, from the admin API's JSON: pure functions, no HTTP and no HTML."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STATES = ("active", "disabled", "expired", "revoked")
SORTS = ("expiry", "-expiry", "name")
TIMELINE_DAYS = 90
# Audit actions of the lifecycle run: the notices sent about a token.
NOTICE_ACTIONS = frozenset({"reminded", "notified", "expired", "grace_ended"})

Token = Mapping[str, Any]


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time of the API (`2027-11-28T05:31:43Z`), or None for none/never."""
    if not value or value == "never":
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def state_of(token: Token, now: datetime) -> str:
    """One state per token, the most final first: revoked, expired, disabled, active."""
    if token.get("status") == "revoked":
        return "revoked"
    expires = parse_time(token.get("expires_at"))
    if expires is not None and expires <= now:
        return "expired"
    return "active" if token.get("enabled", True) else "disabled"


def countdown(when: datetime | None, now: datetime) -> str:
    """`in 12 days`, `in 5 hours`, `3 days ago`; `never` for no time."""
    if when is None:
        return "never"
    seconds = int((when - now).total_seconds())
    size = abs(seconds)
    if size >= 2 * 86400:
        amount = f"{round(size / 86400)} days"
    elif size >= 2 * 3600:
        amount = f"{round(size / 3600)} hours"
    elif size >= 120:
        amount = f"{round(size / 60)} minutes"
    else:
        amount = "moments" if size >= 1 else "now"
    if amount == "now":
        return "now"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


@dataclass(frozen=True)
class Filters:
    state: str = ""
    owner: str = ""
    name: str = ""
    sort: str = "expiry"

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        """From a page's query string; unknown values fall back to none (or the default sort)."""
        state = query.get("state", "")
        sort = query.get("sort", "expiry")
        return cls(
            state=state if state in STATES else "",
            owner=query.get("owner", "").strip()[:254],
            name=query.get("name", "").strip()[:128],
            sort=sort if sort in SORTS else "expiry",
        )


def select(tokens: Iterable[Token], filters: Filters, now: datetime) -> list[Token]:
    """The tokens the filters keep (owner and name: case-insensitive substrings), sorted."""
    kept = [
        token
        for token in tokens
        if (not filters.state or state_of(token, now) == filters.state)
        and filters.owner.lower() in (token.get("owner") or "").lower()
        and filters.name.lower() in str(token.get("name", "")).lower()
    ]
    if filters.sort == "name":
        return sorted(kept, key=lambda t: (str(t.get("name", "")).lower(), t["client_id"]))
    far = datetime.max.replace(tzinfo=UTC)
    kept.sort(key=lambda t: (parse_time(t.get("expires_at")) or far, t["client_id"]))
    if filters.sort == "-expiry":
        kept.reverse()
    return kept


def counts(tokens: Iterable[Token], now: datetime) -> dict[str, int]:
    found = Counter(state_of(token, now) for token in tokens)
    return {state: found.get(state, 0) for state in STATES}


@dataclass(frozen=True)
class Mark:
    """A token on the expiry timeline: where (0..1 across the window) and how it is drawn."""

    token: Token
    state: str
    rotation: str
    position: float
    lane: int


def timeline(tokens: Iterable[Token], now: datetime, days: int = TIMELINE_DAYS) -> list[Mark]:
    """The tokens that expire within the next `days`, not revoked, soonest first; marks
    closer than 2% of the window apart go on separate lanes so none hides another."""
    window = days * 86400
    marks: list[Mark] = []
    last_in_lane: list[float] = []
    dated = [(parse_time(t.get("expires_at")), t) for t in tokens]
    upcoming = sorted(
        ((when, t) for when, t in dated if when is not None and t.get("status") != "revoked"),
        key=lambda pair: (pair[0], pair[1]["client_id"]),
    )
    for when, token in upcoming:
        offset = (when - now).total_seconds()
        if not 0 < offset <= window:
            continue
        position = offset / window
        lane = next((i for i, x in enumerate(last_in_lane) if position - x >= 0.02), None)
        if lane is None:
            lane = len(last_in_lane)
            last_in_lane.append(position)
        else:
            last_in_lane[lane] = position
        rotation = str((token.get("rotation") or {}).get("mode", "remind"))
        marks.append(Mark(token, state_of(token, now), rotation, position, lane))
    return marks


def lines(text: str) -> list[str]:
    """A textarea's routes (one a line) or scopes (lines or spaces), without blanks."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def words(text: str) -> list[str]:
    return text.split()


def notices(events: Sequence[Token]) -> list[Token]:
    return [event for event in events if event.get("action") in NOTICE_ACTIONS]
