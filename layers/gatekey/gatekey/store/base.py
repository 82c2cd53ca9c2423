"""The store port: what the rest of Gatekey may ask of wherever tokens live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from gatekey.errors import ValidationError
from gatekey.model import AuditEvent, ServiceToken, TokenStatus

T = TypeVar("T")

MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None = None


def validate_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError("limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return limit


class TokenStore(ABC):
    """Every change is conditional and writes an audit item in the same transaction.

    `update` and `delete` take the token as it was read: its `version` is the optimistic lock.
    They raise NotFound, InvalidTransition (the stored token is revoked) or
    ConcurrentModification (someone else wrote first), and then nothing was written.
    Methods taking a client_id raise MalformedCredential before any I/O when it is malformed.
    """

    @abstractmethod
    def create(self, token: ServiceToken, event: AuditEvent) -> ServiceToken: ...

    @abstractmethod
    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken: ...

    @abstractmethod
    def list(
        self,
        *,
        limit: int = 50,
        next_token: str | None = None,
        name: str | None = None,
        status: TokenStatus | None = None,
    ) -> Page[ServiceToken]: ...

    @abstractmethod
    def update(self, token: ServiceToken, event: AuditEvent) -> ServiceToken:
        """Write `token` (read at `token.version`); return it as stored, at version + 1."""

    @abstractmethod
    def delete(self, token: ServiceToken, event: AuditEvent) -> None: ...

    @abstractmethod
    def events(
        self, client_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> Page[AuditEvent]:
        """The token's audit trail, newest first (in the order written within one second).
        The trail outlives a deleted token until its TTL."""

    @abstractmethod
    def due_for_expiry(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        """Client IDs of active tokens expiring at or before `before`, soonest first."""

    @abstractmethod
    def grace_ended(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        """Client IDs of tokens whose previous secret's grace ended at or before `before`."""

    @abstractmethod
    def idle_since_before(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        """Client IDs of active, enabled, unexpired tokens whose idle clock started at or
        before `before` (creation, re-enabling or the last recorded use), oldest first."""

    @abstractmethod
    def record_last_seen(self, client_id: str, now: int, min_interval: int) -> bool:
        """Set `last_seen_at` unless written within `min_interval` seconds; True if written."""
