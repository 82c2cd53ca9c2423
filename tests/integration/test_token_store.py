"""The store contract, run against the DynamoDB adapter (moto) and the in-memory adapter alike."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from gatekey.durations import HOUR, Duration
from gatekey.errors import (
    AlreadyExists,
    ConcurrentModification,
    InvalidTransition,
    MalformedCredential,
    NotFound,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.introspection import revoke_access_token
from gatekey.model import (
    EXPIRED,
    AuditAction,
    AuditEvent,
    ServiceToken,
    TokenStatus,
    new_service_token,
)
from gatekey.revocations import AccessTokenRevocations
from gatekey.store import InMemoryTokenStore, Page, RunState, TokenStore
from support.constants import ADMIN, NOW


@pytest.fixture(params=["dynamodb", "memory"])
def any_store(request: pytest.FixtureRequest) -> TokenStore:
    if request.param == "memory":
        return InMemoryTokenStore()
    store: TokenStore = request.getfixturevalue("store")
    return store


def event(token: ServiceToken, action: AuditAction, at: int = NOW, **details: Any) -> AuditEvent:
    return AuditEvent(token.client_id, action, actor=ADMIN, at=at, details=details)


def create(
    store: TokenStore, hasher: Hasher, name: str = "bot", at: int = NOW, **fields: Any
) -> ServiceToken:
    token, _ = new_service_token(name=name, hasher=hasher, now=at, **fields)
    return store.create(token, event(token, AuditAction.CREATED, at))


def all_pages(fetch: Any, first: Page[Any] | None = None, **kwargs: Any) -> list[list[Any]]:
    """Every page after `first` (from the start without it)."""
    pages, next_token = [], None
    if first is not None:
        if first.next_token is None:
            return []
        next_token = first.next_token
    while True:
        page = fetch(next_token=next_token, **kwargs)
        pages.append(page.items)
        next_token = page.next_token
        if next_token is None:
            return pages


def test_created_token_reads_back_at_version_1_with_a_created_event(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher, owner="team@example.com", scopes=("read",))
    assert any_store.get(token.client_id, consistent=True) == token
    assert token.version == 1
    [created] = any_store.events(token.client_id).items
    assert (created.action, created.actor, created.at) == (AuditAction.CREATED, ADMIN, NOW)


def test_creating_an_existing_client_id_conflicts_and_writes_nothing(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    impostor = replace(token, name="impostor")
    with pytest.raises(AlreadyExists):
        any_store.create(impostor, event(impostor, AuditAction.CREATED))
    assert any_store.get(token.client_id).name == "bot"
    assert len(any_store.events(token.client_id).items) == 1


def test_unknown_token_is_not_found_and_malformed_id_fails_before_io(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    ghost, _ = new_service_token(name="ghost", hasher=unit_hasher, now=NOW)
    with pytest.raises(NotFound, match=ghost.client_id):
        any_store.get(ghost.client_id)
    with pytest.raises(MalformedCredential, match="client_id"):
        any_store.get("gk_not-a-real-id")
    with pytest.raises(MalformedCredential):
        any_store.events("nope")


def test_update_bumps_the_version_and_writes_an_audit_item(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    renamed = any_store.update(
        replace(token, updated_at=NOW + 10, name="renamed"),
        event(token, AuditAction.UPDATED, NOW + 10, name="renamed"),
    )
    assert renamed.version == 2
    stored = any_store.get(token.client_id, consistent=True)
    assert stored == renamed
    assert stored.name == "renamed"
    assert stored.updated_at == NOW + 10
    newest = any_store.events(token.client_id).items[0]
    assert newest.action is AuditAction.UPDATED
    assert newest.details == {"name": "renamed"}


def test_an_update_returns_the_token_it_was_given_at_the_next_version(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    # GIVEN a use recorded after the writer read the token
    token = create(any_store, unit_hasher)
    assert any_store.record_last_seen(token.client_id, NOW + 60, min_interval=30)
    # WHEN the writer writes its copy
    changed = replace(token, name="renamed", updated_at=NOW + 61)
    written = any_store.update(changed, event(token, AuditAction.UPDATED))
    # THEN it gets its copy back at the next version, while the store keeps the use
    assert written == replace(changed, version=2)
    assert any_store.get(token.client_id, consistent=True).last_seen_at == NOW + 60


def test_of_two_writers_holding_the_same_version_only_the_first_wins(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    # GIVEN two admins who read the token at the same version
    token = create(any_store, unit_hasher)
    first = any_store.get(token.client_id, consistent=True)
    second = any_store.get(token.client_id, consistent=True)
    # WHEN both write
    any_store.update(
        replace(first, updated_at=NOW + 1, name="first"), event(first, AuditAction.UPDATED, NOW + 1)
    )
    with pytest.raises(ConcurrentModification, match="changed by someone else"):
        any_store.update(
            replace(second, updated_at=NOW + 2, scopes=("admin",)),
            event(second, AuditAction.UPDATED, NOW + 2),
        )
    # THEN the first write stands whole, the second left no trace, not even an audit item
    stored = any_store.get(token.client_id, consistent=True)
    assert (stored.name, stored.scopes, stored.version) == ("first", (), 2)
    actions = [e.action for e in any_store.events(token.client_id).items]
    assert actions == [AuditAction.UPDATED, AuditAction.CREATED]


def test_a_revoked_token_cannot_be_reactivated_by_a_racing_or_later_write(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    stale = any_store.get(token.client_id, consistent=True)
    revoked = any_store.update(
        replace(stale, updated_at=NOW + 1, status=TokenStatus.REVOKED),
        event(stale, AuditAction.REVOKED),
    )
    # A racing enable that read before the revocation...
    with pytest.raises(InvalidTransition, match="revocation is final"):
        any_store.update(
            replace(stale, updated_at=NOW + 2, enabled=True), event(stale, AuditAction.ENABLED)
        )
    # ...and a write from a fresh read, which a careless caller might attempt, both fail.
    with pytest.raises(InvalidTransition):
        any_store.update(
            replace(revoked, updated_at=NOW + 3, status=TokenStatus.ACTIVE),
            event(revoked, AuditAction.ENABLED),
        )
    assert any_store.get(token.client_id, consistent=True).status is TokenStatus.REVOKED


def test_delete_checks_the_version_and_keeps_the_audit_trail(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    any_store.update(
        replace(token, updated_at=NOW + 1, name="v2"), event(token, AuditAction.UPDATED, NOW + 1)
    )
    with pytest.raises(ConcurrentModification):
        any_store.delete(token, event(token, AuditAction.DELETED))
    current = any_store.get(token.client_id, consistent=True)
    any_store.delete(current, event(current, AuditAction.DELETED, NOW + 2))
    with pytest.raises(NotFound):
        any_store.get(token.client_id, consistent=True)
    with pytest.raises(NotFound):
        any_store.delete(current, event(current, AuditAction.DELETED, NOW + 3))
    actions = [e.action for e in any_store.events(token.client_id).items]
    assert actions == [AuditAction.DELETED, AuditAction.UPDATED, AuditAction.CREATED]


def test_list_pages_through_every_token_once_sorted_by_name(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    created = {create(any_store, unit_hasher, name=f"bot-{i:02d}").client_id for i in range(25)}
    pages = all_pages(any_store.list, limit=10)
    assert [len(p) for p in pages] == [10, 10, 5]
    listed = [t for page in pages for t in page]
    assert {t.client_id for t in listed} == created
    assert [t.name for t in listed] == sorted(t.name for t in listed)


def test_list_filters_by_name_and_by_status(any_store: TokenStore, unit_hasher: Hasher) -> None:
    tokens = [create(any_store, unit_hasher, name=f"bot-{i % 3}") for i in range(9)]
    for token in tokens[:4]:
        any_store.update(
            replace(token, updated_at=NOW + 1, status=TokenStatus.REVOKED),
            event(token, AuditAction.REVOKED),
        )
    named = [t for page in all_pages(any_store.list, limit=2, name="bot-1") for t in page]
    assert sorted(t.client_id for t in named) == sorted(t.client_id for t in tokens[1::3])
    revoked = [
        t for page in all_pages(any_store.list, limit=3, status=TokenStatus.REVOKED) for t in page
    ]
    assert sorted(t.client_id for t in revoked) == sorted(t.client_id for t in tokens[:4])


def test_list_filters_by_name_prefix_and_by_owner(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    made = {
        (name, owner): create(any_store, unit_hasher, name=name, owner=owner).client_id
        for name, owner in (("ci-a", "ops"), ("ci-b", "dev"), ("cd-a", "ops"), ("c", "ops"))
    }

    def listed(**filters: Any) -> list[str]:
        return [t.client_id for page in all_pages(any_store.list, limit=1, **filters) for t in page]

    assert listed(name_prefix="ci-") == [made["ci-a", "ops"], made["ci-b", "dev"]]
    assert listed(name_prefix="c") == [made[k] for k in sorted(made)]
    assert listed(owner="ops") == [made["c", "ops"], made["cd-a", "ops"], made["ci-a", "ops"]]
    assert listed(owner="ops", name_prefix="ci") == [made["ci-a", "ops"]]
    assert listed(name_prefix="zz") == []


def test_bad_paging_input_is_a_validation_error(any_store: TokenStore) -> None:
    with pytest.raises(ValidationError, match="limit"):
        any_store.list(limit=0)
    with pytest.raises(ValidationError, match="limit"):
        any_store.list(limit=101)
    with pytest.raises(ValidationError, match="next_token"):
        any_store.list(next_token="garbage!")


def test_due_returns_tokens_whose_next_notice_is_due_soonest_first(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    # 30-day reminders fall due 30 days before expiry: at NOW - 28 days and NOW - 29 days
    due_late = create(any_store, unit_hasher, duration=Duration(48))
    due_soon = create(any_store, unit_hasher, duration=Duration(24))
    create(any_store, unit_hasher, duration=Duration(24 * 40))  # due in 10 days
    create(any_store, unit_hasher, duration=Duration(None))  # never due
    revoked = create(any_store, unit_hasher, duration=Duration(24))
    any_store.update(
        replace(revoked, updated_at=NOW, status=TokenStatus.REVOKED),
        event(revoked, AuditAction.REVOKED),
    )
    pages = all_pages(any_store.due, before=NOW, limit=1)
    assert [client_id for page in pages for client_id in page] == [
        due_soon.client_id,
        due_late.client_id,
    ]
    # Once its 1-day reminder is recorded, a token falls due at its expiry.
    reminded = any_store.get(due_late.client_id, consistent=True)
    any_store.update(
        replace(reminded, updated_at=NOW, reminders_sent=(1,)),
        event(reminded, AuditAction.REMINDED),
    )
    assert any_store.due(NOW).items == [due_soon.client_id]
    assert any_store.due(NOW + 48 * HOUR).items == [due_soon.client_id, due_late.client_id]
    assert any_store.unscheduled().items == []


def test_paging_through_due_tokens_misses_none_when_tokens_leave_between_pages(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    tokens = [create(any_store, unit_hasher, duration=Duration(24)) for _ in range(5)]
    first = any_store.due(NOW, limit=2)
    # GIVEN the tokens of the first page are worked on (their reminders sent) before the next
    for client_id in first.items:
        token = any_store.get(client_id, consistent=True)
        any_store.update(
            replace(token, updated_at=NOW, reminders_sent=(1,)), event(token, AuditAction.REMINDED)
        )
    # THEN the pages after it still hold every token not yet worked on
    rest = [c for page in all_pages(any_store.due, before=NOW, limit=2, first=first) for c in page]
    assert sorted(first.items + rest) == sorted(t.client_id for t in tokens)


def test_an_update_if_unused_fails_after_a_recorded_use_and_writes_nothing(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    read = any_store.get(token.client_id, consistent=True)
    # WHEN the authorizer records a use between the read and the write
    assert any_store.record_last_seen(token.client_id, NOW + 60, min_interval=30)
    with pytest.raises(ConcurrentModification, match="used since it was read"):
        any_store.update(
            replace(read, updated_at=NOW + 61, enabled=False),
            event(read, AuditAction.DISABLED),
            if_unused=True,
        )
    # THEN the token is still enabled, and only its creation is audited
    stored = any_store.get(token.client_id, consistent=True)
    assert (stored.enabled, stored.last_seen_at, stored.version) == (True, NOW + 60, 1)
    assert len(any_store.events(token.client_id).items) == 1
    # AND a write from a read that saw the use goes through
    any_store.update(
        replace(stored, updated_at=NOW + 62, enabled=False),
        event(stored, AuditAction.DISABLED),
        if_unused=True,
    )
    assert not any_store.get(token.client_id, consistent=True).enabled


def test_reindex_writes_nothing_over_a_newer_version(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    assert any_store.reindex(token)
    any_store.update(
        replace(token, updated_at=NOW, name="renamed"), event(token, AuditAction.UPDATED)
    )
    assert not any_store.reindex(token)
    stored = any_store.get(token.client_id, consistent=True)
    assert (stored.name, stored.version) == ("renamed", 2)


def test_a_run_state_is_kept_until_a_newer_run_replaces_it(any_store: TokenStore) -> None:
    assert any_store.run_state() is None
    first = RunState("run-1", NOW)
    assert any_store.save_run_state(first, replaces=None)
    progress = RunState("run-1", NOW, {"due": None, "grace": "next-page"})
    assert any_store.save_run_state(progress, replaces="run-1")
    assert any_store.run_state() == progress
    assert progress.finished(["due"])
    assert not progress.finished(["due", "grace", "idle"])
    # A newer run takes over: the older one's progress is refused from then on.
    assert any_store.save_run_state(RunState("run-2", NOW + 86_400), replaces=None)
    assert not any_store.save_run_state(progress, replaces="run-1")
    assert any_store.run_state() == RunState("run-2", NOW + 86_400)


def test_idle_index_holds_usable_tokens_by_last_use_or_creation_oldest_first(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    never_seen = create(any_store, unit_hasher)
    seen_late = create(any_store, unit_hasher)
    seen_early = create(any_store, unit_hasher)
    disabled = create(any_store, unit_hasher)
    any_store.update(
        replace(disabled, updated_at=NOW, enabled=False), event(disabled, AuditAction.DISABLED)
    )
    expired_and_told = create(any_store, unit_hasher)
    any_store.update(
        replace(expired_and_told, updated_at=NOW, reminders_sent=(EXPIRED,)),
        event(expired_and_told, AuditAction.EXPIRED),
    )
    any_store.record_last_seen(seen_late.client_id, NOW + 300, min_interval=60)
    any_store.record_last_seen(seen_early.client_id, NOW + 100, min_interval=60)
    pages = all_pages(any_store.idle_since_before, before=NOW + 200, limit=1)
    assert [client_id for page in pages for client_id in page] == [
        never_seen.client_id,
        seen_early.client_id,
    ]
    assert any_store.get(seen_late.client_id, consistent=True).idle_clock() == NOW + 300


def test_last_seen_is_written_at_most_once_per_interval_and_survives_updates(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    assert any_store.record_last_seen(token.client_id, NOW + 100, min_interval=300)
    assert not any_store.record_last_seen(token.client_id, NOW + 200, min_interval=300)
    assert any_store.record_last_seen(token.client_id, NOW + 400, min_interval=300)
    # An admin change made from a copy read earlier does not move last_seen_at back.
    any_store.update(
        replace(token, updated_at=NOW + 500, name="x"), event(token, AuditAction.UPDATED)
    )
    stored = any_store.get(token.client_id, consistent=True)
    assert stored.last_seen_at == NOW + 400
    assert stored.version == 2


def test_events_page_newest_first(any_store: TokenStore, unit_hasher: Hasher) -> None:
    token = create(any_store, unit_hasher)
    for i in range(1, 6):
        token = any_store.update(
            replace(token, updated_at=NOW + i, name=f"n{i}"),
            event(token, AuditAction.UPDATED, NOW + i, name=f"n{i}"),
        )
    pages = all_pages(any_store.events, client_id=token.client_id, limit=4)
    assert [len(p) for p in pages] == [4, 2]
    assert [e.at for page in pages for e in page] == [NOW + i for i in range(5, -1, -1)]


def test_revoked_access_tokens_are_written_only_over_the_version_read(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token = create(any_store, unit_hasher)
    first = AccessTokenRevocations((("a" * 22, NOW + 3600),), 0, 1)
    revoked = event(token, AuditAction.ACCESS_TOKEN_REVOKED, jti="a" * 22, exp=NOW + 3600)
    assert any_store.save_revocations(token.client_id, first, read_version=0, event=revoked)
    # A second writer that read before the first wrote loses, and writes nothing.
    lost = AccessTokenRevocations((("b" * 22, NOW + 3600),), 0, 1)
    assert not any_store.save_revocations(token.client_id, lost, read_version=0, event=revoked)
    second = AccessTokenRevocations((*first.ids, ("b" * 22, NOW + 60)), NOW, 2)
    assert any_store.save_revocations(token.client_id, second, read_version=1, event=revoked)
    stored = any_store.get(token.client_id, consistent=True)
    assert stored.revoked_access_tokens == second
    # Not a change of the token: its version stays, and an admin change made from a copy read
    # before the revocations keeps them.
    assert stored.version == 1
    any_store.update(replace(token, name="renamed"), event(token, AuditAction.UPDATED))
    stored = any_store.get(token.client_id, consistent=True)
    assert (stored.name, stored.revoked_access_tokens) == ("renamed", second)
    actions = [e.action for e in any_store.events(token.client_id).items]
    assert actions.count(AuditAction.ACCESS_TOKEN_REVOKED) == 2


def test_revoking_an_access_token_of_an_unknown_client_is_not_found(
    any_store: TokenStore, unit_hasher: Hasher
) -> None:
    token, _ = new_service_token(name="gone", hasher=unit_hasher, now=NOW)
    revoked = AccessTokenRevocations((("a" * 22, NOW + 3600),), 0, 1)
    with pytest.raises(NotFound):
        any_store.save_revocations(
            token.client_id,
            revoked,
            read_version=0,
            event=event(token, AuditAction.ACCESS_TOKEN_REVOKED),
        )
    with pytest.raises(NotFound):
        any_store.get(token.client_id, consistent=True)


def test_concurrent_revocations_of_one_clients_tokens_lose_none(
    atomic_dynamodb_requests: None, any_store: TokenStore, unit_hasher: Hasher
) -> None:
    # (moto made atomic per request, as DynamoDB is, before the store's client is built)
    token = create(any_store, unit_hasher)
    jtis = [f"jti{i:019d}" for i in range(6)]

    def revoke(jti: str) -> None:
        revoke_access_token(
            any_store,
            client_id=token.client_id,
            jti=jti,
            exp=NOW + 3600,
            issued=NOW,
            now=NOW + 1,
            actor=token.client_id,
            source_ip=None,
        )

    with ThreadPoolExecutor(max_workers=len(jtis)) as pool:
        list(pool.map(revoke, jtis))
    stored = any_store.get(token.client_id, consistent=True).revoked_access_tokens
    assert sorted(jti for jti, _ in stored.ids) == jtis
    assert stored.version == len(jtis)
