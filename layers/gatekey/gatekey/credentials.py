"""Client IDs and Client Secrets (generation, format and checksum), and the ways a request
presents them: `CredentialForm` and the header pairs of each form (`HEADER_PAIRS`).

Both have the shape ``<prefix><random part><checksum>`` in base62, as GitHub's tokens do:

- Client ID ``gk_`` + 22 characters (128 random bits) + 6 characters of checksum;
- Client Secret ``gks_`` + 43 characters (256 random bits) + 6 characters of checksum.

The checksum is CRC32 of prefix and random part, so a mistyped or truncated value is rejected
before any database read, and a leaked secret is easy for a scanner to recognise.

Imported credentials (`ImportedFormat`, README "Migrating from Cloudflare Access or Cognito")
keep the formats they were issued in and carry no checksum: a value is recognised by its shape
alone (a Cloudflare Access ``<32 hex>.access`` id, a Cognito app client's 26-character id), so
a well-shaped one is looked up, where a malformed ``gk_`` value never is. After a rotation, an
imported Client ID holds a Gatekey secret (``gks_``); before it, a secret of its own format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import unquote

from gatekey.errors import InvalidCredentials, MalformedCredential

ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62: Final = re.compile("[0-9A-Za-z]*")
_CHECKSUM_LEN: Final = 6  # 62**6 > 2**32

CLIENT_ID_PREFIX: Final = "gk_"
CLIENT_SECRET_PREFIX: Final = "gks_"
_CLIENT_ID_RANDOM_LEN: Final = 22  # 62**22 > 2**128
_CLIENT_SECRET_RANDOM_LEN: Final = 43  # 62**43 > 2**256
_CLIENT_ID_BYTES: Final = 16
_CLIENT_SECRET_BYTES: Final = 32
CLIENT_ID_LENGTH: Final = len(CLIENT_ID_PREFIX) + _CLIENT_ID_RANDOM_LEN + _CHECKSUM_LEN
CLIENT_SECRET_LENGTH: Final = len(CLIENT_SECRET_PREFIX) + _CLIENT_SECRET_RANDOM_LEN + _CHECKSUM_LEN


class CredentialForm(StrEnum):
    """The ways a request presents a service token's credentials to the authorizer. The value
    is the form's name everywhere: its switch (Config.accept_<form>, ACCEPT_<FORM>), and the
    auth_method of metrics, logs and the Allow context."""

    GATEKEY_HEADERS = "gatekey_headers"
    ACCESS_HEADERS = "access_headers"  # Cloudflare Access's service-token headers
    ACCESS_JSON = "access_json"  # one header holding Access's pair as a JSON object
    BASIC = "basic"
    BEARER = "bearer"  # an access token from the token endpoint
    # Access's follow-up: the access token sent as Access clients send the JWT Access issued.
    ACCESS_TOKEN_HEADER = "access_token_header"  # the cf-access-token header
    ACCESS_COOKIE = "access_cookie"  # the CF_Authorization cookie
    # An access token bound to a key (RFC 9449): `Authorization: DPoP <token>` and a proof of
    # possession of that key in the DPoP header (gatekey.dpop).
    DPOP = "dpop"


# The two-header forms, in the authorizer's order of precedence: (Client ID header, Client
# Secret header), lower case. The token endpoint accepts them too, and Access's JSON form
# uses Access's names as its keys. README's table of credentials is checked against this.
HEADER_PAIRS: Final[Mapping[CredentialForm, tuple[str, str]]] = {
    CredentialForm.GATEKEY_HEADERS: ("gatekey-client-id", "gatekey-client-secret"),
    CredentialForm.ACCESS_HEADERS: ("cf-access-client-id", "cf-access-client-secret"),
}
# Where Access clients send the JWT that Access issued them, and Gatekey then reads an access
# token: a header (lower case), or a cookie (a cookie's name is case-sensitive, RFC 6265).
ACCESS_TOKEN_HEADER: Final = "cf-access-token"
ACCESS_COOKIE: Final = "CF_Authorization"
# The forms read from the Authorization header, by scheme (lower case).
AUTHORIZATION_SCHEMES: Final[Mapping[str, CredentialForm]] = {
    "basic": CredentialForm.BASIC,
    "bearer": CredentialForm.BEARER,
    "dpop": CredentialForm.DPOP,
}


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    if number:
        raise ValueError("number does not fit the width")  # a programming error, not input
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LEN)


def _generate(prefix: str, nbytes: int, width: int) -> str:
    body = prefix + _base62(int.from_bytes(secrets.token_bytes(nbytes), "big"), width)
    return body + _checksum(body)


def _validate(value: object, *, field_name: str, prefix: str, length: int) -> str:
    """Return `value` if it has the format and checksum of `prefix`; never echo it in errors."""
    if not isinstance(value, str):
        raise MalformedCredential(field_name, "must be a string")
    if not value.isascii():
        raise MalformedCredential(field_name, "must contain only ASCII characters")
    if not value.startswith(prefix):
        raise MalformedCredential(field_name, f"must start with {prefix!r}")
    if len(value) != length:
        raise MalformedCredential(field_name, f"must be {length} characters long")
    body, check = value[:-_CHECKSUM_LEN], value[-_CHECKSUM_LEN:]
    if not _BASE62.fullmatch(value, len(prefix)):
        raise MalformedCredential(field_name, "must be base62 after the prefix")
    # Not a secret comparison: the checksum is derived from the value, not from stored state.
    if _checksum(body) != check:
        raise MalformedCredential(field_name, "checksum does not match (mistyped or truncated?)")
    return value


def generate_client_id() -> str:
    return _generate(CLIENT_ID_PREFIX, _CLIENT_ID_BYTES, _CLIENT_ID_RANDOM_LEN)


def derived_client_id(seed: str) -> str:
    """A Client ID of Gatekey's format made from `seed` (SHA-256, the first 128 bits), the
    same for the same seed: what a retried request recognises as the token it created. A
    Client ID is not secret, so deriving it discloses nothing."""
    digest = hashlib.sha256(seed.encode()).digest()[:_CLIENT_ID_BYTES]
    body = CLIENT_ID_PREFIX + _base62(int.from_bytes(digest, "big"), _CLIENT_ID_RANDOM_LEN)
    return body + _checksum(body)


def parse_client_id(value: object) -> str:
    """Validate a Client ID without I/O; raise MalformedCredential naming what is wrong.
    Gatekey's own ids (and anything that is no imported format) must pass the format and
    checksum check; an imported format is accepted by its shape (`imported_format`)."""
    if isinstance(value, str) and imported_format(value) is not None:
        return value
    return _validate(
        value, field_name="client_id", prefix=CLIENT_ID_PREFIX, length=CLIENT_ID_LENGTH
    )


class ClientSecret:
    """A plaintext Client Secret. Its repr and str are redacted (so are pretty-printers', which
    read a dataclass's fields: this is deliberately not one), so it cannot leak into a log line
    or a test report by accident; `reveal()` is the one way to the plaintext."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def generate(cls) -> ClientSecret:
        return cls(_generate(CLIENT_SECRET_PREFIX, _CLIENT_SECRET_BYTES, _CLIENT_SECRET_RANDOM_LEN))

    @classmethod
    def parse(cls, value: object) -> ClientSecret:
        """Validate a presented secret without I/O; raise MalformedCredential if it is not one."""
        return cls(
            _validate(
                value,
                field_name="client_secret",
                prefix=CLIENT_SECRET_PREFIX,
                length=CLIENT_SECRET_LENGTH,
            )
        )

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "gks_****"

    def __repr__(self) -> str:
        return "ClientSecret(gks_****)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClientSecret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]


# -- imported credentials ----------------------------------------------------------------------

MIN_SECRET_BITS: Final = 128  # an imported secret must carry at least this much entropy
_MIN_DISTINCT: Final = 8  # fewer distinct characters: a placeholder, not a random secret
# The alphabets an imported secret's entropy is counted in: the smallest one holding all of its
# characters, so a secret of digits only counts 3.3 bits a character, whatever its format allows.
_SECRET_ALPHABETS: Final = (
    frozenset("0123456789"),
    frozenset("0123456789abcdef"),
    frozenset("0123456789abcdefghijklmnopqrstuvwxyz"),
    frozenset(ALPHABET),
    frozenset(ALPHABET + "_+"),  # Cognito's `[\w+]`
)


class ImportedFormat(StrEnum):
    """The credential formats an existing Client ID and Secret may be imported in. The value
    is the name the admin API, the CLI and the audit trail use for it (`source`)."""

    ACCESS = "access"  # a Cloudflare Access service token
    COGNITO = "cognito"  # an Amazon Cognito user pool app client


@dataclass(frozen=True, slots=True)
class _Shape:
    client_id: re.Pattern[str]
    secret: re.Pattern[str]
    secret_text: str  # what the secret must be, for error messages


# Shapes are exact, so only these values are looked up: an Access id is 32 lower-case hex
# digits and ".access" (its secret: 64 hex digits, 256 bits); a Cognito app client id is 26
# characters of [a-z0-9] as Cognito generates them (its secret: 51 or 52 of them, about 265
# bits, or a custom one, 24 to 64 characters of [A-Za-z0-9_+], as CreateUserPoolClient and
# AddUserPoolClientSecret allow). Upper case is never accepted: one id, one item key.
_SHAPES: Final[Mapping[ImportedFormat, _Shape]] = {
    ImportedFormat.ACCESS: _Shape(
        re.compile("[0-9a-f]{32}\\.access"),
        re.compile("[0-9a-f]{64}"),
        "64 lower-case hexadecimal characters (an Access Client Secret)",
    ),
    ImportedFormat.COGNITO: _Shape(
        re.compile("[0-9a-z]{26}"),
        re.compile("[0-9A-Za-z_+]{24,64}"),
        "24 to 64 characters of [A-Za-z0-9_+] (a Cognito app client secret)",
    ),
}


def imported_format(client_id: str) -> ImportedFormat | None:
    """The imported format a Client ID has the shape of, or None (a ``gk_`` id never has one).
    No I/O, no checksum: a well-shaped id may still be unknown."""
    if not client_id.isascii():
        return None
    for name, shape in _SHAPES.items():
        if shape.client_id.fullmatch(client_id):
            return name
    return None


def secret_bits(value: str) -> float:
    """A secret's entropy as its length times the bits of the smallest alphabet holding all its
    characters (0 if none does). An upper bound for a random secret, the count for a random one."""
    chars = set(value)
    for alphabet in _SECRET_ALPHABETS:
        if chars <= alphabet:
            return len(value) * math.log2(len(alphabet))
    return 0.0


def check_imported_secret(source: ImportedFormat, value: str, field_name: str) -> None:
    """Raise MalformedCredential naming what is wrong unless `value` is a secret of `source`'s
    format with at least MIN_SECRET_BITS of entropy. Never echoes the value."""
    if not value.isascii():
        raise MalformedCredential(field_name, "must contain only ASCII characters")
    if value.startswith(CLIENT_SECRET_PREFIX):  # would be read as a Gatekey secret, and refused
        raise MalformedCredential(field_name, f"must not start with {CLIENT_SECRET_PREFIX!r}")
    bits = secret_bits(value)
    if bits and bits < MIN_SECRET_BITS:
        raise MalformedCredential(
            field_name,
            f"is too weak: {len(value)} characters carry about {int(bits)} bits, under the "
            f"{MIN_SECRET_BITS} required",
        )
    if not _SHAPES[source].secret.fullmatch(value):
        raise MalformedCredential(field_name, f"must be {_SHAPES[source].secret_text}")
    if len(set(value)) < _MIN_DISTINCT:
        raise MalformedCredential(
            field_name,
            f"is too weak: fewer than {_MIN_DISTINCT} distinct characters (a placeholder?)",
        )


def parse_client_secret(client_id: str, value: object) -> ClientSecret:
    """Validate, without I/O, a secret presented with `client_id` (already parsed): a ``gk_``
    id's must be a Gatekey secret (format and checksum); an imported id's may be one (it was
    rotated) or a secret of the id's own format."""
    source = imported_format(client_id)
    if source is None or not isinstance(value, str) or value.startswith(CLIENT_SECRET_PREFIX):
        return ClientSecret.parse(value)
    check_imported_secret(source, value, "client_secret")
    return ClientSecret(value)


def parse_credentials(client_id: object, secret: object) -> tuple[str, ClientSecret]:
    """A presented Client ID and Secret, validated without I/O (MalformedCredential)."""
    parsed = parse_client_id(client_id)
    return parsed, parse_client_secret(parsed, secret)


def decode_basic(value: str) -> tuple[str, str]:
    """``base64(client_id:client_secret)`` of an ``Authorization: Basic`` header. Both parts are
    form-urldecoded as RFC 6749 §2.3.1 asks (a no-op for Gatekey's own URL-safe formats)."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII input
        raise InvalidCredentials("Authorization: Basic is not valid base64") from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidCredentials("Authorization: Basic must hold client_id:client_secret")
    return unquote(client_id), unquote(secret)
