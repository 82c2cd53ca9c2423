"""What a service token is bound to besides its routes: the source addresses it may come from
(CIDR blocks, like Vault's ``token_bound_cidrs``) and the APIs (and stages) it may reach, with
the audience of an access token issued for one API (RFC 8707's ``resource``).

Pure values and checks: the authorizer and the token endpoint decide with them, the admin API
validates what a person sets with them.

- A CIDR block is IPv4 or IPv6, given as a block or a bare address (a /32 or /128), stored
  normalised (``ipaddress``'s compressed form). A block with host bits set is refused rather
  than guessed at (``10.0.0.5/24`` may mean the host or the network); so is a zone id
  (``fe80::1%eth0``), which no address API Gateway reports carries. An IPv4-mapped IPv6 address
  is the IPv4 address it maps, in a block (``::ffff:10.0.0.0/104`` is ``10.0.0.0/8``) and in a
  request's source alike.
- An API is its id (``a1b2c3d4e5``: every stage) or its id and one stage (``a1b2c3d4e5/prod``,
  or ``$default`` for an HTTP API's default stage), as a method ARN names them.
- An access token for one API has ``aud`` = ``urn:gatekey:api:<id>`` or
  ``urn:gatekey:api:<id>/<stage>``, and is accepted only there.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from gatekey.errors import InvalidTarget, ValidationError

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_CIDRS: Final = 50
MAX_APIS: Final = 20
# The longest text form of an IPv6 block with an embedded IPv4 address, with room to spare.
_MAX_CIDR_LENGTH: Final = 64
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")

# API Gateway's API ids are 10 lower-case letters and digits; the local stack's are its logical
# ids in lower case (`demoapi`). A stage: what API Gateway accepts, or HTTP APIs' `$default`.
_API_ID: Final = re.compile(r"[a-z0-9]{1,64}")
_STAGE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}|\$default")
AUDIENCE_PREFIX: Final = "urn:gatekey:api:"


# -- source addresses --------------------------------------------------------------------------


def _shown(value: object) -> str:
    """A value as an error message may quote it: printable ASCII, cut short."""
    text = value if isinstance(value, str) else repr(value)
    if not (text.isascii() and text.isprintable()):
        text = repr(text)
    return text if len(text) <= _MAX_CIDR_LENGTH else text[:_MAX_CIDR_LENGTH] + "..."


def parse_cidr(value: object, field: str = "bound_cidrs") -> Network:
    """One CIDR block (or bare address), normalised; a ValidationError naming it otherwise."""
    example = "a CIDR block such as 203.0.113.0/24 or 2001:db8::/32, or one address"
    if not isinstance(value, str) or not value or len(value) > _MAX_CIDR_LENGTH:
        raise ValidationError(field, f"'{_shown(value)}' is not {example}")
    if "%" in value:
        raise ValidationError(field, f"'{_shown(value)}' has a zone id (%...); give none")
    try:
        network: Network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        hint = str(exc) if "host bits set" in str(exc) else f"not {example}"
        raise ValidationError(field, f"'{_shown(value)}' is {hint}") from None
    return _unmapped(network)


def _unmapped(network: Network) -> Network:
    """An IPv4-mapped IPv6 block (within ::ffff:0:0/96) as the IPv4 block it maps."""
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= _MAPPED.prefixlen
        and network.subnet_of(_MAPPED)
    ):
        base = int(network.network_address) & 0xFFFF_FFFF
        return ipaddress.IPv4Network((base, network.prefixlen - _MAPPED.prefixlen))
    return network


def validate_cidrs(value: object, field: str = "bound_cidrs") -> tuple[str, ...]:
    """CIDR blocks a person sets: each valid, at most MAX_CIDRS, normalised, deduplicated.
    Empty: the token is not bound to addresses."""
    if not isinstance(value, list | tuple):
        raise ValidationError(field, "must be a list of CIDR blocks")
    if len(value) > MAX_CIDRS:
        raise ValidationError(field, f"must have at most {MAX_CIDRS} entries")
    return tuple(dict.fromkeys(parse_cidr(v, field).with_prefixlen for v in value))


@functools.lru_cache(maxsize=1024)  # a token's blocks, parsed once, not on every request
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(parse_cidr(c) for c in cidrs)


def source_address(value: object) -> Address | None:
    """A request's source IP as an address (an IPv4-mapped one as its IPv4 address); None when
    there is none or it is not an address, zone ids included."""
    if not isinstance(value, str) or not value or len(value) > _MAX_CIDR_LENGTH or "%" in value:
        return None
    try:
        address: Address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def source_allowed(cidrs: tuple[str, ...], source_ip: object) -> bool:
    """Whether a request from `source_ip` may use a token bound to `cidrs` (normalised, as
    stored). Unbound (no blocks): always. Bound: only from an address inside one of them; no
    address, or one that does not parse, never."""
    if not cidrs:
        return True
    address = source_address(source_ip)
    return address is not None and any(address in network for network in _networks(cidrs))


# -- APIs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """An API, and one of its stages or (None) all of them."""

    api_id: str
    stage: str | None = None

    def __str__(self) -> str:
        return self.api_id if self.stage is None else f"{self.api_id}/{self.stage}"

    def covers(self, other: ApiTarget) -> bool:
        """Whether everything `other` names is within this one."""
        return self.api_id == other.api_id and self.stage in (None, other.stage)

    def reaches(self, api_id: str, stage: str) -> bool:
        """Whether a request to `api_id`'s `stage` is within this one."""
        return self.api_id == api_id and self.stage in (None, stage)

    @property
    def audience(self) -> str:
        """The `aud` of an access token issued for this API (and stage)."""
        return f"{AUDIENCE_PREFIX}{self}"


def parse_api(value: object, field: str = "bound_apis") -> ApiTarget:
    """`<api id>` or `<api id>/<stage>`; a ValidationError naming the value otherwise."""
    if isinstance(value, str) and len(value) <= 200:
        api_id, slash, stage = value.partition("/")
        if _API_ID.fullmatch(api_id) and (not slash or _STAGE.fullmatch(stage)):
            return ApiTarget(api_id, stage if slash else None)
    raise ValidationError(
        field,
        f"'{_shown(value)}' is not an API id ('a1b2c3d4e5', lower-case letters and digits) "
        "or an API id and a stage ('a1b2c3d4e5/prod', '<id>/$default')",
    )


def validate_apis(value: object, field: str = "bound_apis") -> tuple[str, ...]:
    """APIs a person binds a token to: each valid, at most MAX_APIS, deduplicated. Empty: every
    API that uses the authorizer."""
    if not isinstance(value, list | tuple):
        raise ValidationError(field, "must be a list of API ids ('<id>' or '<id>/<stage>')")
    if len(value) > MAX_APIS:
        raise ValidationError(field, f"must have at most {MAX_APIS} entries")
    return tuple(dict.fromkeys(str(parse_api(v, field)) for v in value))


@functools.lru_cache(maxsize=1024)
def _targets(apis: tuple[str, ...]) -> tuple[ApiTarget, ...]:
    return tuple(parse_api(a) for a in apis)


def api_allowed(apis: tuple[str, ...], api_id: str, stage: str) -> bool:
    """Whether a token bound to `apis` may reach `api_id`'s `stage` (unbound: every API)."""
    return not apis or any(t.reaches(api_id, stage) for t in _targets(apis))


def audience_target(aud: object) -> ApiTarget | None:
    """The API an access token's `aud` names, if it is one of Gatekey's API audiences."""
    if not isinstance(aud, str) or not aud.startswith(AUDIENCE_PREFIX):
        return None
    try:
        return parse_api(aud.removeprefix(AUDIENCE_PREFIX))
    except ValidationError:
        return None


def requested_target(value: str, apis: tuple[str, ...]) -> ApiTarget:
    """The API a token request names (RFC 8707 `resource`, or `audience`), as
    `urn:gatekey:api:<id>[/<stage>]`: InvalidTarget unless it is one and the token may reach
    all of it (a token bound to `a1b2c3d4e5/prod` may not ask for every stage of the API)."""
    target = audience_target(value)
    if target is None:
        raise InvalidTarget(
            "resource",
            f"must be an API of this authorizer, as '{AUDIENCE_PREFIX}<api id>[/<stage>]'",
        )
    if apis and not any(bound.covers(target) for bound in _targets(apis)):
        raise InvalidTarget("resource", f"'{target.audience}' is not an API this client may reach")
    return target
