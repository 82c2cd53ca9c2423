"""The key ring's derived states, and the verifiers' public-key cache."""

from dataclasses import dataclass, replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gatekey.aws.keyring_store import save_request
from gatekey.errors import ConfigurationError
from gatekey.keyring import KeyRing, PublicKeyCache
from gatekey.signing import LocalKeySigner, PublicKey


def new_key() -> PublicKey:
    return LocalKeySigner(ec.generate_private_key(ec.SECP256R1())).public_key


def test_states_follow_from_the_times_fixed_when_a_key_is_added() -> None:
    first, second = new_key(), new_key()
    ring = KeyRing.initial(first, "arn:first", now=0)
    ring = ring.with_key("arn:second", second, now=1000, publication_delay=100, retire_after=50)
    assert ring.signing_key(1099).kid == first.kid
    assert ring.signing_key(1100).kid == second.kid
    assert {k.kid for k in ring.published(1149)} == {first.kid, second.kid}
    assert {k.kid for k in ring.published(1150)} == {second.kid}
    assert [k.kid for k in ring.retired(1150)] == [first.kid]
    assert [k.kid for k in ring.without_retired(1150).keys] == [second.kid]
    assert not ring.rotation_due(1999, cadence=1000)
    assert ring.rotation_due(2000, cadence=1000)


def test_a_ring_is_never_empty() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        KeyRing(())


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self, *keys: PublicKey) -> None:
        self.keys = {k.kid: k for k in keys}
        self.fetches = 0

    def __call__(self) -> dict[str, PublicKey]:
        self.fetches += 1
        return dict(self.keys)


def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    known = new_key()
    source, clock = Source(known), Clock()
    cache = PublicKeyCache(source, ttl=300, refetch_interval=10, clock=clock)
    assert cache.get(known.kid) == known
    # A storm of tokens naming kids nobody published costs no more fetches within the interval.
    for i in range(1000):
        assert cache.get(f"garbage-{i}") is None
    assert source.fetches == 1
    clock.now = 10
    cache.get("garbage")
    assert source.fetches == 2


def test_a_newly_published_key_is_found_after_the_interval_and_keys_expire_after_ttl() -> None:
    old, new = new_key(), new_key()
    source, clock = Source(old), Clock()
    cache = PublicKeyCache(source, ttl=300, refetch_interval=10, clock=clock)
    assert cache.keys() == {old.kid: old}
    source.keys = {new.kid: new}
    assert cache.get(new.kid) is None  # within the penalty interval
    clock.now = 10
    assert cache.get(new.kid) == new
    assert cache.get(old.kid) is None  # gone from the source: gone here
    clock.now = 310
    cache.get(new.kid)
    assert source.fetches == 3  # the TTL refetches even a known kid


def test_a_ring_is_written_only_over_the_version_it_was_read_at() -> None:
    first = KeyRing.initial(new_key(), "arn:first", now=0)
    create = save_request("tokens", first)
    assert create["ConditionExpression"] == "attribute_not_exists(pk)"
    assert create["Item"]["version"] == {"N": "1"}
    assert "ExpressionAttributeValues" not in create
    update = save_request("tokens", replace(first, version=4))
    assert update["TableName"] == "tokens"
    assert update["ConditionExpression"] == "#version = :expected"
    assert update["ExpressionAttributeValues"] == {":expected": {"N": "4"}}
    assert update["Item"]["version"] == {"N": "5"}
    assert update["Item"]["pk"] == {"S": "SIGNING_KEYS"}
