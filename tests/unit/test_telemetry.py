from collections.abc import Mapping

from gatekey.authorizer import TtlCache
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
