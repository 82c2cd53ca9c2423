"""DPoP through the functions' handlers on moto: the token function's nonces and bound tokens
(DpopNonces), and the authorizer's replay memory shared across containers through DynamoDB
(DpopSharedReplay). The decisions themselves: tests/unit/test_dpop.py."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from gatekey.access_tokens import issue_access_token
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, new_service_token
from gatekey_client.dpop import DPoPKey
from support.constants import ADMIN, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler
from support.harness import AuthorizerHarness

FORM = "application/x-www-form-urlencoded"
HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
TOKEN_URL = f"https://{HOST}/v1/oauth2/token"  # the API's own issuer: its URL and stage


@pytest.fixture
def token_handler(monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str) -> Any:
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": key,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
        "DPOP_NONCES": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return load_handler("token")


def token_request(handler: Any, basic: str, proof: str | None) -> dict[str, Any]:
    event = load_event("token-client-credentials-basic.json")
    headers = {"Host": HOST, "Content-Type": FORM, "Authorization": basic}
    if proof is not None:
        headers["DPoP"] = proof
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["body"] = urlencode({"grant_type": "client_credentials"})
    response: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext())
    response["json"] = json.loads(response["body"])
    merged = dict(response.get("headers") or {})
    merged |= {k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
    response["headers"] = merged
    return response


def test_the_token_function_asks_for_a_nonce_then_binds_the_token(
    token_handler: Any, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    token, secret = new_service_token(name="bot", hasher=hasher, now=NOW, dpop_required=True)
    store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    basic = "Basic " + base64.b64encode(f"{token.client_id}:{secret.reveal()}".encode()).decode()
    key = DPoPKey.generate()

    refused = token_request(token_handler, basic, None)
    assert (refused["statusCode"], refused["json"]["error"]) == (400, "invalid_dpop_proof")
    asked = token_request(token_handler, basic, key.proof("POST", TOKEN_URL))
    assert (asked["statusCode"], asked["json"]["error"]) == (400, "use_dpop_nonce")
    nonce = asked["headers"]["DPoP-Nonce"]
    issued = token_request(token_handler, basic, key.proof("POST", TOKEN_URL, nonce=nonce))
    assert issued["statusCode"] == 200, issued["json"]
    assert issued["json"]["token_type"] == "DPoP"
    assert issued["headers"]["DPoP-Nonce"]  # the next one
    body = issued["json"]["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["cnf"] == {"jkt": key.thumbprint}
    assert refused["headers"]["DPoP-Nonce"]  # a refusal carries one too


def authorizer_event(token: str, proof: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("authorizer-rest-request.json"))
    event["methodArn"] = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1/GET/items/42"
    event["requestContext"] |= {"path": "/v1/items/42", "domainName": HOST}
    event["headers"] = {"Host": HOST, "Authorization": f"DPoP {token}", "DPoP": proof}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def test_a_proof_is_used_once_across_containers_with_shared_replay(
    make_authorizer: Callable[..., AuthorizerHarness], dynamodb: Any
) -> None:
    first = make_authorizer(DPOP_SHARED_REPLAY="true")
    second = make_authorizer(DPOP_SHARED_REPLAY="true")
    alone = make_authorizer(DPOP_SHARED_REPLAY="false")  # per-container memory only
    bot = first.bot()
    key = DPoPKey.generate()
    token = issue_access_token(
        bot.token,
        first.signer,
        issuer="https://auth.example.com",
        audience="gatekey",
        lifetime=3600,
        scopes=(),
        now=int(first.clock[0]),
        jkt=key.thumbprint,
    ).access_token
    url = f"https://{HOST}/v1/items/42"
    proof = key.proof("GET", url, access_token=token, now=first.clock[0])

    def effect(container: AuthorizerHarness) -> str:
        answer = container.invoke(authorizer_event(token, proof))
        return str(answer["policyDocument"]["Statement"][0]["Effect"])

    assert effect(first) == "Allow"
    assert effect(second) == "Deny"  # the shared record
    assert effect(alone) == "Allow"  # a container without it: the documented bound
    items = dynamodb.scan(TableName=TABLE_NAME)["Items"]
    replay = [i for i in items if i["pk"]["S"].startswith("DPOP#")]
    assert [i["pk"]["S"] for i in replay] == [f"DPOP#{key.thumbprint}"]
    assert int(replay[0]["ttl"]["N"]) == int(first.clock[0]) + 60
