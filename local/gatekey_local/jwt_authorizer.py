"""HTTP APIs' built-in JWT authorizer, for the local gateway (API Gateway developer guide:
"Control access to HTTP APIs with JWT authorizers", "Troubleshooting issues with HTTP API JWT
authorizers").

The token is the identity source's value, alone or after `Bearer `. Its keys come from the
issuer's OIDC discovery document, `{issuer}/.well-known/openid-configuration`, whose
`jwks_uri` names the key set; keys are cached and the set is fetched again for an unknown
`kid`. Checked: the signature with the key the `kid` names, in the key's algorithm; `iss`
equal to the issuer; `aud` (or `client_id` when there is no `aud`) one of the audiences; `exp`
after now; `nbf` and `iat` not after now. Any failure is a 401 with a `www-authenticate`
header saying why. A route with authorization scopes needs one of them in `scope` (space
separated) or `scp`, else 403.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError

DISCOVERY: Final = "/.well-known/openid-configuration"
# "Currently, only RSA-based algorithms are supported" (API Gateway's HTTP API JWT authorizer
# documentation): an ES256 token, valid to Gatekey's own authorizer, is refused here as there.
ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512"})
KEYS_TTL: Final = 3600  # API Gateway caches an issuer's keys "for up to 1 hour"
REFETCH_INTERVAL: Final = 5  # at most one refetch per this many seconds for an unknown kid

Fetch = Callable[[str], dict[str, Any]]


class JwtRefused(Exception):
    """A refusal: `status` 401 (the token is not valid) or 403 (a scope is missing)."""

    def __init__(self, status: int, error: str, description: str, scope: str = "") -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope

    @property
    def www_authenticate(self) -> str:
        return (
            f'Bearer scope="{self.scope}" error="{self.error}" '
            f'error_description="{self.description}"'
        )


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the issuer's URL
        document = json.load(response)
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return document


def _invalid(description: str) -> JwtRefused:
    return JwtRefused(401, "invalid_token", description)


@dataclass
class IssuerKeys:
    """An issuer's published keys by kid, found through its OpenID Connect discovery document,
    the only one API Gateway reads."""

    issuer: str
    fetch: Fetch = fetch_json
    clock: Callable[[], float] = time.time
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _fetched_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= KEYS_TTL
            may_refetch = self._fetched_at is None or now - self._fetched_at >= REFETCH_INTERVAL
            if stale or (kid not in self._keys and may_refetch):
                self._keys = self._load()
                self._fetched_at = now
            found = self._keys.get(kid)
        if found is None:
            raise _invalid("the token's kid is not in the issuer's key set")
        return found

    def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            metadata = self.fetch(self.issuer.rstrip("/") + DISCOVERY)
        except (OSError, ValueError) as exc:
            raise _invalid(f"the issuer's discovery document cannot be read ({exc})") from exc
        try:
            document = self.fetch(str(metadata["jwks_uri"]))
        except (KeyError, OSError, ValueError) as exc:
            raise _invalid(f"the issuer's key set cannot be read ({exc})") from exc
        keys = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except PyJWKError:
                continue  # a key of a type this verifier cannot use is skipped
        return keys


@dataclass
class JwtAuthorizer:
    issuer: str
    audiences: Sequence[str]
    keys: IssuerKeys
    clock: Callable[[], float] = time.time

    def authorize(self, identity: str, scopes: Sequence[str]) -> dict[str, Any]:
        """The verified claims, or JwtRefused."""
        token = identity.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError as exc:
            raise _invalid("the token is not a JWT") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise _invalid(f"the token's algorithm {alg!r} is not supported")
        if not isinstance(kid, str):
            raise _invalid("the token has no kid")
        key = self.keys.key(kid)
        if key.algorithm_name != alg:
            raise _invalid("the token's algorithm is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except InvalidTokenError as exc:
            raise _invalid("the token's signature is not valid") from exc
        self._check_claims(claims)
        self._check_scopes(claims, scopes)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self.clock()
        if claims.get("iss") != self.issuer:
            raise _invalid("the token does not have a valid issuer")
        # `aud` is evaluated when present; `client_id` only when there is no `aud`.
        if "aud" in claims:
            aud = claims["aud"]
            offered = aud if isinstance(aud, list) else [aud]
        else:
            offered = [claims.get("client_id")]
        if not any(a in self.audiences for a in offered if isinstance(a, str)):
            raise _invalid("the token does not have a valid audience")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or now >= exp:
            raise _invalid("the token has expired")
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value > now:
                raise _invalid(f"the token's {name} is in the future")

    @staticmethod
    def _check_scopes(claims: dict[str, Any], scopes: Sequence[str]) -> None:
        if not scopes:
            return
        if "scope" in claims:
            held = str(claims["scope"]).split()
        else:
            scp = claims.get("scp", [])
            held = scp.split() if isinstance(scp, str) else [str(s) for s in scp]
        if not set(held) & set(scopes):
            raise JwtRefused(
                403,
                "insufficient_scope",
                "the token does not have any of the route's scopes",
                scope=" ".join(scopes),
            )


def jwt_context(claims: dict[str, Any]) -> dict[str, Any]:
    """requestContext.authorizer.jwt: the claims (each a string, as API Gateway passes them)
    and the scopes."""
    scope = claims.get("scope", claims.get("scp"))
    scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else None
    flat = {
        k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict) else str(v)
        for k, v in claims.items()
    }
    return {"claims": flat, "scopes": scopes}
