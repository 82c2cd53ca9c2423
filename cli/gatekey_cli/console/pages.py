"""The console's HTML, rendered on the server: every value from the API goes through `esc`.

No inline script or style anywhere (the CSP forbids both): behaviour is static/console.js,
looks are static/console.css, and the timeline is SVG drawn with presentation attributes."""

from __future__ import annotations

import html
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from string import Template
from typing import Any

from gatekey_cli.console.views import (
    STATES,
    TIMELINE_DAYS,
    Filters,
    Mark,
    Token,
    countdown,
    notices,
    parse_time,
    state_of,
    timeline,
)

NAV = (("/", "Tokens"), ("/glance", "At a glance"), ("/new", "Create a token"))


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath(f"templates/{name}").read_text())


LAYOUT, CREATE, LEGEND = (_template(n) for n in ("layout.html", "create.html", "legend.html"))
STATE_COLOURS = {"active": "#1a7f37", "disabled": "#6e7781", "expired": "#9a6700"}
ROTATION_SHAPES = {"remind": "circle", "auto": "diamond"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, endpoint: str, current: str = "", notice: str = "") -> str:
    marked = ' aria-current="page"'
    nav = "".join(
        f'<li><a href="{href}"{marked if href == current else ""}>{text}</a></li>'
        for href, text in NAV
    )
    return LAYOUT.substitute(
        title=esc(title), nav=nav, endpoint=esc(endpoint), notice=notice, body=body
    )


def notice_box(text: str) -> str:
    return f'<p class="notice" role="status">{esc(text)}</p>' if text else ""


def error_box(text: str) -> str:
    return f'<p class="error" role="alert">{esc(text)}</p>' if text else ""


def badge(state: str) -> str:
    return f'<span class="badge badge-{esc(state)}">{esc(state)}</span>'


def when(value: str | None, now: datetime, empty: str = "never") -> str:
    """A time as its date and its countdown, for people; the exact time in a tooltip."""
    moment = parse_time(value)
    if moment is None:
        return f'<span class="muted">{esc(empty)}</span>'
    return (
        f'<time datetime="{esc(value)}" title="{esc(value)}">{moment:%Y-%m-%d}</time> '
        f'<span class="muted">({esc(countdown(moment, now))})</span>'
    )


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


# -- Tokens ----------------------------------------------------------------------------------


def tokens_page(
    tokens: Sequence[Token], filters: Filters, now: datetime, *, endpoint: str, truncated: bool
) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == filters.state else ""}>{s}</option>'
        for s in STATES
    )
    sorts = (("expiry", "expiry, soonest first"), ("-expiry", "expiry, latest first"))
    sort_options = "".join(
        f'<option value="{v}"{" selected" if v == filters.sort else ""}>{t}</option>'
        for v, t in (*sorts, ("name", "name"))
    )
    form = f"""<form class="filters" method="get" action="/" role="search"
 aria-label="Filter tokens">
<label>State <select name="state"><option value="">any</option>{options}</select></label>
<label>Owner <input name="owner" value="{esc(filters.owner)}"></label>
<label>Name <input name="name" value="{esc(filters.name)}"></label>
<label>Sort by <select name="sort">{sort_options}</select></label>
<button type="submit">Apply</button> <a href="/">Clear</a>
</form>"""
    rows = "".join(
        f"""<tr data-client-id="{esc(t["client_id"])}">
<td><a href="/tokens/{esc(t["client_id"])}">{esc(t.get("name"))}</a><br>
<code>{esc(t["client_id"])}</code></td>
<td>{badge(state_of(t, now))}</td>
<td>{when(t.get("expires_at"), now)}</td>
<td>{when(t.get("last_seen_at"), now, "not seen")}</td>
<td>{esc(t.get("owner") or "")}</td>
<td>{esc((t.get("rotation") or {}).get("mode", ""))}</td>
</tr>"""
        for t in tokens
    )
    table = (
        '<table id="tokens"><caption class="muted">'
        f"{len(tokens)} token{'' if len(tokens) == 1 else 's'}</caption><thead><tr>"
        '<th scope="col">Name and Client ID</th><th scope="col">State</th>'
        '<th scope="col">Expires</th><th scope="col">Last seen</th><th scope="col">Owner</th>'
        f'<th scope="col">Rotation</th></tr></thead><tbody>{rows}</tbody></table>'
    )
    if not tokens:
        table = '<p id="tokens">No token matches. <a href="/new">Create a token</a>.</p>'
    more = (
        '<p class="muted">Only the first tokens the API listed are shown: narrow the filters.</p>'
        if truncated
        else ""
    )
    return page("Tokens", form + table + more, endpoint=endpoint, current="/")


# -- At a glance -----------------------------------------------------------------------------


def glance_page(
    tokens: Sequence[Token], counts: Mapping[str, int], now: datetime, *, endpoint: str
) -> str:
    cards = "".join(
        f'<li>{badge(state)}<strong id="count-{state}">{counts[state]}</strong></li>'
        for state in STATES
    )
    marks = timeline(tokens, now)
    rows = "".join(
        f"""<tr><td><a href="/tokens/{esc(m.token["client_id"])}">
{esc(m.token.get("name"))}</a></td>
<td>{esc(m.token.get("owner") or "")}</td><td>{when(m.token.get("expires_at"), now)}</td>
<td>{badge(m.state)}</td><td>{esc(m.rotation)}</td></tr>"""
        for m in marks
    )
    table = (
        '<table id="expiring"><thead><tr><th scope="col">Token</th><th scope="col">Owner</th>'
        '<th scope="col">Expires</th><th scope="col">State</th><th scope="col">Rotation</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
        if marks
        else f'<p id="expiring">No token expires in the next {TIMELINE_DAYS} days.</p>'
    )
    legend = LEGEND.substitute(STATE_COLOURS)
    body = f"""<h2>Tokens by state</h2><ul class="counts">{cards}</ul>
<h2>Expiring in the next {TIMELINE_DAYS} days</h2>
{chart(marks, now)}
{legend}
{table}"""
    return page("At a glance", body, endpoint=endpoint, current="/glance")


def chart(marks: Sequence[Mark], now: datetime) -> str:
    """The expiry timeline as inline SVG: days along x, a mark per token (colour: state;
    shape: rotation mode), stacked in lanes where marks would overlap."""
    left, right, top, lane_height = 20, 940, 40, 22
    lanes = max((m.lane for m in marks), default=-1) + 1
    height = top + max(lanes, 1) * lane_height + 20
    span = right - left
    parts = [f'<line x1="{left}" y1="{top - 8}" x2="{right}" y2="{top - 8}" stroke="#59636e"/>']
    for day in range(0, TIMELINE_DAYS + 1, 15):
        x = left + span * day / TIMELINE_DAYS
        label = "today" if day == 0 else f"{now + timedelta(days=day):%b %d}"
        anchor = "start" if day == 0 else "end" if day == TIMELINE_DAYS else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 12}" x2="{x:.1f}" y2="{height - 8}" '
            'stroke="#d1d9e0"/>'
            f'<text x="{x:.1f}" y="{top - 18}" font-size="12" fill="#1f2328" '
            f'text-anchor="{anchor}">{label}</text>'
        )
    month = left + span * 30 / TIMELINE_DAYS
    parts.append(
        f'<line x1="{month:.1f}" y1="{top - 12}" x2="{month:.1f}" y2="{height - 8}" '
        'stroke="#bf8700" stroke-dasharray="4 3"/>'
    )
    for mark in marks:
        x = left + span * mark.position
        y = top + mark.lane * lane_height + lane_height / 2
        colour = STATE_COLOURS.get(mark.state, "#6e7781")
        label = (
            f"{mark.token.get('name')} ({mark.token.get('owner') or 'no owner'}): "
            f"{mark.state}, expires {mark.token.get('expires_at')}, rotation {mark.rotation}"
        )
        if mark.rotation == "auto":
            shape = (
                f'<polygon points="{x:.1f},{y - 8:.1f} {x + 8:.1f},{y:.1f} {x:.1f},{y + 8:.1f} '
                f'{x - 8:.1f},{y:.1f}" fill="{colour}" stroke="#1f2328"/>'
            )
        else:
            shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{colour}" stroke="#1f2328"/>'
        parts.append(f'<g class="mark"><title>{esc(label)}</title>{shape}</g>')
    summary = (
        f"{len(marks)} tokens expire in the next {TIMELINE_DAYS} days; the table below lists them."
    )
    return (
        f'<svg id="timeline" class="chart" role="img" aria-labelledby="timeline-title" '
        f'viewBox="0 0 960 {height}" width="960" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="timeline-title">{esc(summary)}</title>'
        + "".join(parts)
        + "</svg>"
    )


# -- A token ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reveal:
    """A secret just issued (by create or rotate), shown on one page load only."""

    client_id: str
    client_secret: str
    action: str


def reveal_box(reveal: Reveal, test_url: str) -> str:
    client_id, secret = reveal.client_id, reveal.client_secret
    headers = (
        f"curl -s {shlex.quote(test_url)} \\\n"
        f"  -H {shlex.quote('Gatekey-Client-Id: ' + client_id)} \\\n"
        f"  -H {shlex.quote('Gatekey-Client-Secret: ' + secret)}"
    )
    gatekey_curl = (
        f"GATEKEY_CLIENT_ID={shlex.quote(client_id)} \\\n"
        f"  GATEKEY_CLIENT_SECRET={shlex.quote(secret)} \\\n"
        f"  gatekey curl {shlex.quote(test_url)}"
    )

    def copyable(ident: str, label: str, value: str, block: bool = False) -> str:
        field = (
            # Focusable: a scrolling region must be reachable from the keyboard.
            f'<pre id="{ident}" tabindex="0" aria-label="{esc(label)}">'
            f"<code>{esc(value)}</code></pre>"
            if block
            else f'<label>{esc(label)} <input class="mono" id="{ident}" readonly '
            f'value="{esc(value)}"></label>'
        )
        return (
            f'<div class="copyable">{field}<button type="button" data-copy="{ident}">'
            f'Copy {esc(label)}</button> <span id="{ident}-status" role="status"></span></div>'
        )

    what = "created" if reveal.action == "created" else "rotated: this is its new secret"
    return f"""<section class="reveal" id="reveal" aria-labelledby="reveal-title">
<h2 id="reveal-title">Client Secret, shown this once</h2>
<p>The token was {esc(what)}. Store the secret now: it cannot be retrieved again, and it is gone
from this page when you reload or leave it.</p>
{copyable("reveal-client-id", "Client ID", client_id)}
{copyable("reveal-client-secret", "Client Secret", secret)}
<h3>Test it</h3>
{copyable("reveal-curl", "curl command", headers, block=True)}
{copyable("reveal-gatekey-curl", "gatekey curl command", gatekey_curl, block=True)}
</section>"""


def token_page(
    token: Token,
    events: Sequence[Token],
    now: datetime,
    *,
    endpoint: str,
    csrf: str,
    test_url: str,
    reveal: Reveal | None = None,
    notice: str = "",
    error: str = "",
    form: Mapping[str, str] | None = None,
) -> str:
    client_id = str(token["client_id"])
    state = state_of(token, now)
    rotation = token.get("rotation") or {}
    fields: list[tuple[str, str]] = [
        ("Client ID", f"<code>{esc(client_id)}</code>"),
        ("Name", esc(token.get("name"))),
        ("State", badge(state)),
        ("Owner", esc(token.get("owner") or "none")),
        ("Expires", when(token.get("expires_at"), now)),
        ("Duration", esc(token.get("duration"))),
        ("Last seen", when(token.get("last_seen_at"), now, "not seen")),
        ("Created", when(token.get("created_at"), now)),
        ("Updated", when(token.get("updated_at"), now)),
        ("Secret version", esc(token.get("client_secret_version"))),
        (
            "Previous secret valid until",
            when(token.get("previous_client_secret_expires_at"), now, "no previous secret"),
        ),
        ("Rotation", esc(rotation.get("mode", ""))),
    ]
    if rotation.get("delivery_secret_arn"):
        fields.append(("Delivered into", f"<code>{esc(rotation['delivery_secret_arn'])}</code>"))
    details = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in fields)
    routes = "".join(f"<li><code>{esc(r)}</code></li>" for r in token.get("routes", []))
    scopes = "".join(f"<li><code>{esc(s)}</code></li>" for s in token.get("scopes", []))
    sent = notices(events)
    body = (
        (reveal_box(reveal, test_url) if reveal else "")
        + error_box(error)
        + f'<dl class="fields" id="fields">{details}</dl>'
        + f'<h2>Routes</h2><ul id="routes">{routes or "<li>none</li>"}</ul>'
        + f'<h2>Scopes</h2><ul id="scopes">{scopes or "<li>none</li>"}</ul>'
        + actions(token, state, csrf, form or {})
        + '<h2 id="notices-title">Lifecycle notices</h2>'
        + (
            timeline_list(sent, "notices", now)
            if sent
            else '<p id="notices">No reminder or expiry notice has been sent.</p>'
        )
        + '<h2 id="audit-title">Audit trail</h2>'
        + (timeline_list(events, "audit", now) if events else '<p id="audit">No events.</p>')
    )
    return page(f"Token {token.get('name')}", body, endpoint=endpoint, notice=notice_box(notice))


def timeline_list(events: Sequence[Token], ident: str, now: datetime) -> str:
    items = []
    for event in events:
        details = event.get("details") or {}
        said = ", ".join(f"{k}: {_detail(v)}" for k, v in details.items() if v not in (None, ""))
        items.append(
            f'<li><strong class="action">{esc(event.get("action"))}</strong> '
            f"{when(event.get('at'), now)}<br>by <code>{esc(event.get('actor'))}</code>"
            + (f" from <code>{esc(event['source_ip'])}</code>" if event.get("source_ip") else "")
            + (f'<br><span class="muted">{esc(said)}</span>' if said else "")
            + "</li>"
        )
    return (
        f'<ol class="timeline" id="{ident}" aria-labelledby="{ident}-title">{"".join(items)}</ol>'
    )


def _detail(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def actions(token: Token, state: str, csrf: str, form: Mapping[str, str]) -> str:
    client_id = esc(token["client_id"])
    if state == "revoked":
        return '<h2>Actions</h2><p id="actions">This token is revoked: nothing can change it.</p>'
    base = f"/tokens/{client_id}"
    toggle = "disable" if token.get("enabled", True) else "enable"
    routes = "\n".join(token.get("routes", []))
    scopes = " ".join(token.get("scopes", []))

    def section(title: str, action: str, fields: str, button: str, klass: str = "") -> str:
        ident = f"action-{action}"
        return (
            f'<section aria-labelledby="{ident}"><h3 id="{ident}">{title}</h3>'
            f'<form method="post" action="{base}/{action}" class="inline">{hidden(csrf)}{fields}'
            f'<button type="submit"{f" class={klass!r}" if klass else ""}>{button}</button>'
            "</form></section>"
        )

    return (
        '<h2>Actions</h2><div class="actions" id="actions">'
        + "".join(
            (
                section(
                    "Rotate the secret",
                    "rotate",
                    "<p>A new secret, shown once. The old one keeps working for the grace "
                    'period (none: it stops at once).</p><label>Grace <input name="grace" '
                    f'placeholder="24h" value="{esc(form.get("grace", ""))}" size="8"></label>',
                    "Rotate",
                ),
                section(
                    "Refresh the expiry",
                    "refresh",
                    "<p>Expires again one duration from now.</p>"
                    '<label>Duration <input name="duration" size="8" '
                    f'placeholder="{esc(token.get("duration"))}"></label>',
                    "Refresh",
                ),
                section(
                    f"{toggle.capitalize()} the token",
                    toggle,
                    "<p>"
                    + (
                        "Refused while disabled; enable it again at any time."
                        if toggle == "disable"
                        else "It is disabled: enabling lets it in again."
                    )
                    + "</p>",
                    toggle.capitalize(),
                ),
                section(
                    "Edit",
                    "edit",
                    '<label>Name <input name="name" required '
                    f'value="{esc(form.get("name", token.get("name")))}"></label>'
                    '<label>Owner <input name="owner" '
                    f'value="{esc(form.get("owner", token.get("owner") or ""))}"></label>'
                    '<label>Routes, one a line <textarea name="routes" rows="3">'
                    f"{esc(form.get('routes', routes))}</textarea></label>"
                    '<label>Scopes, space-separated <input name="scopes" '
                    f'value="{esc(form.get("scopes", scopes))}"></label>',
                    "Save",
                ),
                section(
                    "Revoke",
                    "revoke",
                    "<p>Final: the token is refused for good. Type its name to confirm.</p>"
                    '<label>Name of the token <input name="confirm" autocomplete="off" '
                    'value=""></label>',
                    "Revoke",
                    "danger",
                ),
            )
        )
        + "</div>"
    )


# -- Create ----------------------------------------------------------------------------------


def create_page(
    *, endpoint: str, csrf: str, form: Mapping[str, str] | None = None, error: str = ""
) -> str:
    values = {"duration": "8760h", "routes": "*", "rotation": "remind"} | dict(form or {})
    rotation = "".join(
        f'<option value="{m}"{" selected" if values.get("rotation") == m else ""}>{t}</option>'
        for m, t in (("remind", "reminders (remind)"), ("auto", "automatic (auto)"))
    )
    fields = {k: esc(values.get(k)) for k in ("name", "owner", "duration", "routes", "scopes")}
    body = CREATE.substitute(
        fields,
        error=error_box(error),
        hidden=hidden(csrf),
        rotation=rotation,
        delivery_secret_arn=esc(values.get("delivery_secret_arn")),
    )
    return page("Create a token", body, endpoint=endpoint, current="/new")


# -- Errors ----------------------------------------------------------------------------------


def error_page(
    status: int, message: str, *, endpoint: str, identity: str | None = None, code: str = ""
) -> str:
    said = f"{message} ({code}, HTTP {status})" if code else message
    body = error_box(said)
    if identity is not None:
        body += (
            '<p id="identity">The console signs its calls as '
            f"<code>{esc(identity)}</code>. Give that identity <code>execute-api:Invoke</code> "
            "on the admin API, or start the console with other credentials.</p>"
        )
    body += '<p><a href="/">Back to the tokens</a></p>'
    return page("Error", body, endpoint=endpoint)


def refused_page(reason: str) -> str:
    """Refusals before the session is known (no token, foreign Host or Origin): no layout,
    no link, nothing from the API."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused · Gatekey '
        f"console</title></head><body><main><h1>Refused</h1><p>{esc(reason)}</p></main></body></html>"
    )
