"""Attack review: inputs an outside client controls, driven through the real Authorizer on the
in-memory store (tests/support/harness.py). Each test names what it attacks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from gatekey.errors import MissingCredentials
from gatekey.hashing import Hasher
from support.harness import (
    LocalAuthorizer,
    authorizer_event,
    credential_headers,
    local_authorizer,
)


@pytest.fixture
def make_authorizer(unit_hasher: Hasher) -> Callable[..., LocalAuthorizer]:
    def build(**environment: str) -> LocalAuthorizer:
        return local_authorizer(unit_hasher, environment)

    return build


def _decide(authorizer: LocalAuthorizer, event: dict[str, Any]) -> str:
    """'allowed', a denial's reason or 'unauthorized'; anything else raised is a 500."""
    try:
        outcome = authorizer.authorizer.authorize(event)
    except MissingCredentials:
        return "unauthorized"
    return "allowed" if outcome.allowed else outcome.reason


GARBAGE = [
    "",
    " ",
    "\x00",
    "\udc80",
    "é",
    "DPoP",
    "DPoP ",
    "DPoP \udc80",
    "Bearer \udc80",
    "Basic \udc80",
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic " + base64.b64encode(b"a%ED%A0%80:b").decode(),
    "Basic " + base64.b64encode(b"0123456789abcdef0123456789abcdef.access:%FF").decode(),
    "Basic " + base64.b64encode(b"abcdefghijklmnopqrstuvwxyz:%00").decode(),
    "Basic "
    + base64.b64encode(
        ("abcdefghijklmnopqrstuvwxyz:" + "\udc80").encode("utf-8", "surrogatepass")
    ).decode(),
    '{"cf-access-client-id": "abcdefghijklmnopqrstuvwxyz", "cf-access-client-secret": "\\udc80"}',
    '{"cf-access-client-id": "\\udc80", "cf-access-client-secret": 1}',
    json.dumps(
        {
            "cf-access-client-id": "0123456789abcdef0123456789abcdef.access",
            "cf-access-client-secret": ["x"],
        }
    ),
    "a.b.c",
    "DPoP a.b.c",
    "Bearer " + "A" * 9000,
]


@pytest.mark.parametrize("shape", ["rest_request", "http", "rest_token"])
@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "cf-access-token",
        "Cookie",
        "DPoP",
        "cf-access-client-id",
        "Gatekey-Client-Secret",
        "cf-access-jwt-assertion",
    ],
)
def test_garbage_credentials_never_a_500(
    make_authorizer: Callable[..., LocalAuthorizer], shape: str, value: str, header: str
) -> None:
    authorizer = make_authorizer(ACCEPT_ACCESS_COOKIE="true")
    bot = authorizer.bot()
    cookie = "CF_Authorization=" + value if header == "Cookie" else None
    headers = {header: cookie or value}
    for extra in ({}, {"DPoP": value}, {"Authorization": "DPoP " + authorizer.jwt(bot)}):
        event = authorizer_event(shape, {**extra, **headers}, method="GET", path="/items/42")
        assert _decide(authorizer, event) != "allowed"


# -- DPoP: a bound token with garbage where the event says which URL was called ----------------

import copy  # noqa: E402

from gatekey.access_tokens import issue_access_token  # noqa: E402
from support.constants import ISSUER  # noqa: E402


def _bound_jwt(authorizer: LocalAuthorizer, jkt: str = "x" * 43) -> str:
    bot = authorizer.bot()
    return issue_access_token(
        bot.token,
        authorizer.signer,
        issuer=ISSUER,
        audience="gatekey",
        lifetime=3600,
        scopes=(),
        now=int(authorizer.clock[0]),
        jkt=jkt,
    ).access_token


ODD = [
    "\udc80",
    "é",
    "a b",
    "[",
    "[::1",
    "h:99999",
    "h:-1",
    "::",
    "%zz",
    "",
    None,
    5,
    ["x"],
    "/\udc80",
    "/../..",
    "x" * 20000,
    "host]x",
    "[v1.x]",
    "\x00",
]


@pytest.mark.parametrize("shape", ["rest_request", "http"])
@pytest.mark.parametrize("field", ["domainName", "path", "method", "host_header", "proof", "multi"])
@pytest.mark.parametrize("value", ODD)
def test_dpop_event_garbage_never_a_500(
    make_authorizer: Callable[..., LocalAuthorizer], shape: str, field: str, value: Any
) -> None:
    authorizer = make_authorizer()
    jwt = _bound_jwt(authorizer)
    event = authorizer_event(
        shape, {"Authorization": f"DPoP {jwt}", "DPoP": "a.b.c"}, method="GET", path="/items/42"
    )
    event = copy.deepcopy(event)
    context = event.setdefault("requestContext", {})
    if field == "domainName":
        context["domainName"] = value
    elif field == "path":
        context["path"] = value
        event["rawPath"] = value
    elif field == "method":
        context.setdefault("http", {})["method"] = value
        event["httpMethod"] = value
    elif field == "host_header":
        context.pop("domainName", None)
        event["headers"]["host"] = value
    elif field == "proof":
        if isinstance(value, str):
            event["headers"]["dpop"] = value
    else:
        event["multiValueHeaders"] = {
            "DPoP": value,
            value if isinstance(value, str) else "x": value,
        }
    assert _decide(authorizer, event) != "allowed"


# -- allows that must not be had: bindings, the answer memory, bound tokens as bearer ----------


def _rest(
    headers: dict[str, str], *, ip: str = "10.0.0.5", api: str = "a1b2c3d4e5"
) -> dict[str, Any]:
    event = authorizer_event("rest_request", headers, method="GET", path="/items/42")
    event["methodArn"] = event["methodArn"].replace("a1b2c3d4e5", api)
    event["requestContext"].setdefault("identity", {})["sourceIp"] = ip
    return event


@pytest.mark.parametrize("form", ["gatekey_headers", "basic", "bearer"])
def test_a_remembered_allow_never_reaches_another_address_or_api(
    make_authorizer: Callable[..., LocalAuthorizer], form: str
) -> None:
    authorizer = make_authorizer()
    bot = authorizer.bot(bound_cidrs=("10.0.0.0/24",), bound_apis=("a1b2c3d4e5/v1",))
    headers = credential_headers(form, bot, authorizer.jwt(bot))
    assert _decide(authorizer, _rest(headers)) == "allowed"
    assert _decide(authorizer, _rest(headers)) == "allowed"  # from memory
    for ip in ("6.6.6.6", "::ffff:6.6.6.6", "10.0.0.5 ", "", "10.0.1.5"):
        assert _decide(authorizer, _rest(headers, ip=ip)) != "allowed", ip
    assert _decide(authorizer, _rest(headers, api="zzzzzzzzzz")) != "allowed"
    assert _decide(authorizer, _rest(headers)) == "allowed"


def test_a_dpop_bound_token_is_refused_in_every_bearer_form(
    make_authorizer: Callable[..., LocalAuthorizer],
) -> None:
    authorizer = make_authorizer(ACCEPT_ACCESS_COOKIE="true")
    jwt = _bound_jwt(authorizer)
    for headers in (
        {"Authorization": f"Bearer {jwt}"},
        {"Authorization": f"bearer   {jwt}  "},
        {"cf-access-token": jwt},
        {"Cookie": f"a=b; CF_Authorization={jwt}"},
        {"Authorization": f" DPoP {jwt}"},
        {"Authorization": f"DPOP {jwt}", "DPoP": ""},
    ):
        for shape in ("rest_request", "http", "rest_token"):
            event = authorizer_event(shape, headers, method="GET", path="/items/42")
            assert _decide(authorizer, event) != "allowed", (headers, shape)
