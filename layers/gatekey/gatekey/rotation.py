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
from typing import Protocol

from gatekey.errors import ConcurrentModification, ConfigurationError, DependencyError
from gatekey.keyring import KeyRing
from gatekey.signing import PublicKey, SigningKeySpec

logger = logging.getLogger(__name__)


class RingStore(Protocol):
    """Where the ring is kept (gatekey.aws.keyring_store.KeyRingStore)."""

    def load(self, *, consistent: bool = False) -> KeyRing | None: ...

    def save(self, ring: KeyRing) -> KeyRing: ...

    def mark_written(self) -> None: ...


class SigningKeyManager(Protocol):
    """The keys themselves (gatekey.aws.kms.KmsKeys)."""

    def public_key(self, key_id: str) -> PublicKey: ...

    def create(self, key_spec: SigningKeySpec, stack_tag: str) -> str: ...

    def schedule_deletion(self, key_id: str) -> None: ...


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
        ring_store: RingStore,
        keys: SigningKeyManager,
        initial_key_id: str,
        key_spec: SigningKeySpec,
        stack_tag: str,
        cadence: int,
        publication_delay: int,
        retire_after: int,
        clock: Callable[[], int],
    ) -> None:
        self._ring_store = ring_store
        self._keys = keys
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
        public = self._keys.public_key(self._initial_key_id)
        return KeyRing.initial(public, self._initial_key_id, self._clock())

    def run(self) -> RotationReport:
        now = self._clock()
        ring = self.load_ring()
        retired = ring.retired(now)
        for key in retired:
            if key.managed:
                self._keys.schedule_deletion(key.key_id)
        updated = ring.without_retired(now) if retired else ring
        due = updated.rotation_due(now, self.cadence)
        new_key_id = self._keys.create(self._key_spec, self._stack_tag) if due else None
        try:
            if new_key_id is not None:
                updated = updated.with_key(
                    new_key_id,
                    self._keys.public_key(new_key_id),
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
                self._keys.schedule_deletion(new_key_id)
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

    def _abandon(self, key_id: str) -> None:
        try:
            self._keys.schedule_deletion(key_id)
        except DependencyError as exc:
            logger.warning(
                "new signing key left outside the ring; schedule its deletion by hand",
                extra={"key_id": key_id, "reason": exc.message},
            )
