"""Signing-key rotation, run on a schedule by functions/signing_keys.

One run: retire keys whose tokens have all expired (schedule their deletion in KMS, drop them
from the ring), then, when the newest key is older than the cadence, create the next KMS key and
publish it. The ring is written once, conditionally: of two concurrent runs one wins and the
other schedules the deletion of the key it created and changes nothing. A run that dies halfway
is completed by the next: deletion requests are idempotent and nothing is assumed done until the
ring says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from gatekey.aws import error_code
from gatekey.errors import ConcurrentModification, ConfigurationError, DependencyError
from gatekey.keyring import KeyRing, KeyRingStore
from gatekey.signing import kms_public_key

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

# Tag on every key Gatekey creates; the IAM policies of the token and rotation functions are
# scoped to it, so they cannot touch any other key in the account.
KEY_TAG: Final = "gatekey-signing-key"
DELETION_WINDOW_DAYS: Final = 30  # KMS's longest: time to notice a mistake and cancel


@dataclass(frozen=True, slots=True)
class RotationReport:
    added: str | None = None  # kid of the key added
    retired: tuple[str, ...] = ()  # kids dropped from the ring
    lost_race: bool = False
    changed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed", bool(self.added or self.retired))


class SigningKeyRotation:
    def __init__(
        self,
        *,
        ring_store: KeyRingStore,
        kms: KMSClient,
        initial_key_id: str,
        key_spec: str,
        stack_tag: str,
        cadence: int,
        publication_delay: int,
        retire_after: int,
        clock: Callable[[], int],
    ) -> None:
        self._ring_store = ring_store
        self._kms = kms
        self._initial_key_id = initial_key_id
        self._key_spec = key_spec
        self._stack_tag = stack_tag
        self.cadence = cadence
        self.publication_delay = publication_delay
        self.retire_after = retire_after
        self._clock = clock

    def load_ring(self) -> KeyRing:
        """The stored ring, or the ring implied by the deployment's own key before any rotation."""
        ring = self._ring_store.load(consistent=True)
        if ring is not None:
            return ring
        public = kms_public_key(self._initial_key_id, self._kms)
        return KeyRing.initial(public, self._initial_key_id, self._clock())

    def run(self) -> RotationReport:
        now = self._clock()
        ring = self.load_ring()
        retired = ring.retired(now)
        for key in retired:
            if key.managed:
                self._schedule_deletion(key.key_id)
        updated = ring.without_retired(now) if retired else ring
        new_key_id = self._create_key() if updated.rotation_due(now, self.cadence) else None
        try:
            if new_key_id is not None:
                updated = updated.with_key(
                    new_key_id,
                    kms_public_key(new_key_id, self._kms),
                    now=now,
                    publication_delay=self.publication_delay,
                    retire_after=self.retire_after,
                )
            if updated == ring and ring.version:
                # A stack from before the marker gets it on its next run, not its next change.
                self._ring_store.mark_written()
                return RotationReport()
            self._ring_store.save(updated)
        except ConcurrentModification:
            logger.info("another rotation run changed the key ring first; this run backs off")
            if new_key_id is not None:
                self._schedule_deletion(new_key_id)
            return RotationReport(lost_race=True)
        except (DependencyError, ConfigurationError):
            # A key the ring never got would sign nothing and cost $1 a month: take it back.
            if new_key_id is not None:
                self._abandon(new_key_id)
            raise
        report = RotationReport(
            added=updated.keys[-1].kid if new_key_id else None,
            retired=tuple(k.kid for k in retired),
        )
        logger.info(
            "key ring updated",
            extra={"added": report.added, "retired": list(report.retired)},
        )
        return report

    def _create_key(self) -> str:
        try:
            response = self._kms.create_key(
                Description="Gatekey access-token signing key",
                KeySpec=self._key_spec,  # type: ignore[arg-type]
                KeyUsage="SIGN_VERIFY",
                Tags=[{"TagKey": KEY_TAG, "TagValue": self._stack_tag}],
            )
        except (BotoCoreError, ClientError) as exc:
            raise DependencyError(f"KMS CreateKey failed: {error_code(exc)}") from exc
        return response["KeyMetadata"]["Arn"]

    def _abandon(self, key_id: str) -> None:
        try:
            self._schedule_deletion(key_id)
        except DependencyError as exc:
            logger.warning(
                "new signing key left outside the ring; schedule its deletion by hand",
                extra={"key_id": key_id, "reason": exc.message},
            )

    def _schedule_deletion(self, key_id: str) -> None:
        try:
            # By key id, which KMS accepts like the ARN within the key's own account (and moto
            # accepts only the id here).
            self._kms.schedule_key_deletion(
                KeyId=key_id.rsplit("/", 1)[-1], PendingWindowInDays=DELETION_WINDOW_DAYS
            )
        except (BotoCoreError, ClientError) as exc:
            # Already pending deletion (an earlier run got this far): the goal is reached.
            if error_code(exc) != "KMSInvalidStateException":
                raise DependencyError(f"KMS ScheduleKeyDeletion failed: {error_code(exc)}") from exc
