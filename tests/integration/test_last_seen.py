"""last_seen_at, which the idle policy disables tokens by, through the function on moto: written
to DynamoDB before the answer, never lost to a container that Lambda freezes, never a reason to
refuse. When it is written (at most once per interval, not when the item shows a recent use) is
the authorizer's decision: tests/unit/test_authorizer_decisions.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.aws.delivery import SecretsManagerDelivery
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.notify import AwsNotifier
from gatekey.durations import DAY
from gatekey.hashing import Hasher
from gatekey.lifecycle import Lifecycle
from support.constants import NOW, REGION
from support.harness import AuthorizerHarness, credential_headers


def frozen_after_each_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda freezes a container once it has answered, and may never thaw it: work handed to
    a thread then never runs. (The authorizer starts none; this makes sure.)"""

    def never_runs(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *a: Any, **k: Any) -> Any:
        return Future()

    monkeypatch.setattr(ThreadPoolExecutor, "submit", never_runs)


def test_a_token_used_every_ten_days_by_freezing_containers_is_not_disabled_as_idle(
    make_authorizer: Callable[..., AuthorizerHarness],
    store: DynamoDBTokenStore,
    hasher: Hasher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a token used on days 10, 20 and 30, each time by a new container that is frozen
    # right after its answer
    frozen_after_each_answer(monkeypatch)
    first = make_authorizer()
    bot = first.bot()
    for day in (10, 20, 30):
        first.clock[0] = NOW + day * DAY
        container = make_authorizer()
        response = container.call("rest_request", credential_headers("gatekey_headers", bot))
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    # WHEN the lifecycle runs on day 31 with IdleDisableDays=30
    first.clock[0] = NOW + 31 * DAY
    sns = boto3.client("sns", region_name=REGION)
    lifecycle = Lifecycle(
        store=store,
        hasher=hasher,
        notifier=AwsNotifier(
            sns=sns,
            events=boto3.client("events", region_name=REGION),
            topic_arn=sns.create_topic(Name="gatekey-reminders")["TopicArn"],
        ),
        delivery=SecretsManagerDelivery(boto3.client("secretsmanager", region_name=REGION)),
        reminder_days=(30, 7, 1),
        grace_seconds=DAY,
        idle_days=30,
        clock=lambda: int(first.clock[0]),
    )
    # THEN the token is still enabled: its last use (day 30) was recorded
    assert lifecycle.run().disabled == []
    token = store.get(bot.client_id, consistent=True)
    assert token.enabled
    assert token.last_seen_at == NOW + 30 * DAY


def test_a_failed_write_is_counted_and_the_answer_stands(
    authorizer: AuthorizerHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = authorizer.bot()
    client = authorizer.handler.bookkeeping.client

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.dynamodb.UpdateItem", unreachable)
    response = authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    authorizer.handler.counters.flush()  # what the next emission, a minute on, sends
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert any(doc.get("LastSeenWriteFailures") == [1.0] for doc in emitted)
