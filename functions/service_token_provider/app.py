"""CloudFormation custom resource provider: `Custom::GatekeyServiceToken` (gatekey.token_resource).

CloudFormation invokes it asynchronously; every request is answered on its ResponseURL, a
failure included. The provider is built at the first request, not at import: a cold start that
fails (a bad setting, the pepper unreadable) is then a FAILED answer with its reason, not an
initialization error that leaves the stack waiting for an hour. An answer that cannot be sent
fails the invocation, and Lambda's retries carry the request out again (idempotently).
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import wiring
from gatekey.aws.cfn_response import send_response
from gatekey.config import Config
from gatekey.token_resource import ServiceTokenResource, respond

logger = Logger()
# botocore logs each request's parameters at DEBUG, and PutSecretValue's carry the secret
# delivered: whatever the log level, that logger stays at INFO.
logging.getLogger("botocore.endpoint").setLevel(logging.INFO)
_built: dict[str, ServiceTokenResource] = {}


def resource(account: str) -> ServiceTokenResource:
    if account not in _built:
        _built[account] = wiring.service_token_resource(Config.from_env(), account=account)
    return _built[account]


# Never the event, whatever POWERTOOLS_LOGGER_LOG_EVENT says: its ResponseURL is presigned.
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    account = context.invoked_function_arn.split(":")[4]
    respond(
        event,
        resource=lambda: resource(account),
        send=send_response,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
