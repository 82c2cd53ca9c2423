"""Notices: what the lifecycle tells people (SNS) and systems (EventBridge) about a token,
and the way each goes out exactly once per channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gatekey.model import ServiceToken, rfc3339


@dataclass(frozen=True, slots=True)
class Notice:
    """A lifecycle event for people (SNS) and systems (EventBridge). Never a secret."""

    detail_type: str
    client_id: str
    name: str
    owner: str | None
    expires_at: int | None
    days_left: int | None
    last_seen_at: int | None
    # Stable for one notice of one token's expiry, so a consumer can drop a repeat.
    notice_id: str

    @classmethod
    def of(
        cls, detail_type: str, token: ServiceToken, notice_id: str, days_left: int | None = None
    ) -> Notice:
        return cls(
            detail_type,
            token.client_id,
            token.name,
            token.owner,
            token.expires_at,
            days_left,
            token.last_seen_at,
            f"{token.client_id}:{notice_id}",
        )

    def detail(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "client_id": self.client_id,
            "name": self.name,
            "owner": self.owner,
            "expires_at": rfc3339(self.expires_at),
            "days_left": self.days_left,
            "last_seen_at": rfc3339(self.last_seen_at),
        }


class Notifier(Protocol):
    @property
    def channels(self) -> tuple[str, ...]: ...

    def send(self, notice: Notice, channel: str) -> None:
        """Deliver on one channel or raise DependencyError."""
