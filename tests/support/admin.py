"""What the admin's domain tests share: a TokenAdmin on any store, tokens made as the admin API
makes them (its defaults), and a store that lets another writer in between a read and its
write."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Any

from gatekey.admin import Actor, Issued, TokenAdmin
from gatekey.credentials import ClientSecret
from gatekey.durations import Duration
from gatekey.errors import DependencyError, ValidationError
from gatekey.hashing import Hasher
from gatekey.model import AuditEvent, RotationPolicy, ServiceToken
from gatekey.store import InMemoryTokenStore, TokenStore
from gatekey.usage_plans import ApiKey
from support.constants import ADMIN_ARN

# The admin API's caller, as the admin handler's test event names it.
ACTOR = Actor(ADMIN_ARN, "198.51.100.7")
# What the admin API's CreateTokenRequest gives for each field left out.
DEFAULTS: dict[str, Any] = {
    "name": "ci-bot",
    "duration": Duration(8760),
    "routes": ("*",),
    "scopes": (),
    "owner": None,
    "rotation": RotationPolicy(),
}


def admin_builder(
    store: TokenStore, hasher: Hasher, clock: Callable[[], int]
) -> Callable[[], TokenAdmin]:
    """TokenAdmins as the admin function wires them, each on the same store, hasher and clock
    (one per admin function container)."""

    def build() -> TokenAdmin:
        return TokenAdmin(store=store, hasher=hasher, clock=clock)

    return build


def issue(admin: TokenAdmin, actor: Actor = ACTOR, **fields: Any) -> Issued:
    """Create a token with the admin API's defaults for every field not given."""
    return admin.create(actor, **{**DEFAULTS, **fields})


def access_credential() -> tuple[str, ClientSecret]:
    """A fresh Client ID and Secret in Cloudflare Access's format, as Access issues them."""
    return f"{secrets.token_hex(16)}.access", ClientSecret(secrets.token_hex(32))


def cognito_credential() -> tuple[str, ClientSecret]:
    """A fresh app client id and secret in the format Cognito generates them."""
    alphabet = string.digits + string.ascii_lowercase
    client_id = "".join(secrets.choice(alphabet) for _ in range(26))
    return client_id, ClientSecret("".join(secrets.choice(alphabet) for _ in range(52)))


def bring(
    admin: TokenAdmin, client_id: str, secret: ClientSecret, actor: Actor = ACTOR, **fields: Any
) -> ServiceToken:
    """Import a Client ID and Secret with the admin API's defaults for every field not given."""
    return admin.import_token(actor, client_id=client_id, secret=secret, **{**DEFAULTS, **fields})


class RacingStore(InMemoryTokenStore):
    """An in-memory store where `before_write` runs once, between a read and the next update or
    delete: another admin (or the lifecycle) writing first, as a lost race with DynamoDB has
    it."""

    def __init__(self) -> None:
        super().__init__()
        self.before_write: Callable[[], object] | None = None

    def _race(self) -> None:
        racer, self.before_write = self.before_write, None
        if racer is not None:
            racer()

    def update(
        self, token: ServiceToken, event: AuditEvent, *, if_unused: bool = False
    ) -> ServiceToken:
        self._race()
        return super().update(token, event, if_unused=if_unused)

    def delete(self, token: ServiceToken, event: AuditEvent) -> None:
        self._race()
        super().delete(token, event)


# -- usage plans: API Gateway's API keys, in memory ------------------------------------------


class FakeApiKeys:
    """gatekey.usage_plans.ApiKeys in memory, as API Gateway keeps keys and usage-plan keys:
    a key on two plans is refused (as API Gateway refuses one on two plans of a stage), and
    `fail` names calls (`create`, `associate`, ...) that raise, once each, a DependencyError
    as a failed call does."""

    def __init__(self, plans: tuple[str, ...] = ()) -> None:
        self.plans = set(plans)
        self.keys: dict[str, tuple[str, bool]] = {}  # id -> (value, enabled)
        self.on_plan: dict[str, str] = {}  # key id -> plan id
        self.fail: list[str] = []
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            self.fail.remove(name)
            raise DependencyError(f"cannot {name}: TooManyRequestsException")

    def create(self, client_id: str, *, enabled: bool) -> ApiKey:
        self._call("create")
        key = ApiKey(secrets.token_hex(5), secrets.token_urlsafe(30))
        self.keys[key.key_id] = (key.value, enabled)
        return key

    def set_enabled(self, key_id: str, enabled: bool) -> None:
        self._call("set_enabled")
        self.keys[key_id] = (self.keys[key_id][0], enabled)

    def delete(self, key_id: str) -> None:
        self._call("delete")
        self.keys.pop(key_id, None)
        self.on_plan.pop(key_id, None)

    def associate(self, plan_id: str, key_id: str) -> None:
        self._call("associate")
        if plan_id not in self.plans:
            raise ValidationError("usage_plan", "API Gateway does not know this plan")
        assert key_id not in self.on_plan, "API Gateway refuses a key on two plans of a stage"
        self.on_plan[key_id] = plan_id

    def dissociate(self, plan_id: str, key_id: str) -> None:
        self._call("dissociate")
        if self.on_plan.get(key_id) == plan_id:
            del self.on_plan[key_id]

    def enabled(self, key_id: str) -> bool:
        return self.keys[key_id][1]
