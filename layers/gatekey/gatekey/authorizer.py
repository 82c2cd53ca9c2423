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

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
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
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.keyring import PublicKeyCache
from gatekey.model import ALL_ROUTES, ServiceToken, rfc3339
from gatekey.store import TokenStore

logger = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

MAX_HEADER_VALUE: Final = 8192  # API Gateway's own limit on a header is 10 KB
_CREDENTIAL_HEADERS: Final = (
    "authorization",
    "gatekey-client-id",
    "gatekey-client-secret",
    "cf-access-client-id",
    "cf-access-client-secret",
)
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
        headers = {n.lower(): v for n, v in raw.items() if type(n) is str and type(v) is str}
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
    """A bounded LRU map whose entries expire at a time given per entry (values are never None:
    a cached "nothing" is stored as a value that says so)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, now: float) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry[1]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

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
    # An allow may be reused until this time: the first of the status cache entry's expiry,
    # the JWT's exp, the token's expiry and the end of a previous secret's grace.
    valid_until: float = 0.0
    client_id: str | None = None  # of a denial too, when the request named a well-formed one


@dataclass(frozen=True, slots=True)
class Outcome:
    """An answer for API Gateway and what the handler logs and counts about it."""

    response: dict[str, Any]
    allowed: bool
    reason: str
    auth_method: str | None
    client_id: str | None
    unauthorized: bool = False  # a denial that strict mode answers with 401


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
        self._status: TtlCache[str, tuple[ServiceToken | None, float]] = TtlCache(
            settings.cache_size
        )
        self._jwts: TtlCache[str, dict[str, Any]] = TtlCache(settings.cache_size)
        self._last_seen: TtlCache[str, bool] = TtlCache(settings.cache_size)
        self._answers: TtlCache[bytes, Outcome] = TtlCache(settings.cache_size)

    def authorize(self, event: object) -> Outcome:
        """Answer an authorizer event. A repeated allow is answered from memory until the first
        of its inputs' expiries (`Decision.valid_until`), so revocation still lands within the
        status cache TTL. MissingCredentials (a 401) and dependency errors propagate."""
        request = parse_event(event)
        key = self._answer_key(request)
        now = self._clock()
        outcome = self._answers.get(key, now)
        if outcome is not None:
            return outcome
        decision = self.decide(request)
        if not decision.allowed and self.settings.strict:
            return Outcome(
                {}, False, decision.reason, decision.auth_method, decision.client_id, True
            )
        outcome = Outcome(
            self.respond(request, decision),
            decision.allowed,
            decision.reason,
            decision.auth_method,
            decision.client_id,
        )
        if decision.allowed:
            self._answers.put(key, outcome, decision.valid_until)
        return outcome

    def _answer_key(self, request: AuthRequest) -> bytes:
        """A digest of everything an answer depends on: the credentials as sent (never kept in
        plaintext), and the API and stage, or the route when the answer is per route."""
        simple = request.shape == "http" and self.settings.http_api_simple_responses
        scope = request.method_arn if simple else request.method_arn.rsplit("/", 2)[0]
        material = [request.shape, scope]
        material += [request.headers.get(name, "") for name in _CREDENTIAL_HEADERS]
        material.append(request.headers.get(self.settings.access_json_header, ""))
        return hashlib.sha256("\x00".join(material).encode("utf-8", "surrogatepass")).digest()

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
            return self._authenticate(presented, now)
        except (AuthenticationError, ValidationError, NotFound) as exc:
            reason = "unknown_client" if isinstance(exc, NotFound) else exc.reason
            return Decision(False, reason, presented.method, client_id=presented.client_id)

    def _authenticate(self, presented: Presented, now: int) -> Decision:
        if presented.jwt is not None:
            claims = self._verify_jwt(presented.jwt, now)
            token, status_until = self._active_token(str(claims["client_id"]), now)
            scopes = tuple(str(claims.get("scope", "")).split())
            valid_until = min(status_until, claims["exp"])
        elif presented.client_id is not None and presented.secret is not None:
            token, status_until = self._active_token(presented.client_id, now)
            secret_until = token.authenticate(presented.secret, self._hasher, now)
            scopes = token.scopes
            valid_until = status_until if secret_until is None else min(status_until, secret_until)
        else:
            raise InvalidCredentials("incomplete credentials")
        self._note_last_seen(token.client_id, now)
        return Decision(
            True, "allowed", presented.method, token, scopes, valid_until, token.client_id
        )

    def _verify_jwt(self, jwt: str, now: int) -> dict[str, Any]:
        claims = self._jwts.get(jwt, now)
        if claims is not None:
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

    def _active_token(self, client_id: str, now: int) -> tuple[ServiceToken, float]:
        """The service token by id (status cache first), checked for revocation, enabled and
        expiry, and until when that reading may be used. A JWT is worthless once its service
        token is revoked or disabled."""
        entry = self._status.get(client_id, now)
        if entry is None:
            token: ServiceToken | None
            try:
                token = self._store.get(client_id)
            except NotFound:
                token = None  # remembered too, so garbage ids cost one read per TTL
            entry = (token, now + self.settings.status_cache_ttl)
            self._status.put(client_id, entry, entry[1])
        token, status_until = entry
        if token is None:
            raise NotFound(f"service token {client_id} does not exist")
        token.ensure_usable(now)
        if token.expires_at is not None:
            status_until = min(status_until, token.expires_at)
        return token, status_until

    def _note_last_seen(self, client_id: str, now: int) -> None:
        interval = self.settings.last_seen_interval
        if self._last_seen.get(client_id, now):
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
        """The API Gateway answer for a decision: the one place decisions become responses
        (a strict-mode denial is a 401: `authorize` says so before asking for a response)."""
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
        expires = rfc3339(token.expires_at) or "never"
        return {
            "client_id": token.client_id,
            "name": token.name,
            "scopes": " ".join(decision.scopes),
            "auth_method": decision.auth_method or "",
            "expires_at": expires,
        }
