"""Source-IP and API bindings as values (gatekey.bindings): CIDR blocks parsed, normalised and
matched as ipaddress does, with the edges a person or API Gateway can hand them (IPv4-mapped
IPv6, zone ids, host bits, /0, garbage); API ids and stages; the audience of an access token
for one API, and which ones a token request may ask for."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekey.bindings import (
    MAX_APIS,
    MAX_CIDRS,
    ApiTarget,
    api_allowed,
    audience_target,
    parse_api,
    parse_cidr,
    requested_target,
    source_address,
    source_allowed,
    validate_apis,
    validate_cidrs,
)
from gatekey.errors import InvalidTarget, ValidationError

v4_networks = st.builds(
    lambda address, prefix: ipaddress.IPv4Network((int(address), prefix), strict=False),
    st.ip_addresses(v=4),
    st.integers(0, 32),
)
v6_networks = st.builds(
    lambda address, prefix: ipaddress.IPv6Network((int(address), prefix), strict=False),
    st.ip_addresses(v=6),
    st.integers(0, 128),
)
networks = v4_networks | v6_networks
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(MAPPED.network_address) | int(address))


# -- CIDR blocks ---------------------------------------------------------------------------


@given(networks)
def test_a_block_is_stored_in_its_normal_form_which_parses_to_itself(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(MAPPED):
        return  # IPv4-mapped: below
    normal = parse_cidr(str(network)).with_prefixlen
    assert normal == network.with_prefixlen
    assert parse_cidr(normal).with_prefixlen == normal
    # Written out in full, or upper case, it is the same block.
    assert parse_cidr(network.exploded.upper()).with_prefixlen == normal


@given(st.ip_addresses())
def test_a_bare_address_is_a_block_of_one(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if address.version == 6 and address in MAPPED:
        return
    assert parse_cidr(str(address)).num_addresses == 1


@given(v4_networks)
def test_an_ipv4_mapped_block_is_the_ipv4_block_it_maps(network: ipaddress.IPv4Network) -> None:
    text = f"::ffff:{network.network_address}/{96 + network.prefixlen}"
    assert parse_cidr(text) == network


@given(st.ip_addresses(v=4), st.integers(0, 31))
def test_host_bits_set_are_refused_naming_the_block(
    address: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.IPv4Network((int(address), prefix), strict=False)
    if network.network_address == address:
        return
    text = f"{address}/{prefix}"
    with pytest.raises(ValidationError) as refused:
        parse_cidr(text)
    assert refused.value.field == "bound_cidrs"
    assert text in refused.value.message
    assert "host bits" in refused.value.message


@pytest.mark.parametrize(
    "value",
    [
        "fe80::1%eth0",
        "fe80::%eth0/64",
        "fe80::1%1",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "010.0.0.0/8",  # leading zeros: octal to some parsers
        "10.0.0",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "",
        "*",
        "localhost",
        "2001:db8::/32/1",
        "1" * 200,
        "\uff11\uff10.0.0.0/8",  # full-width digits
        None,
        42,
        ["10.0.0.0/8"],
    ],
)
def test_what_is_not_a_block_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_cidr(value)
    assert refused.value.field == "bound_cidrs"
    if isinstance(value, str) and value.isascii() and value.isprintable() and len(value) < 60:
        assert f"'{value}'" in refused.value.message


def test_blocks_are_normalised_deduplicated_and_bounded() -> None:
    given_ = ["2001:DB8:0:0::/32", "2001:db8::/32", "203.0.113.7", "::ffff:10.0.0.0/104", "::/0"]
    assert validate_cidrs(given_) == ("2001:db8::/32", "203.0.113.7/32", "10.0.0.0/8", "::/0")
    assert validate_cidrs([]) == ()
    assert len(validate_cidrs([f"10.0.0.{i}" for i in range(MAX_CIDRS)])) == MAX_CIDRS
    with pytest.raises(ValidationError, match=f"at most {MAX_CIDRS}"):
        validate_cidrs([f"10.0.0.{i}" for i in range(MAX_CIDRS + 1)])
    with pytest.raises(ValidationError, match="list"):
        validate_cidrs("10.0.0.0/8")


# -- matching a source ------------------------------------------------------------------------


@given(networks, st.ip_addresses())
def test_a_source_matches_exactly_the_blocks_that_hold_it(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    block = parse_cidr(str(network))
    normal = source_address(str(address))
    assert normal is not None
    assert source_allowed((block.with_prefixlen,), str(address)) == (normal in block)


@given(v4_networks, st.ip_addresses(v=4))
def test_an_ipv4_mapped_source_is_its_ipv4_address(
    network: ipaddress.IPv4Network, address: ipaddress.IPv4Address
) -> None:
    cidrs = (network.with_prefixlen,)
    assert source_allowed(cidrs, str(mapped(address))) == source_allowed(cidrs, str(address))
    assert source_allowed(cidrs, str(mapped(address))) == (address in network)


@given(st.ip_addresses())
def test_slash_zero_is_every_address_of_its_family_and_none_of_the_other(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    ipv4 = source_address(str(address)).version == 4  # type: ignore[union-attr]
    assert source_allowed(("0.0.0.0/0",), str(address)) is ipv4
    assert source_allowed(("::/0",), str(address)) is not ipv4
    assert source_allowed(("0.0.0.0/0", "::/0"), str(address))


@given(st.text(max_size=80) | st.none() | st.integers())
def test_a_source_that_is_no_address_is_never_allowed_and_never_an_error(value: object) -> None:
    try:
        ipaddress.ip_address(value)  # type: ignore[arg-type]
        is_address = isinstance(value, str) and "%" not in value
    except ValueError:
        is_address = False
    if not is_address:
        assert not source_allowed(("0.0.0.0/0", "::/0"), value)
    # Unbound: the source is not looked at.
    assert source_allowed((), value)


def test_a_source_with_a_zone_id_is_refused() -> None:
    assert not source_allowed(("fe80::/10",), "fe80::1%eth0")
    assert source_allowed(("fe80::/10",), "fe80::1")


# -- APIs ------------------------------------------------------------------------------------

api_ids = st.from_regex(r"[a-z0-9]{1,64}", fullmatch=True)
stages = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True) | st.just("$default")


@given(api_ids, st.none() | stages)
def test_an_api_is_its_id_and_maybe_a_stage(api_id: str, stage: str | None) -> None:
    target = ApiTarget(api_id, stage)
    assert parse_api(str(target)) == target
    assert audience_target(target.audience) == target
    assert target.reaches(api_id, stage or "any-stage")
    assert not target.reaches(api_id + "x", stage or "v1")
    assert ApiTarget(api_id).covers(target)
    assert target.covers(ApiTarget(api_id)) is (stage is None)


@pytest.mark.parametrize(
    "value",
    ["", "A1B2C3D4E5", "a1b2/", "a1b2/v1/x", "a1b2/$other", "a1-b2", "a" * 65, "a1b2/ v1", None],
)
def test_what_is_not_an_api_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_api(value)
    assert refused.value.field == "bound_apis"


def test_apis_are_deduplicated_bounded_and_matched_by_id_and_stage() -> None:
    apis = validate_apis(["a1b2c3d4e5", "a1b2c3d4e5", "f6g7h8i9j0/prod", "k1/$default"])
    assert apis == ("a1b2c3d4e5", "f6g7h8i9j0/prod", "k1/$default")
    assert api_allowed(apis, "a1b2c3d4e5", "v1")
    assert api_allowed(apis, "f6g7h8i9j0", "prod")
    assert not api_allowed(apis, "f6g7h8i9j0", "staging")
    assert api_allowed(apis, "k1", "$default")
    assert not api_allowed(apis, "zz", "v1")
    assert api_allowed((), "zz", "v1")  # unbound: every API
    with pytest.raises(ValidationError, match=f"at most {MAX_APIS}"):
        validate_apis([f"api{i}" for i in range(MAX_APIS + 1)])


def test_a_token_request_may_name_only_an_api_the_token_may_reach_all_of() -> None:
    urn = "urn:gatekey:api:"
    assert requested_target(f"{urn}a1", ()).audience == f"{urn}a1"  # unbound: any API
    assert requested_target(f"{urn}a1/prod", ("a1",)) == ApiTarget("a1", "prod")
    assert requested_target(f"{urn}a1/prod", ("a1/prod",)) == ApiTarget("a1", "prod")
    for refused, apis in [
        (f"{urn}a1", ("a1/prod",)),  # every stage, for a token bound to one
        (f"{urn}b2", ("a1",)),
        (f"{urn}a1/staging", ("a1/prod",)),
        ("https://a1.execute-api.us-east-1.amazonaws.com/prod", ()),
        ("gatekey", ()),
        (f"{urn}A1", ()),
        (urn, ()),
    ]:
        with pytest.raises(InvalidTarget):
            requested_target(refused, apis)
