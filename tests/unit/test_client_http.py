"""The requests and httpx auth classes against a real loopback HTTP server playing Gatekey.

The fake server is both the token endpoint (``POST /token``, RFC 6749 client_credentials with
client_secret_basic) and a protected resource (``GET /resource``) that echoes the headers it got.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import httpx
import pytest
import requests

from gatekey_client import TokenRequestError
from gatekey_client.httpx_auth import GatekeyHttpxAuth
from gatekey_client.requests_auth import GatekeyRequestsAuth

# Characters that client_secret_basic must form-urlencode: ':' ' ' '+' '/' '%'.
CLIENT_ID = "gk_bot:reporting"
CLIENT_SECRET = "gks_s3cret value+/%"
TIMEOUT = 10  # seconds; an upper bound for every client call, never a wait


class FakeGatekey:
    """State of the fake server; tests change it and read what it saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.base_url = ""
        self.expires_in = 3600
        self.allowed_scopes = {"orders:read", "orders:write"}
        self.token_delay = 0.0  # seconds each token request is held (cut short at teardown)
        self.released = threading.Event()
        self.token_forms: list[dict[str, str]] = []  # every token request, valid or not
        self.issued: list[str] = []
        self.rejected: set[str] = set()  # Bearer tokens the resource answers 401 to
        self.reject_all = False
        self.resource_hits = 0

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def resource_url(self) -> str:
        return f"{self.base_url}/resource"

    def client_is_known(self, authorization: str | None) -> bool:
        scheme, _, blob = (authorization or "").partition(" ")
        if scheme != "Basic":
            return False
        raw_id, _, raw_secret = base64.b64decode(blob).decode().partition(":")
        return (unquote_plus(raw_id), unquote_plus(raw_secret)) == (CLIENT_ID, CLIENT_SECRET)

    def token_reply(self, headers: Any, body: str) -> tuple[int, dict[str, Any]]:
        form = dict(parse_qsl(body, keep_blank_values=True))
        with self.lock:
            self.token_forms.append(form)
        self.released.wait(self.token_delay)
        if not self.client_is_known(headers.get("Authorization")):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return 400, {"error": "invalid_request", "error_description": "not a form"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "unsupported"}
        scopes = form.get("scope", "").split()
        if not set(scopes) <= self.allowed_scopes:
            return 400, {"error": "invalid_scope", "error_description": "scope not granted"}
        token = f"jwt-{secrets.token_urlsafe(16)}"
        with self.lock:
            self.issued.append(token)
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": " ".join(scopes),
        }

    def resource_reply(self, headers: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.resource_hits += 1
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and (self.reject_all or token in self.rejected):
            return 401, {"message": "Unauthorized"}
        return 200, {name.lower(): value for name, value in headers.items()}


def _handler(fake: FakeGatekey) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if self.path == "/token":
                self._reply(*fake.token_reply(self.headers, body))
            else:
                self._reply(404, {})

        def do_GET(self) -> None:
            if self.path == "/resource":
                self._reply(*fake.resource_reply(self.headers))
            else:
                self._reply(404, {})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # 20 simultaneous callers must not overflow the listen backlog


@pytest.fixture
def gatekey() -> Iterator[FakeGatekey]:
    fake = FakeGatekey()
    server = _Server(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Bot:
    """One HTTP library, driven the way a bot would use it: one shared session or client."""

    def __init__(self, lib: str) -> None:
        self.lib = lib
        self.session: Any = requests.Session() if lib == "requests" else httpx.Client()

    def auth(self, client_secret: str = CLIENT_SECRET, **kwargs: Any) -> Any:
        cls = GatekeyRequestsAuth if self.lib == "requests" else GatekeyHttpxAuth
        return cls(CLIENT_ID, client_secret, **kwargs)

    def get(self, url: str, auth: Any) -> tuple[int, dict[str, Any]]:
        response = self.session.get(url, auth=auth, timeout=TIMEOUT)
        return response.status_code, response.json()

    def bearer(self, url: str, auth: Any) -> str:
        status, headers = self.get(url, auth)
        assert status == 200
        scheme, _, token = headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        return token


@pytest.fixture(params=["requests", "httpx"])
def bot(request: pytest.FixtureRequest) -> Iterator[Bot]:
    bot = Bot(request.param)
    with bot.session:
        yield bot


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


HEADER_STYLES = {
    "gatekey": ("gatekey-client-id", "gatekey-client-secret"),
    "cloudflare": ("cf-access-client-id", "cf-access-client-secret"),
}


# --- Headers mode --------------------------------------------------------------------------


@pytest.mark.parametrize("style", sorted(HEADER_STYLES))
def test_headers_mode_sends_the_credentials_on_every_request(
    gatekey: FakeGatekey, bot: Bot, style: str
) -> None:
    auth = bot.auth(header_style=style)
    sent_names = set(HEADER_STYLES[style])
    other_names = {name for names in HEADER_STYLES.values() for name in names} - sent_names

    for _ in range(2):
        status, headers = bot.get(gatekey.resource_url, auth)
        assert status == 200
        assert [headers[name] for name in HEADER_STYLES[style]] == [CLIENT_ID, CLIENT_SECRET]
        assert not (other_names | {"authorization"}) & headers.keys()
    assert gatekey.token_forms == []


# --- JWT mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "form"),
    [
        ((), {"grant_type": "client_credentials"}),
        (
            ["orders:read", "orders:write"],
            {"grant_type": "client_credentials", "scope": "orders:read orders:write"},
        ),
    ],
)
def test_jwt_mode_fetches_once_then_reuses_the_token(
    gatekey: FakeGatekey, bot: Bot, scopes: list[str], form: dict[str, str]
) -> None:
    auth = bot.auth(token_url=gatekey.token_url, scopes=scopes)

    seen = [bot.bearer(gatekey.resource_url, auth) for _ in range(3)]

    assert gatekey.token_forms == [form]
    assert seen == gatekey.issued * 3


def test_jwt_mode_renews_only_once_past_the_margin(gatekey: FakeGatekey, bot: Bot) -> None:
    clock = FakeClock()
    auth = bot.auth(token_url=gatekey.token_url, clock=clock)
    renew_at = gatekey.expires_in - max(30, gatekey.expires_in / 10)  # the documented default
    first = bot.bearer(gatekey.resource_url, auth)

    clock.now = renew_at - 1
    assert bot.bearer(gatekey.resource_url, auth) == first
    assert len(gatekey.token_forms) == 1

    clock.now = renew_at + 1
    second = [bot.bearer(gatekey.resource_url, auth) for _ in range(3)]
    assert len(gatekey.token_forms) == 2
    assert second == [gatekey.issued[1]] * 3
    assert gatekey.issued[1] != first


def test_concurrent_callers_on_a_cold_cache_share_one_fetch(gatekey: FakeGatekey, bot: Bot) -> None:
    callers = 20
    # Hold each token request long enough that callers without a lock would all reach the server.
    gatekey.token_delay = 0.3
    auth = bot.auth(token_url=gatekey.token_url)
    barrier = threading.Barrier(callers)

    def call(_: int) -> tuple[int, dict[str, Any]]:
        barrier.wait(timeout=TIMEOUT)
        return bot.get(gatekey.resource_url, auth)

    with ThreadPoolExecutor(max_workers=callers) as pool:
        results = list(pool.map(call, range(callers)))

    assert len(gatekey.token_forms) == 1
    assert [status for status, _ in results] == [200] * callers
    assert {headers["authorization"] for _, headers in results} == {f"Bearer {gatekey.issued[0]}"}


def test_a_rejected_token_is_replaced_and_the_request_retried_once(
    gatekey: FakeGatekey, bot: Bot
) -> None:
    auth = bot.auth(token_url=gatekey.token_url)
    revoked = bot.bearer(gatekey.resource_url, auth)
    gatekey.rejected.add(revoked)

    replacement = bot.bearer(gatekey.resource_url, auth)

    assert replacement == gatekey.issued[1] != revoked
    assert (len(gatekey.token_forms), gatekey.resource_hits) == (2, 3)
    # The replacement is cached: no further fetch.
    assert bot.bearer(gatekey.resource_url, auth) == replacement
    assert len(gatekey.token_forms) == 2


def test_a_resource_that_keeps_answering_401_is_retried_only_once(
    gatekey: FakeGatekey, bot: Bot
) -> None:
    gatekey.reject_all = True
    auth = bot.auth(token_url=gatekey.token_url)

    status, _ = bot.get(gatekey.resource_url, auth)

    assert status == 401
    assert (len(gatekey.token_forms), gatekey.resource_hits) == (2, 2)


@pytest.mark.parametrize(
    ("client_secret", "scopes", "status", "error"),
    [
        pytest.param("gks_wrong-secret", [], 401, "invalid_client", id="wrong-secret"),
        pytest.param(CLIENT_SECRET, ["admin"], 400, "invalid_scope", id="scope-not-granted"),
    ],
)
def test_a_refused_token_request_raises_without_leaking_the_secret(
    gatekey: FakeGatekey,
    bot: Bot,
    caplog: pytest.LogCaptureFixture,
    client_secret: str,
    scopes: list[str],
    status: int,
    error: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = bot.auth(client_secret, token_url=gatekey.token_url, scopes=scopes)

    with pytest.raises(TokenRequestError) as info:
        bot.get(gatekey.resource_url, auth)

    assert (info.value.status, info.value.error) == (status, error)
    assert gatekey.resource_hits == 0
    assert "requesting an access token" in caplog.text  # the library's DEBUG logs were captured
    for text in (str(info.value), repr(info.value), repr(auth), caplog.text):
        assert client_secret not in text


def test_a_token_endpoint_slower_than_the_timeout_raises(gatekey: FakeGatekey, bot: Bot) -> None:
    gatekey.token_delay = TIMEOUT
    auth = bot.auth(token_url=gatekey.token_url, timeout=0.2)

    with pytest.raises(TokenRequestError) as info:
        bot.get(gatekey.resource_url, auth)

    assert (info.value.status, info.value.error) == (None, None)
    assert gatekey.resource_hits == 0


def test_an_unreachable_token_endpoint_raises(bot: Bot) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = bot.auth(token_url=f"http://127.0.0.1:{port}/token")

    with pytest.raises(TokenRequestError) as info:
        bot.get(f"http://127.0.0.1:{port}/resource", auth)

    assert (info.value.status, info.value.error) == (None, None)


# --- httpx async flow ----------------------------------------------------------------------


def test_httpx_async_flow_caches_and_retries(gatekey: FakeGatekey) -> None:
    auth = GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET, token_url=gatekey.token_url)

    async def run() -> tuple[list[str], str]:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
            first = [(await client.get(gatekey.resource_url)).json() for _ in range(3)]
            gatekey.rejected.add(gatekey.issued[0])
            retried = await client.get(gatekey.resource_url)
        return [h["authorization"] for h in first], retried.json()["authorization"]

    first, retried = asyncio.run(run())

    assert first == [f"Bearer {gatekey.issued[0]}"] * 3
    assert retried == f"Bearer {gatekey.issued[1]}"
    assert len(gatekey.token_forms) == 2


def test_httpx_async_flow_headers_mode(gatekey: FakeGatekey) -> None:
    auth = GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET, header_style="cloudflare")

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
            return (await client.get(gatekey.resource_url)).json()

    headers = asyncio.run(run())

    assert (headers["cf-access-client-id"], headers["cf-access-client-secret"]) == (
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert gatekey.token_forms == []
