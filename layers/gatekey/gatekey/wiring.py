"""The one place each function's parts are built: its AWS clients (each with the call budget
that fits the function's timeout, gatekey.aws.clients), its clock and its hasher, and the
core service its handler calls. Handlers call one builder here at import, so what they build
is reused across invocations and a cold start that cannot build it fails.

It lives beside the core, not in gatekey.aws: it imports the services (Authorizer,
TokenEndpoint, ...), and adapters never import services. Each builder imports its own
function's service when called, so a cold start loads what its function loaded before, not
every function's modules. tests/unit/test_aws.py reads each builder's source for the budgets
it uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from gatekey import aws
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME, Config
from gatekey.durations import DAY, HOUR

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from gatekey.admin import TokenAdmin
    from gatekey.authorizer import Authorizer
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.dpop import ProofVerifier, ReplayGuard
    from gatekey.errors import GatekeyError
    from gatekey.hashing import Hasher
    from gatekey.introspection import TokenStatusEndpoints
    from gatekey.keyring import KeyRing, PublicKeyCache, RingKey, SigningKeys
    from gatekey.lifecycle import Lifecycle
    from gatekey.oauth import TokenEndpoint
    from gatekey.rotation import SigningKeyRotation
    from gatekey.signing import PublicKey, Signer
    from gatekey.token_resource import ServiceTokenResource

# Tokens the lifecycle run works on at once: each waits on AWS most of its time (6 calls in a
# row for a notice), and 8 keep a 10,000-notice day inside one invocation (docs/scale.md).
LIFECYCLE_WORKERS: Final = 8


def clock() -> int:
    """Now, in whole seconds; time.time is looked up at each call (tests move it)."""
    return int(time.time())


class AuthorizerParts(NamedTuple):
    store: DynamoDBTokenStore
    # The store again, on clients for what the answer can do without (bookkeeping).
    bookkeeping: DynamoDBTokenStore
    authorizer: Authorizer


def authorizer(
    config: Config, *, last_seen_failed: Callable[[GatekeyError], None]
) -> AuthorizerParts:
    from gatekey.authorizer import Authorizer, AuthorizerSettings
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.aws.secrets import load_hasher

    store = DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.AUTHORIZER))
    secrets = aws.client("secretsmanager", aws.AUTHORIZER)
    hasher = load_hasher(config.pepper_secret_arn, secrets)
    # What the answer can do without (the last-seen write, a refresh of the signing keys) gets
    # one short attempt: a slow dependency costs the answer at most BOOKKEEPING's worst case.
    bookkeeping = DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.BOOKKEEPING))
    return AuthorizerParts(
        store,
        bookkeeping,
        Authorizer(
            store=store,
            hasher=hasher,
            public_keys=public_keys(
                config,
                dynamodb=bookkeeping.client,
                kms=aws.client("kms", aws.BOOKKEEPING),
                secretsmanager=secrets,
                clock=time.time,
            ),
            settings=AuthorizerSettings.from_config(config),
            clock=time.time,
            record_last_seen=bookkeeping.record_last_seen,
            last_seen_failed=last_seen_failed,
            proofs=dpop_proofs(config, hasher, required_nonce=False),
            replay=dpop_replay(config, store.client if config.dpop_shared_replay else None),
        ),
    )


def dpop_proofs(config: Config, hasher: Hasher, *, required_nonce: bool) -> ProofVerifier:
    """DPoP proof checks (gatekey.dpop). With DpopNonces on, the token endpoint requires a
    current nonce (`required_nonce`) and hands them out; the authorizer, which cannot send
    one (API Gateway adds no header to a Deny), accepts one in place of the iat window."""
    from gatekey.dpop import DPoPNonces, NoncePolicy, ProofVerifier

    policy = None
    if config.dpop_nonces:
        nonces = DPoPNonces(hasher.peppers.values(), hasher.peppers[hasher.current_key_id])
        policy = NoncePolicy(nonces, required=required_nonce)
    return ProofVerifier(iat_window=config.dpop_proof_window_seconds, nonce_policy=policy)


def dpop_replay(config: Config, dynamodb: DynamoDBClient | None) -> ReplayGuard:
    """The container's memory of proofs; with a DynamoDB client (DpopSharedReplay), a
    conditional write per proof on top, so a proof is used once across containers."""
    from gatekey.aws.dpop_replay import DynamoDBReplayGuard
    from gatekey.dpop import LayeredReplayGuard, MemoryReplayGuard

    memory = MemoryReplayGuard()
    if dynamodb is None:
        return memory
    return LayeredReplayGuard(memory, DynamoDBReplayGuard(config.table_name, dynamodb))


class TokenParts(NamedTuple):
    endpoint: TokenEndpoint
    signing_keys: SigningKeys
    # Introspection and revocation (RFC 7662, RFC 7009), on the same store, hasher and keys.
    status: TokenStatusEndpoints


def token(
    config: Config, *, last_seen_failed: Callable[[GatekeyError], None] | None = None
) -> TokenParts:
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.aws.secrets import load_hasher
    from gatekey.introspection import TokenStatusEndpoints
    from gatekey.oauth import TokenEndpoint

    secrets = aws.client("secretsmanager", aws.API)
    store = DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.API))
    # The ring is refreshed with one short attempt (a failed refresh keeps the ring loaded);
    # signing, like the token's read, may retry once.
    keys = signing_keys(
        config,
        dynamodb=aws.client("dynamodb", aws.BOOKKEEPING),
        kms=aws.client("kms", aws.BOOKKEEPING),
        signing_kms=aws.client("kms", aws.API),
        secretsmanager=secrets,
        clock=clock,
    )
    hasher = load_hasher(config.pepper_secret_arn, secrets)
    endpoint = TokenEndpoint(
        store=store,
        hasher=hasher,
        signing_keys=keys,
        audience=config.access_token_audience,
        lifetime=config.access_token_lifetime_seconds,
        clock=clock,
        last_seen_interval=config.last_seen_interval_seconds,
        # Bookkeeping gets one short attempt, as in the authorizer: never the answer's time.
        record_last_seen=DynamoDBTokenStore.from_config(
            config, aws.client("dynamodb", aws.BOOKKEEPING)
        ).record_last_seen,
        last_seen_failed=last_seen_failed,
        proofs=dpop_proofs(config, hasher, required_nonce=True),
    )
    status = TokenStatusEndpoints(
        store=store,
        hasher=hasher,
        public_keys=keys.published,
        audience=config.access_token_audience,
        clock=clock,
    )
    return TokenParts(endpoint, keys, status)


def admin(config: Config) -> TokenAdmin:
    from gatekey.admin import TokenAdmin
    from gatekey.aws.apigateway import ApiGatewayKeys
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.aws.secrets import load_hasher
    from gatekey.usage_plans import UsagePlans

    return TokenAdmin(
        store=DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.API)),
        hasher=load_hasher(config.pepper_secret_arn, aws.client("secretsmanager", aws.API)),
        clock=clock,
        # A metered token's API key (gatekey.usage_plans), on API Gateway's control plane.
        usage_plans=UsagePlans(config.usage_plans),
        api_keys=ApiGatewayKeys(aws.client("apigateway", aws.CONTROL_PLANE), config.stack_name),
    )


def service_token_resource(config: Config, *, account: str) -> ServiceTokenResource:
    """The Custom::GatekeyServiceToken provider of the stacks of `account` (its own)."""
    from gatekey.admin import TokenAdmin
    from gatekey.aws.delivery import SecretsManagerDelivery
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.aws.secrets import load_hasher
    from gatekey.token_resource import ServiceTokenResource, StackPolicy

    secrets = aws.client("secretsmanager", aws.API)
    store = DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.API))
    return ServiceTokenResource(
        admin=TokenAdmin(
            store=store, hasher=load_hasher(config.pepper_secret_arn, secrets), clock=clock
        ),
        delivery=SecretsManagerDelivery(secrets),
        policy=StackPolicy(account, config.service_token_stack_prefixes),
        clock=clock,
    )


def signing_key_rotation(config: Config) -> SigningKeyRotation:
    from gatekey.access_tokens import DEFAULT_LEEWAY
    from gatekey.aws.keyring_store import KeyRingStore
    from gatekey.aws.kms import KmsKeys
    from gatekey.rotation import SigningKeyRotation

    return SigningKeyRotation(
        ring_store=KeyRingStore(config.table_name, aws.client("dynamodb", aws.ROTATION)),
        keys=KmsKeys(aws.client("kms", aws.ROTATION)),
        initial_key_id=config.signing_key_id,
        key_spec=config.signing_key_spec,
        stack_tag=config.stack_name,
        cadence=config.signing_key_rotation_days * DAY,
        publication_delay=config.signing_key_publication_delay_seconds,
        # Whatever the lifetime is set to today, no token outlives the longest one allowed.
        retire_after=MAX_ACCESS_TOKEN_LIFETIME + DEFAULT_LEEWAY,
        clock=clock,
    )


def lifecycle(config: Config) -> Lifecycle:
    from gatekey.aws.delivery import SecretsManagerDelivery
    from gatekey.aws.dynamodb import DynamoDBTokenStore
    from gatekey.aws.notify import AwsNotifier
    from gatekey.aws.secrets import load_hasher
    from gatekey.lifecycle import Lifecycle

    secrets = aws.client("secretsmanager", aws.LIFECYCLE)
    return Lifecycle(
        store=DynamoDBTokenStore.from_config(config, aws.client("dynamodb", aws.LIFECYCLE)),
        hasher=load_hasher(config.pepper_secret_arn, secrets),
        notifier=AwsNotifier(
            sns=aws.client("sns", aws.LIFECYCLE),
            events=aws.client("events", aws.LIFECYCLE),
            topic_arn=config.notification_topic_arn,
        ),
        delivery=SecretsManagerDelivery(secrets),
        reminder_days=config.reminder_days,
        grace_seconds=config.rotation_grace_hours * HOUR,
        idle_days=config.idle_disable_days,
        clock=clock,
        workers=LIFECYCLE_WORKERS,
    )


# -- the signing keys: which backend, read from where ----------------------------------------


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
    from gatekey.aws.keyring_store import KeyRingStore
    from gatekey.aws.kms import KmsPublicKeys, KmsSigner
    from gatekey.aws.secrets import load_local_signer
    from gatekey.keyring import KeyRing

    if config.signing_backend == "secretsmanager":
        local = load_local_signer(config.signing_key_id, secretsmanager)
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


def signing_keys(
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
    from gatekey.keyring import RING_CACHE_TTL, SigningKeys

    load, vouch, make_signer = _ring_sources(
        config,
        dynamodb=dynamodb,
        kms=kms,
        secretsmanager=secretsmanager,
        clock=clock,
        signing_kms=signing_kms,
    )
    return SigningKeys(lambda: load().verified(vouch), make_signer, ttl=RING_CACHE_TTL, clock=clock)


def public_keys(
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
    from gatekey.keyring import (
        PUBLIC_KEY_REFETCH_INTERVAL,
        PUBLIC_KEY_TTL,
        PublicKeyCache,
        VouchedKeys,
    )

    load, vouch, _ = _ring_sources(
        config, dynamodb=dynamodb, kms=kms, secretsmanager=secretsmanager, clock=clock
    )

    def fetch() -> VouchedKeys:
        return VouchedKeys(load().published(int(clock())), vouch)

    return PublicKeyCache(
        fetch, ttl=PUBLIC_KEY_TTL, refetch_interval=PUBLIC_KEY_REFETCH_INTERVAL, clock=clock
    )
