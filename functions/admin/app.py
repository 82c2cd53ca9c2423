"""Admin API (AWS_IAM auth): the service-token lifecycle over HTTP. Routes are thin: parse,
call gatekey.admin, shape the answer; validation and OpenAPI come from Powertools."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from gatekey import wiring
from gatekey.admin import Actor, parse_grace
from gatekey.admin_api import (
    AccessTokenRevokedOut,
    CreateTokenRequest,
    ErrorOut,
    EventOut,
    EventPage,
    ImportTokenRequest,
    RefreshRequest,
    RevokeAccessTokenRequest,
    RotateRequest,
    TokenOut,
    TokenPage,
    TokenWithSecret,
    UpdateTokenRequest,
    duration_or_none,
    epoch,
    status_of,
)
from gatekey.config import Config
from gatekey.credentials import ClientSecret
from gatekey.durations import parse_duration
from gatekey.errors import GatekeyError
from gatekey.model import MAX_NAME_LENGTH, MAX_OWNER_LENGTH, TokenStatus, rfc3339

logger = Logger()
# Powertools' resolver logs each parsed request body at DEBUG; a secret pasted into the wrong
# field must not reach the logs whatever the log level, so it stays at INFO.
logging.getLogger("aws_lambda_powertools.event_handler").setLevel(logging.INFO)
config = Config.from_env()
admin = wiring.admin(config)
app = APIGatewayRestResolver(enable_validation=True)
BASE = "/admin/service-tokens"


def actor() -> Actor:
    identity = app.current_event.request_context.identity
    return Actor(identity.user_arn or identity.caller or "unknown", identity.source_ip)


def with_secret(issued: Any) -> TokenWithSecret:
    token = TokenOut.of(issued.token).model_dump()
    return TokenWithSecret(**token, client_secret=issued.secret.reveal())


def fields(body: CreateTokenRequest) -> dict[str, Any]:
    """What a person sets on a new token, as TokenAdmin takes it (create and import)."""
    return {
        "name": body.name,
        "duration": parse_duration(body.duration),
        "routes": tuple(body.routes),
        "scopes": tuple(body.scopes),
        "owner": body.owner,
        "rotation": body.rotation.policy(),
        "bound_cidrs": tuple(body.bound_cidrs),
        "bound_apis": tuple(body.bound_apis),
        "usage_plan": body.usage_plan,
        "dpop_required": body.dpop_required,
    }


@app.post(BASE)
def create(body: Annotated[CreateTokenRequest, Body()]) -> Response[TokenWithSecret]:
    issued = admin.create(actor(), **fields(body))
    logger.info("service token created", client_id=issued.token.client_id)
    return Response(201, "application/json", with_secret(issued), {"Cache-Control": "no-store"})


@app.post(f"{BASE}/import")
def import_token(body: Annotated[ImportTokenRequest, Body()]) -> Response[TokenOut]:
    token = admin.import_token(
        actor(),
        client_id=body.client_id,
        secret=ClientSecret(body.client_secret.get_secret_value()),
        **fields(body),
    )
    logger.info("service token imported", client_id=token.client_id)
    # The secret was the caller's own: it is never answered.
    return Response(201, "application/json", TokenOut.of(token), {"Cache-Control": "no-store"})


@app.get(BASE)
def list_tokens(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
    name: Annotated[str | None, Query(max_length=MAX_NAME_LENGTH)] = None,
    status: Annotated[TokenStatus | None, Query()] = None,
    name_prefix: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH)] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=MAX_OWNER_LENGTH)] = None,
) -> TokenPage:
    page = admin.list(
        limit=limit,
        next_token=next_token,
        name=name,
        status=status,
        name_prefix=name_prefix,
        owner=owner,
    )
    return TokenPage(items=[TokenOut.of(t) for t in page.items], next_token=page.next_token)


@app.get(f"{BASE}/<client_id>")
def show(client_id: str) -> TokenOut:
    return TokenOut.of(admin.get(client_id))


@app.patch(f"{BASE}/<client_id>")
def update(client_id: str, body: Annotated[UpdateTokenRequest, Body()]) -> TokenOut:
    given = body.model_fields_set
    token = admin.update(
        actor(),
        client_id,
        name=body.name,
        owner=body.owner,
        clear_owner="owner" in given and body.owner is None,
        routes=tuple(body.routes) if body.routes is not None else None,
        scopes=tuple(body.scopes) if body.scopes is not None else None,
        enabled=body.enabled,
        rotation=body.rotation.policy() if body.rotation is not None else None,
        bound_cidrs=None if body.bound_cidrs is None else tuple(body.bound_cidrs),
        bound_apis=None if body.bound_apis is None else tuple(body.bound_apis),
        usage_plan=body.usage_plan,
        clear_usage_plan="usage_plan" in given and body.usage_plan is None,
        dpop_required=body.dpop_required,
    )
    return TokenOut.of(token)


@app.delete(f"{BASE}/<client_id>")
def delete(client_id: str) -> Response[str]:
    admin.delete(actor(), client_id)
    return Response(204, "application/json", "")


@app.post(f"{BASE}/<client_id>/rotate")
def rotate(client_id: str, body: Annotated[RotateRequest, Body()]) -> Response[TokenWithSecret]:
    expires = body.previous_client_secret_expires_at
    issued = admin.rotate(
        actor(),
        client_id,
        grace=parse_grace(body.grace),
        previous_expires_at=epoch(expires) if expires is not None else None,
    )
    logger.info("service token rotated", client_id=client_id)
    return Response(200, "application/json", with_secret(issued), {"Cache-Control": "no-store"})


@app.post(f"{BASE}/<client_id>/refresh")
def refresh(client_id: str, body: Annotated[RefreshRequest, Body()]) -> TokenOut:
    return TokenOut.of(admin.refresh(actor(), client_id, duration=duration_or_none(body.duration)))


@app.post(f"{BASE}/<client_id>/revoke")
def revoke(client_id: str) -> TokenOut:
    return TokenOut.of(admin.revoke(actor(), client_id))


@app.get(f"{BASE}/<client_id>/events")
def events(
    client_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> EventPage:
    page = admin.events(client_id, limit=limit, next_token=next_token)
    return EventPage(items=[EventOut.of(e) for e in page.items], next_token=page.next_token)


@app.post(f"{BASE}/<client_id>/revoke-access-token")
def revoke_access_token(
    client_id: str, body: Annotated[RevokeAccessTokenRequest, Body()]
) -> AccessTokenRevokedOut:
    revoked = admin.revoke_access_token(actor(), client_id, jti=body.jti, exp=body.exp)
    watermark = revoked.revocations.not_before if revoked else 0
    logger.info("access token revoked", client_id=client_id, written=revoked is not None)
    return AccessTokenRevokedOut(
        client_id=client_id,
        jti=body.jti,
        written=revoked is not None,
        access_tokens_not_before=rfc3339(watermark) if watermark else None,
    )


@app.get("/admin/openapi.json")
def openapi() -> Response[str]:
    document = app.get_openapi_json_schema(title="Gatekey admin API", version="1.0.0")
    return Response(200, "application/json", document)


def _error(status: int, code: str, message: str) -> Response[ErrorOut]:
    return Response(status, "application/json", ErrorOut(code=code, message=message))


@app.exception_handler(GatekeyError)  # type: ignore[untyped-decorator]
def gatekey_error(exc: GatekeyError) -> Response[ErrorOut]:
    status = status_of(exc)
    if status >= 500:
        logger.error("admin request failed", reason=exc.reason, detail=exc.message)
        return _error(status, exc.reason, "internal error; try again later")
    return _error(status, exc.reason, exc.message)


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def invalid_request(exc: RequestValidationError) -> Response[ErrorOut]:
    problems = [
        f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    ]
    return _error(422, "invalid_request", "; ".join(problems)[:1000])


@app.exception_handler(RecursionError)  # type: ignore[untyped-decorator]
def nested_too_deeply(_: RecursionError) -> Response[ErrorOut]:
    # The one recursion a request can cause: parsing a deeply nested JSON body (Python < 3.13).
    return _error(422, "invalid_request", "body: JSON nested too deeply")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
