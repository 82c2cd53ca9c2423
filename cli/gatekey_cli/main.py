"""`gatekey`: manage service tokens from the command line.

    gatekey create ci-bot --route 'GET /items/*' --scope read
    gatekey import legacy-bot --client-id 1f0e...c9.access --client-secret-file secret.txt
    gatekey list
    gatekey rotate gk_... --grace 24h
    gatekey revoke-access-token - < leaked.jwt

Every call is SigV4-signed with the usual AWS credential chain. The endpoint is --endpoint,
else $GATEKEY_ENDPOINT, else the AdminApiUrl output of the deployed stack (--stack,
$GATEKEY_STACK, default "gatekey"). Tables for people, --json for scripts; any error is one
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError

from gatekey_cli.api import AdminClient, CliError, resolve_endpoint
from gatekey_cli.console import command as console_command

BASE = "/admin/service-tokens"
SECRET_WARNING = "Store the Client Secret now: it is shown this once and cannot be retrieved again."
TABLE_COLUMNS = ("client_id", "name", "status", "enabled", "expires_at", "last_seen_at")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekey", description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", help="admin API base URL (default: $GATEKEY_ENDPOINT)")
    parser.add_argument("--stack", help="stack whose AdminApiUrl output to use")
    parser.add_argument("--region", help="AWS region to sign for")
    parser.add_argument("--profile", help="AWS profile")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a service token (prints its secret once)")
    imported = commands.add_parser(
        "import",
        help="import an existing Cloudflare Access or Cognito Client ID and Secret",
        description="Import an existing Client ID and Secret, so bots keep them. The secret is "
        "read from --client-secret-file, or from standard input (a prompt on a terminal), "
        "never from the command line, where shell history would keep it. A rotation later "
        "gives the token a Gatekey secret (gks_...); the Client ID stays.",
        # No abbreviations: '--client-secret VALUE' must fail, not read VALUE as a path.
        allow_abbrev=False,
    )
    imported.add_argument("--client-id", required=True, help="'<32 hex>.access' or a Cognito id")
    imported.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help="file holding the Client Secret ('-' or none: standard input)",
    )
    for parser_ in (create, imported):
        parser_.add_argument("name")
        parser_.add_argument(
            "--duration",
            default="8760h",
            help="'<hours>h' (8760h), '<days>d' (30d), '<years>y' (1y) or 'forever'",
        )
        parser_.add_argument("--route", action="append", dest="routes", metavar="'METHOD /path'")
        parser_.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE")
        parser_.add_argument("--owner", help="contact for expiry reminders")
        parser_.add_argument("--rotation", choices=["remind", "auto"], default="remind")
        parser_.add_argument("--delivery-secret-arn", help="with --rotation auto")

    listing = commands.add_parser("list", help="list service tokens")
    listing.add_argument("--name")
    listing.add_argument("--status", choices=["active", "revoked"])
    listing.add_argument("--limit", type=int, default=50)

    for name, text in (
        ("show", "show one token"),
        ("enable", "enable a token"),
        ("disable", "disable a token"),
        ("revoke", "revoke a token (final)"),
        ("delete", "delete a token (its audit trail stays)"),
    ):
        commands.add_parser(name, help=text).add_argument("client_id")

    rotate = commands.add_parser("rotate", help="new secret (prints it once)")
    rotate.add_argument("client_id")
    window = rotate.add_mutually_exclusive_group()
    window.add_argument("--grace", help="keep the old secret valid this long, e.g. 24h")
    window.add_argument("--previous-expires-at", help="or until this RFC 3339 time")

    refresh = commands.add_parser("refresh", help="extend the expiry")
    refresh.add_argument("client_id")
    refresh.add_argument("--duration", help="default: the token's own duration")

    leaked = commands.add_parser(
        "revoke-access-token",
        help="revoke one access token (a leaked JWT, or a client id and jti)",
        description=(
            "Revoke one access token before its exp. Give the JWT itself (or '-' to read it "
            "from stdin, which keeps it out of the shell history): its client_id, jti and exp "
            "are read from it here, without verifying it, and only those are sent. Or give "
            "--client-id and --jti (and --exp if known). Gatekey's authorizer refuses it "
            "within StatusCacheTtlSeconds; other verifiers see it valid until its exp."
        ),
    )
    leaked.add_argument("token", nargs="?", help="the access token, or '-' for stdin")
    leaked.add_argument("--client-id")
    leaked.add_argument("--jti")
    leaked.add_argument("--exp", type=int, help="the token's exp (epoch seconds)")

    events = commands.add_parser("events", help="the token's audit trail, newest first")
    events.add_argument("client_id")
    events.add_argument("--limit", type=int, default=50)
    console_command.register(commands)
    return parser


def _token_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields create and import share."""
    body: dict[str, Any] = {"name": args.name, "duration": args.duration}
    body |= {"routes": args.routes} if args.routes else {}
    body |= {"scopes": args.scopes} if args.scopes else {}
    body |= {"owner": args.owner} if args.owner else {}
    rotation: dict[str, Any] = {"mode": args.rotation}
    if args.delivery_secret_arn:
        rotation["delivery_secret_arn"] = args.delivery_secret_arn
    body["rotation"] = rotation
    return body


def _read_secret(path: str | None, stdin: TextIO) -> str:
    """The Client Secret to import: the file's content, or standard input's (a prompt that
    does not echo, on a terminal), without its surrounding whitespace (a trailing newline)."""
    try:
        if path not in (None, "-"):
            with open(path, encoding="utf-8") as file:
                secret = file.read()
        elif stdin.isatty():
            secret = getpass.getpass("Client Secret: ", stream=sys.stderr)
        else:
            secret = stdin.read()
    except OSError as exc:  # its strerror only: the message never holds what was given
        raise CliError(f"cannot read the Client Secret: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError("cannot read the Client Secret: it is not UTF-8 text") from None
    secret = secret.strip()
    if not secret:
        raise CliError("no Client Secret given (--client-secret-file PATH, or standard input)")
    return secret


def _run(
    args: argparse.Namespace, client: AdminClient, stdin: TextIO = sys.stdin
) -> tuple[Any, bool]:
    """Call the API for one command; (result, whether it carries a secret)."""
    token = f"{BASE}/{getattr(args, 'client_id', '')}"
    if args.command == "create":
        return client.call("POST", BASE, _token_fields(args)), True
    if args.command == "import":
        secret = _read_secret(args.client_secret_file, stdin)
        body = {"client_id": args.client_id, "client_secret": secret, **_token_fields(args)}
        return client.call("POST", f"{BASE}/import", body), False
    if args.command == "list":
        query = {"limit": str(args.limit)}
        query |= {"name": args.name} if args.name else {}
        query |= {"status": args.status} if args.status else {}
        return client.call("GET", BASE, query=query), False
    if args.command == "show":
        return client.call("GET", token), False
    if args.command in ("enable", "disable"):
        return client.call("PATCH", token, {"enabled": args.command == "enable"}), False
    if args.command == "rotate":
        window = {"grace": args.grace} if args.grace else {}
        if args.previous_expires_at:
            window = {"previous_client_secret_expires_at": args.previous_expires_at}
        return client.call("POST", f"{token}/rotate", window), True
    if args.command == "refresh":
        duration = {"duration": args.duration} if args.duration else {}
        return client.call("POST", f"{token}/refresh", duration), False
    if args.command == "revoke":
        return client.call("POST", f"{token}/revoke"), False
    if args.command == "revoke-access-token":
        client_id, body = _access_token_to_revoke(args)
        return client.call("POST", f"{BASE}/{client_id}/revoke-access-token", body), False
    if args.command == "delete":
        client.call("DELETE", token)
        return {"client_id": args.client_id, "deleted": True}, False
    return client.call("GET", f"{token}/events", query={"limit": str(args.limit)}), False


def _access_token_to_revoke(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The client id and the body naming the access token: from the JWT's claims (read, not
    verified: an admin revoking a token needs no proof it is genuine), or from the options."""
    if args.token is None:
        if not (args.client_id and args.jti):
            raise CliError("give the access token, or --client-id and --jti")
        body: dict[str, Any] = {"jti": args.jti}
        return args.client_id, body | ({"exp": args.exp} if args.exp is not None else {})
    if args.client_id or args.jti or args.exp is not None:
        raise CliError("give the access token, or --client-id and --jti, not both")
    value = (sys.stdin.readline() if args.token == "-" else args.token).strip()
    try:
        payload = value.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        client_id, jti, exp = claims["client_id"], claims["jti"], claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        # Never echo the value: it is a credential.
        raise CliError("not an access token (a JWT with client_id, jti and exp)") from exc
    if not all(isinstance(v, str) for v in (client_id, jti)) or type(exp) is not int:
        raise CliError("not an access token (a JWT with client_id, jti and exp)")
    return client_id, {"jti": jti, "exp": exp}


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _print(args: argparse.Namespace, result: Any, out: TextIO) -> None:
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
    elif isinstance(result, dict) and "items" in result:
        columns = ("at", "action", "actor", "source_ip", "details")
        _table(result["items"], columns if args.command == "events" else TABLE_COLUMNS, out)
        if result.get("next_token"):
            out.write("(more: use the API's next_token, or a smaller filter)\n")
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            out.write(f"{key.ljust(width)}  {_cell(value)}\n")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    stdin: TextIO = sys.stdin,
    session_factory: Callable[..., boto3.Session] = boto3.Session,
) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "console":  # a server in the foreground, not one call
            return console_command.run(args, session_factory, stdout)
        session = session_factory(profile_name=args.profile, region_name=args.region)
        endpoint = resolve_endpoint(session, args.endpoint, args.stack)
        result, has_secret = _run(args, AdminClient(endpoint, session, args.region), stdin)
    except CliError as exc:
        stderr.write(f"gatekey: error: {exc}\n")
        return 1
    except BotoCoreError as exc:
        stderr.write(f"gatekey: error: AWS: {exc}\n")
        return 1
    _print(args, result, stdout)
    if has_secret:
        stderr.write(f"gatekey: {SECRET_WARNING}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
