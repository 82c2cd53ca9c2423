"""The local gateway's HTTP APIs: routes read from a template, the payload 2.0 events, the
Lambda authorizer's identity sources, result cache and answers, the handler's answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gatekey_local import http_api
from gatekey_local.gateway import Functions, Gateway
from gatekey_local.template import Authorizer, Route, Stack

AUTHORIZER_FN = {"Fn::GetAtt": ["AuthFunction", "Arn"]}


def template(
    *, authorizer: dict[str, Any] | None = None, stage: str | None = None, **events: Any
) -> dict[str, Any]:
    api: dict[str, Any] = {"Auth": {}}
    if authorizer is not None:
        api["Auth"] = {"DefaultAuthorizer": "Auth", "Authorizers": {"Auth": authorizer}}
    if stage is not None:
        api["StageName"] = stage
    return {
        "Parameters": {},
        "Resources": {
            "Http": {"Type": "AWS::Serverless::HttpApi", "Properties": api},
            "Handler": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Events": {
                        name: {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Http"}, **e}}
                        for name, e in events.items()
                    }
                },
            },
        },
    }


def routes(tpl: dict[str, Any]) -> list[Route]:
    return Stack(parameters={}, physical={}, template=tpl).routes()


class Recorder:
    """Handlers that record their events; the authorizer answers what it is told to."""

    def __init__(self, answer: Any = None, raises: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.authorizer_events: list[dict[str, Any]] = []
        self.answer = answer
        self.raises = raises
        self.reply: Any = {"statusCode": 200, "body": "ok"}

    def handler(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        return self.reply

    def authorize(self, event: dict[str, Any], context: Any) -> Any:
        self.authorizer_events.append(event)
        if self.raises is not None:
            raise Exception(self.raises)  # what an authorizer raises
        return self.answer


def gateway(tpl: dict[str, Any], recorder: Recorder) -> Gateway:
    functions = Functions({"Handler": recorder.handler, "AuthFunction": recorder.authorize})
    return Gateway(routes=routes(tpl), schedules={}, functions=functions, credentials={})


def get(
    gw: Gateway, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Any:
    return gw.handle("GET", target, headers or [], body, "api.example")


# -- routes ------------------------------------------------------------------------------------


def test_route_keys_any_greedy_paths_and_default_are_matched_most_specific_first() -> None:
    tpl = template(
        Default={},
        Proxy={"Path": "/items/{proxy+}", "Method": "ANY"},
        One={"Path": "/items/{id}", "Method": "GET"},
        Literal={"Path": "/items/special", "Method": "GET"},
    )
    found = routes(tpl)
    assert [r.route_key for r in found] == [
        "GET /items/special",
        "GET /items/{id}",
        "ANY /items/{proxy+}",
        "$default",
    ]
    recorder = Recorder()
    gw = gateway(tpl, recorder)
    for target, key, parameters in [
        ("/items/special", "GET /items/special", None),
        ("/items/7", "GET /items/{id}", {"id": "7"}),
        ("/items/7/parts/9", "ANY /items/{proxy+}", {"proxy": "7/parts/9"}),
        ("/elsewhere", "$default", None),
    ]:
        assert get(gw, target).status == 200
        assert recorder.events[-1]["routeKey"] == key
        assert recorder.events[-1].get("pathParameters") == parameters


def test_default_stage_has_no_prefix_and_a_named_stage_has_one() -> None:
    recorder = Recorder()
    assert get(gateway(template(One={"Path": "/a", "Method": "GET"}), recorder), "/a").status == 200
    assert recorder.events[-1]["requestContext"]["stage"] == "$default"
    staged = gateway(template(stage="prod", One={"Path": "/a", "Method": "GET"}), recorder)
    assert get(staged, "/a").status == 404
    assert get(staged, "/prod/a").status == 200
    event = recorder.events[-1]
    assert event["rawPath"] == "/prod/a"  # the stage stays in rawPath
    assert event["requestContext"]["stage"] == "prod"


# -- the 2.0 event -----------------------------------------------------------------------------


def test_the_integration_event_is_payload_2_0() -> None:
    route = Route("Http", "POST", "/items/{id}", "Handler", "NONE", http=True, stage="$default")
    request = http_api.Request(
        method="POST",
        raw_path="/items/a%20b",
        path="/items/a b",
        raw_query="x=1&x=2&y=",
        query=[("x", "1"), ("x", "2"), ("y", "")],
        headers=[
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("User-Agent", "ua/1"),
            ("Cookie", "a=1; b=2"),
        ],
        body=b"\xff\x00",
        host="abc.execute-api.us-east-1.amazonaws.com",
    )
    event = http_api.integration_event(route, request, {"id": "a b"}, now=1_700_000_000.5)
    context = event.pop("requestContext")
    assert event == {
        "version": "2.0",
        "routeKey": "POST /items/{id}",
        "rawPath": "/items/a%20b",
        "rawQueryString": "x=1&x=2&y=",
        "cookies": ["a=1", "b=2"],
        "headers": {"x-multi": "one,two", "user-agent": "ua/1"},
        "queryStringParameters": {"x": "1,2", "y": ""},
        "pathParameters": {"id": "a b"},
        "body": base64.b64encode(b"\xff\x00").decode(),
        "isBase64Encoded": True,
    }
    assert context["http"] == {
        "method": "POST",
        "path": "/items/a%20b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "ua/1",
    }
    assert context["routeKey"] == "POST /items/{id}"
    assert context["stage"] == "$default"
    assert context["apiId"] == "http"
    assert context["accountId"] == "123456789012"
    assert context["domainName"] == "abc.execute-api.us-east-1.amazonaws.com"
    assert context["domainPrefix"] == "abc"
    assert context["timeEpoch"] == 1_700_000_000_500
    assert context["time"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert context["requestId"]


def test_empty_parts_are_left_out_and_text_bodies_are_not_encoded() -> None:
    route = Route("Http", "GET", "$default", "Handler", "NONE", http=True, stage="$default")
    request = http_api.Request("GET", "/", "/", "", [], [], b"", "h")
    event = http_api.integration_event(route, request, {})
    assert not {"cookies", "queryStringParameters", "pathParameters", "body"} & set(event)
    assert event["isBase64Encoded"] is False
    event = http_api.integration_event(
        route, request.__class__(**{**vars(request), "body": b"hi"}), {}
    )
    assert (event["body"], event["isBase64Encoded"]) == ("hi", False)


def test_the_route_arn_leaves_out_the_stage_prefix() -> None:
    route = Route("Http", "GET", "/a", "Handler", "NONE", http=True, stage="prod")
    request = http_api.Request("GET", "/prod/a", "/prod/a", "", [], [], b"", "h")
    assert http_api.route_arn(route, request) == (
        "arn:aws:execute-api:us-east-1:123456789012:http/prod/GET/a"
    )


# -- Lambda authorizers ------------------------------------------------------------------------


def lambda_authorizer(**overrides: Any) -> dict[str, Any]:
    return {
        "FunctionArn": AUTHORIZER_FN,
        "AuthorizerPayloadFormatVersion": "2.0",
        "EnableSimpleResponses": True,
        "Identity": {"Headers": ["X-Key"], "Context": ["routeKey"], "ReauthorizeEvery": 300},
    } | overrides


def test_the_2_0_authorizer_event_and_a_simple_allow_reach_the_handler() -> None:
    recorder = Recorder({"isAuthorized": True, "context": {"client_id": "c1", "n": 2}})
    gw = gateway(
        template(authorizer=lambda_authorizer(), One={"Path": "/a/{id}", "Method": "GET"}),
        recorder,
    )
    assert get(gw, "/a/1?q=1", [("X-Key", "k1")]).status == 200
    (event,) = recorder.authorizer_events
    assert event["version"] == "2.0"
    assert event["type"] == "REQUEST"
    assert event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:http/$default/GET/a/1"
    assert event["identitySource"] == ["k1", "GET /a/{id}"]
    assert event["routeKey"] == "GET /a/{id}"
    assert event["rawPath"] == "/a/1"
    assert event["rawQueryString"] == "q=1"
    assert event["headers"] == {"x-key": "k1"}
    assert event["pathParameters"] == {"id": "1"}
    assert event["requestContext"]["http"]["method"] == "GET"
    assert "body" not in event
    authorizer = recorder.events[-1]["requestContext"]["authorizer"]
    assert authorizer == {"lambda": {"client_id": "c1", "n": 2}}


def test_a_missing_identity_source_is_401_without_a_call() -> None:
    recorder = Recorder({"isAuthorized": True})
    gw = gateway(
        template(authorizer=lambda_authorizer(), One={"Path": "/a", "Method": "GET"}), recorder
    )
    for headers in ([], [("X-Key", "")]):
        answer = get(gw, "/a", headers)
        assert (answer.status, json.loads(answer.body)) == (401, {"message": "Unauthorized"})
    assert recorder.authorizer_events == []


def test_the_result_cache_is_keyed_on_the_identity_sources_for_its_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("gatekey_local.gateway.time.monotonic", lambda: clock[0])
    recorder = Recorder({"isAuthorized": True})
    tpl = template(
        authorizer=lambda_authorizer(),
        A={"Path": "/a", "Method": "GET"},
        B={"Path": "/b", "Method": "GET"},
    )
    gw = gateway(tpl, recorder)
    get(gw, "/a", [("X-Key", "k1")])
    get(gw, "/a", [("X-Key", "k1"), ("X-Other", "ignored")])  # not an identity source
    assert len(recorder.authorizer_events) == 1
    get(gw, "/a", [("X-Key", "k2")])  # another identity
    get(gw, "/b", [("X-Key", "k1")])  # another route key ($context.routeKey is a source)
    assert len(recorder.authorizer_events) == 3
    clock[0] += 300
    get(gw, "/a", [("X-Key", "k1")])  # the TTL is over
    assert len(recorder.authorizer_events) == 4


def test_a_ttl_of_zero_calls_the_authorizer_every_time() -> None:
    recorder = Recorder({"isAuthorized": True})
    spec = lambda_authorizer(Identity={"Headers": ["X-Key"], "ReauthorizeEvery": 0})
    gw = gateway(template(authorizer=spec, A={"Path": "/a", "Method": "GET"}), recorder)
    for _ in range(3):
        get(gw, "/a", [("X-Key", "k1")])
    assert len(recorder.authorizer_events) == 3


@pytest.mark.parametrize(
    ("answer", "raises", "status", "message"),
    [
        ({"isAuthorized": False}, None, 403, "Forbidden"),
        ({"isAuthorized": "yes"}, None, 500, "Internal Server Error"),
        ({"policyDocument": {}}, None, 500, "Internal Server Error"),  # not a simple response
        (None, "Unauthorized", 401, "Unauthorized"),
        (None, "boom", 500, "Internal Server Error"),
    ],
)
def test_simple_response_refusals(
    answer: Any, raises: str | None, status: int, message: str
) -> None:
    recorder = Recorder(answer, raises)
    gw = gateway(
        template(authorizer=lambda_authorizer(), A={"Path": "/a", "Method": "GET"}), recorder
    )
    reply = get(gw, "/a", [("X-Key", "k1")])
    assert (reply.status, json.loads(reply.body)) == (status, {"message": message})
    assert recorder.events == []


def policy(effect: str, resource: str) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": [resource]}
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_iam_policy_answers_are_evaluated_against_the_route_arn(version: str) -> None:
    arn = "arn:aws:execute-api:us-east-1:123456789012:http/$default"
    spec = lambda_authorizer(EnableSimpleResponses=False, AuthorizerPayloadFormatVersion=version)
    tpl = template(
        authorizer=spec, A={"Path": "/a", "Method": "GET"}, B={"Path": "/b", "Method": "GET"}
    )
    answer = {
        "principalId": "p1",
        "policyDocument": policy("Allow", f"{arn}/GET/a"),
        "context": {"client_id": "c1"},
    }
    recorder = Recorder(answer)
    gw = gateway(tpl, recorder)
    assert get(gw, "/a", [("X-Key", "k1")]).status == 200
    context = recorder.events[-1]["requestContext"]["authorizer"]
    assert context == {"lambda": {"client_id": "c1", "principalId": "p1"}}
    denied = get(gw, "/b", [("X-Key", "k1")])
    assert (denied.status, json.loads(denied.body)) == (403, {"message": "Forbidden"})
    recorder.answer = {"principalId": "p1", "policyDocument": policy("Deny", f"{arn}/*/*")}
    assert get(gw, "/a", [("X-Key", "k9")]).status == 403


def test_the_1_0_authorizer_event_is_rest_shaped() -> None:
    spec = lambda_authorizer(EnableSimpleResponses=False, AuthorizerPayloadFormatVersion="1.0")
    recorder = Recorder({"principalId": "p", "policyDocument": policy("Allow", "*")})
    gw = gateway(template(authorizer=spec, A={"Path": "/a", "Method": "GET"}), recorder)
    assert get(gw, "/a", [("X-Key", "k1")]).status == 200
    (event,) = recorder.authorizer_events
    assert event["version"] == "1.0"
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:http/$default/GET/a"
    assert event["identitySource"] == "k1,GET /a"
    assert event["headers"] == {"x-key": "k1"}
    assert event["httpMethod"] == "GET"
    assert event["resource"] == "/a"
    # Simple responses exist in 2.0 only: asked for with 1.0, the answer is read as a policy.
    assert routes(
        template(
            authorizer=lambda_authorizer(AuthorizerPayloadFormatVersion="1.0"),
            A={"Path": "/a", "Method": "GET"},
        )
    )[0].authorizer == Authorizer(
        name="Auth",
        function="AuthFunction",
        payload="1.0",
        identity_headers=(),
        ttl=300,
        identity_sources=("$request.header.X-Key", "$context.routeKey"),
        simple_responses=False,
    )


def test_identity_sources_read_query_strings_and_context() -> None:
    spec = Authorizer(
        "A",
        "F",
        "2.0",
        (),
        300,
        identity_sources=("$request.querystring.k", "$context.stage", "$context.httpMethod"),
    )
    route = Route("Http", "GET", "/a", "Handler", "LAMBDA", spec, http=True, stage="$default")
    request = http_api.Request("GET", "/a", "/a", "k=1&k=2", [("k", "1"), ("k", "2")], [], b"", "h")
    assert http_api.identity_values(spec, route, request, {}) == ["1,2", "$default", "GET"]
    bare = http_api.Request("GET", "/a", "/a", "", [], [], b"", "h")
    assert http_api.identity_values(spec, route, bare, {}) is None


# -- the handler's answer ----------------------------------------------------------------------


def test_the_handler_answer_with_cookies_and_base64_body() -> None:
    recorder = Recorder()
    recorder.reply = {
        "statusCode": 201,
        "headers": {"X-A": "1"},
        "cookies": ["a=1; Secure", "b=2"],
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
    }
    reply = get(gateway(template(A={"Path": "/a", "Method": "GET"}), recorder), "/a")
    assert (reply.status, reply.headers, reply.cookies, reply.body) == (
        201,
        {"X-A": "1"},
        ["a=1; Secure", "b=2"],
        b"\x00\x01",
    )


@pytest.mark.parametrize("bare", [{"hello": "world"}, ["a", 1], "text", 42])
def test_a_bare_json_answer_is_a_200_json_body(bare: Any) -> None:
    recorder = Recorder()
    recorder.reply = bare
    reply = get(gateway(template(A={"Path": "/a", "Method": "GET"}), recorder), "/a")
    assert reply.status == 200
    assert reply.headers == {"Content-Type": "application/json"}
    assert json.loads(reply.body) == bare
