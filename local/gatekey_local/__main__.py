"""`make run`: all of Gatekey on 127.0.0.1, no AWS account and no Docker.

    python -m gatekey_local [--port 3000]          # the stack, in the foreground
    python -m gatekey_local schedule FUNCTION      # run a scheduled function now

It starts moto's server on a free loopback port, creates in it what template.yaml declares,
imports each function's handler with the environment the template gives it, and serves every
API route of the template through the gateway. Ctrl-C or SIGTERM stops all of it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from gatekey_local.servers import moto_server

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 3000


def load_function(path: Path, name: str) -> ModuleType:
    """Import a handler as a cold start would (its environment is already in os.environ)."""
    spec = importlib.util.spec_from_file_location(f"local_{name}", path / "app.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_environment(environments: dict[str, dict[str, str]]) -> dict[str, str]:
    """One environment holding every function's own variables: the functions share this
    process, and libraries read variables at any time, not only at import (Powertools reads
    the metrics namespace and service at each metric). Two functions setting one variable to
    different values could not share it: that is refused, naming the variable."""
    shared: dict[str, str] = {}
    for function, environment in environments.items():
        for name, value in environment.items():
            if shared.setdefault(name, value) != value:
                raise RuntimeError(
                    f"{function} sets {name} to another value than a function before it: the "
                    "local stack runs every function in one process with one environment"
                )
    return shared


def start(port: int, overrides: str) -> tuple[Any, dict[str, Any]]:
    """Provision moto, load the functions, and return the (not yet serving) HTTP server."""
    import boto3

    from gatekey_local.gateway import Functions, Gateway
    from gatekey_local.provision import provision
    from gatekey_local.template import Stack, parameters

    values = parameters(overrides)
    url = f"http://127.0.0.1:{port}"
    # The token function names itself the issuer from its request; locally that is this URL.
    values["Issuer"] = url
    made = provision(
        dynamodb=boto3.client("dynamodb"),
        secretsmanager=boto3.client("secretsmanager"),
        kms=boto3.client("kms"),
        sns=boto3.client("sns"),
    )
    key_id = made.signing_key_arn.rsplit("/", 1)[-1]
    stack = Stack(
        parameters=values,
        physical={
            "Table": made.table_name,
            "PepperSecret": made.pepper_secret_arn,
            "SigningKey": key_id,
            "GatekeyApi": "gatekeyapi",
            "AdminApi": "adminapi",
            "DemoApi": "demoapi",
            "DemoHttpApi": "demohttpapi",
            "CoreLayer": "local-core-layer",
            "ReminderTopic": made.reminder_topic_arn or "",
        },
        attributes={"SigningKey.Arn": made.signing_key_arn, "Table.Arn": "local-table-arn"},
    )
    # Every function's variables stay set for the life of the process, as in its container.
    os.environ.update(shared_environment({f: stack.environment(f) for f in stack.functions()}))
    handlers = {
        function: load_function(ROOT / stack.code_path(function), function).lambda_handler
        for function in stack.functions()
    }
    credentials = {os.environ["AWS_ACCESS_KEY_ID"]: os.environ["AWS_SECRET_ACCESS_KEY"]}
    gateway = Gateway(
        routes=stack.routes(),
        schedules=stack.schedules(),
        functions=Functions(handlers),
        credentials=credentials,
    )
    info = {"url": url, "routes": [f"{r.method} {r.path}" for r in stack.routes()]}
    return gateway.serve(port), info


def banner(url: str, signer: tuple[str, str]) -> str:
    return f"""
Gatekey is running at {url}   (Ctrl-C stops it)

Create a service token (the admin API checks SigV4 as AWS_IAM does, {signer[0]}):
  {signer[1]}.venv/bin/gatekey --endpoint {url} create demo-bot

Call the protected demo route with the Client ID and Secret it printed:
  curl -s {url}/demo/whoami \\
    -H "Gatekey-Client-Id: $CLIENT_ID" -H "Gatekey-Client-Secret: $CLIENT_SECRET"

Exchange them for an access token, and call with it:
  curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials {url}/oauth2/token

Run a scheduled function now:  make schedule FUNCTION=SigningKeysFunction
"""


def _signer() -> tuple[str, str]:
    """Which credentials the CLI must sign with; the defaults are printed, real ones never."""
    if os.environ.get("AWS_ACCESS_KEY_ID") == "testing":
        return (
            "with the local credentials",
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing ",
        )
    return "with the AWS credentials of this shell", ""


def run(port: int, overrides: str) -> int:
    # Every AWS call of this process, the handlers' included, goes to moto.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    with moto_server() as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        server, info = start(port, overrides)
        from gatekey_cli.console.command import serve_for_local_stack  # docs/console.md

        console = serve_for_local_stack(info["url"])

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:  # before the ready line: a Ctrl-C from then on is a clean stop
            print(banner(info["url"], _signer()), flush=True)
            print(f"The admin console, for this run only:  {console.url}\n", flush=True)
            ready = {"ready": info["url"], "routes": info["routes"], "console": console.url}
            print(json.dumps(ready), flush=True)
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            console.server_close()
    return 0


def schedule(function: str, port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_local/schedules/{function}", data=b"", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            print(response.read().decode())
    except OSError as exc:
        print(f"gatekey_local: cannot run {function}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gatekey_local", description=__doc__)
    default_port = int(os.environ.get("GATEKEY_PORT", DEFAULT_PORT))
    parser.add_argument("--port", type=int, default=default_port)
    commands = parser.add_subparsers(dest="command")
    run_schedule = commands.add_parser("schedule", help="run a scheduled function now")
    run_schedule.add_argument("function")
    args = parser.parse_args(argv)
    if args.command == "schedule":
        return schedule(args.function, args.port)
    return run(args.port, os.environ.get("GATEKEY_PARAMETER_OVERRIDES", ""))


if __name__ == "__main__":
    sys.exit(main())
