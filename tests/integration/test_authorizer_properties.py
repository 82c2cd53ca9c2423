"""Property: for any event the function is handed, arbitrary or a damaged authorizer event, no
Allow and no exception but Unauthorized (dependencies healthy). The properties of arbitrary
headers (raw bytes, deep nesting, access tokens naming a published key) are the decision's,
and run on the in-memory store: tests/unit/test_authorizer_decisions.py."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.harness import AuthorizerHarness, assert_not_allowed, authorizer_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


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
