"""GATEKEY_STATE: moto's backends saved and loaded back whole, KMS key material included (a
signature made before verifies after, with the same public key), refused from another moto
version; which requests to moto's server may change its state; what the stack saves beside."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from gatekey_local import moto_state, runstate
from gatekey_local.provision import Provisioned
from gatekey_local.servers import free_port
from support.constants import REGION, ROOT

SPECS = {"RSA_2048": "RSASSA_PKCS1_V1_5_SHA_256", "ECC_NIST_P256": "ECDSA_SHA_256"}


def test_a_saved_state_comes_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "moto.pickle"
    signed = {}
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        for spec, algorithm in SPECS.items():
            key = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
            signature = kms.sign(KeyId=key, Message=b"m", SigningAlgorithm=algorithm)["Signature"]
            signed[key] = (algorithm, signature, kms.get_public_key(KeyId=key)["PublicKey"])
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name="pepper", SecretString='{"current": "p1", "p1": "x"}')
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "TOKEN#1"}})
        moto_state.save(path)
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        assert kms.list_keys()["Keys"] == []  # a fresh moto
        moto_state.load(path)
        for key, (algorithm, signature, public) in signed.items():
            assert kms.get_public_key(KeyId=key)["PublicKey"] == public
            verified = kms.verify(
                KeyId=key, Message=b"m", Signature=signature, SigningAlgorithm=algorithm
            )
            assert verified["SignatureValid"]
        secrets = boto3.client("secretsmanager", region_name=REGION)
        value = secrets.get_secret_value(SecretId="pepper")["SecretString"]
        assert value == '{"current": "p1", "p1": "x"}'
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        item = dynamodb.get_item(TableName="t", Key={"pk": {"S": "TOKEN#1"}})
        assert item["Item"] == {"pk": {"S": "TOKEN#1"}}


def test_a_state_of_another_moto_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "moto.pickle"
    path.write_bytes(pickle.dumps({"format": 1, "moto": "4.0.0", "services": {}}))
    with pytest.raises(RuntimeError, match=r"written by moto 4\.0\.0, this is 5\."):
        moto_state.load(path)


@pytest.mark.parametrize(
    ("target", "changes"),
    [
        ("DynamoDB_20120810.GetItem", False),
        ("DynamoDB_20120810.Query", False),
        ("TrentService.Sign", False),
        ("TrentService.GetPublicKey", False),
        ("secretsmanager.GetSecretValue", False),
        ("DynamoDB_20120810.TransactWriteItems", True),
        ("DynamoDB_20120810.UpdateItem", True),
        ("TrentService.CreateKey", True),
        ("", True),  # a query-protocol call (SNS's Action=Publish): saved
    ],
)
def test_only_reads_are_not_followed_by_a_save(target: str, changes: bool) -> None:
    assert moto_state.may_change({"PATH_INFO": "/", "HTTP_X_AMZ_TARGET": target}) is changes


def test_rest_reads_are_not_followed_by_a_save_and_rest_writes_are() -> None:
    # API Gateway's API: the gateway lists keys and plans for each metered request.
    assert not moto_state.may_change({"PATH_INFO": "/apikeys", "REQUEST_METHOD": "GET"})
    assert moto_state.may_change({"PATH_INFO": "/apikeys", "REQUEST_METHOD": "POST"})
    assert moto_state.may_change({"PATH_INFO": "/usageplans/p/keys/k", "REQUEST_METHOD": "DELETE"})


def test_what_was_provisioned_is_found_again(tmp_path: Path) -> None:
    made = Provisioned("gatekey-table", "arn:secret", "arn:aws:kms:us-east-1:1:key/k", "arn:t")
    assert runstate.load_saved(tmp_path / "new") is None
    runstate.prepare(tmp_path)
    (tmp_path / runstate.MOTO_FILE).write_bytes(b"")
    runstate.save(tmp_path, made, "http://127.0.0.1:3000")
    assert runstate.load_saved(tmp_path) == (made, "http://127.0.0.1:3000")
    (tmp_path / runstate.MOTO_FILE).unlink()
    with pytest.raises(runstate.StateError, match=r"stack\.json without moto\.pickle"):
        runstate.load_saved(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(runstate.StateError, match="not a directory"):
        runstate.load_saved(tmp_path / "file")


def _make_run(**environ: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/gatekey", "local")),
        **environ,
    }
    return subprocess.run(
        [sys.executable, "-m", "gatekey_local"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_state_make_run_cannot_use_is_said_in_one_line(tmp_path: Path) -> None:
    made = Provisioned("gatekey-table", "arn:secret", "arn:aws:kms:us-east-1:1:key/k", "arn:t")
    runstate.save(tmp_path, made, "http://127.0.0.1:3000")
    (tmp_path / runstate.MOTO_FILE).write_bytes(
        pickle.dumps({"format": 1, "moto": "4.0.0", "services": {}})
    )
    result = _make_run(GATEKEY_STATE=str(tmp_path), GATEKEY_PORT=str(free_port()))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[-2].startswith(f"gatekey_local: cannot load {tmp_path / runstate.MOTO_FILE}:")
    assert "written by moto 4.0.0" in lines[-2]
    assert lines[-1] == "gatekey_local: moto's server exited at start"
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_said_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _make_run(GATEKEY_PORT=str(port))
    assert result.returncode == 2
    assert result.stderr == f"gatekey_local: cannot serve on port {port}: Address already in use\n"
