"""What the lifecycle's tests share: a clock, a notifier that records (and fails on demand), a
Secrets Manager delivery without AWS, an in-memory store that counts what a run reads, and the
tokens the runs start from."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gatekey.admin import Actor, TokenAdmin
from gatekey.durations import DAY, Duration
from gatekey.errors import DependencyError, ValidationError
from gatekey.lifecycle import Lifecycle
from gatekey.model import (
    AuditAction,
    AuditEvent,
    RotationMode,
    RotationPolicy,
    ServiceToken,
    new_service_token,
)
from gatekey.store import InMemoryTokenStore, Page
from support.constants import ACCOUNT_ID, ADMIN, NOW, REGION

if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekey.auto_rotation import SecretDelivery
    from gatekey.credentials import ClientSecret
    from gatekey.hashing import Hasher
    from gatekey.notices import Notice, Notifier
    from gatekey.store import TokenStore


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class RecordingNotifier:
    """A notifier (the real AWS one on moto, or SilentNotifier) recording what went out, and
    able to fail a channel on demand."""

    inner: Notifier
    sent: list[tuple[str, str]] = field(default_factory=list)  # (notice_id, channel)
    fail_after: dict[str, int] = field(default_factory=dict)  # channel -> successful sends left
    lock: threading.Lock = field(default_factory=threading.Lock)
    channels: tuple[str, ...] = ("sns", "events")

    def send(self, notice: Notice, channel: str) -> None:
        with self.lock:
            left = self.fail_after.get(channel)
            if left is not None and left <= 0:
                raise DependencyError(f"{channel} notification failed: EndpointConnectionError")
            if left is not None:
                self.fail_after[channel] = left - 1
        self.inner.send(notice, channel)
        with self.lock:
            self.sent.append((notice.notice_id, channel))

    def duplicates(self) -> list[tuple[str, str]]:
        return [key for key, count in Counter(self.sent).items() if count > 1]


class SilentNotifier:
    """SNS and EventBridge that accept every notice and deliver none."""

    channels: tuple[str, ...] = ("sns", "events")

    def send(self, notice: Notice, channel: str) -> None:
        pass


@dataclass
class _Secret:
    versions: dict[str, str]  # version id -> value
    stages: dict[str, str]  # stage label -> version id


class FakeDelivery:
    """Consumers' delivery secrets as Secrets Manager keeps them (versions, AWSPENDING,
    AWSCURRENT, and AWSPREVIOUS given to the version AWSCURRENT leaves), for
    SecretsManagerDelivery's three calls."""

    def __init__(self) -> None:
        self._secrets: dict[str, _Secret] = {}
        self._ids = itertools.count(1)
        self.promote_fails = False  # Secrets Manager unreachable when a version is promoted

    def create(self, name: str, value: str = "{}") -> str:
        """A new secret whose current value is `value`; its ARN."""
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name}-{next(self._ids):06d}"
        self._secrets[arn] = _Secret({"v0": value}, {"AWSCURRENT": "v0"})
        return arn

    def current(self, arn: str) -> dict[str, str]:
        """What the consumer reads: the AWSCURRENT version."""
        secret = self._secrets[arn]
        return dict(json.loads(secret.versions[secret.stages["AWSCURRENT"]]))

    def pending(self, arn: str) -> dict[str, str]:
        """What was staged and nobody reads yet: the AWSPENDING version."""
        secret = self._secrets[arn]
        return dict(json.loads(secret.versions[secret.stages["AWSPENDING"]]))

    def check(self, secret_arn: str) -> None:
        """As SecretsManagerDelivery: a secret that is not there cannot be delivered to."""
        if secret_arn not in self._secrets:
            raise ValidationError("DeliverySecretArn", "Gatekey cannot use this secret")

    def stage(self, secret_arn: str, client_id: str, secret: ClientSecret) -> str:
        stored = self._secrets[secret_arn]
        version_id = f"v{next(self._ids)}"
        value = {"client_id": client_id, "client_secret": secret.reveal()}
        stored.versions[version_id] = json.dumps(value)
        stored.stages["AWSPENDING"] = version_id
        return version_id

    def promote(self, secret_arn: str, version_id: str) -> None:
        if self.promote_fails:
            raise DependencyError("secretsmanager failed: EndpointConnectionError")
        stored = self._secrets[secret_arn]
        if stored.stages["AWSCURRENT"] != version_id:
            self._move_current(stored, version_id)

    def withdraw(self, secret_arn: str, version_id: str) -> None:
        stored = self._secrets[secret_arn]
        previous = stored.stages.get("AWSPREVIOUS")
        if stored.stages["AWSCURRENT"] == version_id and previous is not None:
            self._move_current(stored, previous)

    @staticmethod
    def _move_current(stored: _Secret, version_id: str) -> None:
        stored.stages["AWSPREVIOUS"] = stored.stages["AWSCURRENT"]
        stored.stages["AWSCURRENT"] = version_id


def create(admin: TokenAdmin, name: str, hours: int | None, **rotation: Any) -> Any:
    policy = RotationPolicy(**rotation) if rotation else RotationPolicy()
    return admin.create(
        Actor(ADMIN),
        name=name,
        duration=Duration(hours),
        routes=("*",),
        scopes=(),
        owner=f"{name}@example.com",
        rotation=policy,
    )


def create_auto(admin: TokenAdmin, delivery: str) -> Any:
    return create(admin, "auto-bot", 40 * 24, mode=RotationMode.AUTO, delivery_secret_arn=delivery)


def lifecycle_builder(
    store: TokenStore,
    hasher: Hasher,
    notifier: Notifier,
    delivery: SecretDelivery,
    clock: Callable[[], int],
) -> Callable[..., Lifecycle]:
    """Runs as the tests make them: reminders at 30, 7 and 1 days, a 2-day grace; idle
    disabling and the page size as a test asks."""

    def build(idle_days: int = 0, page_size: int = 100) -> Lifecycle:
        return Lifecycle(
            store=store,
            hasher=hasher,
            notifier=notifier,
            delivery=delivery,
            reminder_days=(30, 7, 1),
            grace_seconds=2 * DAY,
            idle_days=idle_days,
            clock=clock,
            page_size=page_size,
        )

    return build


class CountingStore(InMemoryTokenStore):
    """The in-memory store, counting what a run reads as the DynamoDB tests count it: entries
    of the sparse indexes (a Query's Count) and items (GetItem)."""

    def __init__(self) -> None:
        super().__init__()
        self.index_entries = 0
        self.items = 0
        self._counting = threading.Lock()

    def _counted(self, page: Page[str]) -> Page[str]:
        with self._counting:
            self.index_entries += len(page.items)
        return page

    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken:
        token = super().get(client_id, consistent=consistent)
        with self._counting:
            self.items += 1
        return token

    def due(self, before: int, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        return self._counted(super().due(before, limit=limit, next_token=next_token))

    def grace_ended(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        return self._counted(super().grace_ended(before, limit=limit, next_token=next_token))

    def idle_since_before(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        page = super().idle_since_before(before, limit=limit, next_token=next_token)
        return self._counted(page)


def stored(store: TokenStore, tokens: list[ServiceToken]) -> None:
    """Write tokens as they are (as a batch write would), each with its creation's audit item."""
    for token in tokens:
        store.create(
            token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, token.created_at)
        )


def sevenday_reminders_due(count: int, hasher: Hasher) -> list[ServiceToken]:
    """`count` year-long tokens whose 7-day reminder fell due in the day before NOW, a minute
    apart, their 30-day reminder sent (as bench/lifecycle_bench.py's steady state has them)."""
    tokens = []
    for i in range(count):
        expires_at = NOW + 7 * DAY - 1 - i * 60
        token, _ = new_service_token(name=f"bot-{i}", hasher=hasher, now=NOW - DAY)
        tokens.append(
            replace(
                token,
                created_at=expires_at - 365 * DAY,
                expires_at=expires_at,
                duration=Duration(365 * 24),
                reminders_sent=(30,),
            )
        )
    return tokens
