"""API Gateway as the home of metered tokens' API keys (gatekey.usage_plans.ApiKeys): one key
per token, named after the stack and the Client ID, put on the token's usage plan.

IAM (template.yaml, AdminFunction): POST on /apikeys, PATCH and DELETE on /apikeys/*, POST on
/usageplans/*/keys and DELETE on /usageplans/*/keys/*, in the stack's region.
"""

from __future__ import annotations

from typing import Any, Final

from gatekey.aws.errors import translated
from gatekey.errors import GatekeyError, ValidationError
from gatekey.usage_plans import ApiKey

# The prefix of every key this stack makes: `aws apigateway get-api-keys --name-query
# gatekey-<stack>-` lists them (docs/operations.md, "An API key left behind").
KEY_NAME_PREFIX: Final = "gatekey-"


def key_name(stack: str, client_id: str) -> str:
    return f"{KEY_NAME_PREFIX}{stack}-{client_id}"


def _gone(_: str) -> GatekeyError | None:
    return None  # already deleted, or not on the plan: what the call was for


def _unknown_plan(code: str) -> GatekeyError:
    return ValidationError(
        "usage_plan",
        f"API Gateway does not know this plan ({code}): check the stack's UsagePlans parameter",
    )


class ApiGatewayKeys:
    def __init__(self, client: Any, stack: str) -> None:
        self._client = client  # an API Gateway client (no stubs pinned for it)
        self._stack = stack

    def create(self, client_id: str, *, enabled: bool) -> ApiKey:
        """A new key; API Gateway makes its value (random, 40 characters)."""
        with translated("cannot create the API key"):
            answer = self._client.create_api_key(
                name=key_name(self._stack, client_id),
                description=(
                    f"Gatekey ({self._stack}) usage-plan key of service token {client_id}; "
                    "made, moved and deleted by Gatekey"
                ),
                enabled=enabled,
                customerId=client_id,
            )
        return ApiKey(answer["id"], answer["value"])

    def set_enabled(self, key_id: str, enabled: bool) -> None:
        with translated("cannot change the API key"):
            self._client.update_api_key(
                apiKey=key_id,
                patchOperations=[
                    {"op": "replace", "path": "/enabled", "value": str(enabled).lower()}
                ],
            )

    def delete(self, key_id: str) -> None:
        with translated("cannot delete the API key", meaning={"NotFoundException": _gone}):
            self._client.delete_api_key(apiKey=key_id)

    def associate(self, plan_id: str, key_id: str) -> None:
        with translated(
            "cannot put the API key on its usage plan",
            meaning={"NotFoundException": _unknown_plan},
        ):
            self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")

    def dissociate(self, plan_id: str, key_id: str) -> None:
        with translated(
            "cannot take the API key off its usage plan", meaning={"NotFoundException": _gone}
        ):
            self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
