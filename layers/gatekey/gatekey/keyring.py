"""The signing key ring: which key signs now, which keys are published, when each retires.

KMS cannot rotate asymmetric keys, so Gatekey rolls them itself. Every state is derived from
timestamps fixed when a key is added, so readers agree without coordination:

- a new key is published at once and signs from ``active_from = added + publication_delay``,
  after every verifier's cached JWKS has had time to pick it up;
- the key it replaces stops signing at that moment and stays published until
  ``unpublish_at = active_from + longest token lifetime + leeway``, when no token it signed can
  still be valid; then it is dropped from the ring and its deletion is scheduled.

The ring is one table item written with a version condition, so two rotation runs cannot race.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from gatekey.aws import error_code
from gatekey.config import Config
from gatekey.errors import (
    ConcurrentModification,
    ConfigurationError,
    DependencyError,
    GatekeyError,
)
from gatekey.signing import KmsSigner, LocalKeySigner, PublicKey, Signer, kms_public_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

RING_KEY: Final = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING"}}
# Written beside the ring each time it is saved: a ring that is gone once it has existed is a
# failure to alarm on, not the start of a new one.
RING_MARKER_KEY: Final = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING_WRITTEN"}}
RING_CACHE_TTL: Final = 60  # seconds; far below the publication delay (config.py)
# Verifiers: keys are refetched every 5 minutes (like the JWKS's max-age), and a token naming
# an unknown kid may cause one refetch per 30 s; both far below the publication delay.
PUBLIC_KEY_TTL: Final = 300
PUBLIC_KEY_REFETCH_INTERVAL: Final = 30
# A ring holds two or three keys (the signing one, the next, one retiring); more entries than
# this are not Gatekey's doing, and only the newest are read.
MAX_RING_KEYS: Final = 8
_KMS_KEY_ARN: Final = re.compile(
    r"(?P<prefix>arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/)[A-Za-z0-9-]{1,64}"
)


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


def _to_item(ring: KeyRing, version: int) -> dict[str, Any]:
    def entry(key: RingKey) -> dict[str, Any]:
        value: dict[str, Any] = {
            "key_id": {"S": key.key_id},
            "jwk": {"S": _json(key.public_key.jwk())},
            "created_at": {"N": str(key.created_at)},
            "active_from": {"N": str(key.active_from)},
            "managed": {"BOOL": key.managed},
        }
        if key.unpublish_at is not None:
            value["unpublish_at"] = {"N": str(key.unpublish_at)}
        return {"M": value}

    return {
        **RING_KEY,
        "keys": {"L": [entry(k) for k in ring.keys]},
        "version": {"N": str(version)},
    }


def _from_item(item: Mapping[str, Any]) -> KeyRing:
    """The ring as stored. Each entry is read on its own: one that cannot be read is left out
    (and logged), so a damaged entry costs only itself; none readable is a ConfigurationError."""
    try:
        entries, version = item["keys"]["L"][-MAX_RING_KEYS:], int(item["version"]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError("the signing key ring item is malformed") from exc
    keys = []
    for raw in entries:
        try:
            keys.append(_ring_key(raw["M"]))
        except (KeyError, TypeError, ValueError, AttributeError, ConfigurationError) as exc:
            logger.warning("signing key ring entry unreadable", extra={"error": repr(exc)[:200]})
    return KeyRing(tuple(keys), version)


def _ring_key(value: Mapping[str, Any]) -> RingKey:
    return RingKey(
        key_id=str(value["key_id"]["S"]),
        public_key=PublicKey.from_jwk(json.loads(value["jwk"]["S"])),
        created_at=int(value["created_at"]["N"]),
        active_from=int(value["active_from"]["N"]),
        unpublish_at=int(value["unpublish_at"]["N"]) if "unpublish_at" in value else None,
        managed=bool(value["managed"]["BOOL"]),
    )


def _json(value: Mapping[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class KeyRingStore:
    """The ring's one item in the tokens table (``pk = SIGNING_KEYS``)."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self.table_name = table_name
        self.client = client

    def load(self, *, consistent: bool = False) -> KeyRing | None:
        """The stored ring; None before the first rotation run has written one. A ring that
        was written and is gone (deleted, or lost to a restore) is a DependencyError, never
        None: falling back to the deployment's first key would refuse every token of the keys
        after it, and leave those keys out of any new ring."""
        item = self._get(RING_KEY, consistent)
        if item is not None:
            return _from_item(item)
        if self._get(RING_MARKER_KEY, consistent) is not None:
            raise DependencyError(
                "the signing key ring is missing, though one was written: restore it "
                "(docs/operations.md, signing keys)"
            )
        return None

    def _get(self, key: Mapping[str, Any], consistent: bool) -> Mapping[str, Any] | None:
        try:
            response = self.client.get_item(
                TableName=self.table_name, Key=dict(key), ConsistentRead=consistent
            )
        except (BotoCoreError, ClientError) as exc:
            raise DependencyError(f"cannot read the key ring: {error_code(exc)}") from exc
        return response.get("Item")

    def save(self, ring: KeyRing) -> KeyRing:
        """Write `ring` if the stored one is still at `ring.version`; return it at version + 1."""
        condition = "attribute_not_exists(pk)" if ring.version == 0 else "#version = :expected"
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": _to_item(ring, ring.version + 1),
            "ConditionExpression": condition,
        }
        if ring.version:
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":expected": {"N": str(ring.version)}}
        try:
            self.client.put_item(**request)
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConcurrentModification("the key ring was changed by another run") from exc
            raise DependencyError(f"cannot write the key ring: {error_code(exc)}") from exc
        self.mark_written()  # after the ring: never a marker without a ring
        return replace(ring, version=ring.version + 1)

    def mark_written(self) -> None:
        """Record that a ring exists (idempotent; a failure waits for the next run)."""
        try:
            self.client.put_item(TableName=self.table_name, Item=dict(RING_MARKER_KEY))
        except (BotoCoreError, ClientError) as exc:
            logger.warning("ring marker not written", extra={"error": error_code(exc)})


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


class KmsPublicKeys:
    """Public keys read from KMS by key id, each once for the container's life (a KMS key's
    public half never changes). Only key ARNs in the deployment key's account and region are
    asked for. A key KMS says is unusable here (absent, untagged, another account's, disabled)
    is None, and asked again after `retry_after` seconds, since a new key's tag may take
    minutes to authorize GetPublicKey; a failing KMS raises DependencyError."""

    def __init__(
        self,
        client: KMSClient,
        deployment_key_id: str,
        *,
        clock: Callable[[], float],
        retry_after: int = PUBLIC_KEY_TTL,
    ) -> None:
        self._client = client
        arn = _KMS_KEY_ARN.fullmatch(deployment_key_id)
        self._prefix = arn["prefix"] if arn else None
        self._clock = clock
        self._retry_after = retry_after
        self._keys: dict[str, PublicKey] = {}
        self._refused: dict[str, float] = {}  # key id -> when it may be asked again

    def get(self, key_id: str) -> PublicKey | None:
        if key_id in self._keys:
            return self._keys[key_id]
        now = self._clock()
        if now < self._refused.get(key_id, 0):
            return None
        arn = _KMS_KEY_ARN.fullmatch(key_id)
        reason = None
        if arn is None or (self._prefix is not None and arn["prefix"] != self._prefix):
            reason = "not a KMS key ARN of this account and region"
        else:
            try:
                self._keys[key_id] = kms_public_key(key_id, self._client)
                return self._keys[key_id]
            except ConfigurationError as exc:
                reason = exc.message
        logger.warning("KMS key not usable for verification", extra={"reason": reason[:200]})
        if len(self._refused) >= 1_000:  # bounded: a ring holds MAX_RING_KEYS entries
            self._refused.clear()
        self._refused[key_id] = now + self._retry_after
        return None

    def require(self, key_id: str) -> PublicKey:
        """The key, or ConfigurationError (the deployment's own key must be usable)."""
        public = self.get(key_id)
        if public is None:
            raise ConfigurationError(f"KMS key {key_id} is not usable for verification")
        return public


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


def _ring_sources(
    config: Config,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    secretsmanager: SecretsManagerClient,
    clock: Callable[[], float],
    signing_kms: KMSClient | None = None,
) -> tuple[Callable[[], KeyRing], Callable[[str], PublicKey | None], Callable[[RingKey], Signer]]:
    """How to load the ring as stored, vouch for a key id, and make a signer for one of its
    keys: the KMS key ring kept by the rotation function (KMS vouches), or the one Secrets
    Manager key (rotated by its owner, not Gatekey). `kms` reads public keys; `signing_kms`
    (by default `kms`) signs."""
    if config.signing_backend == "secretsmanager":
        local = LocalKeySigner.from_secret(config.signing_key_id, secretsmanager)
        ring = KeyRing.initial(local.public_key, config.signing_key_id, 0)
        return (lambda: ring), (lambda _: local.public_key), (lambda _: local)
    store = KeyRingStore(config.table_name, dynamodb)
    public_keys = KmsPublicKeys(kms, config.signing_key_id, clock=clock)

    def load() -> KeyRing:
        # Before the first rotation run there is no stored ring: the deployment's key signs.
        ring = store.load()
        if ring is None:
            return KeyRing.initial(
                public_keys.require(config.signing_key_id), config.signing_key_id, 0
            )
        return ring

    def make_signer(key: RingKey) -> Signer:
        return KmsSigner(key.key_id, signing_kms or kms, key.public_key)

    return load, public_keys.get, make_signer


def signing_keys_from_config(
    config: Config,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    secretsmanager: SecretsManagerClient,
    clock: Callable[[], int],
    signing_kms: KMSClient | None = None,
) -> SigningKeys:
    """The token function's signing keys, every one vouched for by KMS when the ring loads:
    it publishes them all (`signing_kms`, by default `kms`, signs)."""
    load, vouch, make_signer = _ring_sources(
        config,
        dynamodb=dynamodb,
        kms=kms,
        secretsmanager=secretsmanager,
        clock=clock,
        signing_kms=signing_kms,
    )
    return SigningKeys(lambda: load().verified(vouch), make_signer, ttl=RING_CACHE_TTL, clock=clock)


def public_keys_from_config(
    config: Config,
    *,
    dynamodb: DynamoDBClient,
    kms: KMSClient,
    secretsmanager: SecretsManagerClient,
    clock: Callable[[], float],
) -> PublicKeyCache:
    """A verifier's keys: those the ring publishes now, refetched every PUBLIC_KEY_TTL, and on
    an unknown kid at most once per PUBLIC_KEY_REFETCH_INTERVAL; KMS vouches for each when a
    token first names it."""
    load, vouch, _ = _ring_sources(
        config, dynamodb=dynamodb, kms=kms, secretsmanager=secretsmanager, clock=clock
    )

    def fetch() -> VouchedKeys:
        return VouchedKeys(load().published(int(clock())), vouch)

    return PublicKeyCache(
        fetch, ttl=PUBLIC_KEY_TTL, refetch_interval=PUBLIC_KEY_REFETCH_INTERVAL, clock=clock
    )
