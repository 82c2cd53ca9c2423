"""End to end over real HTTP: the local stack, driven by the CLI, requests, httpx and the
bots' client library, as a newcomer would after `make run`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal as signals
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from gatekey_client.httpx_auth import GatekeyHttpxAuth
from gatekey_client.requests_auth import GatekeyRequestsAuth
from gatekey_local.servers import free_port
from gatekey_local.template import Stack, parameters
from support import quickstart
from support.constants import ROOT
from support.stack import E2E_AUTHORIZER_TTL as AUTHORIZER_TTL
from support.stack import E2E_DAILY_QUOTA, LocalStack, local_stack
from support.stack import E2E_STATUS_TTL as STATUS_TTL

# The CLI of this checkout, as its package ships it (cli/ and the core), whatever .venv's
# `gatekey` was installed from.
GATEKEY = [sys.executable, "-m", "gatekey_cli.main"]
CLI_PATH = os.pathsep.join(str(ROOT / p) for p in ("cli", "layers/gatekey"))


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI signs with the credentials the stack accepts (those it was started with).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def gatekey(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {}), "PYTHONPATH": CLI_PATH}
    return subprocess.run(  # noqa: S603 - this checkout's CLI
        [*GATEKEY, *args], capture_output=True, text=True, timeout=60, check=False, env=environment
    )


def cli(stack: LocalStack, *args: str) -> Any:
    result = gatekey("--endpoint", stack.url, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def bot(stack: LocalStack) -> dict[str, Any]:
    return dict(cli(stack, "create", "e2e-bot", "--scope", "read", "--scope", "write"))


def whoami(stack: LocalStack, headers: dict[str, str], route: str = "/demo/whoami") -> Any:
    return requests.get(stack.url + route, headers=headers, timeout=10)


def forms(bot: dict[str, Any]) -> dict[str, dict[str, str]]:
    client_id, secret = bot["client_id"], bot["client_secret"]
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    document = json.dumps({"cf-access-client-id": client_id, "cf-access-client-secret": secret})
    return {
        "gatekey_headers": {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret},
        "access_headers": {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret},
        "access_json": {"Authorization": document},
        "basic": {"Authorization": f"Basic {pair}"},
    }


def test_every_route_of_the_template_is_served(stack: LocalStack) -> None:
    # The local stack is its own issuer (the JWT authorizer's issuer resolves to it).
    values = parameters() | {"Issuer": stack.url}
    declared = {f"{r.method} {r.path}" for r in Stack(parameters=values, physical={}).routes()}
    assert declared
    assert set(stack.routes) == declared


def test_startup_to_first_answer(stack: LocalStack) -> None:
    # Reported, not asserted against a clock: the figure goes to the docs.
    print(f"\nlocal stack: start-up to first answered request {stack.startup_seconds:.2f} s")
    assert stack.startup_seconds > 0


@pytest.mark.parametrize("form", ["gatekey_headers", "access_headers", "access_json", "basic"])
def test_whoami_with_each_credential_form(
    stack: LocalStack, bot: dict[str, Any], form: str
) -> None:
    answer = whoami(stack, forms(bot)[form])
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"expires_at": None} == {
        "client_id": bot["client_id"],
        "name": "e2e-bot",
        "scopes": "read write",
        "auth_method": form,
        "expires_at": None,
        "principal_id": bot["client_id"],
    }


def test_a_jwt_from_the_token_endpoint_and_the_client_library(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    token_url = f"{stack.url}/oauth2/token"
    session = requests.Session()
    session.auth = GatekeyRequestsAuth(
        bot["client_id"], bot["client_secret"], token_url=token_url, scopes=["read"]
    )
    for route in ("/demo/whoami", "/demo/cached/whoami"):
        answer = session.get(stack.url + route, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["auth_method"] == "bearer"
        assert answer.json()["scopes"] == "read"
    auth = GatekeyHttpxAuth(bot["client_id"], bot["client_secret"])  # headers mode
    with httpx.Client(auth=auth, timeout=10) as client:
        assert client.get(f"{stack.url}/demo/whoami").json()["auth_method"] == "gatekey_headers"


def test_discovery_from_the_issuer_leads_to_a_token_that_verifies_without_leeway(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # The local issuer is the stack's URL (no path): both well-known names are appended to it.
    issuer = stack.url
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    rfc_8414 = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["issuer"] == rfc_8414["issuer"] == issuer
    assert metadata["jwks_uri"] == rfc_8414["jwks_uri"]
    answer = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(bot["client_id"], bot["client_secret"]),
        timeout=10,
    )
    access_token = answer.json()["access_token"]
    key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        key,
        algorithms=["RS256", "ES256"],
        issuer=issuer,
        audience="gatekey",
        leeway=0,
        options={"require": ["iat", "nbf", "exp"]},
    )
    assert claims["sub"] == bot["client_id"]


def test_missing_or_wrong_credentials(stack: LocalStack, bot: dict[str, Any]) -> None:
    assert whoami(stack, {}).status_code == 401
    assert whoami(stack, {}, "/demo/cached/whoami").status_code == 401  # no identity source
    wrong = {"Gatekey-Client-Id": bot["client_id"], "Gatekey-Client-Secret": "gks_wrong"}
    assert whoami(stack, wrong).status_code == 403
    bad = requests.post(
        f"{stack.url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(bot["client_id"], tampered(bot["client_secret"])),
        timeout=10,
    )
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"


def test_rotation_with_a_grace_window(stack: LocalStack, bot: dict[str, Any]) -> None:
    ends = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rotated = cli(stack, "rotate", bot["client_id"], "--previous-expires-at", ends)
    old = forms(bot)["gatekey_headers"]
    new = forms(rotated | {"client_id": bot["client_id"]})["gatekey_headers"]
    time.sleep(STATUS_TTL)  # the authorizer's status cache picks up the rotation
    assert whoami(stack, new).status_code == 200
    assert whoami(stack, old).status_code == 200
    deadline = datetime.strptime(ends, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + STATUS_TTL)
    assert whoami(stack, old).status_code == 403
    assert whoami(stack, new).status_code == 200


def test_revocation_arrives_within_the_configured_bound(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # GIVEN an allow in both caches (the authorizer's status cache, API Gateway's result cache)
    headers = forms(bot)["basic"]
    assert whoami(stack, headers, "/demo/cached/whoami").status_code == 200
    bound = STATUS_TTL + AUTHORIZER_TTL
    # WHEN the token is revoked
    cli(stack, "revoke", bot["client_id"])
    revoked_at = time.monotonic()
    # THEN every request started after the bound is refused; the first refusal is reported
    first_refusal = None
    while time.monotonic() - revoked_at < bound + 1:
        started = time.monotonic() - revoked_at
        status = whoami(stack, headers, "/demo/cached/whoami").status_code
        if status == 403 and first_refusal is None:
            first_refusal = started
        if started > bound:
            assert status == 403, f"still allowed {started:.2f} s after revocation"
        time.sleep(0.1)
    assert first_refusal is not None
    print(f"\nrevocation: first refusal {first_refusal:.2f} s after revoke (bound {bound} s)")


def test_an_allow_is_never_cached_under_a_header_it_was_not_decided_on(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # The review's repro: valid Gatekey headers beside any Authorization value, then that value
    # alone, on the route whose authorizer API Gateway caches by Authorization.
    anything = {"Authorization": "Basic " + base64.b64encode(b"any:thing").decode()}
    gatekey = forms(bot)["gatekey_headers"]
    for route in ("/demo/cached/whoami", "/demo/whoami"):
        assert whoami(stack, {**gatekey, **anything}, route).status_code == 403
        assert whoami(stack, anything, route).status_code == 403
        assert whoami(stack, gatekey, "/demo/whoami").status_code == 200  # the control


def test_a_rotation_ends_the_access_tokens_of_the_secret_it_replaced(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    def access_token(secret: str) -> dict[str, Any]:
        answer = requests.post(
            f"{stack.url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(bot["client_id"], secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    old = access_token(bot["client_secret"])
    bearer = {"Authorization": f"Bearer {old['access_token']}"}
    assert whoami(stack, bearer).status_code == 200
    # A rotation with a grace: the old secret still gets tokens, but none outlives the grace.
    ends = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rotated = cli(stack, "rotate", bot["client_id"], "--previous-expires-at", ends)
    new = forms(rotated | {"client_id": bot["client_id"]})["gatekey_headers"]
    assert whoami(stack, new).status_code == 200  # at once, not after the status cache
    assert access_token(bot["client_secret"])["expires_in"] <= 30
    # A rotation without one ends every access token of the secrets it replaced.
    cli(stack, "rotate", bot["client_id"])
    time.sleep(STATUS_TTL + 0.5)
    assert whoami(stack, bearer).status_code == 403


def _cli_as(stack: LocalStack, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this checkout's CLI
        [*GATEKEY, "--endpoint", stack.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": CLI_PATH, **environ},
    )


def test_unsigned_or_wrongly_signed_admin_calls_get_api_gateways_answers(
    stack: LocalStack,
) -> None:
    unsigned = requests.get(f"{stack.url}/admin/service-tokens", timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.content == b'{"message":"Missing Authentication Token"}'
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    bearer = requests.get(
        f"{stack.url}/admin/service-tokens", headers={"Authorization": "Bearer x"}, timeout=10
    )
    assert bearer.status_code == 403
    assert bearer.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    intruder = _cli_as(stack, "list", AWS_ACCESS_KEY_ID="intruder", AWS_SECRET_ACCESS_KEY="x")
    assert intruder.returncode == 4  # EXIT_DENIED, with what to check
    assert "HTTP 403" in intruder.stderr
    assert "check your AWS credentials" in intruder.stderr
    assert "The security token included in the request is invalid." in intruder.stderr
    wrong = _cli_as(stack, "list", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="wrong")
    assert "The request signature we calculated does not match" in wrong.stderr


def test_a_signature_for_another_region_is_refused(stack: LocalStack) -> None:
    elsewhere = _cli_as(
        stack,
        "--region",
        "eu-west-1",
        "list",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    assert elsewhere.returncode == 4  # EXIT_DENIED
    assert "HTTP 403" in elsewhere.stderr
    assert "Credential should be scoped to a valid region." in elsewhere.stderr
    here = _cli_as(
        stack,
        "--region",
        "us-east-1",
        "list",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    assert here.returncode == 0, here.stderr


def test_scheduled_function_runs_on_demand(stack: LocalStack) -> None:
    answer = requests.post(f"{stack.url}/_local/schedules/SigningKeysFunction", timeout=60)
    assert answer.status_code == 200
    assert answer.json()["lost_race"] is False
    assert requests.post(f"{stack.url}/_local/schedules/Nope", timeout=10).status_code == 404


def _make_schedule(function: str, port: int) -> subprocess.CompletedProcess[str]:
    """`make schedule` as a user runs it in another shell (without reinstalling .venv)."""
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "GATEKEY_PORT": str(port),
    }
    return subprocess.run(  # noqa: S603
        ["make", "-s", "-o", ".venv/.installed", "schedule", f"FUNCTION={function}"],  # noqa: S607
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_schedule_runs_a_function_of_the_running_stack(stack: LocalStack) -> None:
    port = int(stack.url.rsplit(":", 1)[1])
    ran = _make_schedule("SigningKeysFunction", port)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["lost_race"] is False
    unknown = _make_schedule("SigningKeyFunction", port)
    assert unknown.returncode != 0
    assert unknown.stdout == ""
    assert (
        "gatekey_local: no schedule for 'SigningKeyFunction' (scheduled: LifecycleFunction,"
        " SigningKeysFunction)"
    ) in unknown.stderr
    assert "HTTP Error" not in unknown.stderr


def _raw(stack: LocalStack, payload: bytes) -> bytes:
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # The gateway may answer and close before the whole payload is read (a 413 or 414).
        with contextlib.suppress(OSError):
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /demo/whoami HTTP/9.9\r\n\r\n", b"400"),
        (b"GET " + b"/a" * 40_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n", b"413"),
        (b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"GET /demo/whoami HTTP/1.1\r\nHost: x\r\nGatekey-Client-Id: \xff\xfe\r\n\r\n", b"40"),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
    ],
)
def test_hostile_requests_get_a_clear_4xx_and_the_gateway_keeps_serving(
    stack: LocalStack, payload: bytes, status: bytes
) -> None:
    answer = _raw(stack, payload)
    assert answer.split(b" ", 2)[1].startswith(status), answer[:200]
    assert requests.get(f"{stack.url}/.well-known/jwks.json", timeout=10).status_code == 200


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found |= {int(child) for child in text.split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_stops_everything_it_started(signal_name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{root / 'layers/gatekey'}:{root / 'local'}",
        "GATEKEY_PORT": str(free_port()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekey_local"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith('{"ready"'):
            break
    children = _children(process.pid)
    assert children, "moto's server runs as a child"
    process.send_signal(getattr(signals, signal_name))
    assert process.wait(timeout=30) == 0
    process.stdout.close()
    assert not any(_alive(child) for child in children)


def tampered(secret: str) -> str:
    """The secret with its last character changed (to one it is not already)."""
    return secret[:-1] + ("x" if secret[-1] != "x" else "y")


def test_a_request_after_a_quiet_minute_is_answered(stack: LocalStack, bot: dict[str, Any]) -> None:
    # The authorizer emits its counts with the first request a minute after the last emission:
    # telemetry must never change the answer (nor lack the function's own environment).
    headers = forms(bot)["gatekey_headers"]
    assert whoami(stack, headers).status_code == 200
    time.sleep(61)
    assert whoami(stack, headers).status_code == 200


# -- HTTP APIs (payload 2.0) -------------------------------------------------------------------

HTTP_LAMBDA_ROUTE = "/demo/http/whoami"  # Gatekey's authorizer, cached on the pair + route key
HTTP_JWT_ROUTE = "/demo/http/jwt/whoami"  # the built-in JWT authorizer, scope read


def access_token(stack: LocalStack, client_id: str, secret: str, scope: str) -> dict[str, Any]:
    answer = requests.post(
        f"{stack.url}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_http_api_lambda_authorizer_allows_then_refuses_a_revoked_token_within_the_bound(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # GIVEN an allow in both caches, on the HTTP API route cached by identity source
    headers = forms(bot)["gatekey_headers"]
    answer = whoami(stack, headers, HTTP_LAMBDA_ROUTE)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"expires_at": None} == {
        "client_id": bot["client_id"],
        "name": "e2e-bot",
        "scopes": "read write",
        "auth_method": "gatekey_headers",
        "expires_at": None,
        "principal_id": None,  # a simple response has no principal
    }
    # One identity source missing: 401 without calling the authorizer; other forms neither
    only_id = {"Gatekey-Client-Id": bot["client_id"]}
    assert whoami(stack, only_id, HTTP_LAMBDA_ROUTE).status_code == 401
    assert whoami(stack, forms(bot)["basic"], HTTP_LAMBDA_ROUTE).status_code == 401
    bound = STATUS_TTL + AUTHORIZER_TTL
    # WHEN the token is revoked
    cli(stack, "revoke", bot["client_id"])
    revoked_at = time.monotonic()
    # THEN every request started after the bound is refused (403 Forbidden, as HTTP APIs say)
    first_refusal = None
    while time.monotonic() - revoked_at < bound + 1:
        started = time.monotonic() - revoked_at
        answer = whoami(stack, headers, HTTP_LAMBDA_ROUTE)
        if answer.status_code == 403 and first_refusal is None:
            first_refusal = started
            assert answer.json() == {"message": "Forbidden"}
        if started > bound:
            assert answer.status_code == 403, f"still allowed {started:.2f} s after revocation"
        time.sleep(0.1)
    assert first_refusal is not None
    print(f"\nHTTP API: first refusal {first_refusal:.2f} s after revoke (bound {bound})")


def test_http_api_jwt_authorizer_allows_a_gatekey_access_token(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    token = access_token(stack, bot["client_id"], bot["client_secret"], "read")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    answer = whoami(stack, bearer, HTTP_JWT_ROUTE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == bot["client_id"]
    assert answer.json()["scopes"] == "read"
    assert answer.json()["auth_method"] == "jwt_authorizer"
    assert whoami(stack, {}, HTTP_JWT_ROUTE).status_code == 401  # no identity source


def test_http_api_jwt_authorizer_refuses_a_token_without_the_route_scope(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    token = access_token(stack, bot["client_id"], bot["client_secret"], "write")
    answer = whoami(stack, {"Authorization": f"Bearer {token['access_token']}"}, HTTP_JWT_ROUTE)
    assert answer.status_code == 403
    assert answer.json() == {"message": "Forbidden"}
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]


def test_http_api_jwt_authorizer_refuses_an_expired_token(stack: LocalStack) -> None:
    # An access token obtained with a secret in its grace expires when the grace does (the
    # token endpoint never lets it run past it): a JWT that expires in seconds, no clock tricks.
    bot = dict(cli(stack, "create", "e2e-jwt-bot", "--scope", "read"))
    ends = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cli(stack, "rotate", bot["client_id"], "--previous-expires-at", ends)
    token = access_token(stack, bot["client_id"], bot["client_secret"], "read")
    assert token["expires_in"] <= 3
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert whoami(stack, bearer, HTTP_JWT_ROUTE).status_code == 200  # the control
    payload = token["access_token"].split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.2)
    answer = whoami(stack, bearer, HTTP_JWT_ROUTE)
    assert answer.status_code == 401
    assert answer.json() == {"message": "Unauthorized"}
    assert "expired" in answer.headers["www-authenticate"]


# -- migration in: an imported Cloudflare Access credential ------------------------------------


def cli_reading(stack: LocalStack, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with `stdin` on its standard input, as `... | gatekey import` runs it."""
    return subprocess.run(  # noqa: S603 - this checkout's CLI
        [*GATEKEY, "--endpoint", stack.url, "--json", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": CLI_PATH},
    )


def test_an_imported_access_credential_works_everywhere_until_a_rotation_moves_it_to_gks(
    stack: LocalStack,
) -> None:
    # GIVEN a service token exactly as Cloudflare Access issued it, imported through the CLI
    client_id, secret = f"{secrets.token_hex(16)}.access", secrets.token_hex(32)
    result = cli_reading(
        stack, secret + "\n", "import", "migrated-bot", "--client-id", client_id, "--scope", "read"
    )
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert imported["client_id"] == client_id
    assert "client_secret" not in imported
    assert secret not in result.stdout + result.stderr
    bot = {"client_id": client_id, "client_secret": secret}
    # THEN a client written for Access works unchanged: its headers, Basic, Access's JSON
    for form in ("access_headers", "basic", "access_json", "gatekey_headers"):
        answer = whoami(stack, forms(bot)[form])
        assert answer.status_code == 200, (form, answer.text)
        assert (answer.json()["client_id"], answer.json()["auth_method"]) == (client_id, form)
    # AND at the token endpoint (client_secret_basic and _post), its access token as Bearer
    token_url = f"{stack.url}/oauth2/token"
    grant = {"grant_type": "client_credentials"}
    posted = requests.post(token_url, data={**grant, **bot}, timeout=10)
    assert posted.status_code == 200, posted.text
    answer = requests.post(token_url, data=grant, auth=(client_id, secret), timeout=10)
    assert answer.status_code == 200, answer.text
    bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    for route in ("/demo/whoami", "/demo/cached/whoami"):
        assert whoami(stack, bearer, route).json()["client_id"] == client_id
    # WHEN it is rotated
    rotated = cli(stack, "rotate", client_id)
    # THEN the id stays and the new secret is Gatekey's own format, working at once
    assert rotated["client_id"] == client_id
    assert rotated["client_secret"].startswith("gks_")
    renewed = forms(rotated)
    assert whoami(stack, renewed["access_headers"]).json()["client_id"] == client_id
    answer = requests.post(
        token_url, data=grant, auth=(client_id, rotated["client_secret"]), timeout=10
    )
    assert answer.status_code == 200, answer.text
    # AND the Access secret stops once the status cache has seen the rotation
    time.sleep(STATUS_TTL + 0.5)
    assert whoami(stack, forms(bot)["access_headers"]).status_code == 403
    events = cli(stack, "events", client_id)["items"]
    assert [e["action"] for e in events] == ["rotated", "imported"]
    assert events[1]["details"]["source"] == "access"


def test_an_imported_weak_secret_is_refused_and_nothing_is_written(stack: LocalStack) -> None:
    client_id = f"{secrets.token_hex(16)}.access"
    result = cli_reading(
        stack, secrets.token_hex(15) + "\n", "import", "weak-bot", "--client-id", client_id
    )
    assert result.returncode == 1
    assert "HTTP 400" in result.stderr
    assert "client_secret: is too weak" in result.stderr
    assert cli(stack, "list", "--name", "weak-bot")["items"] == []
    answer = whoami(stack, {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": "0" * 64})
    assert answer.status_code == 403


def test_a_bot_revokes_its_access_token_and_the_authorizer_refuses_it_within_the_bound(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # GIVEN a bot with two access tokens, fetched with Authlib, both let in on the route whose
    # authorizer API Gateway caches, and a resource server allowed to introspect
    session = OAuth2Session(
        bot["client_id"], bot["client_secret"], token_endpoint_auth_method="client_secret_basic"
    )
    token_url = f"{stack.url}/oauth2/token"
    leaked = session.fetch_token(token_url, grant_type="client_credentials")["access_token"]
    kept = session.fetch_token(token_url, grant_type="client_credentials")["access_token"]
    route = "/demo/cached/whoami"
    for token in (leaked, kept):
        assert whoami(stack, {"Authorization": f"Bearer {token}"}, route).status_code == 200
    server = cli(stack, "create", "e2e-resource-server", "--scope", "gatekey:introspect")
    resource = OAuth2Session(server["client_id"], server["client_secret"])
    introspect = f"{stack.url}/oauth2/introspect"
    assert resource.introspect_token(introspect, token=leaked).json()["active"] is True
    # WHEN the bot revokes one at /oauth2/revoke (RFC 7009)
    answer = session.revoke_token(
        f"{stack.url}/oauth2/revoke", token=leaked, token_type_hint="access_token"
    )
    revoked_at = time.monotonic()
    assert answer.status_code == 200
    # THEN introspection says so at once
    assert resource.introspect_token(introspect, token=leaked).json() == {"active": False}
    assert resource.introspect_token(introspect, token=kept).json()["active"] is True
    # AND every request started after the bound is refused, while the other token works
    bound = STATUS_TTL + AUTHORIZER_TTL
    first_refusal = None
    while time.monotonic() - revoked_at < bound + 1:
        started = time.monotonic() - revoked_at
        status = whoami(stack, {"Authorization": f"Bearer {leaked}"}, route).status_code
        if status == 403 and first_refusal is None:
            first_refusal = started
        if started > bound:
            assert status == 403, f"still allowed {started:.2f} s after revocation"
        time.sleep(0.1)
    assert whoami(stack, {"Authorization": f"Bearer {kept}"}, route).status_code == 200
    assert first_refusal is not None
    print(f"\naccess token revocation: first refusal {first_refusal:.2f} s (bound {bound} s)")


# -- the gatekey CLI's commands against the local stack ------------------------------------


def test_cli_update_filters_states_and_paging(stack: LocalStack) -> None:
    prefix = f"cli-{time.time_ns()}-"  # the stack is shared by the session's tests
    made = {
        name: cli(stack, "create", prefix + name, "--owner", f"{prefix}ops")["client_id"]
        for name in ("a", "b", "c")
    }
    updated = cli(stack, "update", made["a"], "--scope", "read", "--route", "GET /demo/*")
    assert (updated["scopes"], updated["routes"]) == (["read"], ["GET /demo/*"])
    cli(stack, "disable", made["b"])
    cli(stack, "revoke", made["c"])
    listed = cli(stack, "list", "--name-prefix", prefix, "--limit", "1", "--all")
    assert [(t["name"], t["state"]) for t in listed["items"]] == [
        (prefix + "a", "active"),
        (prefix + "b", "disabled"),
        (prefix + "c", "revoked"),
    ]
    assert listed["next_token"] is None
    owned = cli(stack, "list", "--owner", f"{prefix}ops", "--state", "disabled", "--all")
    assert [t["client_id"] for t in owned["items"]] == [made["b"]]
    table = gatekey("--endpoint", stack.url, "list", "--name-prefix", prefix)
    assert table.stdout.splitlines()[0].split()[:3] == ["client_id", "name", "state"]
    # A second revoke: exit 5, one line; a name where an id goes: exit 2.
    again = gatekey("--endpoint", stack.url, "revoke", made["c"])
    assert (again.returncode, again.stderr) == (
        5,
        f"gatekey: error: {made['c']} is already revoked; nothing changed\n",
    )
    named = gatekey("--endpoint", stack.url, "show", "demo-bot")
    assert named.returncode == 2
    assert "gatekey list --name demo-bot" in named.stderr
    missing = gatekey("--endpoint", stack.url, "show", "gk_" + "0" * 28)
    assert missing.returncode in (1, 3)  # malformed (checksum) or unknown, never a traceback
    assert "Traceback" not in missing.stderr
    events = cli(stack, "events", made["a"], "--all", "--limit", "1")
    assert [e["action"] for e in events["items"]] == ["updated", "created"]


def test_cli_event_details_times_are_rfc3339(stack: LocalStack, bot: dict[str, Any]) -> None:
    cli(stack, "rotate", bot["client_id"], "--grace", "1h")
    rotated = cli(stack, "events", bot["client_id"], "--limit", "1")["items"][0]
    expires = rotated["details"]["previous_client_secret_expires_at"]
    assert datetime.fromisoformat(expires.replace("Z", "+00:00")) > datetime.now(UTC)


def test_cli_endpoint_from_the_environment_and_output_flags(stack: LocalStack) -> None:
    for args in (["list", "--json"], ["--output", "json", "list"]):
        result = gatekey(*args, "--limit", "1", env={"GATEKEY_ENDPOINT": stack.url})
        assert result.returncode == 0, result.stderr
        assert "items" in json.loads(result.stdout)
    bad = gatekey("list", env={"GATEKEY_ENDPOINT": stack.url.removeprefix("http://")})
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.endswith(f"try GATEKEY_ENDPOINT={stack.url}\n")
    version = gatekey("--version")
    assert (version.returncode, version.stdout.split()[0]) == (0, "gatekey")


def curl(
    stack: LocalStack, bot: dict[str, Any], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    credentials = {
        "GATEKEY_CLIENT_ID": bot["client_id"],
        "GATEKEY_CLIENT_SECRET": bot["client_secret"],
    }
    return gatekey("curl", f"{stack.url}/demo/whoami", *args, env=credentials | env)


@pytest.mark.parametrize(
    ("mode", "method"),
    [
        ("headers", "gatekey_headers"),
        ("access-headers", "access_headers"),
        ("basic", "basic"),
        ("jwt", "bearer"),
    ],
)
def test_gatekey_curl_sends_each_form(
    stack: LocalStack, bot: dict[str, Any], mode: str, method: str, tmp_path: Path
) -> None:
    result = curl(
        stack,
        bot,
        "--auth",
        mode,
        GATEKEY_ENDPOINT=stack.url,  # the token URL: {endpoint}/oauth2/token on a local stack
        XDG_CACHE_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auth_method"] == method
    assert json.loads(result.stdout)["client_id"] == bot["client_id"]


def test_gatekey_curl_reads_the_quickstarts_variables_or_a_file(
    stack: LocalStack, bot: dict[str, Any], tmp_path: Path
) -> None:
    quickstart = {"CLIENT_ID": bot["client_id"], "CLIENT_SECRET": bot["client_secret"]}
    result = gatekey("curl", f"{stack.url}/demo/whoami", env=quickstart)
    assert json.loads(result.stdout)["client_id"] == bot["client_id"]
    file = tmp_path / "bot.json"
    file.write_text(json.dumps({k: bot[k] for k in ("client_id", "client_secret")}))
    result = gatekey("curl", f"{stack.url}/demo/whoami", "--credentials-file", str(file))
    assert json.loads(result.stdout)["client_id"] == bot["client_id"]
    nothing = gatekey("curl", f"{stack.url}/demo/whoami", env={"GATEKEY_CLIENT_ID": ""})
    assert nothing.returncode == 2
    assert "no credentials: set GATEKEY_CLIENT_ID" in nothing.stderr


def test_gatekey_curl_fail_include_and_method(stack: LocalStack, bot: dict[str, Any]) -> None:
    refused = curl(stack, bot, "--fail", GATEKEY_CLIENT_SECRET=tampered(bot["client_secret"]))
    assert refused.returncode == 22
    included = curl(stack, bot, "-i")
    assert included.returncode == 0
    assert included.stdout.startswith("HTTP/1.1 200")
    posted = gatekey(
        "curl",
        f"{stack.url}/admin/service-tokens",  # not a demo route: 403 from the gateway, exit 0
        env={"GATEKEY_CLIENT_ID": bot["client_id"], "GATEKEY_CLIENT_SECRET": bot["client_secret"]},
    )
    assert posted.returncode == 0
    assert "message" in json.loads(posted.stdout)


def test_gatekey_curl_caches_the_jwt_privately_and_never_the_secret(
    stack: LocalStack, bot: dict[str, Any], tmp_path: Path
) -> None:
    env = {"GATEKEY_ENDPOINT": stack.url, "XDG_CACHE_HOME": str(tmp_path)}
    assert curl(stack, bot, "--auth", "jwt", **env).returncode == 0
    directory = tmp_path / "gatekey" / "tokens"
    (cached,) = directory.iterdir()
    assert directory.stat().st_mode & 0o777 == 0o700
    assert cached.stat().st_mode & 0o777 == 0o600
    text = cached.read_text()
    assert bot["client_secret"] not in text
    token = json.loads(text)["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["client_id"] == bot["client_id"]
    # Used again, not fetched again.
    assert json.loads(curl(stack, bot, "--auth", "jwt", **env).stdout)["auth_method"] == "bearer"
    assert json.loads(cached.read_text())["access_token"] == token
    # Rotated without a grace: the cached JWT is refused, so one new token is fetched.
    rotated = cli(stack, "rotate", bot["client_id"])
    time.sleep(STATUS_TTL + 0.5)
    again = curl(stack, bot, "--auth", "jwt", GATEKEY_CLIENT_SECRET=rotated["client_secret"], **env)
    assert json.loads(again.stdout)["auth_method"] == "bearer", again.stdout
    assert json.loads(cached.read_text())["access_token"] != token


def test_the_quickstart_runs_as_written() -> None:
    # The README's commands, verbatim, in one bash, against a stack started as `make run`
    # starts it (the template's defaults) on a free port: each prints what the README shows.
    found = quickstart.steps()
    assert len(found) >= 10
    assert "${GATEKEY_PORT:-3000}" in found[1].command
    with local_stack(overrides="") as started:
        environment = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(Path.home()),
            "GATEKEY_PORT": started.url.rsplit(":", 1)[1],
        }
        outputs = quickstart.run(found, environment, timeout=180)
    assert len(outputs) == len(found)
    for step, output in zip(found, outputs, strict=True):
        assert quickstart.matches(step.expected, output), (step.command, step.expected, output)


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    # GATEKEY_STATE: a token created in one run, and an access token issued by it, are still
    # accepted by the next run on the same directory (same table, pepper and signing key).
    state, port = str(tmp_path / "state"), free_port()
    with local_stack(port=port, GATEKEY_STATE=state) as first:
        made = cli(first, "create", "kept-bot", "--scope", "read")
        headers = forms(made)["gatekey_headers"]
        issued = access_token(first, made["client_id"], made["client_secret"], "read")
        bearer = {"Authorization": f"Bearer {issued['access_token']}"}
        keys = requests.get(f"{first.url}/.well-known/jwks.json", timeout=10).json()
        assert whoami(first, bearer).status_code == 200
    assert {p.name for p in (tmp_path / "state").iterdir()} == {"moto.pickle", "stack.json"}
    with local_stack(port=port, GATEKEY_STATE=state) as second:
        assert requests.get(f"{second.url}/.well-known/jwks.json", timeout=10).json() == keys
        assert whoami(second, headers).json()["client_id"] == made["client_id"]
        assert whoami(second, bearer).json()["auth_method"] == "bearer"
        listed = cli(second, "list")
        assert [t["client_id"] for t in listed["items"]] == [made["client_id"]]
        cli(second, "revoke", made["client_id"])
    # Without GATEKEY_PORT, a state's stack comes back on its own port (its issuer's).
    with local_stack(port=port, GATEKEY_STATE=state, GATEKEY_PORT="") as third:
        assert whoami(third, headers).status_code == 403  # the revocation was kept too


def test_a_fresh_stack_keeps_nothing(tmp_path: Path) -> None:
    with local_stack(GATEKEY_STATE=str(tmp_path)) as first:
        cli(first, "create", "kept-bot")
    with local_stack() as second:
        assert cli(second, "list")["items"] == []


# -- bindings: source addresses and APIs ------------------------------------------------------

# The local gateway's test header: the source IP API Gateway would report (README, Quickstart).
SOURCE_IP = "X-Gatekey-Local-Source-Ip"
DEMO_REST_API, DEMO_HTTP_API = "demoapi", "demohttpapi"  # the local stack's API ids


def token_from(stack: LocalStack, bot: dict[str, Any], source_ip: str, **form: str) -> Any:
    return requests.post(
        f"{stack.url}/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        auth=(bot["client_id"], bot["client_secret"]),
        headers={SOURCE_IP: source_ip},
        timeout=10,
    )


@pytest.mark.parametrize(
    ("inside", "outside"),
    [("203.0.113.10", "198.51.100.7"), ("2001:db8:1::10", "2001:db8:2::10")],
)
def test_a_bound_token_is_refused_from_another_source_ip_everywhere(
    stack: LocalStack, inside: str, outside: str
) -> None:
    bot = cli(
        stack,
        "create",
        "e2e-bound-bot",
        "--scope",
        "read",
        "--cidr",
        "203.0.113.0/24",
        "--cidr",
        "2001:db8:1::/48",
    )
    assert bot["bound_cidrs"] == ["203.0.113.0/24", "2001:db8:1::/48"]
    # The token endpoint: a token from inside, a 403 from outside.
    issued = token_from(stack, bot, inside)
    assert issued.status_code == 200, issued.text
    refused = token_from(stack, bot, outside)
    assert (refused.status_code, refused.json()["error"]) == (403, "unauthorized_client")
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    # The REST API, authorized on each request: every form, and the access token.
    for headers in [*forms(bot).values(), bearer]:
        assert whoami(stack, {**headers, SOURCE_IP: inside}).status_code == 200
        assert whoami(stack, {**headers, SOURCE_IP: outside}).status_code == 403
    # The HTTP API, cached on the pair, the route key and the source IP: the Allow cached for
    # the address inside is not the answer for the one outside.
    pair = forms(bot)["gatekey_headers"]
    for source, status in [(inside, 200), (outside, 403), (inside, 200)]:
        answer = whoami(stack, {**pair, SOURCE_IP: source}, HTTP_LAMBDA_ROUTE)
        assert answer.status_code == status, (source, answer.text)
    # The cached TOKEN route sees no source IP: a bound token is refused there from anywhere.
    for headers in (forms(bot)["basic"], bearer):
        route = "/demo/cached/whoami"
        assert whoami(stack, {**headers, SOURCE_IP: inside}, route).status_code == 403
    # Without the test header, the source is the peer, 127.0.0.1: outside.
    assert whoami(stack, pair).status_code == 403


def test_a_token_bound_to_one_api_is_refused_on_the_other_with_and_without_jwts(
    stack: LocalStack,
) -> None:
    on_rest = cli(stack, "create", "e2e-rest-bot", "--scope", "read", "--api", DEMO_REST_API)
    on_http = cli(stack, "create", "e2e-http-bot", "--scope", "read", "--api", DEMO_HTTP_API)
    pair = forms(on_rest)["gatekey_headers"]
    assert whoami(stack, pair).status_code == 200
    assert whoami(stack, pair, HTTP_LAMBDA_ROUTE).status_code == 403
    pair = forms(on_http)["gatekey_headers"]
    assert whoami(stack, pair, HTTP_LAMBDA_ROUTE).status_code == 200
    assert whoami(stack, pair).status_code == 403
    # With access tokens: the token's binding holds whatever the token's audience.
    for bot, allowed_on_rest in ((on_rest, 200), (on_http, 403)):
        token = access_token(stack, bot["client_id"], bot["client_secret"], "read")
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        assert whoami(stack, bearer).status_code == allowed_on_rest
        assert whoami(stack, bearer, "/demo/cached/whoami").status_code == allowed_on_rest
    # A bound stage: the local REST stage is v1.
    staged = cli(stack, "create", "e2e-prod-bot", "--api", f"{DEMO_REST_API}/prod")
    assert whoami(stack, forms(staged)["basic"]).status_code == 403
    cli(stack, "bind", staged["client_id"], "--api", f"{DEMO_REST_API}/v1")
    deadline = time.monotonic() + STATUS_TTL + 2
    while whoami(stack, forms(staged)["basic"]).status_code != 200:
        assert time.monotonic() < deadline, "the new binding did not land within the status TTL"
        time.sleep(0.1)


def test_an_access_token_for_one_api_is_accepted_there_only(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    # GIVEN an unbound token, and an access token asked for the REST API only (RFC 8707)
    asked = f"urn:gatekey:api:{DEMO_REST_API}"
    answer = token_from(stack, bot, "127.0.0.1", scope="read", resource=asked)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == asked
    bearer = {"Authorization": f"Bearer {token}"}
    # THEN it works on that API, through either of its authorizers
    assert whoami(stack, bearer).status_code == 200
    assert whoami(stack, bearer, "/demo/cached/whoami").status_code == 200
    # AND not on the HTTP API, whose JWT authorizer takes the stack's audience only
    assert whoami(stack, bearer, HTTP_JWT_ROUTE).status_code == 401
    # AND one for the HTTP API is refused by the REST API's authorizer
    other = token_from(stack, bot, "127.0.0.1", audience=f"urn:gatekey:api:{DEMO_HTTP_API}")
    assert other.status_code == 200, other.text
    other_bearer = {"Authorization": f"Bearer {other.json()['access_token']}"}
    assert whoami(stack, other_bearer).status_code == 403
    # A token bound to one API cannot ask for another: invalid_target (RFC 8707).
    on_http = cli(stack, "create", "e2e-http-only", "--api", DEMO_HTTP_API)
    refused = token_from(stack, on_http, "127.0.0.1", resource=asked)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_target")


# -- rate limits and quotas: the demo's usage plan on /demo/metered/whoami ---------------------

METERED = "/demo/metered/whoami"


def metered_bot(stack: LocalStack) -> dict[str, str]:
    created = cli(stack, "create", "metered-bot", "--usage-plan", "demo")
    assert created["usage_plan"] == "demo"
    return forms(created)["gatekey_headers"]


def test_rate_2_burst_2_answers_429_on_the_third_rapid_call_and_200_a_second_later(
    stack: LocalStack,
) -> None:
    headers = metered_bot(stack)
    with requests.Session() as session:
        started = time.monotonic()
        answers = [session.get(stack.url + METERED, headers=headers, timeout=10) for _ in range(3)]
        # Rapid: the bucket (2 a second) gets back under one token in that time.
        assert time.monotonic() - started < 0.5
        assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
        assert answers[-1].json() == {"message": "Too Many Requests"}
        assert answers[0].json()["auth_method"] == "gatekey_headers"
        time.sleep(1.0)
        assert session.get(stack.url + METERED, headers=headers, timeout=10).status_code == 200


def test_a_daily_quota_of_5_answers_429_on_the_sixth_call(stack: LocalStack) -> None:
    headers = metered_bot(stack)
    statuses = []
    for _ in range(E2E_DAILY_QUOTA + 1):
        answer = whoami(stack, headers, METERED)
        statuses.append(answer.status_code)
        time.sleep(0.5)  # one token back each time: never throttled
    assert statuses == [200] * E2E_DAILY_QUOTA + [429]
    assert answer.json() == {"message": "Limit Exceeded"}


def test_a_metered_route_refuses_a_token_on_no_plan_and_an_unknown_plan_is_a_400(
    stack: LocalStack, bot: dict[str, Any]
) -> None:
    answer = whoami(stack, forms(bot)["gatekey_headers"], METERED)
    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})
    # Unmetered routes are not affected by a plan.
    assert whoami(stack, metered_bot(stack)).status_code == 200
    refused = gatekey("--endpoint", stack.url, "create", "x", "--usage-plan", "platinum")
    assert refused.returncode != 0
    assert "usage_plan: is not a usage plan of this stack (plans: demo)" in refused.stderr


def test_taking_a_token_off_its_plan_stops_it_on_the_metered_route(stack: LocalStack) -> None:
    created = cli(stack, "create", "moved-bot", "--usage-plan", "demo")
    headers = forms(created)["gatekey_headers"]
    assert whoami(stack, headers, METERED).status_code == 200
    assert cli(stack, "update", created["client_id"], "--no-usage-plan")["usage_plan"] is None
    time.sleep(STATUS_TTL)  # the authorizer's status cache forgets the key
    assert whoami(stack, headers, METERED).status_code == 403
