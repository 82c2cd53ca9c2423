"""Signing-key rotation over simulated time, against moto's KMS and DynamoDB."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import jwt
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.access_tokens import DEFAULT_LEEWAY, issue_access_token, verify_access_token
from gatekey.aws.keyring_store import KeyRingStore
from gatekey.aws.kms import KmsKeys, KmsSigner
from gatekey.config import MAX_ACCESS_TOKEN_LIFETIME
from gatekey.durations import DAY, Duration
from gatekey.errors import DependencyError, InvalidCredentials, TokenExpired, UnknownKey
from gatekey.hashing import Hasher
from gatekey.keyring import KeyRing, SigningKeys
from gatekey.model import ServiceToken, new_service_token
from gatekey.rotation import SigningKeyRotation
from support.constants import ISSUER, NOW, REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler

CADENCE = 42 * DAY
DELAY = 3600
LIFETIME = 3600
RETIRE_AFTER = MAX_ACCESS_TOKEN_LIFETIME + DEFAULT_LEEWAY


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(aws: None) -> Any:
    return boto3.client("kms", region_name=REGION)


@pytest.fixture
def initial_key(kms: Any) -> str:
    key = kms.create_key(
        KeySpec="RSA_2048",
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": "gatekey-signing-key", "TagValue": "gatekey"}],
    )
    return str(key["KeyMetadata"]["Arn"])


@pytest.fixture
def ring_store(dynamodb: Any) -> KeyRingStore:
    return KeyRingStore(TABLE_NAME, dynamodb)


def make_rotation(
    ring_store: KeyRingStore, kms: Any, initial_key: str, clock: Clock
) -> SigningKeyRotation:
    return SigningKeyRotation(
        ring_store=ring_store,
        keys=KmsKeys(kms),
        initial_key_id=initial_key,
        key_spec="RSA_2048",
        stack_tag="gatekey",
        cadence=CADENCE,
        publication_delay=DELAY,
        retire_after=RETIRE_AFTER,
        clock=clock,
    )


@pytest.fixture
def rotation(
    ring_store: KeyRingStore, kms: Any, initial_key: str, clock: Clock
) -> SigningKeyRotation:
    return make_rotation(ring_store, kms, initial_key, clock)


@pytest.fixture
def signing_keys(
    ring_store: KeyRingStore, kms: Any, rotation: SigningKeyRotation, clock: Clock
) -> SigningKeys:
    """What the token function sees: the stored ring, cached for 60 s."""
    return SigningKeys(rotation.load_ring, signing_keys_signer(kms), ttl=60, clock=clock)


@pytest.fixture
def service_token(unit_hasher: Hasher) -> ServiceToken:
    token, _ = new_service_token(
        name="bot", hasher=unit_hasher, now=NOW - DAY, duration=Duration(None)
    )
    return token


def issue(keys: SigningKeys, token: ServiceToken, now: int, lifetime: int = LIFETIME) -> str:
    signer = keys.signer(now)
    return issue_access_token(
        token, signer, issuer=ISSUER, audience="api", lifetime=lifetime, scopes=(), now=now
    ).access_token


def verify(keys: SigningKeys, access_token: str, now: int) -> None:
    """Verify as a verifier would: with only the keys the JWKS publishes at `now`."""
    published = {key.kid: key for key in keys.published(now)}
    verify_access_token(access_token, published, issuer=ISSUER, audience="api", now=now)


def kms_key_states(kms: Any) -> dict[str, str]:
    keys = kms.list_keys()["Keys"]
    return {
        k["KeyArn"]: kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] for k in keys
    }


def test_first_run_stores_the_deployments_key_without_rotating(
    rotation: SigningKeyRotation, ring_store: KeyRingStore, initial_key: str, kms: Any
) -> None:
    report = rotation.run()
    assert not report.changed
    ring = ring_store.load(consistent=True)
    assert ring is not None
    assert ring.version == 1
    assert [k.key_id for k in ring.keys] == [initial_key]
    assert len(kms_key_states(kms)) == 1


def test_a_year_of_daily_runs_rolls_keys_without_breaking_a_single_token(
    rotation: SigningKeyRotation,
    signing_keys: SigningKeys,
    service_token: ServiceToken,
    clock: Clock,
    kms: Any,
) -> None:
    # GIVEN daily rotation runs and, every six hours, a token with the longest lifetime Gatekey
    # allows (a day), checked at every later step until it expires: across every key switch
    issued: list[tuple[int, str]] = []
    added: list[str] = []
    for hour in range(0, 365 * 24, 6):
        clock.now = NOW + hour * 3600
        if hour % 24 == 0:
            report = rotation.run()
            if report.added:
                added.append(report.added)
                # THEN the new key is published before it signs anything
                assert report.added in {k.kid for k in signing_keys.published(clock.now + 60)}
                assert signing_keys.signer(clock.now + 60).public_key.kid != report.added
        issued.append((clock.now, issue(signing_keys, service_token, clock.now, DAY)))
        # every token that has not expired still verifies, whatever key signed it
        checked = [t for at, t in issued[-5:] if clock.now < at + DAY]
        assert len(checked) == min(4, len(issued))
        for access_token in checked:
            verify(signing_keys, access_token, clock.now)
    # AND a key was added every 42 days, each switched to after the publication delay
    assert len(added) == 8
    # AND every key, the deployment's own first, signed tokens in its turn
    signers = {jwt.get_unverified_header(t)["kid"] for _, t in issued}
    assert len(signers) == 9
    assert set(added) <= signers
    # AND retired keys were dropped from the ring and scheduled for deletion in KMS
    states = kms_key_states(kms)
    assert list(states.values()).count("PendingDeletion") == 7
    ring = rotation.load_ring()
    assert len(ring.keys) <= 3


def signing_keys_signer(kms: Any) -> Any:
    return lambda key: KmsSigner(key.key_id, kms, key.public_key)


def test_new_key_signs_only_after_the_publication_delay(
    rotation: SigningKeyRotation, kms: Any, clock: Clock
) -> None:
    rotation.run()
    clock.now += CADENCE
    report = rotation.run()
    assert report.added is not None
    # A token function whose ring cache was filled just after the run.
    keys = SigningKeys(rotation.load_ring, signing_keys_signer(kms), ttl=CADENCE, clock=clock)
    assert report.added in {k.kid for k in keys.published(clock.now)}
    assert keys.signer(clock.now + DELAY - 1).public_key.kid != report.added
    assert keys.signer(clock.now + DELAY).public_key.kid == report.added


def test_a_retired_keys_tokens_are_rejected_and_none_may_outlive_its_retirement(
    rotation: SigningKeyRotation,
    signing_keys: SigningKeys,
    service_token: ServiceToken,
    clock: Clock,
) -> None:
    rotation.run()
    first = signing_keys.signer(clock.now)
    # A token claiming a life beyond any Gatekey issues (which would outlive the key's
    # retirement, a day after its last signature) is refused while the key is published.
    forged = issue(signing_keys, service_token, clock.now, lifetime=90 * DAY)
    with pytest.raises(InvalidCredentials, match="lives longer"):
        verify(signing_keys, forged, clock.now + 60)
    clock.now += CADENCE
    rotation.run()  # adds key 2; key 1 retires at switch + RETIRE_AFTER
    clock.now += DELAY + RETIRE_AFTER
    assert len(rotation.run().retired) == 1
    # Whoever still holds key 1 can sign nothing a verifier accepts.
    late = issue_access_token(
        service_token, first, issuer=ISSUER, audience="api", lifetime=60, scopes=(), now=clock.now
    ).access_token
    with pytest.raises(UnknownKey, match="unknown key"):
        verify(signing_keys, late, clock.now + 1)


def test_an_expired_token_is_rejected_while_its_key_is_still_published(
    rotation: SigningKeyRotation,
    signing_keys: SigningKeys,
    service_token: ServiceToken,
    clock: Clock,
) -> None:
    rotation.run()
    access_token = issue(signing_keys, service_token, clock.now)
    with pytest.raises(TokenExpired):
        verify(signing_keys, access_token, clock.now + LIFETIME + DEFAULT_LEEWAY)


def test_a_second_run_right_after_changes_nothing(
    rotation: SigningKeyRotation, ring_store: KeyRingStore, clock: Clock, kms: Any
) -> None:
    rotation.run()
    clock.now += CADENCE
    assert rotation.run().added
    before = ring_store.load(consistent=True)
    keys_before = kms_key_states(kms)
    report = rotation.run()
    assert not report.changed
    assert ring_store.load(consistent=True) == before
    assert kms_key_states(kms) == keys_before


class StaleRingStore(KeyRingStore):
    """Hands out the ring as it was before another run wrote, as a concurrent run would see it."""

    def __init__(self, inner: KeyRingStore, snapshot: KeyRing) -> None:
        super().__init__(inner.table_name, inner.client)
        self.snapshot = snapshot

    def load(self, *, consistent: bool = False) -> KeyRing | None:
        return self.snapshot


def test_of_two_concurrent_runs_one_rotates_and_the_other_changes_nothing(
    rotation: SigningKeyRotation,
    ring_store: KeyRingStore,
    kms: Any,
    initial_key: str,
    clock: Clock,
) -> None:
    # GIVEN two runs that both read the ring while the rotation was due
    rotation.run()
    clock.now += CADENCE
    seen_by_both = ring_store.load(consistent=True)
    assert seen_by_both is not None
    first = rotation.run()
    second = make_rotation(StaleRingStore(ring_store, seen_by_both), kms, initial_key, clock)
    # WHEN the second one writes
    report = second.run()
    # THEN it loses, the ring is the first run's, and its own new key is on its way out
    assert report.lost_race
    assert not report.changed
    ring = ring_store.load(consistent=True)
    assert ring is not None
    assert [k.kid for k in ring.keys][-1] == first.added
    states = kms_key_states(kms)
    assert len(states) == 3
    assert list(states.values()).count("PendingDeletion") == 1
    assert {k.key_id for k in ring.keys} == {a for a, s in states.items() if s == "Enabled"}


def test_a_run_that_dies_after_scheduling_deletion_is_finished_by_the_next(
    rotation: SigningKeyRotation,
    ring_store: KeyRingStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotation.run()
    clock.now += CADENCE
    rotation.run()
    clock.now += DELAY + RETIRE_AFTER
    original_save = KeyRingStore.save

    def dies(self: KeyRingStore, ring: KeyRing) -> KeyRing:
        raise DependencyError("DynamoDB PutItem failed: InternalServerError")

    monkeypatch.setattr(KeyRingStore, "save", dies)
    with pytest.raises(DependencyError):
        rotation.run()
    monkeypatch.setattr(KeyRingStore, "save", original_save)
    report = rotation.run()
    assert len(report.retired) == 1
    ring = ring_store.load(consistent=True)
    assert ring is not None
    assert len(ring.keys) == 1


def test_the_scheduled_function_rotates_and_the_token_functions_jwks_shows_both_keys(
    monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str, initial_key: str
) -> None:
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": initial_key,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    now = [float(NOW)]
    monkeypatch.setattr("time.time", lambda: now[0])
    rotate = load_handler("signing_keys")
    event = load_event("signing-keys-scheduled.json")
    assert rotate.lambda_handler(event, FakeLambdaContext())["added"] is None
    now[0] += CADENCE
    added = rotate.lambda_handler(event, FakeLambdaContext())["added"]
    assert added
    token = load_handler("token")
    response = token.lambda_handler(load_event("token-jwks.json"), FakeLambdaContext())
    kids = [k["kid"] for k in json.loads(response["body"])["keys"]]
    assert len(kids) == 2
    assert kids[-1] == added


def test_a_new_key_the_ring_never_gets_is_scheduled_for_deletion(
    rotation: SigningKeyRotation, ring_store: KeyRingStore, clock: Clock, kms: Any
) -> None:
    # GIVEN a rotation due, and KMS refusing GetPublicKey right after CreateKey
    rotation.run()
    before = ring_store.load(consistent=True)
    clock.now += CADENCE

    def refused(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.invalid")

    kms.meta.events.register("before-send.kms.GetPublicKey", refused)
    with pytest.raises(DependencyError):
        rotation.run()
    kms.meta.events.unregister("before-send.kms.GetPublicKey", refused)
    # THEN the ring is unchanged and the key it never got is on its way out
    assert ring_store.load(consistent=True) == before
    states = kms_key_states(kms)
    assert sorted(states.values()) == ["Enabled", "PendingDeletion"]
    # AND the next run rotates as usual
    assert rotation.run().added
