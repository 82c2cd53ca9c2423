"""What only the DynamoDB adapter can show: raw items, wire logs, and AWS failing."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.config import Config
from gatekey.credentials import ClientSecret
from gatekey.durations import parse_duration
from gatekey.errors import (
    DependencyError,
    GatekeyError,
    InvalidDuration,
    MalformedCredential,
    ValidationError,
)
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, new_service_token
from support.constants import ADMIN, NOW, REGION, TABLE_NAME


def scan_everything(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        found.extend(page["Items"])
    return found


def test_no_plaintext_secret_reaches_any_item_index_or_log(
    store: DynamoDBTokenStore,
    dynamodb: Any,
    hasher: Hasher,
    captured_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN tokens created and one rotated (current and previous hash both stored), read back
    logging.getLogger().info("a line that must be captured")
    secrets: list[ClientSecret] = []
    for i in range(5):
        token, secret = new_service_token(name=f"bot-{i}", hasher=hasher, now=NOW)
        secrets.append(secret)
        store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    rotated_to = ClientSecret.generate()
    secrets.append(rotated_to)
    rotated = store.update(
        replace(
            token,
            updated_at=NOW + 1,
            secret_hash=hasher.hash(rotated_to),
            previous_secret_hash=token.secret_hash,
            previous_client_secret_expires_at=NOW + 3600,
            client_secret_version=2,
        ),
        AuditEvent(token.client_id, AuditAction.ROTATED, ADMIN, NOW + 1, details={"v": 2}),
    )
    assert hasher.verify(rotated_to, store.get(rotated.client_id).secret_hash)
    store.list(limit=100)
    store.events(token.client_id)

    # THEN no secret (nor its random part) is in any item, the index, the logs or the output
    table_dump = json.dumps(scan_everything(dynamodb, TABLE_NAME))
    index_dump = json.dumps(dynamodb.scan(TableName=TABLE_NAME, IndexName="by-name")["Items"])
    logs = captured_logs.text + json.dumps([r.getMessage() for r in captured_logs.records])
    output = capsys.readouterr()
    assert "a line that must be captured" in logs
    assert "TransactWriteItems" in logs  # botocore's wire logs were captured too
    for secret in secrets:
        for haystack in (table_dump, index_dump, logs, output.out, output.err):
            assert secret.reveal() not in haystack
            assert secret.reveal()[4:-6] not in haystack
    # Audit items carry neither secrets nor hashes.
    audit = [i for i in scan_everything(dynamodb, TABLE_NAME) if "action" in i]
    assert len(audit) == 6
    assert not any("hash" in json.dumps(item) for item in audit)


def test_bad_input_to_every_core_entry_point_raises_typed_errors_and_writes_nothing(
    store: DynamoDBTokenStore, dynamodb: Any, unit_hasher: Hasher
) -> None:
    valid, _ = new_service_token(name="ok", hasher=unit_hasher, now=NOW)
    attempts: list[tuple[type[GatekeyError], Any]] = [
        (MalformedCredential, lambda: store.get("gk_malformed")),
        (
            MalformedCredential,
            lambda: store.get(valid.client_id[:-1] + ("X" if valid.client_id[-1] != "X" else "Y")),
        ),
        (MalformedCredential, lambda: store.events("gk_ünïcode")),
        (MalformedCredential, lambda: store.record_last_seen("", NOW, 60)),
        (MalformedCredential, lambda: ClientSecret.parse("gks_" + "0" * 49)),
        (MalformedCredential, lambda: replace(valid, client_id="gk_0000")),
        (InvalidDuration, lambda: parse_duration("fortnight")),
        (InvalidDuration, lambda: parse_duration("-24h")),
        (InvalidDuration, lambda: parse_duration("100000000h")),
        (InvalidDuration, lambda: parse_duration("\uff12\uff14h")),
        (ValidationError, lambda: new_service_token(name="", hasher=unit_hasher, now=NOW)),
        (ValidationError, lambda: new_service_token(name="ok\x00", hasher=unit_hasher, now=NOW)),
        (
            ValidationError,
            lambda: new_service_token(name="ok", hasher=unit_hasher, now=NOW, routes=("x",)),
        ),
        (ValidationError, lambda: store.list(limit=-1)),
        (ValidationError, lambda: store.list(next_token="eyJwayI6IDF9")),
    ]
    with Stubber(dynamodb):  # no response queued: any request that reached DynamoDB would fail
        for expected, attempt in attempts:
            with pytest.raises(expected) as caught:
                attempt()
            assert caught.value.message  # every error says what is wrong
    assert scan_everything(dynamodb, TABLE_NAME) == []


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("get_item", "ThrottlingException"),
        ("get_item", "ProvisionedThroughputExceededException"),
        ("get_item", "AccessDeniedException"),
        ("transact_write_items", "InternalServerError"),
        ("query", "ResourceNotFoundException"),
    ],
)
def test_dynamodb_failures_surface_as_dependency_errors(
    unit_hasher: Hasher, method: str, code: str
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoDBTokenStore("t", client=client)
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    call = {
        "get_item": lambda: store.get(token.client_id),
        "transact_write_items": lambda: store.create(
            token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW)
        ),
        "query": lambda: store.list(),
    }[method]
    with Stubber(client) as stub:
        stub.add_client_error(method, service_error_code=code, http_status_code=400)
        with pytest.raises(DependencyError, match=code):
            call()


def test_a_transaction_cancelled_by_throttling_is_a_dependency_error_not_a_conflict(
    unit_hasher: Hasher,
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoDBTokenStore("t", client=client)
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            response_meta={},
            modeled_fields={"CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}]},
        )
        with pytest.raises(DependencyError, match="ThrottlingError"):
            store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))


def test_an_unreachable_endpoint_is_a_dependency_error(unit_hasher: Hasher) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoDBTokenStore("t", client=client)
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.invalid")

    client.meta.events.register("before-send.dynamodb.GetItem", unreachable)
    with pytest.raises(DependencyError, match="EndpointConnectionError"):
        store.get(token.client_id)


def test_store_built_from_config_creates_its_client_on_first_use(
    dynamodb: Any, unit_hasher: Hasher
) -> None:
    config = Config.from_env(
        {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": "arn",
            "SIGNING_KEY_ID": "arn",
            "AUDIT_RETENTION_DAYS": "30",
        }
    )
    store = DynamoDBTokenStore.from_config(config)
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    [audit] = [i for i in scan_everything(dynamodb, TABLE_NAME) if "action" in i]
    assert audit["ttl"] == {"N": str(NOW + 30 * 86_400)}


def test_a_failed_last_seen_write_is_a_dependency_error(unit_hasher: Hasher) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoDBTokenStore("t", client=client)
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW)
    with Stubber(client) as stub:
        stub.add_client_error("update_item", service_error_code="ThrottlingException")
        with pytest.raises(DependencyError, match="ThrottlingException"):
            store.record_last_seen(token.client_id, NOW, 60)
