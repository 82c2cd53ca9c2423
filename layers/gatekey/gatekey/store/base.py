"""The store port: what the rest of Gatekey may ask of wherever tokens live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from gatekey.errors import ValidationError
from gatekey.model import AuditEvent, ServiceToken, TokenStatus
from gatekey.revocations import AccessTokenRevocations
from gatekey.store.due import DueSchedule

T = TypeVar("T")

MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class RunState:
    """Where the lifecycle run `run_id` stands: it works through what fell due at or before
    `due_before`; per source of work it reads, the page token to go on from, or None once read
    to its end (a source not begun is absent)."""

    run_id: str
    due_before: int
    positions: Mapping[str, str | None] = field(default_factory=dict)

    def finished(self, sources: Iterable[str]) -> bool:
        return all(name in self.positions and self.positions[name] is None for name in sources)


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

    Every write of a token also stores when its lifecycle work is next due under `schedule`
    (store/due.py), which `due` reads.
    """

    schedule: DueSchedule = DueSchedule()

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
        name_prefix: str | None = None,
        owner: str | None = None,
    ) -> Page[ServiceToken]:
        """Tokens by name. `name` (exact) or `name_prefix` narrow the index read itself;
        `status` and `owner` filter each page after it is read, so a page may hold fewer than
        `limit` tokens (even none) and still have a next page."""

    @abstractmethod
    def update(
        self, token: ServiceToken, event: AuditEvent, *, if_unused: bool = False
    ) -> ServiceToken:
        """Write `token` (read at `token.version`); return it as stored, at version + 1.
        With `if_unused`, only if no use was recorded since it was read (`last_seen_at` and
        `idle_since` unchanged), else ConcurrentModification."""

    @abstractmethod
    def delete(self, token: ServiceToken, event: AuditEvent) -> None: ...

    @abstractmethod
    def events(
        self, client_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> Page[AuditEvent]:
        """The token's audit trail, newest first (in the order written within one second).
        The trail outlives a deleted token until its TTL."""

    @abstractmethod
    def due(self, before: int, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        """Client IDs of tokens whose lifecycle work (store/due.py) falls due at or before
        `before`, soonest first. Paging goes by position: a token whose due time moved after
        its page was read is not returned again by the pages after it."""

    @abstractmethod
    def unscheduled(self, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        """Client IDs of tokens last written before due times were stored (by an earlier
        release): `reindex` or any update schedules them."""

    @abstractmethod
    def reindex(self, token: ServiceToken) -> bool:
        """Store when `token`'s lifecycle work is next due, as computed from `token`, if the
        stored token is still at `token.version`; True if written. Not a change: no audit
        item, no new version."""

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

    @abstractmethod
    def save_revocations(
        self,
        client_id: str,
        revocations: AccessTokenRevocations,
        *,
        read_version: int,
        event: AuditEvent,
    ) -> bool:
        """Write the token's revoked access tokens, and nothing else of it, with `event`, if
        they are still at `read_version` (as read; 0: none ever written); False, and nothing
        written, when another revocation wrote first (read again and retry). NotFound when the
        token is gone. Not an `update`: the token's version stays, so a revocation and an admin
        change never stop each other, and `update` never writes these back."""

    @abstractmethod
    def run_state(self) -> RunState | None:
        """Where the lifecycle run stands (read consistently); None before the first run."""

    @abstractmethod
    def save_run_state(self, state: RunState, *, replaces: str | None) -> bool:
        """Record `state`. `replaces` None starts a new run over whatever was recorded; else
        the write happens only while the recorded run is `replaces`: False when a newer run
        took its place."""
