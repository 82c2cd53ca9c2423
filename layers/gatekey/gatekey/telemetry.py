"""Metrics: counts aggregated in memory and emitted at most once per interval (Counters, with
`emf` as its emitter), and a cold start counted when it fails (`counted_cold_start`).

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from gatekey.errors import GatekeyError

logger = logging.getLogger(__name__)

Emit = Callable[[Mapping[tuple[str, ...], int]], None]


class Counters:
    def __init__(
        self,
        emit: Emit,
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


def emf(namespace: str | None, *, totals: Mapping[str, str], function: str) -> Emit:
    """An `emit` for Counters: each count by name, reason and auth method as EMF, and, for the
    names in `totals`, their sum as the named metric under one fixed dimension (function=...),
    for the alarms: an alarm cannot sum over dimension values it does not know."""

    def emit(counts: Mapping[tuple[str, ...], int]) -> None:
        summed: dict[str, int] = {}
        for (name, reason, auth_method), count in counts.items():
            with single_metric(
                name=name, unit=MetricUnit.Count, value=count, namespace=namespace
            ) as metric:
                metric.add_dimension("reason", reason)
                metric.add_dimension("auth_method", auth_method)
            if name in totals:
                summed[totals[name]] = summed.get(totals[name], 0) + count
        for name, total in summed.items():
            with single_metric(
                name=name, unit=MetricUnit.Count, value=total, namespace=namespace
            ) as metric:
                metric.add_dimension("function", function)

    return emit


@contextmanager
def counted_cold_start(log: Any, metric: str, function: str) -> Iterator[None]:
    """A cold start that fails is a Lambda initialization error, which Lambda's Errors metric
    mixes with every 401 an authorizer raises: it is logged (with `log`, a Powertools Logger)
    and counted on `metric` of its own, which an alarm watches, then raised."""
    try:
        yield
    except Exception as exc:
        reason = exc.reason if isinstance(exc, GatekeyError) else "internal_error"
        log.error(f"{function} cold start failed", reason=reason, error=type(exc).__name__)
        try:
            with single_metric(name=metric, unit=MetricUnit.Count, value=1) as m:
                m.add_dimension("function", function)
        except Exception as metric_error:  # noqa: BLE001 - the cold start's error is the one
            log.error("cold start failure not counted", error=type(metric_error).__name__)
        raise
