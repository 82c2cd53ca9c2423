"""API Gateway's evaluation of an authorizer's policy, for the local gateway and the tests (the
shipped layer only writes policies; API Gateway evaluates them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatekey.apigw import arn_matches


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """Evaluate an authorizer's policy for one method ARN as API Gateway does: an explicit
    Deny wins, then an Allow, else no."""
    allowed = False
    for statement in policy.get("Statement", []):
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(arn_matches(r, method_arn) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed
