"""Redirects never carry the client's credentials to another origin (scheme, host, port).

Two loopback servers on different ports are two origins: the API (which also serves ``POST
/token``) redirects to the other one, and both record the headers of every request they get.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
from requests.hooks import dispatch_hook

from gatekey_client.httpx_auth import (
    GatekeyHttpxAuth,
    async_strip_credentials_on_redirect,
    strip_credentials_on_redirect,
)
from gatekey_client.requests_auth import GatekeyRequestsAuth

CLIENT_ID = "gk_bot:redirects"
CLIENT_SECRET = "gks_redirect-test-secret"
TOKEN = "jwt-redirect-test-token"
TIMEOUT = 10  # seconds; an upper bound for every client call, never a wait
CREDENTIAL_HEADERS = {
    "gatekey": ("gatekey-client-id", "gatekey-client-secret"),
    "cloudflare": ("cf-access-client-id", "cf-access-client-secret"),
}
ALL_CREDENTIAL_HEADERS = {name for names in CREDENTIAL_HEADERS.values() for name in names}


class Origin:
    """One loopback server: ``redirects`` maps a path to (status, Location); any other GET
    answers 200 with the headers it got, and every request's headers are kept in ``received``."""

    def __init__(self) -> None:
        self.url = ""
        self.redirects: dict[str, tuple[int, str]] = {}
        self.received: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any, str]:
        with self.lock:
            self.received.append(headers)
        if method == "POST" and path == "/token":
            return 200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}, ""
        if path in self.redirects:
            status, location = self.redirects[path]
            return status, {}, location
        return 200, headers, ""


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer()

        def _answer(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, payload, location = origin.handle(self.command, self.path, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture
def start_origin() -> Iterator[Callable[[], Origin]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start() -> Origin:
        origin = Origin()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(origin))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        origin.url = f"http://127.0.0.1:{server.server_port}"
        return origin

    try:
        yield start
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@pytest.fixture
def api(start_origin: Callable[[], Origin]) -> Origin:
    return start_origin()


@pytest.fixture
def elsewhere(start_origin: Callable[[], Origin]) -> Origin:
    return start_origin()


def get(lib: str, url: str, **auth_kwargs: Any) -> tuple[int, Any]:
    """GET ``url`` with a Gatekey auth, following redirects: requests does by default; httpx is
    told to, with the hook that keeps the credentials on their origin (sync or async client)."""
    if lib == "requests":
        with requests.Session() as session:
            auth = GatekeyRequestsAuth(CLIENT_ID, CLIENT_SECRET, **auth_kwargs)
            response = session.get(url, auth=auth, timeout=TIMEOUT)
            return response.status_code, response.json()
    httpx_auth = GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET, **auth_kwargs)
    if lib == "httpx":
        with httpx.Client(
            auth=httpx_auth,
            follow_redirects=True,
            event_hooks={"response": [strip_credentials_on_redirect]},
            timeout=TIMEOUT,
        ) as client:
            reply = client.get(url)
            return reply.status_code, reply.json()

    async def run() -> tuple[int, Any]:
        async with httpx.AsyncClient(
            auth=httpx_auth,
            follow_redirects=True,
            event_hooks={"response": [async_strip_credentials_on_redirect]},
            timeout=TIMEOUT,
        ) as client:
            reply = await client.get(url)
            return reply.status_code, reply.json()

    return asyncio.run(run())


def assert_no_credentials(received: list[dict[str, str]], *values: str) -> None:
    assert received, "the other origin was never reached: the test proves nothing"
    for headers in received:
        assert not ALL_CREDENTIAL_HEADERS & headers.keys()
        for value in values:
            assert not [name for name, sent in headers.items() if value in sent]


LIBS = ["requests", "httpx", "httpx-async"]


# --- Headers mode --------------------------------------------------------------------------


@pytest.mark.parametrize("style", sorted(CREDENTIAL_HEADERS))
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("lib", LIBS)
def test_headers_mode_credentials_do_not_follow_a_redirect_to_another_origin(
    api: Origin, elsewhere: Origin, lib: str, status: int, style: str
) -> None:
    api.redirects["/away"] = (status, f"{elsewhere.url}/landing")

    final_status, echoed = get(lib, f"{api.url}/away", header_style=style)

    assert final_status == 200
    assert [api.received[0][name] for name in CREDENTIAL_HEADERS[style]] == [
        CLIENT_ID,
        CLIENT_SECRET,
    ]
    assert_no_credentials(elsewhere.received, CLIENT_ID, CLIENT_SECRET)
    assert echoed == elsewhere.received[0]


@pytest.mark.parametrize("lib", LIBS)
def test_credentials_follow_same_origin_hops_until_one_leaves(
    api: Origin, elsewhere: Origin, lib: str
) -> None:
    # api/start -> api/away (relative Location) -> elsewhere//landing (scheme-relative Location)
    api.redirects["/start"] = (302, "/away")
    api.redirects["/away"] = (302, "//" + elsewhere.url.removeprefix("http://") + "/landing")

    status, _ = get(lib, f"{api.url}/start")

    assert status == 200
    assert [headers["gatekey-client-secret"] for headers in api.received] == [CLIENT_SECRET] * 2
    assert_no_credentials(elsewhere.received, CLIENT_ID, CLIENT_SECRET)


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
@pytest.mark.parametrize("lib", LIBS)
def test_headers_mode_credentials_follow_a_same_origin_redirect(
    api: Origin, elsewhere: Origin, lib: str, absolute: bool
) -> None:
    api.redirects["/old"] = (301, f"{api.url}/new" if absolute else "/new")

    status, echoed = get(lib, f"{api.url}/old")

    assert status == 200
    assert (echoed["gatekey-client-id"], echoed["gatekey-client-secret"]) == (
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert len(api.received) == 2
    assert elsewhere.received == []


def test_httpx_by_default_does_not_follow_a_redirect_to_another_origin(
    api: Origin, elsewhere: Origin
) -> None:
    api.redirects["/away"] = (302, f"{elsewhere.url}/landing")

    # No follow_redirects and no event hook: httpx's defaults alone keep the secret at home.
    with httpx.Client(auth=GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET), timeout=TIMEOUT) as client:
        response = client.get(f"{api.url}/away")

    assert response.status_code == 302
    assert api.received[0]["gatekey-client-secret"] == CLIENT_SECRET
    assert elsewhere.received == []


# --- JWT mode: the libraries themselves strip Authorization ---------------------------------


@pytest.mark.parametrize("lib", ["requests", "httpx-plain", "httpx-async-plain"])
def test_jwt_mode_bearer_token_does_not_follow_a_redirect_to_another_origin(
    api: Origin, elsewhere: Origin, lib: str
) -> None:
    api.redirects["/away"] = (302, f"{elsewhere.url}/landing")
    url = f"{api.url}/away"
    auth_kwargs: dict[str, Any] = {"token_url": f"{api.url}/token"}

    if lib == "requests":
        status, _ = get(lib, url, **auth_kwargs)
    else:
        # No event hook: this pins httpx's own behaviour, not the library's.
        auth = GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET, **auth_kwargs)
        if lib == "httpx-plain":
            with httpx.Client(auth=auth, follow_redirects=True, timeout=TIMEOUT) as client:
                status = client.get(url).status_code
        else:

            async def run() -> int:
                async with httpx.AsyncClient(
                    auth=auth, follow_redirects=True, timeout=TIMEOUT
                ) as client:
                    return (await client.get(url)).status_code

            status = asyncio.run(run())

    assert status == 200
    assert [headers.get("authorization") for headers in api.received[1:]] == [f"Bearer {TOKEN}"]
    assert_no_credentials(elsewhere.received, TOKEN, CLIENT_SECRET)
    assert "authorization" not in elsewhere.received[0]


# --- Which Location counts as another origin (no network) ----------------------------------

API = "https://api.example.com/orders"
LOCATIONS = [
    pytest.param(302, "/v2/orders", True, id="path"),
    pytest.param(302, "v2", True, id="relative-path"),
    pytest.param(302, "https://API.example.com:443/v2", True, id="host-case-and-default-port"),
    pytest.param(302, "//api.example.com/v2", True, id="scheme-relative-same-host"),
    pytest.param(201, "https://other.example.com/v2", True, id="not-a-redirect"),
    pytest.param(302, "https://other.example.com/v2", False, id="other-host"),
    pytest.param(308, "//other.example.com/v2", False, id="scheme-relative-other-host"),
    pytest.param(302, "https://api.example.com.evil.test/", False, id="suffixed-host"),
    pytest.param(302, "https://api.example.com@evil.test/", False, id="userinfo-trick"),
    pytest.param(302, "https://api.example.com:8443/v2", False, id="other-port"),
    pytest.param(302, "http://api.example.com/v2", False, id="other-scheme"),
    pytest.param(302, "https://api.example.com:99999/v2", False, id="invalid-port"),
]


def _requests_keeps(url: str, status: int, location: str) -> bool:
    prepared = GatekeyRequestsAuth(CLIENT_ID, CLIENT_SECRET)(requests.Request("GET", url).prepare())
    response = requests.Response()
    response.status_code, response.url, response.request = status, url, prepared
    response.headers["Location"] = location
    dispatch_hook("response", prepared.hooks, response)
    kept = {name.lower() for name in prepared.headers} & ALL_CREDENTIAL_HEADERS
    assert kept in (set(), set(CREDENTIAL_HEADERS["gatekey"]))
    return bool(kept)


def _httpx_keeps(url: str, status: int, location: str) -> bool:
    request = next(
        GatekeyHttpxAuth(CLIENT_ID, CLIENT_SECRET).sync_auth_flow(httpx.Request("GET", url))
    )
    strip_credentials_on_redirect(
        httpx.Response(status, headers={"Location": location}, request=request)
    )
    kept = set(request.headers) & ALL_CREDENTIAL_HEADERS
    assert kept in (set(), set(CREDENTIAL_HEADERS["gatekey"]))
    return bool(kept)


@pytest.mark.parametrize(("status", "location", "kept"), LOCATIONS)
@pytest.mark.parametrize("keeps", [_requests_keeps, _httpx_keeps], ids=["requests", "httpx"])
def test_credentials_stay_only_for_a_same_origin_redirect(
    keeps: Callable[[str, int, str], bool], status: int, location: str, kept: bool
) -> None:
    assert keeps(API, status, location) is kept


@pytest.mark.parametrize("url", ["http://api.example.com/a", "http://api.example.com:80/a"])
def test_a_plain_http_to_https_upgrade_is_another_origin(url: str) -> None:
    for keeps in (_requests_keeps, _httpx_keeps):
        assert not keeps(url, 301, "https://api.example.com/a")
        assert keeps(url, 301, "http://api.example.com:80/b")


def test_a_location_with_a_scheme_but_no_host() -> None:
    url = "http://api.example.com:8000/a"
    # requests resolves it against the request URL (the same origin); httpx sends it to the
    # scheme's default port, another origin.
    assert _requests_keeps(url, 302, "http:/b")
    assert not _httpx_keeps(url, 302, "http:/b")
