"""Example API behind Gatekey: greets the caller the Gatekey authorizer let through.

REST APIs (payload 1.0) put the authorizer's answer in requestContext.authorizer: its
principalId and its context keys (client_id, name, scopes, auth_method, expires_at). HTTP APIs
(payload 2.0) put the context under requestContext.authorizer.lambda.
"""

from __future__ import annotations

import json
from typing import Any


def caller(event: dict[str, Any]) -> str | None:
    """The Client ID the authorizer allowed, or None if no authorizer ran."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    context = authorizer.get("lambda") or authorizer
    return context.get("client_id") or authorizer.get("principalId")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps({"hello": caller(event)}),
    }
