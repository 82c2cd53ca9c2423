import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekey.credentials import (
    ALPHABET,
    CLIENT_ID_LENGTH,
    CLIENT_SECRET_LENGTH,
    ClientSecret,
    generate_client_id,
    parse_client_id,
)
from gatekey.errors import MalformedCredential


def test_client_id_has_prefix_random_part_and_checksum() -> None:
    client_id = generate_client_id()
    assert client_id.startswith("gk_")
    assert len(client_id) == CLIENT_ID_LENGTH == 3 + 22 + 6
    assert parse_client_id(client_id) == client_id


def test_client_secret_carries_256_bits_in_a_recognisable_format() -> None:
    secret = ClientSecret.generate().reveal()
    assert secret.startswith("gks_")
    assert len(secret) == CLIENT_SECRET_LENGTH == 4 + 43 + 6
    assert set(secret[4:]) <= set(ALPHABET)
    assert 62**43 >= 2**256
    assert ClientSecret.parse(secret).reveal() == secret


def test_generated_values_do_not_repeat() -> None:
    assert len({ClientSecret.generate().reveal() for _ in range(2000)}) == 2000
    assert len({generate_client_id() for _ in range(2000)}) == 2000


def test_secret_is_redacted_in_repr_and_str() -> None:
    secret = ClientSecret.generate()
    assert secret.reveal() not in repr(secret)
    assert secret.reveal() not in str(secret)
    assert secret.reveal() not in f"{secret} {secret!r}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a string"),
        (42, "must be a string"),
        ("", "must start with 'gks_'"),
        ("gk_" + "A" * 49, "must start with 'gks_'"),
        ("gks_short", "must be 53 characters long"),
        ("gks_" + "é" * 49, "only ASCII"),
        ("gks_" + "-" * 49, "base62"),
    ],
)
def test_malformed_secret_is_rejected_with_a_message_naming_the_problem(
    value: object, message: str
) -> None:
    with pytest.raises(MalformedCredential, match=message) as caught:
        ClientSecret.parse(value)
    assert caught.value.field == "client_secret"
    assert caught.value.reason == "malformed_credential"


def test_secret_with_wrong_checksum_is_rejected_without_echoing_it() -> None:
    good = ClientSecret.generate().reveal()
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    with pytest.raises(MalformedCredential, match="checksum") as caught:
        ClientSecret.parse(bad)
    assert bad not in str(caught.value)
    assert bad[4:20] not in str(caught.value)


def test_client_id_is_not_accepted_as_a_secret_or_the_other_way_round() -> None:
    with pytest.raises(MalformedCredential):
        ClientSecret.parse(generate_client_id())
    with pytest.raises(MalformedCredential, match="client_id"):
        parse_client_id(ClientSecret.generate().reveal())


@given(
    position=st.integers(min_value=4, max_value=CLIENT_SECRET_LENGTH - 1),
    shift=st.integers(min_value=1, max_value=len(ALPHABET) - 1),
)
def test_any_single_character_change_is_caught_by_the_checksum(position: int, shift: int) -> None:
    # The secret is random; the change is drawn as a shift so the draws never depend on it.
    secret = ClientSecret.generate().reveal()
    replacement = ALPHABET[(ALPHABET.index(secret[position]) + shift) % len(ALPHABET)]
    mutated = secret[:position] + replacement + secret[position + 1 :]
    with pytest.raises(MalformedCredential):
        ClientSecret.parse(mutated)


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_valid_client_id(text: str) -> None:
    # A random string passes the CRC32 only with probability ~2**-32: hypothesis won't find one.
    with pytest.raises(MalformedCredential):
        parse_client_id(text)
