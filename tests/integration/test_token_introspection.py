"""Introspection (RFC 7662) and revocation (RFC 7009) through the token function's handler,
against moto, driven by a second OAuth client implementation: Authlib's OAuth2Session, whose
HTTP goes to the handler as API Gateway would deliver it."""

from __future__ import annotations

import base64
import copy
import json
from types import ModuleType
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import BaseAdapter

from gatekey.access_tokens import issue_access_token
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.kms import KmsSigner
from gatekey.credentials import ClientSecret
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, ServiceToken, new_service_token
from gatekey.oauth import INTROSPECTION_SCOPE
from gatekey.revocations import MAX_REVOKED_ACCESS_TOKENS
from support.constants import ADMIN, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler

API_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"
TOKEN_URL = f"{API_URL}/oauth2/token"
INTROSPECT_URL = f"{API_URL}/oauth2/introspect"
REVOKE_URL = f"{API_URL}/oauth2/revoke"
FORM = "application/x-www-form-urlencoded"


class HandlerAdapter(BaseAdapter):
    """requests' transport to the token function's handler: each request becomes the REST
    event API Gateway would send (from events/token-introspect.json's shape)."""

    def __init__(self, handler: ModuleType) -> None:
        super().__init__()
        self.handler = handler

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        path = urlsplit(request.url or "").path.removeprefix("/v1")
        event = copy.deepcopy(load_event("token-introspect.json"))
        headers = {"Host": event["headers"]["Host"], **dict(request.headers)}
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        event |= {"path": path, "resource": path, "httpMethod": request.method, "body": body}
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        event["requestContext"] |= {"resourcePath": path, "path": f"/v1{path}"}
        answer = self.handler.lambda_handler(event, FakeLambdaContext())
        response = requests.Response()
        response.status_code = answer["statusCode"]
        response.headers.update(answer.get("headers") or {})
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            response.headers[name] = ", ".join(values)
        response._content = (answer.get("body") or "").encode()
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


class Client:
    """A service token in the table, and an Authlib session holding its credentials."""

    def __init__(self, handler: ModuleType, token: ServiceToken, secret: ClientSecret) -> None:
        self.token, self.secret = token, secret
        self.session = OAuth2Session(
            token.client_id,
            secret.reveal(),
            token_endpoint_auth_method="client_secret_basic",
        )
        self.session.mount("https://", HandlerAdapter(handler))

    @property
    def client_id(self) -> str:
        return self.token.client_id

    def access_token(self) -> str:
        fetched = self.session.fetch_token(TOKEN_URL, grant_type="client_credentials")
        return str(fetched["access_token"])

    def introspect(self, token: str, **kwargs: Any) -> requests.Response:
        response: requests.Response = self.session.introspect_token(
            INTROSPECT_URL, token=token, **kwargs
        )
        return response

    def revoke(self, token: str, **kwargs: Any) -> requests.Response:
        response: requests.Response = self.session.revoke_token(REVOKE_URL, token=token, **kwargs)
        return response


@pytest.fixture
def key_arn(aws: None) -> str:
    kms = boto3.client("kms", region_name=REGION)
    return str(kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"])


@pytest.fixture
def handler(
    monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str, key_arn: str
) -> ModuleType:
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": key_arn,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("time.time", lambda: float(NOW + 60))
    return load_handler("token")


@pytest.fixture
def make_client(handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher) -> Any:
    def make(*scopes: str) -> Client:
        token, secret = new_service_token(name="bot", hasher=hasher, now=NOW, scopes=scopes)
        token = store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
        return Client(handler, token, secret)

    return make


def test_authlib_introspects_a_token_then_its_bot_revokes_it_and_it_is_inactive(
    make_client: Any, store: DynamoDBTokenStore, captured_logs: pytest.LogCaptureFixture
) -> None:
    # GIVEN a resource server allowed to introspect, and a bot with an access token
    server, bot = make_client(INTROSPECTION_SCOPE), make_client("read")
    token = bot.access_token()
    # WHEN the server introspects it, THEN it is active with its claims
    response = server.introspect(token, token_type_hint="access_token")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    answer = response.json()
    assert answer["active"] is True
    assert (answer["client_id"], answer["sub"], answer["scope"]) == (
        bot.client_id,
        bot.client_id,
        "read",
    )
    assert (answer["iss"], answer["aud"], answer["token_type"]) == (API_URL, "gatekey", "Bearer")
    # WHEN the bot revokes it (Authlib sends token_type_hint=access_token), THEN 200, and it
    # is inactive for the server at once (introspection reads the item consistently)
    revoked = bot.revoke(token, token_type_hint="access_token")
    assert (revoked.status_code, revoked.headers["Cache-Control"]) == (200, "no-store")
    assert server.introspect(token).json() == {"active": False}
    # The audit trail names the jti and the bot; no log line holds the token.
    [event] = [
        e for e in store.events(bot.client_id).items if e.action is AuditAction.ACCESS_TOKEN_REVOKED
    ]
    assert (event.actor, event.details["jti"]) == (bot.client_id, answer["jti"])
    assert event.source_ip == "203.0.113.10"
    assert token not in captured_logs.text
    assert token.split(".")[2] not in captured_logs.text
    assert bot.secret.reveal() not in captured_logs.text


def test_client_secret_post_works_at_both_endpoints(make_client: Any) -> None:
    server, bot = make_client(INTROSPECTION_SCOPE), make_client()
    token = bot.access_token()
    for client in (server, bot):
        client.session.token_endpoint_auth_method = "client_secret_post"
        client.session.revocation_endpoint_auth_method = "client_secret_post"
    assert server.introspect(token).json()["active"] is True
    assert bot.revoke(token).status_code == 200
    assert server.introspect(token).json() == {"active": False}


def test_anything_but_a_usable_token_of_this_issuer_is_inactive_never_an_error(
    make_client: Any, key_arn: str
) -> None:
    server, bot = make_client(INTROSPECTION_SCOPE), make_client()
    signer = KmsSigner(key_arn, boto3.client("kms", region_name=REGION))
    # Signed with this deployment's key, but naming another issuer.
    foreign = issue_access_token(
        bot.token,
        signer,
        issuer="https://other.example.com",
        audience="gatekey",
        lifetime=600,
        scopes=(),
        now=NOW + 60,
    ).access_token
    garbage = ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "é" * 100, foreign]
    for value in garbage:
        response = server.introspect(value, token_type_hint="refresh_token")
        assert (response.status_code, response.json()) == (200, {"active": False}), value


def test_an_access_token_of_a_revoked_service_token_is_inactive(
    make_client: Any, store: DynamoDBTokenStore
) -> None:
    server, bot = make_client(INTROSPECTION_SCOPE), make_client()
    token = bot.access_token()
    from dataclasses import replace

    from gatekey.model import TokenStatus

    stored = store.get(bot.client_id)
    store.update(
        replace(stored, status=TokenStatus.REVOKED),
        AuditEvent(bot.client_id, AuditAction.REVOKED, ADMIN, NOW + 60),
    )
    assert server.introspect(token).json() == {"active": False}


def test_a_caller_without_the_scope_is_refused_and_bad_credentials_are_invalid_client(
    make_client: Any, handler: ModuleType
) -> None:
    caller, bot = make_client("read"), make_client()
    token = bot.access_token()
    refused = caller.introspect(token)
    assert refused.status_code == 403
    assert refused.json()["error"] == "unauthorized_client"
    assert "gatekey:introspect" in refused.json()["error_description"]
    wrong = Client(handler, caller.token, ClientSecret.generate())
    for response in (wrong.introspect(token), wrong.revoke(token)):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_revoking_another_clients_token_is_invalid_grant_and_it_stays_active(
    make_client: Any,
) -> None:
    server, bot, intruder = make_client(INTROSPECTION_SCOPE), make_client(), make_client()
    token = bot.access_token()
    refused = intruder.revoke(token)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert server.introspect(token).json()["active"] is True
    # An unknown or invalid token is no error (RFC 7009 §2.2).
    assert intruder.revoke("not-a-token").status_code == 200


def test_a_request_without_a_token_or_too_large_is_invalid_request(
    make_client: Any, handler: ModuleType
) -> None:
    server = make_client(INTROSPECTION_SCOPE)
    raw = f"{server.client_id}:{server.secret.reveal()}".encode()
    basic = "Basic " + base64.b64encode(raw).decode()
    adapter = HandlerAdapter(handler)
    for url in (INTROSPECT_URL, REVOKE_URL):
        for form in ({"token_type_hint": "access_token"}, {"token": "x" * 10_000}):
            request = requests.Request(
                "POST",
                url,
                headers={"Authorization": basic, "Content-Type": FORM},
                data=urlencode(form),
            ).prepare()
            response = adapter.send(request)
            assert response.status_code == 400, (url, form)
            assert json.loads(response.content)["error"] == "invalid_request"


def test_revocations_past_the_bound_end_the_clients_older_tokens_only(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, bot = make_client(INTROSPECTION_SCOPE), make_client()
    tokens = [bot.access_token() for _ in range(MAX_REVOKED_ACCESS_TOKENS + 1)]
    kept = bot.access_token()
    for token in tokens:
        assert bot.revoke(token).status_code == 200
    # The last revocation found the list full: every token issued until then is revoked...
    assert server.introspect(kept).json() == {"active": False}
    # ...and a token the bot gets a second later works.
    monkeypatch.setattr("time.time", lambda: float(NOW + 61))
    assert server.introspect(bot.access_token()).json()["active"] is True
