"""The console's web server: stdlib `http.server` on 127.0.0.1, guarded as a local server
must be against the other pages of the same browser (docs/console.md, "Security"):

- a random token per run, in the URL printed at start; the first load trades it for an
  HttpOnly SameSite=Strict cookie (like Jupyter) and redirects to drop it from the URL;
  every other request without that cookie is refused;
- `Host` must name this server (127.0.0.1 or localhost, this port): DNS rebinding;
- a POST must come from this origin (`Origin`, and `Sec-Fetch-Site` when sent) and carry
  the run's form token (CSRF); only POSTs change anything;
- a strict CSP (scripts and styles from this server only, no inline ones), no CORS headers,
  no framing, no caching, no referrer to other sites.
"""

from __future__ import annotations

import hmac
import re
import secrets
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol

from gatekey_cli.api import ApiError, CliError
from gatekey_cli.console import pages
from gatekey_cli.console.views import Filters, counts, lines, select, words

BASE = "/admin/service-tokens"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it, Chromium sends `Origin: null` on this page's own POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TOKEN_PATH = re.compile(rf"/tokens/({CLIENT_ID.pattern})")
ACTION_PATH = re.compile(
    rf"/tokens/({CLIENT_ID.pattern})/(rotate|refresh|enable|disable|revoke|edit)"
)
MAX_FORM_BYTES = 64 * 1024
MAX_LIST_PAGES = 20  # of 100 tokens: the console lists at most 2,000
REVEAL_SECONDS = 600  # a secret not shown within this long after it was issued is dropped
NOTICES = {
    "refreshed": "Expiry refreshed.",
    "enabled": "Token enabled.",
    "disabled": "Token disabled: it is refused until enabled again.",
    "revoked": "Token revoked.",
    "saved": "Changes saved.",
}


class Api(Protocol):
    """What the console needs of `gatekey_cli.api.AdminClient`."""

    endpoint: str

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any: ...


@dataclass
class Console:
    """What the pages are made from: the signed API client, who it signs as, a clock."""

    api: Api
    identity: Callable[[], str]
    test_url: str = "https://api.example.com/your/route"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _identity: str | None = None

    def who(self) -> str:
        if self._identity is None:
            self._identity = self.identity()
        return self._identity


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, console: Console, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.console = console
        self.port = int(self.server_address[1])
        self.run_token = secrets.token_urlsafe(32)
        self.form_token = secrets.token_urlsafe(32)
        self.cookie_name = f"gatekey_console_{self.port}"  # cookies are shared across ports
        self.hosts = frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})
        self.origins = frozenset(f"http://{host}" for host in self.hosts)
        self._reveals: dict[str, tuple[pages.Reveal, float]] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The URL to open: it carries the run token."""
        return f"http://127.0.0.1:{self.port}/?token={self.run_token}"

    def keep(self, reveal: pages.Reveal) -> str:
        """Hold a secret just issued until its page is loaded once; the key to load it."""
        key = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            for old in [k for k, (_, at) in self._reveals.items() if now - at > REVEAL_SECONDS]:
                del self._reveals[old]
            self._reveals[key] = (reveal, now)
        return key

    def take(self, key: str, client_id: str) -> pages.Reveal | None:
        with self._lock:
            held = self._reveals.pop(key, None)
        if held is None or held[0].client_id != client_id:
            return None
        if time.monotonic() - held[1] > REVEAL_SECONDS:
            return None
        return held[0]


@dataclass
class Answer:
    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"


class Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    protocol_version = "HTTP/1.1"
    server_version = "gatekey-console"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _not_allowed(self) -> None:
        self._send(Answer(405, pages.refused_page("Method not allowed."), {"Allow": "GET, POST"}))

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _not_allowed

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # quiet: and the first request's URL holds the run token

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"gatekey console: {format % args}\n")

    # -- the guard -------------------------------------------------------------------------

    def _answer(self, method: str) -> None:
        try:
            answer = self._guarded(method)
        except Refused as refused:
            # A refused POST's body is left unread: the connection cannot serve another request.
            self.close_connection = True
            answer = Answer(
                refused.status, pages.refused_page(refused.reason), {"Connection": "close"}
            )
        except Exception:  # noqa: BLE001 - a bug: the page says so, the terminal has the trace
            self.log_message("%s", traceback.format_exc().rstrip())
            answer = Answer(500, pages.refused_page("Internal error of the console."))
        self._send(answer)

    def _guarded(self, method: str) -> Answer:
        server = self.server
        if self.headers.get("Host", "") not in server.hosts:
            raise Refused(403, "Unexpected Host header: open the console as 127.0.0.1.")
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if method == "GET" and "token" in query:
            if not hmac.compare_digest(query["token"].encode(), server.run_token.encode()):
                raise Refused(403, "Wrong console token: open the URL gatekey console printed.")
            rest = urllib.parse.urlencode({k: v for k, v in query.items() if k != "token"})
            cookie = f"{server.cookie_name}={server.run_token}; HttpOnly; SameSite=Strict; Path=/"
            location = url.path + (f"?{rest}" if rest else "")
            return Answer(303, "", {"Location": location, "Set-Cookie": cookie})
        if not self._has_cookie():
            raise Refused(
                403,
                "No console session: open the URL that gatekey console printed (it "
                "carries this run's token).",
            )
        if method == "POST":
            self._same_origin()
            form = self._form()
            if not hmac.compare_digest(form.get("csrf", "").encode(), server.form_token.encode()):
                raise Refused(403, "Missing or wrong form token: reload the page and try again.")
            return Routes(server).post(url.path, form)
        return Routes(server).get(url.path, query)

    def _has_cookie(self) -> bool:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = cookies.get(self.server.cookie_name)
        return morsel is not None and hmac.compare_digest(
            morsel.value.encode(), self.server.run_token.encode()
        )

    def _same_origin(self) -> None:
        if self.headers.get("Origin", "") not in self.server.origins:
            raise Refused(403, "Cross-origin request refused.")
        if self.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            raise Refused(403, "Cross-site request refused.")

    def _form(self) -> dict[str, str]:
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            raise Refused(415, "Forms only.")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refused(411, "Content-Length required.") from None
        if not 0 <= length <= MAX_FORM_BYTES:
            raise Refused(413, "Form too large.")
        text = self.rfile.read(length).decode("utf-8", errors="replace")
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))

    def _send(self, answer: Answer) -> None:
        data = answer.body.encode()
        self.send_response(answer.status)
        for name, value in {**SECURITY_HEADERS, **answer.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Routes:
    """One request past the guard: call the API, render a page or redirect."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.console = server.console
        self.api = server.console.api
        self.endpoint = server.console.api.endpoint
        self.now = server.console.clock()

    def get(self, path: str, query: Mapping[str, str]) -> Answer:
        if path.startswith("/static/") and path[8:] in STATIC:
            name = path[8:]
            text = resources.files(__package__).joinpath(f"static/{name}").read_text()
            return Answer(200, text, content_type=STATIC[name])
        if path == "/favicon.ico":
            return Answer(204)
        try:
            if path == "/":
                tokens, truncated = self._all_tokens()
                shown = select(tokens, Filters.of(query), self.now)
                return self._page(
                    pages.tokens_page(
                        shown,
                        Filters.of(query),
                        self.now,
                        endpoint=self.endpoint,
                        truncated=truncated,
                    )
                )
            if path == "/glance":
                tokens, _ = self._all_tokens()
                body = pages.glance_page(
                    tokens, counts(tokens, self.now), self.now, endpoint=self.endpoint
                )
                return self._page(body)
            if path == "/new":
                return self._page(pages.create_page(endpoint=self.endpoint, csrf=self._csrf))
            if match := TOKEN_PATH.fullmatch(path):
                client_id = match.group(1)
                reveal = self.server.take(query.get("reveal", ""), client_id)
                return self._token(
                    client_id, reveal=reveal, notice=NOTICES.get(query.get("notice", ""), "")
                )
        except ApiError as exc:
            return self._api_error(exc)
        except CliError as exc:
            return self._page(pages.error_page(502, str(exc), endpoint=self.endpoint), 502)
        return self._page(pages.error_page(404, "No such page.", endpoint=self.endpoint), 404)

    def post(self, path: str, form: Mapping[str, str]) -> Answer:
        try:
            if path == "/new":
                return self._create(form)
            if match := ACTION_PATH.fullmatch(path):
                return self._action(match.group(1), match.group(2), form)
        except ApiError as exc:
            return self._api_error(exc)
        except CliError as exc:
            return self._page(pages.error_page(502, str(exc), endpoint=self.endpoint), 502)
        return self._page(pages.error_page(404, "No such action.", endpoint=self.endpoint), 404)

    # -- pages -----------------------------------------------------------------------------

    @property
    def _csrf(self) -> str:
        return self.server.form_token

    def _page(self, body: str, status: int = 200) -> Answer:
        return Answer(status, body)

    def _all_tokens(self) -> tuple[list[dict[str, Any]], bool]:
        tokens: list[dict[str, Any]] = []
        next_token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            query = {"limit": "100"} | ({"next_token": next_token} if next_token else {})
            page = self.api.call("GET", BASE, query=query)
            tokens.extend(page["items"])
            next_token = page.get("next_token")
            if not next_token:
                return tokens, False
        return tokens, True

    def _token(
        self,
        client_id: str,
        *,
        reveal: pages.Reveal | None = None,
        notice: str = "",
        error: str = "",
        form: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> Answer:
        path = f"{BASE}/{urllib.parse.quote(client_id, safe='')}"
        token = self.api.call("GET", path)
        events = self.api.call("GET", f"{path}/events", query={"limit": "100"})["items"]
        body = pages.token_page(
            token,
            events,
            self.now,
            endpoint=self.endpoint,
            csrf=self._csrf,
            test_url=self.console.test_url,
            reveal=reveal,
            notice=notice,
            error=error,
            form=form,
        )
        return self._page(body, status)

    def _api_error(self, exc: ApiError) -> Answer:
        identity = self.console.who() if exc.status == 403 else None
        body = pages.error_page(
            exc.status, exc.message, endpoint=self.endpoint, identity=identity, code=exc.code
        )
        return self._page(body, exc.status if 400 <= exc.status < 600 else 502)

    # -- actions ---------------------------------------------------------------------------

    def _create(self, form: Mapping[str, str]) -> Answer:
        body: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "duration": form.get("duration", "").strip() or "8760h",
            "routes": lines(form.get("routes", "")) or ["*"],
            "scopes": words(form.get("scopes", "")),
            "rotation": {"mode": form.get("rotation", "remind")},
        }
        if form.get("owner", "").strip():
            body["owner"] = form["owner"].strip()
        if form.get("delivery_secret_arn", "").strip():
            body["rotation"]["delivery_secret_arn"] = form["delivery_secret_arn"].strip()
        try:
            issued = self.api.call("POST", BASE, body)
        except ApiError as exc:
            if exc.status == 403:
                raise
            kept = {k: v for k, v in form.items() if k != "csrf"}
            page = pages.create_page(
                endpoint=self.endpoint, csrf=self._csrf, form=kept, error=exc.message
            )
            return self._page(page, exc.status)
        return self._reveal(issued, "created")

    def _reveal(self, issued: Mapping[str, Any], action: str) -> Answer:
        client_id = str(issued["client_id"])
        key = self.server.keep(pages.Reveal(client_id, str(issued["client_secret"]), action))
        location = f"/tokens/{urllib.parse.quote(client_id)}?reveal={key}"
        return Answer(303, "", {"Location": location})

    def _action(self, client_id: str, action: str, form: Mapping[str, str]) -> Answer:
        path = f"{BASE}/{urllib.parse.quote(client_id, safe='')}"
        try:
            if action == "rotate":
                grace = form.get("grace", "").strip()
                issued = self.api.call("POST", f"{path}/rotate", {"grace": grace} if grace else {})
                return self._reveal(issued, "rotated")
            if action == "refresh":
                duration = form.get("duration", "").strip()
                self.api.call("POST", f"{path}/refresh", {"duration": duration} if duration else {})
                return self._done(client_id, "refreshed")
            if action in ("enable", "disable"):
                self.api.call("PATCH", path, {"enabled": action == "enable"})
                return self._done(client_id, f"{action}d")
            if action == "revoke":
                token = self.api.call("GET", path)
                if form.get("confirm", "").strip() != token["name"]:
                    return self._token(
                        client_id,
                        error="Not revoked: type the token's name exactly to confirm.",
                        status=400,
                    )
                self.api.call("POST", f"{path}/revoke")
                return self._done(client_id, "revoked")
            owner = form.get("owner", "").strip()
            self.api.call(
                "PATCH",
                path,
                {
                    "name": form.get("name", "").strip(),
                    "owner": owner or None,
                    "routes": lines(form.get("routes", "")),
                    "scopes": words(form.get("scopes", "")),
                },
            )
            return self._done(client_id, "saved")
        except ApiError as exc:
            if exc.status in (403, 404):
                raise
            kept = {k: v for k, v in form.items() if k != "csrf"}
            return self._token(client_id, error=exc.message, form=kept, status=exc.status)

    def _done(self, client_id: str, notice: str) -> Answer:
        location = f"/tokens/{urllib.parse.quote(client_id)}?notice={notice}"
        return Answer(303, "", {"Location": location})


def start_in_background(console: Console, port: int = 0) -> ConsoleServer:
    """Serve the console from a daemon thread (the local stack does): the server, to close."""
    server = ConsoleServer(console, port)
    threading.Thread(target=server.serve_forever, name="gatekey-console", daemon=True).start()
    return server
