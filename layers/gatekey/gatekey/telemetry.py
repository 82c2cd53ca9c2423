"""Counts for metrics, aggregated in memory and emitted at most once per interval.

An EMF document per request costs more than the authorization it describes (`make bench`), so
the authorizer adds to a counter per request and emits totals when `interval` seconds have
passed. The price: counts since the last emit are lost if the container is shut down, at most
one interval's worth.

Telemetry never decides: an emission that fails is logged and its counts are kept for the
next one; the request that triggered it is answered as if nothing happened.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)


class Counters:
    def __init__(
        self,
        emit: Callable[[Mapping[tuple[str, ...], int]], None],
        *,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._counts: Counter[tuple[str, ...]] = Counter()
        self._last_emit = clock()

    # Called from the handler's thread only (Lambda runs one invocation at a time): no lock.
    def add(self, *key: str) -> None:
        self._counts[key] += 1
        if self._clock() - self._last_emit >= self._interval:
            self.flush()

    def flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        self._last_emit = self._clock()
        if not counts:
            return
        try:
            self._emit(counts)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the answer stands
            self._counts.update(counts)  # bounded: one entry per metric, reason and method
            logger.warning(
                "metrics not emitted; kept for the next try", extra={"error": repr(exc)[:200]}
            )
