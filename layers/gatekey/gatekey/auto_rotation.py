"""Automatic rotation of `auto` tokens: a new secret delivered into the consumer's own
Secrets Manager secret, announced, and the expiry moved; and, after any rotation, the
previous secret's hash removed once its grace has ended."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from gatekey.credentials import ClientSecret
from gatekey.durations import DAY
from gatekey.errors import ConcurrentModification, DependencyError
from gatekey.hashing import Hasher
from gatekey.model import (
    PROMOTED,
    ROTATED,
    AuditAction,
    AuditEvent,
    AuditValue,
    ServiceToken,
)
from gatekey.notices import Notice, Notices
from gatekey.store import TokenStore

if TYPE_CHECKING:
    from gatekey.lifecycle import RunReport

logger = logging.getLogger(__name__)


class SecretDelivery(Protocol):
    def stage(self, secret_arn: str, client_id: str, secret: ClientSecret) -> str:
        """Write the secret as a new AWSPENDING version; return its version id."""

    def promote(self, secret_arn: str, version_id: str) -> None:
        """Make that version AWSCURRENT, the one the consumer reads."""

    def withdraw(self, secret_arn: str, version_id: str) -> None:
        """If that version is AWSCURRENT, make the one it replaced current again."""


@dataclass(frozen=True, kw_only=True)
class AutoRotation:
    store: TokenStore
    hasher: Hasher
    delivery: SecretDelivery
    notices: Notices
    grace_seconds: int
    clock: Callable[[], int]
    actor: str

    def rotate(self, token: ServiceToken, now: int, report: RunReport) -> bool:
        """Auto rotation, conditional writes around making the new secret current:

        1. a new secret is staged (AWSPENDING: nothing reads it) and the token accepts it,
           keeping the old one for the grace;
        2. once the new secret is AWSCURRENT (what the consumer reads), the token records so
           (PROMOTED), so a manual rotation keeps that one for its grace;
        3. the expiry moves forward by the token's duration.

        Between 2 and 3, the "Service Token Rotated" notice goes out once per channel, like a
        reminder. The consumer never reads a secret that does not authenticate, and the old one
        works through the grace whatever fails. A run that fails before 3 leaves the token due
        with `delivery_pending` set: the next run finishes the delivery and the notice, minting
        nothing new and repeating no channel. Each write requires the token as this run read or
        wrote it, so a manual rotation landing meanwhile is never undone (see `_promote`).
        False when this run wrote nothing (another run holds the notice's claim).
        """
        arn = token.rotation.delivery_secret_arn
        assert arn is not None  # noqa: S101 - RotationPolicy requires it for AUTO
        wrote = token.delivery_pending is None
        if wrote:
            token = self._stage(token, arn, now)
        promoted = self._promote(token, arn, now)
        if promoted is None:
            return True  # a manual rotation abandoned the delivery; the next run rotates afresh
        wrote = wrote or promoted is not token
        token = promoted
        if ROTATED not in token.reminders_sent:
            notice = Notice.of(
                "Service Token Rotated", token, f"rotated:{token.client_secret_version}"
            )
            notified = self.notices.send_once(token, ROTATED, notice, AuditAction.NOTIFIED, now=now)
            if notified is None:
                return wrote  # another run holds the notice's claim and finishes the rotation
            token = notified
        expires_at = token.duration.after(token.expires_at or now)
        token = self.store.update(
            replace(
                token,
                updated_at=now,
                expires_at=expires_at,
                delivery_pending=None,
                reminders_sent=(),
                reminders_pending=(),
            ),
            self._event(token, AuditAction.REFRESHED, expires_at=expires_at),
        )
        report.rotated.append(token.client_id)
        return True

    def _stage(self, token: ServiceToken, arn: str, now: int) -> ServiceToken:
        """A new secret, staged in the delivery secret and accepted by the token."""
        secret = ClientSecret.generate()
        version_id = self.delivery.stage(arn, token.client_id, secret)
        return self.store.update(
            replace(
                token,
                updated_at=now,
                secret_hash=self.hasher.hash(secret),
                client_secret_version=token.client_secret_version + 1,
                previous_secret_hash=token.secret_hash,
                previous_client_secret_expires_at=now + self.grace_seconds,
                delivery_pending=version_id,
            ),
            self._event(
                token,
                AuditAction.ROTATED,
                client_secret_version=token.client_secret_version + 1,
                previous_client_secret_expires_at=now + self.grace_seconds,
            ),
        )

    def _promote(self, token: ServiceToken, arn: str, now: int) -> ServiceToken | None:
        """Make the staged secret AWSCURRENT, then record that on the token (PROMOTED, before
        the notice): from then on the consumer may hold it, and a manual rotation keeps it for
        its grace (TokenAdmin.rotate). Return the token as stored.

        The record requires the token as read. A manual rotation landing after that read
        abandoned the staged secret and kept the older one for its grace, so the record fails;
        the promotion is then withdrawn (the version it replaced is current again) and None is
        returned: the consumer reads a secret the token accepts, and the next run rotates
        afresh."""
        version_id = token.delivery_pending
        assert version_id is not None  # noqa: S101 - staged above or by an earlier run
        if PROMOTED in token.reminders_sent:
            return token
        try:
            self.delivery.promote(arn, version_id)
        except DependencyError:
            self._keep_previous_secret(token, now)
            raise
        try:
            return self.store.update(
                replace(token, updated_at=now, reminders_sent=(*token.reminders_sent, PROMOTED)),
                self._event(
                    token,
                    AuditAction.UPDATED,
                    reason="delivered",
                    client_secret_version=token.client_secret_version,
                ),
            )
        except ConcurrentModification:
            current = self.store.get(token.client_id, consistent=True)
            if current.delivery_pending == version_id:
                raise  # still this delivery (another run wrote): the next run records it
            self.delivery.withdraw(arn, version_id)
            logger.info(
                "delivery abandoned by a manual rotation: withdrawn",
                extra={"client_id": token.client_id},
            )
            return None

    def _keep_previous_secret(self, token: ServiceToken, now: int) -> None:
        """The consumer still reads the old secret: keep it working past the next daily run,
        for as long as the delivery keeps failing (LifecycleErrorsAlarm fires meanwhile)."""
        keep_until = now + self.grace_seconds + DAY
        ends = token.previous_client_secret_expires_at
        if token.previous_secret_hash is None or (ends or 0) >= keep_until:
            return
        self.store.update(
            replace(token, updated_at=now, previous_client_secret_expires_at=keep_until),
            self._event(
                token,
                AuditAction.UPDATED,
                previous_client_secret_expires_at=keep_until,
                reason="delivery_pending",
            ),
        )

    def clean(self, client_id: str, report: RunReport) -> None:
        """Remove the previous secret's hash once its grace has ended."""
        now = self.clock()
        token = self.store.get(client_id, consistent=True)
        ends = token.previous_client_secret_expires_at
        if token.previous_secret_hash is None or ends is None or ends > now:
            return
        if token.delivery_pending is not None and PROMOTED not in token.reminders_sent:
            return  # the consumer still reads the old secret (see _keep_previous_secret)
        self.store.update(
            replace(
                token,
                updated_at=now,
                previous_secret_hash=None,
                previous_client_secret_expires_at=None,
            ),
            self._event(token, AuditAction.GRACE_ENDED),
        )
        report.cleaned.append(client_id)

    def _event(self, token: ServiceToken, action: AuditAction, **details: AuditValue) -> AuditEvent:
        return AuditEvent(token.client_id, action, self.actor, self.clock(), None, details)
