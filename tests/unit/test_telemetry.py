from collections.abc import Mapping

import pytest
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

from gatekey.cache import TtlCache
from gatekey.telemetry import Counters


def test_counts_are_emitted_once_per_interval_as_totals() -> None:
    emitted: list[dict[tuple[str, ...], int]] = []
    now = [0.0]

    def emit(counts: Mapping[tuple[str, ...], int]) -> None:
        emitted.append(dict(counts))

    counters = Counters(emit, interval=60, clock=lambda: now[0])
    for _ in range(3):
        counters.add("Allowed", "allowed", "basic")
    counters.add("Denied", "invalid_credentials", "bearer")
    assert emitted == []
    now[0] = 60
    counters.add("Allowed", "allowed", "basic")
    assert emitted == [
        {("Allowed", "allowed", "basic"): 4, ("Denied", "invalid_credentials", "bearer"): 1}
    ]
    counters.flush()
    assert len(emitted) == 1  # nothing new: nothing emitted


def test_ttl_cache_is_bounded_and_forgets_expired_entries() -> None:
    cache: TtlCache[str, int] = TtlCache(size=3)
    for i in range(5):
        cache.put(f"k{i}", i, expires_at=100)
    assert len(cache) == 3
    assert cache.get("k0", now=0) is None  # evicted, least recently used first
    assert cache.get("k4", now=0) == 4
    assert cache.get("k4", now=100) is None  # expired at its own time


def test_an_emission_that_fails_is_logged_never_raised_and_its_counts_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emitted: list[dict[tuple[str, ...], int]] = []
    failing = [True]
    now = [0.0]

    def emit(counts: Mapping[tuple[str, ...], int]) -> None:
        if failing[0]:
            raise SchemaValidationError("Must contain a metric namespace.")
        emitted.append(dict(counts))

    counters = Counters(emit, interval=60, clock=lambda: now[0])
    counters.add("Allowed", "allowed", "basic")
    now[0] = 60
    counters.add("Allowed", "allowed", "basic")  # the emission fails: no exception here
    assert "metrics not emitted" in caplog.text
    failing[0], now[0] = False, 120
    counters.add("Denied", "invalid_credentials", "basic")
    assert emitted == [
        {("Allowed", "allowed", "basic"): 2, ("Denied", "invalid_credentials", "basic"): 1}
    ]
