"""Signing-key rotation, invoked by EventBridge Scheduler: one run of gatekey.rotation."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import aws
from gatekey.access_tokens import DEFAULT_LEEWAY
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME, Config
from gatekey.keyring import KeyRingStore
from gatekey.rotation import SigningKeyRotation

DAY = 86_400

logger = Logger()
metrics = Metrics()
config = Config.from_env()
rotation = SigningKeyRotation(
    ring_store=KeyRingStore(config.table_name, aws.client("dynamodb", aws.ROTATION)),
    kms=aws.client("kms", aws.ROTATION),
    initial_key_id=config.signing_key_id,
    key_spec=config.signing_key_spec,
    stack_tag=config.stack_name,
    cadence=config.signing_key_rotation_days * DAY,
    publication_delay=config.signing_key_publication_delay_seconds,
    # Whatever the lifetime is set to today, no token outlives the longest one allowed.
    retire_after=MAX_ACCESS_TOKEN_LIFETIME + DEFAULT_LEEWAY,
    clock=lambda: int(time.time()),
)


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
