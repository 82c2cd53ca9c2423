"""The service token and its audit events, with the validation of every field a person sets.

Times are whole epoch seconds (UTC). A token never holds a plaintext secret: only `SecretHash`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Final, TypeAlias

from gatekey.bindings import validate_apis, validate_cidrs
from gatekey.credentials import ClientSecret, generate_client_id, parse_client_id
from gatekey.durations import DEFAULT_TOKEN_DURATION, Duration
from gatekey.errors import (
    InvalidCredentials,
    SecretRotated,
    TokenDisabled,
    TokenExpired,
    TokenRevoked,
    ValidationError,
)
from gatekey.hashing import Hasher, SecretHash
from gatekey.revocations import NO_REVOCATIONS, AccessTokenRevocations
from gatekey.usage_plans import PlanKey

MAX_NAME_LENGTH: Final = 128
MAX_ROUTES: Final = 100
MAX_SCOPES: Final = 50
# The scopes of a token, space-separated, at most: an access token carrying all of them stays
# within KMS's 4096-byte limit on what it signs (and the authorizer's 8 KB token limit).
MAX_SCOPES_LENGTH: Final = 1024
ALL_ROUTES: Final = "*"
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"})
# RFC 6749 appendix A.4: scope-token = 1*NQCHAR (printable ASCII but space, '"' and '\').
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")
_PATH = re.compile(r"/[A-Za-z0-9\-._~%!$&'()*+,;=:@/{}]{0,511}")
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9_/+=.@-]{1,512}"
)
MAX_OWNER_LENGTH: Final = 254


class TokenStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class RotationMode(StrEnum):
    REMIND = "remind"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    mode: RotationMode = RotationMode.REMIND
    delivery_secret_arn: str | None = None

    def __post_init__(self) -> None:
        if self.mode is RotationMode.AUTO and not self.delivery_secret_arn:
            raise ValidationError("rotation.delivery_secret_arn", "is required for 'auto'")
        if self.mode is RotationMode.REMIND and self.delivery_secret_arn:
            raise ValidationError("rotation.delivery_secret_arn", "is only used with 'auto'")
        arn = self.delivery_secret_arn
        if arn is not None and not _SECRET_ARN.fullmatch(arn):
            raise ValidationError("rotation.delivery_secret_arn", "must be a Secrets Manager ARN")


# Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties.txt), which render
# as nothing, and the blank braille pattern: isprintable() lets some of them through (Hangul
# fillers, variation selectors, the combining grapheme joiner).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def _printable(value: str) -> bool:
    """No control, format (bidi overrides, zero-width), invisible, separator other than the
    ASCII space, or unassigned characters, and no surrounding spaces: what a name or owner
    shows in a table, a notification or an e-mail is what it is."""
    return value.isprintable() and value == value.strip() and not _INVISIBLE.search(value)


def validate_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("name", "must be a string")
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise ValidationError("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
    if not _printable(value):
        raise ValidationError(
            "name", "must be printable, without control characters or surrounding spaces"
        )
    return value


def validate_owner(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_OWNER_LENGTH:
        raise ValidationError("owner", f"must be 1 to {MAX_OWNER_LENGTH} characters")
    if not _printable(value):
        raise ValidationError(
            "owner",
            "must be printable, without control, bidi or zero-width characters or surrounding "
            "spaces",
        )
    return value


def validate_route(value: object) -> str:
    """A route pattern: ``*`` (every route) or ``METHOD /path`` where `*` is a wildcard."""
    if value == ALL_ROUTES:
        return ALL_ROUTES
    if not isinstance(value, str) or not value.isascii():
        raise ValidationError("routes", "each route must be an ASCII string such as 'GET /items/*'")
    method, _, path = value.partition(" ")
    if method not in HTTP_METHODS or not _PATH.fullmatch(path):
        raise ValidationError(
            "routes", "each route must be '*' or 'METHOD /path' (for example 'GET /items/*')"
        )
    return value


def _validate_list(value: object, field_name: str, limit: int) -> list[object]:
    if not isinstance(value, list | tuple):
        raise ValidationError(field_name, "must be a list of strings")
    if len(value) > limit:
        raise ValidationError(field_name, f"must have at most {limit} entries")
    return list(value)


def validate_routes(value: object) -> tuple[str, ...]:
    routes = tuple(validate_route(r) for r in _validate_list(value, "routes", MAX_ROUTES))
    if not routes:
        raise ValidationError("routes", "must not be empty (use ['*'] for every route)")
    return tuple(dict.fromkeys(routes))


def validate_scopes(value: object) -> tuple[str, ...]:
    """Scopes a person sets: valid one by one, and few enough to fit in an access token."""
    scopes = _scopes(value)
    if len(" ".join(scopes)) > MAX_SCOPES_LENGTH:
        raise ValidationError(
            "scopes", f"must be at most {MAX_SCOPES_LENGTH} characters in all, with spaces"
        )
    return scopes


def _scopes(value: object) -> tuple[str, ...]:
    scopes = _validate_list(value, "scopes", MAX_SCOPES)
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise ValidationError(
                "scopes", "each scope must be 1 to 128 printable ASCII characters without spaces"
            )
    return tuple(dict.fromkeys(str(s) for s in scopes))


def rfc3339(epoch: int | None) -> str | None:
    """An epoch second as an RFC 3339 UTC timestamp (None stays None)."""
    if epoch is None:
        return None
    return _rfc3339(epoch)


@functools.lru_cache(maxsize=1024)  # the authorizer formats a token's expiry on every Allow
def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Milestone(Enum):
    """What a token's notice bookkeeping holds besides reminders. The values are the numbers
    each has always been known by outside: in notice ids, run reports and audit details."""

    EXPIRED = 0  # the expiry notice
    ROTATED = -1  # the notice of an automatic rotation, sent before the expiry moves
    IDLE = -2  # the notice of disabling an idle token, sent as it is disabled
    # Not a notice: the staged secret (`delivery_pending`) is AWSCURRENT, the one the consumer
    # reads.
    PROMOTED = -3


EXPIRED: Final = Milestone.EXPIRED
ROTATED: Final = Milestone.ROTATED
IDLE: Final = Milestone.IDLE
PROMOTED: Final = Milestone.PROMOTED

# A reminder, as the number of days before expiry it is sent (positive), or a milestone.
NoticeKey: TypeAlias = int | Milestone


def number(key: NoticeKey) -> int:
    """The key as notice ids, run reports and audit details show it."""
    return key if isinstance(key, int) else key.value


def superseded(key: NoticeKey, sent: tuple[NoticeKey, ...]) -> bool:
    """Whether the reminder `key` is moot once the notices `sent` went out: a more urgent
    reminder, or the expiry notice, has been sent. Other notices never are."""
    if isinstance(key, Milestone):
        return False
    return any(s is EXPIRED or (isinstance(s, int) and s < key) for s in sent)


def _check_keys(keys: tuple[NoticeKey, ...], field_name: str) -> None:
    for key in keys:
        if not isinstance(key, Milestone) and (not isinstance(key, int) or key < 1):
            raise ValueError(f"{field_name}: {key!r} is neither a reminder (days) nor a milestone")


@dataclass(frozen=True, slots=True)
class PendingNotice:
    """A notice being sent: claimed at `claimed_at` (0: released, free to claim), with the
    channels it has already gone out on, so a retry completes it without repeating any."""

    key: NoticeKey  # the reminder (days before expiry) or milestone it is
    claimed_at: int
    done: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_keys((self.key,), "key")


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """Which of a token's secrets a presented one matched, and until when it is accepted."""

    version: int  # the token's client_secret_version, or the one before it within the grace
    valid_until: int | None  # None: as long as the token (which never expires)


@dataclass(frozen=True, slots=True)
class ServiceToken:
    client_id: str
    name: str
    secret_hash: SecretHash
    created_at: int
    updated_at: int
    expires_at: int | None
    duration: Duration = DEFAULT_TOKEN_DURATION
    owner: str | None = None
    routes: tuple[str, ...] = (ALL_ROUTES,)
    scopes: tuple[str, ...] = ()
    enabled: bool = True
    status: TokenStatus = TokenStatus.ACTIVE
    client_secret_version: int = 1
    previous_secret_hash: SecretHash | None = None
    previous_client_secret_expires_at: int | None = None
    last_seen_at: int | None = None
    # Start of the idle clock: creation, re-enabling or the last use, whichever is latest
    # (given as 0: creation). The store keeps it beside last_seen_at for the by-idle index.
    idle_since: int = 0
    rotation: RotationPolicy = field(default_factory=RotationPolicy)
    # Lifecycle bookkeeping for the current expires_at (reset when it moves): the reminders
    # and other notices already sent (and PROMOTED, not a notice: the staged secret is
    # current), and those a run has claimed and is sending.
    reminders_sent: tuple[NoticeKey, ...] = ()
    reminders_pending: tuple[PendingNotice, ...] = ()
    # An automatic rotation whose new secret is accepted but not yet AWSCURRENT in the delivery
    # secret: the staged version id. The expiry moves only once it is current.
    delivery_pending: str | None = None
    # Optimistic lock: the version this copy was read at. The store writes version + 1.
    version: int = 1
    # Access tokens revoked before their exp (gatekey.revocations). Written only by the
    # store's `save_revocations`, under a lock of its own; `update` leaves them as stored.
    revoked_access_tokens: AccessTokenRevocations = NO_REVOCATIONS
    # -- bindings (gatekey.bindings): empty, not bound --
    # The source addresses it may be used from: normalised CIDR blocks.
    bound_cidrs: tuple[str, ...] = ()
    # The APIs it may reach: '<api id>' (every stage) or '<api id>/<stage>'.
    bound_apis: tuple[str, ...] = ()
    # The CloudFormation stack (its ARN) that declared the token as a Custom::GatekeyServiceToken,
    # set at creation and never changed: only that stack's requests may change or remove it.
    managed_by: str | None = None
    # Usage plan (gatekey.usage_plans): the plan and the API Gateway API key Gatekey owns for
    # the token, whose value the authorizer answers as usageIdentifierKey. None: unmetered.
    usage_plan: PlanKey | None = None
    # DPoP (RFC 9449): the token endpoint issues this client only DPoP-bound access tokens,
    # and refuses a request without a proof (README, "DPoP").
    dpop_required: bool = False

    def __post_init__(self) -> None:
        parse_client_id(self.client_id)
        # Name and owner are checked where a person sets them (new_service_token,
        # TokenAdmin.update), not here: one stored before a stricter rule must not lock its
        # bot out.
        # Normalised (deduplicated, tuples) so every copy of a token compares and stores alike.
        object.__setattr__(self, "routes", validate_routes(self.routes))
        object.__setattr__(self, "scopes", _scopes(self.scopes))
        _check_keys(self.reminders_sent, "reminders_sent")
        object.__setattr__(self, "bound_cidrs", validate_cidrs(self.bound_cidrs))
        object.__setattr__(self, "bound_apis", validate_apis(self.bound_apis))
        if not self.idle_since:
            object.__setattr__(self, "idle_since", self.created_at)

    def idle_clock(self) -> int:
        """When the token was last known in use (or created, or re-enabled)."""
        return max(self.idle_since, self.last_seen_at or 0)

    def is_expired(self, now: int) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def authenticate(self, secret: ClientSecret, hasher: Hasher, now: int) -> SecretMatch:
        """Raise unless `secret` is this token's current secret (or its previous one, within
        the grace) and the token is active, enabled and unexpired; say which secret it was.
        Callers must not tell the client which check failed; the reason is for logs and
        metrics."""
        grace_ends = self.previous_client_secret_expires_at or 0
        if hasher.verify(secret, self.secret_hash):
            version = self.client_secret_version
        elif (
            self.previous_secret_hash is not None
            and now < grace_ends
            and hasher.verify(secret, self.previous_secret_hash)
        ):
            version = self.client_secret_version - 1
        else:
            raise InvalidCredentials(f"secret does not match service token {self.client_id}")
        self.ensure_usable(now)
        return SecretMatch(version, self.secret_valid_until(version, now))

    def secret_valid_until(self, version: int, now: int) -> int | None:
        """Until when what secret `version` obtains (the secret itself, or an access token
        minted with it) is accepted: the current secret's until the token expires (None:
        never), the previous one's until its grace ends. Any other version is SecretRotated:
        a rotation ends the access tokens of the secrets it replaced."""
        if version == self.client_secret_version:
            return self.expires_at
        grace_ends = self.previous_client_secret_expires_at
        if (
            version == self.client_secret_version - 1
            and self.previous_secret_hash is not None
            and grace_ends is not None
            and now < grace_ends
        ):
            return grace_ends if self.expires_at is None else min(grace_ends, self.expires_at)
        raise SecretRotated(
            f"service token {self.client_id} no longer accepts its secret version {version}"
        )

    def ensure_usable(self, now: int) -> None:
        """Raise unless the token is active, enabled and unexpired: what any credential of it,
        a secret or an access token, needs to be accepted."""
        if self.status is TokenStatus.REVOKED:
            raise TokenRevoked(f"service token {self.client_id} is revoked")
        if not self.enabled:
            raise TokenDisabled(f"service token {self.client_id} is disabled")
        if self.is_expired(now):
            raise TokenExpired(f"service token {self.client_id} has expired")


def new_service_token(
    *,
    name: str,
    hasher: Hasher,
    now: int,
    duration: Duration = DEFAULT_TOKEN_DURATION,
    owner: str | None = None,
    routes: tuple[str, ...] = (ALL_ROUTES,),
    scopes: tuple[str, ...] = (),
    rotation: RotationPolicy | None = None,
    client_id: str | None = None,
    secret: ClientSecret | None = None,
    bound_cidrs: tuple[str, ...] = (),
    bound_apis: tuple[str, ...] = (),
    managed_by: str | None = None,
    dpop_required: bool = False,
) -> tuple[ServiceToken, ClientSecret]:
    """A new token and its plaintext secret. The secret is returned once and never stored.
    An imported token brings its own `client_id` and `secret` (checked by the caller); by
    default both are generated."""
    secret = secret or ClientSecret.generate()
    token = ServiceToken(
        client_id=client_id or generate_client_id(),
        name=validate_name(name),
        secret_hash=hasher.hash(secret),
        created_at=now,
        updated_at=now,
        expires_at=duration.after(now),
        duration=duration,
        owner=validate_owner(owner),
        routes=routes,
        scopes=validate_scopes(scopes),
        rotation=rotation or RotationPolicy(),
        bound_cidrs=bound_cidrs,
        bound_apis=bound_apis,
        managed_by=managed_by,
        dpop_required=dpop_required,
    )
    return token, secret


class AuditAction(StrEnum):
    CREATED = "created"
    IMPORTED = "imported"  # created with a Client ID and Secret brought from elsewhere
    UPDATED = "updated"
    ROTATED = "rotated"
    REFRESHED = "refreshed"
    ENABLED = "enabled"
    DISABLED = "disabled"
    REVOKED = "revoked"
    DELETED = "deleted"
    EXPIRED = "expired"
    REMINDER_CLAIMED = "reminder_claimed"
    REMINDER_RELEASED = "reminder_released"
    REMINDED = "reminded"
    NOTIFIED = "notified"
    GRACE_ENDED = "grace_ended"
    ACCESS_TOKEN_REVOKED = "access_token_revoked"


AuditValue = str | int | bool | None | list[str]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which token, when and from where. Details never hold a secret or a hash."""

    client_id: str
    action: AuditAction
    actor: str
    at: int
    source_ip: str | None = None
    details: dict[str, AuditValue] = field(default_factory=dict)
