"""Shared core of the auth classes: settings, token request/response, and the token cache.

This module imports no HTTP library: each auth class passes in its own ``PostForm`` function.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol
from urllib.parse import quote, urlsplit

logger = logging.getLogger("gatekey_client")

# How headers mode presents the credentials: a pair of headers, or Authorization: Basic.
HeaderStyle = Literal["gatekey", "cloudflare", "basic"]
HEADER_STYLES: Final[tuple[HeaderStyle, ...]] = ("gatekey", "cloudflare", "basic")
Clock = Callable[[], float]

HEADER_NAMES: Final[Mapping[HeaderStyle, tuple[str, str]]] = {
    "gatekey": ("Gatekey-Client-Id", "Gatekey-Client-Secret"),
    "cloudflare": ("CF-Access-Client-Id", "CF-Access-Client-Secret"),
}
# Headers mode's pairs in either style: what a redirect to another origin must not carry (both
# HTTP libraries drop Authorization, and so Basic, on such a redirect themselves).
CREDENTIAL_HEADERS: Final = tuple(name for names in HEADER_NAMES.values() for name in names)
DEFAULT_PORTS: Final[Mapping[str, int]] = {"http": 80, "https": 443}
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_CHARS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
_MAX_DESCRIPTION: Final = 200
_MARGIN_FLOOR: Final = 30.0


class TokenRequestError(Exception):
    """The token endpoint refused the request or could not be reached.

    ``error`` is the RFC 6749 §5.2 code (None if the reply had none) and ``status`` the HTTP
    status (None if no reply arrived). The client secret never appears in it.
    """

    def __init__(
        self, description: str, *, status: int | None = None, error: str | None = None
    ) -> None:
        self.description = description
        self.status = status
        self.error = error
        where = f"HTTP {status}" if status is not None else "no response"
        code = f" {error}" if error else ""
        super().__init__(f"token request failed ({where}){code}: {description}")


class PostForm(Protocol):
    """POST a urlencoded form, return (HTTP status, body); raise TokenRequestError if no reply."""

    def __call__(
        self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]: ...


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_in: float


def check_credential(name: str, value: object) -> None:
    # Surrounding whitespace is almost always a copy-paste accident (a newline from a file).
    if not isinstance(value, str) or not value or not value.isprintable() or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding whitespace")


def _check_token_url(url: object) -> None:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # e.g. an unbalanced "[" in the host
        parts = None
    if parts is None or not parts.hostname:
        raise ValueError("token_url must be an absolute https:// URL")
    if parts.scheme != "https" and not (
        parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    ):
        raise ValueError(
            "token_url must use https:// (http:// only for 127.0.0.1, localhost, [::1])"
        )


def _check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too; iterating it would send one scope per character.
    if isinstance(scopes, str) or not all(
        isinstance(s, str) and s and set(s) <= _SCOPE_CHARS for s in scopes
    ):
        raise ValueError("scopes must be a list of non-empty strings without spaces or quotes")
    return tuple(scopes)


def check_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number")
    return float(value)


@dataclass(frozen=True)
class ClientConfig:
    """Validated settings shared by the auth classes; ``repr()`` omits the secret."""

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str | None = None
    scopes: Sequence[str] = ()
    header_style: HeaderStyle = "gatekey"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        check_credential("client_id", self.client_id)
        check_credential("client_secret", self.client_secret)
        if self.token_url is not None:
            _check_token_url(self.token_url)
        elif self.scopes:
            raise ValueError("scopes need a token_url (they apply to JWT mode only)")
        object.__setattr__(self, "scopes", _check_scopes(self.scopes))
        if self.header_style not in HEADER_STYLES:
            raise ValueError(f"header_style must be one of {sorted(HEADER_STYLES)}")
        object.__setattr__(self, "timeout", check_number("timeout", self.timeout))

    def static_headers(self) -> dict[str, str]:
        """Headers mode: the credentials themselves, on every request."""
        if self.header_style == "basic":
            return {"Authorization": self._basic()}
        id_header, secret_header = HEADER_NAMES[self.header_style]
        return {id_header: self.client_id, secret_header: self.client_secret}

    def _basic(self) -> str:
        # RFC 6749 §2.3.1: urlencode each part before joining them for HTTP Basic. quote() turns
        # a space into %20, which servers decode alike whether they use unquote or unquote_plus.
        # Gatekey's authorizer decodes Authorization: Basic the same way.
        pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def fetch_token(self, post: PostForm) -> AccessToken:
        """Run the client_credentials grant (RFC 6749 §4.4) with client_secret_basic."""
        if self.token_url is None:
            raise RuntimeError("fetch_token needs a token_url")  # a caller's bug, not user input
        headers = {"Authorization": self._basic(), "Accept": "application/json"}
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        logger.debug("requesting an access token for %s from %s", self.client_id, self.token_url)
        status, body = post(self.token_url, headers=headers, form=form, timeout=self.timeout)
        return _parse_token_response(status, body, secret=self.client_secret)


def _parse_token_response(
    status: int,
    body: bytes,
    *,
    secret: str,
    token_type: str = "Bearer",  # noqa: S107
) -> AccessToken:
    """The token of a token response, of `token_type` (Bearer; DPoP for gatekey_client.dpop)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    if status != 200:
        error, description = data.get("error"), data.get("error_description")
        raise TokenRequestError(
            _from_server(description, secret) if description else "no error_description",
            status=status,
            error=_from_server(error, secret) if isinstance(error, str) and error else None,
        )
    token, answered_type = data.get("access_token"), data.get("token_type")
    if not isinstance(token, str) or not token:
        raise TokenRequestError("the response has no access_token", status=status)
    if not isinstance(answered_type, str) or answered_type.lower() != token_type.lower():
        raise TokenRequestError(f"the response's token_type is not {token_type}", status=status)
    try:
        lifetime = check_number("expires_in", data.get("expires_in"))
    except ValueError:
        raise TokenRequestError("the response has no valid expires_in", status=status) from None
    logger.debug("received an access token valid for %s s", lifetime)
    return AccessToken(token, lifetime)


def _from_server(text: object, secret: str) -> str:
    # Server text ends up in messages and logs: bound it, and never let it echo the secret.
    return str(text).replace(secret, "[redacted]")[:_MAX_DESCRIPTION]


class TokenCache:
    """Caches one access token and renews it shortly before it expires.

    Renewal happens once the remaining lifetime drops below ``refresh_margin`` seconds (default
    max(30 s, 10% of expires_in), at most half the lifetime). One lock serialises fetches, so
    concurrent callers on a cold cache share a single fetch.
    """

    def __init__(
        self,
        fetch: Callable[[], AccessToken],
        *,
        refresh_margin: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if refresh_margin is not None:
            refresh_margin = check_number("refresh_margin", refresh_margin, allow_zero=True)
        self._fetch = fetch
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        # (token, renew_at) in one attribute so a lock-free reader never sees a mixed pair.
        self._entry: tuple[str, float] | None = None

    def cached(self) -> str | None:
        """The cached token if it is not due for renewal, without locking or fetching."""
        entry = self._entry
        if entry is not None and self._clock() < entry[1]:
            return entry[0]
        return None

    def get(self) -> str:
        """A valid token, fetching one if needed (at most one fetch at a time)."""
        token = self.cached()
        if token is not None:
            return token
        with self._lock:
            token = self.cached()  # another thread may have fetched while this one waited
            if token is not None:
                return token
            started = self._clock()  # count the lifetime from before the request: conservative
            new = self._fetch()
            margin = self._margin
            if margin is None:
                # Capped at half the lifetime so a short-lived token is still reused at all.
                margin = min(max(_MARGIN_FLOOR, new.expires_in / 10), new.expires_in / 2)
            self._entry = (new.value, started + new.expires_in - margin)
            return new.value

    def renew(self, rejected: str) -> str:
        """A token other than ``rejected`` (which a resource refused): drop it if it is still
        cached and fetch anew, or return a newer token another caller already fetched."""
        with self._lock:
            if self._entry is not None and self._entry[0] == rejected:
                logger.debug("dropping the rejected access token")
                self._entry = None
        return self.get()
