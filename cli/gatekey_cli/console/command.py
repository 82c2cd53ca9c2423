"""`gatekey console`: the subcommand that starts the console in the foreground."""

from __future__ import annotations

import argparse
import webbrowser
from collections.abc import Callable
from typing import TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gatekey_cli.api import AdminClient, resolve_endpoint
from gatekey_cli.console.server import Console, ConsoleServer, start_in_background

HELP = "a web console on 127.0.0.1 (opens the browser)"
DESCRIPTION = (
    "Serve a web console for service tokens on 127.0.0.1, signing its calls with these AWS "
    "credentials. Its URL carries a token for this run: only a browser that opened it gets in. "
    "Ctrl-C stops it."
)


def add_arguments(console: argparse.ArgumentParser) -> None:
    console.add_argument("--port", type=int, default=0, help="default: a free port")
    console.add_argument("--no-browser", action="store_true", help="print the URL only")
    console.add_argument(
        "--test-url", help="a route protected by Gatekey, for the curl lines shown with a secret"
    )


def caller_identity(session: boto3.Session) -> Callable[[], str]:
    """Who the console signs as, for a 403: STS's answer, else the access key id (never
    the secret key) with the reason STS could not say."""

    def lookup() -> str:
        config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
        try:
            return str(session.client("sts", config=config).get_caller_identity()["Arn"])
        except (BotoCoreError, ClientError) as exc:
            credentials = session.get_credentials()
            key = credentials.access_key if credentials else "none"
            return f"access key {key} (STS did not say who: {type(exc).__name__})"

    return lookup


def console_for(
    endpoint: str, session: boto3.Session, region: str | None = None, test_url: str | None = None
) -> Console:
    console = Console(AdminClient(endpoint, session, region), caller_identity(session))
    if test_url:
        console.test_url = test_url
    return console


def run(
    args: argparse.Namespace,
    session_factory: Callable[..., boto3.Session],
    stdout: TextIO,
) -> int:
    session = session_factory(profile_name=args.profile, region_name=args.region)
    endpoint = resolve_endpoint(session, args.endpoint, args.stack)
    server = ConsoleServer(console_for(endpoint, session, args.region, args.test_url), args.port)
    stdout.write(f"Gatekey console for {endpoint}:\n  {server.url}\n(Ctrl-C stops it)\n")
    stdout.flush()
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def serve_for_local_stack(url: str) -> ConsoleServer:
    """`make run`'s console: signs with the process's credentials (those the local stack
    accepts), its curl lines call the demo route; served from a daemon thread."""
    console = console_for(url, boto3.Session(), test_url=f"{url}/demo/whoami")
    return start_in_background(console)
