"""`gatekey`: manage service tokens from the command line.

    gatekey create ci-bot --route 'GET /items/*' --scope read
    gatekey list --state active --name-prefix ci-
    gatekey update gk_... --scope read --scope write
    gatekey rotate gk_... --grace 24h
    gatekey curl https://api.example.com/items --auth jwt
    gatekey import legacy-bot --client-id 1f0e...c9.access --client-secret-file secret.txt
    gatekey revoke-access-token - < leaked.jwt

Every admin call is SigV4-signed with the usual AWS credential chain. Tables for people,
--json (or --output json) for scripts, before or after the command; any error is one line on
stderr and an exit code from the list below.

One function per command: `_add_<command>` declares its flags and sets `run`, a function of
(args, Context) that returns a Result. A new command is one such function and one line in
COMMANDS.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import io
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import IO, Any, Final, TextIO, cast

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gatekey.admin import MAX_GRACE_HOURS
from gatekey.credentials import CLIENT_ID_PREFIX, imported_format
from gatekey.durations import DEFAULT_TOKEN_DURATION, FOREVER, MAX_HOURS
from gatekey.model import (
    MAX_NAME_LENGTH,
    MAX_OWNER_LENGTH,
    MAX_ROUTES,
    MAX_SCOPES,
    MAX_SCOPES_LENGTH,
)
from gatekey.store.base import MAX_PAGE_SIZE
from gatekey_cli import completion, curl
from gatekey_cli.api import (
    ENDPOINT_VARIABLE,
    EXIT_ALREADY_REVOKED,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    STACK_VARIABLE,
    AdminClient,
    ApiError,
    CliError,
    UsageError,
    resolve_endpoint,
    token_path,
)
from gatekey_cli.console import command as console_command

BASE: Final = "/admin/service-tokens"
SECRET_WARNING: Final = (
    "Store the Client Secret now: it is shown this once and cannot be retrieved again."
)
STATES: Final = ("active", "disabled", "expired", "revoked")
TOKEN_COLUMNS: Final = ("client_id", "name", "state", "owner", "expires_at", "last_seen_at")
EVENT_COLUMNS: Final = ("at", "action", "actor", "source_ip", "details")
# Table cells longer than this end in an ellipsis; --json has every value in full.
WIDTHS: Final = {"name": 32, "owner": 32, "actor": 48, "details": 80}
ELLIPSIS: Final = "…"
DURATIONS: Final = (
    f"whole hours ('8760h'), days ('30d') or years ('1y' = 8760h), 1h to {MAX_HOURS}h, "
    f"or '{FOREVER}'"
)


@dataclass
class Result:
    data: Any
    kind: str = "token"  # token | tokens | events | text | none
    secret: bool = False
    exit_code: int = 0


class Context:
    """What a command may need, built on first use: a command that calls no admin API
    (curl, completion) needs no endpoint and no AWS credentials."""

    def __init__(
        self,
        args: argparse.Namespace,
        session_factory: Callable[..., Any],
        stdout: TextIO,
        stderr: TextIO,
        stdin: TextIO = sys.stdin,
    ) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self._session_factory = session_factory
        self._session: Any = None
        self._admin: AdminClient | None = None

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = self._session_factory(
                profile_name=self.args.profile, region_name=self.args.region
            )
        return self._session  # type: ignore[no-any-return]

    def admin(self) -> AdminClient:
        if self._admin is None:
            endpoint = resolve_endpoint(self.session, self.args.endpoint, self.args.stack)
            self._admin = AdminClient(endpoint, self.session, self.args.region)
        return self._admin


# -- global options: accepted before or after the command ------------------------------------

GLOBAL_DEFAULTS: Final[dict[str, Any]] = {
    "endpoint": None,
    "stack": None,
    "region": None,
    "profile": None,
    "output": "table",
}


def _global_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option not given after the command leaves the one given before it alone.
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--endpoint",
        default=argparse.SUPPRESS,
        help=f"admin API base URL, e.g. https://ID.execute-api.REGION.amazonaws.com/v1 "
        f"(default: ${ENDPOINT_VARIABLE}, else the stack's AdminApiUrl output)",
    )
    group.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help=f"read the endpoint from this stack's AdminApiUrl output (default: "
        f"${STACK_VARIABLE}, else 'gatekey'), with your credentials and region",
    )
    group.add_argument(
        "--region", default=argparse.SUPPRESS, help="AWS region (default: the endpoint's)"
    )
    group.add_argument("--profile", default=argparse.SUPPRESS, help="AWS profile")
    group.add_argument(
        "--output",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="table for people (default), json for scripts",
    )
    group.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        default=argparse.SUPPRESS,
        help="the same as --output json",
    )


def _epilog() -> str:
    codes = "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items()))
    return (
        "endpoint: --endpoint, else $GATEKEY_ENDPOINT, else the AdminApiUrl output of --stack\n"
        "  (else $GATEKEY_STACK, else 'gatekey'), read with your credentials and region.\n"
        f"limits: name 1-{MAX_NAME_LENGTH} characters, owner 1-{MAX_OWNER_LENGTH}, at most "
        f"{MAX_ROUTES} routes, {MAX_SCOPES} scopes\n"
        f"  ({MAX_SCOPES_LENGTH} characters in all), page size 1-{MAX_PAGE_SIZE}, grace at most "
        f"{MAX_GRACE_HOURS}h;\n  durations: {DURATIONS}.\n"
        f"exit codes:\n{codes}\n"
        "  curl: 0 whatever the HTTP status, 22 with --fail and a status of 400 or more."
    )


# -- the commands ----------------------------------------------------------------------------

Commands = Any  # argparse's _SubParsersAction


def _command(
    commands: Commands, name: str, help_text: str, run: Callable[..., Result]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    _global_options(parser)
    parser.set_defaults(run=run)
    return parser


def _client_id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client_id", help="the token's Client ID (gk_...)")


def _client_id(args: argparse.Namespace) -> str:
    value: str = args.client_id
    if not value.startswith(CLIENT_ID_PREFIX) and imported_format(value) is None:
        raise UsageError(
            f"{value!r} is not a Client ID (gk_..., or an imported one); to find a token by its "
            f"name: gatekey list --name {shlex.quote(value)}"
        )
    return value


def _token_fields(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The flags of what create sets and update changes."""
    parser.add_argument(
        "--owner", help=f"contact for expiry reminders, 1 to {MAX_OWNER_LENGTH} characters"
    )
    parser.add_argument(
        "--route",
        action="append",
        dest="routes",
        metavar="'METHOD /path'",
        help=f"a route the token may call, '*' wildcards; repeat, at most {MAX_ROUTES} "
        + ("(replaces the token's routes)" if update else "(default: '*', every route)"),
    )
    parser.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="SCOPE",
        help=f"an OAuth scope for access tokens; repeat, at most {MAX_SCOPES} "
        f"({MAX_SCOPES_LENGTH} characters in all)"
        + (" (replaces the token's scopes)" if update else ""),
    )
    parser.add_argument(
        "--rotation",
        choices=("remind", "auto"),
        default=None if update else "remind",
        help="remind the owner before expiry, or rotate into --delivery-secret-arn"
        + ("" if update else " (default: remind)"),
    )
    parser.add_argument(
        "--delivery-secret-arn",
        metavar="ARN",
        help="with --rotation auto: the Secrets Manager secret the new secret is written to; "
        "checked to exist with your credentials first",
    )
    if not update:  # `bind` changes them afterwards
        _binding_arguments(parser)
    parser.add_argument(
        "--skip-secret-check",
        action="store_true",
        help="do not check that the delivery secret exists (e.g. only the stack's role can "
        "describe it)",
    )
    # DPoP (RFC 9449): --dpop-required, and on update --no-dpop-required too.
    parser.add_argument(
        "--dpop-required",
        action=argparse.BooleanOptionalAction if update else "store_true",
        default=None,
        help="issue this client only DPoP-bound access tokens; refuse requests without a proof",
    )
    # Rate limits and quotas (README): the usage plan, by name or id.
    parser.add_argument("--usage-plan", metavar="PLAN", help="a usage plan of the stack")
    if update:
        parser.add_argument("--no-usage-plan", action="store_true", help="take it off its plan")


def _usage_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The body's usage_plan: --usage-plan, or update's --no-usage-plan (null)."""
    if getattr(args, "no_usage_plan", False):
        if args.usage_plan:
            raise UsageError("give --usage-plan or --no-usage-plan, not both")
        return {"usage_plan": None}
    return {"usage_plan": args.usage_plan} if args.usage_plan else {}


def _binding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cidr",
        action="append",
        dest="bound_cidrs",
        metavar="CIDR",
        help="source block it may be used from, e.g. 203.0.113.0/24 or 2001:db8::/32; repeat",
    )
    parser.add_argument(
        "--api",
        action="append",
        dest="bound_apis",
        metavar="API_ID[/STAGE]",
        help="API (and stage) it may reach, e.g. a1b2c3d4e5 or a1b2c3d4e5/prod; repeat",
    )


def _bindings(args: argparse.Namespace) -> dict[str, Any]:
    """The bindings a command sets: those given, and with bind's --no-* an empty list."""
    body: dict[str, Any] = {}
    for name in ("bound_cidrs", "bound_apis"):
        if getattr(args, name, None):
            body[name] = getattr(args, name)
        elif getattr(args, f"no_{name.removeprefix('bound_')}", False):
            body[name] = []
    return body


def _rotation(args: argparse.Namespace, ctx: Context) -> dict[str, Any] | None:
    if args.rotation is None:
        if args.delivery_secret_arn:
            raise UsageError("--delivery-secret-arn goes with --rotation auto")
        return None
    rotation: dict[str, Any] = {"mode": args.rotation}
    if args.delivery_secret_arn:
        rotation["delivery_secret_arn"] = args.delivery_secret_arn
        if args.rotation == "auto" and not args.skip_secret_check:
            _check_delivery_secret(ctx.session, args.delivery_secret_arn)
    elif args.rotation == "auto":
        raise UsageError("--rotation auto needs --delivery-secret-arn ARN")
    return rotation


def _check_delivery_secret(session: boto3.Session, arn: str) -> None:
    """Validation at the door: the secret an `auto` token is rotated into exists and can be
    described with the caller's credentials, before the token is created."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[:3] != ["arn", parts[1], "secretsmanager"]:
        return  # not an ARN: the admin API refuses it, naming the field
    region = parts[3]
    try:
        described = session.client("secretsmanager", region_name=region).describe_secret(
            SecretId=arn
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        if code == "ResourceNotFoundException":
            raise CliError(
                f"delivery secret {arn} does not exist (Secrets Manager, {region}): create it "
                "first (aws secretsmanager create-secret --name NAME), or check the ARN"
            ) from None
        raise CliError(
            f"cannot check delivery secret {arn} with your credentials ({code}: "
            f"{error.get('Message', '')}); --skip-secret-check to create the token anyway"
        ) from None
    except BotoCoreError as exc:
        raise CliError(f"cannot check delivery secret {arn}: {exc}") from None
    if described.get("DeletedDate"):
        raise CliError(
            f"delivery secret {arn} is scheduled for deletion: restore it first "
            f"(aws secretsmanager restore-secret --secret-id {arn})"
        )


def _add_create(commands: Commands) -> None:
    create = _command(
        commands, "create", "create a service token (prints its secret once)", _create
    )
    create.add_argument("name", help=f"1 to {MAX_NAME_LENGTH} printable characters")
    create.add_argument(
        "--duration",
        default=str(DEFAULT_TOKEN_DURATION),
        help=f"how long until it expires: {DURATIONS} (default: {DEFAULT_TOKEN_DURATION})",
    )
    _token_fields(create, update=False)


def _create(args: argparse.Namespace, ctx: Context) -> Result:
    body: dict[str, Any] = {"name": args.name, "duration": args.duration}
    body |= {"routes": args.routes} if args.routes else {}
    body |= {"scopes": args.scopes} if args.scopes else {}
    body |= {"owner": args.owner} if args.owner else {}
    body |= _usage_plan(args)
    body["rotation"] = _rotation(args, ctx)
    body |= _bindings(args)
    body |= {"dpop_required": True} if args.dpop_required else {}
    admin = ctx.admin()  # the endpoint is checked before the secret
    return Result(admin.call("POST", BASE, body), secret=True)


def _add_import(commands: Commands) -> None:
    imported = _command(
        commands,
        "import",
        "import an existing Cloudflare Access or Cognito Client ID and Secret",
        _import,
    )
    imported.description = (
        "Import an existing Client ID and Secret, so bots keep them. The secret is read from "
        "--client-secret-file, or from standard input (a prompt on a terminal), never from the "
        "command line, where shell history would keep it. A rotation later gives the token a "
        "Gatekey secret (gks_...); the Client ID stays."
    )
    # No abbreviations: '--client-secret VALUE' must fail, not read VALUE as a path.
    imported.allow_abbrev = False
    imported.add_argument("name", help=f"1 to {MAX_NAME_LENGTH} printable characters")
    imported.add_argument(
        "--client-id", required=True, help="'<32 hex>.access' or a Cognito app client id"
    )
    imported.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help="file holding the Client Secret ('-' or none: standard input)",
    )
    imported.add_argument(
        "--duration",
        default=str(DEFAULT_TOKEN_DURATION),
        help=f"how long until it expires: {DURATIONS} (default: {DEFAULT_TOKEN_DURATION})",
    )
    _token_fields(imported, update=False)


def _import(args: argparse.Namespace, ctx: Context) -> Result:
    secret = _read_secret(args.client_secret_file, ctx.stdin)
    body: dict[str, Any] = {
        "client_id": args.client_id,
        "client_secret": secret,
        "name": args.name,
        "duration": args.duration,
    }
    body |= {"routes": args.routes} if args.routes else {}
    body |= {"scopes": args.scopes} if args.scopes else {}
    body |= {"owner": args.owner} if args.owner else {}
    body |= _usage_plan(args)
    body["rotation"] = _rotation(args, ctx)
    body |= _bindings(args)
    body |= {"dpop_required": True} if args.dpop_required else {}
    return Result(ctx.admin().call("POST", f"{BASE}/import", body))


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


def _add_list(commands: Commands) -> None:
    listing = _command(commands, "list", "list service tokens, by name", _list)
    names = listing.add_mutually_exclusive_group()
    names.add_argument("--name", help="exactly this name")
    names.add_argument("--name-prefix", metavar="PREFIX", help="names starting with PREFIX")
    listing.add_argument("--owner", help="exactly this owner")
    listing.add_argument(
        "--state",
        choices=STATES,
        help="revoked is filtered by the API; active, disabled and expired are computed here "
        "(from enabled and expires_at) over the active tokens of each page read",
    )
    _paging(listing)


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=int,
        default=50,
        help=f"items per page read, 1 to {MAX_PAGE_SIZE} (default 50); filters apply to each "
        "page, so a page may show fewer",
    )
    pages = parser.add_mutually_exclusive_group()
    pages.add_argument("--all", action="store_true", help="read every page")
    pages.add_argument("--next-token", metavar="TOKEN", help="go on from a previous page")


def _pages(
    args: argparse.Namespace, ctx: Context, path: str, query: dict[str, str]
) -> dict[str, Any]:
    query = {**query, "limit": str(args.limit)}
    if args.next_token:
        query["next_token"] = args.next_token
    items: list[Any] = []
    while True:
        page = ctx.admin().call("GET", path, query=query)
        items.extend(page["items"])
        if not (args.all and page.get("next_token")):
            return {"items": items, "next_token": page.get("next_token")}
        query["next_token"] = page["next_token"]


def _list(args: argparse.Namespace, ctx: Context) -> Result:
    query: dict[str, str] = {}
    query |= {"name": args.name} if args.name else {}
    query |= {"name_prefix": args.name_prefix} if args.name_prefix else {}
    query |= {"owner": args.owner} if args.owner else {}
    if args.state:
        query["status"] = "revoked" if args.state == "revoked" else "active"
    page = _pages(args, ctx, BASE, query)
    page["items"] = [
        token for token in map(_with_state, page["items"]) if args.state in (None, token["state"])
    ]
    return Result(page, kind="tokens")


def _add_show(commands: Commands) -> None:
    _client_id_argument(_command(commands, "show", "show one token", _show))


def _show(args: argparse.Namespace, ctx: Context) -> Result:
    path = token_path(BASE, _client_id(args))
    return Result(ctx.admin().call("GET", path))


def _add_update(commands: Commands) -> None:
    update = _command(
        commands, "update", "change a token's name, owner, routes, scopes or rotation", _update
    )
    _client_id_argument(update)
    update.add_argument("--name", help=f"a new name, 1 to {MAX_NAME_LENGTH} characters")
    update.add_argument("--no-owner", action="store_true", help="remove the owner")
    update.add_argument("--no-scopes", action="store_true", help="remove every scope")
    _token_fields(update, update=True)


def _update(args: argparse.Namespace, ctx: Context) -> Result:
    client_id = _client_id(args)
    if args.owner and args.no_owner:
        raise UsageError("give --owner or --no-owner, not both")
    if args.scopes and args.no_scopes:
        raise UsageError("give --scope or --no-scopes, not both")
    body: dict[str, Any] = {}
    body |= {"name": args.name} if args.name is not None else {}
    body |= {"owner": None} if args.no_owner else {}
    body |= {"owner": args.owner} if args.owner is not None else {}
    body |= {"routes": args.routes} if args.routes else {}
    body |= {"scopes": []} if args.no_scopes else {}
    body |= {"scopes": args.scopes} if args.scopes else {}
    rotation = _rotation(args, ctx)
    body |= {"rotation": rotation} if rotation is not None else {}
    body |= _usage_plan(args)
    body |= {"dpop_required": args.dpop_required} if args.dpop_required is not None else {}
    if not body:
        raise UsageError(
            "nothing to change: give --name, --owner, --no-owner, --route, --scope, "
            "--no-scopes, --rotation, --usage-plan, --no-usage-plan or --[no-]dpop-required"
        )
    return Result(ctx.admin().call("PATCH", token_path(BASE, client_id), body))


def _add_bind(commands: Commands) -> None:
    bind = _command(
        commands,
        "bind",
        "bind a token to source CIDR blocks and APIs (replaces what is given)",
        _bind,
    )
    bind.description = (
        "Set the token's source CIDR blocks (--cidr, repeated) and APIs (--api, repeated), "
        "each replacing the token's list; --no-cidrs / --no-apis unbind."
    )
    _client_id_argument(bind)
    _binding_arguments(bind)
    bind.add_argument("--no-cidrs", action="store_true", help="usable from any address")
    bind.add_argument("--no-apis", action="store_true", help="usable on every API")


def _bind(args: argparse.Namespace, ctx: Context) -> Result:
    body = _bindings(args)
    if not body:
        raise UsageError("give --cidr, --api, --no-cidrs or --no-apis")
    return Result(ctx.admin().call("PATCH", token_path(BASE, _client_id(args)), body))


def _add_enable(commands: Commands) -> None:
    _client_id_argument(_command(commands, "enable", "enable a token", _enable))


def _enable(args: argparse.Namespace, ctx: Context) -> Result:
    path = token_path(BASE, _client_id(args))
    return Result(ctx.admin().call("PATCH", path, {"enabled": True}))


def _add_disable(commands: Commands) -> None:
    _client_id_argument(
        _command(commands, "disable", "disable a token (enable brings it back)", _disable)
    )


def _disable(args: argparse.Namespace, ctx: Context) -> Result:
    path = token_path(BASE, _client_id(args))
    return Result(ctx.admin().call("PATCH", path, {"enabled": False}))


def _add_revoke(commands: Commands) -> None:
    _client_id_argument(
        _command(
            commands,
            "revoke",
            f"revoke a token: final (exit {EXIT_ALREADY_REVOKED} if it already was)",
            _revoke,
        )
    )


def _revoke(args: argparse.Namespace, ctx: Context) -> Result:
    client_id = _client_id(args)
    try:
        return Result(ctx.admin().call("POST", token_path(BASE, client_id, "/revoke")))
    except ApiError as exc:
        # The one change a revoked token refuses as a transition is being revoked again.
        if exc.status == 409 and exc.code == "invalid_transition":
            error = CliError(f"{client_id} is already revoked; nothing changed")
            error.exit_code = EXIT_ALREADY_REVOKED
            raise error from None
        raise


def _add_revoke_access_token(commands: Commands) -> None:
    leaked = _command(
        commands,
        "revoke-access-token",
        "revoke one access token (a leaked JWT, or a client id and jti)",
        _revoke_access_token,
    )
    leaked.description = (
        "Revoke one access token before its exp. Give the JWT itself (or '-' to read it from "
        "stdin, which keeps it out of the shell history): its client_id, jti and exp are read "
        "from it here, without verifying it, and only those are sent. Or give --client-id and "
        "--jti (and --exp if known). Gatekey's authorizer refuses it within "
        "StatusCacheTtlSeconds; other verifiers see it valid until its exp."
    )
    leaked.add_argument("token", nargs="?", help="the access token, or '-' for stdin")
    leaked.add_argument("--client-id")
    leaked.add_argument("--jti")
    leaked.add_argument("--exp", type=int, help="the token's exp (epoch seconds)")


def _revoke_access_token(args: argparse.Namespace, ctx: Context) -> Result:
    client_id, body = _access_token_to_revoke(args, ctx.stdin)
    path = f"{token_path(BASE, client_id)}/revoke-access-token"
    return Result(ctx.admin().call("POST", path, body))


def _access_token_to_revoke(args: argparse.Namespace, stdin: TextIO) -> tuple[str, dict[str, Any]]:
    """The client id and the body naming the access token: from the JWT's claims (read, not
    verified: an admin revoking a token needs no proof it is genuine), or from the options."""
    if args.token is None:
        if not (args.client_id and args.jti):
            raise UsageError("give the access token, or --client-id and --jti")
        body: dict[str, Any] = {"jti": args.jti}
        return args.client_id, body | ({"exp": args.exp} if args.exp is not None else {})
    if args.client_id or args.jti or args.exp is not None:
        raise UsageError("give the access token, or --client-id and --jti, not both")
    value = (stdin.readline() if args.token == "-" else args.token).strip()
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


def _add_delete(commands: Commands) -> None:
    _client_id_argument(
        _command(commands, "delete", "delete a token (its audit trail stays)", _delete)
    )


def _delete(args: argparse.Namespace, ctx: Context) -> Result:
    client_id = _client_id(args)
    ctx.admin().call("DELETE", token_path(BASE, client_id))
    return Result({"client_id": client_id, "deleted": True})


def _add_rotate(commands: Commands) -> None:
    rotate = _command(commands, "rotate", "a new secret (prints it once)", _rotate)
    _client_id_argument(rotate)
    window = rotate.add_mutually_exclusive_group()
    window.add_argument(
        "--grace",
        help=f"keep the old secret valid this long, e.g. 24h, at most {MAX_GRACE_HOURS}h "
        "(default: it stops at once)",
    )
    window.add_argument("--previous-expires-at", metavar="TIME", help="or until this RFC 3339 time")


def _rotate(args: argparse.Namespace, ctx: Context) -> Result:
    window = {"grace": args.grace} if args.grace else {}
    if args.previous_expires_at:
        window = {"previous_client_secret_expires_at": args.previous_expires_at}
    path = token_path(BASE, _client_id(args), "/rotate")
    return Result(ctx.admin().call("POST", path, window), secret=True)


def _add_refresh(commands: Commands) -> None:
    refresh = _command(commands, "refresh", "extend the expiry, from now", _refresh)
    _client_id_argument(refresh)
    refresh.add_argument("--duration", help=f"{DURATIONS} (default: the token's own)")


def _refresh(args: argparse.Namespace, ctx: Context) -> Result:
    duration = {"duration": args.duration} if args.duration else {}
    path = token_path(BASE, _client_id(args), "/refresh")
    return Result(ctx.admin().call("POST", path, duration))


def _add_events(commands: Commands) -> None:
    events = _command(commands, "events", "the token's audit trail, newest first", _events)
    _client_id_argument(events)
    _paging(events)


def _events(args: argparse.Namespace, ctx: Context) -> Result:
    path = token_path(BASE, _client_id(args), "/events")
    return Result(_pages(args, ctx, path, {}), kind="events")


def _add_curl(commands: Commands) -> None:
    parser = _command(commands, "curl", curl.HELP, _curl)
    curl.add_arguments(parser)


def _curl(args: argparse.Namespace, ctx: Context) -> Result:
    out: IO[bytes] = getattr(ctx.stdout, "buffer", None) or cast(
        IO[bytes], _TextAsBytes(ctx.stdout)
    )
    code = curl.run(args, lambda: ctx.session, out, ctx.stderr)
    return Result(None, kind="none", exit_code=code)


class _TextAsBytes(io.RawIOBase):
    """A text stream (a test's StringIO) where curl writes the body's bytes."""

    def __init__(self, text: TextIO) -> None:
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._text.write(bytes(data).decode(errors="replace"))
        return len(data)


def _add_completion(commands: Commands) -> None:
    parser = _command(
        commands, "completion", "print a shell completion script (bash or zsh)", _completion
    )
    parser.add_argument("shell", choices=completion.SHELLS)
    parser.epilog = completion.USAGE


def _completion(args: argparse.Namespace, ctx: Context) -> Result:
    return Result(completion.script(_parser(), args.shell), kind="text")


def _add_console(commands: Commands) -> None:
    console = _command(commands, "console", console_command.HELP, _console)
    console.description = console_command.DESCRIPTION
    console_command.add_arguments(console)


def _console(args: argparse.Namespace, ctx: Context) -> Result:
    # A server in the foreground until Ctrl-C, not one call.
    code = console_command.run(args, lambda **_: ctx.session, ctx.stdout)
    return Result(None, kind="none", exit_code=code)


COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_create,
    _add_import,
    _add_list,
    _add_show,
    _add_update,
    _add_bind,
    _add_enable,
    _add_disable,
    _add_rotate,
    _add_refresh,
    _add_revoke,
    _add_revoke_access_token,
    _add_delete,
    _add_events,
    _add_curl,
    _add_console,
    _add_completion,
)


def _version() -> str:
    try:
        version = metadata.version("gatekey")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return f"gatekey {version} (Python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekey",
        description=(__doc__ or "").split("\n\nOne function per command")[0],
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    _global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


# -- output ----------------------------------------------------------------------------------


def state_of(token: dict[str, Any], now: datetime | None = None) -> str:
    """One word for what the authorizer does with the token: revoked and expired are final
    (until a refresh, for expired), disabled until enabled."""
    if token.get("status") == "revoked":
        return "revoked"
    expires = token.get("expires_at")
    now = now or datetime.fromtimestamp(time.time(), UTC)
    if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
        return "expired"
    return "active" if token.get("enabled", True) else "disabled"


def _with_state(token: dict[str, Any]) -> dict[str, Any]:
    """The token with `state` after `name` (and in --json output too)."""
    out: dict[str, Any] = {}
    for key, value in token.items():
        out[key] = value
        if key == "name":
            out["state"] = state_of(token)
    out.setdefault("state", state_of(token))
    return out


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[_cell(row.get(c), WIDTHS.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value) or "-"
    elif isinstance(value, dict):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    if width is not None and len(text) > width:
        return text[: width - 1] + ELLIPSIS
    return text


def _print(args: argparse.Namespace, result: Result, out: TextIO, err: TextIO) -> None:
    data = result.data
    if result.kind == "none":
        return
    if result.kind == "text":
        out.write(data)
        return
    if result.kind == "token" and isinstance(data, dict) and "client_id" in data:
        data = _with_state(data) if "status" in data else data
    if args.output == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    elif result.kind in ("tokens", "events"):
        columns = TOKEN_COLUMNS if result.kind == "tokens" else EVENT_COLUMNS
        _table(data["items"], columns, out)
        if data.get("next_token"):
            err.write(
                f"gatekey: more: add --next-token {data['next_token']} (or --all for every page)\n"
            )
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            out.write(f"{key.ljust(width)}  {_cell(value)}\n")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    stdin: TextIO | None = None,
    session_factory: Callable[..., Any] = boto3.Session,
) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        context = Context(args, session_factory, stdout, stderr, stdin or sys.stdin)
        result: Result = args.run(args, context)
    except CliError as exc:
        stderr.write(f"gatekey: error: {exc}\n")
        return exc.exit_code
    except BotoCoreError as exc:
        stderr.write(f"gatekey: error: AWS: {exc}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("gatekey: interrupted\n")
        return EXIT_INTERRUPTED
    _print(args, result, stdout, stderr)
    if result.secret:
        stderr.write(f"gatekey: {SECRET_WARNING}\n")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
