"""Lambda authorizer for REST (REQUEST and TOKEN) and HTTP APIs: a thin adapter of
gatekey.authorizer. Every failure other than a decision propagates, so API Gateway answers 500:
the authorizer fails closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import wiring
from gatekey.authorizer import Outcome
from gatekey.config import Config
from gatekey.errors import GatekeyError, MissingCredentials
from gatekey.telemetry import Counters, counted_cold_start, emf

METRICS_INTERVAL = 60  # seconds between EMF emissions of the aggregated counts

logger = Logger()


with counted_cold_start(logger, "AuthorizerInitFailures", "authorizer"):
    config = Config.from_env()
    store, bookkeeping, authorizer = wiring.authorizer(
        config, last_seen_failed=lambda exc: counters.add("LastSeenWriteFailed", exc.reason, "none")
    )


# Totals under one fixed dimension, for the alarms.
TOTALS = {
    "Failed": "AuthorizerFailures",
    "Denied": "AuthorizerDenials",
    "Allowed": "AuthorizerAllows",
    "LastSeenWriteFailed": "LastSeenWriteFailures",
}
counters: Counters = Counters(
    emf(config.metrics_namespace, totals=TOTALS, function="authorizer"),
    interval=METRICS_INTERVAL,
    clock=time.monotonic,
)


# The Lambda context's fields are added to the logger once, not per invocation (Powertools'
# inject_lambda_context costs more than a cached authorization: `make bench`).
_context_logged = False
LOG_ALLOWS = logger.log_level <= logging.DEBUG


def _log_context(context: LambdaContext) -> None:
    global _context_logged
    if not _context_logged:
        logger.append_keys(
            function_name=context.function_name,
            function_arn=context.invoked_function_arn,
            function_memory_size=context.memory_limit_in_mb,
        )
        _context_logged = True


def _log(write: Callable[..., None], message: str, context: LambdaContext, **keys: Any) -> None:
    _log_context(context)
    write(message, function_request_id=context.aws_request_id, **keys)


def _failed(context: LambdaContext, reason: str, detail: str) -> None:
    counters.add("Failed", reason, "none")
    counters.flush()  # failures are rare and urgent: alarms must see them now
    _log(logger.error, "authorizer failed closed", context, reason=reason, detail=detail)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        outcome = authorizer.authorize(event)
    except MissingCredentials as exc:
        counters.add("Unauthorized", exc.reason, "none")
        raise Exception("Unauthorized") from None  # API Gateway answers 401 to this exact message
    except GatekeyError as exc:
        _failed(context, exc.reason, exc.message)
        raise
    except Exception as exc:
        # A bug: API Gateway answers 500 all the same. Only the type is logged, since an
        # unexpected message could quote the request.
        _failed(context, "internal_error", type(exc).__name__)
        raise
    method = outcome.auth_method or "none"
    if outcome.unauthorized:  # strict mode: bad credentials answer 401 like missing ones
        # Counted as what they are, a denial (AuthorizerDenials: a spike is the alarm's).
        counters.add("Denied", outcome.reason, method)
        _log(logger.info, "denied", context, **_keys(outcome, method))
        raise Exception("Unauthorized")
    counters.add("Allowed" if outcome.allowed else "Denied", outcome.reason, method)
    # Allows are many and routine (DEBUG); denials are what an operator looks for (INFO).
    if not outcome.allowed:
        _log(logger.info, "denied", context, **_keys(outcome, method))
    elif LOG_ALLOWS:
        _log(logger.debug, "allowed", context, **_keys(outcome, method))
    return outcome.response


def _keys(outcome: Outcome, method: str) -> dict[str, Any]:
    """A log line's keys, built only for a line that is written (not on every allow)."""
    return {"client_id": outcome.client_id, "reason": outcome.reason, "auth_method": method}
