"""An attack suite against the authorizer handler: every case must be denied (403 or 401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekey.model import AuditAction, AuditEvent, TokenStatus
from gatekey.signing import b64url
from gatekey_local.policy import policy_allows
from support.constants import ARN, NOW
from support.harness import AuthorizerHarness, Bot, Unauthorized, credential_headers

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


def denied(authorizer: AuthorizerHarness, headers: dict[str, str], **kwargs: Any) -> bool:
    """True when API Gateway would not let the request through (401, or a policy denying it)."""
    try:
        response = authorizer.call("rest_request", headers, **kwargs)
    except Unauthorized:
        return True
    return not policy_allows(response["policyDocument"], f"{ARN}/GET/items/42")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


@pytest.fixture
def bot(authorizer: AuthorizerHarness) -> Bot:
    return authorizer.bot()


@pytest.fixture
def genuine(authorizer: AuthorizerHarness, bot: Bot) -> str:
    token = authorizer.jwt(bot)
    assert not denied(authorizer, bearer(token))  # the control: a genuine token is allowed
    return token


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_casing(authorizer: AuthorizerHarness, genuine: str, alg: str) -> None:
    header, claims = parts(genuine)
    forged = segments({**header, "alg": alg}, claims)
    for token in (forged + ".", forged):
        assert denied(authorizer, bearer(token))


def test_hs256_keyed_with_the_public_key(authorizer: AuthorizerHarness, genuine: str) -> None:
    header, claims = parts(genuine)
    public = authorizer.signer.public_key.key
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
    return jwt.encode(claims, attacker, algorithm="RS256", headers={"typ": "at+jwt", **header})


def test_a_token_signed_by_an_unknown_key_with_a_known_kid(
    authorizer: AuthorizerHarness, genuine: str
) -> None:
    header, claims = parts(genuine)
    assert denied(authorizer, bearer(_attacker_token(claims, kid=header["kid"])))


@pytest.mark.parametrize("pointer", ["jku", "x5u", "jwk"])
def test_key_pointers_in_the_header_are_ignored(
    authorizer: AuthorizerHarness, genuine: str, pointer: str
) -> None:
    header, claims = parts(genuine)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    value: Any = attacker_jwk if pointer == "jwk" else "https://attacker.example/jwks.json"
    for kid in (header["kid"], "attacker"):
        token = jwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={"typ": "at+jwt", "kid": kid, pointer: value},
        )
        assert denied(authorizer, bearer(token))


def test_a_tampered_payload_with_the_original_signature(
    authorizer: AuthorizerHarness, genuine: str
) -> None:
    header, claims = parts(genuine)
    signature = genuine.split(".")[2]
    for change in ({"client_id": "gk_someone_else"}, {"scope": "admin"}, {"exp": NOW + 10**8}):
        forged = segments(header, {**claims, **change})
        assert denied(authorizer, bearer(f"{forged}.{signature}"))


def test_a_stripped_signature(authorizer: AuthorizerHarness, genuine: str) -> None:
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
    authorizer: AuthorizerHarness,
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


def test_an_expired_token(authorizer: AuthorizerHarness, bot: Bot) -> None:
    token = authorizer.jwt(bot, lifetime=60)
    authorizer.clock[0] += 60 + 30  # exp plus the leeway
    assert denied(authorizer, bearer(token))


def test_a_token_for_a_revoked_service_token(
    authorizer: AuthorizerHarness, bot: Bot, genuine: str
) -> None:
    current = authorizer.store.get(bot.client_id, consistent=True)
    authorizer.store.update(
        replace(current, updated_at=NOW, status=TokenStatus.REVOKED),
        AuditEvent(bot.client_id, AuditAction.REVOKED, "admin", NOW),
    )
    authorizer.clock[0] += 30  # past the status cache
    assert denied(authorizer, bearer(genuine))


def test_credentials_with_a_bad_checksum(authorizer: AuthorizerHarness, bot: Bot) -> None:
    def flip(value: str) -> str:
        return value[:-1] + ("A" if value[-1] != "A" else "B")

    secret = bot.secret.reveal()
    for client_id, candidate in ((flip(bot.client_id), secret), (bot.client_id, flip(secret))):
        assert denied(
            authorizer, {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": candidate}
        )
        pair = base64.b64encode(f"{client_id}:{candidate}".encode()).decode()
        assert denied(authorizer, {"Authorization": f"Basic {pair}"})


def test_non_utf8_basic_credentials(authorizer: AuthorizerHarness) -> None:
    pair = base64.b64encode(b"\xff\xfe:\xc3\x28").decode()
    assert denied(authorizer, {"Authorization": f"Basic {pair}"})


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:24])
def test_hostile_strings_in_every_header(
    authorizer: AuthorizerHarness, bot: Bot, header: str, value: str
) -> None:
    # Alone, and beside otherwise valid credentials: neither may be let through.
    assert denied(authorizer, {header: value})
    mixed = {**credential_headers("gatekey_headers", bot), header: value}
    if header.startswith("Gatekey-"):
        assert denied(authorizer, mixed)
