"""The admin API through its handler, against moto: each route's status and JSON, how the
error tree maps to HTTP, request parsing, and the DynamoDB adapter's paths (conditional writes,
page tokens). The decisions behind them are tested on the in-memory store, in
tests/unit/test_admin_decisions.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.credentials import ClientSecret
from gatekey.hashing import Hasher
from support.admin import access_credential
from support.constants import ADMIN_ARN, BASE, DELIVERY, NOW, TABLE_NAME
from support.events import load_event
from support.harness import AdminHarness


def create(admin: AdminHarness, **fields: Any) -> dict[str, Any]:
    status, body = admin.request("POST", BASE, {"name": "ci-bot", **fields})
    assert status == 201, body
    return dict(body)


def scan(dynamodb: Any) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName=TABLE_NAME)["Items"])


def test_create_returns_the_secret_once_and_every_stored_field(
    admin: AdminHarness, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    body = create(
        admin,
        duration="960h",
        routes=["GET /items/*"],
        scopes=["read"],
        owner="platform@example.com",
        rotation={"mode": "auto", "delivery_secret_arn": DELIVERY},
    )
    assert body["client_id"].startswith("gk_")
    assert body["client_secret"].startswith("gks_")
    assert body["expires_at"] == "2027-02-24T08:00:00Z"
    assert body["routes"] == ["GET /items/*"]
    assert body["scopes"] == ["read"]
    assert body["rotation"] == {"mode": "auto", "delivery_secret_arn": DELIVERY}
    assert (body["status"], body["enabled"], body["client_secret_version"]) == ("active", True, 1)
    stored = store.get(body["client_id"])
    assert stored.authenticate(ClientSecret.parse(body["client_secret"]), hasher, NOW) is not None
    status, shown = admin.request("GET", f"{BASE}/{body['client_id']}")
    assert status == 200
    assert "client_secret" not in shown
    assert shown == {k: v for k, v in body.items() if k != "client_secret"}


@pytest.mark.parametrize(("written", "hours"), [("30d", "720h"), ("1y", "8760h")])
def test_durations_in_days_and_years_are_stored_and_shown_in_hours(
    admin: AdminHarness, written: str, hours: str
) -> None:
    body = create(admin, duration=written)
    assert body["duration"] == hours
    status, shown = admin.request("GET", f"{BASE}/{body['client_id']}")
    assert (status, shown["duration"], shown["expires_at"]) == (200, hours, body["expires_at"])


def test_defaults_are_a_year_every_route_no_scope_remind(admin: AdminHarness) -> None:
    body = create(admin)
    assert body["duration"] == "8760h"
    assert body["routes"] == ["*"]
    assert body["scopes"] == []
    assert body["rotation"]["mode"] == "remind"


def test_list_pages_and_filters_by_name_and_status(admin: AdminHarness) -> None:
    made = [create(admin, name=f"bot-{i % 2}")["client_id"] for i in range(5)]
    admin.request("POST", f"{BASE}/{made[0]}/revoke")
    seen, next_token = [], None
    while True:
        query = {"limit": "2", **({"next_token": next_token} if next_token else {})}
        status, page = admin.request("GET", BASE, query=query)
        assert status == 200
        seen += [t["client_id"] for t in page["items"]]
        next_token = page["next_token"]
        if next_token is None:
            break
    assert sorted(seen) == sorted(made)
    _, named = admin.request("GET", BASE, query={"name": "bot-1"})
    assert {t["client_id"] for t in named["items"]} == set(made[1::2])
    _, revoked = admin.request("GET", BASE, query={"status": "revoked"})
    assert [t["client_id"] for t in revoked["items"]] == [made[0]]


def test_patch_changes_only_what_is_given(admin: AdminHarness) -> None:
    token = create(admin, owner="a@example.com", scopes=["read"])
    status, body = admin.request(
        "PATCH", f"{BASE}/{token['client_id']}", {"name": "renamed", "routes": ["POST /orders"]}
    )
    assert status == 200
    assert (body["name"], body["routes"], body["scopes"], body["owner"]) == (
        "renamed",
        ["POST /orders"],
        ["read"],
        "a@example.com",
    )
    assert body["version"] == 2
    _, cleared = admin.request("PATCH", f"{BASE}/{token['client_id']}", {"owner": None})
    assert cleared["owner"] is None


def test_rotate_answers_a_new_secret_once_with_a_grace_or_an_end_time(
    admin: AdminHarness, store: DynamoDBTokenStore, hasher: Hasher
) -> None:
    token = create(admin)
    client_id = token["client_id"]
    status, at_once = admin.request("POST", f"{BASE}/{client_id}/rotate", {})
    assert status == 200
    assert at_once["client_secret"] != token["client_secret"]
    assert at_once["previous_client_secret_expires_at"] is None
    _, graced = admin.request("POST", f"{BASE}/{client_id}/rotate", {"grace": "24h"})
    assert graced["client_secret"] != at_once["client_secret"]
    assert graced["previous_client_secret_expires_at"] == "2027-01-16T08:00:00Z"
    _, dated = admin.request(
        "POST",
        f"{BASE}/{client_id}/rotate",
        {"previous_client_secret_expires_at": "2027-01-20T08:00:00Z"},
    )
    assert dated["previous_client_secret_expires_at"] == "2027-01-20T08:00:00Z"
    assert dated["client_secret_version"] == 4
    # AND a time without an offset is UTC
    _, naive = admin.request(
        "POST",
        f"{BASE}/{client_id}/rotate",
        {"previous_client_secret_expires_at": "2027-01-21T08:00:00"},
    )
    assert naive["previous_client_secret_expires_at"] == "2027-01-21T08:00:00Z"
    # AND the new secret's hash went through the table's conditional update
    stored = store.get(client_id)
    assert stored.authenticate(ClientSecret.parse(naive["client_secret"]), hasher, NOW).version == 5
    assert "client_secret" not in admin.request("GET", f"{BASE}/{client_id}")[1]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grace": "721h"}, "grace"),
        ({"previous_client_secret_expires_at": "2026-01-01T00:00:00Z"}, "previous_client_secret"),
    ],
)
def test_bad_rotation_windows_are_400_naming_the_field_and_change_nothing(
    admin: AdminHarness, body: dict[str, Any], field: str
) -> None:
    client_id = create(admin)["client_id"]
    status, error = admin.request("POST", f"{BASE}/{client_id}/rotate", body)
    assert status == 400
    assert field in error["message"]
    assert admin.request("GET", f"{BASE}/{client_id}")[1]["client_secret_version"] == 1


def test_refresh_answers_the_token_with_its_new_expiry_and_duration(admin: AdminHarness) -> None:
    client_id = create(admin, duration="24h")["client_id"]
    admin.clock[0] = NOW + 3600
    status, same = admin.request("POST", f"{BASE}/{client_id}/refresh", {})
    assert (status, same["expires_at"], same["duration"]) == (200, "2027-01-16T09:00:00Z", "24h")
    _, forever = admin.request("POST", f"{BASE}/{client_id}/refresh", {"duration": "forever"})
    assert (forever["expires_at"], forever["duration"]) == (None, "forever")


def test_revoke_answers_the_revoked_token_and_a_second_revoke_is_a_409(
    admin: AdminHarness,
) -> None:
    client_id = create(admin)["client_id"]
    status, revoked = admin.request("POST", f"{BASE}/{client_id}/revoke")
    assert (status, revoked["status"]) == (200, "revoked")
    status, error = admin.request("POST", f"{BASE}/{client_id}/revoke")
    assert (status, error["code"]) == (409, "invalid_transition")
    assert "revoked" in error["message"]


def test_delete_then_404_and_the_audit_trail_remains(admin: AdminHarness) -> None:
    client_id = create(admin)["client_id"]
    status, _ = admin.request("DELETE", f"{BASE}/{client_id}")
    assert status == 204
    status, error = admin.request("GET", f"{BASE}/{client_id}")
    assert (status, error["code"]) == (404, "not_found")
    _, events = admin.request("GET", f"{BASE}/{client_id}/events")
    assert [e["action"] for e in events["items"]] == ["deleted", "created"]


def test_times_in_event_details_are_rfc3339(admin: AdminHarness) -> None:
    # Stored as epoch seconds; answered as every other time of the API is.
    client_id = create(admin)["client_id"]
    admin.request("POST", f"{BASE}/{client_id}/rotate", {"grace": "2h"})
    _, token = admin.request("POST", f"{BASE}/{client_id}/refresh", {})
    _, events = admin.request("GET", f"{BASE}/{client_id}/events")
    refreshed, rotated = events["items"][:2]
    assert refreshed["details"] == {"duration": "8760h", "expires_at": token["expires_at"]}
    assert rotated["details"] == {
        "client_secret_version": 2,
        "previous_client_secret_expires_at": "2027-01-15T10:00:00Z",
    }


def test_events_name_the_actor_and_source_and_page(admin: AdminHarness) -> None:
    client_id = create(admin)["client_id"]
    for i in range(4):
        admin.clock[0] = NOW + i + 1
        admin.request("PATCH", f"{BASE}/{client_id}", {"name": f"n{i}"})
    status, first = admin.request("GET", f"{BASE}/{client_id}/events", query={"limit": "3"})
    assert status == 200
    assert [e["action"] for e in first["items"]] == ["updated"] * 3
    assert first["items"][0]["actor"] == ADMIN_ARN
    assert first["items"][0]["source_ip"] == "198.51.100.7"
    assert first["items"][0]["details"] == {"name": "n3"}
    _, rest = admin.request(
        "GET", f"{BASE}/{client_id}/events", query={"limit": "3", "next_token": first["next_token"]}
    )
    assert [e["action"] for e in rest["items"]] == ["updated", "created"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 422, "invalid_request", "name"),
        ({"name": ""}, 422, "invalid_request", "name"),
        ({"name": "x" * 129}, 422, "invalid_request", "name"),
        ({"name": "ok", "duration": "2h45m"}, 400, "invalid_duration", "duration"),
        ({"name": "ok", "routes": ["items"]}, 400, "invalid_input", "routes"),
        ({"name": "ok", "rotation": {"mode": "sometimes"}}, 422, "invalid_request", "rotation"),
        ({"name": "ok", "client_secret": "gks_mine"}, 422, "invalid_request", "client_secret"),
        ({"name": 42}, 422, "invalid_request", "name"),
    ],
)
def test_bad_create_bodies_name_the_field_and_write_nothing(
    admin: AdminHarness, dynamodb: Any, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    got, error = admin.request("POST", BASE, body)
    assert (got, error["code"]) == (status, code)
    assert field in error["message"]
    assert scan(dynamodb) == []


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", f"{BASE}/gk_not-an-id", None, 400),
        ("GET", BASE, {"limit": "0"}, 422),
        ("GET", BASE, {"limit": "many"}, 422),
        ("GET", BASE, {"status": "paused"}, 422),
        ("GET", BASE, {"next_token": "garbage!"}, 400),
        ("GET", "/admin/nothing-here", None, 404),
    ],
)
def test_bad_paths_and_queries(
    admin: AdminHarness, method: str, path: str, query: dict[str, str] | None, status: int
) -> None:
    got, _ = admin.request(method, path, query=query)
    assert got == status


@pytest.mark.parametrize("body", ["{not json", "[" * 5_000 + "]" * 5_000])
def test_non_json_body_is_422(admin: AdminHarness, dynamodb: Any, body: str) -> None:
    status, error = admin.request("POST", BASE, raw_body=body)
    assert status == 422
    assert error["code"] == "invalid_request"
    assert scan(dynamodb) == []


def test_an_unreachable_table_is_a_500_that_tells_the_caller_nothing_more(
    make_admin: Callable[..., AdminHarness], captured_logs: pytest.LogCaptureFixture
) -> None:
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    session = boto3._get_default_session()
    session.events.register("before-send.dynamodb.PutItem", unreachable)
    session.events.register("before-send.dynamodb.TransactWriteItems", unreachable)
    try:
        status, error = make_admin().request("POST", BASE, {"name": "ci-bot"})
    finally:
        session.events.unregister("before-send.dynamodb.PutItem", unreachable)
        session.events.unregister("before-send.dynamodb.TransactWriteItems", unreachable)
    assert (status, error) == (
        500,
        {"code": "dependency_unavailable", "message": "internal error; try again later"},
    )
    assert "admin request failed" in captured_logs.text


def test_openapi_document_lists_every_operation(admin: AdminHarness) -> None:
    status, document = admin.request("GET", "/admin/openapi.json")
    assert status == 200
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "delete"}
    }
    assert operations >= {
        ("POST", BASE),
        ("GET", BASE),
        ("GET", f"{BASE}/{{client_id}}"),
        ("PATCH", f"{BASE}/{{client_id}}"),
        ("DELETE", f"{BASE}/{{client_id}}"),
        ("POST", f"{BASE}/{{client_id}}/rotate"),
        ("POST", f"{BASE}/{{client_id}}/refresh"),
        ("POST", f"{BASE}/{{client_id}}/revoke"),
        ("GET", f"{BASE}/{{client_id}}/events"),
        ("POST", f"{BASE}/import"),
    }
    # The imported secret is write-only in the published schema.
    schemas = document["components"]["schemas"]
    secret = schemas["ImportTokenRequest"]["properties"]["client_secret"]
    assert (secret.get("writeOnly"), secret.get("format")) == (True, "password")


def test_no_secret_in_logs_audit_items_or_error_bodies(
    capsys: pytest.CaptureFixture[str],
    captured_logs: pytest.LogCaptureFixture,
    admin: AdminHarness,
    dynamodb: Any,
) -> None:
    token = create(admin)
    _, rotated = admin.request("POST", f"{BASE}/{token['client_id']}/rotate", {"grace": "1h"})
    errors = [
        admin.request("POST", BASE, {"name": "x", "owner": token["client_secret"] + "\n"})[1],
        admin.request("POST", BASE, {"name": token["client_secret"], "duration": "bad"})[1],
        admin.request(
            "PATCH", f"{BASE}/{token['client_id']}", {"scopes": [rotated["client_secret"] + " x"]}
        )[1],
    ]
    output = capsys.readouterr()
    records = [{k: str(v) for k, v in r.__dict__.items()} for r in captured_logs.records]
    haystack = json.dumps(
        [output.out, output.err, captured_logs.text, records, scan(dynamodb), errors]
    )
    for secret in (token["client_secret"], rotated["client_secret"]):
        assert secret not in haystack
        assert secret[4:-6] not in haystack


# -- import ------------------------------------------------------------------------------------


def test_import_answers_the_token_without_its_secret_which_works_as_stored(
    admin: AdminHarness, store: DynamoDBTokenStore, hasher: Hasher, dynamodb: Any
) -> None:
    client_id, secret = access_credential()
    status, body = admin.request(
        "POST",
        f"{BASE}/import",
        {
            "name": "legacy-bot",
            "client_id": client_id,
            "client_secret": secret.reveal(),
            "scopes": ["read"],
            "duration": "720h",
        },
    )
    assert status == 201, body
    assert "client_secret" not in body
    assert (body["client_id"], body["name"], body["scopes"], body["duration"]) == (
        client_id,
        "legacy-bot",
        ["read"],
        "720h",
    )
    assert store.get(client_id).authenticate(secret, hasher, NOW).version == 1
    assert secret.reveal() not in json.dumps(scan(dynamodb))
    # AND its own routes take the id, dot and all
    status, shown = admin.request("GET", f"{BASE}/{client_id}")
    assert (status, shown) == (200, body)
    _, events = admin.request("GET", f"{BASE}/{client_id}/events")
    assert [(e["action"], e["details"]["source"]) for e in events["items"]] == [
        ("imported", "access")
    ]
    status, rotated = admin.request("POST", f"{BASE}/{client_id}/rotate", {})
    assert status == 200
    assert (rotated["client_id"], rotated["client_secret"][:4]) == (client_id, "gks_")


def test_the_sample_import_event_imports(admin: AdminHarness) -> None:
    event = load_event("admin-import-token.json")
    status, body = admin.request("POST", event["path"], raw_body=event["body"])
    assert status == 201, body
    assert body["client_id"].endswith(".access")


@pytest.mark.parametrize(
    ("fields", "status", "code", "field"),
    [
        ({"client_secret": "0123456789abcdef" * 2}, 400, "malformed_credential", "client_secret"),
        ({"client_secret": "0" * 64}, 400, "malformed_credential", "client_secret"),
        ({"client_id": "gk_x"}, 400, "invalid_input", "client_id"),
        ({"client_id": "ABCDEF" * 5 + "00.access"}, 400, "invalid_input", "client_id"),
        ({"client_secret": None}, 422, "invalid_request", "client_secret"),
        ({"client_secret": ""}, 422, "invalid_request", "client_secret"),
        ({"client_id": None}, 422, "invalid_request", "client_id"),
        ({"name": ""}, 422, "invalid_request", "name"),
    ],
)
def test_bad_imports_are_refused_naming_the_field_and_write_nothing(
    admin: AdminHarness, dynamodb: Any, fields: dict[str, Any], status: int, code: str, field: str
) -> None:
    client_id, secret = access_credential()
    body = {"name": "legacy-bot", "client_id": client_id, "client_secret": secret.reveal()}
    answer = admin.request("POST", f"{BASE}/import", {**body, **fields})
    assert answer[0] == status, answer
    assert answer[1]["code"] == code
    assert field in answer[1]["message"]
    for value in (secret.reveal(), fields.get("client_secret")):
        if value:
            assert value not in answer[1]["message"]
    assert scan(dynamodb) == []


def test_importing_an_id_already_here_is_409_and_changes_nothing(
    admin: AdminHarness, dynamodb: Any
) -> None:
    client_id, secret = access_credential()
    body = {"name": "legacy-bot", "client_id": client_id, "client_secret": secret.reveal()}
    assert admin.request("POST", f"{BASE}/import", body)[0] == 201
    before = scan(dynamodb)
    _, other = access_credential()
    status, error = admin.request(
        "POST", f"{BASE}/import", {**body, "name": "again", "client_secret": other.reveal()}
    )
    assert (status, error["code"]) == (409, "already_exists")
    assert scan(dynamodb) == before


def test_no_imported_secret_in_logs_audit_items_or_error_bodies(
    capsys: pytest.CaptureFixture[str],
    captured_logs: pytest.LogCaptureFixture,
    admin: AdminHarness,
    dynamodb: Any,
) -> None:
    client_id, secret = access_credential()
    body = {"name": "legacy-bot", "client_id": client_id, "client_secret": secret.reveal()}
    answers = [
        admin.request("POST", f"{BASE}/import", body),
        admin.request("POST", f"{BASE}/import", body),  # 409
        admin.request("POST", f"{BASE}/import", {**body, "duration": "bad"}),
        admin.request("POST", f"{BASE}/import", {**body, "extra": 1}),  # 422
        admin.request("POST", f"{BASE}/import", {**body, "client_id": "gk_x"}),
    ]
    output = capsys.readouterr()
    records = [{k: str(v) for k, v in r.__dict__.items()} for r in captured_logs.records]
    haystack = json.dumps([output.out, output.err, captured_logs.text, records, scan(dynamodb)])
    haystack += json.dumps(answers)
    assert secret.reveal() not in haystack
    assert secret.reveal()[8:40] not in haystack
