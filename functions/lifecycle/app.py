"""Lifecycle runs (EventBridge Scheduler): the daily run of gatekey.lifecycle, and every 15
minutes a resume that goes on with a run its timeout cut short (or returns at once).

A run that leaves work undone (a notification or a delivery failed) counts it and then fails:
the scheduler invokes the function asynchronously, so Lambda's asynchronous retries run it
twice more, then send the event to the dead-letter queue; claims make a retried run send
nothing twice. Every run that gets to its end (or to the end of its time), failures or not,
counts one `LifecycleRuns`, the heartbeat LifecycleHeartbeatAlarm watches; a resume with
nothing to resume counts 0, so it can never stand in for a daily run. Every invocation also
gives `LifecycleUnfinishedSeconds`: how long ago the run it leaves unfinished began, 0 when
none is left so; LifecycleUnfinishedAlarm fires when a run stays open for hours, or when no
invocation ends (the Resume schedule stopped)."""

from __future__ import annotations

import time
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import aws
from gatekey.aws.delivery import SecretsManagerDelivery
from gatekey.aws.notify import AwsNotifier
from gatekey.config import Config
from gatekey.errors import DependencyError
from gatekey.hashing import load_hasher
from gatekey.lifecycle import Lifecycle
from gatekey.store import DynamoDBTokenStore

# Tokens worked on at once: each waits on AWS most of its time (6 calls in a row for a notice),
# and 8 keep a 10,000-notice day inside one invocation (docs/scale.md).
WORKERS: Final = 8

logger = Logger()
metrics = Metrics()
config = Config.from_env()
secrets = aws.client("secretsmanager", aws.LIFECYCLE)
lifecycle = Lifecycle(
    store=DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.LIFECYCLE)),
    hasher=load_hasher(config.pepper_secret_arn, secrets),
    notifier=AwsNotifier(
        sns=aws.client("sns", aws.LIFECYCLE),
        events=aws.client("events", aws.LIFECYCLE),
        topic_arn=config.notification_topic_arn,
    ),
    delivery=SecretsManagerDelivery(secrets),
    reminder_days=config.reminder_days,
    grace_seconds=config.rotation_grace_hours * 3600,
    idle_days=config.idle_disable_days,
    clock=lambda: int(time.time()),
    workers=WORKERS,
)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def time_left() -> float:
        return context.get_remaining_time_in_millis() / 1000

    if event.get("resume"):
        report = lifecycle.resume(time_left=time_left)
        if report is None:  # nothing left to go on with: no run, so no heartbeat
            metrics.add_metric("LifecycleRuns", MetricUnit.Count, 0)
            metrics.add_metric("LifecycleUnfinishedSeconds", MetricUnit.Seconds, 0)
            return {"resumed": False}
    else:
        report = lifecycle.run(time_left=time_left)
    counts = {
        "RemindersSent": len(report.reminded),
        "ExpiryNoticesSent": len(report.expired),
        "TokensRotated": len(report.rotated),
        "GracesEnded": len(report.cleaned),
        "IdleTokensDisabled": len(report.disabled),
        "LifecycleFailures": len(report.failed),
        "LifecycleRuns": 1,
    }
    for name, value in counts.items():
        metrics.add_metric(name, MetricUnit.Count, value)
    metrics.add_metric("LifecycleUnfinishedSeconds", MetricUnit.Seconds, report.unfinished_for)
    summary = dict(vars(report))
    logger.info("lifecycle run", extra={**counts, "finished": report.finished})
    if report.failed:
        raise DependencyError(f"lifecycle run left work undone: {report.failed[:10]}")
    return summary
