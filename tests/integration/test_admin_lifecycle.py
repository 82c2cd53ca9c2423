"""The admin API under concurrency, with the authorizer and the lifecycle, and against its own
OpenAPI document."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import EndpointConnectionError

from gatekey.aws.delivery import SecretsManagerDelivery
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.notify import AwsNotifier
from gatekey.credentials import ClientSecret
from gatekey.durations import DAY
from gatekey.hashing import Hasher
from gatekey.lifecycle import Lifecycle
from gatekey_local.policy import policy_allows
from support.constants import ARN as API
from support.constants import BASE, NOW, REGION
from support.harness import AdminHarness, AuthorizerHarness

ARN = f"{API}/GET/items/42"


def test_concurrent_rotate_refresh_enable_and_revoke_lose_nothing_and_revocation_holds(
    atomic_dynamodb_requests: None,
    make_admin: Callable[..., AdminHarness],
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    # GIVEN four admin function containers (each its own cold start) and one token
    containers = [make_admin() for _ in range(4)]
    admin = containers[0]
    status, token = admin.request("POST", BASE, {"name": "contended"})
    assert status == 201
    client_id = token["client_id"]
    operations: list[tuple[str, str, Any]] = [
        ("POST", f"{BASE}/{client_id}/rotate", {"grace": "1h"}),
        ("POST", f"{BASE}/{client_id}/refresh", {}),
        ("PATCH", f"{BASE}/{client_id}", {"enabled": True}),
        ("POST", f"{BASE}/{client_id}/revoke", None),
    ]
    results: list[tuple[str, int, Any]] = []
    barrier = threading.Barrier(len(containers))

    def run(container: AdminHarness, operation: tuple[str, str, Any]) -> None:
        method, path, body = operation
        barrier.wait(timeout=10)
        # Each container repeats its operation, racing the others; the revoking one goes on
        # until its revocation is through (on a busy machine it can lose five races in a row).
        for attempt in range(50):
            status, answer = container.request(method, path, body)
            results.append((path.rsplit("/", 1)[-1], status, answer))
            revoking = path.endswith("/revoke") and status != 200
            if attempt >= 4 and not revoking:
                break

    # WHEN they all change the token at once
    threads = [
        threading.Thread(target=run, args=(c, op))
        for c, op in zip(containers, operations, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # THEN every answer is a success or a conflict, never an error
    unexpected = [r for r in results if r[1] not in (200, 409)]
    assert not unexpected, unexpected
    successes = [r for r in results if r[1] == 200]
    # AND no update was lost: each success is one version step and one audit item
    _, final = admin.request("GET", f"{BASE}/{client_id}")
    assert final["version"] == 1 + len(successes)
    _, events = admin.request("GET", f"{BASE}/{client_id}/events", query={"limit": "100"})
    assert len(events["items"]) == 1 + len(successes)
    # AND the revocation went through once and is final
    assert sum(1 for op, status, _ in results if op == "revoke" and status == 200) == 1
    assert final["status"] == "revoked"
    assert all(
        answer["code"] == "concurrent_modification" or answer["code"] == "invalid_transition"
        for _, status, answer in results
        if status == 409
    )
    # AND no secret ever handed out authenticates any more
    authorizer = make_authorizer()
    authorizer.clock[0] = NOW
    secrets = [token["client_secret"]] + [
        a["client_secret"] for op, s, a in successes if op == "rotate"
    ]
    for secret in secrets:
        response = authorizer.call(
            "rest_request", {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
        )
        assert not policy_allows(response["policyDocument"], ARN)


def test_a_grace_window_keeps_both_secrets_working_until_it_ends(
    make_authorizer: Callable[..., AuthorizerHarness],
    make_admin: Callable[..., AdminHarness],
) -> None:
    authorizer = make_authorizer()
    admin = make_admin()

    def at(seconds: int) -> None:
        authorizer.clock[0] = admin.clock[0] = NOW + seconds

    def allowed(client_id: str, secret: str) -> bool:
        headers = {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
        return policy_allows(authorizer.call("rest_request", headers)["policyDocument"], ARN)

    at(0)
    _, token = admin.request("POST", BASE, {"name": "rotating-bot"})
    client_id, old = token["client_id"], token["client_secret"]
    assert allowed(client_id, old)
    _, rotated = admin.request("POST", f"{BASE}/{client_id}/rotate", {"grace": "1h"})
    new = rotated["client_secret"]
    at(31)  # past the status cache: the authorizer reads the rotated token
    assert allowed(client_id, old)
    assert allowed(client_id, new)
    at(3599)
    assert allowed(client_id, old)
    at(3600)
    assert not allowed(client_id, old)
    assert allowed(client_id, new)
    assert not allowed(client_id, ClientSecret.generate().reveal())


def _invalid_bodies(schema: dict[str, Any]) -> list[Any]:
    properties = schema.get("properties", {})
    wrong = {
        name: ({"nested": [1]} if prop.get("type") == "string" else "x" * 5000)
        for name, prop in properties.items()
    }
    return [
        [],
        "a string",
        42,
        None,
        {"unexpected": True},
        wrong,
        {name: None for name in properties},
        {name: "\udcff" for name in properties},
        {name: "x" * 100_000 for name in properties},
        {name: -1 for name in properties},
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def test_every_operation_with_invalid_input_answers_without_a_5xx(admin: AdminHarness) -> None:
    _, token = admin.request("POST", BASE, {"name": "target"})
    status, document = admin.request("GET", "/admin/openapi.json")
    assert status == 200
    calls = 0
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "patch", "delete"}:
                continue
            for client_id in (token["client_id"], "gk_bad", "../../etc", "%00"):
                path = template.replace("{client_id}", client_id)
                content = operation.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema")
                bodies = _invalid_bodies(_resolve(document, schema)) if schema else [None]
                for body in bodies:
                    status, answer = admin.request(method.upper(), path, body)
                    calls += 1
                    assert status < 500, (method, path, body, answer)
                for raw in ("{", "[1,", "\x00", '{"name": "a"' * 100):
                    status, _ = admin.request(method.upper(), path, raw_body=raw)
                    assert status < 500, (method, path, raw)
                query = {"limit": "-1", "next_token": "%%%", "status": "x", "name": "y" * 500}
                status, _ = admin.request(method.upper(), path, query=query)
                assert status < 500, (method, path, query)
    assert calls > 100


def test_a_manual_rotate_while_an_automatic_delivery_is_pending_never_lets_it_deliver_a_dead_secret(
    make_admin: Callable[..., AdminHarness],
    make_authorizer: Callable[..., AuthorizerHarness],
    store: DynamoDBTokenStore,
    hasher: Hasher,
) -> None:
    admin = make_admin()
    authorizer = make_authorizer(STATUS_CACHE_TTL_SECONDS="0")
    secrets = boto3.client("secretsmanager", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    now = [NOW]

    def at(seconds: int) -> None:
        now[0] = authorizer.clock[0] = admin.clock[0] = NOW + seconds

    def allowed(secret: str) -> bool:
        headers = {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
        return policy_allows(authorizer.call("rest_request", headers)["policyDocument"], ARN)

    def delivered(stage: str = "AWSCURRENT") -> str:
        """The secret the consumer reads from its delivery secret (or the one staged)."""
        answer = secrets.get_secret_value(SecretId=delivery, VersionStage=stage)
        return str(json.loads(answer["SecretString"])["client_secret"])

    lifecycle = Lifecycle(
        store=store,
        hasher=hasher,
        notifier=AwsNotifier(
            sns=sns,
            events=boto3.client("events", region_name=REGION),
            topic_arn=sns.create_topic(Name="reminders")["TopicArn"],
        ),
        delivery=SecretsManagerDelivery(secrets),
        grace_seconds=2 * DAY,
        clock=lambda: now[0],
    )
    # GIVEN an `auto` token whose consumer reads its secret from a delivery secret
    at(0)
    delivery = secrets.create_secret(
        Name="bot/gatekey", Tags=[{"Key": "gatekey-delivery", "Value": "true"}]
    )["ARN"]
    rotation = {"mode": "auto", "delivery_secret_arn": delivery}
    status, token = admin.request(
        "POST", BASE, {"name": "auto-bot", "duration": "960h", "rotation": rotation}
    )
    assert status == 201
    client_id = token["client_id"]
    secrets.put_secret_value(
        SecretId=delivery,
        SecretString=json.dumps({"client_id": client_id, "client_secret": token["client_secret"]}),
    )
    consumers = delivered()
    # AND an automatic rotation that staged a new secret but could not make it current
    at(10 * DAY)

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.invalid")

    hook = "before-send.secrets-manager.UpdateSecretVersionStage"
    secrets.meta.events.register(hook, unreachable)
    assert lifecycle.run().failed
    secrets.meta.events.unregister(hook, unreachable)
    staged = delivered("AWSPENDING")
    assert delivered() == consumers
    # WHEN an admin rotates the token by hand, with a day's grace
    status, rotated = admin.request("POST", f"{BASE}/{client_id}/rotate", {"grace": "24h"})
    assert status == 200
    # THEN the admin's new secret works, and so does the one the consumer reads, for the grace;
    # the staged one, which nobody was given, does not
    assert allowed(rotated["client_secret"])
    assert allowed(consumers)
    assert not allowed(staged)
    _, events = admin.request("GET", f"{BASE}/{client_id}/events", query={"limit": "1"})
    assert events["items"][0]["details"]["abandoned_delivery"] is True
    # WHEN the next lifecycle run finds Secrets Manager working again
    at(11 * DAY)
    report = lifecycle.run()
    assert (report.failed, report.rotated) == ([], [client_id])
    # THEN what the consumer reads now is a fresh secret that works, never the staged one
    assert delivered() not in (staged, consumers, rotated["client_secret"])
    assert allowed(delivered())
    assert not allowed(staged)
    # AND the admin's secret keeps working through the new rotation's grace
    assert allowed(rotated["client_secret"])
