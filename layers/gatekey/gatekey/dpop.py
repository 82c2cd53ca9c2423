"""DPoP (RFC 9449): proofs of possession that bind an access token to its holder's key.

- `ProofVerifier.verify` checks a ``DPoP`` header's proof as §4.3 lists: typ ``dpop+jwt``, an
  asymmetric alg of `ALGORITHMS`, a public `jwk` (no private member), the signature by that
  key, `htm` and `htu` against the request, `iat` within a window (or a current server nonce),
  `ath` of the access token. What it returns names the key (`jkt`, RFC 7638 thumbprint) and
  the `jti` that a `ReplayGuard` then remembers: replay is checked last, so that only proofs
  that passed every other check can fill its memory.
- `request_target` reads the method and the URL a client called from an API Gateway
  authorizer event (REST REQUEST or HTTP API 2.0); `normalise_htu` is the one comparison of
  URLs (RFC 3986 §6.2.2 and §6.2.3, query and fragment dropped).
- `DPoPNonces`: stateless server nonces (§8): HMAC-SHA256 of a time slot under a key derived
  from the pepper, valid for the slot they were issued in and the next.

Written on `cryptography` directly, as gatekey.access_tokens is: it runs on every request.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gatekey.cache import TtlCache
from gatekey.errors import DPoPReplayed, InvalidDPoPProof, UseDPoPNonce
from gatekey.signing import b64url

PROOF_TYPE: Final = "dpop+jwt"
# Asymmetric only (§4.3 item 5): ES256 first (the default of oauth4webapi and most clients),
# Ed25519 under both its names (RFC 9864's fully specified "Ed25519", and "EdDSA", which it
# deprecates but clients still send), and RSA with PKCS#1 v1.5 or PSS. No HMAC, no "none", no
# RSA below 2048 bits.
ALGORITHMS: Final = ("ES256", "Ed25519", "EdDSA", "PS256", "RS256")
MIN_RSA_BITS: Final = 2048
# The token endpoint checks a proof before it authenticates the client: an RSA key's size and
# exponent are bounded, so no proof costs more than one 4096-bit verification with a small e.
MAX_RSA_BITS: Final = 4096
MAX_RSA_EXPONENT_BITS: Final = 32
# How far a proof's iat may be from now, either way (§4.3 item 11; §11.1). A parameter
# (DpopProofWindowSeconds); replayed proofs are refused within it.
DEFAULT_IAT_WINDOW: Final = 60
# A proof carries one public key of at most 4096 bits (about 700 bytes as a JWK) and a
# signature of as much: 8 KB is more than any proof needs.
MAX_PROOF_LENGTH: Final = 8192
MAX_JTI_LENGTH: Final = 256
# JWK members of private keys (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2): a proof's jwk
# holding one is refused, as §4.3 item 7 asks.
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_COMPACT_JWS: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_SHA256: Final = hashes.SHA256()
_PKCS1V15: Final = padding.PKCS1v15()
# RFC 7518 §3.5: PS256's salt is as long as the hash.
_PSS: Final = padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=32)
_ECDSA_SHA256: Final = ec.ECDSA(_SHA256)
# Proof keys already parsed, by their canonical JWK: a bot signs every proof with one key,
# and building an EC point (which validates it) costs as much as a third of a verification.
KEY_CACHE_SIZE: Final = 1024

# -- keys and thumbprints ----------------------------------------------------------------------

# The members RFC 7638 §3.2 hashes, per key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# The key type (and curve) each algorithm needs.
_ALG_KEY: Final = {
    "ES256": ("EC", "P-256"),
    "Ed25519": ("OKP", "Ed25519"),
    "EdDSA": ("OKP", "Ed25519"),
    "PS256": ("RSA", None),
    "RS256": ("RSA", None),
}


def _canonical_jwk(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3: the required members, sorted, no whitespace (which is what a thumbprint
    hashes). Every member must be a string."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise InvalidDPoPProof("DPoP proof jwk has an unsupported kty")
    values = {name: jwk.get(name) for name in members}
    if not all(isinstance(v, str) and v for v in values.values()):
        raise InvalidDPoPProof("DPoP proof jwk lacks a required member")
    return json.dumps(values, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the value of `cnf.jkt` (RFC 9449 §6.1)."""
    return _thumbprint(_canonical_jwk(jwk))


def _thumbprint(canonical: str) -> str:
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def access_token_hash(access_token: str) -> str:
    """`ath` (§4.2): base64url of the SHA-256 of the access token's ASCII octets."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def _b64decode(segment: str) -> bytes:
    standard = segment.replace("-", "+").replace("_", "/")
    return binascii.a2b_base64(standard + "=" * (-len(segment) % 4))


def _b64_int(text: str) -> int:
    return int.from_bytes(_b64decode(text), "big")


ProofKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _load_key(jwk: Mapping[str, Any], kty: str) -> ProofKey:
    """The public key of a canonical, public JWK (ValueError if it is not a valid one)."""
    if kty == "RSA":
        n, e = _b64_int(jwk["n"]), _b64_int(jwk["e"])
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise ValueError("RSA key size")
        if e.bit_length() > MAX_RSA_EXPONENT_BITS:
            raise ValueError("RSA exponent")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        x, y = _b64decode(jwk["x"]), _b64decode(jwk["y"])
        if len(x) != 32 or len(y) != 32:  # RFC 7518 §6.2.1.2: full-width coordinates
            raise ValueError("P-256 coordinates")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        return numbers.public_key()  # refuses a point not on the curve
    raw = _b64decode(jwk["x"])
    if len(raw) != 32:
        raise ValueError("Ed25519 key length")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _verify(key: ProofKey, alg: str, signature: bytes, signing_input: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, _ECDSA_SHA256)
        elif isinstance(key, rsa.RSAPublicKey):
            pad = _PSS if alg == "PS256" else _PKCS1V15
            key.verify(signature, signing_input, pad, _SHA256)
        else:
            key.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


# -- URLs --------------------------------------------------------------------------------------

_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")
_PERCENT: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_SPACE: Final = re.compile(r"\s")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(match: re.Match[str]) -> str:
    """RFC 3986 §6.2.2.1-2: escapes in upper case; unreserved characters decoded."""
    char = unquote(match.group(0))
    return char if char in _UNRESERVED else match.group(0).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(output) + ("/" if trailing and output else "")


# Both URLs of a request are normalised on every DPoP request, and a bot calls the same few:
# remembered (bounded; a client sending new ones only makes its own requests slower).
@functools.lru_cache(maxsize=1024)
def normalise_htu(url: str) -> str | None:
    """The URL as compared (§4.3 item 9): scheme and host in lower case, the scheme's default
    port dropped, escapes normalised, dot segments removed, an empty path as ``/``, query and
    fragment dropped. None for anything that is not an absolute http(s) URL without userinfo."""
    if not url.isascii() or _SPACE.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:  # an IPv6 literal: urlsplit drops its brackets
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _PERCENT.sub(_percent, parts.path or "/")
    return f"{scheme}://{netloc}{_remove_dot_segments(path)}"


@functools.lru_cache(maxsize=1024)
def request_url(host: str, path: str) -> str | None:
    """The URL API Gateway received a request at: https (API Gateway serves nothing else),
    except on a loopback host, which only the local stack (`make run`) answers on, over http.
    Characters API Gateway passes decoded are escaped again as a client would send them."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.partition("]")[0] + "]"
    scheme = "http" if name.lower() in _LOOPBACK else "https"
    try:
        escaped = quote(path, safe=_PATH_SAFE)
    except UnicodeEncodeError:  # a lone surrogate (JSON's \udc80): no URL a client called
        return None
    return normalise_htu(f"{scheme}://{host}{escaped}")


_PATH_SAFE: Final = "/%!$&'()*+,;=:@-._~"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class RequestTarget:
    method: str
    url: str  # normalised (normalise_htu)


def request_target(event: Mapping[str, Any]) -> RequestTarget | None:
    """The method and URL of the request an authorizer event is about (None if the event does
    not say). REST REQUEST: ``httpMethod``, ``requestContext.domainName`` (else the Host
    header) and ``requestContext.path``, the path as called, with the stage on the default
    endpoint and the base path on a custom domain. HTTP API 2.0: ``requestContext.http.method``,
    ``requestContext.domainName`` and ``rawPath``."""
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return None
    if event.get("version") == "2.0":
        http = context.get("http")
        method = _text(http.get("method")) if isinstance(http, dict) else None
        path = _text(event.get("rawPath"))
    else:
        method = _text(event.get("httpMethod")) or _text(context.get("httpMethod"))
        path = _text(context.get("path"))
    host = _text(context.get("domainName"))
    if host is None:
        headers = event.get("headers")
        if isinstance(headers, dict):
            host = _text(headers.get("Host") or headers.get("host"))
    if method is None or path is None or host is None:
        return None
    url = request_url(host, path)
    return None if url is None else RequestTarget(method.upper(), url)


def single_proof_header(event: Mapping[str, Any], value: str | None) -> str | None:
    """The one DPoP header of a request (§4.3 item 1: exactly one). A REST event keeps every
    value in multiValueHeaders (its headers hold the last); an HTTP API event joins repeated
    headers with commas, which no compact JWS contains."""
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        count = sum(
            len(v) if isinstance(v, list) else 1
            for k, v in multi.items()
            if isinstance(k, str) and k.lower() == "dpop"
        )
        if count > 1:
            raise InvalidDPoPProof("more than one DPoP header")
    return value


# -- nonces ------------------------------------------------------------------------------------

NONCE_SLOT: Final = 300  # a nonce is accepted in its slot and the next: 5 to 10 minutes
_NONCE_LABEL: Final = b"gatekey dpop-nonce v1"


class DPoPNonces:
    """Stateless server nonces (§8): ``<slot>.<HMAC-SHA256(key, slot)>``, where the key is
    HMAC-SHA256(pepper, label), one per pepper of the ring (the current one issues; any
    verifies, so a pepper change does not refuse the nonces of containers that predate it).
    The label keeps the nonce key apart from the hashes of secrets made with the same pepper.
    Not a dataclass: no printer shows the keys."""

    __slots__ = ("_issuing", "_keys")

    def __init__(self, peppers: Iterable[bytes], current: bytes) -> None:
        self._issuing = self._derive(current)
        self._keys = tuple(self._derive(p) for p in peppers)

    def __repr__(self) -> str:
        return f"DPoPNonces(keys={len(self._keys)})"

    @staticmethod
    def _derive(pepper: bytes) -> bytes:
        return hmac.new(pepper, _NONCE_LABEL, hashlib.sha256).digest()

    @staticmethod
    def _mac(key: bytes, slot: int) -> str:
        return b64url(hmac.new(key, str(slot).encode("ascii"), hashlib.sha256).digest())

    def issue(self, now: int) -> str:
        slot = now // NONCE_SLOT
        return f"{slot}.{self._mac(self._issuing, slot)}"

    def valid_until(self, nonce: object, now: int) -> int | None:
        """Until when `nonce` is accepted, if it is one of ours and current; else None."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return None
        slot_text, _, mac = nonce.partition(".")
        if not (slot_text.isascii() and slot_text.isdigit()) or len(slot_text) > 12:
            return None
        slot = int(slot_text)
        if slot not in (now // NONCE_SLOT, now // NONCE_SLOT - 1):
            return None
        if not any(hmac.compare_digest(self._mac(key, slot), mac) for key in self._keys):
            return None
        return (slot + 2) * NONCE_SLOT


# -- replay ------------------------------------------------------------------------------------


class ReplayGuard(Protocol):
    """Records a proof's first use: False if (`jkt`, `jti`) was seen before `until` ended."""

    def first_use(self, jkt: str, jti: str, until: int, now: int) -> bool: ...


class MemoryReplayGuard:
    """This container's memory of proofs, each kept until it could no longer be accepted.
    Bounded: past `size` proofs within one window, the oldest are forgotten (docs: the
    bound), so the cross-container guard is what a strict single use needs."""

    def __init__(self, size: int = 100_000) -> None:
        self._seen: TtlCache[tuple[str, str], bool] = TtlCache(size)

    def first_use(self, jkt: str, jti: str, until: int, now: int) -> bool:
        key = (jkt, jti)
        if self._seen.get(key, now):
            return False
        self._seen.put(key, True, until + 1)
        return True


class LayeredReplayGuard:
    """The container's memory first (a replay to the same container costs no I/O), then the
    shared one (a DynamoDB conditional write: gatekey.aws.dpop_replay)."""

    def __init__(self, local: ReplayGuard, shared: ReplayGuard) -> None:
        self._local = local
        self._shared = shared

    def first_use(self, jkt: str, jti: str, until: int, now: int) -> bool:
        return self._local.first_use(jkt, jti, until, now) and self._shared.first_use(
            jkt, jti, until, now
        )


# -- proofs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    jkt: str  # the key's RFC 7638 thumbprint
    jti: str
    # Until when this proof could be accepted: how long its jti must be remembered.
    acceptable_until: int


@dataclass(frozen=True, slots=True)
class NoncePolicy:
    nonces: DPoPNonces
    # True: a proof without a current nonce is refused (use_dpop_nonce). False: a current
    # nonce stands in for the iat window (for a client whose clock is off), none is needed.
    required: bool


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment).decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ProofVerifier:
    """Verifies proofs per RFC 9449 §4.3 (replay excepted: the caller's `ReplayGuard`)."""

    def __init__(
        self,
        *,
        iat_window: int = DEFAULT_IAT_WINDOW,
        algorithms: Iterable[str] = ALGORITHMS,
        nonce_policy: NoncePolicy | None = None,
    ) -> None:
        self.iat_window = iat_window
        self.algorithms = frozenset(algorithms) & frozenset(ALGORITHMS)
        self.nonce_policy = nonce_policy
        self._keys: TtlCache[str, tuple[ProofKey, str]] = TtlCache(KEY_CACHE_SIZE)
        # Headers already checked, by their base64url segment: a client's proofs all carry the
        # same one (typ, alg, jwk), and what `_key` decides depends on nothing else.
        self._headers: TtlCache[str, tuple[ProofKey, str, str]] = TtlCache(KEY_CACHE_SIZE)

    def verify(
        self,
        proof: object,
        *,
        method: str,
        urls: Collection[str],
        now: int,
        access_token: str | None = None,
    ) -> VerifiedProof:
        """The verified proof, or InvalidDPoPProof (UseDPoPNonce when a nonce is needed).
        `urls` are the request's, normalised (`request_url`; the token endpoint's may be
        called at its advertised URL or its API's own); with `access_token`, `ath` must be its
        hash. No message echoes the proof."""
        if not isinstance(proof, str) or len(proof) > MAX_PROOF_LENGTH:
            raise InvalidDPoPProof("DPoP proof is missing or too long")
        compact = _COMPACT_JWS.fullmatch(proof.strip())
        if compact is None:
            raise InvalidDPoPProof("DPoP proof is not a compact JWS")
        head, body, signature = compact.groups()
        checked = self._headers.get(head, 0)
        try:
            if checked is None:
                header = _json_object(head)
                key, jkt = self._key(header)
                checked = (key, jkt, header["alg"])
                self._headers.put(head, checked, float("inf"))
            claims = _json_object(body)
            raw_signature = _b64decode(signature)
        except ValueError as exc:
            raise InvalidDPoPProof("DPoP proof is malformed") from exc
        key, jkt, alg = checked
        if not _verify(key, alg, raw_signature, f"{head}.{body}".encode("ascii")):
            raise InvalidDPoPProof("DPoP proof signature is invalid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidDPoPProof("DPoP proof lacks a jti")
        if claims.get("htm") != method:
            raise InvalidDPoPProof("DPoP proof is for another method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalise_htu(htu) not in urls:
            raise InvalidDPoPProof("DPoP proof is for another URL")
        if access_token is not None:
            ath = claims.get("ath")
            expected = access_token_hash(access_token)
            if not isinstance(ath, str) or not hmac.compare_digest(ath.encode(), expected.encode()):
                raise InvalidDPoPProof("DPoP proof's ath is not the access token's hash")
        until = self._fresh_until(claims, now)
        return VerifiedProof(jkt, jti, until)

    def _key(self, header: Mapping[str, Any]) -> tuple[ProofKey, str]:
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
            raise InvalidDPoPProof("DPoP proof's typ is not dpop+jwt")
        if "crit" in header:
            raise InvalidDPoPProof("DPoP proof has critical header extensions")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidDPoPProof("DPoP proof's alg is not an accepted asymmetric algorithm")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise InvalidDPoPProof("DPoP proof has no jwk")
        if PRIVATE_MEMBERS & jwk.keys():
            raise InvalidDPoPProof("DPoP proof's jwk holds a private key")
        kty, crv = _ALG_KEY[alg]
        if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
            raise InvalidDPoPProof("DPoP proof's jwk is not a key for its alg")
        canonical = _canonical_jwk(jwk)
        cached = self._keys.get(canonical, 0)
        if cached is not None:
            return cached
        try:
            loaded = (_load_key(jwk, kty), _thumbprint(canonical))
        except (ValueError, TypeError) as exc:  # also binascii.Error, UnsupportedAlgorithm
            raise InvalidDPoPProof("DPoP proof's jwk is not a valid public key") from exc
        self._keys.put(canonical, loaded, float("inf"))
        return loaded

    def _fresh_until(self, claims: Mapping[str, Any], now: int) -> int:
        """Until when the proof is fresh: by a current server nonce where one is given (and
        required, if so configured), else by iat within the window."""
        iat = claims.get("iat")
        if not _number(iat):
            raise InvalidDPoPProof("DPoP proof lacks a numeric iat")
        policy = self.nonce_policy
        if policy is not None:
            nonce = claims.get("nonce")
            until = policy.nonces.valid_until(nonce, now)
            if until is not None:
                return until
            if policy.required:
                raise UseDPoPNonce("DPoP proof lacks a current server nonce")
        assert isinstance(iat, int | float)  # noqa: S101 - _number said so (for mypy)
        if abs(now - iat) > self.iat_window:
            raise InvalidDPoPProof("DPoP proof's iat is outside the accepted window")
        return int(iat) + self.iat_window


def check_replay(guard: ReplayGuard, proof: VerifiedProof, now: int) -> None:
    if not guard.first_use(proof.jkt, proof.jti, proof.acceptable_until, now):
        raise DPoPReplayed("DPoP proof was used before")


def confirmation_key(claims: Mapping[str, Any]) -> str | None:
    """The jkt an access token is bound to (RFC 9449 §6.1), or None for a bearer token. A
    `cnf` without a usable jkt binds to nothing that can be proven: refused."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not jkt:
        raise InvalidDPoPProof("access token's cnf has no jkt")
    return jkt
