"""Usage plans on the in-memory store and an in-memory API Gateway: the plan set, a metered
token's API key through create, change, disable, revoke and delete, and what is undone when
API Gateway or the store fails half-way (nothing written, no key left behind)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from gatekey.admin import TokenAdmin
from gatekey.errors import (
    AlreadyExists,
    ConcurrentModification,
    DependencyError,
    GatekeyError,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, TokenStatus
from gatekey.store import layout
from gatekey.usage_plans import PlanKey, UsagePlan, UsagePlans
from support.admin import ACTOR, FakeApiKeys, RacingStore, access_credential, bring, issue
from support.constants import ADMIN, NOW
from support.harness import Bot, LocalAuthorizer, credential_headers, local_authorizer

PLANS = UsagePlans([UsagePlan("bronze", "pl4n0b"), UsagePlan("gold", "pl4n0g")])


@pytest.fixture
def store() -> RacingStore:
    return RacingStore()


@pytest.fixture
def keys() -> FakeApiKeys:
    return FakeApiKeys(plans=("pl4n0b", "pl4n0g"))


@pytest.fixture
def admin(store: RacingStore, keys: FakeApiKeys, unit_hasher: Hasher) -> TokenAdmin:
    return TokenAdmin(
        store=store, hasher=unit_hasher, clock=lambda: NOW, usage_plans=PLANS, api_keys=keys
    )


def metered(admin: TokenAdmin, plan: str = "bronze") -> str:
    return issue(admin, usage_plan=plan).token.client_id


def key_of(admin: TokenAdmin, client_id: str) -> PlanKey:
    key = admin.get(client_id).usage_plan
    assert key is not None
    return key


def latest(admin: TokenAdmin, client_id: str) -> Any:
    return admin.events(client_id).items[0]


# -- the plan set ----------------------------------------------------------------------------


def test_the_plan_set_is_read_from_name_equals_id_pairs_and_may_be_empty() -> None:
    assert list(UsagePlans.parse(" bronze=pl4n0b, gold=pl4n0g ,")) == list(PLANS)
    assert list(UsagePlans.parse("")) == []


@pytest.mark.parametrize("raw", ["bronze", "=pl4n0b", "bronze=", "br onze=x", "a=x,a=y", "a=x/y"])
def test_a_malformed_plan_set_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        UsagePlans.parse(raw)


def test_a_plan_is_named_by_its_name_or_its_id() -> None:
    assert PLANS.resolve("gold") == PLANS.resolve("pl4n0g") == UsagePlan("gold", "pl4n0g")


@pytest.mark.parametrize("value", ["platinum", "", "BRONZE", 7, None])
def test_an_unknown_plan_is_a_validation_error_naming_the_plans(value: object) -> None:
    with pytest.raises(ValidationError, match=r"usage_plan: .*\(plans: bronze, gold\)"):
        PLANS.resolve(value)


# -- create ----------------------------------------------------------------------------------


def test_a_token_created_on_a_plan_gets_its_own_enabled_api_key_on_that_plan(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    key = key_of(admin, client_id)
    assert (key.plan, key.plan_id) == ("bronze", "pl4n0b")
    assert keys.on_plan == {key.api_key_id: "pl4n0b"}
    assert keys.keys[key.api_key_id] == (key.api_key_value, True)
    assert latest(admin, client_id).details["usage_plan"] == "bronze"
    assert latest(admin, client_id).details["api_key_id"] == key.api_key_id


def test_the_api_key_value_is_never_in_a_repr_or_an_audit_item(admin: TokenAdmin) -> None:
    client_id = metered(admin)
    key = key_of(admin, client_id)
    assert key.api_key_value not in repr(admin.get(client_id))
    assert key.api_key_value not in repr(admin.events(client_id).items)


def test_the_plan_can_be_named_by_its_id_and_is_stored_by_its_name(admin: TokenAdmin) -> None:
    assert key_of(admin, metered(admin, plan="pl4n0g")).plan == "gold"


def test_a_token_without_a_plan_makes_no_api_gateway_call(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    assert issue(admin).token.usage_plan is None
    assert keys.calls == []


def test_an_unknown_plan_is_refused_before_anything_is_made_or_written(
    admin: TokenAdmin, keys: FakeApiKeys, store: RacingStore
) -> None:
    with pytest.raises(ValidationError, match="usage_plan"):
        issue(admin, usage_plan="platinum")
    assert keys.calls == []
    assert store.list().items == []


def test_a_stack_without_plans_refuses_every_plan(store: RacingStore, unit_hasher: Hasher) -> None:
    plain = TokenAdmin(store=store, hasher=unit_hasher, clock=lambda: NOW)
    with pytest.raises(ValidationError, match="UsagePlans is empty"):
        issue(plain, usage_plan="bronze")


def test_a_key_that_cannot_go_on_its_plan_is_deleted_and_nothing_written(
    admin: TokenAdmin, keys: FakeApiKeys, store: RacingStore
) -> None:
    keys.fail = ["associate"]
    with pytest.raises(DependencyError):
        issue(admin, usage_plan="bronze")
    assert keys.calls == ["create", "associate", "delete"]
    assert keys.keys == {}
    assert store.list().items == []


def test_a_plan_api_gateway_does_not_know_is_a_400_and_its_key_is_deleted(
    keys: FakeApiKeys, store: RacingStore, unit_hasher: Hasher
) -> None:
    stale = UsagePlans([UsagePlan("gone", "n0p1an")])
    admin = TokenAdmin(
        store=store, hasher=unit_hasher, clock=lambda: NOW, usage_plans=stale, api_keys=keys
    )
    with pytest.raises(ValidationError, match="does not know this plan"):
        issue(admin, usage_plan="gone")
    assert keys.keys == {}
    assert store.list().items == []


def test_a_failed_write_after_the_key_was_made_deletes_the_key(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    # GIVEN an imported credential already in the table
    client_id, secret = access_credential()
    bring(admin, client_id, secret)
    # WHEN it is imported again on a plan: the key is made, then the write fails
    with pytest.raises(AlreadyExists):
        bring(admin, client_id, secret, usage_plan="gold")
    # THEN the key is gone and the stored token is as it was
    assert keys.calls == ["create", "associate", "delete"]
    assert keys.keys == {}
    assert admin.get(client_id).usage_plan is None


def test_an_undo_that_fails_is_logged_with_the_key_id_and_the_first_error_is_raised(
    admin: TokenAdmin, keys: FakeApiKeys, caplog: pytest.LogCaptureFixture
) -> None:
    keys.fail = ["associate", "delete"]
    with caplog.at_level(logging.ERROR), pytest.raises(DependencyError, match="associate"):
        issue(admin, usage_plan="bronze")
    [(key_id, (value, _))] = keys.keys.items()
    [record] = [r for r in caplog.records if getattr(r, "reason", "") == "orphaned_api_key"]
    assert key_id in record.getMessage()
    assert value not in caplog.text


# -- change ----------------------------------------------------------------------------------


def test_a_plan_given_to_an_unmetered_token_makes_its_key(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = issue(admin).token.client_id
    admin.update(ACTOR, client_id, usage_plan="gold")
    key = key_of(admin, client_id)
    assert keys.on_plan == {key.api_key_id: "pl4n0g"}
    assert latest(admin, client_id).details == {"usage_plan": "gold", "api_key_id": key.api_key_id}


def test_a_disabled_token_put_on_a_plan_gets_a_disabled_key(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = issue(admin).token.client_id
    admin.update(ACTOR, client_id, enabled=False)
    admin.update(ACTOR, client_id, usage_plan="gold")
    assert not keys.enabled(key_of(admin, client_id).api_key_id)


def test_a_plan_change_moves_the_same_key_off_the_old_plan_then_onto_the_new(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    before = key_of(admin, client_id)
    keys.calls.clear()
    admin.update(ACTOR, client_id, usage_plan="gold")
    after = key_of(admin, client_id)
    assert keys.calls == ["dissociate", "associate"]
    assert after == replace(before, plan="gold", plan_id="pl4n0g")
    assert keys.on_plan == {before.api_key_id: "pl4n0g"}
    assert latest(admin, client_id).details == {
        "usage_plan": "gold",
        "api_key_id": before.api_key_id,
    }


def test_the_same_plan_again_makes_no_call(admin: TokenAdmin, keys: FakeApiKeys) -> None:
    client_id = metered(admin)
    keys.calls.clear()
    admin.update(ACTOR, client_id, usage_plan="pl4n0b")
    assert keys.calls == []


def test_a_move_that_fails_on_the_new_plan_puts_the_key_back_on_the_old(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    before = admin.get(client_id)
    keys.fail = ["associate"]
    with pytest.raises(DependencyError):
        admin.update(ACTOR, client_id, usage_plan="gold")
    assert keys.on_plan == {key_of(admin, client_id).api_key_id: "pl4n0b"}
    assert admin.get(client_id) == before


def test_a_move_whose_write_loses_a_race_is_undone_in_api_gateway(
    admin: TokenAdmin, keys: FakeApiKeys, store: RacingStore
) -> None:
    client_id = metered(admin)
    store.before_write = lambda: admin.update(ACTOR, client_id, name="theirs")
    with pytest.raises(ConcurrentModification):
        admin.update(ACTOR, client_id, usage_plan="gold", enabled=False)
    key = key_of(admin, client_id)
    assert keys.on_plan == {key.api_key_id: "pl4n0b"}
    assert keys.enabled(key.api_key_id)
    assert keys.calls[-3:] == ["set_enabled", "dissociate", "associate"]  # the undo, newest first


def test_clearing_the_plan_deletes_the_key_after_the_write(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    admin.update(ACTOR, client_id, clear_usage_plan=True)
    assert admin.get(client_id).usage_plan is None
    assert keys.keys == {}
    assert latest(admin, client_id).details == {"usage_plan": None, "api_key_id": key_id}


def test_a_key_that_cannot_be_deleted_after_the_write_is_logged_and_the_change_stands(
    admin: TokenAdmin, keys: FakeApiKeys, caplog: pytest.LogCaptureFixture
) -> None:
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    keys.fail = ["delete"]
    with caplog.at_level(logging.ERROR):
        admin.update(ACTOR, client_id, clear_usage_plan=True)
    assert admin.get(client_id).usage_plan is None
    assert key_id in keys.keys
    assert f"delete API key {key_id}" in caplog.text


def test_an_unknown_plan_in_a_change_writes_nothing(admin: TokenAdmin, keys: FakeApiKeys) -> None:
    client_id = metered(admin)
    before = admin.get(client_id)
    keys.calls.clear()
    with pytest.raises(ValidationError, match="usage_plan"):
        admin.update(ACTOR, client_id, usage_plan="platinum", name="renamed")
    assert keys.calls == []
    assert admin.get(client_id) == before


# -- disable, enable, revoke, delete ---------------------------------------------------------


def test_disabling_and_enabling_a_metered_token_disables_and_enables_its_key(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    admin.update(ACTOR, client_id, enabled=False)
    assert not keys.enabled(key_id)
    assert latest(admin, client_id).action is AuditAction.DISABLED
    assert latest(admin, client_id).details == {"enabled": False, "api_key_id": key_id}
    admin.update(ACTOR, client_id, enabled=True)
    assert keys.enabled(key_id)
    assert latest(admin, client_id).action is AuditAction.ENABLED


def test_a_disable_whose_write_fails_enables_the_key_again(
    admin: TokenAdmin, keys: FakeApiKeys, store: RacingStore
) -> None:
    client_id = metered(admin)
    store.before_write = lambda: admin.update(ACTOR, client_id, name="theirs")
    with pytest.raises(ConcurrentModification):
        admin.update(ACTOR, client_id, enabled=False)
    assert keys.enabled(key_of(admin, client_id).api_key_id)
    assert admin.get(client_id).enabled


def test_a_key_that_cannot_be_disabled_leaves_the_token_enabled(
    admin: TokenAdmin, keys: FakeApiKeys
) -> None:
    client_id = metered(admin)
    keys.fail = ["set_enabled"]
    with pytest.raises(DependencyError):
        admin.update(ACTOR, client_id, enabled=False)
    assert admin.get(client_id).enabled
    assert keys.enabled(key_of(admin, client_id).api_key_id)


def test_revoking_a_metered_token_disables_its_key(admin: TokenAdmin, keys: FakeApiKeys) -> None:
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    admin.revoke(ACTOR, client_id)
    assert admin.get(client_id).status is TokenStatus.REVOKED
    assert not keys.enabled(key_id)
    assert latest(admin, client_id).details == {"api_key_id": key_id}


def test_a_revoke_whose_write_fails_enables_the_key_again(
    admin: TokenAdmin, keys: FakeApiKeys, store: RacingStore
) -> None:
    client_id = metered(admin)
    store.before_write = lambda: admin.update(ACTOR, client_id, name="theirs")
    with pytest.raises(ConcurrentModification):
        admin.revoke(ACTOR, client_id)
    assert keys.enabled(key_of(admin, client_id).api_key_id)


def test_deleting_a_metered_token_deletes_its_key(admin: TokenAdmin, keys: FakeApiKeys) -> None:
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    admin.delete(ACTOR, client_id)
    assert keys.keys == {}
    assert admin.events(client_id).items[0].details == {"api_key_id": key_id}


def test_a_delete_that_cannot_delete_the_key_still_deletes_the_token(
    admin: TokenAdmin, keys: FakeApiKeys, caplog: pytest.LogCaptureFixture
) -> None:
    client_id = metered(admin)
    keys.fail = ["delete"]
    with caplog.at_level(logging.ERROR):
        admin.delete(ACTOR, client_id)
    with pytest.raises(GatekeyError):
        admin.get(client_id)
    assert "orphaned_api_key" in [getattr(r, "reason", "") for r in caplog.records]


# -- stored ----------------------------------------------------------------------------------


def stored(plain: dict[str, Any]) -> dict[str, Any]:
    """As the item holds it: absent optionals are not written."""
    return {k: v for k, v in plain.items() if v is not None}


def test_the_plan_and_key_survive_the_item_layout(admin: TokenAdmin) -> None:
    token = admin.get(metered(admin))
    plain = layout.token_to_plain(token)
    assert plain["usage_plan"]["plan"] == "bronze"
    assert "usage_plan" in layout.UPDATABLE
    assert layout.token_from_plain(stored(plain)) == token
    unmetered = replace(token, usage_plan=None)
    assert layout.token_to_plain(unmetered)["usage_plan"] is None
    assert layout.token_from_plain(stored(layout.token_to_plain(unmetered))).usage_plan is None


# -- the authorizer names the key ------------------------------------------------------------

METERED = PlanKey("bronze", "pl4n0b", "k3y1d", "value-of-the-api-key-0123456789abcdefghij")


@pytest.fixture
def local(unit_hasher: Hasher) -> LocalAuthorizer:
    return local_authorizer(unit_hasher, {})


def metered_bot(authorizer: LocalAuthorizer) -> Bot:
    bot = authorizer.bot()
    current = authorizer.store.get(bot.client_id, consistent=True)
    authorizer.store.update(
        replace(current, usage_plan=METERED),
        AuditEvent(bot.client_id, AuditAction.UPDATED, ADMIN, NOW),
    )
    return bot


@pytest.mark.parametrize("form", ["gatekey_headers", "basic", "bearer"])
def test_a_rest_allow_of_a_metered_token_names_its_api_key(
    local: LocalAuthorizer, form: str
) -> None:
    bot = metered_bot(local)
    jwt = local.jwt(bot) if form == "bearer" else None
    response = local.call("rest_request", credential_headers(form, bot, jwt))
    assert response["usageIdentifierKey"] == METERED.api_key_value
    assert METERED.api_key_value not in json.dumps(response["context"])


def test_a_token_authorizer_names_the_key_too(local: LocalAuthorizer) -> None:
    bot = metered_bot(local)
    header = credential_headers("basic", bot, None)["Authorization"]
    assert local.call("rest_token", token=header)["usageIdentifierKey"] == METERED.api_key_value


def test_http_apis_unmetered_tokens_and_denials_name_no_key(local: LocalAuthorizer) -> None:
    bot = metered_bot(local)
    assert "usageIdentifierKey" not in local.call("http", credential_headers("basic", bot, None))
    plain = local.bot()
    assert "usageIdentifierKey" not in local.call(
        "rest_request", credential_headers("basic", plain, None)
    )
    wrong = credential_headers("gatekey_headers", bot, None) | {
        "Gatekey-Client-Secret": "gks_" + "0" * 49
    }
    assert "usageIdentifierKey" not in local.call("rest_request", wrong)


def test_an_admin_without_api_gateway_still_disables_revokes_and_deletes_a_metered_token(
    admin: TokenAdmin,
    store: RacingStore,
    keys: FakeApiKeys,
    unit_hasher: Hasher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a metered token, and an admin built without API Gateway, as the
    # Custom::GatekeyServiceToken provider's is
    client_id = metered(admin)
    key_id = key_of(admin, client_id).api_key_id
    provider = TokenAdmin(store=store, hasher=unit_hasher, clock=lambda: NOW)
    keys.calls.clear()
    # WHEN it disables, revokes and deletes the token
    with caplog.at_level(logging.ERROR):
        provider.update(ACTOR, client_id, enabled=False)
        provider.revoke(ACTOR, client_id)
        provider.delete(ACTOR, client_id)
    # THEN each change stands, and the key it could not reach is logged, not an error
    assert keys.calls == []
    left = [
        r.getMessage() for r in caplog.records if getattr(r, "reason", "") == "orphaned_api_key"
    ]
    assert [f"disable API key {key_id}" in m for m in left] == [True, True, False]
    assert f"delete API key {key_id}" in left[-1]
    # AND it cannot put a token on a plan
    with pytest.raises(ValidationError, match="usage_plan"):
        issue(provider, usage_plan="bronze")
