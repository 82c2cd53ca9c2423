"""API Gateway's side of the authorizer: the events it sends, its method ARNs and the answers
it takes (IAM policies, and HTTP APIs' simple responses). No decision is made here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from gatekey.errors import MissingCredentials, ValidationError
from gatekey.model import ALL_ROUTES

# Longer than the ARN of any URL API Gateway accepts; bounds the work of matching routes.
MAX_METHOD_ARN: Final = 16_384
_METHOD_ARN = re.compile(
    r"(?P<prefix>arn:aws[a-z-]*:execute-api:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9]+/[^/]+)"
    r"/(?P<method>[A-Z]+|\*)/(?P<path>.*)"
)


class EventShape(StrEnum):
    REST_REQUEST = "rest_request"
    REST_TOKEN = "rest_token"
    HTTP = "http"  # payload 2.0


@dataclass(frozen=True, slots=True)
class AuthRequest:
    shape: EventShape
    method_arn: str
    headers: Mapping[str, str]  # lower-case names
    # The event itself, for what only a bound token's check and a DPoP proof's read
    # (gatekey.bindings, gatekey.dpop.request_target): read then, not on every request.
    event: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def source_ip(self) -> str | None:
        """The client's address as API Gateway saw it; None in a TOKEN event, which has none."""
        return None if self.event is None else _source_ip(self.event, self.shape)

    @property
    def identity_source(self) -> tuple[str, ...] | None:
        """The values of the authorizer's identity sources, which API Gateway caches its answer
        under, when the event says (HTTP APIs: a list in 2.0, a comma-joined string in 1.0);
        None when it does not (REST REQUEST and TOKEN events)."""
        return None if self.event is None else _identity_source(self.event)

    @property
    def api_and_stage(self) -> tuple[str, str]:
        """The API id and stage the method ARN names (parse_event checked its shape)."""
        api, stage = self.method_arn.split(":", 5)[5].split("/", 2)[:2]
        return api, stage

    @property
    def source_ip_in_cache_key(self) -> bool | None:
        """Whether the source IP is among the identity sources' values: None when the event
        does not name them; True when it names none (nothing is cached then)."""
        if self.identity_source is None:
            return None
        return not self.identity_source or self.source_ip in self.identity_source


# The members, looked up once: an Enum class's attribute costs 40 to 120 ns a lookup (Python
# 3.13, 3.11), and parse_event runs on every authorization, cached or not.
_HTTP: Final = EventShape.HTTP
_REST_TOKEN: Final = EventShape.REST_TOKEN
_REST_REQUEST: Final = EventShape.REST_REQUEST


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_event(event: object) -> AuthRequest:
    """Normalise the three event shapes; anything else is MissingCredentials (a 401)."""
    if not isinstance(event, dict):
        raise MissingCredentials("not an authorizer event")
    if event.get("version") == "2.0":
        shape, arn = _HTTP, _text(event.get("routeArn"))
    elif event.get("type") == "TOKEN":
        shape, arn = _REST_TOKEN, _text(event.get("methodArn"))
    else:
        shape, arn = _REST_REQUEST, _text(event.get("methodArn"))
    if arn is None or len(arn) > MAX_METHOD_ARN or _METHOD_ARN.fullmatch(arn) is None:
        raise MissingCredentials("event has no method ARN")
    if shape is _REST_TOKEN:
        token = _text(event.get("authorizationToken"))
        return AuthRequest(shape, arn, {"authorization": token} if token is not None else {})
    return AuthRequest(shape, arn, _headers(event, shape), event)


def _source_ip(event: Mapping[str, Any], shape: EventShape) -> str | None:
    """`requestContext.http.sourceIp` (HTTP API payload 2.0) or `.identity.sourceIp` (REST,
    and HTTP API payload 1.0)."""
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return None
    holder = context.get("http" if shape is _HTTP else "identity")
    return _text(holder.get("sourceIp")) if isinstance(holder, dict) else None


def _identity_source(event: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The identity sources' values an HTTP API event carries; None if it carries none."""
    raw = event.get("identitySource")
    if isinstance(raw, list):
        return tuple(v for v in raw if type(v) is str)
    if isinstance(raw, str):  # payload 1.0: the values joined with commas
        return tuple(v.strip() for v in raw.split(",")) if raw else ()
    return None


def _headers(event: dict[Any, Any], shape: EventShape) -> dict[str, str]:
    """A REQUEST event's headers, names in lower case; strings only."""
    raw = event.get("headers")
    headers: dict[str, str] = {}
    if isinstance(raw, dict):
        headers = {n.lower(): v for n, v in raw.items() if type(n) is str and type(v) is str}
    if shape is _HTTP and isinstance(cookies := event.get("cookies"), list):
        # Payload 2.0 moves the Cookie header into a list of its own; REST keeps the header.
        headers["cookie"] = "; ".join(c for c in cookies if type(c) is str)
    return headers


# -- method ARNs -------------------------------------------------------------------------------


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character, the rest literal.

    Each `*`-free segment is found at its leftmost place after the one before, which is enough
    for `*` and never backtracks: the time is linear in the ARN per segment, whatever the
    pattern (a regex of `.*`s backtracks for seconds on a few stars and a long path)."""
    if "*" not in pattern:
        return len(arn) == len(pattern) and _segment_at(pattern, arn, 0)
    head, *middle, tail = pattern.split("*")
    end = len(arn) - len(tail)
    if end < len(head) or not _segment_at(head, arn, 0) or not _segment_at(tail, arn, end):
        return False
    position = len(head)
    for segment in middle:
        found = _find_segment(segment, arn, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def _segment_at(segment: str, text: str, at: int) -> bool:
    if "?" not in segment:
        return text.startswith(segment, at)
    window = text[at : at + len(segment)]
    return len(window) == len(segment) and all(
        p in ("?", c) for p, c in zip(segment, window, strict=True)
    )


def _find_segment(segment: str, text: str, start: int, end: int) -> int:
    """Where `segment` (whose `?` match any character) first lies within text[start:end]."""
    if "?" not in segment:
        return text.find(segment, start, end)
    # A fixed-length pattern: no quantifier, so no backtracking.
    regex = re.compile("".join("." if c == "?" else re.escape(c) for c in segment), re.DOTALL)
    found = regex.search(text, start, end)
    return -1 if found is None else found.start()


def route_resources(method_arn: str, routes: Iterable[str]) -> list[str]:
    """The execute-api ARNs of `routes` on the method ARN's API and stage."""
    match = _METHOD_ARN.fullmatch(method_arn)
    if match is None:
        raise ValidationError("methodArn", "is not an execute-api method ARN")
    prefix = match["prefix"]
    resources = []
    for route in routes:
        if route == ALL_ROUTES:
            resources.append(f"{prefix}/*/*")
        else:
            method, _, path = route.partition(" ")
            resources.append(f"{prefix}/{method}/{path.removeprefix('/')}")
    return resources


# -- answers -----------------------------------------------------------------------------------

Context = Mapping[str, str | int | bool]


def _policy(effect: str, resources: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources}],
    }


def allow_policy(
    method_arn: str,
    principal_id: str,
    routes: Iterable[str],
    context: Context,
    usage_identifier_key: str | None = None,
) -> dict[str, Any]:
    """An Allow for every route given, on the method ARN's API and stage; with the API key a
    REST API whose ApiKeySourceType is AUTHORIZER meters the request by (its usage plan)."""
    answer = {
        "principalId": principal_id,
        "policyDocument": _policy("Allow", route_resources(method_arn, routes)),
        "context": dict(context),
    }
    if usage_identifier_key is not None:
        answer["usageIdentifierKey"] = usage_identifier_key
    return answer


def deny_policy(method_arn: str) -> dict[str, Any]:
    """A Deny of every route of the method ARN's API and stage."""
    return {
        "principalId": "anonymous",
        "policyDocument": _policy("Deny", route_resources(method_arn, [ALL_ROUTES])),
    }


def simple_response(method_arn: str, routes: Iterable[str], context: Context) -> dict[str, Any]:
    """An HTTP API simple response: authorized if one of `routes` is this method ARN's. It is
    cached as is, so it must be right for this route only: configure the route key as an
    identity source when caching (README, "HTTP APIs")."""
    if any(arn_matches(r, method_arn) for r in route_resources(method_arn, routes)):
        return {"isAuthorized": True, "context": dict(context)}
    return simple_denial()


def simple_denial() -> dict[str, Any]:
    return {"isAuthorized": False}
