"""The service-token lifecycle for people: what the admin API and the `gatekey` CLI do.

Every operation reads the token, applies one change and writes it back conditionally (the
store's optimistic lock), with an audit item naming the actor. A lost race is a
ConcurrentModification and writes nothing; a change to a revoked token is an
InvalidTransition. The plaintext secret leaves only through `create` and `rotate`; `import_token`
takes one in and never gives it back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gatekey.bindings import validate_apis, validate_cidrs
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME
from gatekey.credentials import (
    CLIENT_ID_PREFIX,
    ClientSecret,
    ImportedFormat,
    check_imported_secret,
    imported_format,
)
from gatekey.durations import DAY, HOUR, Duration, parse_duration
from gatekey.errors import ConfigurationError, InvalidTransition, ValidationError
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
from gatekey.usage_plans import ApiKey, ApiKeys, PlanKey, UsagePlan, UsagePlans

logger = logging.getLogger(__name__)

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
    def __init__(
        self,
        *,
        store: TokenStore,
        hasher: Hasher,
        clock: Callable[[], int],
        usage_plans: UsagePlans | None = None,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._plans = usage_plans or UsagePlans()
        self._api_keys = api_keys

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
        bound_cidrs: tuple[str, ...] = (),
        bound_apis: tuple[str, ...] = (),
        client_id: str | None = None,
        managed_by: str | None = None,
        usage_plan: str | None = None,
        dpop_required: bool = False,
    ) -> Issued:
        """A new token and its secret. `client_id` (a Gatekey-format one; by default random)
        lets a retried request find the token it made; `managed_by` names the stack that
        declared it (gatekey.token_resource), recorded on the token and in its audit item."""
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
                bound_cidrs=bound_cidrs,
                bound_apis=bound_apis,
                client_id=client_id,
                managed_by=managed_by,
                usage_plan=usage_plan,
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
        bound_cidrs: tuple[str, ...] = (),
        bound_apis: tuple[str, ...] = (),
        usage_plan: str | None = None,
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
            usage_plan=usage_plan,
            dpop_required=dpop_required,
            imported=(client_id, secret),
            source=source.value,
            bound_cidrs=bound_cidrs,
            bound_apis=bound_apis,
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
        usage_plan: str | None = None,
        dpop_required: bool = False,
        imported: tuple[str, ClientSecret] | None = None,
        bound_cidrs: tuple[str, ...] = (),
        bound_apis: tuple[str, ...] = (),
        client_id: str | None = None,
        managed_by: str | None = None,
        **details: AuditValue,
    ) -> tuple[ServiceToken, ClientSecret]:
        """Store a new token (with a Client ID and Secret of its own unless `imported`) and
        its audit event: the fields a person set, and `details`. A token on a usage plan gets
        its API key first (made, then put on the plan); a failure after that removes it."""
        self._check_auto_duration(rotation, duration, "duration")
        secret: ClientSecret | None = None
        if imported is not None:
            client_id, secret = imported
        if managed_by is not None:
            details["managed_by"] = managed_by
        plan = None if usage_plan is None else self._plans.resolve(usage_plan)
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
            bound_cidrs=bound_cidrs,
            bound_apis=bound_apis,
            managed_by=managed_by,
            dpop_required=dpop_required,
        )
        # bindings: audited when set
        bindings = {
            k: v
            for k, v in (("bound_cidrs", token.bound_cidrs), ("bound_apis", token.bound_apis))
            if v
        }
        details |= {k: list(v) for k, v in bindings.items()}
        undo = _Undo(token.client_id)
        if plan is not None:
            key = self._new_key(token.client_id, plan, enabled=True, undo=undo)
            token = replace(token, usage_plan=key)
            details |= {"usage_plan": plan.name, "api_key_id": key.api_key_id}
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
        with undo:
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
        bound_cidrs: tuple[str, ...] | None = None,
        bound_apis: tuple[str, ...] | None = None,
        usage_plan: str | None = None,
        clear_usage_plan: bool = False,
        dpop_required: bool | None = None,
    ) -> ServiceToken:
        """PATCH: change only what is given. Enabling or disabling is audited as such.

        A usage plan given (or cleared) and `enabled` reach API Gateway before the token is
        written: its key is made, moved to the new plan, enabled or disabled, and undone if
        the write (or a later call) fails; a key no longer needed is deleted after the write."""
        plan = None if usage_plan is None else self._plans.resolve(usage_plan)
        token = self._live(client_id, "changed")
        changes = _changes(
            name=name,
            owner=owner,
            clear_owner=clear_owner,
            routes=routes,
            scopes=scopes,
            enabled=enabled,
            rotation=rotation,
            bound_cidrs=bound_cidrs,
            bound_apis=bound_apis,
            dpop_required=dpop_required,
        )
        if rotation is not None:
            self._check_auto_duration(rotation, token.duration, "rotation.mode")
        changed = replace(token, **changes)
        details = {k: _audit_value(getattr(changed, k)) for k in changes}
        if plan is not None or clear_usage_plan:
            details["usage_plan"] = None if plan is None else plan.name
        if not details:
            raise ValidationError("body", "names no field to change")
        action = AuditAction.UPDATED
        if set(details) == {"enabled"}:
            action = AuditAction.ENABLED if enabled else AuditAction.DISABLED
        now = self._clock()
        # Re-enabled: the idle clock starts again.
        idle_since = now if enabled and not token.enabled else token.idle_since
        changed = replace(changed, updated_at=now, idle_since=idle_since)
        undo = _Undo(client_id)
        changed, retired = self._rekey(token, changed, plan, clear_usage_plan, undo)
        key = changed.usage_plan or retired
        touched = plan is not None or clear_usage_plan or changed.enabled != token.enabled
        if key is not None and touched:
            details["api_key_id"] = key.api_key_id
        event = self._event(token, action, actor, **details)
        with undo:
            written = self._store.update(changed, event)
        if retired is not None:
            self._delete_key(client_id, retired)
        return written

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
        undo = _Undo(client_id)
        details: dict[str, AuditValue] = {}
        if token.usage_plan is not None:
            self._set_key_enabled(token.usage_plan, False, undo, was=token.enabled)
            details["api_key_id"] = token.usage_plan.api_key_id
        event = self._event(token, AuditAction.REVOKED, actor, **details)
        with undo:
            return self._store.update(revoked, event)

    def delete(self, actor: Actor, client_id: str) -> None:
        """Delete the token, then its API key: a key left behind (logged) meters nothing,
        since no Allow names it any more."""
        token = self.get(client_id)
        details: dict[str, AuditValue] = {}
        if token.usage_plan is not None:
            details["api_key_id"] = token.usage_plan.api_key_id
        self._store.delete(token, self._event(token, AuditAction.DELETED, actor, **details))
        if token.usage_plan is not None:
            self._delete_key(client_id, token.usage_plan)

    # -- usage plans: the token's API key in API Gateway ---------------------------------------

    def _keys(self) -> ApiKeys:
        if self._api_keys is None:
            raise ConfigurationError("usage plans need API Gateway (no API key adapter given)")
        return self._api_keys

    def _new_key(self, client_id: str, plan: UsagePlan, *, enabled: bool, undo: _Undo) -> PlanKey:
        """A new API key on `plan`; `undo` deletes it (a failure to put it on the plan
        deletes it at once)."""
        keys = self._keys()
        made: ApiKey = keys.create(client_id, enabled=enabled)
        undo.add(f"delete API key {made.key_id}", lambda: keys.delete(made.key_id))
        with undo:
            keys.associate(plan.plan_id, made.key_id)
        return PlanKey(plan.name, plan.plan_id, made.key_id, made.value)

    def _set_key_enabled(self, key: PlanKey, enabled: bool, undo: _Undo, *, was: bool) -> None:
        """Enable or disable the key; `undo` puts it back. An admin built without API Gateway
        (the Custom::GatekeyServiceToken provider's) leaves the key as it is, logged: the
        token's own state is what the authorizer decides on."""
        if self._api_keys is None:
            what = f"{'enable' if enabled else 'disable'} API key {key.api_key_id}"
            _left_behind(undo.client_id, what, ConfigurationError("no API Gateway adapter"))
            return
        keys = self._api_keys
        keys.set_enabled(key.api_key_id, enabled)
        undo.add(
            f"{'enable' if was else 'disable'} API key {key.api_key_id}",
            lambda: keys.set_enabled(key.api_key_id, was),
        )

    def _rekey(
        self,
        token: ServiceToken,
        changed: ServiceToken,
        plan: UsagePlan | None,
        clear: bool,
        undo: _Undo,
    ) -> tuple[ServiceToken, PlanKey | None]:
        """Bring API Gateway to what `changed` says of the plan and `enabled`, recording in
        `undo` how to go back; the token with its key, and a key to delete once written."""
        current = token.usage_plan
        if clear:
            return replace(changed, usage_plan=None), current
        if plan is not None and current is None:
            key = self._new_key(token.client_id, plan, enabled=changed.enabled, undo=undo)
            return replace(changed, usage_plan=key), None
        if current is None:
            return changed, None
        if plan is not None and plan.plan_id != current.plan_id:
            self._move_key(current.api_key_id, current.plan_id, plan.plan_id, undo)
            current = replace(current, plan=plan.name, plan_id=plan.plan_id)
        elif plan is not None:
            current = replace(current, plan=plan.name)
        if changed.enabled != token.enabled:
            with undo:
                self._set_key_enabled(current, changed.enabled, undo, was=token.enabled)
        return replace(changed, usage_plan=current), None

    def _move_key(self, key_id: str, old_plan: str, new_plan: str, undo: _Undo) -> None:
        """Off the old plan first (API Gateway refuses a key on two plans of one stage), then
        onto the new one; `undo` takes it back."""
        keys = self._keys()
        keys.dissociate(old_plan, key_id)
        undo.add(
            f"put API key {key_id} back on plan {old_plan}",
            lambda: keys.associate(old_plan, key_id),
        )
        with undo:
            keys.associate(new_plan, key_id)
        undo.add(
            f"take API key {key_id} off plan {new_plan}",
            lambda: keys.dissociate(new_plan, key_id),
        )

    def _delete_key(self, client_id: str, key: PlanKey) -> None:
        """After the write that let go of `key`: a failure leaves it behind, logged for the
        operator (docs/operations.md, "An API key left behind"), and the change stands."""
        try:
            self._keys().delete(key.api_key_id)
        except Exception as exc:  # noqa: BLE001 - the token's change is written; report the key
            _left_behind(client_id, f"delete API key {key.api_key_id}", exc)

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


def _left_behind(client_id: str, what: str, exc: Exception) -> None:
    logger.error(
        "API Gateway left as it should not be: %s failed",
        what,
        extra={
            "client_id": client_id,
            "reason": "orphaned_api_key",
            "detail": getattr(exc, "message", type(exc).__name__),
        },
    )


class _Undo:
    """What to call, newest first, to take back API Gateway changes when a later step
    fails: `with undo:` runs them and re-raises. An undo that fails is logged and the rest
    still run; the caller gets the original error."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, step: Callable[[], None]) -> None:
        self._steps.append((what, step))

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as failed:  # noqa: BLE001 - every undo gets its turn
                _left_behind(self.client_id, what, failed)


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


# How each field a PATCH may give is checked as a person sets it (the bindings normalised; an
# empty one unbinds); a field not listed is taken as given.
_VALIDATE: Final[dict[str, Callable[[Any], Any]]] = {
    "name": validate_name,
    "owner": validate_owner,
    "routes": validate_routes,
    "scopes": validate_scopes,
    "bound_cidrs": validate_cidrs,
    "bound_apis": validate_apis,
}


def _changes(*, owner: str | None, clear_owner: bool, **given: Any) -> dict[str, Any]:
    """The fields given (not None), each validated, in the order given; `owner` also when
    `clear_owner` (None clears it)."""
    fields = {"name": given.pop("name")}
    if owner is not None or clear_owner:
        fields["owner"] = owner
    fields |= given
    return {
        name: _VALIDATE.get(name, _as_given)(value)
        for name, value in fields.items()
        if value is not None or name == "owner"
    }


def _as_given(value: Any) -> Any:
    return value


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
