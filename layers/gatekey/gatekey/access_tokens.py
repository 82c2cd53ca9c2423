"""Access tokens: JWTs per RFC 9068, signed through a `Signer`, verified with published keys.

The JWS is assembled here rather than by PyJWT so that the signature can come from KMS (one
`Sign` call) without the private key ever being in this process.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gatekey.bindings import audience_target
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME
from gatekey.errors import (
    AccessTokenRevoked,
    BadSignature,
    InvalidCredentials,
    InvalidScope,
    NotYetValid,
    SecretRotated,
    TokenExpired,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from gatekey.model import SecretMatch, ServiceToken
from gatekey.signing import KMS_RAW_LIMIT, PublicKey, Signer, b64url

TOKEN_TYPE: Final = "at+jwt"
# The version of the Client Secret that obtained the token: a rotation ends the access tokens
# of the secrets it replaced (ServiceToken.secret_valid_until).
SECRET_VERSION_CLAIM: Final = "client_secret_version"
REQUIRED_CLAIMS: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id")
DEFAULT_LEEWAY: Final = 30
# `iat` and `nbf` are set this long before the token is issued. Verifiers that allow no clock
# skew refuse a token whose nbf, or iat, is in their future: jose (nbf always; iat with
# maxTokenAge), PyJWT (both), API Gateway HTTP API's JWT authorizer ("nbf" and "iat" must be
# before the current time), so a verifier whose clock is a second behind ours would refuse a
# token it is handed at once. 30 s covers any clock kept by NTP, as DEFAULT_LEEWAY does on our
# side; it gives nothing away: `exp` is still the issue time plus the lifetime, and a token
# cannot be used before it exists. (Microsoft Entra ID backdates both by 5 minutes.) The
# price: a verifier with maxTokenAge equal to the lifetime sees the token 30 s older.
BACKDATE: Final = 30
MAX_TOKEN_LENGTH: Final = 8192
# Three base64url (so ASCII) segments, matched in one pass: this runs on every new token.
_COMPACT_JWS: Final = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str = field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]
    token_type: str = "Bearer"  # "DPoP" when bound to a key (RFC 9449 §5)


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
    secret: SecretMatch | None = None,
    jkt: str | None = None,
) -> IssuedToken:
    """Sign an access token for `token`, obtained with `secret` (by default its current one),
    expiring after `lifetime`, or when that secret stops being accepted, if sooner."""
    if secret is None:
        secret = SecretMatch(token.client_secret_version, token.expires_at)
    expires_at = now + lifetime
    if secret.valid_until is not None:
        expires_at = min(expires_at, secret.valid_until)
    if expires_at <= now:
        raise TokenExpired(f"service token {token.client_id} has expired")
    public = signer.public_key
    header = {"alg": public.alg.value, "kid": public.kid, "typ": TOKEN_TYPE}
    claims = {
        "iss": issuer,
        "sub": token.client_id,
        "aud": audience,
        "exp": expires_at,
        "iat": now - BACKDATE,
        "nbf": now - BACKDATE,
        "jti": secrets.token_urlsafe(16),
        "client_id": token.client_id,
        "scope": " ".join(scopes),
        SECRET_VERSION_CLAIM: secret.version,
        # Cloudflare Access puts the service token's Client ID here; origins may read it.
        "common_name": token.client_id,
    }
    if jkt is not None:  # RFC 9449 §6.1: bound to the key of this thumbprint
        claims["cnf"] = {"jkt": jkt}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    if len(signing_input) > KMS_RAW_LIMIT:  # only a token from before MAX_SCOPES_LENGTH
        raise InvalidScope("scope", "asks for more scopes than fit in an access token")
    signature = signer.sign(signing_input.encode("ascii"))
    return IssuedToken(
        f"{signing_input}.{b64url(signature)}",
        expires_at - now,
        scopes,
        "Bearer" if jkt is None else "DPoP",
    )


def _segment(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class KeyLookup(Protocol):
    """Verification keys by kid: a plain mapping, or a cache that fetches on a miss."""

    def get(self, kid: str, /) -> PublicKey | None: ...


def _b64decode(segment: str) -> bytes:
    """A segment already matched by _COMPACT_JWS (binascii.Error, a ValueError, if its length
    is impossible). binascii directly: base64.urlsafe_b64decode's wrappers cost more than the
    decoding."""
    standard = segment.replace("-", "+").replace("_", "/")
    return binascii.a2b_base64(standard + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any]:
    try:  # UTF-8, as RFC 7519 requires (json.loads of bytes would also guess UTF-16 and 32)
        value = json.loads(_b64decode(segment).decode("utf-8"))
    except RecursionError as exc:  # deep nesting, before Python 3.13's JSON decoder
        raise ValueError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def verify_access_token(
    token: str,
    keys: KeyLookup,
    *,
    issuer: str,
    audience: str,
    now: int,
    leeway: int = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify an access token Gatekey issued; return its claims.

    The algorithm is pinned by the key the ``kid`` names (never taken from the header), the
    header's jku/x5u/jwk are ignored, ``crit`` is refused, and typ, iss, aud, exp, nbf and iat
    are all required and checked against `now`. Written on `cryptography` directly rather than
    through PyJWT because it runs on every request (`make bench`). Every failure is
    InvalidCredentials, of a finer reason where one says why (WrongIssuer, WrongAudience,
    UnknownKey, BadSignature, NotYetValid), or TokenExpired for exp; no message echoes the
    token or a claim.
    """
    # Every segment base64url (so ASCII) before anything reads one: the signing input is
    # encoded as ASCII below, and a client's odd bytes must be a refusal, not an error.
    if (
        not isinstance(token, str)
        or len(token) > MAX_TOKEN_LENGTH
        or (compact := _COMPACT_JWS.fullmatch(token)) is None
    ):
        raise InvalidCredentials("access token is malformed")
    head, body, signature = compact.groups()
    try:
        header = _json_object(head)
        raw_signature = _b64decode(signature)
    except ValueError as exc:  # also UnicodeDecodeError and binascii.Error
        raise InvalidCredentials("access token is malformed") from exc
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidCredentials("access token has the wrong 'typ'")
    if "crit" in header:
        raise InvalidCredentials("access token has critical header extensions")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise UnknownKey("access token is signed by an unknown key")
    if header.get("alg") != key.alg.value:
        raise InvalidCredentials("access token's alg is not its key's")
    if not key.verify(raw_signature, f"{head}.{body}".encode("ascii")):
        raise BadSignature("access token signature is invalid")
    try:
        claims = _json_object(body)
    except ValueError as exc:
        raise InvalidCredentials("access token claims are malformed") from exc
    _check_claims(claims, issuer=issuer, audience=audience, now=now, leeway=leeway)
    return claims


def issued_at(claims: Mapping[str, Any]) -> int:
    """When a verified access token was issued: its `iat` is BACKDATE earlier. (Tokens from
    before BACKDATE, all long expired, would read 30 s late.)"""
    return int(claims["iat"]) + BACKDATE


def access_token_valid_until(
    token: ServiceToken, claims: Mapping[str, Any], now: int
) -> int | None:
    """Until when the service token `token` accepts its access token with these (verified)
    claims (None: as long as the token), or raise: AccessTokenRevoked if it was revoked
    (gatekey.revocations), SecretRotated if it was minted with a secret that a rotation
    replaced (or whose grace ended). A token from before versions were stamped is accepted
    only by a service token never rotated. What the token itself needs (active, enabled,
    unexpired) is `ServiceToken.ensure_usable`'s."""
    if token.revoked_access_tokens.revoked(claims["jti"], issued_at(claims)):
        raise AccessTokenRevoked(f"an access token of {token.client_id} was revoked")
    version = claims.get(SECRET_VERSION_CLAIM)
    if version is None:
        if token.client_secret_version == 1:
            return token.expires_at
        raise SecretRotated(f"access token predates the rotation of {token.client_id}")
    return token.secret_valid_until(int(version), now)


def _check_claims(
    claims: Mapping[str, Any], *, issuer: str, audience: str, now: int, leeway: int
) -> None:
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            raise InvalidCredentials(f"access token lacks the '{name}' claim")
    times = [claims[c] for c in ("exp", "nbf", "iat")]
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
        raise InvalidCredentials("access token times must be integers")
    version = claims.get(SECRET_VERSION_CLAIM)
    if version is not None and (type(version) is not int or version < 1):
        raise InvalidCredentials(f"access token's {SECRET_VERSION_CLAIM} must be a version")
    if not isinstance(claims["client_id"], str) or claims["sub"] != claims["client_id"]:
        raise InvalidCredentials("access token's client_id must be its sub")
    if claims["iss"] != issuer:
        raise WrongIssuer("access token has the wrong issuer")
    aud = claims["aud"]
    # The stack's audience, or one API's (gatekey.bindings), which whoever checks where the
    # token is used (the authorizer) must compare with that API.
    if (
        aud != audience
        and not (isinstance(aud, list) and audience in aud)
        and audience_target(aud) is None
    ):
        raise WrongAudience("access token has the wrong audience")
    exp, nbf, iat = times
    # None is issued longer (iat is BACKDATE before the issue time; before this release, it was
    # the issue time): a longer one is forged.
    if exp - iat > MAX_ACCESS_TOKEN_LIFETIME + BACKDATE:
        raise InvalidCredentials("access token lives longer than any Gatekey issues")
    if now >= exp + leeway:
        raise TokenExpired("access token has expired")
    if now + leeway < nbf or now + leeway < iat:
        raise NotYetValid("access token is not valid yet")
