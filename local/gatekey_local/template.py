"""What the local stack reads from template.yaml: parameters, functions with their resolved
environment, API routes with their authorization, and schedules. Nothing is repeated by hand:
a route added to the template is served locally, a test checks it."""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gatekey_local.provision import load_template

ACCOUNT = "123456789012"
REGION = "us-east-1"
STAGE = "v1"


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str  # logical id of the authorizer function ("" for a JWT authorizer)
    payload: str  # REST: REQUEST or TOKEN; HTTP APIs: the payload format version, 1.0 or 2.0
    identity_headers: tuple[str, ...]  # REST: lower-case header names
    ttl: int
    # HTTP APIs: identity sources as written ($request.header.X, $request.querystring.x,
    # $context.x, $stageVariables.x), simple responses, and a JWT authorizer's issuer/audience.
    identity_sources: tuple[str, ...] = ()
    simple_responses: bool = False
    jwt_issuer: str | None = None  # set: the built-in JWT authorizer
    jwt_audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    api: str  # logical id of the API
    method: str
    path: str  # the template's path, with {params}
    function: str
    auth: str  # "NONE", "AWS_IAM", "LAMBDA" or "JWT"
    authorizer: Authorizer | None = None
    # HTTP APIs (AWS::Serverless::HttpApi): the stage ("$default": no prefix in the path) and
    # the route's AuthorizationScopes. REST routes are served without their stage prefix.
    http: bool = False
    stage: str = STAGE
    scopes: tuple[str, ...] = ()
    # REST: the route requires an API key (SAM's Auth ApiKeyRequired), read from where the
    # API's ApiKeySourceType says: HEADER (x-api-key) or AUTHORIZER (usageIdentifierKey).
    api_key_required: bool = False
    api_key_source: str = "HEADER"

    @property
    def route_key(self) -> str:
        """The HTTP API route key: `GET /path`, `ANY /path`, or `$default`."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def pattern(self) -> re.Pattern[str]:
        if self.path == "$default":
            return re.compile(r"/.*", re.DOTALL)
        parts = re.split(r"(\{[^}]+\})", self.path)
        regex = "".join(
            (f"(?P<{p[1:-2]}>.+)" if p.endswith("+}") else f"(?P<{p[1:-1]}>[^/]+)")
            if p.startswith("{")
            else re.escape(p)
            for p in parts
        )
        if self.http and self.stage != "$default":
            regex = re.escape(f"/{self.stage}") + regex
        return re.compile(regex, re.DOTALL)

    @property
    def specificity(self) -> tuple[bool, bool, int, bool]:
        """HTTP APIs match the most specific route first: literal paths, then parameters, then
        greedy paths (the longest first), then `$default`; a method before ANY."""
        greedy = "+}" in self.path
        depth = -self.path.count("/") if greedy else self.path.count("{")
        return (self.path == "$default", greedy, depth, self.method == "ANY")


@dataclass(frozen=True)
class Schedule:
    function: str
    input: str


@dataclass
class Stack:
    """template.yaml resolved for one local run."""

    parameters: dict[str, str]
    physical: dict[str, str]  # logical id -> Ref value
    attributes: dict[str, str] = field(default_factory=dict)  # "Logical.Attr" -> value
    template: dict[str, Any] = field(default_factory=load_template)

    @property
    def conditions(self) -> dict[str, bool]:
        return {
            name: bool(self.resolve(expression))
            for name, expression in self.template.get("Conditions", {}).items()
        }

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions Gatekey's template uses."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((key, argument),) = value.items()
        if key == "Ref":
            return self._ref(argument)
        if key == "Fn::GetAtt":
            logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attributes[f"{logical}.{attribute}"]
        if key == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), text)
        if key == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.conditions[name] else when_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Condition":
            return self.conditions[argument]
        return {k: self.resolve(v) for k, v in value.items()}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": "gatekey",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]

    def _sub(self, name: str) -> str:
        if "." in name:
            return str(self.attributes[name])
        return str(self._ref(name))

    # -- what the template declares ----------------------------------------------------------

    def functions(self) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"
            and (resource.get("Condition") is None or self.conditions[resource["Condition"]])
        }

    def environment(self, function: str) -> dict[str, str]:
        """The function's variables, Globals merged under its own, resolved."""
        merged = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        own = self.functions()[function]["Properties"].get("Environment", {})
        merged |= own.get("Variables", {})
        return {k: str(self.resolve(v)) for k, v in merged.items()}

    def code_path(self, function: str) -> str:
        return str(self.functions()[function]["Properties"]["CodeUri"]).rstrip("/")

    def routes(self) -> list[Route]:
        """REST routes in template order, then HTTP API routes, most specific first."""
        found, http = [], []
        for function, resource in self.functions().items():
            for event in resource["Properties"].get("Events", {}).values():
                props = event.get("Properties") or {}
                if event["Type"] == "Api":
                    found.append(self._route(props["RestApiId"]["Ref"], props, function))
                elif event["Type"] == "HttpApi":
                    http.append(self._http_route(props, function))
        return found + sorted(http, key=lambda r: r.specificity)

    def _http_route(self, props: Mapping[str, Any], function: str) -> Route:
        """A `Type: HttpApi` event: its API (SAM's implicit ServerlessHttpApi without ApiId),
        route key, stage and authorization."""
        api = props["ApiId"]["Ref"] if "ApiId" in props else "ServerlessHttpApi"
        if str(props.get("PayloadFormatVersion", "2.0")) != "2.0":
            raise ValueError(f"{function}: the local gateway serves HTTP API payload 2.0 only")
        api_props = self.template["Resources"].get(api, {}).get("Properties", {})
        stage = str(self.resolve(api_props.get("StageName", "$default")))
        if "Path" in props:
            method, path = str(props.get("Method", "ANY")).upper(), str(props["Path"])
        else:
            method, path = "ANY", "$default"
        auth = api_props.get("Auth", {})
        route_auth = props.get("Auth", {})
        chosen = route_auth.get("Authorizer", auth.get("DefaultAuthorizer", "NONE"))
        scopes = tuple(route_auth.get("AuthorizationScopes", auth.get("DefaultScopes", [])))

        def route(kind: str, authorizer: Authorizer | None = None) -> Route:
            return Route(api, method, path, function, kind, authorizer, True, stage, scopes)

        if chosen in ("NONE", "AWS_IAM"):
            return route(chosen)
        spec = auth["Authorizers"][chosen]
        if "JwtConfiguration" in spec:
            jwt = self.resolve(spec["JwtConfiguration"])
            audiences = jwt.get("audience", [])
            source = str(spec.get("IdentitySource", "$request.header.Authorization"))
            authorizer = Authorizer(
                name=chosen,
                function="",
                payload="JWT",
                identity_headers=(),
                ttl=0,
                identity_sources=(source,),
                jwt_issuer=str(jwt["issuer"]),
                jwt_audiences=tuple(audiences if isinstance(audiences, list) else [audiences]),
            )
            return route("JWT", authorizer)
        identity = spec.get("Identity", {})
        sources = [
            f"{prefix}{name}"
            for prefix, key in (
                ("$request.header.", "Headers"),
                ("$request.querystring.", "QueryStrings"),
                ("$stageVariables.", "StageVariables"),
                ("$context.", "Context"),
            )
            for name in identity.get(key, [])
        ]
        version = str(spec.get("AuthorizerPayloadFormatVersion", "2.0"))
        authorizer = Authorizer(
            name=chosen,
            function=spec["FunctionArn"]["Fn::GetAtt"][0],
            payload=version,
            identity_headers=(),
            ttl=int(self.resolve(identity.get("ReauthorizeEvery", 300))),
            identity_sources=tuple(sources),
            # Simple responses exist in payload 2.0 only.
            simple_responses=version == "2.0"
            and bool(self.resolve(spec.get("EnableSimpleResponses", False))),
        )
        return route("LAMBDA", authorizer)

    def _route(self, api: str, props: Mapping[str, Any], function: str) -> Route:
        """A `Type: Api` event, with its API key requirement (gatekey_local.usage_plans)."""
        api_props = self.template["Resources"][api]["Properties"]
        auth = api_props.get("Auth", {})
        required = props.get("Auth", {}).get("ApiKeyRequired", auth.get("ApiKeyRequired", False))
        return replace(
            self._rest_route(api, props, function),
            api_key_required=bool(self.resolve(required)),
            api_key_source=str(self.resolve(api_props.get("ApiKeySourceType", "HEADER"))),
        )

    def _rest_route(self, api: str, props: Mapping[str, Any], function: str) -> Route:
        auth = self.template["Resources"][api]["Properties"].get("Auth", {})
        chosen = props.get("Auth", {}).get("Authorizer", auth.get("DefaultAuthorizer", "NONE"))
        method, path = str(props["Method"]).upper(), str(props["Path"])
        if chosen in ("NONE", "AWS_IAM"):
            return Route(api, method, path, function, chosen)
        spec = auth["Authorizers"][chosen]
        identity = spec.get("Identity", {})
        payload = spec.get("FunctionPayloadType", "TOKEN")
        # A TOKEN authorizer has one identity source, `Header` (Authorization by default).
        headers = (
            [identity.get("Header", "Authorization")]
            if payload == "TOKEN"
            else identity.get("Headers", [])
        )
        authorizer = Authorizer(
            name=chosen,
            function=spec["FunctionArn"]["Fn::GetAtt"][0],
            payload=payload,
            identity_headers=tuple(h.lower() for h in headers),
            ttl=int(self.resolve(identity.get("ReauthorizeEvery", 300))),
            # A REQUEST authorizer's context identity sources (`context.identity.sourceIp`).
            identity_sources=tuple(
                f"context.{name}"
                for name in ([] if payload == "TOKEN" else identity.get("Context", []))
            ),
        )
        return Route(api, method, path, function, "LAMBDA", authorizer)

    def usage_plans(self) -> dict[str, dict[str, Any]]:
        """The template's usage plans (AWS::ApiGateway::UsagePlan), resolved, by logical id."""
        return {
            name: self.resolve(resource.get("Properties", {}))
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::ApiGateway::UsagePlan"
        }

    def schedules(self) -> dict[str, Schedule]:
        found = {}
        for function, resource in self.functions().items():
            for event in resource["Properties"].get("Events", {}).values():
                if event["Type"] == "ScheduleV2":
                    found[function] = Schedule(function, event["Properties"].get("Input", "{}"))
        return found


class ParameterError(ValueError):
    """A parameter override the template refuses, said in one line."""


def parameters(overrides: str = "") -> dict[str, str]:
    """Template defaults, then `Key=Value Key2=Value2` overrides (as `sam deploy` takes them,
    a value with spaces in quotes), each checked against its declaration as CloudFormation
    checks it: a known name, then Type Number, AllowedValues, MinValue/MaxValue,
    MinLength/MaxLength and AllowedPattern (the whole value)."""
    declared = load_template()["Parameters"]
    values = {k: str(p.get("Default", "")) for k, p in declared.items()}
    try:
        pairs = shlex.split(overrides)
    except ValueError as exc:
        raise ParameterError(f"parameter overrides: {exc}") from None
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ParameterError(f"parameter override {pair!r}: expected Name=Value")
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ParameterError(f"parameter override {key}: no such parameter{hint}")
        problem = _refusal(declared[key], value)
        if problem is not None:
            raise ParameterError(f"parameter override {key}={value}: {problem}")
        values[key] = value
    return values


def _refusal(spec: Mapping[str, Any], value: str) -> str | None:
    """Why CloudFormation would refuse `value` for a parameter declared as `spec`, or None."""
    number: float | None = None
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return "must be a number (Type: Number)"
        if not math.isfinite(number):
            return "must be a number (Type: Number)"
    allowed = spec.get("AllowedValues")
    if allowed is not None:
        matches = (
            any(number == float(a) for a in allowed)
            if number is not None
            else value in (str(a) for a in allowed)
        )
        if not matches:
            return "must be one of " + ", ".join(str(a) for a in allowed)
    if number is not None and "MinValue" in spec and number < float(spec["MinValue"]):
        return f"must be at least {spec['MinValue']} (MinValue)"
    if number is not None and "MaxValue" in spec and number > float(spec["MaxValue"]):
        return f"must be at most {spec['MaxValue']} (MaxValue)"
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        return f"must be at least {spec['MinLength']} characters long (MinLength)"
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        return f"must be at most {spec['MaxLength']} characters long (MaxLength)"
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return f"must match {pattern} (AllowedPattern)"
    return None
