"""Token durations as Cloudflare Access writes them, whole hours (``8760h``, or Go's
``8760h0m0s``), as people write them (``30d``, ``1y``), or ``forever``. A year is 8760 hours,
as Access's default duration is: leap days are not counted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from gatekey.errors import InvalidDuration

HOUR: Final = 3600
DAY: Final = 24 * HOUR
FOREVER: Final = "forever"
# Ten years, Access's longest finite choice (87600h); anything longer is almost surely a typo.
MAX_HOURS: Final = 87_600
# <count><unit>, or Go's print of whole hours (time.Duration.String: "8760h0m0s").
_DURATION = re.compile(r"([0-9]{1,9})(?:(h)(?:0m(?:0s)?)?|(d)|(y))")
_UNIT_HOURS: Final = {"h": 1, "d": 24, "y": 8760}


@dataclass(frozen=True, slots=True)
class Duration:
    """A whole number of hours, or forever (`hours is None`)."""

    hours: int | None

    @property
    def is_forever(self) -> bool:
        return self.hours is None

    @property
    def seconds(self) -> int | None:
        return None if self.hours is None else self.hours * HOUR

    def after(self, start: int) -> int | None:
        """The epoch second this duration ends when it starts at `start`; None for forever."""
        return None if self.hours is None else start + self.hours * HOUR

    def __str__(self) -> str:
        return FOREVER if self.hours is None else f"{self.hours}h"


DEFAULT_TOKEN_DURATION: Final = Duration(8760)


def parse_duration(
    value: object,
    *,
    field: str = "duration",
    minimum_hours: int = 1,
    maximum_hours: int = MAX_HOURS,
    allow_forever: bool = True,
) -> Duration:
    """Parse ``<N>h``, ``<N>d``, ``<N>y`` or ``forever``; raise InvalidDuration naming `field`
    and the range."""
    expected = (
        f"whole hours such as '8760h', days ('30d') or years ('1y'),"
        f" {minimum_hours}h to {maximum_hours}h"
    )
    if allow_forever:
        expected += " or 'forever'"
    if not isinstance(value, str):
        raise InvalidDuration(field, f"must be a string: {expected}")
    # str.isdigit and int() accept non-ASCII digits; the format is ASCII only.
    if not value.isascii():
        raise InvalidDuration(field, f"must contain only ASCII characters: {expected}")
    if value == FOREVER:
        if not allow_forever:
            raise InvalidDuration(field, f"'forever' is not allowed here: {expected}")
        return Duration(None)
    if value.startswith("-"):
        raise InvalidDuration(field, f"must not be negative: {expected}")
    match = _DURATION.fullmatch(value)
    if match is None:
        raise InvalidDuration(field, f"is not a duration: {expected}")
    count, *units = match.groups()
    hours = int(count) * _UNIT_HOURS[next(unit for unit in units if unit)]
    if hours < minimum_hours:
        raise InvalidDuration(field, f"must be at least {minimum_hours}h")
    if hours > maximum_hours:
        raise InvalidDuration(field, f"must be at most {maximum_hours}h")
    return Duration(hours)
