"""The Lambda authorizer's core: decide on the credentials a request presents (read by
gatekey.presented), and answer API Gateway.

One code path serves REST REQUEST and TOKEN authorizer events and HTTP API payload 2.0 events
(their shapes, and those of the answers, are gatekey.apigw's).

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
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from gatekey.access_tokens import access_token_valid_until, verify_access_token
from gatekey.apigw import (
    AuthRequest,
    EventShape,
    allow_policy,
    deny_policy,
    parse_event,
    simple_denial,
    simple_response,
)
from gatekey.bindings import api_allowed, audience_target, source_allowed
from gatekey.cache import TtlCache
from gatekey.config import Config
from gatekey.credentials import (
    ClientSecret,
    CredentialForm,
)
from gatekey.dpop import (
    MemoryReplayGuard,
    ProofVerifier,
    ReplayGuard,
    VerifiedProof,
    check_replay,
    confirmation_key,
    request_target,
    single_proof_header,
)
from gatekey.errors import (
    ApiNotAllowed,
    AuthenticationError,
    GatekeyError,
    InvalidCredentials,
    InvalidDPoPProof,
    MissingCredentials,
    NotFound,
    SourceIpRefused,
    SourceIpUnverifiable,
    ValidationError,
    WrongAudience,
)
from gatekey.hashing import Hasher
from gatekey.keyring import PUBLIC_KEY_TTL, PublicKeyCache
from gatekey.model import ServiceToken, rfc3339
from gatekey.presented import CredentialReader, Presented
from gatekey.store import TokenStore

logger = logging.getLogger(__name__)
_HTTP: Final = EventShape.HTTP  # looked up once: see gatekey.apigw
_REST_TOKEN: Final = EventShape.REST_TOKEN
_DPOP: Final = CredentialForm.DPOP

# A secret that does not match a cached token item, or an access token of a secret version
# it does not know, re-reads the item at most this often per client id: a bot that switches
# to its new secret at once is let in, and garbage cannot become a stream of reads.
REREAD_INTERVAL: Final = 5


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
    accepted: frozenset[CredentialForm]
    access_json_header: str
    strict: bool
    issuer: str
    audience: str
    status_cache_ttl: int
    last_seen_interval: int
    http_api_simple_responses: bool
    # Refuse credentials beside an Authorization header they did not come from (config.py).
    refuse_ambiguous: bool = True
    cache_size: int = 10_000
    reader: CredentialReader = field(init=False)

    def __post_init__(self) -> None:
        reader = CredentialReader(self.accepted, self.access_json_header, self.refuse_ambiguous)
        object.__setattr__(self, "reader", reader)

    @classmethod
    def from_config(cls, config: Config) -> AuthorizerSettings:
        return cls(
            accepted=config.accepted_credentials,
            access_json_header=config.access_json_header,
            strict=config.strict_mode,
            issuer=config.issuer,
            audience=config.access_token_audience,
            status_cache_ttl=config.status_cache_ttl_seconds,
            last_seen_interval=config.last_seen_interval_seconds,
            http_api_simple_responses=config.http_api_simple_responses,
            refuse_ambiguous=config.refuse_ambiguous_credentials,
        )


def _secret_valid_until(
    token: ServiceToken, *, secret: ClientSecret, hasher: Hasher, now: int
) -> int | None:
    return token.authenticate(secret, hasher, now).valid_until


def _check_bindings(token: ServiceToken, request: AuthRequest, audience: object) -> None:
    """Raise unless the request is where the token, and its access token's `aud`, may be used:
    its API and stage, and its source address. A bound token's address is checked only where
    an answer cannot outlive it: never on a TOKEN event (it carries no address), nor on an
    event whose identity sources (API Gateway's cache key) leave the address out."""
    api, stage = request.api_and_stage
    if not api_allowed(token.bound_apis, api, stage):
        raise ApiNotAllowed(f"service token {token.client_id} is not bound to {api}/{stage}")
    target = audience_target(audience)
    if target is not None and not target.reaches(api, stage):
        raise WrongAudience("access token is for another API")
    if not token.bound_cidrs:
        return
    if request.shape is _REST_TOKEN:
        raise SourceIpUnverifiable("a TOKEN authorizer's event has no source IP")
    if request.source_ip_in_cache_key is False:
        raise SourceIpUnverifiable("the source IP is not among the identity sources")
    if not source_allowed(token.bound_cidrs, request.source_ip):
        raise SourceIpRefused(f"service token {token.client_id} is not bound to the source IP")


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    reason: str
    auth_method: CredentialForm | None = None
    token: ServiceToken | None = None
    scopes: tuple[str, ...] = ()
    # An allow may be reused until this time: the first of the status cache entry's expiry,
    # the JWT's exp or its next verification, the token's expiry and the end of a previous
    # secret's grace.
    valid_until: float = 0.0
    client_id: str | None = None  # of a denial too, when the request named a well-formed one


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """An answer for API Gateway and what the handler logs and counts about it."""

    response: dict[str, Any]
    allowed: bool
    reason: str
    auth_method: CredentialForm | None
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
        record_last_seen: Callable[[str, int, int], bool] | None = None,
        last_seen_failed: Callable[[GatekeyError], None] | None = None,
        proofs: ProofVerifier | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        self._store = store
        # DPoP (gatekey.dpop): proofs verified per request, their jti remembered (per
        # container, and across containers when the wiring layers the shared guard on it).
        self._proofs = proofs or ProofVerifier()
        self._replay = replay or MemoryReplayGuard()
        self._hasher = hasher
        self._public_keys = public_keys
        self.settings = settings
        self._key_headers = settings.reader.key_headers  # read on every authorization
        self._clock = clock
        # The last-seen write, by default the store's; the handler gives it a client whose
        # budget leaves the answer its time, and counts its failures.
        self._record_last_seen = record_last_seen or store.record_last_seen
        self._last_seen_failed = last_seen_failed
        self._status: TtlCache[str, tuple[ServiceToken | None, float]] = TtlCache(
            settings.cache_size
        )
        self._jwts: TtlCache[str, tuple[dict[str, Any], float]] = TtlCache(settings.cache_size)
        self._last_seen: TtlCache[str, bool] = TtlCache(settings.cache_size)
        self._rereads: TtlCache[str, bool] = TtlCache(settings.cache_size)
        self._answers: TtlCache[bytes, Outcome] = TtlCache(settings.cache_size)
        # Answer keys whose token is bound to source addresses: its answers are remembered
        # under the key with the source IP (`_bound_key`), never under the key alone.
        self._bound: TtlCache[bytes, bool] = TtlCache(settings.cache_size)
        # Until a bound token is allowed, no key is bound: the lookup is skipped (`make bench`).
        self._any_bound = False

    def authorize(self, event: object) -> Outcome:
        """Answer an authorizer event. A repeated allow is answered from memory until the first
        of its inputs' expiries (`Decision.valid_until`), so revocation still lands within the
        status cache TTL. MissingCredentials (a 401) and dependency errors propagate."""
        request = parse_event(event)
        # A DPoP request is never answered from memory (below): its key is not even computed.
        authorization = request.headers.get("authorization")
        dpop = authorization is not None and authorization[:5].lower() == "dpop "
        base = None if dpop else self._answer_key(request)
        now = self._clock()
        key = base
        if base is not None and self._any_bound and self._bound.get(base, now):
            key = self._bound_key(base, request)
        outcome = None if key is None else self._answers.get(key, now)
        if outcome is not None:
            return outcome
        decision = self.decide(request)
        strict = not decision.allowed and self.settings.strict
        outcome = Outcome(
            # A strict-mode denial is a 401, not a policy: no response is built for it.
            response={} if strict else self.respond(request, decision),
            allowed=decision.allowed,
            reason=decision.reason,
            auth_method=decision.auth_method,
            client_id=decision.client_id,
            unauthorized=strict,
        )
        if strict:
            return outcome
        # A DPoP allow is never remembered, nor a DPoP request answered from memory: its proof
        # is single-use and names one request, so an answer kept by the token would let the
        # token through without a proof.
        if decision.allowed and base is not None and decision.auth_method is not _DPOP:
            key = base
            if decision.token is not None and decision.token.bound_cidrs:
                self._bound.put(base, True, decision.valid_until)
                self._any_bound = True
                key = self._bound_key(base, request)
            self._answers.put(key, outcome, decision.valid_until)
        return outcome

    @staticmethod
    def _bound_key(base: bytes, request: AuthRequest) -> bytes:
        """The answer key of a token bound to source addresses: the key, the source IP and
        whether the API's cache key holds it (what the source-IP check decided on)."""
        material = f"{request.source_ip}\x00{request.source_ip_in_cache_key}"
        return hashlib.sha256(base + material.encode("utf-8", "surrogatepass")).digest()

    def _answer_key(self, request: AuthRequest) -> bytes:
        """A digest of everything an answer depends on: the credential headers as sent, by
        name (never kept in plaintext), and the API and stage, or the route when the answer is
        per route. A token bound to source addresses also depends on the source IP: its answers
        are kept under `_bound_key` (docs/architecture.md, "Tokens bound to source
        addresses"). A DPoP answer is never kept (`authorize`): its proof is not in the key."""
        scope = (
            request.method_arn if self._simple(request) else request.method_arn.rsplit("/", 2)[0]
        )
        headers = request.headers
        material = [request.shape, scope]
        # Length-prefixed, so no value can pass for a run of other headers.
        material += [
            f"{n}:{len(headers[n])}:{headers[n]}" for n in self._key_headers if n in headers
        ]
        return hashlib.sha256("\x00".join(material).encode("utf-8", "surrogatepass")).digest()

    def decide(self, request: AuthRequest) -> Decision:
        """Allow or deny. MissingCredentials (a 401) and dependency errors propagate."""
        now = int(self._clock())
        try:
            presented = self.settings.reader.read(request.headers)
        except MissingCredentials:
            raise
        except (AuthenticationError, ValidationError) as exc:  # malformed: no I/O was done
            return Decision(allowed=False, reason=exc.reason)
        try:
            return self._authenticate(presented, request, now)
        except (AuthenticationError, ValidationError, NotFound) as exc:
            reason = "unknown_client" if isinstance(exc, NotFound) else exc.reason
            return Decision(
                allowed=False,
                reason=reason,
                auth_method=presented.method,
                client_id=presented.client_id,
            )

    def _authenticate(self, presented: Presented, request: AuthRequest, now: int) -> Decision:
        check: Callable[[ServiceToken], int | None]
        scopes: tuple[str, ...] | None = None  # an access token's own; else the token's
        audience: object = None  # an access token's aud
        proof: VerifiedProof | None = None
        if presented.jwt is not None:
            if presented.method is _DPOP and request.shape is _REST_TOKEN:
                # A TOKEN authorizer sees Authorization alone, and API Gateway caches it by it.
                raise InvalidDPoPProof("DPoP needs a REQUEST authorizer, uncached")
            claims, expires = self._verify_jwt(presented.jwt, now)
            proof = self._proof(presented, claims, request, now)
            client_id = str(claims["client_id"])
            # The secret version and the revoked ids are read from the token's item, which the
            # status cache holds: a revocation lands within its TTL, without a read of its own.
            check = partial(access_token_valid_until, claims=claims, now=now)
            scopes = tuple(str(claims.get("scope", "")).split())
            audience = claims["aud"]
        elif presented.client_id is not None and presented.secret is not None:
            client_id = presented.client_id
            check = partial(
                _secret_valid_until, secret=presented.secret, hasher=self._hasher, now=now
            )
            expires = float("inf")
        else:
            raise InvalidCredentials("incomplete credentials")
        token, valid_until = self._checked_token(client_id, now, check)
        _check_bindings(token, request, audience)
        if proof is not None:  # last: only proofs that passed every other check are kept
            check_replay(self._replay, proof, now)
        self._note_last_seen(token, now)
        return Decision(
            allowed=True,
            reason="allowed",
            auth_method=presented.method,
            token=token,
            scopes=token.scopes if scopes is None else scopes,
            valid_until=min(valid_until, expires),
            client_id=token.client_id,
        )

    def _proof(
        self, presented: Presented, claims: dict[str, Any], request: AuthRequest, now: int
    ) -> VerifiedProof | None:
        """The DPoP proof of a bound access token (RFC 9449 §7.1), checked against the request
        and the token's cnf.jkt; None for a bearer token sent as one. A bound token sent any
        other way, or a bearer token sent as DPoP, is refused."""
        jkt = confirmation_key(claims)
        if presented.method is not _DPOP:
            if jkt is not None:
                raise InvalidDPoPProof("a DPoP-bound access token was sent without a proof")
            return None
        if jkt is None:
            raise InvalidDPoPProof("a bearer access token was sent as DPoP")
        event = request.event or {}
        target = request_target(event)
        if target is None:
            raise InvalidDPoPProof("the event does not say which URL was called")
        proof = self._proofs.verify(
            single_proof_header(event, presented.proof),
            method=target.method,
            urls=(target.url,),
            now=now,
            access_token=presented.jwt,
        )
        if proof.jkt != jkt:  # both public: thumbprints of keys
            raise InvalidDPoPProof("DPoP proof is signed by another key than the token's")
        return proof

    def _verify_jwt(self, jwt: str, now: int) -> tuple[dict[str, Any], float]:
        """The claims of a verified access token, and until when that verification may be
        used: never past exp, and verified again once the keys may have changed, so a key taken
        out of the ring stops its tokens in warm containers too (an allow remembered on these
        claims ends then as well)."""
        verified = self._jwts.get(jwt, now)
        if verified is not None:
            return verified
        claims = verify_access_token(
            jwt,
            self._public_keys,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            now=now,
        )
        verified = (claims, float(min(claims["exp"], now + PUBLIC_KEY_TTL)))
        self._jwts.put(jwt, verified, verified[1])
        return verified

    def _checked_token(
        self, client_id: str, now: int, check: Callable[[ServiceToken], int | None]
    ) -> tuple[ServiceToken, float]:
        """The usable service token a credential belongs to, and until when the answer holds.
        `check` raises unless the token accepts the credential, or says until when it does.
        A credential a cached copy refuses is checked once more against a fresh read (at most
        once per REREAD_INTERVAL per client id): it may be newer than the copy, as a rotated
        secret is in the seconds after the rotation."""
        token, status_until, fresh = self._active_token(client_id, now)
        try:
            accepted_until = check(token)
        except InvalidCredentials:
            if fresh or self._rereads.get(client_id, now):
                raise
            self._rereads.put(client_id, True, now + REREAD_INTERVAL)
            token, status_until, _ = self._active_token(client_id, now, reread=True)
            accepted_until = check(token)
        if accepted_until is not None:
            status_until = min(status_until, accepted_until)
        return token, status_until

    def _active_token(
        self, client_id: str, now: int, *, reread: bool = False
    ) -> tuple[ServiceToken, float, bool]:
        """The service token by id (status cache first, unless `reread`), checked for
        revocation, enabled and expiry; until when that reading may be used; and whether it was
        read just now. A JWT is worthless once its service token is revoked or disabled."""
        entry = None if reread else self._status.get(client_id, now)
        fresh = entry is None
        if entry is None:
            token: ServiceToken | None
            try:
                token = self._store.get(client_id, consistent=reread)
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
        return token, status_until, fresh

    def _note_last_seen(self, token: ServiceToken, now: int) -> None:
        """Record the use, at most once per interval per token: not when this container wrote
        it lately, nor when the item read shows a recent write (another container's). The
        write is made before the answer, not in a thread a frozen container may never run
        again: a lost write could let the idle policy disable a token in use. It is
        bookkeeping, not a decision: a failure is logged and counted, the answer stands."""
        interval = self.settings.last_seen_interval
        client_id = token.client_id
        if self._last_seen.get(client_id, now):
            return
        recent = token.last_seen_at is not None and now - token.last_seen_at < interval
        written_until = (token.last_seen_at or 0) + interval if recent else now + interval
        self._last_seen.put(client_id, True, written_until)
        if recent:
            return
        try:
            self._record_last_seen(client_id, now, interval)
        except GatekeyError as exc:
            logger.warning(
                "last_seen_at not written", extra={"client_id": client_id, "reason": exc.reason}
            )
            if self._last_seen_failed is not None:
                self._last_seen_failed(exc)

    def respond(self, request: AuthRequest, decision: Decision) -> dict[str, Any]:
        """The API Gateway answer for a decision: the one place decisions become responses
        (a strict-mode denial is a 401: `authorize` says so before asking for a response)."""
        simple = self._simple(request)
        token = decision.token if decision.allowed else None
        if token is None:
            return simple_denial() if simple else deny_policy(request.method_arn)
        context = self._context(token, decision)
        if simple:
            return simple_response(request.method_arn, token.routes, context)
        # A metered token's API key, for REST APIs (HTTP APIs have no usage plans). It is the
        # token's whatever the request, so a cached Allow stays right.
        key = None
        if token.usage_plan is not None and request.shape is not _HTTP:
            key = token.usage_plan.api_key_value
        return allow_policy(request.method_arn, token.client_id, token.routes, context, key)

    def _simple(self, request: AuthRequest) -> bool:
        """Whether the answer is an HTTP API simple response, which is for its route only."""
        return request.shape is _HTTP and self.settings.http_api_simple_responses

    @staticmethod
    def _context(token: ServiceToken, decision: Decision) -> dict[str, str | int | bool]:
        expires = rfc3339(token.expires_at) or "never"
        return {
            "client_id": token.client_id,
            "name": token.name,
            "scopes": " ".join(decision.scopes),
            "auth_method": str(decision.auth_method or ""),
            "expires_at": expires,
        }
