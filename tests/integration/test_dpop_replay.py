"""DPoP proofs used once across containers (DpopSharedReplay): the conditional write on moto,
and two authorizer containers sharing it."""

from __future__ import annotations

from typing import Any

import pytest

from gatekey.aws.dpop_replay import DynamoDBReplayGuard
from gatekey.dpop import LayeredReplayGuard, MemoryReplayGuard
from gatekey.errors import DependencyError
from support.constants import NOW, TABLE_NAME


def test_a_proof_is_recorded_once_and_again_once_its_window_has_passed(dynamodb: Any) -> None:
    guard = DynamoDBReplayGuard(TABLE_NAME, dynamodb)
    assert guard.first_use("jkt", "jti-1", NOW + 60, NOW)
    assert not guard.first_use("jkt", "jti-1", NOW + 60, NOW + 30)
    assert guard.first_use("other-jkt", "jti-1", NOW + 60, NOW)  # another key's jti
    # DynamoDB removes expired items within days: one still there is overwritten.
    assert guard.first_use("jkt", "jti-1", NOW + 200, NOW + 61)
    item = dynamodb.scan(TableName=TABLE_NAME)["Items"]
    assert {i["pk"]["S"] for i in item} == {"DPOP#jkt", "DPOP#other-jkt"}
    assert all(set(i) == {"pk", "sk", "ttl"} for i in item)
    assert all("jti-1" not in i["sk"]["S"] for i in item)  # hashed


def test_two_containers_share_it(dynamodb: Any) -> None:
    shared = DynamoDBReplayGuard(TABLE_NAME, dynamodb)
    first = LayeredReplayGuard(MemoryReplayGuard(), shared)
    second = LayeredReplayGuard(MemoryReplayGuard(), shared)
    assert first.first_use("jkt", "jti", NOW + 60, NOW)
    assert not second.first_use("jkt", "jti", NOW + 60, NOW + 1)
    assert not first.first_use("jkt", "jti", NOW + 60, NOW + 1)  # its own memory


def test_a_failed_write_fails_closed(dynamodb: Any) -> None:
    guard = DynamoDBReplayGuard("no-such-table", dynamodb)
    with pytest.raises(DependencyError, match="recording a DPoP proof"):
        guard.first_use("jkt", "jti", NOW + 60, NOW)
