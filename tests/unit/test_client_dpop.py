"""The client library's DPoP against Gatekey's own token endpoint and authorizer, served on a
loopback HTTP server: DPoP-bound tokens, a fresh proof per request (requests and httpx), the
nonce dance, and a token taken from the wire that is useless without the key."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import requests

from gatekey.config import Config
from gatekey.dpop import request_url
from gatekey.errors import GatekeyError
from gatekey.hashing import Hasher
from gatekey.oauth import TokenEndpoint, oauth_error
from gatekey.wiring import dpop_proofs
from gatekey_client.dpop import DPoPKey
from gatekey_client.httpx_auth import GatekeyHttpxAuth
from gatekey_client.requests_auth import GatekeyRequestsAuth
from support.constants import ISSUER
from support.harness import Bot, LocalAuthorizer, local_authorizer

TIMEOUT = 10


class Served:
    """Gatekey's token endpoint at /oauth2/token and a protected /items/<n>, whose authorizer
    event is built from the HTTP request as API Gateway builds it."""

    def __init__(self, hasher: Hasher, nonces: bool) -> None:
        environment = {"DPOP_NONCES": "true"} if nonces else {}
        self.authorizer: LocalAuthorizer = local_authorizer(hasher, environment)
        self.authorizer.clock[0] = time.time()
        config = Config.from_env(
            {"TABLE_NAME": "t", "PEPPER_SECRET_ARN": "p", "SIGNING_KEY_ID": "k", **environment}
        )
        signer = self.authorizer.signer

        class Keys:
            def signer(self, now: int) -> Any:
                return signer

        self.endpoint = TokenEndpoint(
            store=self.authorizer.store,
            hasher=hasher,
            signing_keys=Keys(),  # type: ignore[arg-type]
            audience="gatekey",
            lifetime=3600,
            clock=lambda: int(time.time()),
            last_seen_interval=900,
            proofs=dpop_proofs(config, hasher, required_nonce=True),
        )
        self.seen: list[dict[str, str]] = []
        self.reasons: list[str] = []
        self.base_url = ""

    def token(
        self, host: str, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, Any, dict[str, str]]:
        answer_headers: dict[str, str] = {}
        nonce = self.endpoint.dpop_nonce(int(time.time()))
        if nonce is not None:
            answer_headers["DPoP-Nonce"] = nonce
        try:
            issued, _ = self.endpoint.exchange(
                content_type=headers.get("content-type"),
                form=parse_qs(body),
                headers=headers,
                issuer=ISSUER,  # the authorizer's; the proof names the URL called
                request_url=request_url(host, path),
            )
        except GatekeyError as exc:
            error = oauth_error(exc)
            return (
                error.status,
                {"error": error.error, "error_description": error.description},
                answer_headers,
            )
        body_out = {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
        }
        return 200, body_out, answer_headers

    def resource(self, method: str, host: str, path: str, headers: dict[str, str]) -> int:
        self.seen.append({k.lower(): v for k, v in headers.items()})
        self.authorizer.clock[0] = time.time()
        event = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1/{method}{path}",
            "httpMethod": method,
            "path": path,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": {
                "path": path,
                "domainName": host,
                "httpMethod": method,
                "stage": "v1",
            },
        }
        try:
            outcome = self.authorizer.authorizer.authorize(event)
        except GatekeyError:
            return 401
        self.reasons.append(outcome.reason)
        return 200 if outcome.allowed else 403


@pytest.fixture(params=[False, True], ids=["no-nonces", "nonces"])
def served(request: pytest.FixtureRequest, unit_hasher: Hasher) -> Iterator[Served]:
    state = Served(unit_hasher, nonces=request.param)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _headers(self) -> dict[str, str]:
            return {name.lower(): value for name, value in self.headers.items()}

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length).decode()
            host = self.headers["Host"]
            self._answer(*state.token(host, self.path, self._headers(), body))

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]  # API Gateway's path holds no query
            status = state.resource("GET", self.headers["Host"], path, dict(self.headers.items()))
            self._answer(status, {}, {})

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
def test_requests_auth_gets_a_bound_token_and_signs_every_request(served: Served, alg: str) -> None:
    bot: Bot = served.authorizer.bot(dpop_required=True)
    key = DPoPKey.generate(alg)
    auth = GatekeyRequestsAuth(
        bot.client_id,
        bot.secret.reveal(),
        token_url=f"{served.base_url}/oauth2/token",
        dpop_key=key,
    )
    for _ in range(3):
        response = requests.get(f"{served.base_url}/items/42?page=1", auth=auth, timeout=TIMEOUT)
        assert response.status_code == 200
    proofs = [h["dpop"] for h in served.seen]
    assert len(set(proofs)) == 3  # a fresh proof each time
    scheme, _, token = served.seen[0]["authorization"].partition(" ")
    assert scheme == "DPoP"
    assert claims(token)["cnf"] == {"jkt": key.thumbprint}


def test_httpx_auth_sync_and_async(served: Served) -> None:
    bot = served.authorizer.bot()
    auth = GatekeyHttpxAuth(
        bot.client_id,
        bot.secret.reveal(),
        token_url=f"{served.base_url}/oauth2/token",
        dpop_key=DPoPKey.generate(),
    )
    with httpx.Client(auth=auth, timeout=TIMEOUT) as client:
        assert client.get(f"{served.base_url}/items/1").status_code == 200
        assert client.get(f"{served.base_url}/items/2").status_code == 200

    async def run() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
            return (await client.get(f"{served.base_url}/items/3")).status_code

    import asyncio

    assert asyncio.run(run()) == 200


def test_a_token_taken_off_the_wire_is_useless_without_the_key(served: Served) -> None:
    bot = served.authorizer.bot()
    auth = GatekeyRequestsAuth(
        bot.client_id,
        bot.secret.reveal(),
        token_url=f"{served.base_url}/oauth2/token",
        dpop_key=DPoPKey.generate(),
    )
    assert requests.get(f"{served.base_url}/items/42", auth=auth, timeout=TIMEOUT).ok
    stolen = served.seen[-1]
    token = stolen["authorization"].partition(" ")[2]
    url = f"{served.base_url}/items/42"
    attempts = [
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"DPoP {token}"},
        {"Authorization": f"DPoP {token}", "DPoP": stolen["dpop"]},  # replayed
        {
            "Authorization": f"DPoP {token}",
            "DPoP": DPoPKey.generate().proof("GET", url, access_token=token),
        },
    ]
    for headers in attempts:
        assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 403, headers


def test_a_key_survives_a_restart_as_pem() -> None:
    key = DPoPKey.generate()
    again = DPoPKey.from_pem(key.private_pem())
    assert again.thumbprint == key.thumbprint
    assert "PRIVATE" not in repr(again)
    assert key.thumbprint in repr(again)


def test_dpop_needs_a_token_url() -> None:
    with pytest.raises(ValueError, match="token_url"):
        GatekeyRequestsAuth("gk_x", "gks_y", dpop_key=DPoPKey.generate())


def test_gatekey_curl_auth_dpop(
    served: Served, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import io

    from gatekey_cli import curl

    bot = served.authorizer.bot(dpop_required=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("GATEKEY_CLIENT_ID", bot.client_id)
    monkeypatch.setenv("GATEKEY_CLIENT_SECRET", bot.secret.reveal())
    parser = argparse.ArgumentParser()
    curl.add_arguments(parser)

    def run(*extra: str) -> int:
        argv = ["--auth", "dpop", "--token-url", f"{served.base_url}/oauth2/token", "-f"]
        args = parser.parse_args([f"{served.base_url}/items/42", *argv, *extra])
        return curl.run(args, lambda: None, io.BytesIO(), io.StringIO())  # type: ignore[arg-type,return-value]

    assert run() == 0
    assert run() == 0  # the cached token, with the kept key and a new proof
    assert len({h["dpop"] for h in served.seen}) == 2
    assert len({h["authorization"] for h in served.seen}) == 1
    kept = list((tmp_path / "gatekey" / "dpop").iterdir())
    assert len(kept) == 1
    assert kept[0].stat().st_mode & 0o777 == 0o600
    assert run("--no-cache") == 0
    assert len({h["authorization"] for h in served.seen}) == 2
