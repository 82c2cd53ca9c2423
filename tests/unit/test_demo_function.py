"""The demo function answers with what API Gateway told it about the caller, for each API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.events import load_handler

CONTEXT = {
    "client_id": "gk_1",
    "name": "bot",
    "scopes": "read",
    "auth_method": "gatekey_headers",
    "expires_at": "never",
}


@pytest.mark.parametrize(
    ("authorizer", "expected"),
    [
        ({**CONTEXT, "principalId": "gk_1"}, {**CONTEXT, "principal_id": "gk_1"}),  # REST
        ({"lambda": CONTEXT}, {**CONTEXT, "principal_id": None}),  # HTTP API, simple response
        (
            {"jwt": {"claims": {"client_id": "gk_1", "scope": "read", "exp": "9", "sub": "gk_1"}}},
            {
                "client_id": "gk_1",
                "name": None,
                "scopes": "read",
                "auth_method": "jwt_authorizer",
                "expires_at": "9",
                "principal_id": "gk_1",
            },
        ),
    ],
)
def test_the_demo_shows_the_caller_of_each_kind_of_api(
    authorizer: dict[str, Any], expected: dict[str, Any]
) -> None:
    demo = load_handler("demo")
    answer = demo.lambda_handler({"requestContext": {"authorizer": authorizer}}, None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == expected
