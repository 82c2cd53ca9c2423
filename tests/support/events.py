"""What Lambda hands a function: sample events, a context, and the handler module itself."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from support.aws import acting_as
from support.constants import ACCOUNT_ID, EVENTS, FUNCTIONS, REGION


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, as API Gateway or the scheduler would send it."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@dataclass
class FakeLambdaContext:
    function_name: str = "gatekey-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:gatekey-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh, as a cold start would.

    Each handler file is named app.py, so each gets its own module name; set the environment
    and start moto before calling this, since handlers build their clients at import. Every AWS
    call the handler makes, at import or in `lambda_handler`, is checked against its role's
    policy in template.yaml when the test ends (`least_privilege`).
    """
    path = FUNCTIONS / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"gatekey_function_{function}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with acting_as(function):
        spec.loader.exec_module(module)
    handler = module.lambda_handler

    def lambda_handler(event: Any, context: Any) -> Any:
        with acting_as(function):
            return handler(event, context)

    setattr(module, "lambda_handler", lambda_handler)  # noqa: B010 (a module has no such attribute to mypy)
    return module
