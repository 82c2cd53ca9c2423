"""Token introspection (RFC 7662) and revocation (RFC 7009) of Gatekey's access tokens.

Both endpoints take a client authenticated as at the token endpoint (client_secret_basic,
client_secret_post, or the service-token headers: gatekey.oauth's reader) and a `token` form
field. What the token itself is never makes an error: introspection answers
``{"active": false}`` for anything that is not a usable access token of this issuer (garbage,
another issuer's, expired, revoked, of a revoked, disabled or rotated service token), and
revocation answers 200 for a token it cannot use, as RFC 7009 §2.2 asks. Errors are for the
request (400 invalid_request), the caller's credentials (401 invalid_client), a caller
introspecting without the scope INTROSPECTION_SCOPE (403 unauthorized_client: RFC 7662 §4
asks that callers be authorized, not only authenticated), and a client revoking a valid
token of another client (400 invalid_grant: RFC 7009 §2.1 refuses it, and RFC 6749 §5.2's
invalid_grant names a grant "issued to another client"). Only a token that verifies is
checked for its client, so the answer tells nothing the public JWKS does not.

`token_type_hint` is read (once at most) and otherwise ignored: Gatekey issues access tokens
only, and RFC 7009 §2.1 and RFC 7662 §2.1 ask a server that does not find the token by the
hint to look for it among every type it has, which is the same search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gatekey.access_tokens import (
    MAX_TOKEN_LENGTH,
    access_token_valid_until,
    issued_at,
    verify_access_token,
)
from gatekey.errors import (
    AuthenticationError,
    ClientNotPermitted,
    ConcurrentModification,
    NotFound,
    TokenOfAnotherClient,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, ServiceToken
from gatekey.oauth import (
    FORM_CONTENT_TYPE,
    INTROSPECTION_SCOPE,
    check_source,
    read_client_authentication,
    single,
)
from gatekey.revocations import JTI, AccessTokenRevocations
from gatekey.signing import PublicKey
from gatekey.store import TokenStore

logger = logging.getLogger(__name__)

# The form of an introspection or revocation request: any token the authorizer would verify
# (MAX_TOKEN_LENGTH; Gatekey's own are at most 4.5 KB) and client_secret_post credentials and a
# hint beside it. Larger is refused as invalid_request, before anything is parsed or read.
MAX_TOKEN_FORM_BYTES: Final = MAX_TOKEN_LENGTH + 1024
# The claims an active token's introspection answer carries (RFC 7662 §2.2), when present.
INTROSPECTED_CLAIMS: Final = ("iss", "sub", "client_id", "aud", "exp", "iat", "nbf", "jti", "scope")
INACTIVE: Final[Mapping[str, Any]] = {"active": False}
# Of concurrent revocations of one client's tokens, each retries its conditional write after
# reading what the others wrote: a client would need this many racing writes to be told to retry.
REVOCATION_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a revocation wrote: the client's revoked access tokens as now stored, and whether
    the list was full, so the watermark moved (gatekey.revocations)."""

    revocations: AccessTokenRevocations
    watermark_moved: bool


def revoke_access_token(
    store: TokenStore,
    *,
    client_id: str,
    jti: str,
    exp: int,
    issued: int,
    now: int,
    actor: str,
    source_ip: str | None,
) -> Revoked | None:
    """Revoke the access token `jti` of `client_id` (expiring at `exp`, issued at `issued`),
    audited as done by `actor`; None when nothing needed writing (already revoked, or
    expired). A conditional write, retried on a concurrent revocation's win after a fresh read;
    ConcurrentModification if every attempt lost. NotFound for an unknown client."""
    if not JTI.fullmatch(jti):
        raise ValidationError("jti", "must be 1 to 64 URL-safe characters")
    for _ in range(REVOCATION_ATTEMPTS):
        token = store.get(client_id, consistent=True)
        current = token.revoked_access_tokens
        revoked = current.with_revoked(jti, exp, issued, now)
        if revoked is None:
            return None
        moved = revoked.at_watermark(current)
        details: dict[str, Any] = {"jti": jti, "exp": exp}
        if moved:
            details["access_tokens_not_before"] = revoked.not_before
        event = AuditEvent(
            client_id, AuditAction.ACCESS_TOKEN_REVOKED, actor, now, source_ip, details
        )
        if store.save_revocations(client_id, revoked, read_version=current.version, event=event):
            return Revoked(revoked, moved)
    raise ConcurrentModification(f"revoked access tokens of {client_id} kept changing; retry")


class TokenStatusEndpoints:
    """`introspect` (RFC 7662) and `revoke` (RFC 7009). Each authenticates its caller with one
    GetItem; introspection reads the token's service token (one consistent GetItem), revocation
    writes one conditional transaction. Verification keys are those the token endpoint signs
    with: the current ring's published keys."""

    def __init__(
        self,
        *,
        store: TokenStore,
        hasher: Hasher,
        public_keys: Callable[[int], Sequence[PublicKey]],
        audience: str,
        clock: Callable[[], int],
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._public_keys = public_keys
        self.audience = audience
        self._clock = clock

    def introspect(
        self,
        *,
        content_type: str | None,
        form: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        issuer: str,
        source_ip: str | None = None,
    ) -> tuple[Mapping[str, Any], str]:
        """The RFC 7662 answer, and the caller's client_id (for the log)."""
        now = self._clock()
        caller, value = self._request(content_type, form, headers, now, source_ip)
        if INTROSPECTION_SCOPE not in caller.scopes:
            raise ClientNotPermitted(
                f"introspection needs the scope {INTROSPECTION_SCOPE} on the caller's token"
            )
        try:
            claims = self._verified(value, issuer, now)
            token = self._store.get(str(claims["client_id"]), consistent=True)
            token.ensure_usable(now)
            access_token_valid_until(token, claims, now)
        except (AuthenticationError, ValidationError, NotFound):
            return INACTIVE, caller.client_id
        answer: dict[str, Any] = {"active": True}
        answer |= {c: claims[c] for c in INTROSPECTED_CLAIMS if c in claims}
        answer["token_type"] = "Bearer"
        if isinstance(claims.get("cnf"), dict):  # RFC 9449 §6.2: the key it is bound to
            answer |= {"token_type": "DPoP", "cnf": claims["cnf"]}
        return answer, caller.client_id

    def revoke(
        self,
        *,
        content_type: str | None,
        form: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        issuer: str,
        source_ip: str | None,
    ) -> tuple[Revoked | None, str]:
        """Revoke the caller's own access token; what was written (None: nothing, as for a
        token that is not a valid access token of this issuer), and the caller's client_id."""
        now = self._clock()
        caller, value = self._request(content_type, form, headers, now, source_ip)
        try:
            claims = self._verified(value, issuer, now)
        except (AuthenticationError, ValidationError):
            return None, caller.client_id  # RFC 7009 §2.2: an invalid token is no error
        if claims["client_id"] != caller.client_id:
            raise TokenOfAnotherClient("the token was not issued to this client")
        revoked = revoke_access_token(
            self._store,
            client_id=caller.client_id,
            jti=str(claims["jti"]),
            exp=int(claims["exp"]),
            issued=issued_at(claims),
            now=now,
            actor=caller.client_id,
            source_ip=source_ip,
        )
        return revoked, caller.client_id

    def _request(
        self,
        content_type: str | None,
        form: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        now: int,
        source_ip: str | None,
    ) -> tuple[ServiceToken, str]:
        """The authenticated caller and the `token` it sent. Bad requests before the caller
        is read, as at the token endpoint."""
        if (content_type or "").split(";")[0].strip().lower() != FORM_CONTENT_TYPE:
            raise ValidationError("Content-Type", f"must be {FORM_CONTENT_TYPE}")
        value = single(form, "token")
        single(form, "token_type_hint")  # any hint: see the module's docstring
        auth = read_client_authentication(headers, form)
        if value is None:
            raise ValidationError("token", "is required")
        caller = self._store.get(auth.client_id)
        caller.authenticate(auth.secret, self._hasher, now)
        check_source(caller, source_ip)
        return caller, value

    def _verified(self, value: str, issuer: str, now: int) -> dict[str, Any]:
        keys = {key.kid: key for key in self._public_keys(now)}
        return verify_access_token(value, keys, issuer=issuer, audience=self.audience, now=now)
