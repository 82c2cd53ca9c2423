"""Signing-key rotation, invoked by EventBridge Scheduler: one run of gatekey.rotation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import wiring
from gatekey.config import Config

logger = Logger()
metrics = Metrics()
config = Config.from_env()
rotation = wiring.signing_key_rotation(config)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = rotation.run()
    metrics.add_metric("SigningKeysAdded", MetricUnit.Count, 1 if report.added else 0)
    metrics.add_metric("SigningKeysRetired", MetricUnit.Count, len(report.retired))
    # The heartbeat SigningKeysHeartbeatAlarm watches: 1 per run that ran to its end (a run
    # that lost the race to another one ended well too); a run that raised counts nothing.
    metrics.add_metric("SigningKeyRotationRuns", MetricUnit.Count, 1)
    return {"added": report.added, "retired": list(report.retired), "lost_race": report.lost_race}
