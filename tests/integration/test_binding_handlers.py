"""Source-IP and API bindings through the handlers, against moto: the admin API (create, PATCH,
refusals that write nothing, the OpenAPI document), the token endpoint (the request's source
IP, RFC 8707 `resource` and `audience`, `invalid_target`) and the authorizer function on the
token read from DynamoDB. The decisions themselves are tested on the in-memory store
(tests/unit/test_authorizer_decisions.py, tests/unit/test_bindings.py)."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import jwt
import pytest

from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, new_service_token
from support.aws import AwsCallCounter
from support.constants import ADMIN, ARN, BASE, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler
from support.harness import AdminHarness, AuthorizerHarness, authorizer_event, credential_headers

FORM = "application/x-www-form-urlencoded"


def scan(dynamodb: Any) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName=TABLE_NAME)["Items"])


# -- the admin API ----------------------------------------------------------------------------


def test_bindings_are_created_normalised_shown_stored_and_audited(
    admin: AdminHarness, dynamodb: Any
) -> None:
    status, body = admin.request(
        "POST",
        BASE,
        {
            "name": "ci-bot",
            "bound_cidrs": ["203.0.113.0/24", "2001:DB8::/32", "198.51.100.7"],
            "bound_apis": ["a1b2c3d4e5", "f6g7h8i9j0/prod"],
        },
    )
    assert status == 201, body
    assert body["bound_cidrs"] == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert body["bound_apis"] == ["a1b2c3d4e5", "f6g7h8i9j0/prod"]
    _, shown = admin.request("GET", f"{BASE}/{body['client_id']}")
    assert (shown["bound_cidrs"], shown["bound_apis"]) == (body["bound_cidrs"], body["bound_apis"])
    (item,) = [i for i in scan(dynamodb) if i["sk"]["S"] == "TOKEN"]
    assert [v["S"] for v in item["bound_cidrs"]["L"]] == body["bound_cidrs"]
    _, events = admin.request("GET", f"{BASE}/{body['client_id']}/events")
    details = events["items"][0]["details"]
    assert (details["bound_cidrs"], details["bound_apis"]) == (
        body["bound_cidrs"],
        body["bound_apis"],
    )


def test_an_unbound_token_shows_empty_bindings_and_stores_none(
    admin: AdminHarness, dynamodb: Any
) -> None:
    status, body = admin.request("POST", BASE, {"name": "ci-bot"})
    assert status == 201
    assert (body["bound_cidrs"], body["bound_apis"]) == ([], [])
    (item,) = [i for i in scan(dynamodb) if i["sk"]["S"] == "TOKEN"]
    assert "bound_cidrs" not in item
    assert "bound_apis" not in item


def test_patch_sets_replaces_and_clears_bindings(admin: AdminHarness, dynamodb: Any) -> None:
    _, body = admin.request("POST", BASE, {"name": "ci-bot"})
    path = f"{BASE}/{body['client_id']}"
    status, patched = admin.request("PATCH", path, {"bound_cidrs": ["10.0.0.0/8"]})
    assert status == 200, patched
    assert (patched["bound_cidrs"], patched["bound_apis"]) == (["10.0.0.0/8"], [])
    _, patched = admin.request("PATCH", path, {"bound_apis": ["a1b2c3d4e5/$default"]})
    assert (patched["bound_cidrs"], patched["bound_apis"]) == (
        ["10.0.0.0/8"],
        ["a1b2c3d4e5/$default"],
    )
    _, patched = admin.request("PATCH", path, {"bound_cidrs": [], "bound_apis": []})
    assert (patched["bound_cidrs"], patched["bound_apis"]) == ([], [])
    (item,) = [i for i in scan(dynamodb) if i["sk"]["S"] == "TOKEN"]
    assert "bound_cidrs" not in item


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("bound_cidrs", ["203.0.113.0/24", "10.0.0.5/8"], "10.0.0.5/8"),
        ("bound_cidrs", ["fe80::1%eth0"], "fe80::1%eth0"),
        ("bound_cidrs", ["2001:db8::/129"], "2001:db8::/129"),
        ("bound_cidrs", ["not-a-block"], "not-a-block"),
        ("bound_apis", ["A1B2C3D4E5"], "A1B2C3D4E5"),
        ("bound_apis", ["a1b2c3d4e5/prod/x"], "a1b2c3d4e5/prod/x"),
    ],
)
def test_an_invalid_binding_is_a_400_naming_it_and_nothing_is_written(
    admin: AdminHarness, dynamodb: Any, field: str, value: list[str], named: str
) -> None:
    status, error = admin.request("POST", BASE, {"name": "ci-bot", field: value})
    assert (status, error["code"]) == (400, "invalid_input")
    assert field in error["message"]
    assert named in error["message"]
    assert scan(dynamodb) == []
    # AND on a PATCH, the token is left as it was (and no audit item is written)
    _, body = admin.request("POST", BASE, {"name": "ci-bot", "bound_cidrs": ["10.0.0.0/8"]})
    before = scan(dynamodb)
    status, error = admin.request("PATCH", f"{BASE}/{body['client_id']}", {field: value})
    assert (status, error["code"]) == (400, "invalid_input")
    assert named in error["message"]
    assert scan(dynamodb) == before


def test_too_many_bindings_are_refused_and_nothing_is_written(
    admin: AdminHarness, dynamodb: Any
) -> None:
    cidrs = [f"10.0.{i}.0/24" for i in range(51)]
    status, _ = admin.request("POST", BASE, {"name": "ci-bot", "bound_cidrs": cidrs})
    assert status == 422
    assert scan(dynamodb) == []


def test_the_openapi_document_describes_the_bindings(admin: AdminHarness) -> None:
    _, document = admin.request("GET", "/admin/openapi.json")
    schemas = document["components"]["schemas"]
    for schema in ("CreateTokenRequest", "UpdateTokenRequest", "TokenOut", "ImportTokenRequest"):
        properties = schemas[schema]["properties"]
        assert {"bound_cidrs", "bound_apis"} <= set(properties), schema
    assert schemas["CreateTokenRequest"]["properties"]["bound_cidrs"]["maxItems"] == 50


# -- the token endpoint -----------------------------------------------------------------------


@pytest.fixture
def token_handler(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    pepper_secret_arn: str,
    aws_calls: AwsCallCounter,
) -> ModuleType:
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": key,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("time.time", lambda: float(NOW + 60))
    return load_handler("token")


def bound_basic(store: DynamoDBTokenStore, hasher: Hasher, **fields: Any) -> tuple[str, str]:
    """A stored token's client id and its Basic authorization."""
    token, secret = new_service_token(name="ci-bot", hasher=hasher, now=NOW, **fields)
    store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    raw = f"{token.client_id}:{secret.reveal()}".encode()
    return token.client_id, "Basic " + base64.b64encode(raw).decode()


def token_request(
    handler: ModuleType,
    basic: str,
    form: list[tuple[str, str]] | None = None,
    *,
    source_ip: str = "203.0.113.10",
    event_name: str = "token-client-credentials-basic.json",
) -> tuple[int, dict[str, Any]]:
    event = load_event(event_name)
    event["headers"] = {"Host": event["headers"]["Host"], "Content-Type": FORM}
    event["headers"]["Authorization"] = basic
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = urlencode(form or [("grant_type", "client_credentials")])
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    response = handler.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize(
    ("cidrs", "inside", "outside"),
    [
        (("203.0.113.0/24",), "203.0.113.10", "198.51.100.7"),
        (("2001:db8:1::/48",), "2001:db8:1::5", "2001:db8:2::5"),
    ],
)
def test_the_token_endpoint_refuses_a_bound_token_from_elsewhere(
    token_handler: ModuleType,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    cidrs: tuple[str, ...],
    inside: str,
    outside: str,
) -> None:
    _, basic = bound_basic(store, hasher, bound_cidrs=cidrs)
    status, body = token_request(token_handler, basic, source_ip=inside)
    assert status == 200, body
    status, body = token_request(token_handler, basic, source_ip=outside)
    assert (status, body["error"]) == (403, "unauthorized_client")
    assert outside not in body["error_description"]


def test_introspection_and_revocation_refuse_a_bound_caller_from_elsewhere(
    token_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    _, basic = bound_basic(
        store, hasher, bound_cidrs=("203.0.113.0/24",), scopes=("gatekey:introspect",)
    )
    _, issued = token_request(token_handler, basic)
    form = [("token", issued["access_token"])]
    for event_name in ("token-introspect.json", "token-revoke.json"):
        status, body = token_request(
            token_handler, basic, form, source_ip="198.51.100.7", event_name=event_name
        )
        assert (status, body["error"]) == (403, "unauthorized_client"), event_name
    status, body = token_request(token_handler, basic, form, event_name="token-introspect.json")
    assert (status, body["active"]) == (200, True)


@pytest.mark.parametrize("parameter", ["resource", "audience"])
@pytest.mark.parametrize(
    ("apis", "asked", "answer"),
    [
        ((), "urn:gatekey:api:a1b2c3d4e5", 200),
        (("a1b2c3d4e5",), "urn:gatekey:api:a1b2c3d4e5/v1", 200),
        (("a1b2c3d4e5/v1",), "urn:gatekey:api:a1b2c3d4e5/v1", 200),
        (("a1b2c3d4e5/v1",), "urn:gatekey:api:a1b2c3d4e5", "invalid_target"),
        (("a1b2c3d4e5",), "urn:gatekey:api:f6g7h8i9j0", "invalid_target"),
        ((), "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1", "invalid_target"),
    ],
)
def test_an_access_token_for_one_api_has_that_api_as_its_audience(
    token_handler: ModuleType,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    parameter: str,
    apis: tuple[str, ...],
    asked: str,
    answer: int | str,
) -> None:
    _, basic = bound_basic(store, hasher, bound_apis=apis)
    form = [("grant_type", "client_credentials"), (parameter, asked)]
    status, body = token_request(token_handler, basic, form)
    if answer != 200:
        assert (status, body["error"]) == (400, answer)
        return
    assert status == 200, body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == asked
    # Without one, the stack's audience, as before.
    status, body = token_request(token_handler, basic)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "gatekey"


def test_one_api_per_access_token(
    token_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    _, basic = bound_basic(store, hasher)
    for extra in (
        [("resource", "urn:gatekey:api:a1"), ("resource", "urn:gatekey:api:b2")],
        [("resource", "urn:gatekey:api:a1"), ("audience", "urn:gatekey:api:a1")],
    ):
        form = [("grant_type", "client_credentials"), *extra]
        status, body = token_request(token_handler, basic, form)
        assert (status, body["error"]) == (400, "invalid_target")


# -- the authorizer function ------------------------------------------------------------------


def test_the_authorizer_function_decides_bindings_on_the_token_in_dynamodb(
    authorizer: AuthorizerHarness,
) -> None:
    bot = authorizer.bot(bound_cidrs=("203.0.113.0/24",), bound_apis=("a1b2c3d4e5/v1",))
    headers = credential_headers("gatekey_headers", bot)

    def effect(source_ip: str, arn: str = ARN) -> str:
        event = authorizer_event("rest_request", headers, method="GET", path="/items/42")
        event["methodArn"] = f"{arn}/GET/items/42"
        event["requestContext"]["identity"]["sourceIp"] = source_ip
        answer = authorizer.invoke(event)
        return str(answer["policyDocument"]["Statement"][0]["Effect"])

    assert effect("203.0.113.10") == "Allow"
    assert effect("198.51.100.7") == "Deny"
    assert effect("203.0.113.10", ARN.replace("/v1", "/prod")) == "Deny"
    # A TOKEN event has no source IP: refused.
    basic = credential_headers("basic", bot)
    token_event = authorizer_event("rest_token", basic, method="GET", path="/items/42")
    answer = authorizer.invoke(token_event)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
