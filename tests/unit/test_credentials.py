import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gatekey.credentials import (
    ALPHABET,
    CLIENT_ID_LENGTH,
    CLIENT_SECRET_LENGTH,
    ClientSecret,
    ImportedFormat,
    derived_client_id,
    generate_client_id,
    imported_format,
    parse_client_id,
    parse_credentials,
    secret_bits,
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
    # (One with an imported format's exact shape is no Gatekey id but is looked up: below.)
    assume(imported_format(text) is None)
    with pytest.raises(MalformedCredential):
        parse_client_id(text)


# -- imported formats: recognised by their shape, never by a checksum ---------------------------

ACCESS_ID = "0123456789abcdef0123456789abcdef.access"
ACCESS_SECRET = "db938bf541cb207b9407b41599239794a10757911ee1c62427f689b9dbc6fe4c"
COGNITO_ID = "38fjsnc484p94kpqsnet7mpld0"  # AWS's documented example
COGNITO_SECRET = "1k2f9q0a7m3x5c8v6b4n1z7p0o9i8u7y6t5r4e3w2q1a0s9d8f7g"  # 52, as generated


def test_each_imported_format_is_recognised_by_its_exact_shape() -> None:
    assert imported_format(ACCESS_ID) is ImportedFormat.ACCESS
    assert imported_format(COGNITO_ID) is ImportedFormat.COGNITO
    for value in (
        generate_client_id(),
        ACCESS_ID.upper(),
        ACCESS_ID.replace(".access", ".Access"),
        ACCESS_ID[1:],
        ACCESS_ID + " ",
        "x" + ACCESS_ID,
        COGNITO_ID[:-1],
        COGNITO_ID + "0",
        COGNITO_ID.upper(),
        COGNITO_ID[:-1] + "_",
        COGNITO_ID[:-1] + "\u0660",  # a non-ASCII digit
    ):
        assert imported_format(value) is None, value


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        (ACCESS_ID, ACCESS_SECRET),
        (COGNITO_ID, COGNITO_SECRET),
        (COGNITO_ID, "Custom_Secret+With_Upper_Case_42"),  # a custom Cognito secret
        # after a rotation, an imported id holds a Gatekey secret
        (ACCESS_ID, ClientSecret.generate().reveal()),
        (COGNITO_ID, ClientSecret.generate().reveal()),
    ],
)
def test_an_imported_id_is_accepted_with_its_own_format_or_a_gatekey_secret(
    client_id: str, secret: str
) -> None:
    parsed_id, parsed_secret = parse_credentials(client_id, secret)
    assert (parsed_id, parsed_secret.reveal()) == (client_id, secret)


@pytest.mark.parametrize(
    ("client_id", "secret", "message"),
    [
        # a Gatekey id takes a Gatekey secret only, format and checksum checked
        (generate_client_id(), ACCESS_SECRET, "must start with 'gks_'"),
        # a secret of the other format, or of none
        (ACCESS_ID, COGNITO_SECRET, "64 lower-case hex"),
        (ACCESS_ID, ACCESS_SECRET.upper(), "64 lower-case hex"),
        (ACCESS_ID, ACCESS_SECRET[:-1], "64 lower-case hex"),
        (ACCESS_ID, ACCESS_SECRET[:30], "too weak"),
        (COGNITO_ID, COGNITO_SECRET[:24], "too weak"),
        (COGNITO_ID, "a" * 40, "distinct"),
        (COGNITO_ID, COGNITO_SECRET + "-", r"A-Za-z0-9_"),
        # a damaged Gatekey secret is still refused by its checksum
        (ACCESS_ID, ClientSecret.generate().reveal()[:-1] + "!", "base62"),
        (ACCESS_ID, None, "must be a string"),
    ],
)
def test_a_secret_that_is_not_the_ids_format_is_refused_without_io(
    client_id: str, secret: object, message: str
) -> None:
    with pytest.raises(MalformedCredential, match=message) as caught:
        parse_credentials(client_id, secret)
    assert caught.value.field == "client_secret"
    if isinstance(secret, str):
        assert secret not in str(caught.value)


def test_entropy_is_counted_in_the_smallest_alphabet_holding_the_secret() -> None:
    assert secret_bits("0" * 64) == pytest.approx(64 * 3.3219, rel=1e-3)  # digits
    assert secret_bits(ACCESS_SECRET) == 256  # hex
    assert secret_bits(COGNITO_SECRET) == pytest.approx(52 * 5.1699, rel=1e-3)  # base36
    assert secret_bits("aA" * 12) == pytest.approx(24 * 5.954, rel=1e-3)  # base62
    assert secret_bits("a_" * 12) == 24 * 6  # Cognito's [\\w+]
    assert secret_bits("a-" * 12) == 0  # no alphabet of ours: refused by shape anyway


@given(st.text(max_size=80).map(lambda tail: "gk_" + tail))
def test_every_malformed_gatekey_id_is_refused_offline(value: str) -> None:
    # An id that starts with gk_ is never read as an imported format: its checksum decides.
    assert imported_format(value) is None
    with pytest.raises(MalformedCredential):
        parse_client_id(value)


def test_a_derived_client_id_is_a_valid_one_and_the_same_for_the_same_seed() -> None:
    client_id = derived_client_id("stack\nBotToken\nrequest-1")
    assert parse_client_id(client_id) == client_id
    assert len(client_id) == CLIENT_ID_LENGTH
    assert derived_client_id("stack\nBotToken\nrequest-1") == client_id
    assert derived_client_id("stack\nBotToken\nrequest-2") != client_id
