"""DPoP (RFC 9449) at the authorizer and the token endpoint, with proofs built by hand from the
RFC with joserfc (an implementation nobody here wrote; Authlib 1.9.6 has no DPoP: its own
source says "Authlib supports neither DPoP nor mTLS"): the accepted forms, and the attack
suite, each refused under its reason; htu normalisation, thumbprints and server nonces."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from gatekey.access_tokens import issue_access_token
from gatekey.dpop import (
    NONCE_SLOT,
    DPoPNonces,
    MemoryReplayGuard,
    jwk_thumbprint,
    normalise_htu,
    request_target,
)
from gatekey.errors import InvalidDPoPProof, UseDPoPNonce
from gatekey.hashing import Hasher
from gatekey.oauth import (
    TokenEndpoint,
    authorization_server_metadata,
    oauth_error,
    openid_configuration,
)
from support.constants import ARN, ISSUER, NOW
from support.events import load_event
from support.harness import Bot, LocalAuthorizer, local_authorizer

HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
URL = f"https://{HOST}/v1/items/42"  # what the client called: the stage is in the path
FORM = "application/x-www-form-urlencoded"

ALGS: dict[str, Callable[[], Any]] = {
    "ES256": lambda: ECKey.generate_key("P-256"),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519"),
    "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    "PS256": lambda: RSAKey.generate_key(2048),
    "RS256": lambda: RSAKey.generate_key(2048),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Holder:
    """A client's DPoP key, and proofs made with it by joserfc, as RFC 9449 §4.2 lays out."""

    alg: str = "ES256"
    key: Any = None
    jwk: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = self.key or ALGS[self.alg]()
        self.jwk = self.jwk or self.key.as_dict(private=False)

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def proof(
        self,
        htm: str = "GET",
        htu: str = URL,
        *,
        access_token: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A proof; a claim given as None is left out."""
        protected = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk, **(header or {})}
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": NOW + 60,
        }
        if access_token is not None:
            body["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        body |= claims
        body = {k: v for k, v in body.items() if v is not None}
        if header is not None and ("crit" in header or not isinstance(header.get("jwk", {}), dict)):
            return hand_signed(self.key, protected, body)  # joserfc refuses to make these
        with warnings.catch_warnings():  # joserfc warns of "EdDSA" (RFC 9864), still sent
            warnings.simplefilter("ignore")
            return str(jose_jwt.encode(protected, body, self.key, algorithms=[protected["alg"]]))


def hand_signed(key: ECKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An ES256 JWS signed with `cryptography`, for headers joserfc will not write."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = ".".join(b64url(json.dumps(p).encode()) for p in (header, claims))
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def dpop_event(
    shape: str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    path: str = "/items/42",
    host: str = HOST,
) -> dict[str, Any]:
    """An authorizer event for a call of `method` https://host/v1<path>, as API Gateway
    sends it: REST REQUEST (requestContext.path holds the stage) or HTTP API 2.0 (rawPath)."""
    if shape == "rest_token":
        event = copy.deepcopy(load_event("authorizer-rest-token.json"))
        event["methodArn"] = f"{ARN}/{method}{path}"
        event["authorizationToken"] = headers.get("Authorization", "")
        return event
    if shape == "http":
        event = copy.deepcopy(load_event("authorizer-http-v2.json"))
        event["routeArn"] = f"{ARN}/{method}{path}"
        event["rawPath"] = f"/v1{path}"
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["domainName"] = host
        event["headers"] = {"host": host} | {k.lower(): v for k, v in headers.items()}
        return event
    event = copy.deepcopy(load_event("authorizer-rest-request.json"))
    event["methodArn"] = f"{ARN}/{method}{path}"
    event["httpMethod"] = method
    event["path"] = path
    event["requestContext"] |= {"path": f"/v1{path}", "domainName": host, "httpMethod": method}
    event["headers"] = {"Host": host, **headers}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


@pytest.fixture
def make_authorizer(unit_hasher: Hasher) -> Callable[..., LocalAuthorizer]:
    def build(**environment: str) -> LocalAuthorizer:
        return local_authorizer(unit_hasher, environment)

    return build


@pytest.fixture
def authorizer(make_authorizer: Callable[..., LocalAuthorizer]) -> LocalAuthorizer:
    return make_authorizer()


@pytest.fixture
def bot(authorizer: LocalAuthorizer) -> Bot:
    return authorizer.bot()


def bound_token(authorizer: LocalAuthorizer, bot: Bot, jkt: str | None) -> str:
    return issue_access_token(
        bot.token,
        authorizer.signer,
        issuer=ISSUER,
        audience="gatekey",
        lifetime=3600,
        scopes=(),
        now=int(authorizer.clock[0]),
        jkt=jkt,
    ).access_token


def decide(authorizer: LocalAuthorizer, event: dict[str, Any]) -> str:
    outcome = authorizer.authorizer.authorize(event)
    return "allowed" if outcome.allowed else outcome.reason


def dpop_headers(token: str, proof: str | None) -> dict[str, str]:
    headers = {"Authorization": f"DPoP {token}"}
    return headers if proof is None else headers | {"DPoP": proof}


# -- what is accepted --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(ALGS))
@pytest.mark.parametrize("shape", ["rest_request", "http"])
def test_a_bound_token_with_a_proof_of_its_key_is_allowed(
    authorizer: LocalAuthorizer, bot: Bot, alg: str, shape: str
) -> None:
    holder = Holder(alg)
    token = bound_token(authorizer, bot, holder.jkt)
    event = dpop_event(shape, dpop_headers(token, holder.proof(access_token=token)))
    outcome = authorizer.authorizer.authorize(event)
    assert (outcome.allowed, outcome.auth_method) == (True, "dpop")


def test_each_request_needs_its_own_proof_and_no_allow_is_remembered(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    first = holder.proof(access_token=token)
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, first))) == "allowed"
    # The same token at once again: a remembered answer would let these through.
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, first))) == (
        "dpop_replayed"
    )
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, None))) == (
        "invalid_dpop_proof"
    )
    other = holder.proof("POST", access_token=token)
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, other))) == (
        "invalid_dpop_proof"
    )
    fresh = holder.proof(access_token=token)
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, fresh))) == "allowed"
    assert len(authorizer.authorizer._answers) == 0


@pytest.mark.parametrize(
    "htu",
    [
        "https://A1B2C3D4E5.execute-api.us-east-1.amazonaws.com:443/v1/items/42",
        f"https://{HOST}/v1/items/42?page=2#top",  # query and fragment are ignored
        f"https://{HOST}/v1/./items/%34%32",  # dot segments and escaped unreserved characters
    ],
)
def test_htu_is_compared_after_rfc_3986_normalisation(
    authorizer: LocalAuthorizer, bot: Bot, htu: str
) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    event = dpop_event(
        "rest_request", dpop_headers(token, holder.proof(htu=htu, access_token=token))
    )
    assert decide(authorizer, event) == "allowed"


def test_a_custom_domain_proof_names_the_custom_domain_and_its_base_path(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    proof = holder.proof(htu="https://api.example.com/orders/items/42", access_token=token)
    event = dpop_event("rest_request", dpop_headers(token, proof), host="api.example.com")
    event["requestContext"]["path"] = "/orders/items/42"  # base path "orders", as called
    assert decide(authorizer, event) == "allowed"


# -- the attack suite: each refused ------------------------------------------------------------


def attack(
    authorizer: LocalAuthorizer, bot: Bot, make: Callable[[Holder, str], dict[str, str]]
) -> str:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    return decide(authorizer, dpop_event("rest_request", make(holder, token)))


def test_a_replayed_proof_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    headers = dpop_headers(token, holder.proof(access_token=token))
    assert decide(authorizer, dpop_event("rest_request", headers)) == "allowed"
    authorizer.clock[0] += 30  # still within its iat window
    assert decide(authorizer, dpop_event("rest_request", headers)) == "dpop_replayed"
    assert decide(authorizer, dpop_event("http", headers)) == "dpop_replayed"


@pytest.mark.parametrize(
    ("htm", "htu"),
    [
        ("POST", URL),
        ("get", URL),
        ("GET", f"https://{HOST}/v1/items/43"),
        ("GET", f"https://{HOST}/v1/items/42/"),
        ("GET", "https://other.example.com/v1/items/42"),
        ("GET", f"http://{HOST}/v1/items/42"),
        ("GET", f"https://{HOST}:8443/v1/items/42"),
        ("GET", f"https://user@{HOST}/v1/items/42"),
        ("GET", "/v1/items/42"),
    ],
)
def test_a_proof_for_another_method_or_url_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, htm: str, htu: str
) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        return dpop_headers(token, holder.proof(htm, htu, access_token=token))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


def test_a_proof_signed_by_another_key_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        return dpop_headers(token, Holder().proof(access_token=token))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


def test_a_proof_naming_the_tokens_key_but_signed_by_another_is_refused(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        thief = Holder(jwk=holder.jwk)  # the victim's public key in the header, its own signature
        return dpop_headers(token, thief.proof(access_token=token))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


@pytest.mark.parametrize("ath", [None, "", "x" * 43, "token of another"])
def test_a_proof_without_the_access_tokens_hash_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, ath: str | None
) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        if ath == "token of another":
            return dpop_headers(token, holder.proof(access_token=token + "x"))
        return dpop_headers(token, holder.proof(ath=ath))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


@pytest.mark.parametrize("offset", [-61, 61, -3600])
def test_a_proof_with_a_stale_or_future_iat_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, offset: int
) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        return dpop_headers(token, holder.proof(iat=NOW + 60 + offset, access_token=token))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


@pytest.mark.parametrize("offset", [-60, 60])
def test_the_iat_window_is_inclusive(authorizer: LocalAuthorizer, bot: Bot, offset: int) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        return dpop_headers(token, holder.proof(iat=NOW + 60 + offset, access_token=token))

    assert attack(authorizer, bot, make) == "allowed"


@pytest.mark.parametrize(
    "headers",
    [
        lambda token: {"Authorization": f"Bearer {token}"},
        lambda token: {"cf-access-token": token},
    ],
)
def test_a_bound_token_sent_as_a_bearer_token_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, headers: Callable[[str], dict[str, str]]
) -> None:
    assert attack(authorizer, bot, lambda holder, token: headers(token)) == "invalid_dpop_proof"
    # With a valid proof beside it, too: the scheme says Bearer.
    assert (
        attack(
            authorizer,
            bot,
            lambda holder, token: headers(token) | {"DPoP": holder.proof(access_token=token)},
        )
        == "invalid_dpop_proof"
    )


def test_a_proof_with_an_hmac_alg_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        secret = OctKey.generate_key(256)
        forged = Holder("HS256", key=secret, jwk=secret.as_dict(private=True))
        return dpop_headers(token, forged.proof(access_token=token))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


def test_a_proof_with_alg_none_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        signed = holder.proof(access_token=token)
        head, body, _ = signed.split(".")
        header = json.loads(base64.urlsafe_b64decode(head + "=="))
        unsigned = b64url(json.dumps(header | {"alg": "none"}).encode())
        return dpop_headers(token, f"{unsigned}.{body}.")

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_a_proof_with_a_private_key_in_its_jwk_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, alg: str
) -> None:
    holder = Holder(alg)
    token = bound_token(authorizer, bot, holder.jkt)
    leaky = Holder(alg, key=holder.key, jwk=holder.key.as_dict(private=True))
    assert "d" in leaky.jwk
    event = dpop_event("rest_request", dpop_headers(token, leaky.proof(access_token=token)))
    assert decide(authorizer, event) == "invalid_dpop_proof"


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},
        {"typ": "at+jwt"},
        {"crit": ["exp"]},
        {"jwk": "not an object"},
        {"alg": "ES384"},  # not on the list
    ],
)
def test_a_proof_with_a_wrong_header_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, header: dict[str, Any]
) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    if header.get("alg") == "ES384":
        key = ECKey.generate_key("P-384")
        proof = Holder("ES384", key=key).proof(access_token=token)
    else:
        proof = holder.proof(access_token=token, header=header)
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, proof))) == (
        "invalid_dpop_proof"
    )


@pytest.mark.parametrize("missing", ["jti", "htm", "htu", "iat"])
def test_a_proof_missing_a_claim_is_refused(
    authorizer: LocalAuthorizer, bot: Bot, missing: str
) -> None:
    def make(holder: Holder, token: str) -> dict[str, str]:
        return dpop_headers(token, holder.proof(access_token=token, **{missing: None}))

    assert attack(authorizer, bot, make) == "invalid_dpop_proof"


def test_a_bound_token_without_a_proof_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    assert attack(authorizer, bot, lambda holder, token: dpop_headers(token, None)) == (
        "invalid_dpop_proof"
    )
    for garbage in ["", "x", "a.b.c", "e30.e30.e30", "x" * 9000]:
        outcome = attack(authorizer, bot, lambda holder, token, g=garbage: dpop_headers(token, g))
        assert outcome == "invalid_dpop_proof", garbage


def test_two_dpop_headers_are_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    proof = holder.proof(access_token=token)
    event = dpop_event("rest_request", dpop_headers(token, proof))
    event["multiValueHeaders"]["DPoP"] = [proof, holder.proof(access_token=token)]
    assert decide(authorizer, event) == "invalid_dpop_proof"
    # An HTTP API joins them with a comma, which no compact JWS holds.
    event = dpop_event("http", dpop_headers(token, f"{proof},{proof}"))
    assert decide(authorizer, event) == "invalid_dpop_proof"


def test_a_bearer_token_sent_as_dpop_is_refused(authorizer: LocalAuthorizer, bot: Bot) -> None:
    holder = Holder()
    token = bound_token(authorizer, bot, None)
    event = dpop_event("rest_request", dpop_headers(token, holder.proof(access_token=token)))
    assert decide(authorizer, event) == "invalid_dpop_proof"


def test_a_token_authorizer_refuses_dpop(authorizer: LocalAuthorizer, bot: Bot) -> None:
    """A TOKEN authorizer sees Authorization alone (no proof) and is cached by it."""
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    event = dpop_event("rest_token", dpop_headers(token, holder.proof(access_token=token)))
    assert decide(authorizer, event) == "invalid_dpop_proof"


def test_dpop_switched_off_is_no_credential(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(ACCEPT_DPOP="false")
    bot = authorizer.bot()
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    event = dpop_event("rest_request", dpop_headers(token, holder.proof(access_token=token)))
    with pytest.raises(Exception, match="no credentials"):
        authorizer.authorizer.authorize(event)


def test_a_revoked_service_token_ends_its_bound_tokens(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    from gatekey.admin import Actor, TokenAdmin

    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    admin = TokenAdmin(
        store=authorizer.store, hasher=authorizer.hasher, clock=lambda: int(authorizer.clock[0])
    )
    admin.revoke(Actor("arn:aws:iam::123456789012:user/admin"), bot.client_id)
    authorizer.clock[0] += 31  # the status cache TTL
    event = dpop_event(
        "rest_request",
        dpop_headers(token, holder.proof(iat=authorizer.clock[0], access_token=token)),
    )
    assert decide(authorizer, event) == "token_revoked"


# -- server nonces -----------------------------------------------------------------------------


def test_a_current_nonce_stands_in_for_the_iat_window_at_the_authorizer(
    make_authorizer: Callable[..., LocalAuthorizer], unit_hasher: Hasher
) -> None:
    authorizer = make_authorizer(DPOP_NONCES="true")
    bot = authorizer.bot()
    holder = Holder()
    token = bound_token(authorizer, bot, holder.jkt)
    now = int(authorizer.clock[0])
    nonces = DPoPNonces(unit_hasher.peppers.values(), unit_hasher.peppers["p1"])
    skewed = NOW + 60 - 600  # a clock ten minutes slow
    proof = holder.proof(iat=skewed, access_token=token, nonce=nonces.issue(now))
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, proof))) == "allowed"
    stale = holder.proof(iat=skewed, access_token=token, nonce=nonces.issue(now - 2 * NONCE_SLOT))
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, stale))) == (
        "invalid_dpop_proof"
    )
    # Without a nonce, the window still holds.
    plain = holder.proof(access_token=token)
    assert decide(authorizer, dpop_event("rest_request", dpop_headers(token, plain))) == "allowed"


def test_nonces_are_accepted_in_their_slot_and_the_next_only_and_under_a_pepper_of_the_ring() -> (
    None
):
    nonces = DPoPNonces([b"a" * 32, b"b" * 32], b"b" * 32)
    nonce = nonces.issue(NOW)
    assert nonces.valid_until(nonce, NOW) == (NOW // NONCE_SLOT + 2) * NONCE_SLOT
    assert nonces.valid_until(nonce, NOW + NONCE_SLOT) is not None
    assert nonces.valid_until(nonce, NOW + 2 * NONCE_SLOT) is None
    assert nonces.valid_until(nonce, NOW - NONCE_SLOT) is None  # from the future
    older = DPoPNonces([b"a" * 32], b"a" * 32)
    assert nonces.valid_until(older.issue(NOW), NOW) is not None  # before the pepper changed
    other = DPoPNonces([b"c" * 32], b"c" * 32)
    assert nonces.valid_until(other.issue(NOW), NOW) is None
    for garbage in [None, 1, "", "1.x", "x.y", f"{NOW // NONCE_SLOT}.", "9" * 80]:
        assert nonces.valid_until(garbage, NOW) is None


# -- keys, thumbprints, URLs -------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_thumbprints_are_rfc_7638_as_joserfc_computes_them(alg: str) -> None:
    holder = Holder(alg)
    assert jwk_thumbprint(holder.jwk | {"alg": alg, "kid": "ignored"}) == holder.jkt


def test_the_rfc_7638_example_thumbprint() -> None:
    """RFC 7638 §3.1's example key and its thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    jwk = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://Example.COM:443/a/./b/../c?q=1#f", "https://example.com/a/c"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/%7euser/%2f", "https://example.com/~user/%2F"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ("https://user:pw@example.com/x", None),
        ("ftp://example.com/x", None),
        ("/relative", None),
        ("https://example.com:99999/x", None),
        ("https://exa mple.com/x", None),
        ("https://ex\u00e4mple.com/x", None),
    ],
)
def test_htu_normalisation(url: str, normal: str | None) -> None:
    assert normalise_htu(url) == normal


def test_the_request_url_is_read_from_each_event_shape() -> None:
    rest = dpop_event("rest_request", {})
    http = dpop_event("http", {}, method="POST")
    assert request_target(rest) is not None
    assert (request_target(rest).method, request_target(rest).url) == ("GET", URL)  # type: ignore[union-attr]
    assert (request_target(http).method, request_target(http).url) == ("POST", URL)  # type: ignore[union-attr]
    # No domainName: the Host header. A loopback host is the local stack, over http.
    del rest["requestContext"]["domainName"]
    rest["headers"]["Host"] = "127.0.0.1:8080"
    assert request_target(rest).url == "http://127.0.0.1:8080/v1/items/42"  # type: ignore[union-attr]
    del rest["requestContext"]["path"]
    assert request_target(rest) is None


def test_the_per_container_replay_memory_forgets_a_proof_only_after_its_window() -> None:
    guard = MemoryReplayGuard(size=10)
    assert guard.first_use("k", "j", NOW + 60, NOW)
    assert not guard.first_use("k", "j", NOW + 60, NOW + 60)
    assert guard.first_use("k", "j", NOW + 200, NOW + 61)  # by then its iat refuses it anyway
    assert guard.first_use("other key", "j", NOW + 60, NOW)


# -- the token endpoint ------------------------------------------------------------------------


@dataclass
class Endpoint:
    endpoint: TokenEndpoint
    authorizer: LocalAuthorizer

    def exchange(self, bot: Bot, proof: str | None) -> tuple[str, str]:
        basic = base64.b64encode(f"{bot.client_id}:{bot.secret.reveal()}".encode()).decode()
        headers = {"authorization": f"Basic {basic}"}
        if proof is not None:
            headers["dpop"] = proof
        issued, _ = self.endpoint.exchange(
            content_type=FORM,
            form={"grant_type": ["client_credentials"]},
            headers=headers,
            issuer=ISSUER,
            request_url=f"https://{HOST}/v1/oauth2/token",
        )
        return issued.access_token, issued.token_type


def token_endpoint(authorizer: LocalAuthorizer, **environment: str) -> Endpoint:
    from gatekey.config import Config
    from gatekey.wiring import dpop_proofs

    class Keys:
        def signer(self, now: int) -> Any:
            return authorizer.signer

    config = Config.from_env(
        {"TABLE_NAME": "t", "PEPPER_SECRET_ARN": "p", "SIGNING_KEY_ID": "k", **environment}
    )
    endpoint = TokenEndpoint(
        store=authorizer.store,
        hasher=authorizer.hasher,
        signing_keys=Keys(),  # type: ignore[arg-type]
        audience="gatekey",
        lifetime=3600,
        clock=lambda: int(authorizer.clock[0]),
        last_seen_interval=900,
        proofs=dpop_proofs(config, authorizer.hasher, required_nonce=True),
    )
    return Endpoint(endpoint, authorizer)


TOKEN_URL = f"{ISSUER}/oauth2/token"


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return parsed


def test_the_token_endpoint_binds_a_token_to_the_proofs_key(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    holder = Holder()
    token, token_type = token_endpoint(authorizer).exchange(bot, holder.proof("POST", TOKEN_URL))
    assert token_type == "DPoP"
    assert claims_of(token)["cnf"] == {"jkt": holder.jkt}
    event = dpop_event("http", dpop_headers(token, holder.proof(access_token=token)))
    assert decide(authorizer, event) == "allowed"
    # Its API's own URL is as good as the advertised one.
    api_url = f"https://{HOST}/v1/oauth2/token"
    _, token_type = token_endpoint(authorizer).exchange(bot, holder.proof("POST", api_url))
    assert token_type == "DPoP"


def test_without_a_proof_the_token_is_a_bearer_token_unless_dpop_is_required(
    authorizer: LocalAuthorizer,
) -> None:
    endpoint = token_endpoint(authorizer)
    token, token_type = endpoint.exchange(authorizer.bot(), None)
    assert (token_type, "cnf" in claims_of(token)) == ("Bearer", False)
    required = authorizer.bot(dpop_required=True)
    with pytest.raises(InvalidDPoPProof) as refused:
        endpoint.exchange(required, None)
    assert oauth_error(refused.value).error == "invalid_dpop_proof"
    assert oauth_error(refused.value).status == 400
    _, token_type = endpoint.exchange(required, Holder().proof("POST", TOKEN_URL))
    assert token_type == "DPoP"


@pytest.mark.parametrize(
    "proof",
    [
        lambda h: h.proof("GET", TOKEN_URL),
        lambda h: h.proof("POST", "https://evil.example.com/oauth2/token"),
        lambda h: h.proof("POST", TOKEN_URL, iat=NOW - 3600),
        lambda h: Holder(jwk=h.jwk).proof("POST", TOKEN_URL),
        lambda h: Holder(key=h.key, jwk=h.key.as_dict(private=True)).proof("POST", TOKEN_URL),
        lambda h: "not a proof",
    ],
)
def test_the_token_endpoint_refuses_a_bad_proof(
    authorizer: LocalAuthorizer, bot: Bot, proof: Callable[[Holder], str]
) -> None:
    with pytest.raises(InvalidDPoPProof) as refused:
        token_endpoint(authorizer).exchange(bot, proof(Holder()))
    assert oauth_error(refused.value).error == "invalid_dpop_proof"


def test_the_token_endpoint_refuses_a_replayed_proof(authorizer: LocalAuthorizer, bot: Bot) -> None:
    endpoint = token_endpoint(authorizer)
    proof = Holder().proof("POST", TOKEN_URL)
    endpoint.exchange(bot, proof)
    with pytest.raises(InvalidDPoPProof, match="used before"):
        endpoint.exchange(bot, proof)


def test_with_nonces_the_token_endpoint_asks_for_one_and_accepts_it(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    endpoint = token_endpoint(authorizer, DPOP_NONCES="true")
    holder = Holder()
    with pytest.raises(UseDPoPNonce) as refused:
        endpoint.exchange(bot, holder.proof("POST", TOKEN_URL))
    assert (oauth_error(refused.value).status, oauth_error(refused.value).error) == (
        400,
        "use_dpop_nonce",
    )
    nonce = endpoint.endpoint.dpop_nonce(int(authorizer.clock[0]))
    assert nonce is not None
    # A client ten minutes slow: the nonce, not its iat, says the proof is fresh.
    proof = holder.proof("POST", TOKEN_URL, iat=NOW - 600, nonce=nonce)
    assert endpoint.exchange(bot, proof)[1] == "DPoP"
    assert token_endpoint(authorizer).endpoint.dpop_nonce(NOW) is None  # nonces off


def test_the_metadata_advertises_the_dpop_algorithms() -> None:
    for document in (authorization_server_metadata(ISSUER), openid_configuration(ISSUER)):
        advertised = document["dpop_signing_alg_values_supported"]
        assert advertised == ["ES256", "Ed25519", "EdDSA", "PS256", "RS256"]
        assert set(advertised) == set(ALGS)


# -- dpop_required: model, store layout, admin, CLI --------------------------------------------


def test_dpop_required_is_stored_only_when_set_and_read_back(
    authorizer: LocalAuthorizer,
) -> None:
    from gatekey.store.layout import token_from_plain, token_to_plain

    plain = token_to_plain(authorizer.bot().token)
    assert plain["dpop_required"] is None  # absent: items from before DPoP read the same
    # As DynamoDB holds it: None is no attribute.
    assert (
        token_from_plain({k: v for k, v in plain.items() if v is not None}).dpop_required is False
    )
    required = token_to_plain(authorizer.bot(dpop_required=True).token)
    assert required["dpop_required"] is True
    stored = {k: v for k, v in required.items() if v is not None}
    assert token_from_plain(stored).dpop_required is True


def test_an_admin_sets_and_clears_dpop_required_audited(authorizer: LocalAuthorizer) -> None:
    from gatekey.admin import Actor, TokenAdmin
    from gatekey.model import AuditAction

    admin = TokenAdmin(store=authorizer.store, hasher=authorizer.hasher, clock=lambda: NOW + 60)
    actor = Actor("arn:aws:iam::123456789012:user/admin")
    created = admin.create(
        actor,
        name="bot",
        duration=authorizer.bot().token.duration,
        routes=("*",),
        scopes=(),
        owner=None,
        rotation=authorizer.bot().token.rotation,
        dpop_required=True,
    ).token
    assert admin.get(created.client_id).dpop_required is True
    assert admin.update(actor, created.client_id, dpop_required=False).dpop_required is False
    events = admin.events(created.client_id).items
    assert any(
        e.action is AuditAction.UPDATED and e.details == {"dpop_required": False} for e in events
    )
    assert any(
        e.action is AuditAction.CREATED and e.details["dpop_required"] is True for e in events
    )


def test_the_admin_api_and_the_cli_carry_dpop_required() -> None:
    from gatekey.admin_api import CreateTokenRequest, TokenOut, UpdateTokenRequest
    from gatekey_cli.main import _parser

    assert CreateTokenRequest(name="x").dpop_required is False
    assert UpdateTokenRequest(dpop_required=True).dpop_required is True
    assert "dpop_required" in TokenOut.model_fields
    parser = _parser()
    assert parser.parse_args(["create", "x", "--dpop-required"]).dpop_required is True
    assert parser.parse_args(["create", "x"]).dpop_required is None
    update = ["update", "gk_x", "--no-dpop-required"]
    assert parser.parse_args(update).dpop_required is False


@pytest.mark.parametrize("bits", [1024, 8192])
def test_rsa_proof_keys_are_2048_to_4096_bits(
    authorizer: LocalAuthorizer, bot: Bot, bits: int
) -> None:
    with warnings.catch_warnings():  # joserfc warns of 1024 bits: the point here
        warnings.simplefilter("ignore")
        holder = Holder("PS256", key=RSAKey.generate_key(bits, private=True))
    token = bound_token(authorizer, bot, holder.jkt)
    event = dpop_event("rest_request", dpop_headers(token, holder.proof(access_token=token)))
    assert decide(authorizer, event) == "invalid_dpop_proof"


def test_an_rsa_proof_key_with_a_huge_exponent_is_refused_before_any_verification() -> None:
    from gatekey.dpop import ProofVerifier

    jwk = RSAKey.generate_key(2048).as_dict(private=False) | {
        "e": b64url((2**64 + 1).to_bytes(9, "big"))
    }
    header = b64url(json.dumps({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}).encode())
    proof = f"{header}.{b64url(b'{}')}.{b64url(b'x' * 256)}"
    with pytest.raises(InvalidDPoPProof, match="not a valid public key"):
        ProofVerifier().verify(proof, method="GET", urls=(URL,), now=NOW)
