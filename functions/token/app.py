"""Token endpoint: POST /oauth2/token, POST /oauth2/introspect (RFC 7662), POST /oauth2/revoke
(RFC 7009), GET /.well-known/jwks.json, and the metadata at both
/.well-known/oauth-authorization-server (RFC 8414) and /.well-known/openid-configuration.

A thin adapter: parse the API Gateway event, call gatekey.oauth, shape the HTTP answer.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import wiring
from gatekey.config import Config
from gatekey.dpop import request_url, single_proof_header
from gatekey.errors import GatekeyError, InvalidDPoPProof
from gatekey.introspection import MAX_TOKEN_FORM_BYTES
from gatekey.oauth import (
    INTROSPECTION_PATH,
    JWKS_PATH,
    OAUTH_METADATA_PATH,
    OPENID_CONFIGURATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    authorization_server_metadata,
    oauth_error,
    openid_configuration,
    parse_form,
)
from gatekey.wiring import clock

logger = Logger()
metrics = Metrics()
config = Config.from_env()


def _last_seen_failed(_: GatekeyError) -> None:
    # The alarm's metric (LastSeenWriteFailuresAlarm), as the authorizer counts its own.
    with single_metric(
        name="LastSeenWriteFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=config.metrics_namespace,
    ) as metric:
        metric.add_dimension("function", "token")


endpoint, signing_keys, token_status = wiring.token(config, last_seen_failed=_last_seen_failed)
app = APIGatewayRestResolver()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issuer() -> str:
    """The configured issuer, or this API's own base URL (its stage is part of the path)."""
    if config.issuer:
        return config.issuer
    context = app.current_event.request_context
    return f"https://{context.domain_name}/{context.stage}"


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response[str]:
    return Response(status, "application/json", json.dumps(body), headers)


@app.post(TOKEN_PATH)
def token() -> Response[str]:
    event = app.current_event
    # RFC 9449 §4.3 item 1: one DPoP header. A REST event's `headers` keeps only the last.
    single_proof_header(event.raw_event, None)
    issued, client_id = endpoint.exchange(
        content_type=event.headers.get("content-type"),
        form=parse_form(event.body, base64_encoded=bool(event.is_base64_encoded)),
        headers={name.lower(): value for name, value in event.headers.items()},
        issuer=issuer(),
        source_ip=event.request_context.identity.source_ip,
        request_url=_request_url(),
    )
    logger.info("access token issued", client_id=client_id, token_type=issued.token_type)
    metrics.add_metric("AccessTokensIssued", MetricUnit.Count, 1)
    body = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": " ".join(issued.scopes),
    }
    return _json(200, body, _with_nonce(NO_STORE))


def _request_url() -> str | None:
    """The URL this request was received at, for a DPoP proof's htu (gatekey.dpop)."""
    context = app.current_event.request_context
    if not context.domain_name or not context.path:
        return None
    return request_url(context.domain_name, context.path)


def _with_nonce(headers: dict[str, str]) -> dict[str, str]:
    """RFC 9449 §8: a fresh server nonce for the client's next proof, when nonces are on."""
    nonce = endpoint.dpop_nonce(clock())
    return headers if nonce is None else {**headers, "DPoP-Nonce": nonce}


def _token_form() -> dict[str, Any]:
    """What the introspection and revocation handlers hand the core, with a form that may
    hold an access token (MAX_TOKEN_FORM_BYTES)."""
    event = app.current_event
    return {
        "content_type": event.headers.get("content-type"),
        "form": parse_form(
            event.body,
            base64_encoded=bool(event.is_base64_encoded),
            max_bytes=MAX_TOKEN_FORM_BYTES,
        ),
        "headers": {name.lower(): value for name, value in event.headers.items()},
        "issuer": issuer(),
        "source_ip": event.request_context.identity.source_ip,
    }


@app.post(INTROSPECTION_PATH)
def introspect() -> Response[str]:
    answer, caller = token_status.introspect(**_token_form())
    # Never the token: the caller, and whether it was active.
    logger.info("token introspected", client_id=caller, active=answer["active"])
    metrics.add_metric("TokensIntrospected", MetricUnit.Count, 1)
    return _json(200, dict(answer), NO_STORE)


@app.post(REVOCATION_PATH)
def revoke() -> Response[str]:
    revoked, caller = token_status.revoke(**_token_form())
    metrics.add_metric("RevocationRequests", MetricUnit.Count, 1)
    if revoked is None:
        logger.info("revocation changed nothing", client_id=caller)
    else:
        # The jti names the token in the audit trail; the token itself is never logged.
        logger.info(
            "access token revoked",
            client_id=caller,
            revoked=len(revoked.revocations.ids),
            watermark_moved=revoked.watermark_moved,
        )
        metrics.add_metric("AccessTokensRevoked", MetricUnit.Count, 1)
        if revoked.watermark_moved:
            metrics.add_metric("RevocationWatermarksMoved", MetricUnit.Count, 1)
    return Response(200, "application/json", "{}", NO_STORE)


@app.get(JWKS_PATH)
def jwks() -> Response[str]:
    metrics.add_metric("JwksRequests", MetricUnit.Count, 1)
    keys = [key.jwk() for key in signing_keys.published(clock())]
    return _json(200, {"keys": keys}, {"Cache-Control": "max-age=300"})


@app.get(OAUTH_METADATA_PATH)
def metadata() -> Response[str]:
    metrics.add_metric("MetadataRequests", MetricUnit.Count, 1)
    return _json(200, authorization_server_metadata(issuer()), {"Cache-Control": "max-age=3600"})


@app.get(OPENID_CONFIGURATION_PATH)
def openid_metadata() -> Response[str]:
    metrics.add_metric("MetadataRequests", MetricUnit.Count, 1)
    return _json(200, openid_configuration(issuer()), {"Cache-Control": "max-age=3600"})


@app.exception_handler(GatekeyError)  # type: ignore[untyped-decorator]
def handle_error(exc: GatekeyError) -> Response[str]:
    answer = oauth_error(exc)
    if answer.status == 503:  # lost races of concurrent revocations: the client retries
        logger.warning("token request not served", reason=exc.reason, detail=exc.message)
    elif answer.status >= 500:
        logger.error("token endpoint failed", reason=exc.reason, detail=exc.message)
    else:
        logger.info("token request refused", reason=exc.reason, error=answer.error)
    metrics.add_metric(f"TokenRequestsRefused.{answer.error}", MetricUnit.Count, 1)
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidDPoPProof):
        headers = _with_nonce(headers)
    if answer.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="gatekey"'
    body = {"error": answer.error, "error_description": answer.description}
    return _json(answer.status, body, headers)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
