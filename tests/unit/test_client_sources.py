"""The client library's credentials sources: the environment and the Secrets Manager secret
that Gatekey's automatic rotation delivers into (moto, written by Gatekey's own delivery)."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from gatekey.aws.delivery import SecretsManagerDelivery
from gatekey.credentials import ClientSecret, generate_client_id
from gatekey_client import (
    Credentials,
    CredentialsError,
    EnvironmentCredentials,
    SecretsManagerCredentials,
)
from gatekey_client.requests_auth import GatekeyRequestsAuth
from support.constants import REGION

SECRET_NAME = "bot/orders"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- The environment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, "GATEKEY_CLIENT_ID"),
        ({"GATEKEY_CLIENT_ID": "gk_a"}, "GATEKEY_CLIENT_SECRET"),
        ({"GATEKEY_CLIENT_ID": "", "GATEKEY_CLIENT_SECRET": "gks_a"}, "GATEKEY_CLIENT_ID"),
        ({"GATEKEY_CLIENT_ID": "gk_a", "GATEKEY_CLIENT_SECRET": ""}, "GATEKEY_CLIENT_SECRET"),
    ],
)
def test_environment_errors_name_the_missing_variable(
    environ: dict[str, str], missing: str
) -> None:
    with pytest.raises(CredentialsError, match=f"environment variable {missing} is not set"):
        EnvironmentCredentials(environ=environ).get()


def test_environment_variable_names_can_be_chosen() -> None:
    environ = {"ORDERS_ID": "gk_orders", "ORDERS_SECRET": "gks_orders"}
    source = EnvironmentCredentials("ORDERS_ID", "ORDERS_SECRET", environ=environ)

    assert source.get() == Credentials("gk_orders", "gks_orders", version="environment")
    with pytest.raises(CredentialsError, match="ORDERS_SECRET"):
        EnvironmentCredentials("ORDERS_ID", "ORDERS_SECRET", environ={"ORDERS_ID": "gk_x"}).get()


def test_environment_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEY_CLIENT_ID", "gk_from_env")
    monkeypatch.setenv("GATEKEY_CLIENT_SECRET", "gks_from_env")

    assert EnvironmentCredentials().get().client_id == "gk_from_env"


def test_an_environment_value_with_a_newline_is_refused_without_showing_it() -> None:
    environ = {"GATEKEY_CLIENT_ID": "gk_a", "GATEKEY_CLIENT_SECRET": "gks_pasted\n"}

    with pytest.raises(CredentialsError) as info:
        EnvironmentCredentials(environ=environ).get()

    assert "GATEKEY_CLIENT_SECRET" in str(info.value)
    assert "gks_pasted" not in "".join(traceback.format_exception(info.value))


def test_environment_is_read_again_after_a_refusal_at_most_once_per_min_reread() -> None:
    clock = FakeClock()
    environ = {"GATEKEY_CLIENT_ID": "gk_a", "GATEKEY_CLIENT_SECRET": "gks_old"}
    source = EnvironmentCredentials(environ=environ, min_reread=5, clock=clock)
    old = source.get()
    environ["GATEKEY_CLIENT_SECRET"] = "gks_new"

    assert source.get() is old  # no refusal, no interval: what was read is kept
    assert source.refresh(old) is old  # refused right after the read: not read again yet
    clock.now += 5
    new = source.refresh(old)
    assert new.client_secret == "gks_new"
    # A late refusal of the old credentials does not read again: the source holds others.
    environ["GATEKEY_CLIENT_SECRET"] = "gks_newer"
    clock.now += 60
    assert source.refresh(old) is new


# --- Secrets Manager -----------------------------------------------------------------------


class Delivery:
    """Gatekey's side: the delivery secret, and rotations written by SecretsManagerDelivery."""

    def __init__(self) -> None:
        self.client = boto3.client("secretsmanager", region_name=REGION)
        self.client_id = generate_client_id()
        self.secret = ClientSecret.generate()
        self.arn = self.client.create_secret(
            Name=SECRET_NAME,
            SecretString=(
                f'{{"client_id": "{self.client_id}", "client_secret": "{self.secret.reveal()}"}}'
            ),
            Tags=[{"Key": "gatekey-delivery", "Value": "true"}],
        )["ARN"]
        self.reads = 0
        self.client.meta.events.register("before-call.secrets-manager.GetSecretValue", self._count)

    def _count(self, **kwargs: Any) -> None:
        self.reads += 1

    def rotate(self) -> str:
        """What the lifecycle run does: stage the new secret, then make it AWSCURRENT."""
        self.secret = ClientSecret.generate()
        delivery = SecretsManagerDelivery(self.client)
        version = delivery.stage(self.arn, self.client_id, self.secret)
        delivery.promote(self.arn, version)
        return version

    def source(self, clock: FakeClock, **kwargs: Any) -> SecretsManagerCredentials:
        return SecretsManagerCredentials(SECRET_NAME, client=self.client, clock=clock, **kwargs)


@pytest.fixture
def delivery(aws: None) -> Delivery:
    return Delivery()


def test_the_delivered_secret_is_read_with_its_version(delivery: Delivery) -> None:
    source = delivery.source(FakeClock())

    credentials = source.get()

    assert (credentials.client_id, credentials.client_secret) == (
        delivery.client_id,
        delivery.secret.reveal(),
    )
    current = delivery.client.describe_secret(SecretId=delivery.arn)["VersionIdsToStages"]
    assert [credentials.version] == [v for v, s in current.items() if "AWSCURRENT" in s]
    assert [source.get() for _ in range(3)] == [credentials] * 3
    assert delivery.reads == 1


def test_a_rotated_secret_is_picked_up_after_the_refresh_interval(delivery: Delivery) -> None:
    clock = FakeClock()
    source = delivery.source(clock, refresh_interval=900)
    old = source.get()
    version = delivery.rotate()

    clock.now += 899
    assert source.get() is old
    clock.now += 1
    new = source.get()

    assert (new.client_secret, new.version) == (delivery.secret.reveal(), version)
    assert delivery.reads == 2
    # An unchanged secret read again keeps its credentials (same VersionId).
    clock.now += 900
    assert source.get() == new
    assert delivery.reads == 3


def test_a_rotated_secret_is_picked_up_after_a_refusal(delivery: Delivery) -> None:
    clock = FakeClock()
    source = delivery.source(clock, min_reread=5)
    old = source.get()
    delivery.rotate()

    clock.now += 4
    assert source.refresh(old) is old  # at most one read per min_reread
    clock.now += 1
    new = source.refresh(old)

    assert new.client_secret == delivery.secret.reveal()
    assert delivery.reads == 2
    assert source.refresh(old) is new  # another caller's late refusal: no read
    assert delivery.reads == 2


def test_concurrent_callers_share_one_read(delivery: Delivery) -> None:
    source = delivery.source(FakeClock())
    callers = 16
    barrier = threading.Barrier(callers)

    def call(_: int) -> Credentials:
        barrier.wait(timeout=10)
        return source.get()

    with ThreadPoolExecutor(max_workers=callers) as pool:
        results = list(pool.map(call, range(callers)))

    assert delivery.reads == 1
    assert len({id(r) for r in results}) == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json SECRET", "is not JSON"),
        ('["SECRET"]', "is not JSON"),
        ('{"client_id": "gk_a", "password": "SECRET"}', "has no client_secret"),
        ('{"client_secret": "SECRET"}', "has no client_id"),
        ('{"client_id": "gk_a", "client_secret": "SECRET\\n"}', "whitespace"),
    ],
)
def test_a_malformed_secret_raises_without_its_value(
    delivery: Delivery, caplog: pytest.LogCaptureFixture, value: str, problem: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatekey_client")  # botocore's DEBUG logs bodies
    secret = f"gks_{'x' * 20}"
    delivery.client.put_secret_value(
        SecretId=SECRET_NAME, SecretString=value.replace("SECRET", secret)
    )
    source = delivery.source(FakeClock())

    with pytest.raises(CredentialsError, match=problem) as info:
        source.get()

    assert SECRET_NAME in str(info.value)
    for text in ("".join(traceback.format_exception(info.value)), repr(source), caplog.text):
        assert secret not in text


def test_a_missing_secret_raises_naming_it_and_the_error_code(aws: None) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    source = SecretsManagerCredentials("bot/absent", client=client)

    with pytest.raises(CredentialsError, match="bot/absent: ResourceNotFoundException"):
        source.get()


def test_without_boto3_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 raises ImportError

    with pytest.raises(CredentialsError, match=r"gatekey-client\[aws\]"):
        SecretsManagerCredentials(SECRET_NAME).get()


def test_no_secret_in_logs_or_reprs_across_a_rotation(
    delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatekey_client")  # botocore's DEBUG logs bodies
    clock = FakeClock()
    source = delivery.source(clock, refresh_interval=60)
    auth = GatekeyRequestsAuth(credentials=source)
    first = source.get()
    secrets = [delivery.secret.reveal()]
    delivery.rotate()
    secrets.append(delivery.secret.reveal())
    clock.now += 60
    second = source.get()

    assert "holds new credentials" in caplog.text  # the change was logged, at INFO
    for text in (caplog.text, repr(source), repr(auth), repr(first), repr(second), str(second)):
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"refresh_interval": 0}, "refresh_interval"),
        ({"refresh_interval": -1}, "refresh_interval"),
        ({"min_reread": -1}, "min_reread"),
        ({"min_reread": float("nan")}, "min_reread"),
    ],
)
def test_invalid_source_settings_raise_value_error_naming_them(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        SecretsManagerCredentials(SECRET_NAME, **kwargs)


def test_credentials_or_a_source_not_both() -> None:
    source = EnvironmentCredentials(environ={})
    with pytest.raises(ValueError, match="not both"):
        GatekeyRequestsAuth("gk_a", "gks_a", credentials=source)
    with pytest.raises(ValueError, match="client_secret"):
        GatekeyRequestsAuth("gk_a")
