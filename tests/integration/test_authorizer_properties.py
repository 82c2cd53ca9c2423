"""Property: for any event and any headers, no Allow without valid credentials, and no
exception but Unauthorized (dependencies healthy): raw bytes as API Gateway hands them over
(latin-1), deep nesting, and access tokens that name a published key included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekey.signing import b64url
from gatekey_local.policy import policy_allows
from support.constants import ARN
from support.harness import AuthorizerHarness, Unauthorized, authorizer_event

NAMES = [
    "Gatekey-Client-Id",
    "gatekey-client-secret",
    "CF-Access-Client-Id",
    "cf-access-client-secret",
    "Authorization",
    "authorization",
    "Host",
]
PREFIXES = ["", "Bearer ", "Basic ", "bearer ", "gk_", "gks_", '{"cf-access-client-id": "', "eyJ"]

# Header values as API Gateway delivers them: any bytes, read as latin-1, or any text.
raw = st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
values = st.builds(
    lambda p, t: p + t, st.sampled_from(PREFIXES), st.one_of(st.text(max_size=120), raw)
)
headers = st.dictionaries(
    st.one_of(st.sampled_from(NAMES), st.text(max_size=20)), values, max_size=6
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def assert_not_allowed(authorizer: AuthorizerHarness, event: Any) -> None:
    try:
        response = authorizer.invoke(event)
    except Unauthorized:
        return
    if "isAuthorized" in response:
        assert response["isAuthorized"] is False
        return
    for method in ("GET", "POST", "DELETE"):
        assert not policy_allows(response["policyDocument"], f"{ARN}/{method}/items/42")
    assert "context" not in response


SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(shape=st.sampled_from(["rest_request", "rest_token", "http"]), sent=headers)
def test_arbitrary_headers_never_allow(
    authorizer: AuthorizerHarness, shape: str, sent: dict[str, str]
) -> None:
    token = next(iter(sent.values()), None) if shape == "rest_token" else None
    event = authorizer_event(shape, sent, method="GET", path="/items/42", token=token)
    assert_not_allowed(authorizer, event)


@SETTINGS
@given(event=json_values)
def test_arbitrary_events_never_allow(authorizer: AuthorizerHarness, event: Any) -> None:
    assert_not_allowed(authorizer, event)


@SETTINGS
@given(
    base=st.sampled_from(["rest_request", "rest_token", "http"]),
    mutation=st.dictionaries(
        st.sampled_from(
            ["headers", "methodArn", "routeArn", "type", "version", "authorizationToken"]
        ),
        json_values,
        max_size=3,
    ),
)
def test_arbitrarily_damaged_events_never_allow(
    authorizer: AuthorizerHarness, base: str, mutation: dict[str, Any]
) -> None:
    bot_headers = {"Authorization": "Bearer not-a-token"}
    event = authorizer_event(base, bot_headers, method="GET", path="/items/42")
    assert_not_allowed(authorizer, {**event, **mutation})


def nested(depth: int, opener: str) -> str:
    """A JSON value `depth` levels deep: [[[...]]] or {"a":{"a":...0}}."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


@SETTINGS
@given(
    depth=st.integers(min_value=0, max_value=3_000),
    opener=st.sampled_from(["[", "{"]),
    place=st.sampled_from(["access_json", "jwt_header", "jwt_claims"]),
)
def test_deep_nesting_anywhere_is_a_refusal(
    authorizer: AuthorizerHarness, depth: int, opener: str, place: str
) -> None:
    document = nested(depth, opener)
    if place == "access_json":
        sent = {"Authorization": '{"cf-access-client-id": ' + document + "}"}
    else:
        kid = authorizer.signer.public_key.kid
        header = {"typ": "at+jwt", "alg": "RS256", "kid": kid}
        head = b64url(json.dumps(header).encode())
        if place == "jwt_header":
            head = b64url(('{"typ":"at+jwt","kid":' + document + "}").encode())
        sent = {"Authorization": f"Bearer {head}.{b64url(document.encode())}.AAAA"}
    assert_not_allowed(authorizer, authorizer_event("rest_request", sent, method="GET", path="/"))


@SETTINGS
@given(body=raw, signature=raw)
def test_odd_bytes_after_a_published_key_id_are_a_refusal(
    authorizer: AuthorizerHarness, body: str, signature: str
) -> None:
    header = {"typ": "at+jwt", "alg": "RS256", "kid": authorizer.signer.public_key.kid}
    token = f"{b64url(json.dumps(header).encode())}.{body}.{signature}"
    for shape in ("rest_request", "rest_token", "http"):
        sent = {"Authorization": f"Bearer {token}"}
        assert_not_allowed(
            authorizer, authorizer_event(shape, sent, method="GET", path="/items/42")
        )
