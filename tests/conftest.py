"""The suite's fixtures: a fake AWS environment, moto resources built from template.yaml, the
handlers' harnesses, the local stack. What they are built from lives in tests/support/."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.kms import KmsSigner
from gatekey.aws.secrets import load_hasher
from gatekey.hashing import Hasher
from gatekey.store import InMemoryTokenStore
from gatekey_local.provision import generated_pepper, load_template
from support.aws import (
    AWS_ACTIONS,
    FAKE_ENVIRONMENT,
    AwsCallCounter,
    atomic_requests,
    create_table,
    policy_actions,
)
from support.constants import (
    ISSUER,
    NOW,
    PEPPER_NAME,
    REGION,
    TABLE_NAME,
    TEMPLATE_PATH,
    UNUSED_KEY_ARN,
)
from support.events import FakeLambdaContext, load_handler
from support.harness import AdminGateway, AdminHarness, AuthorizerHarness
from support.lifecycle import FakeDelivery, RecordingNotifier, SilentNotifier
from support.stack import LocalStack, local_stack


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as a dict; intrinsic functions stay as {"Ref": ...} / {"Fn::...": ...}."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None, template: dict[str, Any]) -> Any:
    """A moto DynamoDB client with the table exactly as template.yaml declares it."""
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client, template)
    return client


@pytest.fixture
def store(dynamodb: Any) -> DynamoDBTokenStore:
    return DynamoDBTokenStore(TABLE_NAME, audit_retention_days=400, client=dynamodb)


# -- the domain's collaborators without AWS, for unit tests of the services ------------------


@pytest.fixture
def memory_store() -> InMemoryTokenStore:
    """The store port's in-memory adapter: the contract test holds it to the DynamoDB one's
    behaviour (tests/integration/test_token_store.py)."""
    return InMemoryTokenStore()


@pytest.fixture
def fake_notifier() -> RecordingNotifier:
    """Both notification channels, recording each notice and failing on demand."""
    return RecordingNotifier(SilentNotifier())


@pytest.fixture
def fake_delivery() -> FakeDelivery:
    return FakeDelivery()


@pytest.fixture
def pepper_secret_arn(aws: None, template: dict[str, Any]) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    response = client.create_secret(Name=PEPPER_NAME, SecretString=generated_pepper(template))
    return str(response["ARN"])


@pytest.fixture
def hasher(pepper_secret_arn: str) -> Hasher:
    return load_hasher(pepper_secret_arn, boto3.client("secretsmanager", region_name=REGION))


@pytest.fixture
def unit_hasher() -> Hasher:
    """A hasher with a fixed pepper, for unit tests that need no AWS."""
    return Hasher(peppers={"p1": b"u" * 64}, current_key_id="p1")


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at every level, botocore's wire logs included."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def least_privilege(template: dict[str, Any]) -> Iterator[None]:
    """Every AWS call a handler made in the test is one its role's policy allows."""
    start = len(AWS_ACTIONS)
    yield
    missing = {
        (function, action)
        for function, action in AWS_ACTIONS[start:]
        if not any(fnmatch.fnmatchcase(action, a) for a in policy_actions(template, function))
    }
    del AWS_ACTIONS[start:]
    assert not missing, f"template.yaml does not allow these calls: {sorted(missing)}"


@pytest.fixture
def aws_calls(aws: None) -> Iterator[AwsCallCounter]:
    counter = AwsCallCounter()
    session = boto3._get_default_session()
    session.events.register("before-call.*.*", counter)
    yield counter
    session.events.unregister("before-call.*.*", counter)


@pytest.fixture
def atomic_dynamodb_requests(aws: None) -> Iterator[None]:
    """One lock around each moto request, as AWS is atomic per request (support.aws). After
    `aws`: starting moto replaces the default session the handlers' clients come from."""
    with atomic_requests(boto3._get_default_session()):
        yield


@pytest.fixture
def make_authorizer(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    hasher: Hasher,
    pepper_secret_arn: str,
    atomic_dynamodb_requests: None,
) -> Callable[..., AuthorizerHarness]:
    """Build the authorizer handler (a cold start) with environment overrides."""
    kms = boto3.client("kms", region_name=REGION)
    key_arn = kms.create_key(
        KeySpec="RSA_2048",
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": "gatekey-signing-key", "TagValue": "gatekey"}],
    )["KeyMetadata"]["Arn"]
    clock = [float(NOW + 60)]
    monkeypatch.setattr("time.time", lambda: clock[0])

    def build(**environment: str) -> AuthorizerHarness:
        for name, value in {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": pepper_secret_arn,
            "SIGNING_KEY_ID": key_arn,
            "ISSUER": ISSUER,
            "POWERTOOLS_SERVICE_NAME": "gatekey",
            "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
            **environment,
        }.items():
            monkeypatch.setenv(name, value)
        handler = load_handler("authorizer")
        store = DynamoDBTokenStore(TABLE_NAME, client=dynamodb)
        return AuthorizerHarness(handler, store, hasher, KmsSigner(key_arn, kms), clock)

    return build


@pytest.fixture
def authorizer(make_authorizer: Callable[..., AuthorizerHarness]) -> AuthorizerHarness:
    return make_authorizer()


@pytest.fixture
def make_admin(
    monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str
) -> Callable[..., AdminHarness]:
    clock = [float(NOW)]
    monkeypatch.setattr("time.time", lambda: clock[0])

    def build(**environment: str) -> AdminHarness:
        for name, value in {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": pepper_secret_arn,
            "SIGNING_KEY_ID": UNUSED_KEY_ARN,
            "POWERTOOLS_SERVICE_NAME": "gatekey",
            **environment,
        }.items():
            monkeypatch.setenv(name, value)
        return AdminHarness(load_handler("admin"), clock)

    return build


@pytest.fixture
def admin(make_admin: Callable[..., AdminHarness]) -> AdminHarness:
    return make_admin()


@pytest.fixture
def admin_gateway(admin: AdminHarness) -> Iterator[AdminGateway]:
    # The credentials of the environment (moto replaces them with its own while it runs), as
    # the local stack accepts those of the environment it was started in.
    environ = os.environ
    gateway = AdminGateway(admin, {environ["AWS_ACCESS_KEY_ID"]: environ["AWS_SECRET_ACCESS_KEY"]})
    yield gateway
    gateway.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with local_stack() as running:
        yield running
