"""Access tokens: what is issued, and what verification accepts and refuses."""

import hashlib
import hmac
import json
import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gatekey.access_tokens import (
    BACKDATE,
    granted_scopes,
    issue_access_token,
    verify_access_token,
)
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME
from gatekey.durations import Duration
from gatekey.errors import (
    BadSignature,
    InvalidCredentials,
    InvalidScope,
    NotYetValid,
    TokenExpired,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from gatekey.hashing import Hasher
from gatekey.model import ServiceToken, new_service_token
from gatekey.signing import LocalKeySigner, b64url
from support.constants import ISSUER, NOW


@pytest.fixture(params=["rsa", "ec"])
def signer(request: pytest.FixtureRequest) -> LocalKeySigner:
    if request.param == "rsa":
        return LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return LocalKeySigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def service_token(unit_hasher: Hasher) -> ServiceToken:
    token, _ = new_service_token(name="bot", hasher=unit_hasher, now=NOW, scopes=("a", "b"))
    return token


def issue(token: ServiceToken, signer: LocalKeySigner, now: int = NOW, lifetime: int = 600) -> str:
    return issue_access_token(
        token, signer, issuer=ISSUER, audience="api", lifetime=lifetime, scopes=("a",), now=now
    ).access_token


def verify(
    token: str, signer: LocalKeySigner, now: int = NOW, **overrides: str
) -> dict[str, object]:
    keys = {signer.public_key.kid: signer.public_key}
    options = {"issuer": ISSUER, "audience": "api", **overrides}
    return verify_access_token(token, keys, now=now, **options)  # type: ignore[arg-type]


def test_an_issued_token_verifies_until_it_expires(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    token = issue(service_token, signer)
    assert verify(token, signer)["client_id"] == service_token.client_id
    assert verify(token, signer, now=NOW + 600 + 29)  # within the 30 s leeway
    with pytest.raises(TokenExpired):
        verify(token, signer, now=NOW + 600 + 30)


def test_issuing_for_an_expired_service_token_is_refused(
    unit_hasher: Hasher, signer: LocalKeySigner
) -> None:
    token, _ = new_service_token(name="b", hasher=unit_hasher, now=NOW, duration=Duration(1))
    with pytest.raises(TokenExpired):
        issue(token, signer, now=NOW + 3600)


@pytest.mark.parametrize(
    ("override", "value", "error"),
    [("issuer", "https://evil.example.com", WrongIssuer), ("audience", "other-api", WrongAudience)],
)
def test_wrong_issuer_or_audience_is_refused(
    service_token: ServiceToken,
    signer: LocalKeySigner,
    override: str,
    value: str,
    error: type[InvalidCredentials],
) -> None:
    with pytest.raises(error) as caught:
        verify(issue(service_token, signer), signer, **{override: value})
    assert ISSUER not in caught.value.message  # no claim value in the message


def test_a_token_from_the_future_is_refused(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    with pytest.raises(NotYetValid, match="not valid yet"):
        verify(issue(service_token, signer, now=NOW + 120), signer, now=NOW)


def claims_of(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_iat_and_nbf_are_a_little_in_the_past_and_exp_is_not(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    claims = claims_of(issue(service_token, signer, lifetime=600))
    assert claims["iat"] == claims["nbf"] == NOW - BACKDATE
    assert claims["exp"] == NOW + 600  # the lifetime counts from the issue time
    assert 0 < BACKDATE <= 60


def pyjwt_decode(token: str, signer: LocalKeySigner) -> dict[str, object]:
    """PyJWT with no leeway, on the real clock: it refuses an iat or nbf in its future."""
    decoded: dict[str, object] = jwt.decode(
        token,
        signer.public_key.key,  # type: ignore[arg-type]
        algorithms=[signer.public_key.alg.value],
        audience="api",
        issuer=ISSUER,
        leeway=0,
        options={"require": ["iat", "nbf", "exp"]},
    )
    return decoded


@pytest.mark.parametrize("behind", [1, BACKDATE])
def test_a_verifier_without_leeway_whose_clock_is_behind_accepts_a_fresh_token(
    service_token: ServiceToken, signer: LocalKeySigner, behind: int
) -> None:
    # Issued by a clock `behind` seconds ahead of the verifier's (the real clock).
    issued_at = int(time.time()) + behind
    token = issue(service_token, signer, now=issued_at)
    assert pyjwt_decode(token, signer)["client_id"] == service_token.client_id
    assert verify(token, signer, now=issued_at - behind, leeway=0)  # type: ignore[arg-type]


def test_without_the_backdate_the_same_verifier_refuses_it(
    service_token: ServiceToken, signer: LocalKeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the previous release issued (iat = nbf = the issue time), one second ahead.
    monkeypatch.setattr("gatekey.access_tokens.BACKDATE", 0)
    token = issue(service_token, signer, now=int(time.time()) + 2)
    with pytest.raises(jwt.ImmatureSignatureError):
        pyjwt_decode(token, signer)


def test_tokens_of_the_previous_release_and_of_the_longest_lifetime_still_verify(
    service_token: ServiceToken, signer: LocalKeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    longest = issue(service_token, signer, lifetime=MAX_ACCESS_TOKEN_LIFETIME)
    assert verify(longest, signer, now=NOW + MAX_ACCESS_TOKEN_LIFETIME - 1)
    monkeypatch.setattr("gatekey.access_tokens.BACKDATE", 0)  # iat = nbf = the issue time
    previous = issue(service_token, signer, lifetime=MAX_ACCESS_TOKEN_LIFETIME)
    assert claims_of(previous)["iat"] == claims_of(previous)["nbf"] == NOW
    assert verify(previous, signer, now=NOW)
    assert verify(previous, signer, now=NOW + MAX_ACCESS_TOKEN_LIFETIME - 1)


def test_a_token_living_longer_than_any_issued_is_refused_though_signed(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    header, body, _ = issue(service_token, signer).split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["exp"] = claims["iat"] + MAX_ACCESS_TOKEN_LIFETIME + BACKDATE + 1
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    signature = b64url(signer.sign(signing_input.encode()))
    with pytest.raises(InvalidCredentials, match="lives longer"):
        verify(f"{signing_input}.{signature}", signer)


def test_an_unknown_kid_is_refused(service_token: ServiceToken, signer: LocalKeySigner) -> None:
    other = LocalKeySigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(UnknownKey, match="unknown key"):
        verify(issue(service_token, other), signer)


def test_a_tampered_payload_is_refused(service_token: ServiceToken, signer: LocalKeySigner) -> None:
    header, payload, signature = issue(service_token, signer).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    forged = b64url(json.dumps({**claims, "scope": "a b admin"}).encode())
    with pytest.raises(BadSignature):
        verify(f"{header}.{forged}.{signature}", signer)


def _unsigned(header: dict[str, str], claims: dict[str, object]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def test_alg_none_and_hmac_with_the_public_key_are_refused(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    claims = jwt.decode(issue(service_token, signer), options={"verify_signature": False})
    kid = signer.public_key.kid
    none = _unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, claims)
    with pytest.raises(InvalidCredentials):
        verify(none, signer)
    # The classic confusion: an HS256 token keyed with the (public) PEM of the RSA/EC key.
    pem = signer.public_key.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidCredentials):
        verify(f"{header}.{body}.{b64url(mac)}", signer)


def test_a_token_of_another_type_is_refused(
    service_token: ServiceToken, signer: LocalKeySigner
) -> None:
    # An ID token or any JWT signed by the same key must not pass as an access token.
    header, payload, _ = issue(service_token, signer).split(".")
    other = json.loads(jwt.utils.base64url_decode(header)) | {"typ": "JWT"}
    signing_input = f"{b64url(json.dumps(other).encode())}.{payload}"
    token = f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"
    with pytest.raises(InvalidCredentials, match="typ"):
        verify(token, signer)


@pytest.mark.parametrize("garbage", ["", "a.b", "not a jwt", "a.b.c.d"])
def test_garbage_is_refused_without_echoing_it(signer: LocalKeySigner, garbage: str) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        verify(garbage, signer)
    assert not garbage or garbage not in str(caught.value)


def test_scopes_are_granted_as_a_subset_only(service_token: ServiceToken) -> None:
    assert granted_scopes(service_token, None) == ("a", "b")
    assert granted_scopes(service_token, "  ") == ("a", "b")
    assert granted_scopes(service_token, "b") == ("b",)
    assert granted_scopes(service_token, "b  a b") == ("b", "a")
    with pytest.raises(InvalidScope, match="scope"):
        granted_scopes(service_token, "a c")
    with pytest.raises(InvalidScope):
        granted_scopes(replace(service_token, scopes=()), "a")
