"""Revoking access tokens (RFC 7009), introspecting them (RFC 7662), and the authorizer's
refusal of a revoked one, on the in-memory store: the domain without AWS."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekey.access_tokens import BACKDATE, DEFAULT_LEEWAY, issue_access_token
from gatekey.authorizer import Authorizer, AuthorizerSettings
from gatekey.credentials import CredentialForm
from gatekey.errors import (
    AuthenticationError,
    ClientNotPermitted,
    TokenOfAnotherClient,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.introspection import TokenStatusEndpoints, revoke_access_token
from gatekey.keyring import PublicKeyCache
from gatekey.model import AuditAction, AuditEvent, ServiceToken, new_service_token
from gatekey.oauth import INTROSPECTION_SCOPE, oauth_error
from gatekey.revocations import (
    EXPIRY_LEEWAY,
    MAX_REVOKED_ACCESS_TOKENS,
    AccessTokenRevocations,
)
from gatekey.signing import LocalKeySigner
from gatekey.store import InMemoryTokenStore
from support.constants import ADMIN, ISSUER, NOW

ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1"
STATUS_TTL = 30
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def signer() -> LocalKeySigner:
    return LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))


class World:
    """A store, a signer, the endpoints and an authorizer sharing one clock."""

    def __init__(self, store: InMemoryTokenStore, hasher: Hasher, signer: LocalKeySigner) -> None:
        self.store, self.hasher, self.signer = store, hasher, signer
        self.now = NOW + 60
        self.secrets: dict[str, str] = {}
        self.endpoints = TokenStatusEndpoints(
            store=store,
            hasher=hasher,
            public_keys=lambda _: (signer.public_key,),
            audience="gatekey",
            clock=lambda: self.now,
        )
        settings = AuthorizerSettings(
            accepted=frozenset(CredentialForm),
            access_json_header="authorization",
            strict=False,
            issuer=ISSUER,
            audience="gatekey",
            status_cache_ttl=STATUS_TTL,
            last_seen_interval=900,
            http_api_simple_responses=False,
        )
        keys = PublicKeyCache(
            lambda: {signer.public_key.kid: signer.public_key},
            ttl=300,
            refetch_interval=30,
            clock=lambda: self.now,
        )
        self.authorizer = Authorizer(
            store=store,
            hasher=hasher,
            public_keys=keys,
            settings=settings,
            clock=lambda: float(self.now),
        )

    def bot(self, *scopes: str) -> ServiceToken:
        token, secret = new_service_token(
            name="bot", hasher=self.hasher, now=NOW, scopes=tuple(scopes)
        )
        self.secrets[token.client_id] = secret.reveal()
        return self.store.create(
            token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW)
        )

    def access_token(self, bot: ServiceToken, lifetime: int = 3600) -> str:
        token = self.store.get(bot.client_id)
        return issue_access_token(
            token,
            self.signer,
            issuer=ISSUER,
            audience="gatekey",
            lifetime=lifetime,
            scopes=token.scopes,
            now=self.now,
        ).access_token

    def basic(self, bot: ServiceToken) -> dict[str, str]:
        raw = f"{bot.client_id}:{self.secrets[bot.client_id]}".encode()
        return {"authorization": "Basic " + base64.b64encode(raw).decode()}

    def introspect(self, caller: ServiceToken, form: str) -> Mapping[str, Any]:
        answer, _ = self.endpoints.introspect(
            content_type=FORM,
            form=parse_qs(form, keep_blank_values=True),
            headers=self.basic(caller),
            issuer=ISSUER,
        )
        return answer

    def revoke(self, caller: ServiceToken, form: str) -> Any:
        revoked, _ = self.endpoints.revoke(
            content_type=FORM,
            form=parse_qs(form, keep_blank_values=True),
            headers=self.basic(caller),
            issuer=ISSUER,
            source_ip="203.0.113.10",
        )
        return revoked

    def authorize(self, jwt: str) -> tuple[bool, str]:
        event = {
            "type": "TOKEN",
            "methodArn": f"{ARN}/GET/items",
            "authorizationToken": f"Bearer {jwt}",
        }
        outcome = self.authorizer.authorize(event)
        return outcome.allowed, outcome.reason


@pytest.fixture
def world(memory_store: InMemoryTokenStore, unit_hasher: Hasher, signer: LocalKeySigner) -> World:
    return World(memory_store, unit_hasher, signer)


# -- the revoked ids and their bound --------------------------------------------------------


def test_the_leeway_kept_past_exp_is_the_verifiers() -> None:
    assert EXPIRY_LEEWAY == DEFAULT_LEEWAY


def test_a_revoked_id_is_kept_until_no_verifier_accepts_its_token_then_pruned() -> None:
    revoked = AccessTokenRevocations().with_revoked("a", exp=1000, issued_at=900, now=950)
    assert revoked is not None
    assert revoked.revoked("a", 900)
    assert revoked.version == 1
    assert revoked.with_revoked("a", exp=1000, issued_at=900, now=960) is None  # already
    later = revoked.with_revoked("b", exp=2000, issued_at=1020, now=1000 + EXPIRY_LEEWAY)
    assert later is not None
    assert later.ids == (("b", 2000),)
    assert later.version == 2
    # An expired token needs no entry: no verifier accepts it any more.
    assert AccessTokenRevocations().with_revoked("c", 1000, 900, 1000 + EXPIRY_LEEWAY) is None


def test_a_full_list_moves_the_watermark_instead_of_dropping_or_refusing_a_revocation() -> None:
    # GIVEN as many revoked ids as the bound, none expired
    full = AccessTokenRevocations(
        tuple((f"id{i}", 5000) for i in range(MAX_REVOKED_ACCESS_TOKENS)), 0, 7
    )
    # WHEN one more is revoked
    moved = full.with_revoked("new", exp=5000, issued_at=1990, now=2000)
    # THEN every token issued until now is revoked, the listed ones and the new one among them
    assert moved is not None
    assert moved.at_watermark(full)
    assert (moved.ids, moved.not_before, moved.version) == ((), 2000, 8)
    assert moved.revoked("new", 1990)
    assert moved.revoked("id3", 1500)
    assert not moved.revoked("fresh", 2001)  # the client's next token works


def test_pruning_makes_room_before_the_bound_is_reached() -> None:
    ids = tuple((f"id{i}", 1000) for i in range(MAX_REVOKED_ACCESS_TOKENS))
    full = AccessTokenRevocations(ids, 0, 1)
    revoked = full.with_revoked("new", exp=5000, issued_at=1900, now=1000 + EXPIRY_LEEWAY)
    assert revoked is not None
    assert revoked.ids == (("new", 5000),)
    assert revoked.not_before == 0


def test_the_store_keeps_revocations_through_an_admin_update(
    world: World, memory_store: InMemoryTokenStore
) -> None:
    bot = world.bot()
    read = memory_store.get(bot.client_id)
    revoke_access_token(
        memory_store,
        client_id=bot.client_id,
        jti="j" * 22,
        exp=NOW + 3600,
        issued=NOW,
        now=NOW + 1,
        actor=bot.client_id,
        source_ip=None,
    )
    # An admin change made from a copy read before the revocation does not undo it.
    event = AuditEvent(bot.client_id, AuditAction.UPDATED, ADMIN, NOW + 2)
    memory_store.update(replace(read, name="renamed"), event)
    assert memory_store.get(bot.client_id).revoked_access_tokens.revoked("j" * 22, NOW)


# -- the authorizer --------------------------------------------------------------------------


def test_a_revoked_access_token_is_refused_within_the_status_ttl_and_another_still_works(
    world: World,
) -> None:
    # GIVEN a bot with two access tokens, both allowed (and the answers cached)
    bot = world.bot("read")
    leaked, other = world.access_token(bot), world.access_token(bot)
    assert world.authorize(leaked) == (True, "allowed")
    assert world.authorize(other) == (True, "allowed")
    # WHEN the bot revokes one
    assert world.revoke(bot, f"token={leaked}") is not None
    # THEN it is refused once the status cache entry ends, at the latest, with no read of its
    # own (the item read into the status cache carries the revoked ids); the other works.
    world.now += STATUS_TTL
    assert world.authorize(leaked) == (False, "access_token_revoked")
    assert world.authorize(other) == (True, "allowed")


def test_an_allow_held_in_memory_ends_with_the_status_cache_entry(world: World) -> None:
    bot = world.bot()
    jwt = world.access_token(bot)
    assert world.authorize(jwt) == (True, "allowed")
    world.revoke(bot, f"token={jwt}")
    world.now += STATUS_TTL - 1
    assert world.authorize(jwt) == (True, "allowed")  # the cached answer, within its bound
    world.now += 1
    assert world.authorize(jwt) == (False, "access_token_revoked")


def test_the_watermark_refuses_every_older_token_and_none_issued_after_it(world: World) -> None:
    bot = world.bot()
    old = world.access_token(bot)
    token = world.store.get(bot.client_id)
    full = AccessTokenRevocations(
        tuple((f"id{i}", world.now + 3600) for i in range(MAX_REVOKED_ACCESS_TOKENS)), 0, 0
    )
    event = AuditEvent(bot.client_id, AuditAction.ACCESS_TOKEN_REVOKED, ADMIN, world.now)
    assert world.store.save_revocations(token.client_id, full, read_version=0, event=event)
    world.now += 5
    newer = world.access_token(bot)
    revoked = world.revoke(bot, f"token={newer}")
    assert revoked.watermark_moved
    assert revoked.revocations.not_before == world.now
    world.now += 1
    fresh = world.access_token(bot)
    world.now += STATUS_TTL
    assert world.authorize(old) == (False, "access_token_revoked")
    assert world.authorize(newer) == (False, "access_token_revoked")
    assert world.authorize(fresh) == (True, "allowed")


# -- revocation (RFC 7009) -------------------------------------------------------------------


def test_revoking_audits_the_jti_as_done_by_the_client_never_the_token(world: World) -> None:
    bot = world.bot()
    jwt = world.access_token(bot)
    world.revoke(bot, f"token={jwt}&token_type_hint=access_token")
    event = world.store.events(bot.client_id).items[0]
    assert event.action is AuditAction.ACCESS_TOKEN_REVOKED
    assert (event.actor, event.source_ip) == (bot.client_id, "203.0.113.10")
    [(jti, exp)] = world.store.get(bot.client_id).revoked_access_tokens.ids
    assert event.details == {"jti": jti, "exp": exp}
    assert jwt not in repr(event)
    assert jwt.split(".")[2] not in repr(event)


@pytest.mark.parametrize("value", ["garbage", "a.b.c", "", "eyJhbGciOiJub25lIn0.e30.", "x" * 9000])
def test_an_invalid_token_is_no_error_and_writes_nothing(world: World, value: str) -> None:
    bot = world.bot()
    assert world.revoke(bot, f"token={value}&token_type_hint=refresh_token") is None
    assert world.store.get(bot.client_id).revoked_access_tokens.version == 0


def test_an_expired_or_already_revoked_token_writes_nothing_more(world: World) -> None:
    bot = world.bot()
    jwt, other = world.access_token(bot, lifetime=60), world.access_token(bot, lifetime=60)
    assert world.revoke(bot, f"token={jwt}") is not None
    assert world.revoke(bot, f"token={jwt}") is None
    world.now += 60 + DEFAULT_LEEWAY
    assert world.revoke(bot, f"token={other}") is None  # expired: nothing to revoke
    assert len(world.store.events(bot.client_id).items) == 2  # created, one revocation


def test_another_clients_token_is_refused_as_invalid_grant_and_stays_valid(world: World) -> None:
    bot, intruder = world.bot(), world.bot()
    jwt = world.access_token(bot)
    with pytest.raises(TokenOfAnotherClient) as refused:
        world.revoke(intruder, f"token={jwt}")
    assert (oauth_error(refused.value).status, oauth_error(refused.value).error) == (
        400,
        "invalid_grant",
    )
    assert world.authorize(jwt) == (True, "allowed")


def test_a_request_without_a_token_or_credentials_is_an_oauth_error(world: World) -> None:
    bot = world.bot()
    with pytest.raises(ValidationError):
        world.revoke(bot, "token_type_hint=access_token")
    with pytest.raises(AuthenticationError):
        world.endpoints.revoke(
            content_type=FORM, form={"token": ["x"]}, headers={}, issuer=ISSUER, source_ip=None
        )
    with pytest.raises(ValidationError):
        world.revoke(bot, "token=a&token=b")


# -- introspection (RFC 7662) ----------------------------------------------------------------


def test_introspection_answers_an_active_tokens_claims(world: World) -> None:
    server, bot = world.bot(INTROSPECTION_SCOPE), world.bot("read", "write")
    answer = world.introspect(server, f"token={world.access_token(bot)}")
    assert answer["active"] is True
    assert answer["client_id"] == answer["sub"] == bot.client_id
    assert (answer["iss"], answer["aud"], answer["token_type"]) == (ISSUER, "gatekey", "Bearer")
    assert answer["scope"] == "read write"
    assert answer["exp"] == world.now + 3600
    assert answer["iat"] == world.now - BACKDATE
    assert set(answer) == {
        "active",
        *("iss", "sub", "client_id", "aud", "exp", "iat", "nbf", "jti", "scope", "token_type"),
    }


def test_introspection_of_a_dpop_bound_token_names_its_type_and_key(world: World) -> None:
    """RFC 9449 §6.2: a resource server that introspects learns the key to check proofs with."""
    server, bot = world.bot(INTROSPECTION_SCOPE), world.bot("read")
    bound = issue_access_token(
        world.store.get(bot.client_id),
        world.signer,
        issuer=ISSUER,
        audience="gatekey",
        lifetime=3600,
        scopes=("read",),
        now=world.now,
        jkt="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
    ).access_token
    answer = world.introspect(server, f"token={bound}")
    assert (answer["active"], answer["token_type"]) == (True, "DPoP")
    assert answer["cnf"] == {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}


def test_introspection_says_only_inactive_for_any_token_not_usable(world: World) -> None:
    server, bot = world.bot(INTROSPECTION_SCOPE), world.bot()
    revoked = world.access_token(bot)
    world.revoke(bot, f"token={revoked}")
    expiring = world.access_token(bot, lifetime=60)
    for value in ("garbage", "", "a.b.c", revoked):
        assert world.introspect(server, f"token={value}") == {"active": False}
    world.now += 60 + DEFAULT_LEEWAY
    assert world.introspect(server, f"token={expiring}") == {"active": False}


def test_introspection_sees_a_disabled_or_rotated_service_token_at_once(world: World) -> None:
    server, bot = world.bot(INTROSPECTION_SCOPE), world.bot()
    jwt = world.access_token(bot)
    token = world.store.get(bot.client_id)
    event = AuditEvent(bot.client_id, AuditAction.ROTATED, ADMIN, world.now)
    world.store.update(replace(token, client_secret_version=2), event)
    assert world.introspect(server, f"token={jwt}") == {"active": False}


def test_introspection_needs_the_scope(world: World) -> None:
    caller, bot = world.bot("read"), world.bot()
    with pytest.raises(ClientNotPermitted) as refused:
        world.introspect(caller, f"token={world.access_token(bot)}")
    answer = oauth_error(refused.value)
    assert (answer.status, answer.error) == (403, "unauthorized_client")


def test_a_token_issued_in_the_second_the_watermark_moved_is_dated_after_it(
    world: World,
) -> None:
    from gatekey.oauth import TokenEndpoint

    class Keys:
        def signer(self, now: int) -> LocalKeySigner:
            return world.signer

    bot = world.bot()
    full = AccessTokenRevocations((), world.now, 3)
    event = AuditEvent(bot.client_id, AuditAction.ACCESS_TOKEN_REVOKED, ADMIN, world.now)
    world.store.save_revocations(bot.client_id, full, read_version=0, event=event)
    endpoint = TokenEndpoint(
        store=world.store,
        hasher=world.hasher,
        signing_keys=Keys(),  # type: ignore[arg-type]
        audience="gatekey",
        lifetime=3600,
        clock=lambda: world.now,
        last_seen_interval=900,
    )
    issued, _ = endpoint.exchange(
        content_type=FORM,
        form={"grant_type": ["client_credentials"]},
        headers=world.basic(bot),
        issuer=ISSUER,
    )
    assert world.authorize(issued.access_token) == (True, "allowed")
