"""The pepper is loaded from Secrets Manager (moto), in the shape template.yaml generates."""

from typing import Any

import boto3
import pytest

from gatekey.aws.secrets import load_hasher
from gatekey.credentials import ClientSecret
from gatekey.errors import ConfigurationError, DependencyError
from gatekey.hashing import Hasher
from support.constants import REGION


def test_the_generated_pepper_secret_loads_into_a_working_hasher(hasher: Hasher) -> None:
    assert hasher.current_key_id == "p1"
    secret = ClientSecret.generate()
    assert hasher.verify(secret, hasher.hash(secret))


def test_a_missing_pepper_secret_is_a_dependency_error(aws: None) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    with pytest.raises(DependencyError, match="ResourceNotFoundException"):
        load_hasher("gatekey-missing", client)


@pytest.mark.parametrize(
    ("value", "message"),
    [("not json", "must be a JSON object"), ('["p1"]', "must be a JSON object")],
)
def test_a_malformed_pepper_secret_is_a_configuration_error(
    aws: None, value: str, message: str
) -> None:
    client: Any = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name="bad-pepper", SecretString=value)
    with pytest.raises(ConfigurationError, match=message):
        load_hasher("bad-pepper", client)
