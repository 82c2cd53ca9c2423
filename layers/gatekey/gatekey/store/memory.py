"""An in-memory adapter of the store port, for fast unit tests of code that uses a store.

It keeps the DynamoDB adapter's contract (conditional writes, audit items, version checks, pages
cut before filtering) so a unit test cannot pass here and fail against DynamoDB for that reason.
Integration and end-to-end tests use the DynamoDB adapter, never this one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from gatekey.credentials import parse_client_id
from gatekey.errors import AlreadyExists, ConcurrentModification, InvalidTransition, NotFound
from gatekey.model import AuditEvent, ServiceToken, TokenStatus
from gatekey.revocations import AccessTokenRevocations
from gatekey.store import layout
from gatekey.store.base import Page, RunState, TokenStore, validate_limit
from gatekey.store.due import DueSchedule, next_due_at

T = TypeVar("T")
_POSITION = frozenset({"position"})
_INDEX_POSITION = frozenset({"key", "client_id"})


def _page(
    rows: Sequence[T], limit: int, next_token: str | None, keep: Callable[[T], bool]
) -> Page[T]:
    start = layout.decode_page_token(next_token, _POSITION)
    offset = int(start["position"]["N"]) if start else 0
    window = rows[offset : offset + validate_limit(limit)]
    end = offset + len(window)
    token = layout.encode_page_token({"position": {"N": str(end)}}) if end < len(rows) else None
    return Page([row for row in window if keep(row)], token)


class InMemoryTokenStore(TokenStore):
    def __init__(self, schedule: DueSchedule | None = None) -> None:
        self._tokens: dict[str, ServiceToken] = {}
        self._events: dict[str, list[AuditEvent]] = {}
        self._run: RunState | None = None
        self._lock = threading.Lock()
        self.schedule = schedule or DueSchedule()

    def create(self, token: ServiceToken, event: AuditEvent) -> ServiceToken:
        with self._lock:
            if token.client_id in self._tokens:
                raise AlreadyExists(f"service token {token.client_id} already exists")
            token = replace(token, version=1)
            self._tokens[token.client_id] = token
            self._audit(event)
            return token

    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken:
        parse_client_id(client_id)
        try:
            return self._tokens[client_id]
        except KeyError:
            raise NotFound(f"service token {client_id} does not exist") from None

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
        rows = sorted(
            (
                t
                for t in self._tokens.values()
                if (name is None or t.name == name)
                and (name_prefix is None or t.name.startswith(name_prefix))
            ),
            key=lambda t: (t.name, t.client_id),
        )
        return _page(
            rows,
            limit,
            next_token,
            lambda t: (
                (status is None or t.status is status) and (owner is None or t.owner == owner)
            ),
        )

    def update(
        self, token: ServiceToken, event: AuditEvent, *, if_unused: bool = False
    ) -> ServiceToken:
        with self._lock:
            current = self._check(token, revoked_is_final=True)
            if if_unused and (current.last_seen_at, current.idle_since) != (
                token.last_seen_at,
                token.idle_since,
            ):
                raise ConcurrentModification(
                    f"service token {token.client_id} was used since it was read"
                )
            # As DynamoDB's: the authorizer's last_seen_at and the revoked access tokens stay as
            # stored, and the caller gets back its own copy at the next version.
            written = replace(token, version=token.version + 1)
            self._tokens[token.client_id] = replace(
                written,
                last_seen_at=current.last_seen_at,
                revoked_access_tokens=current.revoked_access_tokens,
            )
            self._audit(event)
            return written

    def delete(self, token: ServiceToken, event: AuditEvent) -> None:
        with self._lock:
            self._check(token, revoked_is_final=False)
            del self._tokens[token.client_id]
            self._audit(event)

    def events(
        self, client_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> Page[AuditEvent]:
        parse_client_id(client_id)
        rows = self._events.get(client_id, [])[::-1]
        return _page(rows, limit, next_token, lambda _: True)

    # The sparse indexes: the sort key of a token in the index, or None when it is not in it.
    # Kept in step with store/layout.py's token_to_plain. Every token here is written with its
    # due time, so none is unscheduled and reindexing has nothing to store.

    def due(self, before: int, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        return self._ids_before(lambda t: next_due_at(t, self.schedule), before, limit, next_token)

    def unscheduled(self, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        validate_limit(limit)
        layout.decode_page_token(next_token, _INDEX_POSITION)
        return Page([])

    def reindex(self, token: ServiceToken) -> bool:
        current = self._tokens.get(token.client_id)
        return current is not None and current.version == token.version

    def grace_ended(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        def grace_end(t: ServiceToken) -> int | None:
            return None if t.previous_secret_hash is None else t.previous_client_secret_expires_at

        return self._ids_before(grace_end, before, limit, next_token)

    def idle_since_before(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        def idle_since(t: ServiceToken) -> int | None:
            in_index = t.enabled and not layout.lifecycle_done(t)
            return t.idle_since if in_index else None

        return self._ids_before(idle_since, before, limit, next_token)

    def _ids_before(
        self,
        sort_key: Callable[[ServiceToken], int | None],
        before: int,
        limit: int,
        next_token: str | None,
    ) -> Page[str]:
        """Pages by position in the index, as DynamoDB's do: after the last (key, client_id)
        returned, so tokens leaving the index between pages make no one else skipped."""
        start = layout.decode_page_token(next_token, _INDEX_POSITION)
        after = (int(start["key"]["N"]), start["client_id"]["S"]) if start else None
        keyed = ((sort_key(t), t.client_id) for t in list(self._tokens.values()))
        rows = sorted(
            (key, client_id)
            for key, client_id in keyed
            if key is not None and key <= before and (after is None or (key, client_id) > after)
        )
        window = rows[: validate_limit(limit)]
        token = None
        if len(rows) > len(window):
            key, client_id = window[-1]
            last = {"key": {"N": str(key)}, "client_id": {"S": client_id}}
            token = layout.encode_page_token(last)
        return Page([client_id for _, client_id in window], token)

    def record_last_seen(self, client_id: str, now: int, min_interval: int) -> bool:
        parse_client_id(client_id)
        with self._lock:
            token = self._tokens.get(client_id)
            if token is None or (
                token.last_seen_at is not None and token.last_seen_at > now - min_interval
            ):
                return False
            self._tokens[client_id] = replace(token, last_seen_at=now, idle_since=now)
            return True

    def save_revocations(
        self,
        client_id: str,
        revocations: AccessTokenRevocations,
        *,
        read_version: int,
        event: AuditEvent,
    ) -> bool:
        with self._lock:
            current = self.get(client_id)
            if current.revoked_access_tokens.version != read_version:
                return False
            self._tokens[client_id] = replace(current, revoked_access_tokens=revocations)
            self._audit(event)
            return True

    def run_state(self) -> RunState | None:
        return self._run

    def save_run_state(self, state: RunState, *, replaces: str | None) -> bool:
        with self._lock:
            if replaces is not None and (self._run is None or self._run.run_id != replaces):
                return False
            self._run = state
            return True

    def _check(self, token: ServiceToken, *, revoked_is_final: bool) -> ServiceToken:
        current = self.get(token.client_id)
        if revoked_is_final and current.status is TokenStatus.REVOKED:
            raise InvalidTransition(
                f"service token {token.client_id} is revoked; revocation is final"
            )
        if current.version != token.version:
            raise ConcurrentModification(
                f"service token {token.client_id} was changed by someone else (now at version "
                f"{current.version}); read it again and retry"
            )
        return current

    def _audit(self, event: AuditEvent) -> None:
        self._events.setdefault(event.client_id, []).append(event)
