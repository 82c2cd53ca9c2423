"""Example API behind API Gateway's JWT authorizer: greets the caller whose Gatekey access token
it accepted. HTTP APIs (payload 2.0) put the verified token's claims under
requestContext.authorizer.jwt.claims, and the scopes under .jwt.scopes."""

from __future__ import annotations

import json
from typing import Any


def claims(event: dict[str, Any]) -> dict[str, Any]:
    """The verified token's claims, or {} if no JWT authorizer ran."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return dict((authorizer.get("jwt") or {}).get("claims") or {})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    verified = claims(event)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps({"hello": verified.get("client_id"), "scope": verified.get("scope")}),
    }
