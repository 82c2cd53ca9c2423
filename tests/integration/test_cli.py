"""The real `gatekey` CLI against the admin handler over HTTP, SigV4 checked as AWS_IAM does.
What needs the demo API (`gatekey curl`) runs against the local stack (tests/e2e)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from gatekey.admin import MAX_GRACE_HOURS
from gatekey.credentials import generate_client_id
from gatekey.durations import MAX_HOURS
from gatekey.model import MAX_NAME_LENGTH, MAX_OWNER_LENGTH, MAX_ROUTES, MAX_SCOPES
from gatekey.store.base import MAX_PAGE_SIZE
from gatekey_cli.api import (
    EXIT_ALREADY_REVOKED,
    EXIT_CODES,
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    check_endpoint,
    region_of,
    resolve_endpoint,
    token_path,
)
from gatekey_cli.main import ELLIPSIS, SECRET_WARNING, WIDTHS, main, state_of
from support.admin import access_credential, cognito_credential
from support.constants import REGION, ROOT
from support.harness import AdminGateway, AdminHarness

GHOST = generate_client_id()  # well-formed, never created


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def gatekey(gateway: AdminGateway, *args: str) -> tuple[int, str, str]:
    return run("--endpoint", gateway.url, *args)


def gatekey_json(gateway: AdminGateway, *args: str) -> Any:
    code, out, err = gatekey(gateway, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_create_prints_the_secret_once_with_a_warning(admin_gateway: AdminGateway) -> None:
    code, out, err = gatekey(
        admin_gateway, "create", "ci-bot", "--route", "GET /items/*", "--scope", "read"
    )
    assert code == 0
    assert "client_secret" in out
    assert "gks_" in out
    assert SECRET_WARNING in err
    client_id = next(line.split()[1] for line in out.splitlines() if line.startswith("client_id"))
    code, shown, err = gatekey(admin_gateway, "show", client_id)
    assert code == 0
    assert "gks_" not in shown
    assert "GET /items/*" in shown
    assert "state" in shown.split()
    assert err == ""


def test_the_whole_lifecycle_from_the_command_line(admin_gateway: AdminGateway) -> None:
    created = gatekey_json(admin_gateway, "create", "deploy-bot", "--duration", "24h")
    client_id = created["client_id"]
    listed = gatekey_json(admin_gateway, "list", "--name", "deploy-bot")
    assert [t["client_id"] for t in listed["items"]] == [client_id]
    assert gatekey_json(admin_gateway, "disable", client_id)["state"] == "disabled"
    assert gatekey_json(admin_gateway, "enable", client_id)["state"] == "active"
    rotated = gatekey_json(admin_gateway, "rotate", client_id, "--grace", "2h")
    assert rotated["client_secret"] != created["client_secret"]
    assert rotated["previous_client_secret_expires_at"] is not None
    assert (
        gatekey_json(admin_gateway, "refresh", client_id, "--duration", "48h")["duration"] == "48h"
    )
    assert gatekey_json(admin_gateway, "revoke", client_id)["state"] == "revoked"
    events = gatekey_json(admin_gateway, "events", client_id)
    assert [e["action"] for e in events["items"]] == [
        "revoked",
        "refreshed",
        "rotated",
        "enabled",
        "disabled",
        "created",
    ]
    assert events["items"][0]["actor"].startswith("arn:aws:iam::123456789012:user/")
    assert gatekey_json(admin_gateway, "delete", client_id) == {
        "client_id": client_id,
        "deleted": True,
    }


def test_update_changes_what_it_is_given_and_nothing_else(admin_gateway: AdminGateway) -> None:
    created = gatekey_json(admin_gateway, "create", "old-name", "--owner", "a@example.com")
    client_id = created["client_id"]
    updated = gatekey_json(
        admin_gateway,
        "update",
        client_id,
        "--name",
        "new-name",
        "--route",
        "GET /items/*",
        "--route",
        "POST /items",
        "--scope",
        "read",
    )
    assert updated["name"] == "new-name"
    assert updated["routes"] == ["GET /items/*", "POST /items"]
    assert updated["scopes"] == ["read"]
    assert updated["owner"] == "a@example.com"  # not given: unchanged
    cleared = gatekey_json(admin_gateway, "update", client_id, "--no-owner", "--no-scopes")
    assert (cleared["owner"], cleared["scopes"]) == (None, [])
    owner = gatekey_json(admin_gateway, "update", client_id, "--owner", "b@example.com")
    assert owner["owner"] == "b@example.com"
    reminded = gatekey_json(admin_gateway, "update", client_id, "--rotation", "remind")
    assert reminded["rotation"] == {"mode": "remind", "delivery_secret_arn": None}
    events = gatekey_json(admin_gateway, "events", client_id, "--limit", "1")
    assert events["items"][0]["action"] == "updated"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to change"),
        (["--owner", "x", "--no-owner"], "--owner or --no-owner"),
        (["--scope", "x", "--no-scopes"], "--scope or --no-scopes"),
        (["--rotation", "auto"], "--rotation auto needs --delivery-secret-arn"),
        (["--delivery-secret-arn", "arn:aws:secretsmanager:x"], "goes with --rotation auto"),
    ],
)
def test_update_refuses_what_cannot_be_meant(
    admin_gateway: AdminGateway, args: list[str], message: str
) -> None:
    code, out, err = gatekey(admin_gateway, "update", GHOST, *args)
    assert (code, out) == (EXIT_USAGE, "")
    assert message in err
    assert err.count("\n") == 1


def test_update_with_a_name_too_long_names_the_field(admin_gateway: AdminGateway) -> None:
    client_id = gatekey_json(admin_gateway, "create", "a-bot")["client_id"]
    code, _, err = gatekey(admin_gateway, "update", client_id, "--name", "n" * 129)
    assert code == 1
    assert "name" in err
    assert str(MAX_NAME_LENGTH) in err


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "list"],
        ["list", "--json"],
        ["--output", "json", "list"],
        ["list", "--output", "json"],
        ["--output", "table", "list", "--json"],  # the later one wins
    ],
)
def test_json_before_or_after_the_command(admin_gateway: AdminGateway, args: list[str]) -> None:
    gatekey_json(admin_gateway, "create", "a-bot")
    code, out, err = gatekey(admin_gateway, *args)
    assert code == 0, err
    assert json.loads(out)["items"][0]["name"] == "a-bot"


def test_global_options_after_the_command(admin_gateway: AdminGateway) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["list", "--endpoint", admin_gateway.url, "--json"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["items"] == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("gatekey 0.")


def test_help_shows_the_limits_from_the_code_and_every_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for limit in (MAX_NAME_LENGTH, MAX_OWNER_LENGTH, MAX_ROUTES, MAX_SCOPES, MAX_PAGE_SIZE):
        assert str(limit) in text
    assert f"{MAX_HOURS}h" in text
    assert f"{MAX_GRACE_HOURS}h" in text
    for code, meaning in EXIT_CODES.items():
        assert " ".join(f"{code} {meaning}".split()) in text
    assert main(["create", "--help"]) == 0
    create = " ".join(capsys.readouterr().out.split())
    assert f"1 to {MAX_NAME_LENGTH} printable characters" in create
    assert f"at most {MAX_ROUTES}" in create


def test_tables_show_a_state_and_truncate_long_names(admin_gateway: AdminGateway) -> None:
    long_name = "n" * MAX_NAME_LENGTH
    gatekey_json(admin_gateway, "create", long_name, "--owner", "ops@example.com")
    gatekey_json(admin_gateway, "create", "a-bot")
    code, out, _ = gatekey(admin_gateway, "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["client_id", "name", "state", "owner", "expires_at", "last_seen_at"]
    assert rows[0].split()[1:4] == ["a-bot", "active", "-"]
    shown = rows[1].split()[1]
    assert shown == "n" * (WIDTHS["name"] - 1) + ELLIPSIS
    assert "status" not in header
    assert "enabled" not in header
    full = gatekey_json(admin_gateway, "list", "--name-prefix", "nnn")
    assert full["items"][0]["name"] == long_name  # --json: in full


def test_the_state_is_computed_and_filters_the_list(
    admin_gateway: AdminGateway, admin: AdminHarness
) -> None:
    ids = {
        name: gatekey_json(admin_gateway, "create", name, "--duration", duration)["client_id"]
        for name, duration in (
            ("live", "8760h"),
            ("off", "8760h"),
            ("gone", "8760h"),
            ("old", "1h"),
        )
    }
    gatekey_json(admin_gateway, "disable", ids["off"])
    gatekey_json(admin_gateway, "revoke", ids["gone"])
    admin.clock[0] += 2 * 3600  # "old" is past its expiry; the CLI reads the same clock
    states = {t["name"]: t["state"] for t in gatekey_json(admin_gateway, "list")["items"]}
    assert states == {"live": "active", "off": "disabled", "gone": "revoked", "old": "expired"}
    for state, name in (("active", "live"), ("disabled", "off"), ("revoked", "gone")):
        listed = gatekey_json(admin_gateway, "list", "--state", state)
        assert [t["name"] for t in listed["items"]] == [name]
    assert gatekey_json(admin_gateway, "show", ids["old"])["state"] == "expired"


def test_state_of_precedence() -> None:
    from datetime import UTC, datetime

    now = datetime(2027, 1, 1, tzinfo=UTC)
    past, future = "2026-12-31T00:00:00Z", "2027-01-02T00:00:00Z"
    assert state_of({"status": "revoked", "enabled": False, "expires_at": past}, now) == "revoked"
    assert state_of({"status": "active", "enabled": False, "expires_at": past}, now) == "expired"
    assert state_of({"status": "active", "enabled": False, "expires_at": future}, now) == "disabled"
    assert state_of({"status": "active", "enabled": True, "expires_at": None}, now) == "active"


def test_list_filters_by_owner_and_name_prefix_in_the_api(
    admin_gateway: AdminGateway, admin: AdminHarness
) -> None:
    for name, owner in (("ci-a", "ops"), ("ci-b", "dev"), ("cd-a", "ops")):
        gatekey_json(admin_gateway, "create", name, "--owner", owner)
    names = [
        t["name"] for t in gatekey_json(admin_gateway, "list", "--name-prefix", "ci-")["items"]
    ]
    assert names == ["ci-a", "ci-b"]
    owned = gatekey_json(admin_gateway, "list", "--owner", "ops")["items"]
    assert [t["name"] for t in owned] == ["cd-a", "ci-a"]
    both = gatekey_json(admin_gateway, "list", "--owner", "ops", "--name-prefix", "ci")["items"]
    assert [t["name"] for t in both] == ["ci-a"]
    # The API itself: the query parameters, and both name filters at once refused.
    status, page = admin.request("GET", "/admin/service-tokens", query={"name_prefix": "cd"})
    assert (status, [t["name"] for t in page["items"]]) == (200, ["cd-a"])
    status, error = admin.request(
        "GET", "/admin/service-tokens", query={"name": "ci-a", "name_prefix": "ci"}
    )
    assert (status, error["code"]) == (400, "invalid_input")
    assert gatekey(admin_gateway, "list", "--name", "a", "--name-prefix", "b")[0] == EXIT_USAGE


def test_paging_with_next_token_and_all(admin_gateway: AdminGateway) -> None:
    for name in ("p1", "p2", "p3"):
        gatekey_json(admin_gateway, "create", name)
    first = gatekey_json(admin_gateway, "list", "--limit", "2")
    assert [t["name"] for t in first["items"]] == ["p1", "p2"]
    assert first["next_token"]
    rest = gatekey_json(admin_gateway, "list", "--limit", "2", "--next-token", first["next_token"])
    assert ([t["name"] for t in rest["items"]], rest["next_token"]) == (["p3"], None)
    every = gatekey_json(admin_gateway, "list", "--limit", "1", "--all")
    assert ([t["name"] for t in every["items"]], every["next_token"]) == (["p1", "p2", "p3"], None)
    code, out, err = gatekey(admin_gateway, "list", "--limit", "2")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert f"--next-token {first['next_token']}" in err


def test_events_page_with_next_token_and_all(admin_gateway: AdminGateway) -> None:
    client_id = gatekey_json(admin_gateway, "create", "busy")["client_id"]
    for _ in range(2):
        gatekey_json(admin_gateway, "disable", client_id)
        gatekey_json(admin_gateway, "enable", client_id)
    first = gatekey_json(admin_gateway, "events", client_id, "--limit", "2")
    assert len(first["items"]) == 2
    assert first["next_token"]
    rest = gatekey_json(
        admin_gateway, "events", client_id, "--limit", "2", "--next-token", first["next_token"]
    )
    every = gatekey_json(admin_gateway, "events", client_id, "--all", "--limit", "2")
    assert every["items"] == first["items"] + rest["items"] + every["items"][4:]
    assert [e["action"] for e in every["items"]][-1] == "created"
    assert len(every["items"]) == 5


def test_times_in_audit_details_are_rfc3339(admin_gateway: AdminGateway) -> None:
    client_id = gatekey_json(admin_gateway, "create", "timely")["client_id"]
    gatekey_json(admin_gateway, "rotate", client_id, "--grace", "2h")
    gatekey_json(admin_gateway, "refresh", client_id)
    refreshed, rotated = gatekey_json(admin_gateway, "events", client_id)["items"][:2]
    for value in (
        refreshed["details"]["expires_at"],
        rotated["details"]["previous_client_secret_expires_at"],
    ):
        assert isinstance(value, str)
        assert value.endswith("Z")
        assert value[4] == "-"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("127.0.0.1:3000", "try --endpoint=http://127.0.0.1:3000"),
        ("abc.execute-api.eu-west-1.amazonaws.com/v1", "try --endpoint=https://abc.execute-api"),
        ("http://127.0.0.1:3000/admin/service-tokens", "try --endpoint=http://127.0.0.1:3000"),
        ("https://h.example/v1/admin/service-tokens/x", "try --endpoint=https://h.example/v1"),
        ("https://h.example/v1/other/path", "try --endpoint=https://h.example/v1"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:port", "is not a URL"),
    ],
)
def test_a_malformed_endpoint_is_one_line_that_says_what_to_type(
    endpoint: str, expected: str
) -> None:
    code, out, err = run("--endpoint", endpoint, "list")
    assert (code, out) == (EXIT_USAGE, "")
    assert err.count("\n") == 1
    assert err.startswith("gatekey: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_a_malformed_endpoint_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEKEY_ENDPOINT", "localhost:3000")
    code, _, err = run("list")
    assert code == EXIT_USAGE
    assert "try GATEKEY_ENDPOINT=http://localhost:3000" in err


def test_endpoints_that_are_fine() -> None:
    assert check_endpoint("https://x.example/v1/") == "https://x.example/v1"
    assert check_endpoint("http://127.0.0.1:3000") == "http://127.0.0.1:3000"
    assert region_of("https://a1.execute-api.eu-west-1.amazonaws.com/v1") == "eu-west-1"
    assert region_of("http://127.0.0.1:3000") is None


def test_ids_are_url_encoded_in_paths(admin_gateway: AdminGateway) -> None:
    assert token_path("/t", "gk_a/b?c", "/rotate") == "/t/gk_a%2Fb%3Fc/rotate"
    # Encoded, the id reaches the API as one value it refuses; raw, it would be another route.
    code, _, err = gatekey(admin_gateway, "show", "gk_a/../b")
    assert code == 1
    assert "malformed_credential (HTTP 400): client_id" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", GHOST], EXIT_NOT_FOUND, "not_found (HTTP 404)"),
        (["show", "gk_not-an-id"], 1, "malformed_credential (HTTP 400): client_id"),
        (["create", "ok", "--duration", "1w"], 1, "invalid_duration (HTTP 400): duration"),
        (["rotate", "gk_0000000000000000000000000000", "--grace", "9999h"], 1, "HTTP 400"),
    ],
)
def test_errors_are_one_line_and_a_documented_exit(
    admin_gateway: AdminGateway, args: list[str], code: int, message: str
) -> None:
    exit_code, out, err = gatekey(admin_gateway, *args)
    assert exit_code == code
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("gatekey: error: ")
    assert message in err


@pytest.mark.parametrize("command", ["show", "enable", "disable", "revoke", "events", "rotate"])
def test_a_name_where_an_id_goes_suggests_list_name(command: str) -> None:
    # Refused before any request: no endpoint or credentials needed.
    code, out, err = run("--endpoint", "http://127.0.0.1:9", command, "demo-bot")
    assert (code, out) == (EXIT_USAGE, "")
    assert "is not a Client ID (gk_..., or an imported one)" in err
    assert "gatekey list --name demo-bot" in err


def test_a_second_revoke_says_already_revoked(admin_gateway: AdminGateway) -> None:
    client_id = gatekey_json(admin_gateway, "create", "twice")["client_id"]
    assert gatekey(admin_gateway, "revoke", client_id)[0] == 0
    code, out, err = gatekey(admin_gateway, "revoke", client_id)
    assert (code, out) == (EXIT_ALREADY_REVOKED, "")
    assert err == f"gatekey: error: {client_id} is already revoked; nothing changed\n"
    # Other refusals of a revoked token stay exit 1, with the API's reason.
    code, _, err = gatekey(admin_gateway, "enable", client_id)
    assert code == 1
    assert "invalid_transition (HTTP 409)" in err


def test_a_request_signed_with_unknown_credentials_suggests_credentials_and_region(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAINTRUDER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code, _, err = gatekey(admin_gateway, "list")
    assert code == EXIT_DENIED
    assert "HTTP 403" in err
    assert "aws sts get-caller-identity" in err
    assert f"signed for {REGION}" in err
    assert err.count("\n") == 1


def test_an_unreachable_endpoint_is_one_line() -> None:
    code, _, err = run("--endpoint", "http://127.0.0.1:9", "list")
    assert code == 1
    assert err.startswith("gatekey: error: cannot reach http://127.0.0.1:9")


def test_the_endpoint_comes_from_the_environment(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEY_ENDPOINT", admin_gateway.url)
    code, out, _ = run("--json", "list")
    assert code == 0
    assert json.loads(out)["items"] == []


STACK_TEMPLATE = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "AdminApiUrl": {"Value": "URL"},
        "TokenEndpointUrl": {"Value": "https://t.example/v1/oauth2/token"},
    },
}


def _deploy(name: str, admin_url: str, region: str = REGION) -> None:
    template = json.loads(json.dumps(STACK_TEMPLATE).replace('"URL"', json.dumps(admin_url)))
    boto3.client("cloudformation", region_name=region).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def test_the_endpoint_comes_from_the_stack_output_read_with_moto(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # admin_gateway runs under moto: CloudFormation here is moto's.
    monkeypatch.delenv("GATEKEY_ENDPOINT", raising=False)
    monkeypatch.delenv("GATEKEY_STACK", raising=False)
    _deploy("gatekey", admin_gateway.url + "/")
    _deploy("other", "https://other.example/v1")
    assert resolve_endpoint(boto3.Session(region_name=REGION), None, None) == admin_gateway.url
    code, out, err = run("--json", "list")  # the default stack, "gatekey"
    assert code == 0, err
    assert json.loads(out)["items"] == []
    session = boto3.Session(region_name=REGION)
    assert resolve_endpoint(session, None, "other") == "https://other.example/v1"
    monkeypatch.setenv("GATEKEY_STACK", "other")
    assert resolve_endpoint(session, None, None) == "https://other.example/v1"
    # --stack wins over $GATEKEY_ENDPOINT; --endpoint over both.
    monkeypatch.setenv("GATEKEY_ENDPOINT", "https://env.example")
    assert resolve_endpoint(session, None, "gatekey") == admin_gateway.url
    assert resolve_endpoint(session, "https://flag.example", "gatekey") == "https://flag.example"


def test_a_missing_stack_or_output_is_one_line(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEKEY_ENDPOINT", raising=False)
    code, _, err = run("--stack", "nowhere", "list")
    assert code == 1
    assert err.startswith("gatekey: error: no endpoint: pass --endpoint, set GATEKEY_ENDPOINT")
    assert "'nowhere'" in err
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="plain", TemplateBody=json.dumps({"Resources": STACK_TEMPLATE["Resources"]})
    )
    with pytest.raises(CliError, match="has no AdminApiUrl output"):
        resolve_endpoint(boto3.Session(region_name=REGION), None, "plain")


def test_create_auto_checks_the_delivery_secret_first(
    admin_gateway: AdminGateway, admin: AdminHarness
) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf"
    code, out, err = gatekey(
        admin_gateway, "create", "auto-bot", "--rotation", "auto", "--delivery-secret-arn", missing
    )
    assert (code, out) == (1, "")
    assert f"delivery secret {missing} does not exist" in err
    assert gatekey_json(admin_gateway, "list")["items"] == []  # nothing created
    arn = secrets.create_secret(Name="bot-delivery", SecretString="{}")["ARN"]
    created = gatekey_json(
        admin_gateway, "create", "auto-bot", "--rotation", "auto", "--delivery-secret-arn", arn
    )
    assert created["rotation"] == {"mode": "auto", "delivery_secret_arn": arn}
    # A secret scheduled for deletion is refused too, at update as at create.
    doomed = secrets.create_secret(Name="doomed", SecretString="{}")["ARN"]
    secrets.delete_secret(SecretId=doomed, RecoveryWindowInDays=7)
    code, _, err = gatekey(
        admin_gateway,
        "update",
        created["client_id"],
        "--rotation",
        "auto",
        "--delivery-secret-arn",
        doomed,
    )
    assert code == 1
    assert "scheduled for deletion" in err
    # --skip-secret-check leaves it to the API (and the lifecycle's alarms).
    skipped = gatekey_json(
        admin_gateway,
        "update",
        created["client_id"],
        "--rotation",
        "auto",
        "--delivery-secret-arn",
        missing,
        "--skip-secret-check",
    )
    assert skipped["rotation"]["delivery_secret_arn"] == missing


def _bash_complete(script: str, *words: str) -> list[str]:
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=(gatekey {line}); COMP_CWORD={len(words)}; _gatekey; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(  # noqa: S603
        ["/bin/bash", "--norc", "-c", program], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs bash")
def test_bash_completion_from_the_parser() -> None:
    code, script, _ = run("completion", "bash")
    assert code == 0
    assert "complete -o default -F _gatekey gatekey" in script
    commands = _bash_complete(script, "")
    assert {"create", "list", "update", "curl", "completion", "events"} <= set(commands)
    assert _bash_complete(script, "li") == ["list"]
    assert "--name-prefix" in _bash_complete(script, "list", "--")
    assert "--json" in _bash_complete(script, "--json", "list", "--j")  # after the command too
    assert _bash_complete(script, "list", "--state", "") == [
        "active",
        "disabled",
        "expired",
        "revoked",
    ]
    assert _bash_complete(script, "completion", "") == ["bash", "zsh"]
    assert _bash_complete(script, "--output", "") == ["table", "json"]


def test_zsh_completion_from_the_parser() -> None:
    code, script, _ = run("completion", "zsh")
    assert code == 0
    assert script.startswith("#compdef gatekey")
    assert "'update:change a token'\"'\"'s name, owner, routes, scopes or rotation'" in script
    assert "--name-prefix" in script
    zsh = shutil.which("zsh")
    if zsh:
        subprocess.run([zsh, "-n", "-c", script], check=True)  # noqa: S603


def test_the_command_runs_from_what_the_package_ships() -> None:
    # As pyproject.toml installs it: cli/gatekey_cli and the core, and none of the core's
    # third-party dependencies is imported by the CLI.
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("cli", "layers/gatekey")),
    }
    probe = (
        "import sys, runpy; sys.argv = ['gatekey', '--help']\n"
        "try: runpy.run_module('gatekey_cli.main', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "assert not {'pydantic', 'jwt', 'aws_lambda_powertools'} & set(sys.modules)\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert "exit codes:" in result.stdout


# -- import ----------------------------------------------------------------------------------


def gatekey_stdin(gateway: AdminGateway, stdin: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--endpoint", gateway.url, *args], stdout=out, stderr=err, stdin=io.StringIO(stdin)
    )
    return code, out.getvalue(), err.getvalue()


def test_import_reads_the_secret_from_a_file_and_never_prints_it(
    admin_gateway: AdminGateway, tmp_path: Path
) -> None:
    client_id, secret = access_credential()
    path = tmp_path / "secret.txt"
    path.write_text(secret.reveal() + "\n")  # as `echo` or an editor leaves it
    code, out, err = gatekey(
        admin_gateway,
        "import",
        "legacy-bot",
        "--client-id",
        client_id,
        "--client-secret-file",
        str(path),
        "--scope",
        "read",
    )
    assert code == 0, err
    assert secret.reveal() not in out + err
    assert SECRET_WARNING not in err  # nothing new to store: the bot has its secret
    assert client_id in out
    events = gatekey_json(admin_gateway, "events", client_id)
    assert [(e["action"], e["details"]["source"]) for e in events["items"]] == [
        ("imported", "access")
    ]
    # AND a rotation gives the same id a Gatekey secret
    rotated = gatekey_json(admin_gateway, "rotate", client_id)
    assert (rotated["client_id"], rotated["client_secret"][:4]) == (client_id, "gks_")


def test_import_reads_the_secret_from_standard_input(admin_gateway: AdminGateway) -> None:
    client_id, secret = cognito_credential()
    code, out, err = gatekey_stdin(
        admin_gateway,
        secret.reveal() + "\n",
        "--json",
        "import",
        "cognito-bot",
        "--client-id",
        client_id,
    )
    assert code == 0, err
    assert json.loads(out)["client_id"] == client_id
    assert secret.reveal() not in out + err


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        ("0123456789abcdef0123456789abcde", (), "client_secret: is too weak"),
        ("", (), "no Client Secret given"),
        ("ignored", ("--client-secret-file", "/nonexistent/secret"), "No such file"),
    ],
)
def test_a_refused_import_is_one_line_and_writes_nothing(
    admin_gateway: AdminGateway, stdin: str, args: tuple[str, ...], message: str
) -> None:
    client_id, _ = access_credential()
    code, out, err = gatekey_stdin(
        admin_gateway, stdin, "import", "legacy-bot", "--client-id", client_id, *args
    )
    assert (code, out) == (1, "")
    assert message in err
    assert err.count("\n") == 1
    if stdin:
        assert stdin not in err
    assert gatekey_json(admin_gateway, "list")["items"] == []


def test_the_secret_is_never_an_argument(admin_gateway: AdminGateway) -> None:
    client_id, secret = access_credential()
    code, out, _ = gatekey(
        admin_gateway,
        "import",
        "--client-secret",
        secret.reveal(),
        "--client-id",
        client_id,
        "legacy-bot",
    )
    assert code == EXIT_USAGE  # argparse refuses it: no abbreviation of --client-secret-file
    assert secret.reveal() not in out
    assert gatekey_json(admin_gateway, "list")["items"] == []


def _jwt(claims: dict[str, Any]) -> str:
    # The CLI reads the claims without verifying (an admin revoking needs no proof), so a
    # token with any signature will do here; the server never sees more than client_id,
    # jti and exp.
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def test_an_operator_revokes_a_leaked_access_token_pasted_or_by_its_jti(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bot whose access token leaked into a log
    client_id = gatekey_json(admin_gateway, "create", "leaky-bot")["client_id"]
    exp = int(admin_gateway.admin.clock[0]) + 3600
    leaked = _jwt({"client_id": client_id, "sub": client_id, "jti": "j" * 22, "exp": exp})
    # WHEN the operator pastes it on stdin (kept out of the shell history)
    monkeypatch.setattr("sys.stdin", io.StringIO(leaked + "\n"))
    answer = gatekey_json(admin_gateway, "revoke-access-token", "-")
    # THEN it is revoked, audited as the operator's act, and the token is echoed nowhere
    assert answer == {
        "client_id": client_id,
        "jti": "j" * 22,
        "written": True,
        "access_tokens_not_before": None,
    }
    [event, _] = gatekey_json(admin_gateway, "events", client_id)["items"]
    assert event["action"] == "access_token_revoked"
    assert event["actor"].startswith("arn:aws:iam::123456789012:user/")
    assert event["details"] == {"jti": "j" * 22, "exp": exp}
    # Again, by client id and jti alone: nothing more to write.
    again = gatekey_json(
        admin_gateway, "revoke-access-token", "--client-id", client_id, "--jti", "j" * 22
    )
    assert again["written"] is False


def test_revoke_access_token_refuses_what_is_not_an_access_token_without_echoing_it(
    admin_gateway: AdminGateway,
) -> None:
    for args, exit_code in (
        (["revoke-access-token", "gks_notajwt"], 1),
        (["revoke-access-token"], EXIT_USAGE),  # neither the token nor --client-id and --jti
    ):
        code, out, err = gatekey(admin_gateway, *args)
        assert code == exit_code
        assert out == ""
        assert "gks_notajwt" not in err
    code, _, err = gatekey(admin_gateway, "revoke-access-token", "--client-id", GHOST, "--jti", "x")
    assert code == 3  # not found (README, "Errors and exit codes")
    assert "not_found" in err or "404" in err or "does not exist" in err


def test_the_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Errors and exit codes.**") :]
    for code in [*EXIT_CODES, 22]:
        assert f"\n| {code} | " in section


def test_curl_finds_the_token_url(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # admin_gateway runs under moto: the stack's TokenEndpointUrl output is read from it.
    import argparse

    from gatekey_cli import curl

    monkeypatch.delenv("GATEKEY_ENDPOINT", raising=False)
    monkeypatch.delenv("GATEKEY_TOKEN_URL", raising=False)
    _deploy("gatekey", admin_gateway.url)
    session = boto3.Session(region_name=REGION)

    def url(**given: str | None) -> str:
        args = argparse.Namespace(**({"token_url": None, "endpoint": None, "stack": None} | given))
        return curl.token_url(args, lambda: session)

    assert url() == "https://t.example/v1/oauth2/token"  # the default stack's output
    assert url(endpoint="http://127.0.0.1:3000") == "http://127.0.0.1:3000/oauth2/token"
    assert url(token_url="https://x.example/token") == "https://x.example/token"
    monkeypatch.setenv("GATEKEY_TOKEN_URL", "https://env.example/token")
    assert url() == "https://env.example/token"
    monkeypatch.delenv("GATEKEY_TOKEN_URL")
    with pytest.raises(CliError, match="pass --token-url"):
        url(endpoint="https://a1.execute-api.us-east-1.amazonaws.com/v1")


def test_curl_refuses_to_send_credentials_in_the_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEY_CLIENT_ID", "gk_x")
    monkeypatch.setenv("GATEKEY_CLIENT_SECRET", "gks_x")
    code, out, err = run("curl", "http://api.example.com/items")
    assert (code, out) == (EXIT_USAGE, "")
    assert "refusing to send credentials over http:// to api.example.com" in err


def test_ctrl_c_is_one_line_and_exit_130(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("gatekey_cli.api.AdminClient.call", interrupted)
    assert gatekey(admin_gateway, "list") == (130, "", "gatekey: interrupted\n")


# -- bindings -------------------------------------------------------------------------------


def test_bindings_from_the_command_line(admin_gateway: AdminGateway) -> None:
    created = gatekey_json(
        admin_gateway,
        "create",
        "ci-bot",
        "--cidr",
        "203.0.113.0/24",
        "--cidr",
        "2001:DB8::/32",
        "--api",
        "a1b2c3d4e5/prod",
    )
    client_id = created["client_id"]
    assert created["bound_cidrs"] == ["203.0.113.0/24", "2001:db8::/32"]
    assert created["bound_apis"] == ["a1b2c3d4e5/prod"]
    rebound = gatekey_json(admin_gateway, "bind", client_id, "--cidr", "10.0.0.0/8", "--no-apis")
    assert (rebound["bound_cidrs"], rebound["bound_apis"]) == (["10.0.0.0/8"], [])
    code, shown, _ = gatekey(admin_gateway, "show", client_id)
    assert code == 0
    assert "10.0.0.0/8" in shown
    # An invalid block: one line naming it, a non-zero exit, and the token as it was.
    code, out, err = gatekey(admin_gateway, "bind", client_id, "--cidr", "10.0.0.5/8")
    assert (code, out) == (1, "")
    assert "10.0.0.5/8" in err
    assert len(err.strip().splitlines()) == 1
    assert gatekey_json(admin_gateway, "show", client_id)["bound_cidrs"] == ["10.0.0.0/8"]
    code, _, err = gatekey(admin_gateway, "bind", client_id)
    assert code == EXIT_USAGE  # nothing to bind: caught before any request
    assert "--cidr" in err
