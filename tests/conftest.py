"""Shared fixtures: a fake AWS environment, moto resources built from template.yaml, a clock."""

from __future__ import annotations

import base64
import copy
import fnmatch
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from moto import mock_aws

from gatekey.access_tokens import issue_access_token
from gatekey.aws.kms import KmsSigner
from gatekey.aws.secrets import load_hasher
from gatekey.credentials import ClientSecret
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, ServiceToken, new_service_token
from gatekey.store import DynamoDBTokenStore
from gatekey_local.provision import generated_pepper, load_template, table_definition
from gatekey_local.servers import free_port
from gatekey_local.sigv4 import verify_sigv4

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"
TABLE_NAME = "gatekey-test"
PEPPER_NAME = "gatekey-test-pepper"
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z: a fixed "now" for tests that need one


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as a dict; intrinsic functions stay as {"Ref": ...} / {"Fn::...": ...}."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may reach real AWS, whatever the machine's own configuration says.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None, template: dict[str, Any]) -> Any:
    """A moto DynamoDB client with the table exactly as template.yaml declares it."""
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=TABLE_NAME, **table_definition(template))
    ttl = template["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=TABLE_NAME,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
    )
    return client


@pytest.fixture
def store(dynamodb: Any) -> DynamoDBTokenStore:
    return DynamoDBTokenStore(TABLE_NAME, audit_retention_days=400, client=dynamodb)


@pytest.fixture
def pepper_secret_arn(aws: None, template: dict[str, Any]) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    response = client.create_secret(Name=PEPPER_NAME, SecretString=generated_pepper(template))
    return str(response["ARN"])


@pytest.fixture
def hasher(pepper_secret_arn: str) -> Hasher:
    return load_hasher(pepper_secret_arn, boto3.client("secretsmanager", region_name=REGION))


@pytest.fixture
def unit_hasher() -> Hasher:
    """A hasher with a fixed pepper, for unit tests that need no AWS."""
    return Hasher(peppers={"p1": b"u" * 64}, current_key_id="p1")


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at every level, botocore's wire logs included."""
    caplog.set_level(logging.DEBUG)
    return caplog


EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, as API Gateway or the scheduler would send it."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@dataclass
class FakeLambdaContext:
    function_name: str = "gatekey-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:gatekey-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh, as a cold start would.

    Each handler file is named app.py, so each gets its own module name; set the environment
    and start moto before calling this, since handlers build their clients at import. Every AWS
    call the handler makes, at import or in `lambda_handler`, is checked against its role's
    policy in template.yaml when the test ends (`least_privilege`).
    """
    path = FUNCTIONS / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"gatekey_function_{function}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with acting_as(function):
        spec.loader.exec_module(module)
    handler = module.lambda_handler

    def lambda_handler(event: Any, context: Any) -> Any:
        with acting_as(function):
            return handler(event, context)

    module.lambda_handler = lambda_handler
    return module


# -- least privilege: each handler's AWS calls against its role's policy in template.yaml ------

# Moto does not enforce IAM, so a missing permission would pass every test and fail in AWS.
# Clients a handler creates (at import or while it runs) record the IAM actions of their calls.
_acting: list[str] = []
AWS_ACTIONS: list[tuple[str, str]] = []  # (function, "service:Action")
_session_client = boto3.session.Session.client


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    _acting.append(function)
    try:
        yield
    finally:
        _acting.pop()


def _recording_client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _session_client(self, *args, **kwargs)
    if _acting:
        function = _acting[-1]

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            prefix = model.service_model.signing_name
            parts = item_actions(params.get("TransactItems", []))
            for action in parts or [f"{prefix}:{model.name}"]:
                AWS_ACTIONS.append((function, action))

        client.meta.events.register("before-parameter-build.*.*", record)
    return client


boto3.session.Session.client = _recording_client  # type: ignore[method-assign]


def item_actions(transact_items: list[dict[str, Any]]) -> list[str]:
    """The IAM actions of a DynamoDB transaction: each part is authorized as the item operation
    it is (there is no dynamodb:TransactWriteItems permission)."""
    return [f"dynamodb:{op}Item" for part in transact_items for op in part]


def policy_actions(
    template: dict[str, Any], function: str, resource: Any | None = None
) -> set[str]:
    """Actions the template allows the function's role (both branches of an Fn::If), on
    `resource` only if given. Deny statements are left out: the tests that check the
    denials read them themselves (tests/unit/test_template_iam.py)."""
    logical_id = next(
        name
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
        and r["Properties"]["CodeUri"].rstrip("/") == f"functions/{function}"
    )
    documents: list[Any] = []
    for policy in template["Resources"][logical_id]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Ref" in policy:
            managed = template["Resources"][policy["Ref"]]["Properties"]["PolicyDocument"]
            documents.append(managed)
        elif isinstance(policy, dict):
            documents.append(policy)
    statements: list[Any] = []
    for document in documents:
        for statement in document.get("Statement", []):
            if "Fn::If" in statement:
                statements += [s for s in statement["Fn::If"][1:] if "Action" in s]
            else:
                statements.append(statement)
    allowed: set[str] = set()
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue  # a Deny narrows what an Allow grants; it grants nothing
        resources = statement.get("Resource")
        if resource is not None and resource not in (
            resources if isinstance(resources, list) else [resources]
        ):
            continue
        actions = statement["Action"]
        allowed |= {actions} if isinstance(actions, str) else set(actions)
    return allowed


@pytest.fixture(autouse=True)
def least_privilege(template: dict[str, Any]) -> Iterator[None]:
    start = len(AWS_ACTIONS)
    yield
    missing = {
        (function, action)
        for function, action in AWS_ACTIONS[start:]
        if not any(fnmatch.fnmatchcase(action, a) for a in policy_actions(template, function))
    }
    del AWS_ACTIONS[start:]
    assert not missing, f"template.yaml does not allow these calls: {sorted(missing)}"


class AwsCallCounter:
    """Counts AWS API calls (e.g. 'kms.Sign') made by every client created after it starts."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1


@pytest.fixture
def aws_calls(aws: None) -> Iterator[AwsCallCounter]:
    counter = AwsCallCounter()
    session = boto3._get_default_session()
    session.events.register("before-call.*.*", counter)
    yield counter
    session.events.unregister("before-call.*.*", counter)


# -- the authorizer's harness -------------------------------------------------------------

ISSUER = "https://auth.example.com"
ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1"
ADMIN = "arn:aws:iam::123456789012:user/admin"


class Unauthorized(Exception):
    """API Gateway's 401: the handler raised Exception("Unauthorized")."""


@dataclass
class Bot:
    token: ServiceToken
    secret: ClientSecret = field(repr=False)

    @property
    def client_id(self) -> str:
        return self.token.client_id


@dataclass
class AuthorizerHarness:
    handler: ModuleType
    store: DynamoDBTokenStore
    hasher: Hasher
    signer: KmsSigner
    clock: list[float]

    def bot(self, **fields: Any) -> Bot:
        token, secret = new_service_token(
            name=fields.pop("name", "ci-bot"), hasher=self.hasher, now=NOW, **fields
        )
        token = self.store.create(
            token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW)
        )
        return Bot(token, secret)

    def jwt(self, bot: Bot, *, lifetime: int = 3600, scopes: tuple[str, ...] = ()) -> str:
        return issue_access_token(
            bot.token,
            self.signer,
            issuer=ISSUER,
            audience="gatekey",
            lifetime=lifetime,
            scopes=scopes,
            now=int(self.clock[0]),
        ).access_token

    def call(
        self,
        shape: str = "rest_request",
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        path: str = "/items/42",
        token: str | None = None,
    ) -> dict[str, Any]:
        """Invoke the handler as API Gateway would; Unauthorized when it answers 401."""
        event = authorizer_event(shape, headers or {}, method=method, path=path, token=token)
        return self.invoke(event)

    def invoke(self, event: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self.handler.lambda_handler(event, FakeLambdaContext())
        except Exception as exc:
            if str(exc) == "Unauthorized":
                raise Unauthorized from None
            raise
        return response


def authorizer_event(
    shape: str, headers: dict[str, str], *, method: str, path: str, token: str | None = None
) -> dict[str, Any]:
    name = {
        "rest_request": "authorizer-rest-request.json",
        "rest_token": "authorizer-rest-token.json",
        "http": "authorizer-http-v2.json",
    }[shape]
    event = copy.deepcopy(load_event(name))
    arn = f"{ARN}/{method}{path}"
    if shape == "rest_token":
        event["methodArn"] = arn
        event["authorizationToken"] = token if token is not None else headers.get("Authorization")
        if event["authorizationToken"] is None:
            del event["authorizationToken"]
        return event
    base = {k: v for k, v in event["headers"].items() if not k.lower().startswith("gatekey-")}
    event["headers"] = {**base, **headers}
    if shape == "http":
        event["routeArn"] = arn
        event["headers"] = {k.lower(): v for k, v in event["headers"].items()}
    else:
        event["methodArn"] = arn
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def credential_headers(form: str, bot: Bot, jwt: str | None = None) -> dict[str, str]:
    client_id, secret = bot.client_id, bot.secret.reveal()
    if form == "gatekey_headers":
        return {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
    if form == "access_headers":
        return {"cf-access-client-id": client_id, "CF-ACCESS-CLIENT-SECRET": secret}
    if form == "access_json":
        document = {"cf-access-client-id": client_id, "cf-access-client-secret": secret}
        return {"Authorization": json.dumps(document)}
    if form == "basic":
        return {
            "Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        }
    assert form == "bearer"
    return {"Authorization": f"Bearer {jwt}"}


@pytest.fixture
def make_authorizer(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    hasher: Hasher,
    pepper_secret_arn: str,
    atomic_dynamodb_requests: None,
) -> Callable[..., AuthorizerHarness]:
    """Build the authorizer handler (a cold start) with environment overrides."""
    kms = boto3.client("kms", region_name=REGION)
    key_arn = kms.create_key(
        KeySpec="RSA_2048",
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": "gatekey-signing-key", "TagValue": "gatekey"}],
    )["KeyMetadata"]["Arn"]
    clock = [float(NOW + 60)]
    monkeypatch.setattr("time.time", lambda: clock[0])

    def build(**environment: str) -> AuthorizerHarness:
        for name, value in {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": pepper_secret_arn,
            "SIGNING_KEY_ID": key_arn,
            "ISSUER": ISSUER,
            "POWERTOOLS_SERVICE_NAME": "gatekey",
            "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
            **environment,
        }.items():
            monkeypatch.setenv(name, value)
        handler = load_handler("authorizer")
        store = DynamoDBTokenStore(TABLE_NAME, client=dynamodb)
        return AuthorizerHarness(handler, store, hasher, KmsSigner(key_arn, kms), clock)

    return build


@pytest.fixture
def authorizer(make_authorizer: Callable[..., AuthorizerHarness]) -> AuthorizerHarness:
    return make_authorizer()


# -- the admin API's harness -----------------------------------------------------------------

ADMIN_ARN = "arn:aws:iam::123456789012:user/platform-admin"


@dataclass
class AdminHarness:
    handler: ModuleType
    clock: list[float]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        raw_body: str | None = None,
        actor: str = ADMIN_ARN,
    ) -> tuple[int, Any]:
        """Call the admin handler as API Gateway would; (status, decoded JSON body or None)."""
        event = copy.deepcopy(load_event("admin-create-token.json"))
        event["httpMethod"] = method
        event["path"] = path
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = f"/v1{path}"
        event["requestContext"]["identity"]["userArn"] = actor
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = (
            {k: [v] for k, v in query.items()} if query else None
        )
        event["body"] = (
            raw_body if raw_body is not None else (None if body is None else json.dumps(body))
        )
        response = self.handler.lambda_handler(event, FakeLambdaContext())
        text = response.get("body") or ""
        return response["statusCode"], (json.loads(text) if text else None)


@pytest.fixture
def make_admin(
    monkeypatch: pytest.MonkeyPatch, dynamodb: Any, pepper_secret_arn: str
) -> Callable[..., AdminHarness]:
    clock = [float(NOW)]
    monkeypatch.setattr("time.time", lambda: clock[0])

    def build(**environment: str) -> AdminHarness:
        for name, value in {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": pepper_secret_arn,
            "SIGNING_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/unused-by-admin",
            "POWERTOOLS_SERVICE_NAME": "gatekey",
            **environment,
        }.items():
            monkeypatch.setenv(name, value)
        return AdminHarness(load_handler("admin"), clock)

    return build


@pytest.fixture
def admin(make_admin: Callable[..., AdminHarness]) -> AdminHarness:
    return make_admin()


class AdminGateway:
    """The admin API over real HTTP on 127.0.0.1, with AWS_IAM's SigV4 check in front, for
    tests of the CLI. (The local stack, `make run`, serves every route of the template.)"""

    def __init__(self, admin: AdminHarness, credentials: dict[str, str]) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = f"http://{self.headers['Host']}{self.path}"
                key = verify_sigv4(
                    method=self.command,
                    url=url,
                    headers=dict(self.headers.items()),
                    body=body,
                    credentials=credentials,
                )
                if key is None:
                    self._answer(403, {"message": "The request signature does not match"})
                    return
                split = urlsplit(self.path)
                query = dict(parse_qsl(split.query)) or None
                status, answer = gateway.admin.request(
                    self.command,
                    split.path,
                    query=query,
                    raw_body=body.decode() if body else None,
                    actor=f"arn:aws:iam::123456789012:user/{key}",
                )
                self._answer(status, answer)

            def _answer(self, status: int, answer: Any) -> None:
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *_: Any) -> None:
                pass

        self.admin = admin
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin_gateway(admin: AdminHarness) -> Iterator[AdminGateway]:
    # The credentials of the environment (moto replaces them with its own while it runs), as
    # the local stack accepts those of the environment it was started in.
    environ = os.environ
    gateway = AdminGateway(admin, {environ["AWS_ACCESS_KEY_ID"]: environ["AWS_SECRET_ACCESS_KEY"]})
    yield gateway
    gateway.close()


# -- the local stack (`make run`), for the end-to-end tests ----------------------------------

E2E_STATUS_TTL = 1  # StatusCacheTtlSeconds for these tests
E2E_AUTHORIZER_TTL = 2  # AuthorizerCacheTtlSeconds for these tests


@dataclass
class LocalStack:
    url: str
    process: subprocess.Popen[str]
    startup_seconds: float
    routes: list[str]


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/gatekey", "local")),
        "GATEKEY_PORT": str(port),
        "GATEKEY_PARAMETER_OVERRIDES": (
            f"StatusCacheTtlSeconds={E2E_STATUS_TTL} AuthorizerCacheTtlSeconds={E2E_AUTHORIZER_TTL}"
        ),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    environment.pop("AWS_SESSION_TOKEN", None)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekey_local"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    ready: dict[str, object] = {}
    for line in process.stdout:  # the banner, then one JSON line when serving
        if line.startswith('{"ready"'):
            ready = json.loads(line)
            break
    # Keep reading what the stack prints (its functions log to stdout), or its pipe fills up.
    output: list[str] = []
    drain = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    drain.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/.well-known/jwks.json", timeout=5).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the local stack did not answer within 60 s")
    local = LocalStack(url, process, time.monotonic() - started, list(ready.get("routes", [])))  # type: ignore[arg-type]
    yield local
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    drain.join(timeout=10)
    process.stdout.close()


@pytest.fixture
def atomic_dynamodb_requests(aws: None) -> Iterator[None]:
    """AWS executes each request atomically; moto, called from several threads, does not (its
    DynamoDB transactions copy the table while another thread writes to it). One lock around
    each request of any service (not around a read-modify-write sequence) restores what AWS
    promises and nothing more. (After `aws`: starting moto replaces the default session, and
    the hooks must be on the one the handlers' clients come from.)"""
    lock = threading.Lock()
    session = boto3._get_default_session()

    held = threading.local()

    def acquire(**_: Any) -> None:
        # Already held: this thread's last call ended in a hook that raised before any answer
        # (a test's injected failure), so neither after-call event came: keep holding it.
        if not getattr(held, "value", False):
            lock.acquire()
            held.value = True

    def release(**_: Any) -> None:
        # A Stubber may answer before `acquire` runs: release only what this thread holds.
        if getattr(held, "value", False):
            held.value = False
            lock.release()

    session.events.register("before-call", acquire)
    session.events.register("after-call", release)
    # A call that fails before any answer (a connection error) ends here, not in after-call.
    session.events.register("after-call-error", release)
    yield
    session.events.unregister("before-call", acquire)
    session.events.unregister("after-call", release)
    session.events.unregister("after-call-error", release)
