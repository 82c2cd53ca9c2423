"""API Gateway HTTP APIs' shapes, for the local gateway: the payload 2.0 integration event and
the handler's answer, the Lambda authorizer's events (payload 2.0 and 1.0), its identity
sources, and how its answer (simple or IAM policy) is read.

What is followed, from the API Gateway developer guide:
- "Create AWS Lambda proxy integrations for HTTP APIs" (payload format 2.0: lower-case headers,
  repeated headers and query strings comma-joined, cookies, rawPath, the response format and
  the bare-JSON shortcut);
- "Control access to HTTP APIs with AWS Lambda authorizers" (the 2.0 and 1.0 authorizer events,
  simple and IAM responses, identity sources: a missing one is a 401 without a call, and the
  result cache keyed on them)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from gatekey_local.policy import policy_allows
from gatekey_local.template import ACCOUNT, REGION, Authorizer, Route


@dataclass(frozen=True)
class Request:
    """One HTTP request as an HTTP API sees it."""

    method: str
    raw_path: str  # as sent, percent-encoding kept; with the stage prefix of a named stage
    path: str  # decoded
    raw_query: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes
    host: str
    source_ip: str = "127.0.0.1"

    def joined_headers(self) -> dict[str, str]:
        """Lower-case names; a repeated header's values joined with commas (payload 2.0)."""
        joined: dict[str, list[str]] = {}
        for name, value in self.headers:
            if name.lower() != "cookie":
                joined.setdefault(name.lower(), []).append(value)
        return {name: ",".join(values) for name, values in joined.items()}

    def cookies(self) -> list[str]:
        return [
            cookie.strip()
            for name, value in self.headers
            if name.lower() == "cookie"
            for cookie in value.split(";")
            if cookie.strip()
        ]

    def joined_query(self) -> dict[str, str]:
        joined: dict[str, list[str]] = {}
        for name, value in self.query:
            joined.setdefault(name, []).append(value)
        return {name: ",".join(values) for name, values in joined.items()}


def route_arn(route: Route, request: Request) -> str:
    """`arn:aws:execute-api:{region}:{account}:{api}/{stage}/{method}{path}`, the path without
    the stage prefix (the 2.0 event's routeArn, the 1.0 event's methodArn)."""
    path = request.path
    if route.stage != "$default":
        path = path.removeprefix(f"/{route.stage}") or "/"
    api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id(route)}/{route.stage}"
    return f"{api}/{request.method}{path}"


def api_id(route: Route) -> str:
    return route.api.lower()


def request_context(route: Route, request: Request, now: float) -> dict[str, Any]:
    headers = request.joined_headers()
    return {
        "accountId": ACCOUNT,
        "apiId": api_id(route),
        "domainName": request.host,
        "domainPrefix": request.host.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route.route_key,
        "stage": route.stage,
        "time": formatdate(now, usegmt=True),
        "timeEpoch": int(now * 1000),
    }


def _body(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def _drop_empty(event: dict[str, Any]) -> dict[str, Any]:
    """API Gateway leaves out cookies, queryStringParameters, pathParameters and body when
    there are none."""
    for key in ("cookies", "queryStringParameters", "pathParameters", "body"):
        if not event.get(key):
            event.pop(key, None)
    return event


def integration_event(
    route: Route, request: Request, parameters: Mapping[str, str], now: float | None = None
) -> dict[str, Any]:
    """The payload 2.0 event a Lambda integration receives."""
    now = time.time() if now is None else now
    body, encoded = _body(request.body)
    return _drop_empty(
        {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.raw_path,
            "rawQueryString": request.raw_query,
            "cookies": request.cookies(),
            "headers": request.joined_headers(),
            "queryStringParameters": request.joined_query(),
            "pathParameters": dict(parameters),
            "requestContext": request_context(route, request, now),
            "body": body,
            "isBase64Encoded": encoded,
        }
    )


def authorizer_event(
    route: Route,
    request: Request,
    parameters: Mapping[str, str],
    identity: list[str],
    now: float | None = None,
) -> dict[str, Any]:
    """The event a Lambda authorizer receives, in its payload format version."""
    now = time.time() if now is None else now
    arn = route_arn(route, request)
    if route.authorizer is not None and route.authorizer.payload == "1.0":
        headers = request.joined_headers()
        return {
            "version": "1.0",
            "type": "REQUEST",
            "methodArn": arn,
            "identitySource": ",".join(identity),
            "authorizationToken": ",".join(identity),
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers,
            "queryStringParameters": request.joined_query(),
            "pathParameters": dict(parameters),
            "stageVariables": {},
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": api_id(route),
                "domainName": request.host,
                "httpMethod": request.method,
                "path": request.raw_path,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "resourcePath": route.path,
                "stage": route.stage,
                "identity": {
                    "sourceIp": request.source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
            },
        }
    event = integration_event(route, request, parameters, now)
    event.pop("body", None)
    event.pop("isBase64Encoded", None)
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": arn,
        "identitySource": identity,
        **{k: v for k, v in event.items() if k != "version"},
        "stageVariables": {},
    }


def identity_values(
    authorizer: Authorizer, route: Route, request: Request, context: Mapping[str, Any]
) -> list[str] | None:
    """The values of the authorizer's identity sources, in order; None when one is missing or
    empty (API Gateway then answers 401 without calling the authorizer)."""
    headers = request.joined_headers()
    query = request.joined_query()
    flat = {
        "routeKey": route.route_key,
        "stage": route.stage,
        "apiId": api_id(route),
        "httpMethod": request.method,
        "path": request.raw_path,
        "domainName": request.host,
        "identity.sourceIp": request.source_ip,
        "identity.userAgent": headers.get("user-agent", ""),
        "requestId": context.get("requestId", ""),
    }
    values = []
    for source in authorizer.identity_sources:
        if source.startswith("$request.header."):
            value = headers.get(source.removeprefix("$request.header.").lower())
        elif source.startswith("$request.querystring."):
            value = query.get(source.removeprefix("$request.querystring."))
        elif source.startswith("$context."):
            value = flat.get(source.removeprefix("$context."))
        else:  # $stageVariables.x: the local stages have none
            value = None
        if not value:
            return None
        values.append(value)
    return values


@dataclass(frozen=True)
class Verdict:
    """How API Gateway reads a Lambda authorizer's answer: let the request through with this
    context, or answer `status`."""

    status: int | None  # None: authorized
    context: dict[str, Any]


def read_authorizer_answer(authorizer: Authorizer, answer: Any, arn: str) -> Verdict:
    """Simple responses (`isAuthorized`, `context`) when enabled, else an IAM policy evaluated
    against the route ARN. A refusal is 403; an answer of neither shape is 500."""
    if not isinstance(answer, dict):
        return Verdict(500, {})
    if authorizer.simple_responses:
        allowed = answer.get("isAuthorized")
        if not isinstance(allowed, bool):
            return Verdict(500, {})
        return Verdict(None if allowed else 403, dict(answer.get("context") or {}))
    policy = answer.get("policyDocument")
    if not isinstance(policy, dict):
        return Verdict(500, {})
    if not policy_allows(policy, arn):
        return Verdict(403, {})
    context = dict(answer.get("context") or {})
    if "principalId" in answer:
        context.setdefault("principalId", answer["principalId"])
    return Verdict(None, context)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes


def read_integration_answer(result: Any) -> Reply:
    """A handler's payload 2.0 answer. A dict with statusCode is a full answer; anything else
    that is JSON (a dict without statusCode, a list, a string, a number) is the body of a 200
    with content-type application/json."""
    if not isinstance(result, dict) or "statusCode" not in result:
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError):
            body = _message("Internal Server Error")
            return Reply(500, {"Content-Type": "application/json"}, [], body)
        return Reply(200, {"Content-Type": "application/json"}, [], body)
    headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    cookies = [str(c) for c in result.get("cookies") or []]
    return Reply(int(result["statusCode"]), headers, cookies, body)


def _message(text: str) -> bytes:
    return json.dumps({"message": text}).encode()
