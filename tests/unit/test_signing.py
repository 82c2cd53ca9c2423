import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gatekey.errors import ConfigurationError
from gatekey.signing import Algorithm, LocalKeySigner, PublicKey, der_to_raw_ecdsa

# RFC 7638 §3.1: this RSA key's JWK thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
    "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
}


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    key = PublicKey.from_jwk(RFC7638_JWK)
    assert key.kid == RFC7638_JWK["kid"]
    assert key.jwk() == {**RFC7638_JWK, "use": "sig"}


def test_a_jwk_whose_kid_is_not_its_thumbprint_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="thumbprint"):
        PublicKey.from_jwk({**RFC7638_JWK, "kid": "someone-elses"})


def test_ec_keys_round_trip_through_their_jwk() -> None:
    public = LocalKeySigner(ec.generate_private_key(ec.SECP256R1())).public_key
    jwk = public.jwk()
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert PublicKey.from_jwk(jwk) == public


def test_der_ecdsa_becomes_fixed_width_r_and_s() -> None:
    # Small r and s must be left-padded to 32 bytes each, as RFC 7518 §3.4 requires.
    raw = der_to_raw_ecdsa(encode_dss_signature(1, 2**255))
    assert len(raw) == 64
    assert raw[:32] == (1).to_bytes(32, "big")
    assert raw[32:] == (2**255).to_bytes(32, "big")


def test_local_rsa_signer_makes_pkcs1_signatures_its_public_key_verifies() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = LocalKeySigner(private)
    signature = signer.sign(b"header.claims")
    private.public_key().verify(signature, b"header.claims", padding.PKCS1v15(), hashes.SHA256())
    assert signer.public_key.alg is Algorithm.RS256


def test_a_key_cannot_be_published_for_the_other_algorithm() -> None:
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ConfigurationError, match="cannot verify RS256"):
        PublicKey.from_key(ec_public, Algorithm.RS256)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ConfigurationError, match="unsupported elliptic curve"):
        PublicKey.from_key(p384, Algorithm.ES256)


def test_private_material_never_appears_in_a_signer_or_key_repr() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signer = LocalKeySigner(private)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert str(private.private_numbers().private_value) not in repr(signer.public_key)
    assert pem.decode() not in repr(signer)
