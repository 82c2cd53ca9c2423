"""A small HTTP gateway that serves the template's routes as API Gateway would: REST APIs with
v1 payloads, and HTTP APIs with payload 2.0 (their shapes are gatekey_local.http_api's, their
built-in JWT authorizer gatekey_local.jwt_authorizer's). For each request it builds the event,
runs the route's authorization (AWS_IAM's SigV4 check, a Lambda authorizer with its identity
sources, its result cache and its answer read as API Gateway reads it, or the JWT authorizer),
meters a REST route that requires an API key by its usage plan (gatekey_local.usage_plans),
calls the handler and turns its answer into the HTTP response."""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gatekey_local import http_api
from gatekey_local.jwt_authorizer import IssuerKeys, JwtAuthorizer, JwtRefused, jwt_context
from gatekey_local.policy import policy_allows
from gatekey_local.sigv4 import SigV4Refused, authenticate, verify_sigv4
from gatekey_local.template import ACCOUNT, REGION, STAGE, Route, Schedule
from gatekey_local.usage_plans import Metering

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# The source IP a request is given, for tests of source-IP binding: honoured by the local
# gateway only (and taken off the request), which otherwise gives the peer's address.
# API Gateway sets sourceIp from the connection and passes such a header through as any other.
SOURCE_IP_HEADER = "x-gatekey-local-source-ip"
Handler = Callable[[dict[str, Any], Any], Any]


def _context_value(event: dict[str, Any], source: str) -> str:
    """A REST identity source `context.a.b`: requestContext's a.b, as text ("" if absent)."""
    value: Any = event["requestContext"]
    for part in source.removeprefix("context.").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


class LambdaContext:
    """What a handler reads of its context."""

    def __init__(self, function: str) -> None:
        self.function_name = function
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)  # one Set-Cookie header each

    @classmethod
    def message(cls, status: int, message: str | None) -> Answer:
        body = json.dumps({"message": message}).encode()
        return cls(status, {"Content-Type": "application/json"}, body)

    @classmethod
    def refused(cls, refusal: SigV4Refused) -> Answer:
        """AWS_IAM's refusal as API Gateway sends it: compact JSON and the error type."""
        body = json.dumps({"message": refusal.message}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": refusal.error_type}
        return cls(refusal.status, headers, body)


class Functions:
    """Loaded handlers, each invoked one request at a time, as a Lambda container is."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = dict(handlers)
        self._locks = {name: threading.Lock() for name in handlers}

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        with self._locks[function]:
            return self._handlers[function](event, LambdaContext(function))


class Gateway:
    def __init__(
        self,
        *,
        routes: list[Route],
        schedules: Mapping[str, Schedule],
        functions: Functions,
        credentials: Mapping[str, str],
        issuer_keys: Callable[[str], IssuerKeys] = IssuerKeys,
        region: str = REGION,
        metering: Metering | None = None,
    ) -> None:
        self.routes = routes
        self.region = region  # the region AWS_IAM routes accept signatures for
        # Usage plans, for routes that require an API key (none: every such route is 403).
        self.metering = metering
        self.schedules = dict(schedules)
        self.functions = functions
        self.credentials = dict(credentials)
        self._cache: dict[tuple[str, ...], tuple[Any, float]] = {}
        self._cache_lock = threading.Lock()
        # One key cache per issuer, as API Gateway keeps one per authorizer's issuer.
        self._issuer_keys = issuer_keys
        self._keys: dict[str, IssuerKeys] = {}

    # -- one request -----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        host: str,
        source_ip: str = "127.0.0.1",
    ) -> Answer:
        given = [v for n, v in headers if n.lower() == SOURCE_IP_HEADER]
        if given:
            headers = [(n, v) for n, v in headers if n.lower() != SOURCE_IP_HEADER]
            try:
                source_ip = str(ipaddress.ip_address(given[-1].strip()))
            except ValueError:
                return Answer.message(400, f"{SOURCE_IP_HEADER} is not an IP address")
        split = urlsplit(target)
        path = unquote(split.path)
        if method == "POST" and path.startswith("/_local/schedules/"):
            return self._run_schedule(path.rsplit("/", 1)[-1])
        route, parameters = self._match(method, path)
        if route is None:
            return Answer.message(404, f"no route {method} {path} in template.yaml")
        if route.http:
            request = http_api.Request(
                method=method,
                raw_path=split.path,
                path=path,
                raw_query=split.query,
                query=parse_qsl(split.query, keep_blank_values=True),
                headers=headers,
                body=body,
                host=host,
                source_ip=source_ip,
            )
            return self._handle_http(route, request, parameters, target)
        single = {k: v for k, v in headers}
        query = parse_qsl(split.query, keep_blank_values=True)
        event = self._event(route, path, parameters, headers, query, body, host)
        event["requestContext"]["identity"]["sourceIp"] = source_ip
        context = event["requestContext"]
        if route.auth == "AWS_IAM":
            try:
                key = authenticate(
                    method=method,
                    url=f"http://{host}{target}",
                    headers=single,
                    body=body,
                    credentials=self.credentials,
                    region=self.region,
                )
            except SigV4Refused as refusal:
                return Answer.refused(refusal)
            arn = f"arn:aws:iam::{ACCOUNT}:user/{key}"
            context["identity"] |= {"accessKey": key, "userArn": arn, "caller": key}
        elif route.auth == "LAMBDA":
            denial = self._authorize(route, event)
            if denial is not None:
                return denial
        if route.api_key_required:
            metered = self._meter(route, context, single)
            if metered is not None:
                return metered
        return self._respond(self.functions.invoke(route.function, event))

    def _meter(
        self, route: Route, context: dict[str, Any], headers: dict[str, str]
    ) -> Answer | None:
        """A route that requires an API key: the key from the authorizer's answer or the
        x-api-key header, by the API's ApiKeySourceType, then its usage plan's limits. The
        integration sees the key as API Gateway passes it ($context.identity.apiKey, apiKeyId).
        """
        identity = context["identity"]
        from_authorizer = identity.pop("apiKey", None)
        if route.api_key_source == "AUTHORIZER":
            value = from_authorizer
        else:
            value = next((v for k, v in headers.items() if k.lower() == "x-api-key"), None)
        if self.metering is None:
            return Answer.message(403, "Forbidden")
        admitted = self.metering.admit(value, route.api.lower(), STAGE)
        if isinstance(admitted, tuple):
            return Answer.message(*admitted)
        identity |= {"apiKey": value, "apiKeyId": admitted}
        return None

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found and route.method in (method, "ANY"):
                return route, found.groupdict()
        return None, {}

    def _event(
        self,
        route: Route,
        path: str,
        parameters: dict[str, str],
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
        body: bytes,
        host: str,
    ) -> dict[str, Any]:
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            multi.setdefault(name, []).append(value)
        multi_query: dict[str, list[str]] = {}
        for name, value in query:
            multi_query.setdefault(name, []).append(value)
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": route.method if route.method != "ANY" else "GET",
            "headers": {k: v[-1] for k, v in multi.items()} or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": route.api.lower(),
                "resourcePath": route.path,
                "httpMethod": route.method,
                # The path as called, as API Gateway reports it: this gateway serves every API
                # without a stage prefix, as a custom domain mapped at its root does (a DPoP
                # proof's htu is checked against it: gatekey.dpop.request_target).
                "path": path,
                "stage": STAGE,
                "domainName": host,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {
                    "sourceIp": "127.0.0.1",
                    "userAgent": multi.get("User-Agent", [""])[0],
                },
            },
            "body": text if body else None,
            "isBase64Encoded": encoded,
        }

    # -- HTTP APIs -----------------------------------------------------------------------------

    def _handle_http(
        self, route: Route, request: http_api.Request, parameters: dict[str, str], target: str
    ) -> Answer:
        event = http_api.integration_event(route, request, parameters)
        context = event["requestContext"]
        if route.auth == "AWS_IAM":
            key = verify_sigv4(
                method=request.method,
                url=f"http://{request.host}{target}",
                headers=dict(request.headers),
                body=request.body,
                credentials=self.credentials,
                region=self.region,
            )
            if key is None:
                return Answer.message(403, "Forbidden")
            arn = f"arn:aws:iam::{ACCOUNT}:user/{key}"
            context["authorizer"] = {"iam": {"accessKey": key, "userArn": arn}}
        elif route.auth == "JWT":
            denial = self._authorize_jwt(route, request, context)
            if denial is not None:
                return denial
        elif route.auth == "LAMBDA":
            denial = self._authorize_http(route, request, parameters, context)
            if denial is not None:
                return denial
        reply = http_api.read_integration_answer(self.functions.invoke(route.function, event))
        return Answer(reply.status, reply.headers, reply.body, reply.cookies)

    def _authorize_http(
        self,
        route: Route,
        request: http_api.Request,
        parameters: dict[str, str],
        context: dict[str, Any],
    ) -> Answer | None:
        """An HTTP API's Lambda authorizer; None means let it through."""
        spec = route.authorizer
        assert spec is not None  # noqa: S101 - LAMBDA routes always have one
        identity = http_api.identity_values(spec, route, request, context)
        if identity is None:
            return Answer.message(401, "Unauthorized")  # a missing identity source: no call
        arn = http_api.route_arn(route, request)
        cached = bool(spec.ttl and spec.identity_sources)
        key = (spec.name, route.api, *identity)
        result = self._cached(key) if cached else None
        if result is None:
            event = http_api.authorizer_event(route, request, parameters, identity)
            try:
                result = self.functions.invoke(spec.function, event)
            except Exception as exc:  # noqa: BLE001 - API Gateway maps any authorizer error
                if str(exc) == "Unauthorized":
                    return Answer.message(401, "Unauthorized")
                return Answer.message(500, "Internal Server Error")
            if cached:
                with self._cache_lock:
                    self._cache[key] = (result, time.monotonic() + spec.ttl)
        verdict = http_api.read_authorizer_answer(spec, result, arn)
        if verdict.status == 403:
            return Answer.message(403, "Forbidden")
        if verdict.status is not None:
            return Answer.message(verdict.status, "Internal Server Error")
        context["authorizer"] = {"lambda": verdict.context}
        return None

    def _authorize_jwt(
        self, route: Route, request: http_api.Request, context: dict[str, Any]
    ) -> Answer | None:
        spec = route.authorizer
        assert spec is not None  # noqa: S101 - JWT routes always have one
        assert spec.jwt_issuer is not None  # noqa: S101
        identity = http_api.identity_values(spec, route, request, context)
        if identity is None:
            return Answer.message(401, "Unauthorized")
        keys = self._keys.get(spec.jwt_issuer)
        if keys is None:
            keys = self._keys.setdefault(spec.jwt_issuer, self._issuer_keys(spec.jwt_issuer))
        authorizer = JwtAuthorizer(spec.jwt_issuer, spec.jwt_audiences, keys)
        try:
            claims = authorizer.authorize(identity[0], route.scopes)
        except JwtRefused as refused:
            message = "Unauthorized" if refused.status == 401 else "Forbidden"
            answer = Answer.message(refused.status, message)
            answer.headers["www-authenticate"] = refused.www_authenticate
            return answer
        context["authorizer"] = {"jwt": jwt_context(claims)}
        return None

    # -- REST APIs -------------------------------------------------------------------------------

    def method_arn(self, route: Route, event: dict[str, Any]) -> str:
        api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{route.api.lower()}/{STAGE}"
        return f"{api}/{event['httpMethod']}{event['path']}"

    def _authorize(self, route: Route, event: dict[str, Any]) -> Answer | None:
        """Run the route's Lambda authorizer as API Gateway does; None means let it through."""
        spec = route.authorizer
        assert spec is not None  # noqa: S101 - LAMBDA routes always have one
        lowered = {k.lower(): v for k, v in (event["headers"] or {}).items()}
        identity = tuple(lowered.get(h, "") for h in spec.identity_headers)
        context = tuple(_context_value(event, source) for source in spec.identity_sources)
        if (spec.identity_headers or context) and not all(identity + context):
            return Answer.message(401, "Unauthorized")  # a missing identity source: no call
        arn = self.method_arn(route, event)
        key = (spec.name, route.api, *identity, *context)
        keyed = bool(spec.identity_headers or context)
        result = self._cached(key) if spec.ttl and keyed else None
        if result is None:
            request = {"type": spec.payload, "methodArn": arn, **event}
            if spec.payload == "TOKEN":
                request = {"type": "TOKEN", "methodArn": arn, "authorizationToken": identity[0]}
            try:
                result = self.functions.invoke(spec.function, request)
            except Exception as exc:  # noqa: BLE001 - API Gateway maps any authorizer error
                if str(exc) == "Unauthorized":
                    return Answer.message(401, "Unauthorized")
                return Answer.message(500, None)
            if spec.ttl and keyed:
                with self._cache_lock:
                    self._cache[key] = (result, time.monotonic() + spec.ttl)
        if not isinstance(result, dict) or not policy_allows(result.get("policyDocument", {}), arn):
            return Answer.message(403, "User is not authorized to access this resource")
        event["requestContext"]["authorizer"] = {
            "principalId": result.get("principalId"),
            **(result.get("context") or {}),
        }
        # The API key a usage plan meters this request by, when ApiKeySourceType is
        # AUTHORIZER (kept with the cached answer, as API Gateway keeps it).
        if isinstance(result.get("usageIdentifierKey"), str):
            event["requestContext"]["identity"]["apiKey"] = result["usageIdentifierKey"]
        return None

    def _cached(self, key: tuple[str, ...]) -> Any:
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None or time.monotonic() >= entry[1]:
                self._cache.pop(key, None)
                return None
            return entry[0]

    def _respond(self, result: Any) -> Answer:
        if not isinstance(result, dict) or "statusCode" not in result:
            return Answer.message(502, "Internal server error")
        headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(v) for v in values)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return Answer(int(result["statusCode"]), headers, body)

    def _run_schedule(self, function: str) -> Answer:
        """Run a scheduled function now, with its schedule's input (local only)."""
        schedule = self.schedules.get(function)
        if schedule is None:
            known = sorted(self.schedules)
            message = f"no schedule for {function!r} (scheduled: {', '.join(known) or 'none'})"
            body = json.dumps({"message": message, "scheduled": known}).encode()
            return Answer(404, {"Content-Type": "application/json"}, body)
        try:
            result = self.functions.invoke(function, json.loads(schedule.input))
        except Exception as exc:  # noqa: BLE001 - reported as Lambda reports a function error
            # Lambda's Invoke answer to an unhandled error (X-Amz-Function-Error: Unhandled).
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc),
            }
            headers = {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"}
            return Answer(500, headers, json.dumps(error).encode())
        body = json.dumps(result, default=str).encode()
        return Answer(200, {"Content-Type": "application/json"}, body)

    # -- HTTP ------------------------------------------------------------------------------------

    def serve(self, port: int) -> ThreadingHTTPServer:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A malformed request line still gets a status line (not an HTTP/0.9 answer).
            default_request_version = "HTTP/1.1"

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # http.server's own refusals (bad request line, URI too long, ...) as JSON 4xx.
                code = 400 if code == 505 else code
                self.close_connection = True
                self._write(Answer.message(code, message or "Bad request"))

            def _serve(self) -> None:
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit():
                    self._write(Answer.message(400, "Content-Length is not a number"))
                    return
                if int(length) > MAX_BODY:
                    self._write(Answer.message(413, "Request body is over 10 MiB"))
                    self.close_connection = True
                    return
                body = self.rfile.read(int(length))
                host = self.headers.get("Host") or f"127.0.0.1:{port}"
                try:
                    answer = gateway.handle(
                        self.command,
                        self.path,
                        list(self.headers.items()),
                        body,
                        host,
                        self.client_address[0],
                    )
                except Exception:  # noqa: BLE001 - a handler crash is API Gateway's 502
                    answer = Answer.message(502, "Internal server error")
                self._write(answer)

            def _write(self, answer: Answer) -> None:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                for cookie in answer.cookies:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), RequestHandler)
        server.daemon_threads = True
        return server
