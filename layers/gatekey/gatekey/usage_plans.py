"""Usage plans: the set a service token may be put on (the stack's `UsagePlans` parameter and
the demo's plan), the API Gateway API key Gatekey owns for a metered token, and the port
through which the admin creates, moves, disables and deletes that key.

A metered token's authorizer Allow names its key (`usageIdentifierKey`), so a REST API whose
`ApiKeySourceType` is AUTHORIZER meters and throttles the token by its plan. The key's value
is API Gateway's, random, and never the Client Secret; it is kept on the token's item, where
the authorizer reads it without another read, and is never answered, audited or logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from gatekey.errors import ValidationError

# A plan's name as the parameter gives it, and an API Gateway id (10 characters of [a-z0-9]
# in AWS; other characters are refused, so the set can be read back unambiguously).
_PLAN_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PLAN_ID: Final = re.compile(r"[A-Za-z0-9]{1,64}")
MAX_USAGE_PLAN_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class UsagePlan:
    name: str
    plan_id: str


class UsagePlans:
    """The plans a token may carry, by name or by id: `name=id,name2=id2` (empty entries
    ignored, so a parameter may be empty)."""

    def __init__(self, plans: Iterable[UsagePlan] = ()) -> None:
        self._plans = tuple(plans)
        names = [p.name for p in self._plans]
        if len(set(names)) != len(names):
            raise ValueError("names a usage plan twice")

    @classmethod
    def parse(cls, raw: str) -> UsagePlans:
        """Read the environment's list; ValueError says what is wrong (Config names the
        variable)."""
        plans = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            name, separator, plan_id = (part.strip() for part in entry.partition("="))
            if not separator or not _PLAN_NAME.fullmatch(name) or not _PLAN_ID.fullmatch(plan_id):
                raise ValueError(
                    "must be a comma-separated list of name=usagePlanId (names of "
                    "[A-Za-z0-9_.-], ids of [A-Za-z0-9])"
                )
            plans.append(UsagePlan(name, plan_id))
        return cls(plans)

    def __iter__(self) -> Iterator[UsagePlan]:
        return iter(self._plans)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsagePlans) and self._plans == other._plans

    def __hash__(self) -> int:
        return hash(self._plans)

    def __repr__(self) -> str:
        return f"UsagePlans({', '.join(f'{p.name}={p.plan_id}' for p in self._plans)})"

    def resolve(self, value: object) -> UsagePlan:
        """The plan named `value` (its name, or its id); a ValidationError naming the plans
        there are otherwise, before anything is read or written."""
        if isinstance(value, str):
            for plan in self._plans:
                if value in (plan.name, plan.plan_id):
                    return plan
        known = ", ".join(p.name for p in self._plans) or "none: the stack's UsagePlans is empty"
        raise ValidationError("usage_plan", f"is not a usage plan of this stack (plans: {known})")


@dataclass(frozen=True, slots=True)
class PlanKey:
    """A metered token's usage plan (its name and the id it resolved to when the key was
    put on it) and the API Gateway API key Gatekey made for the token."""

    plan: str
    plan_id: str
    api_key_id: str
    # What the authorizer answers as usageIdentifierKey: not a credential (without the
    # token's secret it opens nothing), but whoever holds it can spend the token's quota
    # on an API that takes keys from the x-api-key header. Never shown.
    api_key_value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    value: str = field(repr=False)


class ApiKeys(Protocol):
    """API Gateway's API keys and usage-plan keys, as the admin uses them. Each call either
    does what it says or raises (a DependencyError, or a ValidationError for a plan API
    Gateway does not know); removing what is already gone is done, not an error."""

    def create(self, client_id: str, *, enabled: bool) -> ApiKey: ...

    def set_enabled(self, key_id: str, enabled: bool) -> None: ...

    def delete(self, key_id: str) -> None: ...

    def associate(self, plan_id: str, key_id: str) -> None: ...

    def dissociate(self, plan_id: str, key_id: str) -> None: ...
