"""The service-token lifecycle for people: what the admin API and the `gatekey` CLI do.

Every operation reads the token, applies one change and writes it back conditionally (the
store's optimistic lock), with an audit item naming the actor. A lost race is a
ConcurrentModification and writes nothing; a change to a revoked token is an
InvalidTransition. The plaintext secret leaves only through `create` and `rotate`; `import_token`
takes one in and never gives it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME
from gatekey.credentials import (
    CLIENT_ID_PREFIX,
    ClientSecret,
    ImportedFormat,
    check_imported_secret,
    imported_format,
)
from gatekey.durations import DAY, HOUR, Duration, parse_duration
from gatekey.errors import InvalidTransition, ValidationError
from gatekey.hashing import Hasher, SecretHash
from gatekey.introspection import Revoked, revoke_access_token
from gatekey.model import (
    PROMOTED,
    ROTATED,
    AuditAction,
    AuditEvent,
    AuditValue,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    TokenStatus,
    new_service_token,
    validate_name,
    validate_owner,
    validate_routes,
    validate_scopes,
)
from gatekey.store import Page, TokenStore

# What reminders_sent says of an automatic rotation's delivery, not of the expiry.
_DELIVERY: Final = frozenset({ROTATED, PROMOTED})
MAX_GRACE_HOURS: Final = 30 * 24  # a previous secret stays valid at most 30 days


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks, from where: the IAM identity and source IP of the admin request."""

    arn: str
    source_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    """A token with its new plaintext secret: the answer of create and rotate only."""

    token: ServiceToken
    secret: ClientSecret = field(repr=False)


class TokenAdmin:
    def __init__(self, *, store: TokenStore, hasher: Hasher, clock: Callable[[], int]) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock

    def _event(
        self, token: ServiceToken, action: AuditAction, actor: Actor, **details: AuditValue
    ) -> AuditEvent:
        return AuditEvent(
            token.client_id, action, actor.arn, self._clock(), actor.source_ip, dict(details)
        )

    def _check_auto_duration(
        self, rotation: RotationPolicy, duration: Duration, field: str
    ) -> None:
        """`auto` rotation needs a duration longer than the first reminder threshold, when the
        lifecycle rotates: a shorter one would still be due after its rotation, and rotate
        again every day. Refused (naming `field`) where a person sets either."""
        first = self._store.schedule.reminder_days[0]
        seconds = duration.seconds
        if rotation.mode is RotationMode.AUTO and seconds is not None and seconds <= first * DAY:
            raise ValidationError(
                field,
                f"'auto' rotation needs a duration longer than {first * 24}h (the first reminder, "
                f"{first} days before expiry, when it rotates); this one is {duration}",
            )

    # -- create and read -------------------------------------------------------------------

    def create(
        self,
        actor: Actor,
        *,
        name: str,
        duration: Duration,
        routes: tuple[str, ...],
        scopes: tuple[str, ...],
        owner: str | None,
        rotation: RotationPolicy,
        dpop_required: bool = False,
    ) -> Issued:
        return Issued(
            *self._add(
                actor,
                AuditAction.CREATED,
                name=name,
                duration=duration,
                routes=routes,
                scopes=scopes,
                owner=owner,
                rotation=rotation,
                dpop_required=dpop_required,
            )
        )

    def import_token(
        self,
        actor: Actor,
        *,
        client_id: str,
        secret: ClientSecret,
        name: str,
        duration: Duration,
        routes: tuple[str, ...],
        scopes: tuple[str, ...],
        owner: str | None,
        rotation: RotationPolicy,
        dpop_required: bool = False,
    ) -> ServiceToken:
        """A token with an existing Client ID and Secret (Cloudflare Access or Cognito), so
        its bots keep working unchanged. The secret is stored hashed like any other, and never
        answered, logged or audited. An id that is no imported format, or a weak secret, is a
        ValidationError; an id already here is AlreadyExists. Nothing is written either way.
        Its first rotation gives it a Gatekey secret (``gks_``); the id stays."""
        source = _import_source(client_id)
        check_imported_secret(source, secret.reveal(), "client_secret")
        token, _ = self._add(
            actor,
            AuditAction.IMPORTED,
            name=name,
            duration=duration,
            routes=routes,
            scopes=scopes,
            owner=owner,
            rotation=rotation,
            dpop_required=dpop_required,
            imported=(client_id, secret),
            source=source.value,
        )
        return token

    def _add(
        self,
        actor: Actor,
        action: AuditAction,
        *,
        name: str,
        duration: Duration,
        routes: tuple[str, ...],
        scopes: tuple[str, ...],
        owner: str | None,
        rotation: RotationPolicy,
        dpop_required: bool = False,
        imported: tuple[str, ClientSecret] | None = None,
        **details: AuditValue,
    ) -> tuple[ServiceToken, ClientSecret]:
        """Store a new token (with a Client ID and Secret of its own unless `imported`) and
        its audit event: the fields a person set, and `details`."""
        self._check_auto_duration(rotation, duration, "duration")
        client_id, secret = imported or (None, None)
        token, secret = new_service_token(
            name=name,
            hasher=self._hasher,
            now=self._clock(),
            duration=duration,
            owner=owner,
            routes=routes,
            scopes=scopes,
            rotation=rotation,
            client_id=client_id,
            secret=secret,
            dpop_required=dpop_required,
        )
        event = self._event(
            token,
            action,
            actor,
            **details,
            name=name,
            duration=str(duration),
            routes=list(token.routes),
            scopes=list(token.scopes),
            owner=owner,
            rotation=rotation.mode.value,
            **({"dpop_required": True} if dpop_required else {}),
        )
        return self._store.create(token, event), secret

    def get(self, client_id: str) -> ServiceToken:
        return self._store.get(client_id, consistent=True)

    def list(
        self,
        *,
        limit: int = 50,
        next_token: str | None = None,
        name: str | None = None,
        status: TokenStatus | None = None,
        name_prefix: str | None = None,
        owner: str | None = None,
    ) -> Page[ServiceToken]:
        if name is not None and name_prefix is not None:
            raise ValidationError("name_prefix", "give name or name_prefix, not both")
        return self._store.list(
            limit=limit,
            next_token=next_token,
            name=name,
            status=status,
            name_prefix=name_prefix,
            owner=owner,
        )

    def events(
        self, client_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> Page[AuditEvent]:
        return self._store.events(client_id, limit=limit, next_token=next_token)

    # -- changes ------------------------------------------------------------------------------

    def _live(self, client_id: str, what: str) -> ServiceToken:
        token = self.get(client_id)
        if token.status is TokenStatus.REVOKED:
            raise InvalidTransition(f"service token {client_id} is revoked; it cannot be {what}")
        return token

    def update(
        self,
        actor: Actor,
        client_id: str,
        *,
        name: str | None = None,
        owner: str | None = None,
        clear_owner: bool = False,
        routes: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] | None = None,
        enabled: bool | None = None,
        rotation: RotationPolicy | None = None,
        dpop_required: bool | None = None,
    ) -> ServiceToken:
        """PATCH: change only what is given. Enabling or disabling is audited as such."""
        token = self._live(client_id, "changed")
        changed = _patched(
            token,
            name=name,
            owner=owner,
            clear_owner=clear_owner,
            routes=routes,
            scopes=scopes,
            enabled=enabled,
        )
        if rotation is not None:
            self._check_auto_duration(rotation, token.duration, "rotation.mode")
            changed = replace(changed, rotation=rotation)
        if dpop_required is not None:
            changed = replace(changed, dpop_required=dpop_required)
        given = {
            "name": name is not None,
            "owner": owner is not None or clear_owner,
            "routes": routes is not None,
            "scopes": scopes is not None,
            "enabled": enabled is not None,
            "rotation": rotation is not None,
            "dpop_required": dpop_required is not None,
        }
        details = {k: _audit_value(getattr(changed, k)) for k, v in given.items() if v}
        if not details:
            raise ValidationError("body", "names no field to change")
        action = AuditAction.UPDATED
        if set(details) == {"enabled"}:
            action = AuditAction.ENABLED if enabled else AuditAction.DISABLED
        event = self._event(token, action, actor, **details)
        now = self._clock()
        # Re-enabled: the idle clock starts again.
        idle_since = now if enabled and not token.enabled else token.idle_since
        return self._store.update(replace(changed, updated_at=now, idle_since=idle_since), event)

    def rotate(
        self,
        actor: Actor,
        client_id: str,
        *,
        grace: Duration | None = None,
        previous_expires_at: int | None = None,
    ) -> Issued:
        """A new secret. The previous one stays valid until `previous_expires_at`, or for
        `grace`, at most 30 days; with neither it stops at once.

        An automatic rotation not yet complete (`delivery_pending`) is abandoned, never
        refused: a manual rotation is how a leaked secret is stopped. The secret kept for the
        grace is the one the consumer reads from its delivery secret: the staged one if the
        lifecycle recorded making it current (PROMOTED), else the token's previous one (the
        staged secret reached no one, and a lifecycle promoting it meanwhile withdraws it).
        The lifecycle, finding the `auto` token still due, rotates it afresh at its next run
        instead of finishing a delivery this rotation replaced."""
        if grace is not None and previous_expires_at is not None:
            raise ValidationError(
                "grace", "give grace or previous_client_secret_expires_at, not both"
            )
        now = self._clock()
        previous_expires_at = _grace_end(now, grace, previous_expires_at)
        token = self._live(client_id, "rotated")
        secret = ClientSecret.generate()
        abandoned = token.delivery_pending is not None
        held: SecretHash | None = token.secret_hash  # the secret the bot holds
        if abandoned and PROMOTED not in token.reminders_sent:
            held = token.previous_secret_hash
        if held is None:
            previous_expires_at = None
        rotated = replace(
            token,
            updated_at=now,
            secret_hash=self._hasher.hash(secret),
            client_secret_version=token.client_secret_version + 1,
            previous_secret_hash=held if previous_expires_at else None,
            previous_client_secret_expires_at=previous_expires_at,
        )
        if abandoned:
            rotated = replace(
                rotated,
                delivery_pending=None,
                reminders_sent=tuple(d for d in token.reminders_sent if d not in _DELIVERY),
                reminders_pending=tuple(p for p in token.reminders_pending if p.key != ROTATED),
            )
        details: dict[str, AuditValue] = {
            "client_secret_version": rotated.client_secret_version,
            "previous_client_secret_expires_at": previous_expires_at,
        }
        if abandoned:
            details["abandoned_delivery"] = True
        event = self._event(token, AuditAction.ROTATED, actor, **details)
        return Issued(self._store.update(rotated, event), secret)

    def refresh(
        self, actor: Actor, client_id: str, *, duration: Duration | None = None
    ) -> ServiceToken:
        """Extend the expiry: now + the given duration, or the token's own."""
        token = self._live(client_id, "refreshed")
        duration = duration or token.duration
        self._check_auto_duration(token.rotation, duration, "duration")
        now = self._clock()
        refreshed = replace(
            token,
            updated_at=now,
            expires_at=duration.after(now),
            duration=duration,
            # A new expiry earns its reminders again; a delivery still pending goes on.
            reminders_sent=tuple(d for d in token.reminders_sent if d in _DELIVERY),
            reminders_pending=(),
        )
        event = self._event(
            token,
            AuditAction.REFRESHED,
            actor,
            duration=str(duration),
            expires_at=refreshed.expires_at,
        )
        return self._store.update(refreshed, event)

    def revoke(self, actor: Actor, client_id: str) -> ServiceToken:
        """Final: a revoked token can never be enabled, rotated or refreshed again."""
        token = self._live(client_id, "revoked again")
        revoked = replace(
            token,
            updated_at=self._clock(),
            status=TokenStatus.REVOKED,
            previous_secret_hash=None,
            previous_client_secret_expires_at=None,
        )
        return self._store.update(revoked, self._event(token, AuditAction.REVOKED, actor))

    def delete(self, actor: Actor, client_id: str) -> None:
        token = self.get(client_id)
        self._store.delete(token, self._event(token, AuditAction.DELETED, actor))

    def revoke_access_token(
        self, actor: Actor, client_id: str, *, jti: str, exp: int | None = None
    ) -> Revoked | None:
        """Revoke one access token of `client_id` by its `jti` (one leaked in a log, say), as
        the client itself may at /oauth2/revoke. Without `exp`, kept as long as any access
        token can live. None when it needed no write (already revoked, or expired). The
        authorizer refuses it within StatusCacheTtlSeconds."""
        now = self._clock()
        return revoke_access_token(
            self._store,
            client_id=client_id,
            jti=jti,
            exp=now + MAX_ACCESS_TOKEN_LIFETIME if exp is None else exp,
            # Any access token was issued by now: a watermark at or past now covers it.
            issued=now,
            now=now,
            actor=actor.arn,
            source_ip=actor.source_ip,
        )


def _import_source(client_id: str) -> ImportedFormat:
    """The format an id to import is in; a ValidationError naming the formats if none."""
    source = imported_format(client_id)
    if source is not None:
        return source
    if client_id.startswith(CLIENT_ID_PREFIX):
        raise ValidationError(
            "client_id", "is a Gatekey Client ID; only Access or Cognito ones are imported"
        )
    raise ValidationError(
        "client_id",
        "must be a Cloudflare Access Client ID (32 lower-case hex characters and '.access') "
        "or a Cognito app client id (26 characters of [a-z0-9])",
    )


def _patched(
    token: ServiceToken,
    *,
    name: str | None,
    owner: str | None,
    clear_owner: bool,
    routes: tuple[str, ...] | None,
    scopes: tuple[str, ...] | None,
    enabled: bool | None,
) -> ServiceToken:
    """The token with the fields given, each validated as a person sets it."""
    return replace(
        token,
        name=token.name if name is None else validate_name(name),
        owner=validate_owner(owner) if owner is not None or clear_owner else token.owner,
        routes=token.routes if routes is None else validate_routes(routes),
        scopes=token.scopes if scopes is None else validate_scopes(scopes),
        enabled=token.enabled if enabled is None else enabled,
    )


def _grace_end(now: int, grace: Duration | None, previous_expires_at: int | None) -> int | None:
    """When a rotated-out secret stops: `grace` from now, or `previous_expires_at`, within the
    next 30 days; None: at once."""
    if grace is not None:
        if grace.hours is None or grace.hours > MAX_GRACE_HOURS:
            raise ValidationError("grace", f"must be at most {MAX_GRACE_HOURS}h")
        previous_expires_at = now + grace.hours * HOUR
    if previous_expires_at is not None and not now < previous_expires_at <= now + 30 * DAY:
        raise ValidationError("previous_client_secret_expires_at", "must be in the next 30 days")
    return previous_expires_at


def _audit_value(value: object) -> AuditValue:
    if isinstance(value, RotationPolicy):
        return value.mode.value
    if isinstance(value, tuple):
        return [str(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def parse_grace(value: str | None) -> Duration | None:
    if value is None:
        return None
    return parse_duration(value, field="grace", maximum_hours=MAX_GRACE_HOURS, allow_forever=False)
