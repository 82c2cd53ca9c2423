"""The authorizer's decisions on the in-memory store, with a fixed pepper and a signing key held
in memory: every credential form and event shape, routes and scopes, disabled, expired, revoked
and rotated tokens, each access-token refusal under its reason, the status cache and the
remembered answers as the clock moves, ambiguous credentials, and malformed input (never an
Allow, never a 500). Each AWS adapter's own path stays on moto: the handler's event shapes, the
DynamoDB read, the last-seen write, KMS's keys and failing dependencies
(tests/integration/test_authorizer_*.py, tests/integration/test_last_seen.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekey.access_tokens import issue_access_token
from gatekey.admin import Actor, TokenAdmin
from gatekey.apigw import arn_matches
from gatekey.credentials import ClientSecret
from gatekey.errors import DependencyError
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, TokenStatus, new_service_token
from gatekey.signing import LocalKeySigner, b64url
from gatekey_local.gateway import Answer, Functions, Gateway
from gatekey_local.policy import policy_allows
from gatekey_local.template import Authorizer as AuthorizerSpec
from gatekey_local.template import Route
from support.constants import ADMIN, ARN, ISSUER, NOW
from support.harness import (
    Bot,
    LocalAuthorizer,
    Unauthorized,
    assert_not_allowed,
    authorizer_event,
    bad_credentials,
    change,
    credential_headers,
    local_authorizer,
)

FORMS = ["gatekey_headers", "access_headers", "access_json", "basic", "bearer"]
SHAPES = ["rest_request", "rest_token", "http"]
STATUS_TTL = 30  # the authorizer's default StatusCacheTtlSeconds


@pytest.fixture
def make_authorizer(unit_hasher: Hasher) -> Callable[..., LocalAuthorizer]:
    """A cold start of the authorizer, configured by the function's environment variables."""

    def build(**environment: str) -> LocalAuthorizer:
        return local_authorizer(unit_hasher, environment)

    return build


@pytest.fixture
def authorizer(make_authorizer: Callable[..., LocalAuthorizer]) -> LocalAuthorizer:
    return make_authorizer()


@pytest.fixture
def bot(authorizer: LocalAuthorizer) -> Bot:
    return authorizer.bot()


def headers_for(authorizer: LocalAuthorizer, form: str, bot: Bot) -> dict[str, str]:
    jwt = authorizer.jwt(bot, scopes=bot.token.scopes) if form == "bearer" else None
    return credential_headers(form, bot, jwt)


def allowed(response: dict[str, Any], method: str = "GET", path: str = "/items/42") -> bool:
    """What API Gateway would do with this answer for METHOD /path."""
    if "isAuthorized" in response:
        return bool(response["isAuthorized"])
    return policy_allows(response["policyDocument"], f"{ARN}/{method}{path}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rotate(authorizer: LocalAuthorizer, bot: Bot, **grace: Any) -> ClientSecret:
    admin = TokenAdmin(
        store=authorizer.store, hasher=authorizer.hasher, clock=lambda: int(authorizer.clock[0])
    )
    return admin.rotate(Actor(ADMIN), bot.client_id, **grace).secret


# -- every credential form, every event shape ------------------------------------------------


@pytest.mark.parametrize("shape", ["rest_request", "http"])
@pytest.mark.parametrize("form", FORMS)
def test_every_credential_form_is_allowed_in_request_events(
    authorizer: LocalAuthorizer, shape: str, form: str
) -> None:
    bot = authorizer.bot(scopes=("read", "write"))
    response = authorizer.call(shape, headers_for(authorizer, form, bot))
    assert allowed(response)
    assert response["principalId"] == bot.client_id
    assert response["context"] == {
        "client_id": bot.client_id,
        "name": "ci-bot",
        "scopes": "read write",
        "auth_method": form,
        "expires_at": "2028-01-15T08:00:00Z",
    }
    assert all(isinstance(v, str | int | bool) for v in response["context"].values())


@pytest.mark.parametrize("form", ["basic", "bearer"])
def test_token_events_carry_basic_or_bearer(authorizer: LocalAuthorizer, form: str) -> None:
    bot = authorizer.bot()
    header = headers_for(authorizer, form, bot)["Authorization"]
    response = authorizer.call("rest_token", token=header)
    assert allowed(response)
    assert response["context"]["auth_method"] == form


def test_http_api_simple_responses_decide_per_route(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(HTTP_API_SIMPLE_RESPONSES="true")
    bot = authorizer.bot(routes=("GET /items/*",))
    headers = credential_headers("gatekey_headers", bot)
    answer = authorizer.call("http", headers)
    assert answer["isAuthorized"] is True
    assert answer["context"]["client_id"] == bot.client_id
    assert authorizer.call("http", headers, method="DELETE") == {"isAuthorized": False}
    wrong = {**headers, "Gatekey-Client-Secret": ClientSecret.generate().reveal()}
    assert authorizer.call("http", wrong) == {"isAuthorized": False}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_credentials_at_all_is_401(authorizer: LocalAuthorizer, shape: str) -> None:
    with pytest.raises(Unauthorized):
        authorizer.call(shape, {})


def test_a_form_switched_off_counts_as_no_credentials(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(ACCEPT_BASIC="false", ACCEPT_ACCESS_HEADERS="false")
    bot = authorizer.bot()
    for form in ("basic", "access_headers"):
        with pytest.raises(Unauthorized):
            authorizer.call("rest_request", credential_headers(form, bot))
    assert allowed(authorizer.call("rest_request", credential_headers("gatekey_headers", bot)))


# -- bad credentials ---------------------------------------------------------------------------


def test_wrong_revoked_disabled_expired_or_unknown_credentials_are_403(
    authorizer: LocalAuthorizer,
) -> None:
    cases = bad_credentials(authorizer)
    authorizer.clock[0] = NOW + 3600
    for case, headers in cases.items():
        response = authorizer.call("rest_request", headers)
        assert not allowed(response), case
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny", case
        assert "context" not in response


def test_each_bad_credential_is_denied_under_its_own_reason(authorizer: LocalAuthorizer) -> None:
    cases = bad_credentials(authorizer)
    authorizer.clock[0] = NOW + 3600
    reasons = {case: authorizer.outcome(headers) for case, headers in cases.items()}
    assert reasons == {
        "wrong secret": "invalid_credentials",
        "revoked": "token_revoked",
        "disabled": "token_disabled",
        "expired": "token_expired",
        "unknown": "unknown_client",
        "bad checksum": "malformed_credential",  # refused before any read
        "id only": "malformed_credential",
    }


def test_strict_mode_answers_401_to_every_bad_credential(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    # (That the function counts them as denials is tested through it, on moto.)
    authorizer = make_authorizer(STRICT_MODE="true")
    cases = bad_credentials(authorizer)
    authorizer.clock[0] = NOW + 3600
    for case, headers in cases.items():
        with pytest.raises(Unauthorized):
            authorizer.call("rest_request", headers)
        outcome = authorizer.authorizer.authorize(
            authorizer_event("rest_request", headers, method="GET", path="/items/42")
        )
        assert (outcome.unauthorized, outcome.allowed, outcome.response) == (True, False, {}), case


# -- routes and scopes -----------------------------------------------------------------------


def test_an_allowed_policy_covers_the_tokens_routes_and_no_others(
    authorizer: LocalAuthorizer,
) -> None:
    # GIVEN a token for two route patterns, authorized once on one of them
    bot = authorizer.bot(routes=("GET /items/*", "POST /orders"))
    policy = authorizer.call("rest_request", credential_headers("basic", bot))
    # THEN API Gateway's cached copy answers right for every other route
    assert allowed(policy, "GET", "/items/42")
    assert allowed(policy, "GET", "/items/7/parts/1")
    assert allowed(policy, "POST", "/orders")
    assert not allowed(policy, "DELETE", "/items/42")
    assert not allowed(policy, "GET", "/orders")
    assert not allowed(policy, "POST", "/orders/1")
    assert not allowed(policy, "GET", "/admin")
    # AND a request to a route it may not reach gets the same policy: 403 from API Gateway
    other = authorizer.call("rest_request", credential_headers("basic", bot), method="DELETE")
    assert other["policyDocument"] == policy["policyDocument"]
    assert not allowed(other, "DELETE", "/items/42")


def test_an_access_token_carries_the_scopes_it_was_granted_not_all_of_the_tokens(
    authorizer: LocalAuthorizer,
) -> None:
    bot = authorizer.bot(scopes=("read", "write"))
    narrow = authorizer.call("rest_request", bearer(authorizer.jwt(bot, scopes=("read",))))
    assert narrow["context"]["scopes"] == "read"
    wide = authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    assert wide["context"]["scopes"] == "read write"


@contextmanager
def deadline(seconds: float = 60) -> Iterator[None]:
    """Fail what does not end within a bound far beyond what it needs (milliseconds): a
    liveness check, not a performance target (those are in `make bench`). A signal, not a
    thread, because a backtracking regex never gives another thread the GIL; the regex engine
    checks for signals, so it is interrupted."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_many_wildcards_against_a_long_path_answer_at_once() -> None:
    pattern = f"{ARN}/GET/a*a*a*a*a*a*a*a*b"
    subject = f"{ARN}/GET/" + "a" * 5_000
    with deadline():
        assert not arn_matches(pattern, subject)
    assert arn_matches(pattern, subject + "b")


def test_an_http_api_route_with_wildcards_and_a_long_path_is_decided(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(HTTP_API_SIMPLE_RESPONSES="true")
    bot = authorizer.bot(routes=("GET /a*a*a*a*a*a*b",))
    event = authorizer_event(
        "http", credential_headers("basic", bot), method="GET", path="/" + "a" * 5_000
    )
    with deadline():
        assert authorizer.invoke(event) == {"isAuthorized": False}


def test_the_allow_policy_is_evaluated_with_the_same_matcher() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Resource": [f"{ARN}/GET/items/*/?x"]}]}
    assert policy_allows(policy, f"{ARN}/GET/items/1/2/ax")
    assert not policy_allows(policy, f"{ARN}/GET/items/1/2/x")


# -- rotated secrets and their grace ---------------------------------------------------------


def test_a_previous_secret_works_only_until_its_grace_time(authorizer: LocalAuthorizer) -> None:
    bot = authorizer.bot()
    new_secret = ClientSecret.generate()
    change(
        authorizer,
        bot,
        secret_hash=authorizer.hasher.hash(new_secret),
        previous_secret_hash=bot.token.secret_hash,
        previous_client_secret_expires_at=NOW + 600,
        client_secret_version=2,
    )
    old, new = (
        credential_headers("gatekey_headers", bot),
        credential_headers("gatekey_headers", Bot(bot.token, new_secret)),
    )
    assert allowed(authorizer.call("rest_request", old))
    assert allowed(authorizer.call("rest_request", new))
    authorizer.clock[0] = NOW + 600
    assert not allowed(authorizer.call("rest_request", old))
    assert allowed(authorizer.call("rest_request", new))


def test_a_remembered_allow_ends_with_the_previous_secrets_grace_not_later(
    authorizer: LocalAuthorizer,
) -> None:
    # GIVEN a grace that ends 10 s from now, well within the 30 s status cache
    bot = authorizer.bot()
    change(
        authorizer,
        bot,
        secret_hash=authorizer.hasher.hash(ClientSecret.generate()),
        previous_secret_hash=bot.token.secret_hash,
        previous_client_secret_expires_at=NOW + 70,
        client_secret_version=2,
    )
    old = credential_headers("gatekey_headers", bot)
    assert allowed(authorizer.call("rest_request", old))
    authorizer.clock[0] = NOW + 69
    assert allowed(authorizer.call("rest_request", old))
    # THEN the answer held in memory stops with the grace
    authorizer.clock[0] = NOW + 70
    assert not allowed(authorizer.call("rest_request", old))


def test_a_rotation_without_grace_ends_the_old_secrets_access_tokens(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400)
    assert authorizer.outcome(bearer(token)) == "allowed"
    rotate(authorizer, bot)
    authorizer.clock[0] += STATUS_TTL  # the status cache's copy expires
    assert authorizer.outcome(bearer(token)) == "secret_rotated"


def test_the_previous_secrets_access_tokens_end_with_its_grace(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400)
    grace_ends = int(authorizer.clock[0]) + 3600
    rotate(authorizer, bot, previous_expires_at=grace_ends)
    authorizer.clock[0] += STATUS_TTL
    assert authorizer.outcome(bearer(token)) == "allowed"
    authorizer.clock[0] = grace_ends
    assert authorizer.outcome(bearer(token)) == "secret_rotated"


def test_an_access_token_without_a_secret_version_is_refused_once_the_token_was_rotated(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    # Access tokens minted before secret versions were stamped on them.
    def legacy() -> str:
        token = authorizer.jwt(bot)
        head, body, _ = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        del claims["client_secret_version"]
        signing_input = f"{head}.{b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64url(authorizer.signer.sign(signing_input.encode()))}"

    assert authorizer.outcome(bearer(legacy())) == "allowed"  # never rotated: version 1
    rotate(authorizer, bot, previous_expires_at=int(authorizer.clock[0]) + 3600)
    authorizer.clock[0] += STATUS_TTL
    assert authorizer.outcome(bearer(legacy())) == "secret_rotated"


def test_a_rotated_secret_works_at_once_not_after_the_status_cache(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    assert authorizer.outcome(credential_headers("gatekey_headers", bot)) == "allowed"
    new = Bot(bot.token, rotate(authorizer, bot))  # the old copy is still in the status cache
    assert authorizer.outcome(credential_headers("gatekey_headers", new)) == "allowed"


def test_an_access_token_of_a_new_secret_works_at_once(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    assert authorizer.outcome(bearer(authorizer.jwt(bot))) == "allowed"
    rotated = Bot(bot.token, rotate(authorizer, bot))
    current = authorizer.store.get(bot.client_id, consistent=True)
    assert current.client_secret_version == 2
    assert authorizer.outcome(bearer(authorizer.jwt(Bot(current, rotated.secret)))) == "allowed"


def test_wrong_secrets_re_read_the_token_at_most_once_per_interval(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    assert authorizer.outcome(credential_headers("gatekey_headers", bot)) == "allowed"
    reads = authorizer.store.reads
    before = len(reads)
    for _ in range(50):
        wrong = Bot(bot.token, ClientSecret.generate())
        assert authorizer.outcome(credential_headers("gatekey_headers", wrong)) != "allowed"
    assert len(reads) - before == 1
    assert reads[-1] == (bot.client_id, True)  # a consistent read: it may be just rotated
    authorizer.clock[0] += 5  # REREAD_INTERVAL
    wrong = Bot(bot.token, ClientSecret.generate())
    assert authorizer.outcome(credential_headers("gatekey_headers", wrong)) != "allowed"
    assert len(reads) - before == 2


# -- the status cache and the last-seen write as the clock moves --------------------------------


@pytest.mark.parametrize("form", ["gatekey_headers", "bearer"])
def test_revocation_is_denied_once_the_status_cache_ttl_has_passed(
    authorizer: LocalAuthorizer, form: str
) -> None:
    bot = authorizer.bot()
    headers = headers_for(authorizer, form, bot)
    assert allowed(authorizer.call("rest_request", headers))
    change(authorizer, bot, status=TokenStatus.REVOKED)
    authorizer.clock[0] += 29  # within StatusCacheTtlSeconds (30): the cached status answers
    assert allowed(authorizer.call("rest_request", headers))
    authorizer.clock[0] += 1
    assert not allowed(authorizer.call("rest_request", headers))


def test_an_unknown_client_id_is_read_once_per_status_cache_ttl(
    authorizer: LocalAuthorizer,
) -> None:
    ghost, secret = new_service_token(name="ghost", hasher=authorizer.hasher, now=NOW)
    headers = credential_headers("gatekey_headers", Bot(ghost, secret))
    for _ in range(10):
        assert authorizer.outcome(headers) == "unknown_client"
    assert authorizer.store.reads == [(ghost.client_id, False)]
    authorizer.clock[0] += STATUS_TTL
    assert authorizer.outcome(headers) == "unknown_client"
    assert len(authorizer.store.reads) == 2


def test_last_seen_is_written_at_most_once_per_interval(authorizer: LocalAuthorizer) -> None:
    bot = authorizer.bot()
    headers = credential_headers("gatekey_headers", bot)
    for _ in range(5):
        authorizer.call("rest_request", headers)
    first = authorizer.store.get(bot.client_id, consistent=True).last_seen_at
    assert first == NOW + 60
    authorizer.clock[0] += 899
    authorizer.call("rest_request", headers)
    assert authorizer.store.get(bot.client_id, consistent=True).last_seen_at == first
    # Past the interval, the next authorization that is not answered from memory writes it.
    authorizer.clock[0] += 31
    authorizer.call("rest_request", headers)
    assert authorizer.store.get(bot.client_id, consistent=True).last_seen_at == NOW + 990
    assert [at for _, at, _ in authorizer.store.last_seen_writes] == [NOW + 60, NOW + 990]


def test_a_recent_use_already_on_the_item_is_not_written_again(
    authorizer: LocalAuthorizer,
) -> None:
    bot = authorizer.bot()
    authorizer.store.record_last_seen(bot.client_id, NOW, min_interval=900)  # another container
    written = list(authorizer.store.last_seen_writes)
    authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    assert authorizer.store.last_seen_writes == written  # the item read shows a recent use
    assert authorizer.store.get(bot.client_id, consistent=True).last_seen_at == NOW


def test_a_failed_last_seen_write_is_reported_and_the_allow_stands(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    failure = DependencyError("dynamodb UpdateItem failed: EndpointConnectionError")
    authorizer.store.write_failure = failure
    response = authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert authorizer.last_seen_failures == [failure]


# -- access tokens: each refusal under its reason ----------------------------------------------


def test_each_access_token_refusal_is_decided_under_its_own_reason(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    # Well signed by the deployment's key unless said otherwise; the reason is what the handler
    # logs and counts, so an operator can tell a misconfigured client from a forgery.
    now = int(authorizer.clock[0])

    def signed(*, issuer: str = ISSUER, audience: str = "gatekey", at: int = now) -> str:
        return issue_access_token(
            bot.token,
            authorizer.signer,
            issuer=issuer,
            audience=audience,
            lifetime=600,
            scopes=(),
            now=at,
        ).access_token

    assert authorizer.outcome(bearer(signed(issuer="https://elsewhere.example"))) == (
        "wrong_issuer"
    )
    assert authorizer.outcome(bearer(signed(audience="another-api"))) == "wrong_audience"
    assert authorizer.outcome(bearer(signed(at=now + 120))) == "not_yet_valid"
    head, body, _ = signed().split(".")
    other = signed(at=now - 1).split(".")[2]  # the signature of other claims
    assert authorizer.outcome(bearer(f"{head}.{body}.{other}")) == "bad_signature"
    assert authorizer.outcome(bearer(signed(at=now - 600 - 30))) == "token_expired"
    stranger = LocalKeySigner(ec.generate_private_key(ec.SECP256R1()))
    forged = issue_access_token(
        bot.token, stranger, issuer=ISSUER, audience="gatekey", lifetime=600, scopes=(), now=now
    ).access_token
    assert authorizer.outcome(bearer(forged)) == "unknown_key"
    assert authorizer.outcome(bearer(signed())) == "allowed"


def test_an_access_token_longer_lived_than_any_issued_is_refused(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400 + 1)  # well signed, by the real key
    assert authorizer.outcome(bearer(token)) == "invalid_credentials"


def test_a_key_taken_out_of_the_ring_stops_its_tokens_in_warm_containers(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    # GIVEN a token verified with a key that the ring then replaces (say it was compromised)
    token = authorizer.jwt(bot, lifetime=86_400)
    assert authorizer.outcome(bearer(token)) == "allowed"
    successor = LocalKeySigner(ec.generate_private_key(ec.SECP256R1()))
    authorizer.keys.clear()
    authorizer.keys[successor.public_key.kid] = successor.public_key
    # THEN a warm container stops accepting it once its keys are refetched, not at its exp
    authorizer.clock[0] += 299  # the verified token is remembered until then
    assert authorizer.outcome(bearer(token)) == "allowed"
    # (that allow, decided on the remembered verification, is remembered no longer than it)
    authorizer.clock[0] += 1
    assert authorizer.outcome(bearer(token)) == "unknown_key"


# -- forged and tampered access tokens (what an attacker tries) -------------------------------


def denied(authorizer: LocalAuthorizer, headers: dict[str, str], **kwargs: Any) -> bool:
    """True when API Gateway would not let the request through (401, or a policy denying it)."""
    try:
        response = authorizer.call("rest_request", headers, **kwargs)
    except Unauthorized:
        return True
    return not policy_allows(response["policyDocument"], f"{ARN}/GET/items/42")


def segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


@pytest.fixture
def genuine(authorizer: LocalAuthorizer, bot: Bot) -> str:
    token = authorizer.jwt(bot)
    assert not denied(authorizer, bearer(token))  # the control: a genuine token is allowed
    return token


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return pyjwt.get_unverified_header(token), pyjwt.decode(
        token, options={"verify_signature": False}
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_casing(authorizer: LocalAuthorizer, genuine: str, alg: str) -> None:
    header, claims = parts(genuine)
    forged = segments({**header, "alg": alg}, claims)
    for token in (forged + ".", forged):
        assert denied(authorizer, bearer(token))


def test_hs256_keyed_with_the_public_key(authorizer: LocalAuthorizer, genuine: str) -> None:
    header, claims = parts(genuine)
    public = authorizer.signer.public_key.key
    assert isinstance(public, rsa.RSAPublicKey)
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
        json.dumps(authorizer.signer.public_key.jwk()).encode(),
    ):
        signing_input = segments({**header, "alg": "HS256"}, claims)
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert denied(authorizer, bearer(f"{signing_input}.{b64url(mac)}"))


def _attacker_token(claims: dict[str, Any], **header: Any) -> str:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return pyjwt.encode(claims, attacker, algorithm="RS256", headers={"typ": "at+jwt", **header})


def test_a_token_signed_by_an_unknown_key_with_a_known_kid(
    authorizer: LocalAuthorizer, genuine: str
) -> None:
    header, claims = parts(genuine)
    assert denied(authorizer, bearer(_attacker_token(claims, kid=header["kid"])))


@pytest.mark.parametrize("pointer", ["jku", "x5u", "jwk"])
def test_key_pointers_in_the_header_are_ignored(
    authorizer: LocalAuthorizer, genuine: str, pointer: str
) -> None:
    header, claims = parts(genuine)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    value: Any = attacker_jwk if pointer == "jwk" else "https://attacker.example/jwks.json"
    for kid in (header["kid"], "attacker"):
        token = pyjwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={"typ": "at+jwt", "kid": kid, pointer: value},
        )
        assert denied(authorizer, bearer(token))


def test_a_tampered_payload_with_the_original_signature(
    authorizer: LocalAuthorizer, genuine: str
) -> None:
    header, claims = parts(genuine)
    signature = genuine.split(".")[2]
    for change_ in ({"client_id": "gk_someone_else"}, {"scope": "admin"}, {"exp": NOW + 10**8}):
        forged = segments(header, {**claims, **change_})
        assert denied(authorizer, bearer(f"{forged}.{signature}"))


def test_a_stripped_signature(authorizer: LocalAuthorizer, genuine: str) -> None:
    head, body, _ = genuine.split(".")
    for token in (f"{head}.{body}.", f"{head}.{body}", f"{head}.{body}.AAAA"):
        assert denied(authorizer, bearer(token))


@pytest.mark.parametrize(
    ("header_change", "claims_change"),
    [
        ({"typ": "JWT"}, {}),
        ({"typ": None}, {}),
        ({}, {"aud": "another-api"}),
        ({}, {"iss": "https://attacker.example"}),
        ({}, {"exp": NOW}),
        ({}, {"nbf": NOW + 3600}),
        ({}, {"iat": NOW + 3600}),
        ({}, {"client_id": None}),
    ],
)
def test_wrong_typ_aud_iss_or_times_even_when_properly_signed(
    authorizer: LocalAuthorizer,
    genuine: str,
    header_change: dict[str, Any],
    claims_change: dict[str, Any],
) -> None:
    header, claims = parts(genuine)
    header = {k: v for k, v in {**header, **header_change}.items() if v is not None}
    claims = {k: v for k, v in {**claims, **claims_change}.items() if v is not None}
    signing_input = segments(header, claims)
    signature = authorizer.signer.sign(signing_input.encode())
    assert denied(authorizer, bearer(f"{signing_input}.{b64url(signature)}"))


def test_an_expired_token(authorizer: LocalAuthorizer, bot: Bot) -> None:
    token = authorizer.jwt(bot, lifetime=60)
    authorizer.clock[0] += 60 + 30  # exp plus the leeway
    assert denied(authorizer, bearer(token))


def test_a_token_for_a_revoked_service_token(
    authorizer: LocalAuthorizer, bot: Bot, genuine: str
) -> None:
    current = authorizer.store.get(bot.client_id, consistent=True)
    authorizer.store.update(
        replace(current, updated_at=NOW, status=TokenStatus.REVOKED),
        AuditEvent(bot.client_id, AuditAction.REVOKED, "admin", NOW),
    )
    authorizer.clock[0] += 30  # past the status cache
    assert denied(authorizer, bearer(genuine))


def test_credentials_with_a_bad_checksum(authorizer: LocalAuthorizer, bot: Bot) -> None:
    def flip(value: str) -> str:
        return value[:-1] + ("A" if value[-1] != "A" else "B")

    secret = bot.secret.reveal()
    for client_id, candidate in ((flip(bot.client_id), secret), (bot.client_id, flip(secret))):
        assert denied(
            authorizer, {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": candidate}
        )
        pair = base64.b64encode(f"{client_id}:{candidate}".encode()).decode()
        assert denied(authorizer, {"Authorization": f"Basic {pair}"})


def test_non_utf8_basic_credentials(authorizer: LocalAuthorizer) -> None:
    pair = base64.b64encode(b"\xff\xfe:\xc3\x28").decode()
    assert denied(authorizer, {"Authorization": f"Basic {pair}"})


HEADERS = (
    "Gatekey-Client-Id",
    "Gatekey-Client-Secret",
    "CF-Access-Client-Id",
    "CF-Access-Client-Secret",
    "Authorization",
)
HOSTILE = [
    "' OR '1'='1",
    "1; DROP TABLE tokens; --",
    '{"cf-access-client-id": {"$ne": null}, "cf-access-client-secret": {"$gt": ""}}',
    '{"cf-access-client-id": ["a", "b"]}',
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "gk_../../admin",
    "Bearer ../../.well-known/jwks.json",
    "Basic Li4vLi4vZXRjL3Bhc3N3ZDo=",
    "Bearer " + "A" * 200_000,
    "\x00\x01\x02",
    "\udcff\udcfe",  # not UTF-8: a lone surrogate, as a decoder with surrogateescape leaves it
    "gks_" + "9" * 49,
    "Bearer null",
    "Basic null",
    "{}",
    "[]",
    "null",
]


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:24])
def test_hostile_strings_in_every_header(
    authorizer: LocalAuthorizer, bot: Bot, header: str, value: str
) -> None:
    # Alone, and beside otherwise valid credentials: neither may be let through.
    assert denied(authorizer, {header: value})
    mixed = {**credential_headers("gatekey_headers", bot), header: value}
    if header.startswith("Gatekey-"):
        assert denied(authorizer, mixed)


# -- ambiguity: an Allow may depend only on what API Gateway caches it under ------------------


class CachedApi:
    """One route behind the authorizer as API Gateway runs it (the local stack's gateway),
    with the result cache keyed on `identity` headers."""

    def __init__(self, authorizer: LocalAuthorizer, payload: str, identity: tuple[str, ...]):
        def backend(event: dict[str, Any], _: Any) -> dict[str, Any]:
            return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}

        spec = AuthorizerSpec("Cached", "Gatekey", payload, identity, ttl=300)
        route = Route("Api", "GET", "/items/{id}", "Backend", "LAMBDA", spec)
        functions = Functions({"Gatekey": authorizer.lambda_handler, "Backend": backend})
        self.gateway = Gateway(routes=[route], schedules={}, functions=functions, credentials={})

    def get(self, headers: dict[str, str]) -> Answer:
        return self.gateway.handle("GET", "/items/42", list(headers.items()), b"", "127.0.0.1")


def test_an_allow_decided_on_other_headers_is_never_cached_under_authorization(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    # GIVEN a REQUEST authorizer cached on Authorization only (the shape the review attacked)
    api = CachedApi(authorizer, "REQUEST", ("authorization",))
    anything = {"Authorization": "Basic " + base64.b64encode(b"any:thing").decode()}
    # WHEN valid Gatekey headers come with that Authorization value
    assert api.get({**credential_headers("gatekey_headers", bot), **anything}).status == 403
    # THEN the value alone is no Allow, for this token or anyone
    assert api.get(anything).status == 403


def test_credentials_beside_an_authorization_header_are_ambiguous(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    for form in ("gatekey_headers", "access_headers"):
        sent = {**credential_headers(form, bot), "Authorization": "Bearer the-apis-own-token"}
        assert authorizer.outcome(sent) == "ambiguous_credentials"
    both = {
        **credential_headers("gatekey_headers", bot),
        **credential_headers("access_headers", bot),
    }
    assert authorizer.outcome(both) == "ambiguous_credentials"
    # A header no accepted form reads does not count.
    assert authorizer.outcome({**credential_headers("basic", bot), "X-Other": "1"}) == "allowed"


def test_the_switch_lets_an_apis_own_authorization_pass_beside_service_token_headers(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(REFUSE_AMBIGUOUS_CREDENTIALS="false")
    bot = authorizer.bot()
    own = {"Authorization": "Bearer the-apis-own-token"}
    assert authorizer.outcome({**credential_headers("gatekey_headers", bot), **own}) == "allowed"
    # Two service-token forms at once stay ambiguous.
    both = {
        **credential_headers("gatekey_headers", bot),
        **credential_headers("access_headers", bot),
    }
    assert authorizer.outcome(both) == "ambiguous_credentials"


def test_a_token_authorizer_decides_on_authorization_alone(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    # The demo's cached route: API Gateway hands a TOKEN authorizer its one identity source.
    api = CachedApi(authorizer, "TOKEN", ("authorization",))
    anything = {"Authorization": "Basic " + base64.b64encode(b"any:thing").decode()}
    assert api.get({**credential_headers("gatekey_headers", bot), **anything}).status == 403
    assert api.get(anything).status == 403
    assert api.get(credential_headers("basic", bot)).status == 200


def test_a_pair_this_stack_does_not_accept_is_still_a_credential_header(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    # An API may cache on the Gatekey pair while the stack accepts only Basic and Bearer: an
    # Allow decided on Basic must not be left under the pair's values.
    authorizer = make_authorizer(ACCEPT_GATEKEY_HEADERS="false")
    bot = authorizer.bot()
    api = CachedApi(authorizer, "REQUEST", ("gatekey-client-id", "gatekey-client-secret"))
    chosen = {"Gatekey-Client-Id": "anything", "Gatekey-Client-Secret": "at-all"}
    assert api.get({**credential_headers("basic", bot), **chosen}).status == 403
    assert api.get(chosen).status == 403


def test_a_large_cookie_does_not_deny_valid_credentials(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    big = {"Cookie": "session=" + "x" * 12_000, "X-Trace": "y" * 9_000}
    for form in ("gatekey_headers", "basic"):
        assert authorizer.outcome({**credential_headers(form, bot), **big}) == "allowed"
    too_long = {"Gatekey-Client-Id": bot.client_id, "Gatekey-Client-Secret": "x" * 9_000}
    assert authorizer.outcome(too_long) == "invalid_credentials"


def test_a_refusal_for_ambiguity_is_a_403_not_a_401(authorizer: LocalAuthorizer, bot: Bot) -> None:
    sent = {**credential_headers("gatekey_headers", bot), "Authorization": "Basic Og=="}
    response = authorizer.call("rest_request", sent)  # a 401 would raise Unauthorized
    assert response["principalId"] == "anonymous"
    assert not policy_allows(response["policyDocument"], f"{ARN}/GET/items/42")


# -- malformed input: a refusal, never an Allow, never a 500 -----------------------------------


def test_non_ascii_bytes_in_an_access_token_after_a_published_kid_are_a_refusal(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    head, _, signature = authorizer.jwt(bot).split(".")
    for body in ("é", "\x80\xff", "\udcff"):  # as API Gateway hands over latin-1 and odd bytes
        assert authorizer.outcome(bearer(f"{head}.{body}.{signature}")) == "invalid_credentials"


def test_deeply_nested_json_is_a_refusal(authorizer: LocalAuthorizer) -> None:
    nested = "[" * 2_500 + "]" * 2_500  # deeper than Python's recursion limit, within 8 KB
    access_json = {"Authorization": '{"cf-access-client-id": ' + nested + "}"}
    assert authorizer.outcome(access_json) == "invalid_credentials"
    header = b64url(('{"typ":"at+jwt","kid":' + nested + "}").encode())
    assert authorizer.outcome(bearer(f"{header}.e30.AAAA")) == "invalid_credentials"


# Properties: for any headers, no Allow without valid credentials, and no exception but
# Unauthorized (dependencies healthy). (Arbitrary and damaged events go through the function
# on moto: tests/integration/test_authorizer_properties.py.)

NAMES = [
    "Gatekey-Client-Id",
    "gatekey-client-secret",
    "CF-Access-Client-Id",
    "cf-access-client-secret",
    "Authorization",
    "authorization",
    "Host",
]
PREFIXES = ["", "Bearer ", "Basic ", "bearer ", "gk_", "gks_", '{"cf-access-client-id": "', "eyJ"]

# Header values as API Gateway delivers them: any bytes, read as latin-1, or any text.
raw = st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
values = st.builds(
    lambda p, t: p + t, st.sampled_from(PREFIXES), st.one_of(st.text(max_size=120), raw)
)
any_headers = st.dictionaries(
    st.one_of(st.sampled_from(NAMES), st.text(max_size=20)), values, max_size=6
)


SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(shape=st.sampled_from(SHAPES), sent=any_headers)
def test_arbitrary_headers_never_allow(
    authorizer: LocalAuthorizer, shape: str, sent: dict[str, str]
) -> None:
    token = next(iter(sent.values()), None) if shape == "rest_token" else None
    event = authorizer_event(shape, sent, method="GET", path="/items/42", token=token)
    assert_not_allowed(authorizer, event)


def nested(depth: int, opener: str) -> str:
    """A JSON value `depth` levels deep: [[[...]]] or {"a":{"a":...0}}."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


@SETTINGS
@given(
    depth=st.integers(min_value=0, max_value=3_000),
    opener=st.sampled_from(["[", "{"]),
    place=st.sampled_from(["access_json", "jwt_header", "jwt_claims"]),
)
def test_deep_nesting_anywhere_is_a_refusal(
    authorizer: LocalAuthorizer, depth: int, opener: str, place: str
) -> None:
    document = nested(depth, opener)
    if place == "access_json":
        sent = {"Authorization": '{"cf-access-client-id": ' + document + "}"}
    else:
        kid = authorizer.signer.public_key.kid
        header = {"typ": "at+jwt", "alg": "RS256", "kid": kid}
        head = b64url(json.dumps(header).encode())
        if place == "jwt_header":
            head = b64url(('{"typ":"at+jwt","kid":' + document + "}").encode())
        sent = {"Authorization": f"Bearer {head}.{b64url(document.encode())}.AAAA"}
    assert_not_allowed(authorizer, authorizer_event("rest_request", sent, method="GET", path="/"))


@SETTINGS
@given(body=raw, signature=raw)
def test_odd_bytes_after_a_published_key_id_are_a_refusal(
    authorizer: LocalAuthorizer, body: str, signature: str
) -> None:
    header = {"typ": "at+jwt", "alg": "RS256", "kid": authorizer.signer.public_key.kid}
    token = f"{b64url(json.dumps(header).encode())}.{body}.{signature}"
    for shape in SHAPES:
        sent = {"Authorization": f"Bearer {token}"}
        assert_not_allowed(
            authorizer, authorizer_event(shape, sent, method="GET", path="/items/42")
        )


# -- a failing store: an error, never an Allow ------------------------------------------------


@pytest.mark.parametrize("form", ["gatekey_headers", "bearer"])
def test_a_failing_store_is_an_error_never_an_allow(
    authorizer: LocalAuthorizer, bot: Bot, form: str
) -> None:
    headers = headers_for(authorizer, form, bot)
    authorizer.store.read_failure = DependencyError("dynamodb GetItem failed")
    with pytest.raises(DependencyError):
        authorizer.call("rest_request", headers)
    # AND once it answers again, so does the authorizer (no failure was remembered)
    authorizer.store.read_failure = None
    assert allowed(authorizer.call("rest_request", headers))


# -- bindings: source addresses and APIs (gatekey.bindings) -----------------------------------

INSIDE, OUTSIDE = "203.0.113.10", "198.51.100.7"
OTHER_API_ARN = ARN.replace("a1b2c3d4e5/v1", "f6g7h8i9j0/v1")


def bound_event(
    shape: str,
    headers: dict[str, str],
    *,
    source_ip: str = INSIDE,
    identity_source: list[str] | None = None,
    arn: str = ARN,
) -> dict[str, Any]:
    """An event from `source_ip` for GET /items/42 on the API and stage of `arn`; an HTTP API
    event keyed on its credential headers and the source IP unless `identity_source` says."""
    event = authorizer_event(shape, headers, method="GET", path="/items/42")
    method_arn = f"{arn}/GET/items/42"
    if shape == "http":
        event["routeArn"] = method_arn
        event["requestContext"]["http"]["sourceIp"] = source_ip
        values = [*headers.values(), source_ip] if identity_source is None else identity_source
        event["identitySource"] = values
    else:
        event["methodArn"] = method_arn
    if shape == "rest_request":
        event["requestContext"]["identity"]["sourceIp"] = source_ip
    return event


def decided(authorizer: LocalAuthorizer, event: dict[str, Any]) -> str:
    outcome = authorizer.authorizer.authorize(event)
    return "allowed" if outcome.allowed else outcome.reason


@pytest.mark.parametrize("shape", ["rest_request", "http"])
@pytest.mark.parametrize("form", ["gatekey_headers", "basic", "bearer"])
@pytest.mark.parametrize(
    ("cidrs", "inside", "outside"),
    [
        (("203.0.113.0/24",), INSIDE, OUTSIDE),
        (("2001:db8:1::/48",), "2001:db8:1::17", "2001:db8:2::17"),
        (("203.0.113.0/24",), "::ffff:203.0.113.10", "::ffff:198.51.100.7"),  # IPv4-mapped
        (("203.0.113.10/32", "2001:db8::/32"), "2001:db8::1", "203.0.113.11"),
        (("::/0",), "2001:db8::1", INSIDE),  # every IPv6 address, no IPv4 one
    ],
)
def test_a_bound_token_is_allowed_from_its_blocks_and_refused_from_elsewhere(
    authorizer: LocalAuthorizer,
    shape: str,
    form: str,
    cidrs: tuple[str, ...],
    inside: str,
    outside: str,
) -> None:
    bot = authorizer.bot(bound_cidrs=cidrs)
    headers = headers_for(authorizer, form, bot)
    assert decided(authorizer, bound_event(shape, headers, source_ip=inside)) == "allowed"
    # AND the Allow remembered for that address is not the answer from another one
    assert decided(authorizer, bound_event(shape, headers, source_ip=outside)) == "source_ip"
    response = authorizer.invoke(bound_event(shape, headers, source_ip=outside))
    assert not (allowed(response) if shape == "rest_request" else allowed_http(response))
    assert decided(authorizer, bound_event(shape, headers, source_ip=inside)) == "allowed"


def allowed_http(response: dict[str, Any]) -> bool:
    if "isAuthorized" in response:
        return bool(response["isAuthorized"])
    return allowed(response)


@pytest.mark.parametrize("form", ["basic", "bearer", "access_json"])
def test_a_bound_token_is_refused_by_a_token_authorizer_which_sees_no_source_ip(
    authorizer: LocalAuthorizer, form: str
) -> None:
    bot = authorizer.bot(bound_cidrs=("0.0.0.0/0", "::/0"))
    headers = headers_for(authorizer, form, bot)
    event = bound_event("rest_token", headers)
    assert decided(authorizer, event) == "source_ip_unverifiable"
    # An unbound token is not: the TOKEN route's cache is keyed on what it decides.
    other = headers_for(authorizer, form, authorizer.bot())
    assert decided(authorizer, bound_event("rest_token", other)) == "allowed"


def test_an_http_api_cache_key_without_the_source_ip_refuses_a_bound_token(
    authorizer: LocalAuthorizer,
) -> None:
    # GIVEN an HTTP API authorizer cached on the Gatekey pair alone: API Gateway would keep the
    # Allow for the pair, whatever address sends it next.
    bot = authorizer.bot(bound_cidrs=("203.0.113.0/24",))
    headers = headers_for(authorizer, "gatekey_headers", bot)
    pair_only = list(headers.values())
    event = bound_event("http", headers, identity_source=pair_only)
    assert decided(authorizer, event) == "source_ip_unverifiable"
    # AND an Allow remembered for a key with the address does not answer it
    assert decided(authorizer, bound_event("http", headers)) == "allowed"
    assert decided(authorizer, event) == "source_ip_unverifiable"
    # An uncached authorizer (no identity sources) decides on the address itself.
    assert decided(authorizer, bound_event("http", headers, identity_source=[])) == "allowed"
    # An unbound token does not care.
    plain = headers_for(authorizer, "gatekey_headers", authorizer.bot())
    assert decided(authorizer, bound_event("http", plain, identity_source=[])) == "allowed"


def test_a_rest_request_event_without_a_source_ip_refuses_a_bound_token(
    authorizer: LocalAuthorizer,
) -> None:
    bot = authorizer.bot(bound_cidrs=("0.0.0.0/0",))
    event = bound_event("rest_request", headers_for(authorizer, "gatekey_headers", bot))
    del event["requestContext"]["identity"]["sourceIp"]
    assert decided(authorizer, event) == "source_ip"


def test_an_unbound_token_is_allowed_from_any_address(
    authorizer: LocalAuthorizer, bot: Bot
) -> None:
    headers = headers_for(authorizer, "gatekey_headers", bot)
    for source in (INSIDE, OUTSIDE, "2001:db8::1", "not an address"):
        for shape in ("rest_request", "http"):
            assert decided(authorizer, bound_event(shape, headers, source_ip=source)) == "allowed"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("form", ["basic", "bearer"])
@pytest.mark.parametrize(
    ("apis", "on_this", "on_other"),
    [
        (("a1b2c3d4e5",), "allowed", "api_not_allowed"),
        (("a1b2c3d4e5/v1",), "allowed", "api_not_allowed"),
        (("a1b2c3d4e5/prod",), "api_not_allowed", "api_not_allowed"),
        (("f6g7h8i9j0", "a1b2c3d4e5/v1"), "allowed", "allowed"),
        ((), "allowed", "allowed"),
    ],
)
def test_a_token_bound_to_apis_is_refused_on_others(
    authorizer: LocalAuthorizer,
    shape: str,
    form: str,
    apis: tuple[str, ...],
    on_this: str,
    on_other: str,
) -> None:
    bot = authorizer.bot(bound_apis=apis)
    headers = headers_for(authorizer, form, bot)
    assert decided(authorizer, bound_event(shape, headers)) == on_this
    assert decided(authorizer, bound_event(shape, headers, arn=OTHER_API_ARN)) == on_other
    # AND the remembered answer of one API is not the other's
    assert decided(authorizer, bound_event(shape, headers)) == on_this


def test_the_allow_of_a_bound_token_lists_its_routes_on_this_api_only(
    authorizer: LocalAuthorizer,
) -> None:
    bot = authorizer.bot(bound_apis=("a1b2c3d4e5", "f6g7h8i9j0"), routes=("GET /items/*",))
    response = authorizer.invoke(bound_event("rest_request", headers_for(authorizer, "basic", bot)))
    resources = response["policyDocument"]["Statement"][0]["Resource"]
    assert resources == [f"{ARN}/GET/items/*"]


def api_jwt(authorizer: LocalAuthorizer, bot: Bot, audience: str) -> str:
    return issue_access_token(
        bot.token,
        authorizer.signer,
        issuer=ISSUER,
        audience=audience,
        lifetime=3600,
        scopes=(),
        now=int(authorizer.clock[0]),
    ).access_token


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("audience", "on_this", "on_other"),
    [
        ("gatekey", "allowed", "allowed"),  # the stack's audience: every API
        ("urn:gatekey:api:a1b2c3d4e5", "allowed", "wrong_audience"),
        ("urn:gatekey:api:a1b2c3d4e5/v1", "allowed", "wrong_audience"),
        ("urn:gatekey:api:a1b2c3d4e5/prod", "wrong_audience", "wrong_audience"),
        ("urn:gatekey:api:f6g7h8i9j0", "wrong_audience", "allowed"),
        ("urn:gatekey:other:a1b2c3d4e5", "wrong_audience", "wrong_audience"),
    ],
)
def test_an_access_token_for_one_api_is_accepted_on_that_api_only(
    authorizer: LocalAuthorizer, bot: Bot, shape: str, audience: str, on_this: str, on_other: str
) -> None:
    headers = {"Authorization": f"Bearer {api_jwt(authorizer, bot, audience)}"}
    assert decided(authorizer, bound_event(shape, headers)) == on_this
    assert decided(authorizer, bound_event(shape, headers, arn=OTHER_API_ARN)) == on_other


def test_a_rest_request_cache_must_be_keyed_on_the_source_ip_for_bound_tokens(
    authorizer: LocalAuthorizer,
) -> None:
    # The function cannot see a REST API's identity sources: the operator's rule
    # (docs/architecture.md, "Tokens bound to source addresses"), shown on the local gateway.
    bot = authorizer.bot(bound_cidrs=("203.0.113.0/24",))
    pair = credential_headers("gatekey_headers", bot)
    source = "X-Gatekey-Local-Source-Ip"
    keyed = ("gatekey-client-id", "gatekey-client-secret")
    spec = AuthorizerSpec(
        "Cached",
        "Gatekey",
        "REQUEST",
        keyed,
        ttl=300,
        identity_sources=("context.identity.sourceIp",),
    )
    route = Route("Api", "GET", "/items/{id}", "Backend", "LAMBDA", spec)

    def backend(event: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    functions = Functions({"Gatekey": authorizer.lambda_handler, "Backend": backend})
    gateway = Gateway(routes=[route], schedules={}, functions=functions, credentials={})

    def get(ip: str) -> int:
        headers = [*pair.items(), (source, ip)]
        return gateway.handle("GET", "/items/42", headers, b"", "127.0.0.1").status

    # Keyed on the source IP too: the Allow for one address is not the answer for another.
    assert [get(INSIDE), get(OUTSIDE), get(INSIDE)] == [200, 403, 200]
    # Keyed on the pair alone (the shape the rule forbids), API Gateway would serve the Allow
    # it keeps for the pair to any address: why such a cache must not see bound tokens.
    pair_only = CachedApi(authorizer, "REQUEST", keyed)
    outside = [*pair.items(), (source, OUTSIDE)]
    assert pair_only.get({**pair, source: INSIDE}).status == 200
    assert pair_only.gateway.handle("GET", "/items/42", outside, b"", "h").status == 200
