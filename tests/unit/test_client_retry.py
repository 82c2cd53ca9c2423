"""One retry after a 401, for each kind of auth (Gatekey's headers, Access's headers, Basic,
JWT) and each HTTP library: a rotated secret is picked up from the credentials source, a second
401 goes to the caller, and nothing loops.

A loopback server plays Gatekey in strict mode: it knows one valid Client ID and Secret (the
test rotates it), answers 401 to any other, and issues access tokens at ``POST /token`` that it
accepts as long as the secret that bought them is the valid one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import requests

from gatekey_client import EnvironmentCredentials, TokenRequestError
from gatekey_client.httpx_auth import GatekeyHttpxAuth
from gatekey_client.requests_auth import GatekeyRequestsAuth

CLIENT_ID = "gk_retry-bot"
OLD, NEW, OTHER = "gks_old-secret", "gks_new-secret", "gks_other-secret"
TIMEOUT = 10
KINDS = ["gatekey", "cloudflare", "basic", "jwt"]
PAIRS = {
    "gatekey": ("gatekey-client-id", "gatekey-client-secret"),
    "cloudflare": ("cf-access-client-id", "cf-access-client-secret"),
}


class StrictGatekey:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.url = ""
        self.valid = OLD
        self.tokens: dict[str, str] = {}  # access token -> the secret that bought it
        self.token_requests: list[str] = []  # the secret of each token request
        self.resource_hits: list[str] = []  # the secret each resource request presented

    def _basic(self, value: str) -> tuple[str, str]:
        raw_id, _, raw_secret = base64.b64decode(value).decode().partition(":")
        return unquote(raw_id), unquote(raw_secret)

    def token(self, headers: Any) -> tuple[int, dict[str, Any]]:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        client_id, secret = self._basic(value) if scheme == "Basic" else ("", "")
        with self.lock:
            self.token_requests.append(secret)
            if (client_id, secret) != (CLIENT_ID, self.valid):
                return 401, {"error": "invalid_client", "error_description": "refused"}
            token = secrets.token_urlsafe(12)
            self.tokens[token] = secret
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def resource(self, headers: Any) -> tuple[int, dict[str, Any]]:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        with self.lock:
            if scheme == "Bearer":
                client_id, secret = CLIENT_ID, self.tokens.get(value, "")
            elif scheme == "Basic":
                client_id, secret = self._basic(value)
            else:
                names = next((n for n in PAIRS.values() if n[0] in headers), ("", ""))
                client_id, secret = headers.get(names[0], ""), headers.get(names[1], "")
            self.resource_hits.append(secret)
            if (client_id, secret) != (CLIENT_ID, self.valid):
                return 401, {"message": "Unauthorized"}
        return 200, {"secret": secret}

    def rotate(self, to: str) -> None:
        with self.lock:
            self.valid = to


def _handler(fake: StrictGatekey) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._reply(*fake.token(self.headers))

        def do_GET(self) -> None:
            self._reply(*fake.resource(self.headers))

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def gatekey() -> Iterator[StrictGatekey]:
    fake = StrictGatekey()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Env(dict[str, str]):
    """The bot's environment, which the test changes as a deployment would."""

    def __init__(self) -> None:
        super().__init__(GATEKEY_CLIENT_ID=CLIENT_ID, GATEKEY_CLIENT_SECRET=OLD)
        self.secret = OLD

    def set_secret(self, secret: str) -> None:
        self["GATEKEY_CLIENT_SECRET"] = secret


def make_auth(lib: str, kind: str, fake: StrictGatekey, env: Env | None = None) -> Any:
    cls = GatekeyRequestsAuth if lib == "requests" else GatekeyHttpxAuth
    options: dict[str, Any] = (
        {"token_url": f"{fake.url}/token"} if kind == "jwt" else {"header_style": kind}
    )
    if env is None:
        return cls(CLIENT_ID, OLD, **options)
    # min_reread=0: the tests run in milliseconds; its bound is tested with the sources.
    return cls(credentials=EnvironmentCredentials(environ=env, min_reread=0), **options)


def call(lib: str, fake: StrictGatekey, auth: Any) -> int:
    url = f"{fake.url}/resource"
    if lib == "requests":
        return requests.get(url, auth=auth, timeout=TIMEOUT).status_code
    if lib == "httpx":
        return httpx.get(url, auth=auth, timeout=TIMEOUT).status_code

    async def run() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
            return (await client.get(url)).status_code

    return asyncio.run(run())


LIBS = ["requests", "httpx", "httpx-async"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", LIBS)
def test_a_rotated_secret_is_picked_up_with_one_retry(
    gatekey: StrictGatekey, lib: str, kind: str
) -> None:
    env = Env()
    auth = make_auth(lib, kind, gatekey, env)
    assert call(lib, gatekey, auth) == 200

    gatekey.rotate(NEW)  # a rotation without a grace: the old secret stops at once
    env.set_secret(NEW)  # ... and the new one is delivered where the bot reads it
    hits, fetches = len(gatekey.resource_hits), len(gatekey.token_requests)

    assert call(lib, gatekey, auth) == 200
    assert gatekey.resource_hits[hits:] == [OLD, NEW]  # refused once, retried once
    if kind == "jwt":
        # The rejected token is dropped; the old secret is refused at the token endpoint, so
        # the source is read again and the token asked for once more.
        assert gatekey.token_requests[fetches:] == [OLD, NEW]
    else:
        assert gatekey.token_requests == []
    # The new credentials are kept: the next call needs no retry.
    assert call(lib, gatekey, auth) == 200
    assert gatekey.resource_hits[hits + 2 :] == [NEW]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", LIBS)
def test_a_second_401_goes_to_the_caller(gatekey: StrictGatekey, lib: str, kind: str) -> None:
    env = Env()
    auth = make_auth(lib, kind, gatekey, env)
    assert call(lib, gatekey, auth) == 200
    hits = len(gatekey.resource_hits)
    if kind == "jwt":
        # The token is refused, the new token works at the endpoint but not at the resource:
        # the resource keeps refusing (e.g. a revoked token in a route's authorizer cache).
        gatekey.tokens.clear()
        with gatekey.lock:
            original = gatekey.resource

            def refuse(headers: Any) -> tuple[int, dict[str, Any]]:
                original(headers)
                return 401, {"message": "Unauthorized"}

            gatekey.resource = refuse  # type: ignore[method-assign]
    else:
        gatekey.rotate(NEW)
        env.set_secret(OTHER)  # the source changed, but not to what the server accepts

    assert call(lib, gatekey, auth) == 401
    assert len(gatekey.resource_hits) - hits == 2  # exactly one retry


@pytest.mark.parametrize("kind", ["gatekey", "cloudflare", "basic"])
@pytest.mark.parametrize("lib", LIBS)
def test_headers_mode_does_not_retry_when_the_source_has_nothing_new(
    gatekey: StrictGatekey, lib: str, kind: str
) -> None:
    env = Env()
    for auth in (make_auth(lib, kind, gatekey), make_auth(lib, kind, gatekey, env)):
        gatekey.rotate(OLD)
        assert call(lib, gatekey, auth) == 200
        gatekey.rotate(NEW)  # revoked or rotated, and the source still holds the old secret
        hits = len(gatekey.resource_hits)

        assert call(lib, gatekey, auth) == 401
        assert gatekey.resource_hits[hits:] == [OLD]  # no retry: it would be refused again


@pytest.mark.parametrize("lib", LIBS)
def test_jwt_mode_raises_when_the_source_has_no_new_secret_either(
    gatekey: StrictGatekey, lib: str
) -> None:
    env = Env()
    auth = make_auth(lib, "jwt", gatekey, env)
    assert call(lib, gatekey, auth) == 200
    gatekey.rotate(NEW)  # the old secret's tokens and the secret itself are refused
    hits, fetches = len(gatekey.resource_hits), len(gatekey.token_requests)

    with pytest.raises(TokenRequestError) as info:
        call(lib, gatekey, auth)

    assert (info.value.status, info.value.error) == (401, "invalid_client")
    assert len(gatekey.resource_hits) - hits == 1
    assert gatekey.token_requests[fetches:] == [OLD]  # the source held nothing else: one try
