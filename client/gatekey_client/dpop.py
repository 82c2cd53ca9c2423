"""DPoP (RFC 9449) for bots: a key the bot holds, DPoP-bound access tokens, and a fresh proof
for every request. Needs ``cryptography`` (``pip install './client[dpop]'``).

A stolen DPoP-bound token is useless without the private key: every request carries a proof,
signed with it, that names the request's method and URL, the token's hash, a unique jti and
the time. Use it through the auth classes::

    from gatekey_client.dpop import DPoPKey
    from gatekey_client.requests_auth import GatekeyRequestsAuth

    key = DPoPKey.generate()             # or DPoPKey.from_pem(open("bot-dpop.pem").read())
    auth = GatekeyRequestsAuth(client_id, client_secret, token_url=..., dpop_key=key)
    requests.get("https://api.example.com/v1/orders", auth=auth, timeout=10)

The key never leaves the process; keep it for the life of the bot (a new key needs a new
token). Generate it once per process, or load a PEM kept as carefully as the Client Secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gatekey_client.tokens import AccessToken, ClientConfig, TokenRequestError, logger

DPOP_TOKEN_TYPE: Final = "DPoP"
_NONCE_HEADER: Final = "dpop-nonce"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def htu(url: str) -> str:
    """A request URL as a proof names it (RFC 9449 §4.2): without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


class DPoPKey:
    """A P-256 (ES256) or Ed25519 private key and the proofs it signs. ``repr()`` shows only
    the public thumbprint."""

    __slots__ = ("_alg", "_key", "jwk", "thumbprint")

    def __init__(self, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("a DPoP EC key must be on P-256 (ES256)")
            numbers = key.public_key().public_numbers()
            self.jwk = {
                "crv": "P-256",
                "kty": "EC",
                "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big")),
            }
            self._alg = "ES256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self.jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
            self._alg = "Ed25519"
        else:
            raise ValueError("a DPoP key must be a P-256 or Ed25519 private key")
        self._key = key
        canonical = json.dumps(self.jwk, separators=(",", ":"), sort_keys=True)
        self.thumbprint = _b64url(hashlib.sha256(canonical.encode()).digest())  # RFC 7638

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self._alg!r}, thumbprint={self.thumbprint!r})"

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if alg == "Ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        raise ValueError("alg must be ES256 or Ed25519")

    @classmethod
    def from_pem(cls, pem: str | bytes, password: bytes | None = None) -> DPoPKey:
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError("a DPoP key must be a P-256 or Ed25519 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM, to keep it across restarts (keep it secret)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """A fresh proof (RFC 9449 §4.2) for one request."""
        header = {"typ": "dpop+jwt", "alg": self._alg, "jwk": self.jwk}
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": htu(url),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = _b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        ).encode("ascii")
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self._key.sign(signing_input)
        return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


class PostFormWithHeaders(Protocol):
    """POST a urlencoded form; return (status, body, response headers with lower-case names)."""

    def __call__(
        self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes, Mapping[str, str]]: ...


class DPoPNonceStore:
    """The last DPoP-Nonce each origin sent (RFC 9449 §8), for the next proof to it."""

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(self._origin(url))

    def update(self, url: str, headers: Mapping[str, str]) -> None:
        nonce = headers.get(_NONCE_HEADER)
        if nonce:
            with self._lock:
                self._nonces[self._origin(url)] = nonce


def fetch_dpop_token(
    config: ClientConfig,
    key: DPoPKey,
    post: PostFormWithHeaders,
    nonces: DPoPNonceStore,
    clock: Callable[[], float] = time.time,
) -> AccessToken:
    """The client_credentials grant with a DPoP proof: a DPoP-bound token. A ``use_dpop_nonce``
    answer is retried once, with the nonce it carried."""
    from gatekey_client.tokens import _parse_token_response

    url = config.token_url
    if url is None:
        raise RuntimeError("a DPoP token needs a token_url")
    form = {"grant_type": "client_credentials"}
    if config.scopes:
        form["scope"] = " ".join(config.scopes)
    for attempt in range(2):
        headers = {
            "Authorization": config._basic(),
            "Accept": "application/json",
            "DPoP": key.proof("POST", url, nonce=nonces.get(url), now=clock()),
        }
        status, body, answer_headers = post(url, headers=headers, form=form, timeout=config.timeout)
        nonces.update(url, answer_headers)
        try:
            return _parse_token_response(
                status, body, secret=config.client_secret, token_type=DPOP_TOKEN_TYPE
            )
        except TokenRequestError as exc:
            if exc.error != "use_dpop_nonce" or attempt or _NONCE_HEADER not in answer_headers:
                raise
            logger.debug("the token endpoint asked for a DPoP nonce; asking once more with it")
    raise AssertionError("unreachable")  # pragma: no cover
