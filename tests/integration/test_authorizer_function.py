"""The authorizer function against moto: each event shape's path through the handler, the token
read from DynamoDB, the access token verified with the KMS key, strict mode's counting, and
failing dependencies failing closed. The decisions themselves (every credential form, routes,
grace, the status cache...) run on the in-memory store: tests/unit/test_authorizer_decisions.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from gatekey.credentials import ClientSecret
from gatekey.errors import DependencyError
from gatekey_local import http_api
from gatekey_local.policy import policy_allows
from gatekey_local.template import Authorizer, Route
from support.admin import access_credential, cognito_credential
from support.constants import ARN, NOW
from support.harness import (
    AuthorizerHarness,
    Bot,
    Unauthorized,
    bad_credentials,
    credential_headers,
)

FORMS = ["gatekey_headers", "access_headers", "access_json", "basic", "bearer"]
SHAPES = ["rest_request", "rest_token", "http"]


def headers_for(authorizer: AuthorizerHarness, form: str, bot: Bot) -> dict[str, str]:
    jwt = authorizer.jwt(bot, scopes=bot.token.scopes) if form == "bearer" else None
    return credential_headers(form, bot, jwt)


def allowed(response: dict[str, Any], method: str = "GET", path: str = "/items/42") -> bool:
    """What API Gateway would do with this answer for METHOD /path."""
    if "isAuthorized" in response:
        return bool(response["isAuthorized"])
    return policy_allows(response["policyDocument"], f"{ARN}/{method}{path}")


def test_a_rest_request_event_is_allowed_on_the_token_read_from_dynamodb(
    authorizer: AuthorizerHarness,
) -> None:
    bot = authorizer.bot(scopes=("read", "write"))
    response = authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    assert allowed(response)
    assert allowed(response, "DELETE", "/orders/1")  # every route the token may reach
    assert response["principalId"] == bot.client_id
    assert response["context"] == {
        "client_id": bot.client_id,
        "name": "ci-bot",
        "scopes": "read write",
        "auth_method": "gatekey_headers",
        "expires_at": "2028-01-15T08:00:00Z",
    }


# A TOKEN authorizer sees the Authorization header only: Basic and Bearer.
FORMS_BY_SHAPE = [
    (shape, form)
    for shape in SHAPES
    for form in FORMS
    if shape != "rest_token" or form in ("basic", "bearer")
]


@pytest.mark.parametrize(("shape", "form"), FORMS_BY_SHAPE)
@pytest.mark.parametrize("credential", [access_credential, cognito_credential])
def test_an_imported_credential_is_allowed_in_every_form_and_shape(
    authorizer: AuthorizerHarness, shape: str, form: str, credential: Any
) -> None:
    client_id, secret = credential()
    bot = authorizer.bot(client_id=client_id, secret=secret, scopes=("read",))
    headers = headers_for(authorizer, form, bot)
    if shape == "rest_token":
        response = authorizer.call(shape, token=headers["Authorization"])
    else:
        response = authorizer.call(shape, headers)
    assert allowed(response)
    assert response["context"]["client_id"] == client_id
    assert response["context"]["auth_method"] == form


def test_a_token_event_carrying_an_access_token_is_allowed_with_the_kms_key(
    authorizer: AuthorizerHarness,
) -> None:
    bot = authorizer.bot()
    response = authorizer.call("rest_token", token=f"Bearer {authorizer.jwt(bot)}")
    assert allowed(response)
    assert response["context"]["auth_method"] == "bearer"


def test_an_event_without_credentials_is_answered_401_by_the_function(
    authorizer: AuthorizerHarness,
) -> None:
    for shape in SHAPES:
        with pytest.raises(Unauthorized):
            authorizer.call(shape, {})


def test_http_api_simple_responses_decide_per_route(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer(HTTP_API_SIMPLE_RESPONSES="true")
    bot = authorizer.bot(routes=("GET /items/*",))
    headers = credential_headers("gatekey_headers", bot)
    answer = authorizer.call("http", headers)
    assert answer["isAuthorized"] is True
    assert answer["context"]["client_id"] == bot.client_id
    assert authorizer.call("http", headers, method="DELETE") == {"isAuthorized": False}
    wrong = {**headers, "Gatekey-Client-Secret": ClientSecret.generate().reveal()}
    assert authorizer.call("http", wrong) == {"isAuthorized": False}


@pytest.mark.parametrize(("version", "simple"), [("2.0", True), ("2.0", False), ("1.0", False)])
def test_http_api_events_as_the_local_gateway_builds_them_are_answered_as_it_reads_them(
    make_authorizer: Callable[..., AuthorizerHarness], version: str, simple: bool
) -> None:
    authorizer = make_authorizer(HTTP_API_SIMPLE_RESPONSES=str(simple).lower())
    bot = authorizer.bot(routes=("GET /items/*",))
    pair = ("$request.header.Gatekey-Client-Id", "$request.header.Gatekey-Client-Secret")
    spec = Authorizer("A", "AuthorizerFunction", version, (), 300, pair, simple)
    headers = list(credential_headers("gatekey_headers", bot).items())
    for method, allowed_here in (("GET", True), ("DELETE", False)):
        route = Route(
            "Http", method, "/items/{id}", "Fn", "LAMBDA", spec, http=True, stage="$default"
        )
        request = http_api.Request(method, "/items/42", "/items/42", "", [], headers, b"", "h")
        identity = http_api.identity_values(spec, route, request, {})
        assert identity is not None
        event = http_api.authorizer_event(route, request, {"id": "42"}, identity)
        answer = authorizer.invoke(event)
        verdict = http_api.read_authorizer_answer(spec, answer, http_api.route_arn(route, request))
        assert verdict.status == (None if allowed_here else 403), (method, answer)
        if allowed_here:
            assert verdict.context["client_id"] == bot.client_id


def test_strict_mode_answers_401_to_bad_credentials_and_counts_them_as_denials(
    make_authorizer: Callable[..., AuthorizerHarness], capsys: pytest.CaptureFixture[str]
) -> None:
    authorizer = make_authorizer(STRICT_MODE="true")
    cases = bad_credentials(authorizer)
    authorizer.clock[0] = NOW + 3600
    for case, headers in cases.items():
        try:
            authorizer.call("rest_request", headers)
        except Unauthorized:
            continue
        pytest.fail(f"{case}: not answered 401")
    capsys.readouterr()
    authorizer.handler.counters.flush()
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    denials = sum(doc.get("AuthorizerDenials", [0])[0] for doc in emitted)
    assert denials == len(cases)  # the denial-spike alarm sees them


def _fail(client: Any, operation: str) -> None:
    """Make every later `operation` call of `client` fail as if AWS were unreachable."""

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://aws.invalid")

    client.meta.events.register(f"before-send.*.{operation}", unreachable)


@pytest.mark.parametrize("form", ["gatekey_headers", "bearer"])
def test_dynamodb_failing_is_an_error_never_an_allow(
    authorizer: AuthorizerHarness, form: str
) -> None:
    bot = authorizer.bot()
    headers = headers_for(authorizer, form, bot)
    _fail(authorizer.handler.store.client, "GetItem")
    with pytest.raises(DependencyError):
        authorizer.call("rest_request", headers)


def test_dynamodb_throttling_is_an_error_never_an_allow(authorizer: AuthorizerHarness) -> None:
    bot = authorizer.bot()
    with Stubber(authorizer.handler.store.client) as stub:
        for _ in range(3):  # botocore's standard retries, then the error
            stub.add_client_error("get_item", service_error_code="ThrottlingException")
        with pytest.raises(DependencyError, match="ThrottlingException"):
            authorizer.call("rest_request", credential_headers("basic", bot))


def test_public_key_fetch_failing_is_an_error_never_an_allow(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    # No key ring stored yet: the authorizer reads the deployment's key from KMS, lazily.
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.invalid")

    session = boto3._get_default_session()
    session.events.register("before-send.kms.GetPublicKey", unreachable)
    try:
        authorizer = make_authorizer()
        bot = authorizer.bot()
        headers = credential_headers("bearer", bot, authorizer.jwt(bot))
        with pytest.raises(DependencyError, match="GetPublicKey"):
            authorizer.call("rest_request", headers)
    finally:
        session.events.unregister("before-send.kms.GetPublicKey", unreachable)


def test_secrets_manager_failing_at_cold_start_fails_the_function_and_is_counted(
    make_authorizer: Callable[..., AuthorizerHarness], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DependencyError, match="pepper"):
        make_authorizer(
            PEPPER_SECRET_ARN="arn:aws:secretsmanager:us-east-1:123456789012:secret:gone"
        )
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    counted = [doc for doc in emitted if doc.get("AuthorizerInitFailures") == [1.0]]
    assert len(counted) == 1
    metric = counted[0]["_aws"]["CloudWatchMetrics"][0]
    assert (metric["Namespace"], metric["Dimensions"]) == ("Gatekey", [["function", "service"]])


def test_no_secret_or_token_reaches_the_logs(
    capsys: pytest.CaptureFixture[str],
    captured_logs: pytest.LogCaptureFixture,
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer()
    bot = authorizer.bot()
    jwt = authorizer.jwt(bot)
    for form in FORMS:
        authorizer.call("rest_request", credential_headers(form, bot, jwt))
    authorizer.call(
        "rest_request",
        credential_headers("gatekey_headers", Bot(bot.token, ClientSecret.generate())),
    )
    output = capsys.readouterr()
    # Every attribute of every record, the structured keys Powertools adds included.
    records = [{k: str(v) for k, v in r.__dict__.items()} for r in captured_logs.records]
    logs = output.out + output.err + captured_logs.text + json.dumps(records)
    denials = [r for r in captured_logs.records if getattr(r, "reason", None)]
    assert {getattr(r, "reason", None) for r in denials} == {"invalid_credentials"}
    assert {getattr(r, "client_id", None) for r in denials} == {bot.client_id}
    for needle in (bot.secret.reveal(), bot.secret.reveal()[4:-6], jwt, jwt.split(".")[2]):
        assert needle not in logs


def test_a_failure_is_counted_at_once(
    capsys: pytest.CaptureFixture[str], authorizer: AuthorizerHarness, template: dict[str, Any]
) -> None:
    bot = authorizer.bot()
    _fail(authorizer.handler.store.client, "GetItem")
    with pytest.raises(DependencyError):
        authorizer.call("rest_request", credential_headers("basic", bot))
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    failed = [m for m in emitted if "Failed" in m]
    assert failed
    assert failed[0]["reason"] == "dependency_unavailable"
    assert failed[0]["Failed"] == [1.0]
    # AND the total the AuthorizerFailures alarm watches, under the dimension it names
    alarm = template["Resources"]["AuthorizerFailuresAlarm"]["Properties"]
    total = [m for m in emitted if alarm["MetricName"] in m]
    assert [m[alarm["MetricName"]] for m in total] == [[1.0]]
    # (an alarm matches only the exact dimension set: Powertools adds `service`, from the
    # environment the template gives every function)
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_SERVICE_NAME"] == os.environ["POWERTOOLS_SERVICE_NAME"]
    declared = total[0]["_aws"]["CloudWatchMetrics"][0]
    assert declared["Namespace"] == alarm["Namespace"]
    assert alarm["Namespace"] == globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        name: total[0][name] for name in declared["Dimensions"][0]
    }


def test_a_bug_fails_closed_and_is_counted_as_a_failure(
    capsys: pytest.CaptureFixture[str],
    authorizer: AuthorizerHarness,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    bot = authorizer.bot()

    def bug(_: object) -> None:
        raise KeyError(bot.secret.reveal())  # a bug whose message quotes the request

    monkeypatch.setattr(authorizer.handler.authorizer, "authorize", bug)
    with pytest.raises(KeyError):
        authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    out = capsys.readouterr().out
    emitted = [json.loads(line) for line in out.splitlines() if "_aws" in line]
    assert [m["AuthorizerFailures"] for m in emitted if "AuthorizerFailures" in m] == [[1.0]]
    assert [m["reason"] for m in emitted if "Failed" in m] == ["internal_error"]
    failed = [r for r in captured_logs.records if r.getMessage() == "authorizer failed closed"]
    assert [(r.__dict__["reason"], r.__dict__["detail"]) for r in failed] == [
        ("internal_error", "KeyError")
    ]
    records = " ".join(str(r.__dict__) for r in captured_logs.records)
    assert bot.secret.reveal() not in out + records
