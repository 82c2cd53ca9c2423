"""The admin API's wire format: pydantic models (validated by Powertools, published as
OpenAPI) and their conversion to and from the core's objects. RFC 3339 UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gatekey.bindings import MAX_APIS, MAX_CIDRS
from gatekey.durations import Duration, parse_duration
from gatekey.errors import Conflict, GatekeyError, NotFound, ValidationError
from gatekey.model import (
    MAX_NAME_LENGTH,
    MAX_OWNER_LENGTH,
    MAX_ROUTES,
    MAX_SCOPES,
    AuditEvent,
    AuditValue,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    rfc3339,
)

Strict = ConfigDict(extra="forbid")


def epoch(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


class Rotation(BaseModel):
    model_config = Strict
    mode: Literal["remind", "auto"] = "remind"
    delivery_secret_arn: str | None = Field(default=None, max_length=2048)

    def policy(self) -> RotationPolicy:
        return RotationPolicy(RotationMode(self.mode), self.delivery_secret_arn)


class CreateTokenRequest(BaseModel):
    model_config = Strict
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    duration: str = Field(
        default="8760h", max_length=32, description="'<hours>h', '<days>d', '<years>y' or 'forever'"
    )
    routes: list[str] = Field(default=["*"], max_length=MAX_ROUTES)
    scopes: list[str] = Field(default=[], max_length=MAX_SCOPES)
    owner: str | None = Field(default=None, max_length=MAX_OWNER_LENGTH)
    rotation: Rotation = Rotation()
    # -- bindings (gatekey.bindings) --
    bound_cidrs: list[str] = Field(
        default=[],
        max_length=MAX_CIDRS,
        description="CIDR blocks (IPv4 or IPv6) it may be used from; empty: anywhere",
    )
    bound_apis: list[str] = Field(
        default=[],
        max_length=MAX_APIS,
        description="APIs it may reach, '<api id>' or '<api id>/<stage>'; empty: every API",
    )

    # A usage plan (README, "Rate limits and quotas"): a name or id of the stack's set.
    usage_plan: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "a usage plan of this stack (its name or id): Gatekey puts an API key of its own "
            "on it, which the authorizer names, so REST APIs throttle and meter the token"
        ),
    )
    dpop_required: bool = Field(
        default=False,
        description="issue only DPoP-bound access tokens (RFC 9449); refuse token requests "
        "without a proof",
    )


class ImportTokenRequest(CreateTokenRequest):
    """An existing Client ID and Secret to import (README, "Migrating from Cloudflare Access
    or Cognito"). The secret is write-only: stored hashed, never answered."""

    client_id: str = Field(
        min_length=1,
        max_length=128,
        description="a Cloudflare Access Client ID ('<32 hex>.access') or a Cognito app client id",
    )
    client_secret: SecretStr = Field(
        min_length=1,
        max_length=128,
        description="its Client Secret: at least 128 bits by its format's alphabet and length",
    )


class UpdateTokenRequest(BaseModel):
    model_config = Strict
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    owner: str | None = Field(default=None, max_length=MAX_OWNER_LENGTH)
    routes: list[str] | None = Field(default=None, max_length=MAX_ROUTES)
    scopes: list[str] | None = Field(default=None, max_length=MAX_SCOPES)
    enabled: bool | None = None
    rotation: Rotation | None = None
    # -- bindings (gatekey.bindings): [] unbinds --
    bound_cidrs: list[str] | None = Field(default=None, max_length=MAX_CIDRS)
    bound_apis: list[str] | None = Field(default=None, max_length=MAX_APIS)

    # A usage plan (README, "Rate limits and quotas"): a name or id of the stack's set.
    usage_plan: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "a usage plan of this stack (its name or id): Gatekey puts an API key of its own "
            "on it, which the authorizer names, so REST APIs throttle and meter the token"
            "; null takes it off its plan and deletes its key"
        ),
    )
    dpop_required: bool | None = None


class RotateRequest(BaseModel):
    model_config = Strict
    grace: str | None = Field(default=None, max_length=32, description="e.g. '24h', at most 720h")
    previous_client_secret_expires_at: datetime | None = None


class RefreshRequest(BaseModel):
    model_config = Strict
    duration: str | None = Field(default=None, max_length=32)


class RotationOut(BaseModel):
    mode: str
    delivery_secret_arn: str | None


class TokenOut(BaseModel):
    client_id: str
    name: str
    owner: str | None
    routes: list[str]
    scopes: list[str]
    enabled: bool
    status: str
    duration: str
    client_secret_version: int
    previous_client_secret_expires_at: str | None
    created_at: str
    updated_at: str
    expires_at: str | None
    last_seen_at: str | None
    rotation: RotationOut
    version: int
    # -- bindings (gatekey.bindings) --
    bound_cidrs: list[str] = []
    bound_apis: list[str] = []
    # Its usage plan's name, and the API key Gatekey made for it (its id; the value is never
    # shown): `aws apigateway get-usage --key-id` reads its usage.
    usage_plan: str | None = None
    api_key_id: str | None = None
    dpop_required: bool

    @classmethod
    def of(cls, token: ServiceToken) -> TokenOut:
        return cls(
            client_id=token.client_id,
            name=token.name,
            owner=token.owner,
            routes=list(token.routes),
            scopes=list(token.scopes),
            enabled=token.enabled,
            status=token.status.value,
            duration=str(token.duration),
            client_secret_version=token.client_secret_version,
            previous_client_secret_expires_at=rfc3339(token.previous_client_secret_expires_at),
            created_at=rfc3339(token.created_at) or "",
            updated_at=rfc3339(token.updated_at) or "",
            expires_at=rfc3339(token.expires_at),
            last_seen_at=rfc3339(token.last_seen_at),
            rotation=RotationOut(
                mode=token.rotation.mode.value,
                delivery_secret_arn=token.rotation.delivery_secret_arn,
            ),
            version=token.version,
            bound_cidrs=list(token.bound_cidrs),
            bound_apis=list(token.bound_apis),
            usage_plan=token.usage_plan.plan if token.usage_plan else None,
            api_key_id=token.usage_plan.api_key_id if token.usage_plan else None,
            dpop_required=token.dpop_required,
        )


class TokenWithSecret(TokenOut):
    """Only create and rotate answer with this: the one time the secret is shown."""

    client_secret: str


class TokenPage(BaseModel):
    items: list[TokenOut]
    next_token: str | None


class EventOut(BaseModel):
    client_id: str
    action: str
    actor: str
    at: str
    source_ip: str | None
    details: dict[str, str | int | bool | list[str] | None]

    @classmethod
    def of(cls, event: AuditEvent) -> EventOut:
        return cls(
            client_id=event.client_id,
            action=event.action.value,
            actor=event.actor,
            at=rfc3339(event.at) or "",
            source_ip=event.source_ip,
            details={k: _detail(k, v) for k, v in event.details.items()},
        )


def _detail(key: str, value: AuditValue) -> AuditValue:
    """A time in an audit item's details (a `*_at` key) is stored as an epoch second; on the
    wire it is RFC 3339 UTC, as every other time the API answers."""
    if key.endswith("_at") and isinstance(value, int) and not isinstance(value, bool):
        return rfc3339(value)
    return value


class EventPage(BaseModel):
    items: list[EventOut]
    next_token: str | None


class ErrorOut(BaseModel):
    code: str
    message: str


def status_of(exc: GatekeyError) -> int:
    """The HTTP status of each error family: the one place errors become admin answers."""
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return 500


def duration_or_none(value: str | None, field: str = "duration") -> Duration | None:
    return None if value is None else parse_duration(value, field=field)


class RevokeAccessTokenRequest(BaseModel):
    """One access token to revoke, by its `jti`; `exp` (epoch seconds, from the token) lets
    the entry go when the token expires, else it is kept as long as any token can live."""

    model_config = Strict
    jti: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    exp: int | None = Field(default=None, ge=0)


class AccessTokenRevokedOut(BaseModel):
    client_id: str
    jti: str
    # False: nothing was written (it was revoked already, or has expired).
    written: bool
    # Set when the client's list of revoked ids was full: every access token it was issued
    # until this time is revoked (README, "Token endpoint").
    access_tokens_not_before: str | None
