"""What signs a JWT (one interface), and the public keys that verify it.

- `gatekey.aws.kms.KmsSigner`: the private key never leaves KMS.
- `LocalKeySigner`: a PEM private key held in memory (`gatekey.aws.secrets` reads it from
  Secrets Manager, for accounts that prefer it).

A key's `kid` is its RFC 7638 JWK thumbprint: derived from the public key, so every function
computes the same id for the same key without coordination.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gatekey.errors import ConfigurationError


class Algorithm(StrEnum):
    RS256 = "RS256"
    ES256 = "ES256"


# The key specs a signing key may have (KMS's names; the template's SigningKeySpec).
SigningKeySpec = Literal["RSA_2048", "ECC_NIST_P256"]
KEY_SPEC_ALGORITHM: Final[dict[str, Algorithm]] = {
    "RSA_2048": Algorithm.RS256,
    "ECC_NIST_P256": Algorithm.ES256,
}
_ES256_COORDINATE: Final = 32
# Built once: verification runs on every new access token.
_SHA256: Final = hashes.SHA256()
_PKCS1V15: Final = padding.PKCS1v15()
_ECDSA_SHA256: Final = ec.ECDSA(_SHA256)
# KMS accepts at most 4096 bytes with MessageType=RAW; a JWT's signing input is far smaller.
KMS_RAW_LIMIT: Final = 4096

PublicKeyType = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(number: int, length: int | None = None) -> str:
    length = length or (number.bit_length() + 7) // 8
    return b64url(number.to_bytes(length, "big"))


def _public_jwk_members(key: PublicKeyType) -> dict[str, str]:
    """The required JWK members of a public key (RFC 7518 §6), which its thumbprint covers."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    if not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"unsupported elliptic curve {key.curve.name}")
    point = key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _int_b64(point.x, _ES256_COORDINATE),
        "y": _int_b64(point.y, _ES256_COORDINATE),
    }


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key as published in the JWKS."""

    kid: str
    alg: Algorithm
    key: PublicKeyType = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, key: Any, alg: Algorithm) -> PublicKey:
        expected = rsa.RSAPublicKey if alg is Algorithm.RS256 else ec.EllipticCurvePublicKey
        if not isinstance(key, expected):
            raise ConfigurationError(f"a {type(key).__name__} cannot verify {alg}")
        members = _public_jwk_members(key)
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        return cls(kid=b64url(hashlib.sha256(canonical).digest()), alg=alg, key=key)

    @classmethod
    def from_der(cls, der: bytes, alg: Algorithm) -> PublicKey:
        return cls.from_key(serialization.load_der_public_key(der), alg)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Parse a published JWK (the one way keys enter verifiers); its kid must match."""
        alg = Algorithm(jwk["alg"])
        if jwk["kty"] == "RSA":
            key: PublicKeyType = rsa.RSAPublicNumbers(
                _b64_int(jwk["e"]), _b64_int(jwk["n"])
            ).public_key()
        else:
            key = ec.EllipticCurvePublicNumbers(
                _b64_int(jwk["x"]), _b64_int(jwk["y"]), ec.SECP256R1()
            ).public_key()
        public = cls.from_key(key, alg)
        if public.kid != jwk.get("kid"):
            raise ConfigurationError("JWK kid does not match its key's thumbprint")
        return public

    def jwk(self) -> dict[str, str]:
        return {**_public_jwk_members(self.key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def verify(self, signature: bytes, signing_input: bytes) -> bool:
        """Check a JOSE signature made with this key's algorithm (raw r||s for ES256)."""
        try:
            if isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, signing_input, _PKCS1V15, _SHA256)
            elif len(signature) == 2 * _ES256_COORDINATE:
                r = int.from_bytes(signature[:_ES256_COORDINATE], "big")
                s = int.from_bytes(signature[_ES256_COORDINATE:], "big")
                der = encode_dss_signature(r, s)
                self.key.verify(der, signing_input, _ECDSA_SHA256)
            else:
                return False
        except InvalidSignature:
            return False
        return True


def _b64_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def der_to_raw_ecdsa(der: bytes) -> bytes:
    """KMS's DER ECDSA-Sig-Value to JOSE's fixed-width ``r || s`` (RFC 7518 §3.4)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(_ES256_COORDINATE, "big") + s.to_bytes(_ES256_COORDINATE, "big")


class Signer(Protocol):
    """Signs a JWS signing input; `public_key` verifies what it signs."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, signing_input: bytes) -> bytes: ...


class LocalKeySigner:
    """A private key held in memory, signing without a KMS call."""

    def __init__(self, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        alg = Algorithm.RS256 if isinstance(private_key, rsa.RSAPrivateKey) else Algorithm.ES256
        self.public_key = PublicKey.from_key(private_key.public_key(), alg)

    @classmethod
    def from_pem(cls, pem: str) -> LocalKeySigner:
        """Load a PEM (PKCS#8) RSA-2048 or P-256 private key."""
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except ValueError as exc:
            raise ConfigurationError("signing key secret is not a PEM private key") from exc
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048:
            return cls(key)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return cls(key)
        raise ConfigurationError("signing key secret must hold an RSA-2048 or P-256 private key")

    def sign(self, signing_input: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return der_to_raw_ecdsa(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
