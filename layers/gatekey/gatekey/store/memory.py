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
from gatekey.store import items
from gatekey.store.base import Page, TokenStore, validate_limit

T = TypeVar("T")
_POSITION = frozenset({"position"})


def _page(
    rows: Sequence[T], limit: int, next_token: str | None, keep: Callable[[T], bool]
) -> Page[T]:
    start = items.decode_page_token(next_token, _POSITION)
    offset = int(start["position"]["N"]) if start else 0
    window = rows[offset : offset + validate_limit(limit)]
    end = offset + len(window)
    token = items.encode_page_token({"position": {"N": str(end)}}) if end < len(rows) else None
    return Page([row for row in window if keep(row)], token)


class InMemoryTokenStore(TokenStore):
    def __init__(self) -> None:
        self._tokens: dict[str, ServiceToken] = {}
        self._events: dict[str, list[AuditEvent]] = {}
        self._lock = threading.Lock()

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
    ) -> Page[ServiceToken]:
        rows = sorted(
            (t for t in self._tokens.values() if name is None or t.name == name),
            key=lambda t: (t.name, t.client_id),
        )
        return _page(rows, limit, next_token, lambda t: status is None or t.status is status)

    def update(self, token: ServiceToken, event: AuditEvent) -> ServiceToken:
        with self._lock:
            current = self._check(token, revoked_is_final=True)
            stored = replace(token, version=token.version + 1, last_seen_at=current.last_seen_at)
            self._tokens[token.client_id] = stored
            self._audit(event)
            return stored

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
    # Kept in step with store/items.py's token_to_plain.

    def due_for_expiry(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        def expiry(t: ServiceToken) -> int | None:
            return None if items.lifecycle_done(t) else t.expires_at

        return self._ids_before(expiry, before, limit, next_token)

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
            in_index = t.enabled and not items.lifecycle_done(t)
            return t.idle_since if in_index else None

        return self._ids_before(idle_since, before, limit, next_token)

    def _ids_before(
        self,
        sort_key: Callable[[ServiceToken], int | None],
        before: int,
        limit: int,
        next_token: str | None,
    ) -> Page[str]:
        keyed = ((sort_key(t), t.client_id) for t in self._tokens.values())
        rows = sorted((key, client_id) for key, client_id in keyed if key is not None)
        ids = [client_id for key, client_id in rows if key <= before]
        return _page(ids, limit, next_token, lambda _: True)

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
