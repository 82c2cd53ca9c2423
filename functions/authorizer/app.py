"""Lambda authorizer for REST (REQUEST and TOKEN) and HTTP APIs: a thin adapter of
gatekey.authorizer. Every failure other than a decision propagates, so API Gateway answers 500:
the authorizer fails closed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey.authorizer import Authorizer, AuthorizerSettings, parse_event
from gatekey.config import Config
from gatekey.errors import GatekeyError, MissingCredentials
from gatekey.hashing import load_hasher
from gatekey.keyring import public_keys_from_config
from gatekey.store import DynamoDBTokenStore

logger = Logger()
metrics = Metrics()
config = Config.from_env()
store = DynamoDBTokenStore.from_config(config)
# last_seen_at is written off the answer's path; a frozen container resumes it next time.
background = ThreadPoolExecutor(max_workers=1)
authorizer = Authorizer(
    store=store,
    hasher=load_hasher(config.pepper_secret_arn, boto3.client("secretsmanager")),
    public_keys=public_keys_from_config(
        config,
        dynamodb=store.client,
        kms=boto3.client("kms"),
        secretsmanager=boto3.client("secretsmanager"),
        clock=time.time,
    ),
    settings=AuthorizerSettings(
        accepted=config.accepted_credentials,
        access_json_header=config.access_json_header,
        strict=config.strict_mode,
        issuer=config.issuer,
        audience=config.access_token_audience,
        status_cache_ttl=config.status_cache_ttl_seconds,
        last_seen_interval=config.last_seen_interval_seconds,
        http_api_simple_responses=config.http_api_simple_responses,
    ),
    clock=time.time,
    background=background,
)


def _count(name: str, reason: str, auth_method: str | None) -> None:
    metrics.add_dimension("reason", reason)
    metrics.add_dimension("auth_method", auth_method or "none")
    metrics.add_metric(name, MetricUnit.Count, 1)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_event(event)
        decision = authorizer.decide(request)
    except MissingCredentials as exc:
        _count("Unauthorized", exc.reason, None)
        raise Exception("Unauthorized") from None  # API Gateway answers 401 to this exact message
    except GatekeyError as exc:
        _count("Failed", exc.reason, None)
        logger.error("authorizer failed closed", reason=exc.reason, detail=exc.message)
        raise
    client_id = decision.token.client_id if decision.token else None
    _count("Allowed" if decision.allowed else "Denied", decision.reason, decision.auth_method)
    logger.info(
        "allowed" if decision.allowed else "denied",
        client_id=client_id,
        reason=decision.reason,
        auth_method=decision.auth_method,
    )
    try:
        return authorizer.respond(request, decision)
    except MissingCredentials:  # a denial in strict mode
        raise Exception("Unauthorized") from None
