"""The OAuth 2.0 token endpoint (client_credentials, RFC 6749 §4.4) and its metadata (RFC 8414).

`TokenEndpoint.exchange` takes what the handler parsed from the request and returns an access
token, or raises a GatekeyError; `oauth_error` maps every error to the RFC 6749 §5.2 answer in
this one place. The answer never says which check failed: a wrong secret, an unknown, revoked,
disabled or expired client are all ``invalid_client``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs

from gatekey.access_tokens import IssuedToken, granted_scopes, issue_access_token
from gatekey.bindings import requested_target, source_allowed
from gatekey.credentials import (
    AUTHORIZATION_SCHEMES,
    HEADER_PAIRS,
    ClientSecret,
    CredentialForm,
    decode_basic,
    parse_credentials,
)
from gatekey.dpop import ALGORITHMS as DPOP_ALGORITHMS
from gatekey.dpop import (
    MemoryReplayGuard,
    ProofVerifier,
    ReplayGuard,
    VerifiedProof,
    check_replay,
    normalise_htu,
)
from gatekey.errors import (
    AuthenticationError,
    ClientNotPermitted,
    ConcurrentModification,
    GatekeyError,
    InvalidDPoPProof,
    InvalidScope,
    InvalidTarget,
    MalformedCredential,
    NotFound,
    SourceIpRefused,
    TokenOfAnotherClient,
    UnsupportedGrantType,
    UseDPoPNonce,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.keyring import SigningKeys
from gatekey.model import ServiceToken
from gatekey.store import TokenStore

GRANT_TYPE: Final = "client_credentials"
# The endpoint is unauthenticated, so what it does before authenticating must not grow with
# the request. The largest legitimate form asks for all of a token's scopes: MAX_SCOPES_LENGTH
# (1,024) characters, each percent-encoded in 3 bytes at worst, plus grant_type, client_id
# and client_secret (about 150 bytes): 3.2 KB.
MAX_FORM_BYTES: Final = 4096
MAX_FORM_FIELDS: Final = 16
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientAuthentication:
    client_id: str
    secret: ClientSecret = field(repr=False)
    method: str


def parse_form(
    body: str | None, *, base64_encoded: bool = False, max_bytes: int = MAX_FORM_BYTES
) -> dict[str, list[str]]:
    """The request's form (application/x-www-form-urlencoded), refused as invalid_request
    before any parsing when it is larger (`max_bytes`) or has more fields than a request of
    the endpoint can have."""
    raw = body or ""
    # Base64 takes 4 characters for every 3 bytes.
    if len(raw) > (max_bytes * 4 // 3 + 4 if base64_encoded else max_bytes):
        raise ValidationError("body", f"must be at most {max_bytes} bytes")
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8") if base64_encoded else raw
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise ValidationError("body", "must be UTF-8") from exc
    except ValueError as exc:  # binascii.Error, or over max_num_fields
        raise ValidationError(
            "body", f"must be a form of at most {MAX_FORM_FIELDS} fields"
        ) from exc


def single(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:  # RFC 6749 §3.2: parameters MUST NOT be included more than once
        raise ValidationError(name, "must not be repeated")
    return values[0]


def read_client_authentication(
    headers: Mapping[str, str], form: Mapping[str, Sequence[str]]
) -> ClientAuthentication:
    """Find the one way the client authenticated (Basic, form fields or service-token headers).

    `headers` must have lower-case names. No credentials, or credentials that are malformed,
    raise AuthenticationError/MalformedCredential; more than one way is ``invalid_request``.
    """
    found: list[tuple[str, str, str]] = []
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if AUTHORIZATION_SCHEMES.get(scheme.lower()) is CredentialForm.BASIC:
        found.append((*decode_basic(value.strip()), "client_secret_basic"))
    form_id, form_secret = single(form, "client_id"), single(form, "client_secret")
    if form_secret is not None:
        found.append((form_id or "", form_secret, "client_secret_post"))
    for id_header, secret_header in HEADER_PAIRS.values():
        if secret_header in headers:
            found.append((headers.get(id_header, ""), headers[secret_header], "service_token"))
    if not found:
        raise AuthenticationError("no client credentials")
    if len(found) > 1:
        raise ValidationError("client authentication", "use exactly one authentication method")
    client_id, secret, method = found[0]
    return ClientAuthentication(*parse_credentials(client_id, secret), method)


# -- bindings (gatekey.bindings) --------------------------------------------------------------


def requested_resource(form: Mapping[str, Sequence[str]]) -> str | None:
    """The one API a token request names: RFC 8707's `resource`, or `audience` (RFC 8693's
    name, which Auth0 and others take); None for the stack's audience. Gatekey issues a token
    for one API: more than one value is `invalid_target`."""
    values = [*form.get("resource", ()), *form.get("audience", ())]
    if len(values) > 1:
        raise InvalidTarget("resource", "name one API per token (one resource or audience)")
    return values[0] if values else None


def check_source(token: ServiceToken, source_ip: str | None) -> None:
    """Refuse an authenticated client whose token is bound to source addresses that do not
    hold the request's."""
    if not source_allowed(token.bound_cidrs, source_ip):
        raise SourceIpRefused(f"service token {token.client_id} is not bound to the source IP")


class TokenEndpoint:
    """Exchanges a service token's credentials for an access token: one GetItem, one Sign
    (and, once per ring cache TTL, one read of the signing key ring)."""

    def __init__(
        self,
        *,
        store: TokenStore,
        hasher: Hasher,
        signing_keys: SigningKeys,
        audience: str,
        lifetime: int,
        clock: Callable[[], int],
        last_seen_interval: int,
        record_last_seen: Callable[[str, int, int], bool] | None = None,
        last_seen_failed: Callable[[GatekeyError], None] | None = None,
        proofs: ProofVerifier | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        self._store = store
        # DPoP (RFC 9449 §5): a proof binds the access token to its key. Its nonces, if the
        # verifier requires them, are the ones `dpop_nonce` hands out.
        self._proofs = proofs or ProofVerifier()
        self._replay = replay or MemoryReplayGuard()
        self._hasher = hasher
        self._signing_keys = signing_keys
        self.audience = audience
        self.lifetime = lifetime
        self._clock = clock
        self.last_seen_interval = last_seen_interval
        self._record_last_seen = record_last_seen or store.record_last_seen
        self._last_seen_failed = last_seen_failed

    def exchange(
        self,
        *,
        content_type: str | None,
        form: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        issuer: str,
        source_ip: str | None = None,
        request_url: str | None = None,
    ) -> tuple[IssuedToken, str]:
        """Return the access token and the client_id it was issued to. `source_ip` is the
        request's, for a token bound to source addresses. A DPoP header binds it to the proof's
        key: its htu is this endpoint as advertised (issuer + TOKEN_PATH), or `request_url`,
        the URL API Gateway received the request at."""
        if (content_type or "").split(";")[0].strip().lower() != FORM_CONTENT_TYPE:
            raise ValidationError("Content-Type", f"must be {FORM_CONTENT_TYPE}")
        grant_type = single(form, "grant_type")
        if grant_type is None:
            raise ValidationError("grant_type", "is required")
        if grant_type != GRANT_TYPE:
            raise UnsupportedGrantType("grant_type", f"only {GRANT_TYPE} is supported")
        requested_scope = single(form, "scope")
        resource = requested_resource(form)
        auth = read_client_authentication(headers, form)
        now = self._clock()
        proof = self._proof(headers, issuer, request_url, now)  # before any read
        token = self._store.get(auth.client_id)
        secret = token.authenticate(auth.secret, self._hasher, now)
        check_source(token, source_ip)
        scopes = granted_scopes(token, requested_scope)
        audience = self.audience
        if resource is not None:
            audience = requested_target(resource, token.bound_apis).audience
        if proof is None and token.dpop_required:
            raise InvalidDPoPProof(f"service token {token.client_id} requires DPoP")
        if proof is not None:  # last: only a proof that passed every other check is kept
            check_replay(self._replay, proof, now)
        # A token issued in the second a full revocation list moved the client's watermark to
        # would be revoked at birth (gatekey.revocations): it is dated a second later.
        issue_at = max(now, token.revoked_access_tokens.not_before + 1)
        issued = issue_access_token(
            token,
            self._signing_keys.signer(now),
            issuer=issuer,
            audience=audience,
            lifetime=self.lifetime,
            scopes=scopes,
            now=issue_at,
            secret=secret,
            jkt=None if proof is None else proof.jkt,
        )
        self._note_use(token, now)
        return issued, token.client_id

    def _proof(
        self, headers: Mapping[str, str], issuer: str, request_url: str | None, now: int
    ) -> VerifiedProof | None:
        """The request's DPoP proof, verified (RFC 9449 §4.3, with no access token to hash),
        or None without one. A DPoP header API Gateway joined from several is refused."""
        value = headers.get("dpop")
        if value is None:
            return None
        urls = {u for u in (normalise_htu(f"{issuer}{TOKEN_PATH}"), request_url) if u}
        return self._proofs.verify(value, method="POST", urls=urls, now=now)

    def dpop_nonce(self, now: int) -> str | None:
        """A fresh server nonce for the DPoP-Nonce header, if nonces are on (§8)."""
        policy = self._proofs.nonce_policy
        return None if policy is None else policy.nonces.issue(now)

    def _note_use(self, token: ServiceToken, now: int) -> None:
        """Record the use for the idle policy, as the authorizer does and at most once per
        interval: a bot whose APIs verify its access tokens themselves (an HTTP API's JWT
        authorizer) is seen here only. Bookkeeping: a failed write is logged, the token stands."""
        interval = self.last_seen_interval
        if token.last_seen_at is not None and now - token.last_seen_at < interval:
            return
        try:
            self._record_last_seen(token.client_id, now, interval)
        except GatekeyError as exc:
            logger.warning(
                "last_seen_at not written",
                extra={"client_id": token.client_id, "reason": exc.reason},
            )
            if self._last_seen_failed is not None:
                self._last_seen_failed(exc)


@dataclass(frozen=True, slots=True)
class OAuthError:
    status: int
    error: str
    description: str


def oauth_error(exc: GatekeyError) -> OAuthError:
    """The RFC 6749 §5.2 answer to an error: the one place errors become OAuth responses
    (of the token, introspection and revocation endpoints alike)."""
    if isinstance(exc, InvalidDPoPProof):  # RFC 9449 §5 and §8 (before invalid_client)
        error = "use_dpop_nonce" if isinstance(exc, UseDPoPNonce) else "invalid_dpop_proof"
        return OAuthError(400, error, exc.message)
    if isinstance(exc, ClientNotPermitted):
        # Authenticated, but not allowed this request: neither a credential error (401) nor a
        # malformed request (400). RFC 7662 §4 asks that callers be authorized to introspect.
        return OAuthError(403, "unauthorized_client", exc.message)
    if isinstance(exc, TokenOfAnotherClient):
        # RFC 7009 §2.1 refuses it; RFC 6749 §5.2's invalid_grant names a grant "issued to
        # another client" (Authlib's revocation endpoint answers the same).
        return OAuthError(400, "invalid_grant", exc.message)
    if isinstance(exc, AuthenticationError | MalformedCredential | NotFound):
        return OAuthError(401, "invalid_client", "client authentication failed")
    if isinstance(exc, InvalidScope):
        return OAuthError(400, "invalid_scope", exc.message)
    if isinstance(exc, InvalidTarget):  # RFC 8707 §2
        return OAuthError(400, "invalid_target", exc.message)
    if isinstance(exc, UnsupportedGrantType):
        return OAuthError(400, "unsupported_grant_type", exc.message)
    if isinstance(exc, ValidationError):
        return OAuthError(400, "invalid_request", exc.message)
    if isinstance(exc, ConcurrentModification):
        # Concurrent revocations kept winning over this one (RFC 7009 §2.2.1's 503).
        return OAuthError(503, "temporarily_unavailable", "try again")
    return OAuthError(500, "server_error", "the token endpoint failed; try again later")


# Where the metadata is served, relative to the issuer: both documents are appended to it.
# OpenID Connect Discovery 1.0 §4 appends; RFC 8414 §3 inserts the well-known segment before
# the issuer's path, which only routes to this API when the issuer has no path (README,
# "Discovery").
OAUTH_METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION_PATH: Final = "/.well-known/openid-configuration"
TOKEN_PATH: Final = "/oauth2/token"
INTROSPECTION_PATH: Final = "/oauth2/introspect"
REVOCATION_PATH: Final = "/oauth2/revoke"
# The scope a service token needs to call the introspection endpoint (RFC 7662 §4: callers
# are authorized to introspect, not just authenticated). Advertised in `scopes_supported`.
INTROSPECTION_SCOPE: Final = "gatekey:introspect"
JWKS_PATH: Final = "/.well-known/jwks.json"


def authorization_server_metadata(issuer: str) -> dict[str, object]:
    """RFC 8414 metadata, served at ``/.well-known/oauth-authorization-server``."""
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}{TOKEN_PATH}",
        "jwks_uri": f"{issuer}{JWKS_PATH}",
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint": f"{issuer}{INTROSPECTION_PATH}",
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint": f"{issuer}{REVOCATION_PATH}",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        # RFC 8414 lets a server leave scopes out: a service token's own scopes are whatever
        # its admin set. This one is Gatekey's: it lets a client introspect.
        "scopes_supported": [INTROSPECTION_SCOPE],
        # Required by RFC 8414; this server has no authorization endpoint, so none.
        "response_types_supported": [],
        # RFC 9449 §5.1: access tokens bound to a key with a DPoP proof of one of these.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }


def openid_configuration(issuer: str) -> dict[str, object]:
    """The same metadata at ``/.well-known/openid-configuration`` (OpenID Connect Discovery
    1.0), where openid-client looks by default and API Gateway HTTP API's JWT authorizer reads
    ``jwks_uri``, with the members §3 requires that RFC 8414 does not.

    Gatekey issues no ID tokens, so two of them say so: every client is the same ``public``
    subject type, and RS256, which §3 says MUST be listed, is the only ID token algorithm
    named (access tokens are RS256 or ES256, per SigningKeySpec; their JWKS says which).

    ``authorization_endpoint`` is left out on purpose, although §3 calls it REQUIRED: there is
    no authorization endpoint (``response_types_supported`` is empty), and a URL that answers
    404 would only move a client's failure later. Nothing that reads this document for a
    client_credentials grant or for keys needs it: openid-client v5 asks for it only in
    ``authorizationUrl()``; v6 (oauth4webapi ``processDiscoveryResponse``) checks only
    ``issuer``; API Gateway's JWT authorizer reads ``jwks_uri``.
    """
    return {
        **authorization_server_metadata(issuer),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
