"""Service tokens as code: the `Custom::GatekeyServiceToken` CloudFormation resource.

A consumer stack declares a token next to the bot that uses it; CloudFormation sends the
provider function a Create, Update or Delete request, and the provider answers it on the
request's ResponseURL (`respond`). Every request is answered, FAILED with a reason when it
cannot be carried out, and a FAILED answer leaves no token it made behind.

- **Create** mints a token (through TokenAdmin, with the stack's ARN as the actor) and writes
  its Client ID and Secret into `DeliverySecretArn` as the automatic rotation does
  (`{"client_id", "client_secret"}`, made AWSCURRENT). The secret goes nowhere else: the answer
  carries only `ClientId` and `ExpiresAt` (for `Fn::GetAtt`), and the physical id is the
  Client ID.
- **Retries** of one request (Lambda retries an invocation that failed) find the token that
  request made: its Client ID is derived from the stack, the logical id and the RequestId. A
  token found is given a new secret, delivered again (the first one may never have arrived);
  a token found gone, with an audit trail, was undone by an earlier attempt that answered
  FAILED, so the retry answers FAILED again and mints nothing.
- **Update** changes in place what can change (name, owner, routes, scopes, rotation), moves
  the expiry to now + `Duration` when `Duration` changed or the token expires within
  `MinDaysForRenewal` days, and replaces the token (a new Client ID, so CloudFormation deletes
  the old one afterwards) where it must: a new `DeliverySecretArn`, or a token that is gone or
  revoked.
- **Delete** revokes the token (`OnDelete: revoke`, the default) or deletes it
  (`OnDelete: delete`); a token already gone, or one another stack manages, is left alone and
  the answer is SUCCESS, so a stack can always be deleted.

Only stacks of this account whose names start with one of `stack_prefixes` may create or
change tokens (README, "Service tokens as code", says who that trusts); a token remembers the
stack that made it (`managed_by`) and no other stack's request touches it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal, Protocol, TypeVar

from gatekey.admin import Actor, TokenAdmin
from gatekey.credentials import ClientSecret, derived_client_id, parse_client_id
from gatekey.durations import DAY, DEFAULT_TOKEN_DURATION, Duration, parse_duration
from gatekey.errors import (
    GatekeyError,
    InvalidTransition,
    MalformedCredential,
    NotFound,
    OutOfTime,
    ValidationError,
)
from gatekey.model import (
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
    rfc3339,
    validate_name,
    validate_owner,
    validate_routes,
    validate_scopes,
)

logger = logging.getLogger(__name__)

RESOURCE_TYPE: Final = "Custom::GatekeyServiceToken"
# CloudFormation reads at most 4096 bytes of an answer; a reason is kept well inside that.
MAX_REASON: Final = 1000
# Time kept back before each step that writes: enough to undo it and answer (two DynamoDB
# calls and the answer's attempts at their worst, gatekey.aws.clients.API and
# gatekey.aws.cfn_response), so the answer goes out before Lambda's timeout.
RESERVE_SECONDS: Final = 20.0
MAX_RENEWAL_DAYS: Final = 3650
# Properties CloudFormation itself reads, passed along with the others.
_CLOUDFORMATION_PROPERTIES: Final = frozenset({"ServiceToken", "ServiceTimeout"})
# A model field's name, as the property a template sets.
_PROPERTY: Final = {
    "name": "Name",
    "owner": "Owner",
    "routes": "Routes",
    "scopes": "Scopes",
    "duration": "Duration",
    "rotation.mode": "Rotation",
    "rotation.delivery_secret_arn": "DeliverySecretArn",
}


class RequestType(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"


class OnDelete(StrEnum):
    REVOKE = "revoke"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class TokenProperties:
    """The resource's properties, each validated as the admin API validates it."""

    name: str
    delivery_secret_arn: str
    owner: str | None = None
    routes: tuple[str, ...] = ("*",)
    scopes: tuple[str, ...] = ()
    duration: Duration = DEFAULT_TOKEN_DURATION
    rotation: RotationMode = RotationMode.AUTO
    min_days_for_renewal: int = 0
    on_delete: OnDelete = OnDelete.REVOKE

    @property
    def rotation_policy(self) -> RotationPolicy:
        if self.rotation is RotationMode.AUTO:
            return RotationPolicy(RotationMode.AUTO, self.delivery_secret_arn)
        return RotationPolicy(RotationMode.REMIND)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TokenProperties:
        """From ResourceProperties, where CloudFormation passes every scalar as a string.
        A ValidationError names the property as the template spells it."""
        try:
            return cls._parse(raw)
        except ValidationError as exc:
            if exc.field in _PROPERTY.values():
                raise
            prefix = f"{exc.field}: "
            message = exc.message.removeprefix(prefix)
            raise ValidationError(_PROPERTY.get(exc.field, exc.field), message) from exc

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> TokenProperties:
        known = {"Name", "Owner", "Routes", "Scopes", "Duration", "Rotation"}
        known |= {"DeliverySecretArn", "MinDaysForRenewal", "OnDelete"}
        unknown = sorted(set(raw) - known - _CLOUDFORMATION_PROPERTIES)
        if unknown:
            raise ValidationError(
                "Properties",
                f"unknown: {', '.join(unknown)[:200]} (known: {', '.join(sorted(known))})",
            )
        arn = raw.get("DeliverySecretArn")
        if not isinstance(arn, str) or not arn:
            raise ValidationError(
                "DeliverySecretArn", "is required: the secret the Client ID and Secret go into"
            )
        RotationPolicy(RotationMode.AUTO, arn)  # the ARN's shape, checked as the admin API does
        rotation = _choice(raw.get("Rotation", "auto"), "Rotation", RotationMode)
        return cls(
            name=validate_name(raw.get("Name")),
            delivery_secret_arn=arn,
            owner=validate_owner(raw.get("Owner")),
            routes=validate_routes(raw.get("Routes", ["*"])),
            scopes=validate_scopes(raw.get("Scopes", [])),
            duration=parse_duration(
                raw.get("Duration", str(DEFAULT_TOKEN_DURATION)), field="Duration"
            ),
            rotation=rotation,
            min_days_for_renewal=_days(raw.get("MinDaysForRenewal", "0")),
            on_delete=_choice(raw.get("OnDelete", "revoke"), "OnDelete", OnDelete),
        )


E = TypeVar("E", bound=StrEnum)


def _choice(value: object, field: str, enum: type[E]) -> E:
    for member in enum:
        if value == member.value:
            return member
    raise ValidationError(field, f"must be one of {', '.join(m.value for m in enum)}")


def _days(value: object) -> int:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_RENEWAL_DAYS:
        raise ValidationError(
            "MinDaysForRenewal", f"must be a whole number of days from 0 to {MAX_RENEWAL_DAYS}"
        )
    return int(text)


@dataclass(frozen=True, slots=True)
class Stack:
    """A stack as its ARN names it:
    arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<id>."""

    arn: str
    account: str
    name: str

    @classmethod
    def of(cls, arn: object) -> Stack:
        parts = arn.split(":", 5) if isinstance(arn, str) else []
        if len(parts) != 6 or parts[2] != "cloudformation" or not parts[5].startswith("stack/"):
            raise ValidationError("StackId", "is not a CloudFormation stack ARN")
        name = parts[5].split("/")[1] if parts[5].count("/") >= 2 else ""
        if not name:
            raise ValidationError("StackId", "is not a CloudFormation stack ARN")
        return cls(arn=str(arn), account=parts[4], name=name)


@dataclass(frozen=True, slots=True)
class StackPolicy:
    """Which stacks may create and change tokens: this account's, named with a prefix listed
    in the template's ServiceTokenStackPrefixes (none listed: no stack may)."""

    account: str
    prefixes: tuple[str, ...]

    def check(self, stack: Stack) -> None:
        if stack.account != self.account:
            raise ValidationError("StackId", "stacks of other accounts may not manage tokens here")
        if not any(stack.name.startswith(prefix) for prefix in self.prefixes if prefix):
            raise ValidationError(
                "StackId",
                f"stack {stack.name} may not manage Gatekey service tokens: its name starts "
                "with none of the prefixes in Gatekey's ServiceTokenStackPrefixes parameter",
            )


@dataclass(frozen=True, slots=True)
class Request:
    """A CloudFormation custom resource request, without its ResponseURL."""

    type: RequestType
    request_id: str
    stack: Stack
    logical_id: str
    resource_type: str
    physical_id: str | None
    properties: Mapping[str, Any]
    old_properties: Mapping[str, Any]

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Request:
        request_type = _choice(event.get("RequestType"), "RequestType", RequestType)
        request_id = event.get("RequestId")
        logical_id = event.get("LogicalResourceId")
        if not isinstance(request_id, str) or not request_id:
            raise ValidationError("RequestId", "is missing")
        if not isinstance(logical_id, str) or not logical_id:
            raise ValidationError("LogicalResourceId", "is missing")
        physical = event.get("PhysicalResourceId")
        properties = event.get("ResourceProperties") or {}
        old = event.get("OldResourceProperties") or {}
        if not isinstance(properties, Mapping) or not isinstance(old, Mapping):
            raise ValidationError("ResourceProperties", "must be an object")
        return cls(
            type=request_type,
            request_id=request_id,
            stack=Stack.of(event.get("StackId")),
            logical_id=logical_id,
            resource_type=str(event.get("ResourceType", "")),
            physical_id=physical if isinstance(physical, str) and physical else None,
            properties=properties,
            old_properties=old,
        )

    @property
    def own_client_id(self) -> str:
        """The Client ID of the token this request creates, whichever attempt runs it."""
        return derived_client_id(f"{self.stack.arn}\n{self.logical_id}\n{self.request_id}")


@dataclass(frozen=True, slots=True)
class Answer:
    """What CloudFormation is told: never a secret."""

    status: Literal["SUCCESS", "FAILED"]
    physical_id: str
    reason: str = ""
    data: Mapping[str, str] | None = None

    def body(self, event: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Status": self.status,
            "PhysicalResourceId": self.physical_id,
            "StackId": event.get("StackId", ""),
            "RequestId": event.get("RequestId", ""),
            "LogicalResourceId": event.get("LogicalResourceId", ""),
        }
        if self.reason:
            body["Reason"] = self.reason[:MAX_REASON]
        if self.data:
            body["Data"] = dict(self.data)
        return body


class Delivery(Protocol):
    """Where a token's secret goes: the consumer's own Secrets Manager secret."""

    def check(self, secret_arn: str) -> None:
        """Raise ValidationError unless the secret may be delivered to (tagged for it)."""

    def stage(self, secret_arn: str, client_id: str, secret: ClientSecret) -> str:
        """Write the secret as a new AWSPENDING version; return its version id."""

    def promote(self, secret_arn: str, version_id: str) -> None:
        """Make that version AWSCURRENT, the one the consumer reads."""


class ServiceTokenResource:
    """Carries out one request and says what to answer; never raises for a request's sake."""

    def __init__(
        self,
        *,
        admin: TokenAdmin,
        delivery: Delivery,
        policy: StackPolicy,
        clock: Callable[[], int],
    ) -> None:
        self._admin = admin
        self._delivery = delivery
        self._policy = policy
        self._clock = clock

    def handle(self, request: Request, time_left: Callable[[], float]) -> Answer:
        fallback = request.physical_id or request.own_client_id
        try:
            answer = self._carry_out(request, _Steps(time_left))
        except GatekeyError as exc:
            answer = Answer("FAILED", fallback, f"{exc.message} [{exc.reason}]")
        if answer.status == "FAILED" and request.type is RequestType.UPDATE:
            # A failed update keeps its physical id: another would read as a replacement.
            answer = Answer("FAILED", fallback, answer.reason)
        return answer

    def _carry_out(self, request: Request, steps: _Steps) -> Answer:
        actor = Actor(request.stack.arn)
        if request.type is RequestType.DELETE:
            return self._delete(request, actor)
        if request.resource_type != RESOURCE_TYPE:
            raise ValidationError("ResourceType", f"this provider serves {RESOURCE_TYPE} only")
        self._policy.check(request.stack)
        properties = TokenProperties.parse(request.properties)
        if request.type is RequestType.CREATE:
            return self._create(request, properties, actor, steps)
        return self._update(request, properties, actor, steps)

    # -- create, and replacement ---------------------------------------------------------------

    def _create(
        self, request: Request, properties: TokenProperties, actor: Actor, steps: _Steps
    ) -> Answer:
        client_id = request.own_client_id
        token = self._find(client_id)
        if token is None and self._admin.events(client_id, limit=1).items:
            return Answer(
                "FAILED",
                client_id,
                "an earlier attempt of this request failed and removed the token it made",
            )
        if token is not None and token.managed_by != request.stack.arn:
            raise InvalidTransition(f"service token {client_id} is not this stack's")
        if token is not None and token.status is TokenStatus.REVOKED:
            return Answer("FAILED", client_id, f"service token {client_id} was revoked")
        self._delivery.check(properties.delivery_secret_arn)
        steps.next()
        if token is None:
            issued = self._admin.create(
                actor,
                name=properties.name,
                duration=properties.duration,
                routes=properties.routes,
                scopes=properties.scopes,
                owner=properties.owner,
                rotation=properties.rotation_policy,
                client_id=client_id,
                managed_by=request.stack.arn,
            )
        else:
            # A retry of a request whose attempt stopped after minting: the secret it delivered
            # (if it did) is replaced, since only its hash is left to know it by.
            issued = self._admin.rotate(actor, client_id)
        try:
            steps.next()
            arn = properties.delivery_secret_arn
            self._delivery.promote(arn, self._delivery.stage(arn, client_id, issued.secret))
        except GatekeyError as exc:
            return self._undo(client_id, actor, exc)
        logger.info("service token delivered", extra={"client_id": client_id})
        return _success(issued.token)

    def _undo(self, client_id: str, actor: Actor, cause: GatekeyError) -> Answer:
        """Remove the token this request made, then say why it failed."""
        reason = f"{cause.message} [{cause.reason}]"
        try:
            self._admin.delete(actor, client_id)
        except NotFound:
            pass
        except GatekeyError as exc:
            logger.error(
                "service token left behind by a failed request",
                extra={"client_id": client_id, "reason": exc.reason},
            )
            reason += (
                f"; the token {client_id} it made could not be removed ({exc.reason}): "
                f"remove it with `gatekey delete {client_id}`"
            )
        return Answer("FAILED", client_id, reason)

    # -- update ----------------------------------------------------------------------------------

    def _update(
        self, request: Request, properties: TokenProperties, actor: Actor, steps: _Steps
    ) -> Answer:
        client_id = request.physical_id or ""
        token = self._find(client_id)
        if token is not None and token.managed_by != request.stack.arn:
            raise InvalidTransition(f"service token {client_id} is not this stack's")
        # Where the token's secret is: an `auto` token knows (its rotation delivers there);
        # of a `remind` token only the old properties tell. So the rollback of a failed move
        # (the old ARN back, the token never moved) keeps an `auto` token in place.
        delivered_to = token.rotation.delivery_secret_arn if token is not None else None
        if delivered_to is None:
            delivered_to = request.old_properties.get("DeliverySecretArn")
        if (
            token is None
            or token.status is TokenStatus.REVOKED
            or delivered_to != properties.delivery_secret_arn
        ):
            # A new token, delivered to the (new) secret; CloudFormation then deletes the old one.
            return self._create(request, properties, actor, steps)
        # Refresh before a change to `remind`, after a change to `auto`: each write is then
        # valid on its own (`auto` needs a duration longer than the first reminder).
        to_auto = properties.rotation is RotationMode.AUTO
        if to_auto:
            token = self._refresh(token, properties, actor, steps)
            token = self._change(token, properties, actor, steps)
        else:
            token = self._change(token, properties, actor, steps)
            token = self._refresh(token, properties, actor, steps)
        return _success(token)

    def _change(
        self, token: ServiceToken, properties: TokenProperties, actor: Actor, steps: _Steps
    ) -> ServiceToken:
        changes: dict[str, Any] = {}
        if token.name != properties.name:
            changes["name"] = properties.name
        if token.owner != properties.owner:
            changes["owner"] = properties.owner
            changes["clear_owner"] = properties.owner is None
        if token.routes != properties.routes:
            changes["routes"] = properties.routes
        if token.scopes != properties.scopes:
            changes["scopes"] = properties.scopes
        if token.rotation != properties.rotation_policy:
            changes["rotation"] = properties.rotation_policy
        if not changes:
            return token
        steps.next()
        return self._admin.update(actor, token.client_id, **changes)

    def _refresh(
        self, token: ServiceToken, properties: TokenProperties, actor: Actor, steps: _Steps
    ) -> ServiceToken:
        now = self._clock()
        renew_from = now + properties.min_days_for_renewal * DAY
        due = token.expires_at is not None and token.expires_at <= renew_from
        if token.duration == properties.duration and not (due and properties.min_days_for_renewal):
            return token
        steps.next()
        return self._admin.refresh(actor, token.client_id, duration=properties.duration)

    # -- delete ----------------------------------------------------------------------------------

    def _delete(self, request: Request, actor: Actor) -> Answer:
        client_id = request.physical_id or request.own_client_id
        token = self._find(client_id)
        if token is None:
            return Answer("SUCCESS", client_id)  # never made, undone, or removed already
        if token.managed_by != request.stack.arn:
            logger.warning(
                "delete of a token this stack does not manage: left alone",
                extra={"client_id": client_id},
            )
            return Answer("SUCCESS", client_id)
        on_delete = OnDelete.REVOKE  # properties that never validated: revoked, the safe choice
        with contextlib.suppress(ValidationError):
            on_delete = TokenProperties.parse(request.properties).on_delete
        if on_delete is OnDelete.DELETE:
            self._admin.delete(actor, client_id)
        elif token.status is not TokenStatus.REVOKED:
            with contextlib.suppress(InvalidTransition):  # revoked meanwhile
                self._admin.revoke(actor, client_id)
        logger.info(
            "service token removed", extra={"client_id": client_id, "on_delete": on_delete.value}
        )
        return Answer("SUCCESS", client_id)

    def _find(self, client_id: str) -> ServiceToken | None:
        try:
            parse_client_id(client_id)
            return self._admin.get(client_id)
        except (NotFound, MalformedCredential):
            return None


def _success(token: ServiceToken) -> Answer:
    expires = rfc3339(token.expires_at) or "never"
    return Answer(
        "SUCCESS", token.client_id, data={"ClientId": token.client_id, "ExpiresAt": expires}
    )


class _Steps:
    """Before each write: time enough left to undo it and answer, or OutOfTime."""

    def __init__(self, time_left: Callable[[], float]) -> None:
        self._time_left = time_left

    def next(self) -> None:
        if self._time_left() < RESERVE_SECONDS:
            raise OutOfTime(
                "the provider ran out of time before finishing; nothing is left half done"
            )


# -- the protocol: every request answered ----------------------------------------------------


def respond(
    event: Mapping[str, Any],
    *,
    resource: Callable[[], ServiceTokenResource],
    send: Callable[[str, dict[str, Any]], None],
    time_left: Callable[[], float],
) -> Answer | None:
    """Carry out `event` and answer it on its ResponseURL, whatever happens: a provider that
    cannot be built (configuration, the pepper) or a bug is a FAILED answer with a reason,
    never a stack waiting an hour. None: the event has no ResponseURL, nobody to answer."""
    url = event.get("ResponseURL")
    if not isinstance(url, str) or not url:
        logger.error("custom resource event without a ResponseURL: not answered")
        return None
    try:
        request = Request.of(event)
    except ValidationError as exc:
        answer = Answer("FAILED", _echo(event), f"{exc.message} [{exc.reason}]")
    else:
        answer = _carried_out(request, resource, time_left)
    logger.info(
        "custom resource request answered",
        extra={
            "request_type": event.get("RequestType"),
            "logical_id": event.get("LogicalResourceId"),
            "request_id": event.get("RequestId"),
            "status": answer.status,
            "physical_id": answer.physical_id,
            "reason": answer.reason,
        },
    )
    send(url, answer.body(event))
    return answer


def _carried_out(
    request: Request,
    resource: Callable[[], ServiceTokenResource],
    time_left: Callable[[], float],
) -> Answer:
    fallback = request.physical_id or request.own_client_id
    try:
        return resource().handle(request, time_left)
    except GatekeyError as exc:  # the provider could not be built
        logger.error("provider unavailable", extra={"reason": exc.reason})
        return Answer("FAILED", fallback, f"Gatekey's provider is unavailable: {exc.message}")
    except Exception as exc:  # a bug: answered all the same  # noqa: BLE001
        logger.error("provider failed", extra={"error": type(exc).__name__})
        return Answer(
            "FAILED",
            fallback,
            f"Gatekey's provider failed ({type(exc).__name__}); its log has the request id",
        )


def _echo(event: Mapping[str, Any]) -> str:
    physical = event.get("PhysicalResourceId")
    if isinstance(physical, str) and physical:
        return physical
    return f"invalid-request-{str(event.get('RequestId', ''))[:64]}"
