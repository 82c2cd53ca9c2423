"""`make run`: all of Gatekey on 127.0.0.1, no AWS account and no Docker.

    python -m gatekey_local [--port 3000]          # the stack, in the foreground
    python -m gatekey_local schedule FUNCTION      # run a scheduled function now

It starts moto's server on a free loopback port, creates in it what template.yaml declares,
imports each function's handler with the environment the template gives it, and serves every
API route of the template through the gateway. Ctrl-C or SIGTERM stops all of it.

Environment: GATEKEY_PORT (default 3000; `schedule` finds the running stack without it),
GATEKEY_PARAMETER_OVERRIDES ("Name=Value ...", checked against the template), GATEKEY_STATE
(a directory: the stack's state is kept there and found again by the next run).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from gatekey_local import runstate
from gatekey_local.provision import Provisioned
from gatekey_local.servers import MotoNotStarted, moto_server
from gatekey_local.template import ParameterError, parameters

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


def start(
    port: int, values: dict[str, str], made: Provisioned | None = None
) -> tuple[Any, dict[str, Any], Provisioned]:
    """Provision moto (unless `made` names what a previous run provisioned), load the
    functions, and return the (not yet serving) HTTP server."""
    import boto3

    from gatekey_local.gateway import Functions, Gateway
    from gatekey_local.provision import create_usage_plans, provision
    from gatekey_local.template import STAGE, Stack
    from gatekey_local.usage_plans import Metering, MotoPlans

    url = f"http://127.0.0.1:{port}"
    # The token function names itself the issuer from its request; locally that is this URL.
    values = {**values, "Issuer": url}
    if made is None:
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
            "DemoApi.Stage": STAGE,
            "DemoHttpApi": "demohttpapi",
            "CoreLayer": "local-core-layer",
            "ReminderTopic": made.reminder_topic_arn or "",
        },
        attributes={"SigningKey.Arn": made.signing_key_arn, "Table.Arn": "local-table-arn"},
    )
    # The template's usage plans, in moto (the admin's USAGE_PLANS names them by id); a
    # restart with GATEKEY_STATE finds those it made before.
    apigateway = boto3.client("apigateway")
    if not made.usage_plans:
        made = replace(made, usage_plans=create_usage_plans(apigateway, stack.usage_plans()))
    stack.physical |= made.usage_plans
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
        region=os.environ["AWS_REGION"],
        metering=Metering(MotoPlans(apigateway)),
    )
    info = {"url": url, "routes": [f"{r.method} {r.path}" for r in stack.routes()]}
    return gateway.serve(port), info, made


def banner(url: str, signer: tuple[str, str], state: Path | None = None) -> str:
    kept = f"\nState is kept in {state} (GATEKEY_STATE): a restart finds it.\n" if state else ""
    return f"""
Gatekey is running at {url}   (Ctrl-C stops it)
{kept}
In another shell (the Quickstart in README.md runs on any port with these two lines):
  export GATEKEY_PORT={url.rsplit(":", 1)[1]}
  export {signer[1]}

Create a service token (the admin API checks SigV4 as AWS_IAM does, {signer[0]}):
  .venv/bin/gatekey --endpoint {url} create demo-bot

Call the protected demo route with the Client ID and Secret it printed:
  curl -s {url}/demo/whoami \\
    -H "Gatekey-Client-Id: $CLIENT_ID" -H "Gatekey-Client-Secret: $CLIENT_SECRET"

Exchange them for an access token, and call with it:
  curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials {url}/oauth2/token

Run a scheduled function now:  make schedule FUNCTION=SigningKeysFunction
"""


def _signer() -> tuple[str, str]:
    """Which credentials the CLI must sign with; the defaults are printed, real ones never."""
    region = os.environ["AWS_DEFAULT_REGION"]
    if os.environ.get("AWS_ACCESS_KEY_ID") == "testing":
        return (
            f"with the local credentials, region {region}",
            f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={region}",
        )
    return (
        f"with the AWS credentials of this shell, region {region}",
        f"AWS_DEFAULT_REGION={region}",
    )


def _fail(message: str) -> int:
    print(f"gatekey_local: {message}", file=sys.stderr)
    return 2


def run(port: int | None, overrides: str, state: Path | None = None) -> int:
    """The stack in the foreground until Ctrl-C or SIGTERM. Bad settings (a parameter the
    template refuses, an unusable state directory, a port in use) are one line and exit 2."""
    try:
        values = parameters(overrides)
        saved = runstate.load_saved(state) if state is not None else None
    except (ParameterError, runstate.StateError) as exc:
        return _fail(str(exc))
    if port is None:  # a state's own port, so the access tokens it issued keep their issuer
        port = int(saved[1].rsplit(":", 1)[1]) if saved else DEFAULT_PORT
    url = f"http://127.0.0.1:{port}"
    if saved and saved[1] != url:
        print(
            f"gatekey_local: the state in {state} was served at {saved[1]}: the access tokens it"
            f" issued name that issuer and are refused at {url}",
            file=sys.stderr,
        )
    if state is not None and saved is None:
        runstate.prepare(state)
    # Every AWS call of this process, the handlers' included, goes to moto.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    moto_file = state / runstate.MOTO_FILE if state is not None else None
    try:
        with moto_server(moto_file) as endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            try:
                server, info, made = start(port, values, saved[0] if saved else None)
            except OSError as exc:
                return _fail(f"cannot serve on port {port}: {exc.strerror or exc}")
            if state is not None and saved is None:
                runstate.save(state, made, url)
            return _serve(server, info, state)
    except MotoNotStarted as exc:  # its reason, if any, is on stderr above
        return _fail(str(exc))


def _serve(server: Any, info: dict[str, Any], state: Path | None) -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from gatekey_cli.console.command import serve_for_local_stack  # docs/console.md

    console = serve_for_local_stack(info["url"])
    run_file = None
    try:  # before the ready line: a Ctrl-C from then on is a clean stop
        run_file = runstate.write_run_file(server.server_address[1], info["url"])
        print(banner(info["url"], _signer(), state), flush=True)
        print(f"The admin console, for this run only:  {console.url}\n", flush=True)
        ready = {"ready": info["url"], "routes": info["routes"], "console": console.url}
        print(json.dumps(ready), flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        console.server_close()
        if run_file is not None:
            run_file.unlink(missing_ok=True)
    return 0


def schedule(function: str, port: int | None = None, run_dir: Path = runstate.RUN_DIR) -> int:
    """Run a scheduled function in the running stack: its answer on stdout; its error (type,
    message, trace), an unknown name (with the scheduled ones) or no stack, on stderr, exit 1."""
    if port is None:
        try:
            port = runstate.find_port(run_dir)
        except LookupError as exc:
            print(f"gatekey_local: {exc}", file=sys.stderr)
            return 1
    url = f"http://127.0.0.1:{port}/_local/schedules/{urllib.parse.quote(function, safe='')}"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            print(response.read().decode())
        return 0
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"message": text or f"HTTP {exc.code}"}
        if "errorType" in answer:
            trace = "".join(answer.get("stackTrace") or [])
            print(trace.rstrip(), file=sys.stderr)
            print(
                f"gatekey_local: {function} failed: {answer['errorType']}: "
                f"{answer.get('errorMessage', '')}",
                file=sys.stderr,
            )
        else:
            print(f"gatekey_local: {answer.get('message', text)}", file=sys.stderr)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"gatekey_local: cannot reach the local stack on port {port} ({reason}):"
            " is `make run` running there?",
            file=sys.stderr,
        )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatekey_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, help="default: GATEKEY_PORT, else 3000")
    commands = parser.add_subparsers(dest="command")
    run_schedule = commands.add_parser("schedule", help="run a scheduled function now")
    run_schedule.add_argument("function")
    args = parser.parse_args(argv)
    port = args.port
    if port is None and os.environ.get("GATEKEY_PORT"):
        text = os.environ["GATEKEY_PORT"]
        if not text.isdigit() or not 0 < int(text) < 65536:
            return _fail(f"GATEKEY_PORT={text}: expected a port number")
        port = int(text)
    if args.command == "schedule":
        return schedule(args.function, port)
    state = os.environ.get("GATEKEY_STATE")
    return run(
        port,
        os.environ.get("GATEKEY_PARAMETER_OVERRIDES", ""),
        Path(state).resolve() if state else None,
    )


if __name__ == "__main__":
    sys.exit(main())
