import pytest

from gatekey.credentials import ClientSecret
from gatekey.errors import ConfigurationError
from gatekey.hashing import Hasher, SecretHash

PEPPER_1 = "a" * 64
PEPPER_2 = "b" * 64


def test_hash_is_hmac_sha256_hex_tagged_with_the_current_key_id(unit_hasher: Hasher) -> None:
    secret = ClientSecret.generate()
    stored = unit_hasher.hash(secret)
    assert stored.key_id == "p1"
    assert len(stored.digest) == 64
    assert secret.reveal() not in repr(stored)
    assert unit_hasher.verify(secret, stored)


def test_a_different_secret_does_not_verify(unit_hasher: Hasher) -> None:
    stored = unit_hasher.hash(ClientSecret.generate())
    assert not unit_hasher.verify(ClientSecret.generate(), stored)


def test_the_pepper_matters_so_a_copied_table_alone_is_useless() -> None:
    secret = ClientSecret.generate()
    one = Hasher.from_key_ring({"current": "p1", "p1": PEPPER_1})
    other = Hasher.from_key_ring({"current": "p1", "p1": PEPPER_2})
    assert one.hash(secret) != other.hash(secret)
    assert not other.verify(secret, one.hash(secret))


def test_after_a_pepper_change_old_hashes_still_verify_and_new_ones_use_the_new_key() -> None:
    secret = ClientSecret.generate()
    before = Hasher.from_key_ring({"current": "p1", "p1": PEPPER_1}).hash(secret)
    after = Hasher.from_key_ring({"current": "p2", "p1": PEPPER_1, "p2": PEPPER_2})
    assert after.verify(secret, before)
    assert after.hash(secret).key_id == "p2"


def test_a_hash_made_with_a_pepper_no_longer_in_the_ring_never_matches(
    unit_hasher: Hasher,
) -> None:
    secret = ClientSecret.generate()
    stored = unit_hasher.hash(secret)
    assert not unit_hasher.verify(secret, SecretHash("gone", stored.digest))


def test_peppers_never_appear_in_the_hasher_repr() -> None:
    hasher = Hasher.from_key_ring({"current": "p1", "p1": PEPPER_1})
    assert PEPPER_1 not in repr(hasher)


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ({"p1": PEPPER_1}, "'current' must name a key id"),
        ({"current": "p2", "p1": PEPPER_1}, "has no key 'p2'"),
        ({"current": "p1", "p1": "short"}, "at least 32 characters"),
        ({"current": "p1", "p1": 12345}, "at least 32 characters"),
    ],
)
def test_a_bad_key_ring_fails_with_a_clear_configuration_error(
    ring: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Hasher.from_key_ring(ring)
