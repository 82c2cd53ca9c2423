"""Shared fixtures: a fake AWS environment, moto resources built from template.yaml, a clock."""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml
from moto import mock_aws

from gatekey.hashing import Hasher, load_hasher
from gatekey.store import DynamoDBTokenStore

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"
TABLE_NAME = "gatekey-test"
PEPPER_NAME = "gatekey-test-pepper"
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z: a fixed "now" for tests that need one


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as a dict; intrinsic functions stay as {"Ref": ...} / {"Fn::...": ...}."""
    return cfn_yaml.load(str(TEMPLATE_PATH))


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may reach real AWS, whatever the machine's own configuration says.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _table_definition(template: dict[str, Any]) -> dict[str, Any]:
    props = template["Resources"]["Table"]["Properties"]
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    return json.loads(json.dumps({k: props[k] for k in keys}))


@pytest.fixture
def dynamodb(aws: None, template: dict[str, Any]) -> Any:
    """A moto DynamoDB client with the table exactly as template.yaml declares it."""
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=TABLE_NAME, **_table_definition(template))
    ttl = template["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=TABLE_NAME,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
    )
    return client


@pytest.fixture
def store(dynamodb: Any) -> DynamoDBTokenStore:
    return DynamoDBTokenStore(TABLE_NAME, audit_retention_days=400, client=dynamodb)


def generated_secret_string(template: dict[str, Any]) -> str:
    """What Secrets Manager generates from the template's GenerateSecretString."""
    spec = template["Resources"]["PepperSecret"]["Properties"]["GenerateSecretString"]
    alphabet = string.ascii_letters + string.digits
    value = json.loads(spec["SecretStringTemplate"])
    value[spec["GenerateStringKey"]] = "".join(
        secrets.choice(alphabet) for _ in range(int(spec["PasswordLength"]))
    )
    return json.dumps(value)


@pytest.fixture
def pepper_secret_arn(aws: None, template: dict[str, Any]) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    response = client.create_secret(
        Name=PEPPER_NAME, SecretString=generated_secret_string(template)
    )
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


EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, as API Gateway or the scheduler would send it."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@dataclass
class FakeLambdaContext:
    function_name: str = "gatekey-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:gatekey-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh, as a cold start would.

    Each handler file is named app.py, so each gets its own module name; set the environment
    and start moto before calling this, since handlers build their clients at import.
    """
    path = FUNCTIONS / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"gatekey_function_{function}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AwsCallCounter:
    """Counts AWS API calls (e.g. 'kms.Sign') made by every client created after it starts."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1


@pytest.fixture
def aws_calls(aws: None) -> Iterator[AwsCallCounter]:
    counter = AwsCallCounter()
    session = boto3._get_default_session()
    session.events.register("before-call.*.*", counter)
    yield counter
    session.events.unregister("before-call.*.*", counter)
