"""Access's follow-up forms through the authorizer's handler: a Gatekey access token sent in
the cf-access-token header or the CF_Authorization cookie is verified as Bearer is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gatekey_local.policy import policy_allows
from support.constants import ARN
from support.harness import AuthorizerHarness, Unauthorized, authorizer_event


def allowed(response: dict[str, Any]) -> bool:
    if "isAuthorized" in response:
        return bool(response["isAuthorized"])
    return policy_allows(response["policyDocument"], f"{ARN}/GET/items/42")


def with_cookie(authorizer: AuthorizerHarness, shape: str, cookie: str) -> dict[str, Any]:
    """A request carrying `cookie` as API Gateway delivers it: REST in the Cookie header,
    HTTP APIs (payload 2.0) in a list of their own."""
    if shape == "rest_request":
        return authorizer.call(shape, {"Cookie": cookie})
    event = authorizer_event(shape, {}, method="GET", path="/items/42")
    event["cookies"] = [part.strip() for part in cookie.split(";")]
    return authorizer.invoke(event)


@pytest.mark.parametrize("shape", ["rest_request", "http"])
def test_an_access_token_in_cf_access_token_is_allowed_as_its_form(
    make_authorizer: Callable[..., AuthorizerHarness], shape: str
) -> None:
    authorizer = make_authorizer()
    bot = authorizer.bot(scopes=("read",))
    response = authorizer.call(shape, {"cf-access-token": authorizer.jwt(bot, scopes=("read",))})
    assert allowed(response)
    assert response["context"]["auth_method"] == "access_token_header"
    assert response["context"]["client_id"] == bot.client_id


@pytest.mark.parametrize("shape", ["rest_request", "http"])
def test_the_cookie_is_allowed_only_when_switched_on(
    make_authorizer: Callable[..., AuthorizerHarness], shape: str
) -> None:
    off = make_authorizer()
    bot = off.bot()
    cookie = f"session=1; CF_Authorization={off.jwt(bot)}"
    with pytest.raises(Unauthorized):  # off by default: no credentials in an accepted form
        with_cookie(off, shape, cookie)
    on = make_authorizer(ACCEPT_ACCESS_COOKIE="true")
    response = with_cookie(on, shape, cookie)
    assert allowed(response)
    assert response["context"]["auth_method"] == "access_cookie"


def test_the_access_forms_refuse_what_bearer_refuses(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer(ACCEPT_ACCESS_COOKIE="true")
    bot = authorizer.bot()
    expired = authorizer.jwt(bot, lifetime=60)
    authorizer.clock[0] += 3600
    for headers in ({"cf-access-token": expired}, {"Cookie": f"CF_Authorization={expired}"}):
        response = authorizer.call("rest_request", headers)
        assert not allowed(response)
    for headers in ({"cf-access-token": "not-a-jwt"}, {"Cookie": "CF_Authorization=x.y.z"}):
        assert not allowed(authorizer.call("rest_request", headers))


def test_switched_off_the_header_is_no_credential(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer(ACCEPT_ACCESS_TOKEN_HEADER="false")
    bot = authorizer.bot()
    with pytest.raises(Unauthorized):
        authorizer.call("rest_request", {"cf-access-token": authorizer.jwt(bot)})
