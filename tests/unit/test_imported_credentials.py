"""Imported credentials at the authorizer, on the in-memory store: an imported Client ID works in
every credential form, with its own secret and, once rotated, with a Gatekey one; a malformed
Gatekey credential still costs no read, and garbage in an imported format costs at most one
read per id per status cache TTL (the unknown id is remembered). The handler's own path, the
token endpoint and the local stack are tested on moto and over HTTP (test_authorizer_function,
test_token_function, tests/e2e)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekey.admin import TokenAdmin
from gatekey.authorizer import Authorizer, AuthorizerSettings
from gatekey.credentials import ClientSecret, CredentialForm, generate_client_id
from gatekey.hashing import Hasher
from gatekey.keyring import PublicKeyCache
from gatekey.model import ServiceToken
from gatekey.store import InMemoryTokenStore
from support.admin import ACTOR, access_credential, bring, cognito_credential
from support.constants import NOW
from support.harness import authorizer_event, presented_headers

STATUS_TTL = 30
SECRET_FORMS = ("gatekey_headers", "access_headers", "access_json", "basic")


class CountingStore(InMemoryTokenStore):
    """The in-memory store, counting the authorizer's reads by client id."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken:
        self.reads[client_id] = self.reads.get(client_id, 0) + 1
        return super().get(client_id, consistent=consistent)


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admin(store: CountingStore, unit_hasher: Hasher, clock: Clock) -> TokenAdmin:
    return TokenAdmin(store=store, hasher=unit_hasher, clock=lambda: int(clock()))


def build_authorizer(store: CountingStore, hasher: Hasher, clock: Clock) -> Authorizer:
    def no_keys() -> dict[str, Any]:
        return {}

    return Authorizer(
        store=store,
        hasher=hasher,
        public_keys=PublicKeyCache(no_keys, ttl=300, refetch_interval=30, clock=clock),
        settings=AuthorizerSettings(
            accepted=frozenset(CredentialForm),
            access_json_header="authorization",
            strict=False,
            issuer="https://issuer.example",
            audience="gatekey",
            status_cache_ttl=STATUS_TTL,
            last_seen_interval=3600,
            http_api_simple_responses=False,
        ),
        clock=clock,
        record_last_seen=lambda *_: True,
    )


@pytest.fixture
def authorizer(store: CountingStore, unit_hasher: Hasher, clock: Clock) -> Authorizer:
    return build_authorizer(store, unit_hasher, clock)


def decide(authorizer: Authorizer, headers: dict[str, str]) -> str:
    """'allowed', or the reason of the denial, for GET /items/42 on a REST REQUEST authorizer."""
    event = authorizer_event("rest_request", headers, method="GET", path="/items/42")
    outcome = authorizer.authorize(event)
    return "allowed" if outcome.allowed else outcome.reason


@pytest.mark.parametrize("credential", [access_credential, cognito_credential])
@pytest.mark.parametrize("form", SECRET_FORMS)
def test_an_imported_credential_works_in_every_form(
    admin: TokenAdmin, authorizer: Authorizer, credential: Any, form: str
) -> None:
    client_id, secret = credential()
    bring(admin, client_id, secret, scopes=("read",))
    event = authorizer_event(
        "rest_request", presented_headers(form, client_id, secret.reveal()), method="GET", path="/x"
    )
    outcome = authorizer.authorize(event)
    assert outcome.allowed, outcome.reason
    assert (outcome.client_id, outcome.auth_method) == (client_id, form)
    context = outcome.response["context"]
    assert (context["client_id"], context["scopes"]) == (client_id, "read")
    assert outcome.response["principalId"] == client_id


def test_a_wrong_secret_in_the_imported_format_is_denied(
    admin: TokenAdmin, authorizer: Authorizer
) -> None:
    client_id, secret = access_credential()
    bring(admin, client_id, secret)
    wrong = secrets.token_hex(32)
    assert decide(authorizer, presented_headers("access_headers", client_id, wrong)) == (
        "invalid_credentials"
    )
    # and a Gatekey secret it was never given, too
    other = ClientSecret.generate().reveal()
    assert decide(authorizer, presented_headers("access_headers", client_id, other)) == (
        "invalid_credentials"
    )


def test_after_a_rotation_the_id_works_with_its_new_gatekey_secret(
    admin: TokenAdmin, authorizer: Authorizer, clock: Clock
) -> None:
    client_id, imported = access_credential()
    bring(admin, client_id, imported)
    assert decide(
        authorizer, presented_headers("access_headers", client_id, imported.reveal())
    ) == ("allowed")
    issued = admin.rotate(ACTOR, client_id)  # no grace: the imported secret stops at once
    fresh = issued.secret.reveal()
    assert fresh.startswith("gks_")
    for form in SECRET_FORMS:
        assert decide(authorizer, presented_headers(form, client_id, fresh)) == "allowed", form
    clock.now += STATUS_TTL  # the cached token item expires
    assert decide(authorizer, presented_headers("basic", client_id, imported.reveal())) == (
        "invalid_credentials"
    )


def test_an_unknown_imported_id_is_read_once_per_status_ttl(
    store: CountingStore, authorizer: Authorizer, clock: Clock
) -> None:
    client_id, secret = access_credential()
    headers = presented_headers("access_headers", client_id, secret.reveal())
    for _ in range(20):
        assert decide(authorizer, headers) == "unknown_client"
    assert store.reads == {client_id: 1}
    clock.now += STATUS_TTL
    assert decide(authorizer, headers) == "unknown_client"
    assert store.reads == {client_id: 2}


def test_an_id_imported_after_it_was_remembered_unknown_works_within_the_ttl(
    admin: TokenAdmin, store: CountingStore, authorizer: Authorizer, clock: Clock
) -> None:
    # The negative cache is the same bound as revocation's: at most one status cache TTL.
    client_id, secret = access_credential()
    headers = presented_headers("access_headers", client_id, secret.reveal())
    assert decide(authorizer, headers) == "unknown_client"
    bring(admin, client_id, secret)
    clock.now += STATUS_TTL
    assert decide(authorizer, headers) == "allowed"


# -- properties: what garbage costs ------------------------------------------------------------

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
hex_digits = st.text("0123456789abcdef", min_size=32, max_size=32)
access_ids = hex_digits.map(lambda h: f"{h}.access")
cognito_ids = st.text("0123456789abcdefghijklmnopqrstuvwxyz", min_size=26, max_size=26)
access_secrets = st.text("0123456789abcdef", min_size=64, max_size=64)


@PROPERTY
@given(
    client_id=st.one_of(
        st.text(max_size=60).map(lambda t: "gk_" + t),
        st.builds(lambda: generate_client_id()).map(
            lambda v: v[:-1] + ("A" if v[-1] != "A" else "B")
        ),
    ),
    secret=st.one_of(
        st.text(max_size=70), access_secrets, st.builds(lambda: ClientSecret.generate().reveal())
    ),
    form=st.sampled_from(SECRET_FORMS),
)
def test_a_malformed_gatekey_id_is_refused_without_a_read(
    store: CountingStore, authorizer: Authorizer, client_id: str, secret: str, form: str
) -> None:
    store.reads.clear()
    assert decide(authorizer, presented_headers(form, client_id, secret)) != "allowed"
    assert store.reads == {}


@PROPERTY
@given(
    ids=st.lists(st.one_of(access_ids, cognito_ids), min_size=1, max_size=8),
    secret=access_secrets,
    rounds=st.integers(min_value=1, max_value=4),
    form=st.sampled_from(SECRET_FORMS),
)
def test_imported_format_garbage_costs_at_most_one_read_per_id_per_ttl(
    unit_hasher: Hasher, ids: list[str], secret: str, rounds: int, form: str
) -> None:
    store, clock = CountingStore(), Clock()
    authorizer = build_authorizer(store, unit_hasher, clock)
    for round_ in range(rounds):
        for client_id in ids * 3:
            assert decide(authorizer, presented_headers(form, client_id, secret)) != "allowed"
        assert all(reads <= round_ + 1 for reads in store.reads.values()), store.reads
        clock.now += STATUS_TTL
    assert set(store.reads) <= set(ids)
