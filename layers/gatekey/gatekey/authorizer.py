"""The Lambda authorizer's core: read credentials, decide, and answer API Gateway.

One code path serves REST REQUEST and TOKEN authorizer events and HTTP API payload 2.0 events.

Decisions, each answered in exactly one place (`Authorizer.respond`):

- no credentials in any accepted form: ``Unauthorized`` (API Gateway answers 401);
- bad credentials (malformed, wrong, unknown, revoked, disabled, expired): a Deny (403), or
  ``Unauthorized`` in strict mode;
- valid credentials: an Allow for every route the token may reach, never just this method ARN,
  so API Gateway's cached answer is right for the next route too, and its own evaluation of the
  policy answers 403 for a route the token may not reach;
- a failing dependency (DynamoDB, Secrets Manager, KMS): the error propagates and API Gateway
  answers 500. Nothing here turns an error into an Allow.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Generic, TypeVar

from gatekey.access_tokens import verify_access_token
from gatekey.credentials import ClientSecret, decode_basic, parse_client_id
from gatekey.errors import (
    AuthenticationError,
    GatekeyError,
    InvalidCredentials,
    MissingCredentials,
    NotFound,
    TokenDisabled,
    TokenExpired,
    TokenRevoked,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.keyring import PublicKeyCache
from gatekey.model import ALL_ROUTES, ServiceToken, TokenStatus
from gatekey.store import TokenStore

logger = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

MAX_HEADER_VALUE: Final = 8192  # API Gateway's own limit on a header is 10 KB
_METHOD_ARN = re.compile(
    r"(?P<prefix>arn:aws[a-z-]*:execute-api:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9]+/[^/]+)"
    r"/(?P<method>[A-Z]+|\*)/(?P<path>.*)"
)


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
    accepted: frozenset[str]
    access_json_header: str
    strict: bool
    issuer: str
    audience: str
    status_cache_ttl: int
    last_seen_interval: int
    http_api_simple_responses: bool
    cache_size: int = 10_000


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRequest:
    shape: str  # "rest_request" | "rest_token" | "http"
    method_arn: str
    headers: Mapping[str, str]  # lower-case names

    @property
    def route(self) -> tuple[str, str] | None:
        """(METHOD, /path) of this request, from its method ARN."""
        match = _METHOD_ARN.fullmatch(self.method_arn)
        return None if match is None else (match["method"], "/" + match["path"])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_event(event: object) -> AuthRequest:
    """Normalise the three event shapes; anything else is MissingCredentials (a 401)."""
    if not isinstance(event, dict):
        raise MissingCredentials("not an authorizer event")
    if event.get("version") == "2.0":
        shape, arn = "http", _text(event.get("routeArn"))
    elif event.get("type") == "TOKEN":
        shape, arn = "rest_token", _text(event.get("methodArn"))
    else:
        shape, arn = "rest_request", _text(event.get("methodArn"))
    if arn is None or _METHOD_ARN.fullmatch(arn) is None:
        raise MissingCredentials("event has no method ARN")
    raw = event.get("headers")
    headers: dict[str, str] = {}
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(name, str) and isinstance(value, str):
                headers[name.lower()] = value
    if shape == "rest_token":
        token = _text(event.get("authorizationToken"))
        headers = {"authorization": token} if token is not None else {}
    return AuthRequest(shape, arn, headers)


# -- credentials ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presented:
    method: str  # one of config.CREDENTIAL_FORMS
    client_id: str | None = None
    secret: ClientSecret | None = field(default=None, repr=False)
    jwt: str | None = field(default=None, repr=False)


def _pair(method: str, client_id: object, secret: object) -> Presented:
    return Presented(method, parse_client_id(client_id), ClientSecret.parse(secret))


def _basic(value: str) -> Presented:
    return _pair("basic", *decode_basic(value))


def _access_json(value: str) -> Presented:
    try:
        document = json.loads(value)
    except ValueError as exc:
        raise InvalidCredentials("the Access JSON header is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidCredentials("the Access JSON header is not an object")
    return _pair(
        "access_json", document.get("cf-access-client-id"), document.get("cf-access-client-secret")
    )


def read_credentials(headers: Mapping[str, str], settings: AuthorizerSettings) -> Presented:
    """The first accepted credential form present, by a fixed precedence. Forms switched off
    are ignored; none at all is MissingCredentials; a malformed one fails without any I/O."""
    for value in headers.values():
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidCredentials("a header is longer than any credential")
    accepted = settings.accepted
    pairs = (
        ("gatekey_headers", "gatekey-client-id", "gatekey-client-secret"),
        ("access_headers", "cf-access-client-id", "cf-access-client-secret"),
    )
    for method, id_header, secret_header in pairs:
        if method in accepted and (id_header in headers or secret_header in headers):
            return _pair(method, headers.get(id_header), headers.get(secret_header))
    json_header = headers.get(settings.access_json_header, "").strip()
    if "access_json" in accepted and json_header.startswith("{"):
        return _access_json(json_header)
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and "bearer" in accepted:
        return Presented("bearer", jwt=value.strip())
    if scheme.lower() == "basic" and "basic" in accepted:
        return _basic(value.strip())
    raise MissingCredentials("no credentials in an accepted form")


# -- routes and policies -----------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """IAM's wildcards (`*` any run of characters, `?` one character), everything else literal."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def arn_matches(pattern: str, arn: str) -> bool:
    return _glob(pattern).fullmatch(arn) is not None


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


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """Evaluate an authorizer's policy for one method ARN as API Gateway does: an explicit
    Deny wins, then an Allow, else no (used by tests and by the local gateway)."""
    allowed = False
    for statement in policy.get("Statement", []):
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(arn_matches(r, method_arn) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _policy(effect: str, resources: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources}],
    }


# -- caches --------------------------------------------------------------------------------------


class TtlCache(Generic[K, V]):
    """A bounded LRU map whose entries expire at a time given per entry."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, now: float) -> tuple[bool, V | None]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if now >= entry[1]:
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, entry[0]

    def put(self, key: K, value: V, expires_at: float) -> None:
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    auth_method: str | None = None
    token: ServiceToken | None = None
    scopes: tuple[str, ...] = ()


class Authorizer:
    def __init__(
        self,
        *,
        store: TokenStore,
        hasher: Hasher,
        public_keys: PublicKeyCache,
        settings: AuthorizerSettings,
        clock: Callable[[], float],
        background: Executor | None = None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._public_keys = public_keys
        self.settings = settings
        self._clock = clock
        self._background = background
        self._status: TtlCache[str, ServiceToken | None] = TtlCache(settings.cache_size)
        self._jwts: TtlCache[str, dict[str, Any]] = TtlCache(settings.cache_size)
        self._last_seen: TtlCache[str, bool] = TtlCache(settings.cache_size)

    def decide(self, request: AuthRequest) -> Decision:
        """Allow or deny. MissingCredentials (a 401) and dependency errors propagate."""
        now = int(self._clock())
        try:
            presented = read_credentials(request.headers, self.settings)
        except MissingCredentials:
            raise
        except (AuthenticationError, ValidationError) as exc:  # malformed: no I/O was done
            return Decision(False, exc.reason)
        try:
            token, scopes = self._authenticate(presented, now)
        except (AuthenticationError, ValidationError, NotFound) as exc:
            reason = "unknown_client" if isinstance(exc, NotFound) else exc.reason
            return Decision(False, reason, presented.method)
        self._note_last_seen(token.client_id, now)
        return Decision(True, "allowed", presented.method, token, scopes)

    def _authenticate(self, presented: Presented, now: int) -> tuple[ServiceToken, tuple[str, ...]]:
        if presented.jwt is not None:
            claims = self._verify_jwt(presented.jwt, now)
            token = self._active_token(str(claims["client_id"]), now)
            return token, tuple(str(claims.get("scope", "")).split())
        if presented.client_id is None or presented.secret is None:
            raise InvalidCredentials("incomplete credentials")
        token = self._active_token(presented.client_id, now)
        token.authenticate(presented.secret, self._hasher, now)
        return token, token.scopes

    def _verify_jwt(self, jwt: str, now: int) -> dict[str, Any]:
        hit, claims = self._jwts.get(jwt, now)
        if hit and claims is not None:
            return claims
        claims = verify_access_token(
            jwt,
            self._public_keys,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            now=now,
        )
        # Never past exp: a cached token stops at the second the token itself stops.
        self._jwts.put(jwt, claims, float(claims["exp"]))
        return claims

    def _active_token(self, client_id: str, now: int) -> ServiceToken:
        """The service token by id (status cache first), checked for revocation, enabled and
        expiry. A JWT is worthless once its service token is revoked or disabled."""
        hit, token = self._status.get(client_id, now)
        if not hit:
            try:
                token = self._store.get(client_id)
            except NotFound:
                token = None  # remembered too, so garbage ids cost one read per TTL
            self._status.put(client_id, token, now + self.settings.status_cache_ttl)
        if token is None:
            raise NotFound(f"service token {client_id} does not exist")
        if token.status is TokenStatus.REVOKED:
            raise TokenRevoked(f"service token {client_id} is revoked")
        if not token.enabled:
            raise TokenDisabled(f"service token {client_id} is disabled")
        if token.is_expired(now):
            raise TokenExpired(f"service token {client_id} has expired")
        return token

    def _note_last_seen(self, client_id: str, now: int) -> None:
        interval = self.settings.last_seen_interval
        hit, _ = self._last_seen.get(client_id, now)
        if hit:
            return
        self._last_seen.put(client_id, True, now + interval)
        if self._background is None:
            self._record_last_seen(client_id, now, interval)
        else:
            self._background.submit(self._record_last_seen, client_id, now, interval)

    def _record_last_seen(self, client_id: str, now: int, interval: int) -> None:
        # Bookkeeping, not a decision: a failed write is logged and changes no answer.
        try:
            self._store.record_last_seen(client_id, now, interval)
        except GatekeyError as exc:
            logger.warning(
                "last_seen_at not written", extra={"client_id": client_id, "reason": exc.reason}
            )

    def respond(self, request: AuthRequest, decision: Decision) -> dict[str, Any]:
        """The API Gateway answer for a decision: the one place decisions become responses."""
        if not decision.allowed and self.settings.strict:
            raise MissingCredentials("denied in strict mode")
        if request.shape == "http" and self.settings.http_api_simple_responses:
            return self._simple(request, decision)
        if decision.allowed and decision.token is not None:
            resources = route_resources(request.method_arn, decision.token.routes)
            return {
                "principalId": decision.token.client_id,
                "policyDocument": _policy("Allow", resources),
                "context": self._context(decision),
            }
        return {
            "principalId": "anonymous",
            "policyDocument": _policy("Deny", route_resources(request.method_arn, [ALL_ROUTES])),
        }

    def _simple(self, request: AuthRequest, decision: Decision) -> dict[str, Any]:
        # A simple response is cached as is, so it must be right for this route only: configure
        # the route key as an identity source when caching (README, "HTTP APIs").
        if decision.allowed and decision.token is not None:
            route = route_resources(request.method_arn, decision.token.routes)
            if any(arn_matches(r, request.method_arn) for r in route):
                return {"isAuthorized": True, "context": self._context(decision)}
        return {"isAuthorized": False}

    @staticmethod
    def _context(decision: Decision) -> dict[str, str | int | bool]:
        token = decision.token
        assert token is not None  # noqa: S101 - only allowed decisions have context
        expires = (
            "never"
            if token.expires_at is None
            else datetime.fromtimestamp(token.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        return {
            "client_id": token.client_id,
            "name": token.name,
            "scopes": " ".join(decision.scopes),
            "auth_method": decision.auth_method or "",
            "expires_at": expires,
        }
