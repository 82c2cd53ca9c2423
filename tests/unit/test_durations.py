import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekey.durations import MAX_HOURS, Duration, parse_duration
from gatekey.errors import InvalidDuration


@pytest.mark.parametrize(
    ("text", "hours"), [("1h", 1), ("24h", 24), ("8760h", 8760), ("87600h", 87_600)]
)
def test_whole_hours_are_accepted(text: str, hours: int) -> None:
    duration = parse_duration(text)
    assert duration == Duration(hours)
    assert duration.seconds == hours * 3600
    assert duration.after(1000) == 1000 + hours * 3600
    assert str(duration) == text


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("720h", 720),  # Access's own
        ("8760h0m0s", 8760),  # Go's print of Access's default (time.Duration.String)
        ("8760h0m", 8760),
        ("30d", 720),
        ("1d", 24),
        ("1y", 8760),  # a year as Access counts it
        ("10y", 87_600),
        ("3650d", 87_600),
    ],
)
def test_days_years_and_gos_whole_hours_are_hours(text: str, hours: int) -> None:
    duration = parse_duration(text)
    assert duration == Duration(hours)
    assert str(duration) == f"{hours}h"  # stored and shown in hours, as Access shows them


def test_forever_never_ends() -> None:
    duration = parse_duration("forever")
    assert duration.is_forever
    assert duration.after(1000) is None
    assert duration.seconds is None
    assert str(duration) == "forever"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1h", "must not be negative"),
        ("0h", "at least 1h"),
        ("87601h", "at most 87600h"),
        ("999999999h", "at most 87600h"),
        ("9999999999999h", "is not a duration"),
        ("1.5d", "is not a duration"),
        ("2h45m", "is not a duration"),  # Go's, but not whole hours
        ("8760h0s", "is not a duration"),
        ("11y", "at most 87600h"),
        ("3651d", "at most 87600h"),
        ("0d", "at least 1h"),
        ("1w", "is not a duration"),
        ("1Y", "is not a duration"),
        ("8760", "is not a duration"),
        ("1.5h", "is not a duration"),
        (" 24h", "is not a duration"),
        ("Forever", "is not a duration"),
        ("\uff18\uff17\uff16\uff10h", "only ASCII"),  # fullwidth digits: int() would accept them
        ("24\uff48", "only ASCII"),
        ("", "is not a duration"),
        (8760, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_bad_durations_raise_a_typed_error_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(InvalidDuration, match=message) as caught:
        parse_duration(value)
    assert caught.value.field == "duration"


def test_bounds_and_forever_can_be_narrowed_for_other_fields() -> None:
    with pytest.raises(InvalidDuration, match="grace: 'forever' is not allowed"):
        parse_duration("forever", field="grace", allow_forever=False)
    with pytest.raises(InvalidDuration, match="grace: must be at most 720h"):
        parse_duration("721h", field="grace", maximum_hours=720)
    assert parse_duration("0h", field="grace", minimum_hours=0) == Duration(0)


@given(st.integers(min_value=1, max_value=MAX_HOURS))
def test_every_hour_count_in_range_round_trips(hours: int) -> None:
    assert parse_duration(str(Duration(hours))) == Duration(hours)
