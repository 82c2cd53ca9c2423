"""The console's web server against the admin handler over HTTP (SigV4 checked as AWS_IAM
does): what a local web server must refuse, and what the pages say when the API refuses."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from gatekey_cli.console.command import console_for
from gatekey_cli.console.server import CSP, ConsoleServer, start_in_background
from gatekey_cli.main import main
from support.constants import REGION
from support.harness import AdminGateway


@pytest.fixture
def console(admin_gateway: AdminGateway) -> Iterator[ConsoleServer]:
    server = start_in_background(console_for(admin_gateway.url, boto3.Session(region_name=REGION)))
    yield server
    server.shutdown()
    server.server_close()


def origin(server: ConsoleServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def browser(server: ConsoleServer) -> requests.Session:
    """A session that opened the printed URL, as the operator's browser does."""
    session = requests.Session()
    assert session.get(server.url, timeout=10, allow_redirects=False).status_code == 303
    return session


def form_token(session: requests.Session, server: ConsoleServer) -> str:
    page = session.get(f"{origin(server)}/new", timeout=10).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def create(session: requests.Session, server: ConsoleServer, name: str, **headers: str) -> Any:
    return session.post(
        f"{origin(server)}/new",
        data={"csrf": form_token(session, server), "name": name, "scopes": "read"},
        headers={"Origin": origin(server), **headers},
        allow_redirects=False,
        timeout=10,
    )


def names(session: requests.Session, server: ConsoleServer) -> list[str]:
    page = session.get(f"{origin(server)}/", timeout=10).text
    return re.findall(r'<a href="/tokens/[^"]+">([^<]+)</a>', page)


def test_a_request_without_the_run_token_is_refused(console: ConsoleServer) -> None:
    for path in ("/", "/glance", "/new", "/static/console.js", "/?token=wrong"):
        answer = requests.get(origin(console) + path, timeout=10, allow_redirects=False)
        assert answer.status_code == 403, path
        assert "Set-Cookie" not in answer.headers
        assert "gatekey console printed" in answer.text


def test_the_run_token_becomes_a_strict_http_only_cookie_and_leaves_the_url(
    console: ConsoleServer,
) -> None:
    answer = requests.get(console.url + "&state=active", timeout=10, allow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/?state=active"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"gatekey_console_{console.port}=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    session = browser(console)
    assert session.get(origin(console) + "/", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "127.0.0.1.nip.io:{port}"]
)
def test_a_foreign_host_is_refused_even_with_the_cookie(console: ConsoleServer, host: str) -> None:
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
    session = browser(console)
    answer = session.get(
        origin(console) + "/",
        headers={"Host": host.format(port=console.port)},
        timeout=10,
    )
    assert answer.status_code == 403
    assert "Unexpected Host" in answer.text
    name = f"gatekey_console_{console.port}"
    cookie = f"{name}={session.cookies.get(name)}"
    local = {"Host": f"localhost:{console.port}", "Cookie": cookie}
    assert requests.get(origin(console) + "/", headers=local, timeout=10).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_post_from_another_origin_is_refused(
    console: ConsoleServer, headers: dict[str, str]
) -> None:
    session = browser(console)
    answer = create(session, console, "csrf-bot", **headers)
    assert answer.status_code == 403
    assert "csrf-bot" not in names(session, console)


def test_a_post_without_origin_or_form_token_or_cookie_is_refused(console: ConsoleServer) -> None:
    session = browser(console)
    url, token = f"{origin(console)}/new", form_token(session, console)
    refused = [
        session.post(url, data={"csrf": token, "name": "a"}, timeout=10),  # no Origin
        session.post(url, data={"name": "b"}, headers={"Origin": origin(console)}, timeout=10),
        session.post(url, data={"csrf": "guess", "name": "c"}, headers={"Origin": origin(console)}),
        # A cross-site form: the browser sends no SameSite=Strict cookie with it.
        requests.post(
            url, data={"csrf": token, "name": "d"}, headers={"Origin": origin(console)}, timeout=10
        ),
        # A GET changes nothing: the actions are POST only.
        session.get(f"{origin(console)}/tokens/gk_x/revoke", timeout=10),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403, 404]
    assert names(session, console) == []


def test_every_answer_has_a_strict_csp_and_no_cors(console: ConsoleServer) -> None:
    assert "script-src 'self';" in CSP
    assert "unsafe-inline" not in CSP
    session = browser(console)
    created = create(session, console, "csp-bot")
    paths = ["/", "/glance", "/new", created.headers["Location"], "/static/console.css", "/nope"]
    for path in paths:
        answer = session.get(origin(console) + path, headers={"Origin": "http://evil.example"})
        assert answer.headers["Content-Security-Policy"] == CSP, path
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cache-Control"] == "no-store"
        assert not any(h.lower().startswith("access-control-") for h in answer.headers)
        if answer.headers["Content-Type"].startswith("text/html"):
            # No inline script, handler or style for the CSP to block.
            assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text)
            assert not re.search(r"\s(on[a-z]+|style)=", answer.text)
    preflight = session.options(origin(console) + "/new", headers={"Origin": "http://evil.example"})
    assert preflight.status_code == 405
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)


def test_the_secret_is_shown_once_and_gone_on_reload(console: ConsoleServer) -> None:
    session = browser(console)
    created = create(session, console, "once-bot")
    assert created.status_code == 303
    assert "gks_" not in created.headers["Location"]
    page = session.get(origin(console) + created.headers["Location"], timeout=10)
    secret = re.search(r'id="reveal-client-secret" readonly value="(gks_\w+)"', page.text)
    assert secret
    assert f"Gatekey-Client-Secret: {secret.group(1)}" in page.text  # the curl line
    again = session.get(origin(console) + created.headers["Location"], timeout=10)
    assert again.status_code == 200
    assert "gks_" not in again.text


def test_api_errors_show_the_apis_message_never_a_trace(console: ConsoleServer) -> None:
    session = browser(console)
    answer = session.post(
        f"{origin(console)}/new",
        data={"csrf": form_token(session, console), "name": "bad-bot", "duration": "soon"},
        headers={"Origin": origin(console)},
        timeout=10,
    )
    assert answer.status_code == 400
    assert "duration" in answer.text
    assert 'value="bad-bot"' in answer.text  # the form is kept
    missing = session.get(f"{origin(console)}/tokens/gk_0000000000000000000000000000", timeout=10)
    assert missing.status_code in (400, 404)
    for text in (answer.text, missing.text):
        assert "Traceback" not in text


def test_a_403_says_which_aws_identity_the_console_signs_as(admin_gateway: AdminGateway) -> None:
    wrong = boto3.Session(
        aws_access_key_id="AKIAWRONGWRONGWRONG0",
        aws_secret_access_key="wrong",
        region_name=REGION,
    )
    server = start_in_background(console_for(admin_gateway.url, wrong))
    try:
        page = browser(server).get(f"http://127.0.0.1:{server.port}/", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert page.status_code == 403
    assert "signature" in page.text
    # moto's STS answers for the credentials it is given.
    assert re.search(r"signs its calls as\s+<code>arn:aws:(sts|iam)::\d{12}:", page.text)
    assert urlsplit(admin_gateway.url).hostname == "127.0.0.1"


@pytest.mark.parametrize("flags", [[], ["--no-browser"]])
def test_gatekey_console_prints_its_url_and_opens_the_browser_unless_told_not_to(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    opened: list[str] = []
    served: list[ConsoleServer] = []

    def serve(self: ConsoleServer, poll_interval: float = 0.5) -> None:
        served.append(self)
        thread = threading.Thread(target=serve_forever, args=(self,), daemon=True)
        thread.start()
        # What a browser does with the URL, then Ctrl-C.
        assert requests.get(self.url, timeout=10, allow_redirects=False).status_code == 303
        self.shutdown()
        raise KeyboardInterrupt

    serve_forever = ConsoleServer.serve_forever

    monkeypatch.setattr(ConsoleServer, "serve_forever", serve)
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = io.StringIO()
    code = main(["--endpoint", admin_gateway.url, "console", *flags], stdout=out)
    assert code == 0
    assert served[0].url in out.getvalue()
    assert served[0].url.startswith("http://127.0.0.1:")
    assert opened == ([] if flags else [served[0].url])


def test_every_action_is_a_post_that_lands_back_on_the_token(console: ConsoleServer) -> None:
    session = browser(console)
    location = create(session, console, "acting-bot").headers["Location"]
    token_path = location.split("?")[0]
    session.get(origin(console) + location, timeout=10)  # the secret's one showing
    csrf = form_token(session, console)

    def act(action: str, **fields: str) -> requests.Response:
        return session.post(
            f"{origin(console)}{token_path}/{action}",
            data={"csrf": csrf, **fields},
            headers={"Origin": origin(console)},
            timeout=10,
        )

    rotated = act("rotate", grace="1h")
    assert "rotated: this is its new secret" in rotated.text
    assert "Previous secret valid until" in rotated.text
    assert "Expiry refreshed." in act("refresh", duration="30d").text
    disabled = act("disable")
    assert "Token disabled" in disabled.text
    assert "badge-disabled" in disabled.text
    assert "Token enabled." in act("enable").text
    edited = act(
        "edit",
        name="renamed-bot",
        owner="team@example.com",
        routes="GET /a/*\nPOST /b",
        scopes="x y",
    )
    assert "Changes saved." in edited.text
    assert "<code>GET /a/*</code>" in edited.text
    assert "team@example.com" in edited.text
    too_long = act("rotate", grace="9999h")  # the API's limit is 720h
    assert too_long.status_code == 400
    assert 'class="error"' in too_long.text
    assert "grace" in too_long.text
    assert 'value="9999h"' in too_long.text  # what was typed stays
    refused = act("revoke", confirm="acting-bot")  # its old name
    assert refused.status_code == 400
    assert "type the token&#x27;s name exactly" in refused.text
    revoked = act("revoke", confirm="renamed-bot")
    assert "Token revoked." in revoked.text
    assert "nothing can change it" in revoked.text
    again = act("enable")  # the API's refusal, as the API words it
    assert again.status_code == 409
    assert "revoked" in again.text
    assert "Traceback" not in again.text
