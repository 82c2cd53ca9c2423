"""SNS and EventBridge: where the lifecycle's notices go out."""

from __future__ import annotations

import json
from typing import Any

from gatekey.aws.errors import translated
from gatekey.errors import DependencyError
from gatekey.notices import Notice


class AwsNotifier:
    """SNS for people (e-mail, chat: whatever the owner subscribes) and EventBridge for
    systems (`source: gatekey`). botocore's standard retries absorb transient failures."""

    def __init__(self, *, sns: Any, events: Any, topic_arn: str, bus: str = "default") -> None:
        self._sns = sns
        self._events = events
        self._topic_arn = topic_arn
        self._bus = bus

    channels: tuple[str, ...] = ("sns", "events")

    def send(self, notice: Notice, channel: str) -> None:
        detail = notice.detail()
        with translated(f"{channel} notification failed"):
            if channel == "sns":
                self._sns.publish(
                    TopicArn=self._topic_arn,
                    Subject=f"Gatekey: {notice.detail_type}: {notice.name}"[:100],
                    Message=json.dumps({"detail-type": notice.detail_type, **detail}),
                )
                return
            answer = self._events.put_events(
                Entries=[
                    {
                        "Source": "gatekey",
                        "DetailType": notice.detail_type,
                        "Detail": json.dumps(detail),
                        "EventBusName": self._bus,
                    }
                ]
            )
        if answer.get("FailedEntryCount"):
            raise DependencyError("events notification failed: EventBridge refused the event")
