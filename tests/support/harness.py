"""The authorizer and the admin API as API Gateway calls them, and the admin API over HTTP."""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from gatekey.access_tokens import issue_access_token
from gatekey.authorizer import Authorizer, AuthorizerSettings
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.aws.kms import KmsSigner
from gatekey.config import Config
from gatekey.credentials import ClientSecret
from gatekey.durations import Duration
from gatekey.errors import GatekeyError, MissingCredentials
from gatekey.hashing import Hasher
from gatekey.keyring import PUBLIC_KEY_REFETCH_INTERVAL, PUBLIC_KEY_TTL, PublicKeyCache
from gatekey.model import AuditAction, AuditEvent, ServiceToken, TokenStatus, new_service_token
from gatekey.signing import LocalKeySigner, PublicKey, Signer
from gatekey.store import InMemoryTokenStore, TokenStore
from gatekey.wiring import dpop_proofs
from gatekey_local.policy import policy_allows
from gatekey_local.sigv4 import verify_sigv4
from support.constants import ACCOUNT_ID, ADMIN, ADMIN_ARN, ARN, ISSUER, NOW, UNUSED_KEY_ARN
from support.events import FakeLambdaContext, load_event

# -- the authorizer's harness -------------------------------------------------------------


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
        return stored_bot(self.store, self.hasher, **fields)

    def jwt(self, bot: Bot, *, lifetime: int = 3600, scopes: tuple[str, ...] = ()) -> str:
        return access_token(bot, self.signer, int(self.clock[0]), lifetime=lifetime, scopes=scopes)

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


def stored_bot(store: TokenStore, hasher: Hasher, **fields: Any) -> Bot:
    """A service token created at NOW (one year, every route, unless `fields` say otherwise)."""
    token, secret = new_service_token(
        name=fields.pop("name", "ci-bot"), hasher=hasher, now=NOW, **fields
    )
    token = store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, ADMIN, NOW))
    return Bot(token, secret)


def access_token(
    bot: Bot, signer: Signer, now: int, *, lifetime: int = 3600, scopes: tuple[str, ...] = ()
) -> str:
    """An access token for `bot`'s current secret, as the token endpoint issues it."""
    return issue_access_token(
        bot.token,
        signer,
        issuer=ISSUER,
        audience="gatekey",
        lifetime=lifetime,
        scopes=scopes,
        now=now,
    ).access_token


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
    return presented_headers(form, bot.client_id, bot.secret.reveal(), jwt)


def presented_headers(
    form: str, client_id: str, secret: str, jwt: str | None = None
) -> dict[str, str]:
    """The headers of a credential form, for any Client ID and Secret, well-formed or not."""
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


# -- the authorizer's decision without AWS -------------------------------------------------


@cache
def local_signer() -> LocalKeySigner:
    """One RSA-2048 key (KMS's key spec in the template) for the whole run: generating one
    takes a tenth of a second."""
    return LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))


class ObservedStore(InMemoryTokenStore):
    """The in-memory store, recording each read of a token (whether consistent) and each
    last-seen write, and able to fail either as an unreachable DynamoDB would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, bool]] = []  # (client_id, consistent)
        self.last_seen_writes: list[tuple[str, int, int]] = []  # (client_id, now, interval)
        self.read_failure: GatekeyError | None = None
        self.write_failure: GatekeyError | None = None

    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken:
        self.reads.append((client_id, consistent))
        if self.read_failure is not None:
            raise self.read_failure
        return super().get(client_id, consistent=consistent)

    def record_last_seen(self, client_id: str, now: int, min_interval: int) -> bool:
        self.last_seen_writes.append((client_id, now, min_interval))
        if self.write_failure is not None:
            raise self.write_failure
        return super().record_last_seen(client_id, now, min_interval)


@dataclass
class LocalAuthorizer:
    """gatekey.authorizer.Authorizer as the authorizer function builds it, on the in-memory
    store, a fixed pepper and a signing key held in memory, with the function's answers
    (MissingCredentials and strict mode's denials are API Gateway's 401). Its settings come
    from the function's environment variables, read by Config as the function reads them."""

    authorizer: Authorizer
    store: ObservedStore
    hasher: Hasher
    signer: LocalKeySigner
    clock: list[float]
    keys: dict[str, PublicKey]  # the published verification keys, by kid
    last_seen_failures: list[GatekeyError]  # what the function would count

    def bot(self, **fields: Any) -> Bot:
        return stored_bot(self.store, self.hasher, **fields)

    def jwt(self, bot: Bot, *, lifetime: int = 3600, scopes: tuple[str, ...] = ()) -> str:
        return access_token(bot, self.signer, int(self.clock[0]), lifetime=lifetime, scopes=scopes)

    def lambda_handler(self, event: Any, _: Any) -> dict[str, Any]:
        """The function's answer (functions/authorizer/app.py), without its telemetry: a 401
        is the exception whose message API Gateway reads."""
        try:
            return self.invoke(event)
        except Unauthorized:
            raise Exception("Unauthorized") from None

    def call(
        self,
        shape: str = "rest_request",
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        path: str = "/items/42",
        token: str | None = None,
    ) -> dict[str, Any]:
        """Authorize as API Gateway would call the function; Unauthorized when it answers 401."""
        event = authorizer_event(shape, headers or {}, method=method, path=path, token=token)
        return self.invoke(event)

    def invoke(self, event: Any) -> dict[str, Any]:
        """The answer to `event`; Unauthorized for MissingCredentials and strict mode's
        denials, as the function answers them. Any other error propagates (a 500)."""
        try:
            outcome = self.authorizer.authorize(event)
        except MissingCredentials:
            raise Unauthorized from None
        if outcome.unauthorized:
            raise Unauthorized
        return outcome.response

    def outcome(self, headers: dict[str, str], **kwargs: Any) -> str:
        """'allowed', the reason of a denial, or 'unauthorized' (401), as decided for
        GET /items/42 (a REST REQUEST authorizer unless `shape` says otherwise)."""
        event = authorizer_event(
            kwargs.pop("shape", "rest_request"), headers, method="GET", path="/items/42", **kwargs
        )
        try:
            result = self.authorizer.authorize(event)
        except MissingCredentials:
            return "unauthorized"
        return "allowed" if result.allowed else result.reason


def local_authorizer(hasher: Hasher, environment: Mapping[str, str]) -> LocalAuthorizer:
    """A cold start of the authorizer without AWS, configured by `environment` (the function's
    variables: ACCEPT_BASIC, STRICT_MODE, ...), its clock at NOW + 60 as the moto tests' is."""
    config = Config.from_env(
        {
            "TABLE_NAME": "unused-here",
            "PEPPER_SECRET_ARN": "unused-here",
            "SIGNING_KEY_ID": UNUSED_KEY_ARN,
            "ISSUER": ISSUER,
            **environment,
        }
    )
    clock = [float(NOW + 60)]
    signer = local_signer()
    keys = {signer.public_key.kid: signer.public_key}
    store = ObservedStore()
    failures: list[GatekeyError] = []

    def now() -> float:
        return clock[0]

    authorizer = Authorizer(
        store=store,
        hasher=hasher,
        public_keys=PublicKeyCache(
            lambda: dict(keys),
            ttl=PUBLIC_KEY_TTL,
            refetch_interval=PUBLIC_KEY_REFETCH_INTERVAL,
            clock=now,
        ),
        settings=AuthorizerSettings.from_config(config),  # as the function's
        clock=now,
        last_seen_failed=failures.append,
        proofs=dpop_proofs(config, hasher, required_nonce=False),
    )
    return LocalAuthorizer(authorizer, store, hasher, signer, clock, keys, failures)


# -- the admin API's harness -----------------------------------------------------------------


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
                    actor=f"arn:aws:iam::{ACCOUNT_ID}:user/{key}",
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


# -- what the authorizer's tests on moto and on the in-memory store share ----------------------

AnyAuthorizer = AuthorizerHarness | LocalAuthorizer


def change(authorizer: AnyAuthorizer, bot: Bot, **changes: Any) -> None:
    """Change the bot's token in the store, as an admin's update does."""
    current = authorizer.store.get(bot.client_id, consistent=True)
    authorizer.store.update(
        replace(current, updated_at=NOW, **changes),
        AuditEvent(bot.client_id, AuditAction.UPDATED, ADMIN, NOW),
    )


def bad_credentials(authorizer: AnyAuthorizer) -> dict[str, dict[str, str]]:
    """Headers of each kind of credential the authorizer must refuse, by name (`expired` once
    the clock is past NOW + 3600)."""
    good = authorizer.bot()
    revoked, disabled = authorizer.bot(), authorizer.bot()
    change(authorizer, revoked, status=TokenStatus.REVOKED)
    change(authorizer, disabled, enabled=False)
    expired = authorizer.bot(duration=Duration(1))  # expires at NOW + 3600
    unknown, unknown_secret = new_service_token(name="ghost", hasher=authorizer.hasher, now=NOW)
    return {
        "wrong secret": credential_headers(
            "gatekey_headers", Bot(good.token, ClientSecret.generate())
        ),
        "revoked": credential_headers("gatekey_headers", revoked),
        "disabled": credential_headers("gatekey_headers", disabled),
        "expired": credential_headers("gatekey_headers", expired),
        "unknown": credential_headers("gatekey_headers", Bot(unknown, unknown_secret)),
        "bad checksum": {
            "Gatekey-Client-Id": good.client_id,
            "Gatekey-Client-Secret": good.secret.reveal()[:-1]
            + ("A" if good.secret.reveal()[-1] != "A" else "B"),
        },
        "id only": {"Gatekey-Client-Id": good.client_id},
    }


def assert_not_allowed(authorizer: AnyAuthorizer, event: Any) -> None:
    """The event gets a 401, a simple refusal, or a policy that allows no method on /items/42
    and carries no context."""
    try:
        response = authorizer.invoke(event)
    except Unauthorized:
        return
    if "isAuthorized" in response:
        assert response["isAuthorized"] is False
        return
    for method in ("GET", "POST", "DELETE"):
        assert not policy_allows(response["policyDocument"], f"{ARN}/{method}/items/42")
    assert "context" not in response
