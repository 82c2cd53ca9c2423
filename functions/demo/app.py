"""Demo protected route: answers with the Gatekey authorizer context API Gateway passed in."""

from __future__ import annotations

import json
from typing import Any

CONTEXT_KEYS = ("client_id", "name", "scopes", "auth_method", "expires_at")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    body = {key: authorizer.get(key) for key in CONTEXT_KEYS}
    body["principal_id"] = authorizer.get("principalId")
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }
