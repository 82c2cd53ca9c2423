"""The real `gatekey` CLI against the admin handler over HTTP, SigV4 checked as AWS_IAM does."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from gatekey.credentials import generate_client_id
from gatekey_cli.api import CliError, resolve_endpoint
from gatekey_cli.main import SECRET_WARNING, main
from support.admin import access_credential, cognito_credential
from support.constants import REGION
from support.harness import AdminGateway

GHOST = generate_client_id()  # well-formed, never created


def gatekey(gateway: AdminGateway, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--endpoint", gateway.url, *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


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
    assert err == ""


def test_the_whole_lifecycle_from_the_command_line(admin_gateway: AdminGateway) -> None:
    created = gatekey_json(admin_gateway, "create", "deploy-bot", "--duration", "24h")
    client_id = created["client_id"]
    listed = gatekey_json(admin_gateway, "list", "--name", "deploy-bot")
    assert [t["client_id"] for t in listed["items"]] == [client_id]
    assert gatekey_json(admin_gateway, "disable", client_id)["enabled"] is False
    assert gatekey_json(admin_gateway, "enable", client_id)["enabled"] is True
    rotated = gatekey_json(admin_gateway, "rotate", client_id, "--grace", "2h")
    assert rotated["client_secret"] != created["client_secret"]
    assert rotated["previous_client_secret_expires_at"] is not None
    assert (
        gatekey_json(admin_gateway, "refresh", client_id, "--duration", "48h")["duration"] == "48h"
    )
    assert gatekey_json(admin_gateway, "revoke", client_id)["status"] == "revoked"
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


def test_tables_for_people(admin_gateway: AdminGateway) -> None:
    gatekey_json(admin_gateway, "create", "a-bot")
    code, out, _ = gatekey(admin_gateway, "list")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "client_id",
        "name",
        "status",
        "enabled",
        "expires_at",
        "last_seen_at",
    ]
    assert row.split()[1:4] == ["a-bot", "active", "True"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", GHOST], "not_found (HTTP 404)"),
        (["show", "not-an-id"], "malformed_credential (HTTP 400): client_id"),
        (["create", "ok", "--duration", "1w"], "invalid_duration (HTTP 400): duration"),
        (["rotate", "gk_0000000000000000000000000000", "--grace", "9999h"], "HTTP 400"),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(
    admin_gateway: AdminGateway, args: list[str], message: str
) -> None:
    code, out, err = gatekey(admin_gateway, *args)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("gatekey: error: ")
    assert message in err


def test_a_request_signed_with_unknown_credentials_is_refused(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAINTRUDER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code, _, err = gatekey(admin_gateway, "list")
    assert code == 1
    assert "HTTP 403" in err


def test_an_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    code = main(["--endpoint", "http://127.0.0.1:9", "list"], stdout=io.StringIO(), stderr=err)
    assert code == 1
    assert err.getvalue().startswith("gatekey: error: cannot reach http://127.0.0.1:9")


def test_the_endpoint_comes_from_the_environment(
    admin_gateway: AdminGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEY_ENDPOINT", admin_gateway.url)
    out = io.StringIO()
    assert main(["--json", "list"], stdout=out, stderr=io.StringIO()) == 0
    assert json.loads(out.getvalue())["items"] == []


class StackSession:
    """A boto3 session whose CloudFormation client answers from a Stubber."""

    def __init__(self, response: dict[str, Any] | None) -> None:
        self.cloudformation = boto3.client("cloudformation", region_name=REGION)
        self.stub = Stubber(self.cloudformation)
        if response is None:
            self.stub.add_client_error("describe_stacks", "ValidationError")
        else:
            self.stub.add_response("describe_stacks", response, {"StackName": "gatekey"})
        self.stub.activate()

    def client(self, name: str) -> Any:
        assert name == "cloudformation"
        return self.cloudformation


def test_the_endpoint_comes_from_the_deployed_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEKEY_ENDPOINT", raising=False)
    outputs = {
        "Stacks": [
            {
                "StackName": "gatekey",
                "CreationTime": "2027-01-01T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": "AdminApiUrl", "OutputValue": "https://x.example/v1/"}],
            }
        ]
    }
    session: Any = StackSession(outputs)
    assert resolve_endpoint(session, None, None) == "https://x.example/v1"
    with pytest.raises(CliError, match="no endpoint: pass --endpoint"):
        resolve_endpoint(StackSession(None), None, None)  # type: ignore[arg-type]


def test_the_installed_command_runs(admin_gateway: AdminGateway) -> None:
    # The console script `make` installs into .venv, as a person would run it.
    command = [str(Path(sys.executable).with_name("gatekey")), "--endpoint", admin_gateway.url]
    result = subprocess.run(  # noqa: S603
        [*command, "--json", "list"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"] == []


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
    with pytest.raises(SystemExit):
        gatekey(
            admin_gateway,
            "import",
            "--client-secret",
            secret.reveal(),
            "--client-id",
            client_id,
            "legacy-bot",
        )
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
    for args in (["revoke-access-token", "gks_notajwt"], ["revoke-access-token"]):
        code, out, err = gatekey(admin_gateway, *args)
        assert code == 1
        assert out == ""
        assert "gks_notajwt" not in err
    code, _, err = gatekey(admin_gateway, "revoke-access-token", "--client-id", GHOST, "--jti", "x")
    assert code == 1
    assert "not_found" in err or "404" in err or "does not exist" in err


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
    assert code == 1
    assert "--cidr" in err
