"""The local gateway's usage plans (gatekey_local.usage_plans) as API Gateway applies them: a
token bucket per key (rate and burst), a quota per period, 429 with API Gateway's bodies, 403
without a usable key; and which routes of the template require a key, and from where."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatekey_local.template import Stack, parameters
from gatekey_local.usage_plans import (
    FORBIDDEN,
    QUOTA_EXCEEDED,
    THROTTLED,
    Limits,
    Metering,
    period_start,
)

# A Wednesday, 10:00 UTC.
T0 = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()


class Plans:
    """One enabled key ("the-key", id k1) on one plan of demoapi/v1."""

    def __init__(self, limits: Limits) -> None:
        self.limits_of = limits

    def limits(self, key_value: str, api_id: str, stage: str) -> tuple[str, Limits] | None:
        if (key_value, api_id, stage) == ("the-key", "demoapi", "v1"):
            return "k1", self.limits_of
        return None


def metering(limits: Limits) -> tuple[Metering, list[float]]:
    now = [T0]
    return Metering(Plans(limits), clock=lambda: now[0]), now


def admit(meter: Metering, key: str | None = "the-key") -> object:
    return meter.admit(key, "demoapi", "v1")


def test_rate_2_burst_2_lets_two_rapid_calls_through_then_429_then_again_after_a_second() -> None:
    meter, now = metering(Limits("p1", rate=2, burst=2))
    assert [admit(meter) for _ in range(3)] == ["k1", "k1", THROTTLED]
    assert THROTTLED == (429, "Too Many Requests")
    now[0] += 1.0  # two tokens back
    assert [admit(meter) for _ in range(3)] == ["k1", "k1", THROTTLED]
    now[0] += 0.5  # one token back
    assert [admit(meter), admit(meter)] == ["k1", THROTTLED]


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    meter, now = metering(Limits("p1", rate=2, burst=2))
    now[0] += 3600
    assert [admit(meter) for _ in range(3)] == ["k1", "k1", THROTTLED]


def test_a_daily_quota_of_5_refuses_the_sixth_call_until_the_next_utc_day() -> None:
    meter, now = metering(Limits("p1", quota=5, period="DAY"))
    assert [admit(meter) for _ in range(6)] == [*["k1"] * 5, QUOTA_EXCEEDED]
    assert QUOTA_EXCEEDED == (429, "Limit Exceeded")
    now[0] = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert admit(meter) == "k1"


def test_a_throttled_call_takes_nothing_from_the_quota() -> None:
    meter, now = metering(Limits("p1", rate=1, burst=1, quota=2))
    assert [admit(meter), admit(meter)] == ["k1", THROTTLED]
    now[0] += 1
    assert [admit(meter), admit(meter)] == ["k1", THROTTLED]
    now[0] += 1
    assert admit(meter) == QUOTA_EXCEEDED


@pytest.mark.parametrize("key", [None, "", "another-key"])
def test_no_key_or_one_on_no_plan_of_the_stage_is_403(key: str | None) -> None:
    meter, _ = metering(Limits("p1"))
    assert admit(meter, key) == FORBIDDEN == (403, "Forbidden")


def test_a_plan_without_limits_lets_everything_through() -> None:
    meter, _ = metering(Limits("p1"))
    assert {admit(meter) for _ in range(100)} == {"k1"}


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("DAY", datetime(2026, 11, 25, tzinfo=UTC)),
        ("WEEK", datetime(2026, 11, 22, tzinfo=UTC)),  # the Sunday before
        ("MONTH", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_quota_periods_start_at_utc_midnight_sunday_and_the_first(
    period: str, start: datetime
) -> None:
    assert period_start(T0, period) == start


def test_limits_are_read_from_api_gateways_plan_shape() -> None:
    plan = {
        "id": "p1",
        "throttle": {"rateLimit": 2.0, "burstLimit": 2},
        "quota": {"limit": 5, "period": "DAY", "offset": 0},
    }
    assert Limits.of(plan) == Limits("p1", rate=2.0, burst=2, quota=5, period="DAY")
    assert Limits.of({"id": "p2"}) == Limits("p2")


def test_the_demos_metered_route_takes_its_key_from_the_authorizer() -> None:
    values = parameters() | {"Issuer": "http://127.0.0.1:3000"}  # as the local stack's
    routes = {r.path: r for r in Stack(parameters=values, physical={}).routes()}
    metered = routes["/demo/metered/whoami"]
    assert (metered.api_key_required, metered.api_key_source) == (True, "AUTHORIZER")
    assert not routes["/demo/whoami"].api_key_required
    assert not any(r.api_key_required for r in routes.values() if r.http)


def test_the_demos_plan_is_2_a_second_burst_2_and_the_daily_quota_parameter() -> None:
    values = parameters("DemoUsagePlanDailyQuota=5")
    stack = Stack(parameters=values, physical={"DemoApi": "demoapi", "DemoApi.Stage": "v1"})
    plan = stack.usage_plans()["DemoUsagePlan"]
    assert plan["ApiStages"] == [{"ApiId": "demoapi", "Stage": "v1"}]
    assert plan["Throttle"] == {"RateLimit": 2, "BurstLimit": 2}
    assert plan["Quota"] == {"Limit": "5", "Period": "DAY"}
