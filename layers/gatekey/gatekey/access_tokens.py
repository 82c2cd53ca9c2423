"""Access tokens: JWTs per RFC 9068, signed through a `Signer`, verified with published keys.

The JWS is assembled here rather than by PyJWT so that the signature can come from KMS (one
`Sign` call) without the private key ever being in this process.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import jwt

from gatekey.errors import InvalidCredentials, InvalidScope, TokenExpired
from gatekey.model import ServiceToken
from gatekey.signing import PublicKey, Signer, b64url

TOKEN_TYPE: Final = "at+jwt"
REQUIRED_CLAIMS: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id")
DEFAULT_LEEWAY: Final = 30


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str = field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]


def granted_scopes(token: ServiceToken, requested: str | None) -> tuple[str, ...]:
    """RFC 6749 §3.3: no `scope` grants all of the token's scopes; otherwise a subset only."""
    if requested is None or not requested.strip(" "):
        return token.scopes
    wanted = tuple(s for s in dict.fromkeys(requested.split(" ")) if s)
    if not set(wanted) <= set(token.scopes):
        raise InvalidScope("scope", "asks for a scope this client does not have")
    return wanted


def issue_access_token(
    token: ServiceToken,
    signer: Signer,
    *,
    issuer: str,
    audience: str,
    lifetime: int,
    scopes: tuple[str, ...],
    now: int,
) -> IssuedToken:
    """Sign an access token for `token`, expiring after `lifetime` or with the token, if sooner."""
    expires_at = now + lifetime
    if token.expires_at is not None:
        expires_at = min(expires_at, token.expires_at)
    if expires_at <= now:
        raise TokenExpired(f"service token {token.client_id} has expired")
    public = signer.public_key
    header = {"alg": public.alg.value, "kid": public.kid, "typ": TOKEN_TYPE}
    claims = {
        "iss": issuer,
        "sub": token.client_id,
        "aud": audience,
        "exp": expires_at,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(16),
        "client_id": token.client_id,
        "scope": " ".join(scopes),
        # Cloudflare Access puts the service token's Client ID here; origins may read it.
        "common_name": token.client_id,
    }
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = signer.sign(signing_input.encode("ascii"))
    return IssuedToken(f"{signing_input}.{b64url(signature)}", expires_at - now, scopes)


def _segment(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class KeyLookup(Protocol):
    """Verification keys by kid: a plain mapping, or a cache that fetches on a miss."""

    def get(self, kid: str, /) -> PublicKey | None: ...


def verify_access_token(
    token: str,
    keys: KeyLookup,
    *,
    issuer: str,
    audience: str,
    now: int,
    leeway: int = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify signature (algorithm pinned by the key), `typ`, iss, aud and times; return claims.

    Times are checked against `now` rather than the wall clock, so callers and tests agree on it.
    Every failure is InvalidCredentials (TokenExpired for exp); the reason never echoes the token.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidCredentials("access token is malformed") from exc
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidCredentials("access token has the wrong 'typ'")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise InvalidCredentials("access token is signed by an unknown key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.alg.value],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise InvalidCredentials(f"access token is invalid: {type(exc).__name__}") from exc
    if not all(isinstance(claims[c], int) for c in ("exp", "nbf", "iat")):
        raise InvalidCredentials("access token times must be integers")
    if now >= claims["exp"] + leeway:
        raise TokenExpired("access token has expired")
    if now + leeway < claims["nbf"] or now + leeway < claims["iat"]:
        raise InvalidCredentials("access token is not valid yet")
    return claims
