"""The token endpoint through its handler, against moto: what a bot and a verifier see."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import jwt
import pytest
from botocore.exceptions import EndpointConnectionError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet

from gatekey.access_tokens import BACKDATE
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.kms import kms_public_key
from gatekey.credentials import ClientSecret
from gatekey.durations import Duration
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, ServiceToken, TokenStatus, new_service_token
from support.admin import access_credential, cognito_credential
from support.aws import AwsCallCounter
from support.constants import ADMIN, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler

API_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"
FORM = "application/x-www-form-urlencoded"
GRANT = "client_credentials"


class Bot:
    """A service token in the table and its plaintext secret, as its bot holds them."""

    def __init__(self, token: ServiceToken, secret: ClientSecret) -> None:
        self.token = token
        self.secret = secret

    @property
    def basic(self) -> str:
        raw = f"{self.token.client_id}:{self.secret.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str
) -> pytest.MonkeyPatch:
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def kms_key(spec: str = "RSA_2048") -> str:
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")  # type: ignore[arg-type]
    return str(key["KeyMetadata"]["Arn"])


@pytest.fixture(params=["RSA_2048", "ECC_NIST_P256"])
def handler(
    request: pytest.FixtureRequest, environment: pytest.MonkeyPatch, aws_calls: AwsCallCounter
) -> ModuleType:
    environment.setenv("SIGNING_KEY_ID", kms_key(request.param))
    return load_handler("token")


@pytest.fixture
def rsa_handler(environment: pytest.MonkeyPatch, aws_calls: AwsCallCounter) -> ModuleType:
    environment.setenv("SIGNING_KEY_ID", kms_key())
    return load_handler("token")


@pytest.fixture
def bot(store: DynamoDBTokenStore, hasher: Hasher) -> Bot:
    return make_bot(store, hasher, scopes=("read", "write"))


def make_bot(store: DynamoDBTokenStore, hasher: Hasher, **fields: Any) -> Bot:
    token, secret = new_service_token(name="ci-bot", hasher=hasher, now=NOW, **fields)
    token = store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    return Bot(token, secret)


def call(
    handler: ModuleType,
    event_name: str,
    *,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    event = load_event(event_name)
    event["headers"] = {"Host": event["headers"]["Host"], **(headers or {})}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    if form is not None:
        event["body"] = urlencode(form)
    response: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext())
    response["json"] = json.loads(response["body"])
    # API Gateway merges both header maps into the HTTP answer; so do the assertions.
    merged = dict(response.get("headers") or {})
    merged |= {k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
    response["headers"] = merged
    return response


def request_token(
    handler: ModuleType, bot: Bot, *, form: dict[str, str] | None = None, **headers: str
) -> dict[str, Any]:
    return call(
        handler,
        "token-client-credentials-basic.json",
        headers={"Content-Type": FORM, "Authorization": bot.basic, **headers},
        form=form or {"grant_type": "client_credentials"},
    )


def jwks(handler: ModuleType) -> dict[str, Any]:
    response = call(handler, "token-jwks.json")
    assert response["statusCode"] == 200
    document: dict[str, Any] = response["json"]
    return document


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Service tokens are created at NOW; the handler's clock reads time.time().
    monkeypatch.setattr("time.time", lambda: float(NOW + 60))


def test_issued_token_verifies_with_pyjwt_using_only_the_jwks(
    handler: ModuleType, bot: Bot
) -> None:
    response = request_token(handler, bot)
    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "no-store"
    body = response["json"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read write"

    # GIVEN nothing but the published JWKS, a verifier finds the key by kid and checks it.
    access_token = body["access_token"]
    header = jwt.get_unverified_header(access_token)
    key = jwt.PyJWKSet.from_dict(jwks(handler))[header["kid"]]
    claims = jwt.decode(
        access_token,
        key,
        algorithms=[header["alg"]],
        audience="gatekey",
        issuer=API_URL,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert header["typ"] == "at+jwt"
    assert header["alg"] in {"RS256", "ES256"}
    assert claims["sub"] == claims["client_id"] == claims["common_name"] == bot.token.client_id
    # Issued at NOW + 60 (the frozen clock), for 3600 s; iat and nbf BACKDATE before that.
    assert claims["exp"] == NOW + 60 + 3600
    assert claims["nbf"] == claims["iat"] == NOW + 60 - BACKDATE
    assert claims["scope"] == "read write"
    assert len(claims["jti"]) >= 16


def test_issued_token_also_verifies_with_a_second_jose_library(
    handler: ModuleType, bot: Bot
) -> None:
    access_token = request_token(handler, bot)["json"]["access_token"]
    keys = KeySet.import_key_set(jwks(handler))  # type: ignore[arg-type]
    header = jwt.get_unverified_header(access_token)
    decoded = joserfc_jwt.decode(access_token, keys, algorithms=[header["alg"]])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["client_id"] == bot.token.client_id
    assert decoded.claims["aud"] == "gatekey"


def test_jwks_publishes_kid_alg_and_use(handler: ModuleType) -> None:
    [key] = jwks(handler)["keys"]
    assert key["use"] == "sig"
    assert key["alg"] in {"RS256", "ES256"}
    assert key["kty"] == ("RSA" if key["alg"] == "RS256" else "EC")
    assert "d" not in key  # public only


def test_metadata_follows_rfc_8414(rsa_handler: ModuleType) -> None:
    response = call(rsa_handler, "token-metadata.json")
    metadata = response["json"]
    assert metadata["issuer"] == API_URL
    assert metadata["token_endpoint"] == f"{API_URL}/oauth2/token"
    assert metadata["jwks_uri"] == f"{API_URL}/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert "client_secret_basic" in metadata["token_endpoint_auth_methods_supported"]


def test_openid_configuration_is_the_rfc_8414_metadata_plus_what_oidc_discovery_requires(
    rsa_handler: ModuleType,
) -> None:
    response = call(rsa_handler, "token-openid-configuration.json")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    document = response["json"]
    rfc_8414 = call(rsa_handler, "token-metadata.json")["json"]
    assert document.items() >= rfc_8414.items()
    # OpenID Connect Discovery 1.0 §3, for a server that issues no ID tokens.
    assert document["subject_types_supported"] == ["public"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["response_types_supported"] == []
    # No authorization endpoint exists, so none is named (gatekey.oauth.openid_configuration).
    assert "authorization_endpoint" not in document


def test_a_configured_issuer_is_the_one_both_documents_name(
    environment: pytest.MonkeyPatch, aws_calls: AwsCallCounter
) -> None:
    environment.setenv("SIGNING_KEY_ID", kms_key())
    environment.setenv("ISSUER", "https://auth.example.com")
    handler = load_handler("token")
    for event in ("token-metadata.json", "token-openid-configuration.json"):
        document = call(handler, event)["json"]
        assert document["issuer"] == "https://auth.example.com"
        assert document["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"
        assert document["token_endpoint"] == "https://auth.example.com/oauth2/token"


@pytest.mark.parametrize("style", ["client_secret_post", "gatekey_headers", "access_headers"])
def test_every_client_authentication_method_gets_a_token(
    rsa_handler: ModuleType, bot: Bot, style: str
) -> None:
    client_id, secret = bot.token.client_id, bot.secret.reveal()
    form = {"grant_type": "client_credentials"}
    headers = {"Content-Type": FORM}
    if style == "client_secret_post":
        form |= {"client_id": client_id, "client_secret": secret}
    elif style == "gatekey_headers":
        headers |= {"Gatekey-Client-Id": client_id, "gatekey-client-secret": secret}
    else:
        headers |= {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret}
    response = call(rsa_handler, "token-client-credentials-basic.json", headers=headers, form=form)
    assert response["statusCode"] == 200, response["json"]
    assert response["json"]["token_type"] == "Bearer"


def _invalid_client_cases(store: DynamoDBTokenStore, hasher: Hasher, bot: Bot) -> dict[str, Bot]:
    revoked = make_bot(store, hasher)
    store.update(
        replace(revoked.token, updated_at=NOW, status=TokenStatus.REVOKED),
        AuditEvent(revoked.token.client_id, AuditAction.REVOKED, ADMIN, NOW),
    )
    disabled = make_bot(store, hasher)
    store.update(
        replace(disabled.token, updated_at=NOW, enabled=False),
        AuditEvent(disabled.token.client_id, AuditAction.DISABLED, ADMIN, NOW),
    )
    unknown, unknown_secret = new_service_token(name="ghost", hasher=hasher, now=NOW)
    return {
        "wrong secret": Bot(bot.token, ClientSecret.generate()),
        "unknown client": Bot(unknown, unknown_secret),
        "revoked": revoked,
        "disabled": disabled,
        "expired": make_bot(store, hasher, duration=Duration(1)),  # ended at NOW + 3600
    }


def test_wrong_unknown_revoked_disabled_and_expired_clients_get_one_identical_answer(
    rsa_handler: ModuleType,
    bot: Bot,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = _invalid_client_cases(store, hasher, bot)
    monkeypatch.setattr("time.time", lambda: float(NOW + 3600))
    answers = {}
    for case, client in cases.items():
        response = request_token(rsa_handler, client)
        assert response["statusCode"] == 401, case
        assert response["headers"]["WWW-Authenticate"].startswith("Basic")
        assert response["headers"]["Cache-Control"] == "no-store"
        answers[case] = response["body"]
    # The body never says which check failed.
    assert len(set(answers.values())) == 1
    assert json.loads(answers["revoked"])["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("headers", "form", "status", "error"),
    [
        ({}, {"grant_type": "client_credentials"}, 401, "invalid_client"),
        (
            {"Authorization": "Basic !!!"},
            {"grant_type": "client_credentials"},
            401,
            "invalid_client",
        ),
        (
            {"Authorization": "Basic " + base64.b64encode(b"gk_x:gks_y").decode()},
            {"grant_type": "client_credentials"},
            401,
            "invalid_client",
        ),
        (None, {}, 400, "invalid_request"),
        (None, {"grant_type": "password"}, 400, "unsupported_grant_type"),
        (None, {"grant_type": "client_credentials", "scope": "admin"}, 400, "invalid_scope"),
        (None, [("grant_type", "client_credentials")] * 2, 400, "invalid_request"),
        (
            {"Content-Type": "application/json"},
            {"grant_type": "client_credentials"},
            400,
            "invalid_request",
        ),
    ],
)
def test_rfc_6749_errors(
    rsa_handler: ModuleType,
    bot: Bot,
    headers: dict[str, str] | None,
    form: dict[str, str] | list[tuple[str, str]],
    status: int,
    error: str,
) -> None:
    sent = (
        {"Content-Type": FORM, "Authorization": bot.basic}
        if headers is None
        else {"Content-Type": FORM, **headers}
    )
    response = call(rsa_handler, "token-client-credentials-basic.json", headers=sent, form=form)
    assert response["statusCode"] == status
    assert response["json"]["error"] == error
    assert response["json"]["error_description"]
    assert response["headers"]["Cache-Control"] == "no-store"
    assert ("WWW-Authenticate" in response["headers"]) == (status == 401)


def test_two_authentication_methods_at_once_are_an_invalid_request(
    rsa_handler: ModuleType, bot: Bot
) -> None:
    response = request_token(
        rsa_handler,
        bot,
        form={
            "grant_type": "client_credentials",
            "client_id": bot.token.client_id,
            "client_secret": bot.secret.reveal(),
        },
    )
    assert response["statusCode"] == 400
    assert response["json"]["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("requested", "granted"), [("read", "read"), ("write read", "write read"), ("", "read write")]
)
def test_scope_is_a_subset_of_the_service_tokens_scopes(
    rsa_handler: ModuleType, bot: Bot, requested: str, granted: str
) -> None:
    form = {"grant_type": "client_credentials", "scope": requested}
    body = request_token(rsa_handler, bot, form=form)["json"]
    assert body["scope"] == granted
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["scope"] == granted


def test_lifetime_never_passes_the_service_tokens_expiry(
    rsa_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    short = make_bot(store, hasher, duration=Duration(1))  # expires at NOW + 3600
    body = request_token(rsa_handler, short)["json"]
    assert body["expires_in"] == 3600 - 60
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] == short.token.expires_at


def rotate_with_grace(
    store: DynamoDBTokenStore, hasher: Hasher, bot: Bot, *, grace_ends: int
) -> ClientSecret:
    """Rotate the bot's token to version 2, keeping its secret until `grace_ends`."""
    new_secret = ClientSecret.generate()
    store.update(
        replace(
            bot.token,
            updated_at=NOW,
            secret_hash=hasher.hash(new_secret),
            previous_secret_hash=bot.token.secret_hash,
            previous_client_secret_expires_at=grace_ends,
            client_secret_version=2,
        ),
        AuditEvent(bot.token.client_id, AuditAction.ROTATED, ADMIN, NOW),
    )
    return new_secret


def test_previous_secret_works_only_within_its_grace(
    rsa_handler: ModuleType,
    bot: Bot,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new_secret = rotate_with_grace(store, hasher, bot, grace_ends=NOW + 600)
    assert request_token(rsa_handler, bot)["statusCode"] == 200
    assert request_token(rsa_handler, Bot(bot.token, new_secret))["statusCode"] == 200
    monkeypatch.setattr("time.time", lambda: float(NOW + 600))
    assert request_token(rsa_handler, bot)["statusCode"] == 401
    assert request_token(rsa_handler, Bot(bot.token, new_secret))["statusCode"] == 200


def test_a_token_names_the_secret_version_that_obtained_it_and_ends_with_its_grace(
    rsa_handler: ModuleType, bot: Bot, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    new_secret = rotate_with_grace(store, hasher, bot, grace_ends=NOW + 600)  # clock: NOW + 60
    old = request_token(rsa_handler, bot)["json"]
    claims = jwt.decode(old["access_token"], options={"verify_signature": False})
    assert (claims["client_secret_version"], claims["exp"], old["expires_in"]) == (
        1,
        NOW + 600,
        540,
    )
    new = request_token(rsa_handler, Bot(bot.token, new_secret))["json"]
    claims = jwt.decode(new["access_token"], options={"verify_signature": False})
    assert (claims["client_secret_version"], new["expires_in"]) == (2, 3600)


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=client_credentials&" + "x" * (9 * 1024 * 1024),
        "grant_type=client_credentials" + "&a=b" * 17,
    ],
    ids=["9 MiB", "18 fields"],
)
def test_an_oversized_form_is_refused_before_anything_is_parsed_or_read(
    rsa_handler: ModuleType, bot: Bot, aws_calls: AwsCallCounter, body: str
) -> None:
    event = load_event("token-client-credentials-basic.json")
    event["headers"] = {"Content-Type": FORM, "Authorization": bot.basic}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = body
    aws_calls.calls.clear()
    response = rsa_handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "invalid_request"
    assert aws_calls.calls == {}


def test_the_largest_legitimate_form_is_read(
    rsa_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    # As many scope characters as a token may hold, every one of them percent-encoded.
    scopes = [f"{i}" + "!" * 127 for i in range(8)]  # 8 x 128 + 7 spaces = 1,031 characters
    scopes[-1] = scopes[-1][:-7]
    wide = make_bot(store, hasher, scopes=tuple(scopes))
    asked = " ".join(wide.token.scopes)
    assert len(asked) == 1024
    body = request_token(rsa_handler, wide, form={"grant_type": GRANT, "scope": asked})
    assert body["statusCode"] == 200, body["json"]
    assert body["json"]["scope"] == asked


def test_a_token_with_more_scopes_than_fit_in_an_access_token_gets_an_oauth_error(
    rsa_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    # Tokens created before scopes were limited in all may hold more than a JWT can carry.
    scopes = tuple(f"{i:02d}" + "s" * 126 for i in range(50))
    bot = make_bot(store, hasher)
    store.update(
        replace(bot.token, updated_at=NOW, scopes=scopes),
        AuditEvent(bot.token.client_id, AuditAction.UPDATED, ADMIN, NOW),
    )
    everything = request_token(rsa_handler, bot)
    assert (everything["statusCode"], everything["json"]["error"]) == (400, "invalid_scope")
    some = request_token(rsa_handler, bot, form={"grant_type": GRANT, "scope": scopes[0]})
    assert some["statusCode"] == 200


def test_a_damaged_ring_entry_does_not_stop_the_endpoint(
    environment: pytest.MonkeyPatch, dynamodb: Any, bot: Bot
) -> None:
    key = kms_key()
    public = kms_public_key(key, boto3.client("kms", region_name=REGION))
    entry = {
        "key_id": {"S": key},
        "jwk": {"S": json.dumps(public.jwk())},
        "created_at": {"N": "0"},
        "active_from": {"N": "0"},
        "managed": {"BOOL": False},
    }
    damaged = {**entry, "key_id": {"S": ""}}
    dynamodb.put_item(
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": "SIGNING_KEYS"},
            "sk": {"S": "RING"},
            "keys": {"L": [{"M": damaged}, {"M": {"jwk": {"S": "{"}}}, {"M": entry}]},
            "version": {"N": "1"},
        },
    )
    environment.setenv("SIGNING_KEY_ID", key)
    handler = load_handler("token")
    assert request_token(handler, bot)["statusCode"] == 200
    assert [k["kid"] for k in jwks(handler)["keys"]] == [public.kid]


def test_a_base64_form_of_an_ordinary_size_is_read(rsa_handler: ModuleType, bot: Bot) -> None:
    event = load_event("token-client-credentials-basic.json")
    event["headers"] = {"Content-Type": FORM, "Authorization": bot.basic}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = base64.b64encode(b"grant_type=client_credentials&scope=read").decode()
    event["isBase64Encoded"] = True
    response = rsa_handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["scope"] == "read"


def test_each_token_costs_one_kms_sign_and_one_table_read(
    rsa_handler: ModuleType, bot: Bot, aws_calls: AwsCallCounter, store: DynamoDBTokenStore
) -> None:
    aws_calls.calls.clear()  # forget the cold start (pepper, public key)
    for _ in range(3):
        assert request_token(rsa_handler, bot)["statusCode"] == 200
    # ...and the use is recorded for the idle policy once per LAST_SEEN_INTERVAL_SECONDS: a
    # bot whose APIs verify its access tokens themselves is seen nowhere else.
    assert aws_calls.calls == {"kms.Sign": 3, "dynamodb.GetItem": 3, "dynamodb.UpdateItem": 1}
    token = store.get(bot.token.client_id, consistent=True)
    assert token.last_seen_at == token.idle_since == NOW + 60


def test_a_failed_last_seen_write_still_issues_the_token(
    environment: pytest.MonkeyPatch,
    bot: Bot,
    store: DynamoDBTokenStore,
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    environment.setenv("SIGNING_KEY_ID", kms_key())

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    session = boto3._get_default_session()
    session.events.register("before-send.dynamodb.UpdateItem", unreachable)
    try:  # the handler's clients, made after the hook, all have it
        response = request_token(load_handler("token"), bot)
    finally:
        session.events.unregister("before-send.dynamodb.UpdateItem", unreachable)
    assert response["statusCode"] == 200
    assert store.get(bot.token.client_id, consistent=True).last_seen_at is None
    warning = next(r for r in captured_logs.records if r.getMessage() == "last_seen_at not written")
    assert warning.levelname == "WARNING"
    assert bot.secret.reveal() not in captured_logs.text


def test_refusals_cost_no_kms_call_and_malformed_ones_no_table_read(
    rsa_handler: ModuleType, bot: Bot, aws_calls: AwsCallCounter
) -> None:
    aws_calls.calls.clear()
    request_token(rsa_handler, Bot(bot.token, ClientSecret.generate()))
    assert aws_calls.calls == {"dynamodb.GetItem": 1}
    request_token(rsa_handler, bot, Authorization="Basic " + base64.b64encode(b"a:b").decode())
    assert aws_calls.calls == {"dynamodb.GetItem": 1}


def test_kms_unavailable_is_a_server_error_never_a_token(
    environment: pytest.MonkeyPatch,
    bot: Bot,
    captured_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    template: dict[str, Any],
) -> None:
    environment.setenv("SIGNING_KEY_ID", kms_key())

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com")

    session = boto3._get_default_session()
    session.events.register("before-send.kms.Sign", unreachable)
    try:
        handler = load_handler("token")
        response = request_token(handler, bot)
    finally:
        session.events.unregister("before-send.kms.Sign", unreachable)
    assert response["statusCode"] == 500
    assert response["json"] == {
        "error": "server_error",
        "error_description": "the token endpoint failed; try again later",
    }
    # AND it counts under the metric and exact dimensions TokenEndpointErrorsAlarm watches
    alarm = template["Resources"]["TokenEndpointErrorsAlarm"]["Properties"]
    watched = next(m["MetricStat"]["Metric"] for m in alarm["Metrics"] if m["Id"] == "handled")
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    counted = [m for m in emitted if watched["MetricName"] in m]
    assert [m[watched["MetricName"]] for m in counted] == [[1.0]]
    declared = counted[0]["_aws"]["CloudWatchMetrics"][0]
    assert declared["Namespace"] == watched["Namespace"]
    assert {d["Name"]: d["Value"] for d in watched["Dimensions"]} == {
        name: counted[0][name] for name in declared["Dimensions"][0]
    }


def test_no_secret_or_access_token_reaches_the_logs(
    rsa_handler: ModuleType,
    bot: Bot,
    capsys: pytest.CaptureFixture[str],
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    ok = request_token(rsa_handler, bot)["json"]["access_token"]
    request_token(rsa_handler, Bot(bot.token, ClientSecret.generate()))
    request_token(rsa_handler, bot_with_raw_secret(bot, wrong_checksum(bot.secret)))
    output = capsys.readouterr()
    logs = output.out + output.err + captured_logs.text
    assert "access token issued" in logs
    assert bot.token.client_id in logs
    for needle in (bot.secret.reveal(), bot.secret.reveal()[4:-6], ok, ok.split(".")[2]):
        assert needle not in logs


def wrong_checksum(secret: ClientSecret) -> str:
    raw = secret.reveal()
    return raw[:-1] + ("0" if raw[-1] != "0" else "1")


def bot_with_raw_secret(bot: Bot, raw: str) -> Bot:
    """A bot sending `raw` as its secret, even one ClientSecret would refuse to hold."""

    class Raw(Bot):
        @property
        def basic(self) -> str:
            return "Basic " + base64.b64encode(f"{bot.token.client_id}:{raw}".encode()).decode()

    return Raw(bot.token, bot.secret)


def test_secrets_manager_backend_signs_tokens_that_verify_with_its_jwks(
    environment: pytest.MonkeyPatch, bot: Bot
) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="signing-key", SecretString=pem.decode())["ARN"]
    environment.setenv("SIGNING_BACKEND", "secretsmanager")
    environment.setenv("SIGNING_KEY_ID", arn)
    handler = load_handler("token")
    access_token = request_token(handler, bot)["json"]["access_token"]
    header = jwt.get_unverified_header(access_token)
    key = jwt.PyJWKSet.from_dict(jwks(handler))[header["kid"]]
    claims = jwt.decode(
        access_token,
        key,
        algorithms=["ES256"],
        audience="gatekey",
        issuer=API_URL,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["client_id"] == bot.token.client_id
    assert pem.decode() not in json.dumps(jwks(handler))


# -- imported credentials --------------------------------------------------------------------


@pytest.mark.parametrize("credential", [access_credential, cognito_credential])
@pytest.mark.parametrize("style", ["client_secret_basic", "client_secret_post", "access_headers"])
def test_an_imported_credential_gets_a_token_for_its_own_id(
    rsa_handler: ModuleType,
    store: DynamoDBTokenStore,
    hasher: Hasher,
    credential: Any,
    style: str,
) -> None:
    client_id, secret = credential()
    bot = make_bot(store, hasher, client_id=client_id, secret=secret, scopes=("read",))
    form = {"grant_type": GRANT}
    headers = {"Content-Type": FORM}
    if style == "client_secret_basic":
        headers["Authorization"] = bot.basic
    elif style == "client_secret_post":
        form |= {"client_id": client_id, "client_secret": secret.reveal()}
    else:
        headers |= {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret.reveal()}
    response = call(rsa_handler, "token-client-credentials-basic.json", headers=headers, form=form)
    assert response["statusCode"] == 200, response["json"]
    claims = jwt.decode(response["json"]["access_token"], options={"verify_signature": False})
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "read"


def test_an_unknown_or_wrong_imported_credential_is_invalid_client_after_one_read(
    rsa_handler: ModuleType, store: DynamoDBTokenStore, hasher: Hasher, aws_calls: AwsCallCounter
) -> None:
    client_id, secret = access_credential()
    make_bot(store, hasher, client_id=client_id, secret=secret)
    _, wrong = access_credential()
    unknown_id, _ = access_credential()
    for bot in (
        Bot(replace(store.get(client_id), client_id=client_id), wrong),
        Bot(replace(store.get(client_id), client_id=unknown_id), secret),
    ):
        aws_calls.calls.clear()
        response = request_token(rsa_handler, bot)
        assert (response["statusCode"], response["json"]["error"]) == (401, "invalid_client")
        assert aws_calls.calls == {"dynamodb.GetItem": 1}
    # AND a secret in no format the id takes costs no read at all
    aws_calls.calls.clear()
    malformed = Bot(store.get(client_id), ClientSecret(secret.reveal()[:-1]))
    assert request_token(rsa_handler, malformed)["json"]["error"] == "invalid_client"
    assert aws_calls.calls == {}
