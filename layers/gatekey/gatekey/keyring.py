"""The signing key ring: which key signs now, which keys are published, when each retires.

KMS cannot rotate asymmetric keys, so Gatekey rolls them itself. Every state is derived from
timestamps fixed when a key is added, so readers agree without coordination:

- a new key is published at once and signs from ``active_from = added + publication_delay``,
  after every verifier's cached JWKS has had time to pick it up;
- the key it replaces stops signing at that moment and stays published until
  ``unpublish_at = active_from + longest token lifetime + leeway``, when no token it signed can
  still be valid; then it is dropped from the ring and its deletion is scheduled.

The ring is one table item written with a version condition, so two rotation runs cannot race
(gatekey.aws.keyring_store); KMS vouches for each key's public half (gatekey.aws.kms).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from gatekey.errors import ConfigurationError, GatekeyError
from gatekey.signing import PublicKey, Signer

logger = logging.getLogger(__name__)

RING_CACHE_TTL: Final = 60  # seconds; far below the publication delay (config.py)
# Verifiers: keys are refetched every 5 minutes (like the JWKS's max-age), and a token naming
# an unknown kid may cause one refetch per 30 s; both far below the publication delay.
PUBLIC_KEY_TTL: Final = 300
PUBLIC_KEY_REFETCH_INTERVAL: Final = 30


@dataclass(frozen=True, slots=True)
class RingKey:
    key_id: str  # KMS key ARN (or the signing secret's ARN for the Secrets Manager backend)
    public_key: PublicKey = field(compare=False)
    created_at: int
    active_from: int
    unpublish_at: int | None = None
    # Keys Gatekey created are deleted when retired; the template's first key is left to its stack.
    managed: bool = True

    @property
    def kid(self) -> str:
        return self.public_key.kid


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[RingKey, ...]  # oldest first
    version: int = 0  # 0: not stored yet

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError("the signing key ring is empty")

    @classmethod
    def initial(cls, public_key: PublicKey, key_id: str, now: int) -> KeyRing:
        """The ring before any rotation: the deployment's own key, signing since forever."""
        return cls((RingKey(key_id, public_key, now, active_from=0, managed=False),))

    def signing_key(self, now: int) -> RingKey:
        """The newest key whose time has come."""
        live = [k for k in self.keys if k.active_from <= now]
        return live[-1] if live else self.keys[0]

    def published(self, now: int) -> tuple[RingKey, ...]:
        return tuple(k for k in self.keys if k.unpublish_at is None or now < k.unpublish_at)

    def retired(self, now: int) -> tuple[RingKey, ...]:
        return tuple(k for k in self.keys if k.unpublish_at is not None and now >= k.unpublish_at)

    def rotation_due(self, now: int, cadence: int) -> bool:
        return now >= self.keys[-1].created_at + cadence

    def with_key(
        self,
        key_id: str,
        public_key: PublicKey,
        *,
        now: int,
        publication_delay: int,
        retire_after: int,
    ) -> KeyRing:
        """Add the next key; every older key still unscheduled retires when it starts signing."""
        active_from = now + publication_delay
        older = tuple(
            replace(k, unpublish_at=active_from + retire_after) if k.unpublish_at is None else k
            for k in self.keys
        )
        return replace(self, keys=(*older, RingKey(key_id, public_key, now, active_from)))

    def without_retired(self, now: int) -> KeyRing:
        return replace(self, keys=tuple(k for k in self.keys if k not in self.retired(now)))

    def verified(self, lookup: Callable[[str], PublicKey | None]) -> KeyRing:
        """The ring with each key's public half taken from `lookup` (KMS), not from the item:
        an entry whose key id KMS does not answer for, or whose stored JWK is not that key's,
        is dropped, so whoever can write the table item cannot plant a key. No key left is a
        ConfigurationError."""
        keys = []
        for key in self.keys:
            public = lookup(key.key_id)
            if public is not None and public.kid == key.kid:
                keys.append(replace(key, public_key=public))
            else:
                logger.warning(
                    "signing key ring entry ignored: KMS does not vouch for it",
                    extra={"key_id": key.key_id, "kid": key.kid},
                )
        return replace(self, keys=tuple(keys))


class SigningKeys:
    """The token function's view of the ring: reloaded every `ttl` seconds, one signer per key.

    A cached ring is at most `ttl` old, and a new key is added a whole publication delay before
    it signs, so a stale copy still switches to it on time: the switch is computed from `now`.
    """

    def __init__(
        self,
        load: Callable[[], KeyRing],
        make_signer: Callable[[RingKey], Signer],
        *,
        ttl: int,
        clock: Callable[[], int],
    ) -> None:
        self._load = load
        self._make_signer = make_signer
        self._ttl = ttl
        self._clock = clock
        self._signers: dict[str, Signer] = {}
        self._ring = load()
        self._loaded_at = clock()

    def ring(self, now: int) -> KeyRing:
        """The ring, reloaded every `ttl`. A reload that fails keeps the ring it has (its keys
        are valid for a publication delay, far longer) and is tried again a `ttl` later."""
        if now - self._loaded_at >= self._ttl:
            self._loaded_at = now
            try:
                self._ring = self._load()
            except GatekeyError as exc:
                logger.error(
                    "signing key ring not reloaded; signing with the ring already loaded",
                    extra={"reason": exc.reason, "detail": exc.message},
                )
        return self._ring

    def signer(self, now: int) -> Signer:
        key = self.ring(now).signing_key(now)
        if key.kid not in self._signers:
            self._signers[key.kid] = self._make_signer(key)
        return self._signers[key.kid]

    def published(self, now: int) -> tuple[PublicKey, ...]:
        return tuple(k.public_key for k in self.ring(now).published(now))


class PublicKeyCache:
    """Verification keys by kid, for verifiers. Refetched every `ttl` seconds; a token naming an
    unknown kid triggers at most one refetch per `refetch_interval`, so a stream of garbage
    tokens cannot become a stream of reads (aws-jwt-verify's "penalty box"). A fetch that fails
    is not tried again for `refetch_interval` either: meanwhile the keys already fetched are
    used, or, if there are none, the failure is raised again without any I/O."""

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, PublicKey]],
        *,
        ttl: int,
        refetch_interval: int,
        clock: Callable[[], float],
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: Mapping[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._failure: GatekeyError | None = None

    def get(self, kid: str) -> PublicKey | None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
        unknown = kid not in self._keys
        may_refetch = self._tried_at is None or now - self._tried_at >= self._refetch_interval
        if (stale or unknown) and may_refetch:
            self._refresh(now)
        elif self._fetched_at is None and self._failure is not None:
            raise self._failure
        return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        try:
            self._keys, self._fetched_at, self._failure = self._fetch(), now, None
        except GatekeyError as exc:
            self._failure = exc
            if self._fetched_at is None:
                raise
            logger.error(
                "signing keys not refetched; verifying with the keys already fetched",
                extra={"reason": exc.reason, "detail": exc.message},
            )

    def keys(self) -> Mapping[str, PublicKey]:
        """The keys as last fetched (fetching once if never fetched)."""
        if self._fetched_at is None:
            self._refresh(self._clock())
        return self._keys


class VouchedKeys(Mapping[str, PublicKey]):
    """A verifier's keys by kid: the ring's published entries, each taken from KMS the first
    time a token names it (one GetPublicKey per key in use, kept for the container's life, not
    one per entry of the ring on every load). An entry KMS does not vouch for is absent."""

    def __init__(self, keys: Iterable[RingKey], vouch: Callable[[str], PublicKey | None]) -> None:
        self._entries: dict[str, list[RingKey]] = {}
        for key in keys:  # several entries may claim a kid: one of them may be KMS's
            self._entries.setdefault(key.kid, []).append(key)
        self._vouch = vouch

    def __getitem__(self, kid: str) -> PublicKey:
        for entry in self._entries[kid]:
            public = self._vouch(entry.key_id)
            if public is not None and public.kid == kid:
                return public
        raise KeyError(kid)  # no key id KMS answers for with this key

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
