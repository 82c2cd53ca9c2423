"""The client library's shared core: settings validation, token request/response, TokenCache."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import pytest

from gatekey_client import AccessToken, ClientConfig, TokenCache, TokenRequestError
from gatekey_client.httpx_auth import GatekeyHttpxAuth
from gatekey_client.requests_auth import GatekeyRequestsAuth

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
TOKEN_URL = "https://auth.example.com/token"
SECRET = "gks_core-test-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingFetch:
    """Issues token-1, token-2, ... with a fixed lifetime; can be told to fail once."""

    def __init__(self, expires_in: float) -> None:
        self.expires_in = expires_in
        self.calls = 0
        self.fail_next = False

    def __call__(self) -> AccessToken:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise TokenRequestError("unavailable", status=503)
        return AccessToken(f"token-{self.calls}", self.expires_in)


# --- TokenCache ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "refresh_margin", "margin"),
    [
        pytest.param(3600, None, 360, id="default-10-percent"),
        pytest.param(120, None, 30, id="default-30s-floor"),
        pytest.param(40, None, 20, id="default-capped-at-half-lifetime"),
        pytest.param(3600, 60, 60, id="configured"),
        pytest.param(3600, 0, 0, id="configured-zero"),
    ],
)
def test_cache_reuses_the_token_until_the_margin_then_fetches_once(
    expires_in: float, refresh_margin: float | None, margin: float
) -> None:
    clock, fetch = FakeClock(), CountingFetch(expires_in)
    cache = TokenCache(fetch, refresh_margin=refresh_margin, clock=clock)

    assert [cache.get() for _ in range(3)] == ["token-1"] * 3
    clock.now = expires_in - margin - 0.5
    assert (cache.get(), fetch.calls) == ("token-1", 1)
    clock.now = expires_in - margin + 0.5
    assert (cache.get(), fetch.calls) == ("token-2", 2)
    assert (cache.get(), fetch.calls) == ("token-2", 2)


def test_cache_renew_replaces_only_the_rejected_token() -> None:
    fetch = CountingFetch(3600)
    cache = TokenCache(fetch, clock=FakeClock())
    cache.get()

    assert (cache.renew("token-1"), fetch.calls) == ("token-2", 2)
    # A late 401 for the old token must not throw away the new one.
    assert (cache.renew("token-1"), fetch.calls) == ("token-2", 2)
    assert (cache.get(), fetch.calls) == ("token-2", 2)


def test_cache_does_not_keep_a_failed_fetch() -> None:
    fetch = CountingFetch(3600)
    fetch.fail_next = True
    cache = TokenCache(fetch, clock=FakeClock())

    with pytest.raises(TokenRequestError):
        cache.get()
    assert cache.cached() is None
    assert (cache.get(), fetch.calls) == ("token-2", 2)


# --- Token request and response ------------------------------------------------------------


class FakePost:
    def __init__(self, status: int, body: bytes) -> None:
        self.reply = (status, body)
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        self.calls.append(
            {"url": url, "headers": dict(headers), "form": dict(form), "timeout": timeout}
        )
        return self.reply


def _ok(**fields: object) -> bytes:
    return json.dumps(
        {"access_token": "jwt", "token_type": "Bearer", "expires_in": 60, **fields}
    ).encode()


def test_token_request_uses_client_secret_basic_with_urlencoded_parts() -> None:
    client_id, secret = "gk_id:with colon", "gks_s/e c+ret%"
    config = ClientConfig(client_id, secret, TOKEN_URL, ("orders:read", "orders:write"), timeout=3)
    post = FakePost(200, _ok())

    assert config.fetch_token(post) == AccessToken("jwt", 60)

    [call] = post.calls
    scheme, _, blob = call["headers"]["Authorization"].partition(" ")
    raw_id, _, raw_secret = base64.b64decode(blob).decode().partition(":")
    assert scheme == "Basic"
    for unquote_ in (unquote, unquote_plus):  # servers use either
        assert (unquote_(raw_id), unquote_(raw_secret)) == (client_id, secret)
    assert call["form"] == {"grant_type": "client_credentials", "scope": "orders:read orders:write"}
    assert (call["url"], call["timeout"]) == (TOKEN_URL, 3)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            b'{"error": "invalid_request", "error_description": "no grant_type"}',
            "invalid_request",
        ),
        (401, b'{"error": "invalid_client"}', "invalid_client"),
        (502, b"<html>Bad Gateway</html>", None),
        (200, b"not json", None),
        (200, json.dumps({"token_type": "Bearer", "expires_in": 60}).encode(), None),
        (200, _ok(token_type="mac"), None),
        (200, _ok(expires_in=None), None),
        (200, _ok(expires_in=-5), None),
        (200, _ok(expires_in="60"), None),
    ],
)
def test_bad_token_responses_raise_token_request_error(
    status: int, body: bytes, error: str | None
) -> None:
    config = ClientConfig("gk_id", SECRET, TOKEN_URL)

    with pytest.raises(TokenRequestError) as info:
        config.fetch_token(FakePost(status, body))

    assert (info.value.status, info.value.error) == (status, error)
    assert SECRET not in str(info.value)


def test_an_error_description_echoing_the_secret_is_redacted() -> None:
    body = json.dumps({"error": "invalid_client", "error_description": f"bad secret {SECRET}"})
    config = ClientConfig("gk_id", SECRET, TOKEN_URL)

    with pytest.raises(TokenRequestError) as info:
        config.fetch_token(FakePost(401, body.encode()))

    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert "[redacted]" in str(info.value)


# --- Constructor validation ----------------------------------------------------------------

AUTH_CLASSES = [GatekeyRequestsAuth, GatekeyHttpxAuth]
VALID = {"client_id": "gk_id", "client_secret": SECRET}


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
@pytest.mark.parametrize(
    ("changes", "argument"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"client_id": "gk_id\n"}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_secret": 42}, "client_secret"),
        ({"client_secret": " gks_padded"}, "client_secret"),
        ({"token_url": "http://auth.example.com/token"}, "token_url"),
        ({"token_url": "http://localhost.example.com/token"}, "token_url"),
        ({"token_url": "ftp://127.0.0.1/token"}, "token_url"),
        ({"token_url": "/token"}, "token_url"),
        ({"token_url": 42}, "token_url"),
        ({"token_url": "https://[::1/token"}, "token_url"),
        ({"token_url": TOKEN_URL, "scopes": "orders:read"}, "scopes"),
        ({"token_url": TOKEN_URL, "scopes": ["orders read"]}, "scopes"),
        ({"token_url": TOKEN_URL, "scopes": [""]}, "scopes"),
        ({"scopes": ["orders:read"]}, "scopes"),
        ({"header_style": "bearer"}, "header_style"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"token_url": TOKEN_URL, "refresh_margin": -1}, "refresh_margin"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(
    auth_class: type[Any], changes: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument) as info:
        auth_class(**{**VALID, **changes})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
@pytest.mark.parametrize(
    "token_url",
    [
        TOKEN_URL,
        "http://127.0.0.1:8080/token",
        "http://localhost/token",
        "http://[::1]:9000/token",
    ],
)
def test_https_and_loopback_http_token_urls_are_accepted(
    auth_class: type[Any], token_url: str
) -> None:
    auth = auth_class(**VALID, token_url=token_url)
    assert token_url in repr(auth)
    assert SECRET not in repr(auth)


# --- Import isolation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        ("gatekey_client", ["boto3", "botocore", "gatekey", "requests", "httpx"]),
        ("gatekey_client.tokens", ["boto3", "botocore", "gatekey", "requests", "httpx"]),
        ("gatekey_client.requests_auth", ["boto3", "gatekey", "httpx"]),
        ("gatekey_client.httpx_auth", ["boto3", "gatekey", "requests"]),
    ],
)
def test_import_loads_no_optional_dependency(module: str, must_not_load: list[str]) -> None:
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps([m for m in {must_not_load!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": str(CLIENT_DIR)}
    result = subprocess.run(  # noqa: S603 - fixed code, run by this interpreter
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == []
