"""Demo protected route: answers with what API Gateway passed in about the caller: the Gatekey
authorizer's context (REST, or an HTTP API's `authorizer.lambda`), or the claims of the access
token an HTTP API's built-in JWT authorizer verified (`authorizer.jwt`)."""

from __future__ import annotations

import json
from typing import Any

CONTEXT_KEYS = ("client_id", "name", "scopes", "auth_method", "expires_at")


def _caller(authorizer: dict[str, Any]) -> dict[str, Any]:
    if "jwt" in authorizer:  # HTTP API, JWT authorizer: the token's claims
        claims = authorizer["jwt"].get("claims") or {}
        return {
            "client_id": claims.get("client_id"),
            "name": None,
            "scopes": claims.get("scope"),
            "auth_method": "jwt_authorizer",
            "expires_at": claims.get("exp"),
            "principal_id": claims.get("sub"),
        }
    if "lambda" in authorizer:  # HTTP API, Lambda authorizer: its context
        context = authorizer["lambda"] or {}
        body = {key: context.get(key) for key in CONTEXT_KEYS}
        return body | {"principal_id": context.get("principalId")}
    body = {key: authorizer.get(key) for key in CONTEXT_KEYS}
    return body | {"principal_id": authorizer.get("principalId")}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(_caller(authorizer)),
    }
