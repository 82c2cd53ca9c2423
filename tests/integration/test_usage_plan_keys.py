"""Usage plans on moto, through the admin function, its CLI and the authorizer function: the
API key Gatekey makes in API Gateway for a metered token, put on its plan, moved, disabled,
deleted; a failure half-way leaves neither an item nor a key; the authorizer names the key."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.credentials import ClientSecret
from gatekey_cli.main import main
from support.constants import BASE, REGION, TABLE_NAME
from support.harness import (
    AdminGateway,
    AdminHarness,
    AuthorizerHarness,
    Bot,
    credential_headers,
)


@pytest.fixture
def apigateway(aws: None) -> Any:
    return boto3.client("apigateway", region_name=REGION)


@pytest.fixture
def plans(apigateway: Any) -> dict[str, str]:
    """Two plans of one API stage, as an operator's stack declares them: their ids by name."""
    stage = [{"apiId": "ordersapi", "stage": "prod"}]
    made = {}
    for name, rate in (("bronze", 2.0), ("gold", 50.0)):
        plan = apigateway.create_usage_plan(
            name=name, apiStages=stage, throttle={"rateLimit": rate, "burstLimit": 2}
        )
        made[name] = plan["id"]
    return made


@pytest.fixture
def new_admin(
    make_admin: Callable[..., AdminHarness], plans: dict[str, str]
) -> Callable[[], AdminHarness]:
    """A cold start of the admin function with the two plans as its USAGE_PLANS (its clients
    see the failures injected before it)."""
    return lambda: make_admin(USAGE_PLANS=",".join(f"{n}={i}" for n, i in plans.items()))


@pytest.fixture
def admin(new_admin: Callable[[], AdminHarness]) -> AdminHarness:
    return new_admin()


def create(admin: AdminHarness, **fields: Any) -> dict[str, Any]:
    status, body = admin.request("POST", BASE, {"name": "metered-bot", **fields})
    assert status == 201, body
    return dict(body)


def keys(apigateway: Any) -> list[dict[str, Any]]:
    return list(apigateway.get_api_keys(includeValues=True)["items"])


def plan_keys(apigateway: Any, plan_id: str) -> list[str]:
    return [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]]


def item(dynamodb: Any, client_id: str) -> dict[str, Any]:
    answer = dynamodb.get_item(
        TableName=TABLE_NAME,
        Key={"pk": {"S": f"TOKEN#{client_id}"}, "sk": {"S": "TOKEN"}},
    )
    return dict(answer.get("Item", {}))


def test_a_token_created_on_a_plan_has_its_own_enabled_key_on_it_named_for_it(
    admin: AdminHarness, apigateway: Any, plans: dict[str, str], dynamodb: Any
) -> None:
    token = create(admin, usage_plan="bronze")
    [key] = keys(apigateway)
    assert (token["usage_plan"], token["api_key_id"]) == ("bronze", key["id"])
    assert key["name"] == f"gatekey-gatekey-{token['client_id']}"
    assert key["enabled"] is True
    assert key["value"] != token["client_secret"]
    assert plan_keys(apigateway, plans["bronze"]) == [key["id"]]
    # The value is on the token's item, for the authorizer, and in no answer.
    stored = item(dynamodb, token["client_id"])["usage_plan"]["M"]
    assert stored["api_key_value"] == {"S": key["value"]}
    assert key["value"] not in json.dumps(token)
    _, shown = admin.request("GET", f"{BASE}/{token['client_id']}")
    assert key["value"] not in json.dumps(shown)


def test_an_unknown_plan_is_a_400_naming_the_plans_and_nothing_is_made(
    admin: AdminHarness, apigateway: Any, dynamodb: Any
) -> None:
    status, error = admin.request("POST", BASE, {"name": "x", "usage_plan": "platinum"})
    assert status == 400
    assert error == {
        "code": "invalid_input",
        "message": "usage_plan: is not a usage plan of this stack (plans: bronze, gold)",
    }
    assert keys(apigateway) == []
    assert dynamodb.scan(TableName=TABLE_NAME)["Items"] == []


@pytest.fixture
def failing(aws: None) -> Iterator[Callable[[str], None]]:
    """Make every call of an operation ('api-gateway.CreateUsagePlanKey') fail to connect, in
    clients made afterwards."""
    session = boto3._get_default_session()
    registered: list[tuple[str, Callable[..., None]]] = []

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://apigateway.us-east-1.amazonaws.com")

    def fail(operation: str) -> None:
        registered.append((f"before-send.{operation}", unreachable))
        session.events.register(f"before-send.{operation}", unreachable)

    yield fail
    for name, handler in registered:
        session.events.unregister(name, handler)


@pytest.mark.parametrize(
    "operation", ["api-gateway.CreateUsagePlanKey", "dynamodb.TransactWriteItems"]
)
def test_a_failure_after_the_key_was_made_deletes_it_and_writes_nothing(
    new_admin: Callable[[], AdminHarness],
    apigateway: Any,
    dynamodb: Any,
    failing: Callable[[str], None],
    operation: str,
) -> None:
    failing(operation)
    status, error = new_admin().request("POST", BASE, {"name": "x", "usage_plan": "bronze"})
    assert (status, error["code"]) == (500, "dependency_unavailable")
    assert keys(apigateway) == []
    assert dynamodb.scan(TableName=TABLE_NAME)["Items"] == []


def test_a_plan_change_moves_the_key_and_a_failed_move_puts_it_back(
    admin: AdminHarness,
    new_admin: Callable[[], AdminHarness],
    apigateway: Any,
    plans: dict[str, str],
    failing: Callable[[str], None],
) -> None:
    token = create(admin, usage_plan="bronze")
    path, key_id = f"{BASE}/{token['client_id']}", token["api_key_id"]
    status, moved = admin.request("PATCH", path, {"usage_plan": plans["gold"]})
    assert (status, moved["usage_plan"], moved["api_key_id"]) == (200, "gold", key_id)
    assert (plan_keys(apigateway, plans["bronze"]), plan_keys(apigateway, plans["gold"])) == (
        [],
        [key_id],
    )
    # A failed write after the move: the key goes back to gold, the token stays on it.
    failing("dynamodb.TransactWriteItems")
    assert new_admin().request("PATCH", path, {"usage_plan": "bronze"})[0] == 500
    assert (plan_keys(apigateway, plans["bronze"]), plan_keys(apigateway, plans["gold"])) == (
        [],
        [key_id],
    )


def test_disable_enable_revoke_and_delete_reach_the_key(
    admin: AdminHarness, apigateway: Any
) -> None:
    token = create(admin, usage_plan="bronze")
    path, key_id = f"{BASE}/{token['client_id']}", token["api_key_id"]

    def enabled() -> bool:
        return bool(apigateway.get_api_key(apiKey=key_id)["enabled"])

    admin.request("PATCH", path, {"enabled": False})
    assert not enabled()
    admin.request("PATCH", path, {"enabled": True})
    assert enabled()
    assert admin.request("POST", f"{path}/revoke")[0] == 200
    assert not enabled()
    assert admin.request("DELETE", path)[0] == 204
    assert keys(apigateway) == []
    _, events = admin.request("GET", f"{path}/events")
    assert [(e["action"], e["details"].get("api_key_id")) for e in events["items"]] == [
        ("deleted", key_id),
        ("revoked", key_id),
        ("enabled", key_id),
        ("disabled", key_id),
        ("created", key_id),
    ]


def test_null_takes_a_token_off_its_plan_and_deletes_its_key(
    admin: AdminHarness, apigateway: Any
) -> None:
    token = create(admin, usage_plan="gold")
    status, body = admin.request("PATCH", f"{BASE}/{token['client_id']}", {"usage_plan": None})
    assert (status, body["usage_plan"], body["api_key_id"]) == (200, None, None)
    assert keys(apigateway) == []


def test_no_key_value_in_logs_answers_or_audit_items(
    capsys: pytest.CaptureFixture[str],
    captured_logs: pytest.LogCaptureFixture,
    admin: AdminHarness,
    authorizer: AuthorizerHarness,
    apigateway: Any,
) -> None:
    token = create(admin, usage_plan="bronze")
    path = f"{BASE}/{token['client_id']}"
    answers = [
        admin.request("PATCH", path, {"usage_plan": "gold", "enabled": False}),
        admin.request("PATCH", path, {"enabled": True}),
        admin.request("GET", f"{path}/events"),
        admin.request("GET", BASE),
    ]
    stored = authorizer.store.get(token["client_id"], consistent=True)
    bot = Bot(stored, ClientSecret(token["client_secret"]))
    authorizer.call("rest_request", credential_headers("gatekey_headers", bot, None))
    [key] = keys(apigateway)
    output = capsys.readouterr()
    # Gatekey's own records; botocore's DEBUG wire log (off unless turned on) shows items and
    # answers as AWS sends them, this value as any other (README, "Rate limits and quotas").
    records = [
        {k: str(v) for k, v in r.__dict__.items()}
        for r in captured_logs.records
        if not r.name.startswith(("botocore", "urllib3"))
    ]
    assert records
    haystack = json.dumps([output.out, output.err, records, answers])
    assert key["value"] not in haystack


def test_the_openapi_document_covers_the_plan_and_never_the_key_value(
    admin: AdminHarness,
) -> None:
    _, document = admin.request("GET", "/admin/openapi.json")
    schemas = document["components"]["schemas"]
    for model in ("CreateTokenRequest", "ImportTokenRequest", "UpdateTokenRequest", "TokenOut"):
        assert "usage_plan" in schemas[model]["properties"], model
    assert "api_key_id" in schemas["TokenOut"]["properties"]
    assert "value" not in json.dumps(document).replace('"value"', "")  # no key value field
    assert not any("api_key_value" in json.dumps(s) for s in schemas.values())


def test_the_authorizer_names_the_key_of_a_metered_token(
    admin: AdminHarness, authorizer: AuthorizerHarness, apigateway: Any
) -> None:
    token = create(admin, usage_plan="bronze")
    [key] = keys(apigateway)
    stored = authorizer.store.get(token["client_id"], consistent=True)
    bot = Bot(stored, ClientSecret(token["client_secret"]))
    response = authorizer.call("rest_request", credential_headers("gatekey_headers", bot, None))
    assert response["usageIdentifierKey"] == key["value"]


def test_the_cli_puts_a_token_on_a_plan_and_takes_it_off(
    admin: AdminHarness, apigateway: Any, plans: dict[str, str]
) -> None:
    environ = os.environ
    gateway = AdminGateway(admin, {environ["AWS_ACCESS_KEY_ID"]: environ["AWS_SECRET_ACCESS_KEY"]})
    try:

        def gatekey(*args: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            code = main(["--endpoint", gateway.url, *args], stdout=out, stderr=err)
            return code, out.getvalue(), err.getvalue()

        code, out, _ = gatekey("--json", "create", "cli-bot", "--usage-plan", "bronze")
        created = json.loads(out)
        assert (code, created["usage_plan"]) == (0, "bronze")
        code, out, _ = gatekey("--json", "update", created["client_id"], "--usage-plan", "gold")
        assert (code, json.loads(out)["usage_plan"]) == (0, "gold")
        assert plan_keys(apigateway, plans["gold"]) == [created["api_key_id"]]
        code, out, _ = gatekey("update", created["client_id"], "--no-usage-plan")
        assert code == 0
        assert "usage_plan" in out
        assert keys(apigateway) == []
        code, _, err = gatekey("create", "x", "--usage-plan", "platinum")
        assert code != 0
        assert "usage_plan: is not a usage plan of this stack" in err
    finally:
        gateway.close()
