"""Attack review through the token function's handler on moto: what a client controls in the
request API Gateway hands it (tests/unit/test_attack_review.py: the authorizer)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, new_service_token
from gatekey_client.dpop import DPoPKey
from support.constants import ADMIN, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler

FORM = "application/x-www-form-urlencoded"
HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
TOKEN_URL = f"https://{HOST}/v1/oauth2/token"


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
    }.items():
        monkeypatch.setenv(name, value)
    return load_handler("token")


@pytest.fixture
def basic(store: DynamoDBTokenStore, hasher: Hasher) -> str:
    token, secret = new_service_token(name="bot", hasher=hasher, now=NOW)
    store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    return "Basic " + base64.b64encode(f"{token.client_id}:{secret.reveal()}".encode()).decode()


def token_request(
    handler: Any, headers: dict[str, str], multi: dict[str, list[str]] | None = None, **context: Any
) -> dict[str, Any]:
    event = load_event("token-client-credentials-basic.json")
    event["headers"] = {"Host": HOST, "Content-Type": FORM, **headers}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()} | (multi or {})
    event["requestContext"] |= context
    event["body"] = urlencode({"grant_type": "client_credentials"})
    response: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext())
    response["json"] = json.loads(response["body"])
    return response


def test_a_path_with_a_lone_surrogate_is_no_500_at_the_token_endpoint(
    token_handler: Any, basic: str
) -> None:
    """request_url quoted the path with UTF-8: a lone surrogate (JSON "\\udc80") raised
    UnicodeEncodeError, so every token request on such a path answered 500."""
    answer = token_request(token_handler, {"Authorization": basic}, path="/v1/oauth2/token\udc80")
    assert answer["statusCode"] == 200, answer["json"]


def test_two_dpop_headers_are_refused_at_the_token_endpoint(token_handler: Any, basic: str) -> None:
    """RFC 9449 §4.3 item 1: not more than one DPoP header. A REST event's `headers` keeps the
    last one, `multiValueHeaders` both; the authorizer counts them (single_proof_header), the
    token endpoint did not and bound the token to the last proof."""
    key = DPoPKey.generate()
    first, second = key.proof("POST", TOKEN_URL), key.proof("POST", TOKEN_URL)
    answer = token_request(
        token_handler,
        {"Authorization": basic, "DPoP": second},
        {"DPoP": [first, second]},
    )
    assert (answer["statusCode"], answer["json"].get("error")) == (400, "invalid_dpop_proof")
