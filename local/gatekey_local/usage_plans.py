"""API Gateway's usage plans, as the local gateway enforces them on REST routes that require
an API key (SAM's `Auth: ApiKeyRequired`): the key comes from the `x-api-key` header, or from
the authorizer's `usageIdentifierKey` when the API's ApiKeySourceType is AUTHORIZER; the key
and its plans are read from moto, where the admin made them and the local stack provisioned
the template's plans.

What API Gateway does, and so this (AWS sources: "Throttle requests to your REST APIs",
"Gateway response types" (INVALID_API_KEY 403, THROTTLED and QUOTA_EXCEEDED 429), the
knowledge-center article "api-gateway-429-limit", and QuotaSettings in the API reference):

- no key, an unknown or disabled key, or a key on no plan of this API stage: 403
  `{"message": "Forbidden"}`;
- per key and plan, a token bucket of `burstLimit` tokens refilled at `rateLimit` a second,
  full at first: a request finding less than one token is 429 `{"message": "Too Many
  Requests"}`;
- per key and plan, at most `quota.limit` requests a period (DAY from 00:00 UTC, WEEK from
  Sunday 00:00 UTC, MONTH from the 1st): over it, 429 `{"message": "Limit Exceeded"}`;
- a refused request takes nothing from the bucket nor the quota.

Not modelled: per-method throttles inside a plan's stage, the stage's and the account's own
throttling, a quota's `offset`, and the few seconds a real key or plan change takes to apply.
Both limits are best effort in AWS ("targets rather than guaranteed ceilings"); here they are
exact, which is what a test wants.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

FORBIDDEN = (403, "Forbidden")
THROTTLED = (429, "Too Many Requests")
QUOTA_EXCEEDED = (429, "Limit Exceeded")
Refusal = tuple[int, str]


@dataclass(frozen=True)
class Limits:
    """A usage plan's throttle and quota (None: none set)."""

    plan_id: str
    rate: float | None = None
    burst: int | None = None
    quota: int | None = None
    period: str = "DAY"

    @classmethod
    def of(cls, plan: dict[str, Any]) -> Limits:
        throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
        rate = throttle.get("rateLimit")
        burst = throttle.get("burstLimit")
        return cls(
            plan_id=str(plan["id"]),
            rate=None if rate is None else float(rate),
            burst=None if burst is None else int(burst),
            quota=None if quota.get("limit") is None else int(quota["limit"]),
            period=str(quota.get("period", "DAY")),
        )


class PlanSource(Protocol):
    def limits(self, key_value: str, api_id: str, stage: str) -> tuple[str, Limits] | None:
        """The key's id and the limits of its plan on this API stage; None when the key is
        unknown, disabled, or on no plan of the stage."""


class MotoPlans:
    """Keys and plans as moto (API Gateway's API) holds them, read on each request."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def limits(self, key_value: str, api_id: str, stage: str) -> tuple[str, Limits] | None:
        keys = self._client.get_api_keys(includeValues=True)["items"]
        key = next((k for k in keys if k.get("value") == key_value), None)
        if key is None or not key.get("enabled"):
            return None
        for plan in self._client.get_usage_plans(keyId=key["id"])["items"]:
            stages = plan.get("apiStages") or []
            if any(s.get("apiId") == api_id and s.get("stage") == stage for s in stages):
                return str(key["id"]), Limits.of(plan)
        return None


def period_start(now: float, period: str) -> datetime:
    """When the quota period holding `now` began (UTC)."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "WEEK":
        return day - timedelta(days=(day.weekday() + 1) % 7)  # back to Sunday
    if period == "MONTH":
        return day.replace(day=1)
    return day


class Metering:
    """Throttles and counts requests per API key and plan."""

    def __init__(self, plans: PlanSource, clock: Callable[[], float] = time.time) -> None:
        self._plans = plans
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # tokens, when
        self._used: dict[tuple[str, str, datetime], int] = {}

    def admit(self, key_value: str | None, api_id: str, stage: str) -> Refusal | str:
        """The key's id when the request may go on, else API Gateway's refusal."""
        if not key_value:
            return FORBIDDEN
        found = self._plans.limits(key_value, api_id, stage)
        if found is None:
            return FORBIDDEN
        key_id, limits = found
        now = self._clock()
        with self._lock:
            bucket = (limits.plan_id, key_id)
            tokens = self._tokens(bucket, limits, now)
            if tokens is not None and tokens < 1:
                self._buckets[bucket] = (tokens, now)
                return THROTTLED
            counter = (limits.plan_id, key_id, period_start(now, limits.period))
            if limits.quota is not None and self._used.get(counter, 0) >= limits.quota:
                return QUOTA_EXCEEDED
            if tokens is not None:
                self._buckets[bucket] = (tokens - 1, now)
            self._used[counter] = self._used.get(counter, 0) + 1
        return key_id

    def _tokens(self, bucket: tuple[str, str], limits: Limits, now: float) -> float | None:
        """The bucket's tokens now (None: the plan does not throttle)."""
        if limits.rate is None and limits.burst is None:
            return None
        if limits.burst is not None:
            capacity = float(limits.burst)
        else:
            capacity = float(max(1, int(limits.rate or 1)))
        if limits.rate is None:
            return capacity  # a burst alone never runs dry for long: refilled at once
        tokens, then = self._buckets.get(bucket, (capacity, now))
        return min(capacity, tokens + max(0.0, now - then) * limits.rate)
