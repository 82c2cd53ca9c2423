"""The Custom::GatekeyServiceToken provider through its handler, against moto: CloudFormation's
requests from events/, each answered to a local HTTP server standing for the presigned
ResponseURL, which records every PUT. Create, Update (in place, renewal, replacement) and
Delete; retries of one request; a failure in the middle of each; and the secret, which goes
into the delivery secret and nowhere else (answers, logs, output)."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from gatekey.admin import Actor, TokenAdmin
from gatekey.aws.dynamodb import DynamoDBTokenStore
from gatekey.credentials import ClientSecret
from gatekey.durations import DAY
from gatekey.errors import NotFound
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, TokenStatus
from support.constants import ACCOUNT_ID, NOW, REGION, TABLE_NAME, UNUSED_KEY_ARN
from support.events import FakeLambdaContext, load_event, load_handler

STACK = load_event("service-token-provider-create.json")["StackId"]
SIGNATURE = "X-Amz-Signature=3f5a0c1e9b7d"  # of the made-up presigned URLs in events/


class ResponseUrl:
    """CloudFormation's side: a local server taking the answers PUT to a request's URL."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.refuse = 0  # answer the next PUTs with 500
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if server.refuse:
                    server.refuse -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                server.answers.append(json.loads(body))
                server.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, event: dict[str, Any]) -> str:
        # The presigned URL's path and query, on this server: what the provider must keep
        # out of its logs.
        original = event["ResponseURL"]
        return self.base + original[original.index("/", len("https://")) :]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Faults:
    """AWS calls made to fail (as if AWS were unreachable) while their names are listed:
    "secrets-manager.UpdateSecretVersionStage", or a call's n-th time with "...#n"."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.counts: dict[str, int] = {}

    def __call__(self, event_name: str, **_: Any) -> None:
        name = ".".join(event_name.split(".")[1:3])
        self.counts[name] = self.counts.get(name, 0) + 1
        if name in self.failing or f"{name}#{self.counts[name]}" in self.failing:
            raise EndpointConnectionError(endpoint_url="https://aws.invalid")


@dataclass
class Provider:
    handler: ModuleType
    server: ResponseUrl
    store: DynamoDBTokenStore
    secrets: Any
    delivery_secret: str
    clock: list[float]
    faults: Faults
    sent: list[dict[str, Any]] = field(default_factory=list)

    def event(self, name: str, physical_id: str | None = None, **properties: Any) -> dict[str, Any]:
        """events/service-token-provider-<name>.json, with moto's delivery secret (and the
        Client ID the Create answered), `properties` changed."""
        event = copy.deepcopy(load_event(f"service-token-provider-{name}.json"))
        for key in ("ResourceProperties", "OldResourceProperties"):
            if key in event and event[key]["DeliverySecretArn"].endswith("BotSecret-AbCdEf"):
                event[key]["DeliverySecretArn"] = self.delivery_secret
        event["ResourceProperties"] |= properties
        if physical_id is not None:
            event["PhysicalResourceId"] = physical_id
        return event

    def send(self, event: dict[str, Any], *, time_left_ms: int = 300_000) -> dict[str, Any]:
        """Invoke the handler as CloudFormation does; the answer the URL received."""
        event = dict(event, ResponseURL=self.server.url(event))
        self.sent.append(event)
        before = len(self.server.answers)
        self.handler.lambda_handler(event, _Context(time_left_ms=time_left_ms))
        assert len(self.server.answers) == before + 1, "not answered exactly once"
        answer = self.server.answers[-1]
        assert answer["RequestId"] == event["RequestId"]
        assert answer["StackId"] == event["StackId"]
        assert answer["LogicalResourceId"] == event["LogicalResourceId"]
        return answer

    def create(self) -> str:
        answer = self.send(self.event("create"))
        assert answer["Status"] == "SUCCESS", answer
        return str(answer["PhysicalResourceId"])

    def delivered(self, secret_arn: str | None = None) -> dict[str, str]:
        # What the consumer reads (moto's answer without a stage is not the current version).
        # The test's own read is not logged: botocore logs response bodies at DEBUG.
        logging.disable(logging.DEBUG)
        try:
            value = self.secrets.get_secret_value(
                SecretId=secret_arn or self.delivery_secret, VersionStage="AWSCURRENT"
            )
        finally:
            logging.disable(logging.NOTSET)
        delivered: dict[str, str] = json.loads(value["SecretString"])
        return delivered

    def tokens(self) -> list[str]:
        return [t.client_id for t in self.store.list(limit=100).items]


@dataclass
class _Context(FakeLambdaContext):
    time_left_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.time_left_ms


def make_secret(secrets: Any, name: str, *, tagged: bool = True) -> str:
    tags = [{"Key": "gatekey-delivery", "Value": "true"}] if tagged else []
    return str(secrets.create_secret(Name=name, SecretString="{}", Tags=tags)["ARN"])


@pytest.fixture
def response_url() -> Iterator[ResponseUrl]:
    server = ResponseUrl()
    yield server
    server.close()


@pytest.fixture
def make_provider(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    pepper_secret_arn: str,
    response_url: ResponseUrl,
) -> Iterator[Callable[..., Provider]]:
    clock = [float(NOW)]
    monkeypatch.setattr("time.time", lambda: clock[0])
    faults = Faults()
    session = boto3._get_default_session()
    session.events.register("before-call.*.*", faults)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    delivery_secret = make_secret(secrets, "bots-nightly-export-BotSecret")

    def build(**environment: str) -> Provider:
        for name, value in {
            "TABLE_NAME": TABLE_NAME,
            "PEPPER_SECRET_ARN": pepper_secret_arn,
            "SIGNING_KEY_ID": UNUSED_KEY_ARN,
            "POWERTOOLS_SERVICE_NAME": "gatekey",
            "SERVICE_TOKEN_STACK_PREFIXES": "ci-,bots-",
            **environment,
        }.items():
            monkeypatch.setenv(name, value)
        return Provider(
            load_handler("service_token_provider"),
            response_url,
            DynamoDBTokenStore(TABLE_NAME, client=dynamodb),
            secrets,
            delivery_secret,
            clock,
            faults,
        )

    yield build
    session.events.unregister("before-call.*.*", faults)
    # The handler quiets botocore's request log whatever the level; other tests read it.
    logging.getLogger("botocore.endpoint").setLevel(logging.NOTSET)


@pytest.fixture
def provider(make_provider: Callable[..., Provider]) -> Provider:
    return make_provider()


def authenticates(provider: Provider, hasher: Hasher, delivered: dict[str, str]) -> bool:
    token = provider.store.get(delivered["client_id"], consistent=True)
    try:
        token.authenticate(ClientSecret.parse(delivered["client_secret"]), hasher, NOW)
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


# -- Create ----------------------------------------------------------------------------------


def test_create_delivers_the_secret_and_answers_only_the_client_id_and_expiry(
    provider: Provider, hasher: Hasher
) -> None:
    answer = provider.send(provider.event("create"))
    assert answer["Status"] == "SUCCESS", answer
    client_id = answer["PhysicalResourceId"]
    assert answer["Data"] == {"ClientId": client_id, "ExpiresAt": "2028-01-15T08:00:00Z"}
    assert set(answer) == {
        "Status",
        "PhysicalResourceId",
        "StackId",
        "RequestId",
        "LogicalResourceId",
        "Data",
    }
    # CloudFormation's presigned URL is signed for an empty Content-Type.
    assert provider.server.headers[-1]["Content-Type"] == ""
    delivered = provider.delivered()
    assert set(delivered) == {"client_id", "client_secret"}  # as the automatic rotation writes it
    assert delivered["client_id"] == client_id
    assert authenticates(provider, hasher, delivered)
    token = provider.store.get(client_id)
    assert (token.name, token.owner) == ("nightly-export", "reports-team@example.com")
    assert (token.routes, token.scopes) == (("GET /reports/*",), ("reports:read",))
    assert token.rotation.delivery_secret_arn == provider.delivery_secret
    assert token.managed_by == STACK
    (created,) = provider.store.events(client_id).items
    assert (created.action, created.actor) == (AuditAction.CREATED, STACK)


def test_a_retried_create_makes_no_second_token_and_delivers_a_secret_that_works(
    provider: Provider, hasher: Hasher
) -> None:
    # GIVEN a Create carried out, whose invocation Lambda then retries (the same RequestId)
    event = provider.event("create")
    first = provider.send(event)
    first_secret = provider.delivered()
    # WHEN the same request comes again
    again = provider.send(event)
    # THEN it is the same token, with a new secret delivered (the first one may never have
    # arrived), and only that one works
    assert again["Status"] == "SUCCESS"
    assert again["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert provider.tokens() == [first["PhysicalResourceId"]]
    assert authenticates(provider, hasher, provider.delivered())
    assert not authenticates(provider, hasher, first_secret)


def test_a_create_whose_delivery_fails_answers_failed_and_leaves_no_token(
    provider: Provider,
) -> None:
    # GIVEN Secrets Manager failing once the token is made (the new secret cannot be made current)
    provider.faults.failing.add("secrets-manager.UpdateSecretVersionStage")
    event = provider.event("create")
    # WHEN CloudFormation creates the resource
    answer = provider.send(event)
    # THEN the answer says why, and the token it made is gone
    assert answer["Status"] == "FAILED"
    assert "cannot make the new secret current" in answer["Reason"]
    client_id = answer["PhysicalResourceId"]
    assert provider.tokens() == []
    with pytest.raises(NotFound):
        provider.store.get(client_id)
    actions = [e.action for e in provider.store.events(client_id).items]
    assert actions == [AuditAction.DELETED, AuditAction.CREATED]
    # A retry of the same request (Secrets Manager back) answers FAILED again: CloudFormation
    # took the first answer, and a token made now would be nobody's.
    provider.faults.failing.clear()
    assert provider.send(event)["Status"] == "FAILED"
    assert provider.tokens() == []
    # The rollback's Delete of what the Create answered finds nothing, and succeeds.
    delete = provider.event("delete", physical_id=client_id)
    assert provider.send(delete)["Status"] == "SUCCESS"


def test_a_create_whose_token_cannot_be_removed_says_so_and_names_it(provider: Provider) -> None:
    provider.faults.failing |= {
        "secrets-manager.PutSecretValue",
        "dynamodb.TransactWriteItems#2",  # the removal
    }
    answer = provider.send(provider.event("create"))
    assert answer["Status"] == "FAILED"
    client_id = answer["PhysicalResourceId"]
    assert f"gatekey delete {client_id}" in answer["Reason"]
    assert provider.tokens() == [client_id]  # docs/operations.md: an orphaned token


def test_a_delivery_secret_not_tagged_for_delivery_is_refused_before_any_token_is_made(
    provider: Provider,
) -> None:
    untagged = make_secret(provider.secrets, "bots-other", tagged=False)
    answer = provider.send(provider.event("create", DeliverySecretArn=untagged))
    assert answer["Status"] == "FAILED"
    assert "DeliverySecretArn" in answer["Reason"]
    assert "gatekey-delivery=true" in answer["Reason"]
    assert provider.tokens() == []
    assert not provider.store.events(answer["PhysicalResourceId"]).items


@pytest.mark.parametrize(
    ("stack", "why"),
    [
        ("arn:aws:cloudformation:us-east-1:123456789012:stack/web-app/1a2b", "prefixes"),
        ("arn:aws:cloudformation:us-east-1:210987654321:stack/bots-x/1a2b", "other accounts"),
    ],
)
def test_only_stacks_of_this_account_with_a_listed_prefix_may_create_tokens(
    provider: Provider, stack: str, why: str
) -> None:
    answer = provider.send(dict(provider.event("create"), StackId=stack))
    assert answer["Status"] == "FAILED"
    assert why in answer["Reason"]
    assert provider.tokens() == []


def test_with_no_prefix_listed_no_stack_may_create_tokens(
    make_provider: Callable[..., Provider],
) -> None:
    provider = make_provider(SERVICE_TOKEN_STACK_PREFIXES="")
    answer = provider.send(provider.event("create"))
    assert answer["Status"] == "FAILED"
    assert "ServiceTokenStackPrefixes" in answer["Reason"]
    assert provider.tokens() == []


@pytest.mark.parametrize(
    ("properties", "named"),
    [
        ({"Routes": ["GET reports"]}, "Routes"),
        ({"Duration": "a while"}, "Duration"),
        ({"MinDaysForRenewal": "-1"}, "MinDaysForRenewal"),
        ({"Rotation": "sometimes"}, "Rotation"),
        ({"OnDelete": "shred"}, "OnDelete"),
        ({"Name": ""}, "Name"),
        ({"Scope": ["read"]}, "Scope"),  # a typo of Scopes
        ({"DeliverySecretArn": "bot-secret"}, "DeliverySecretArn"),
    ],
)
def test_bad_properties_are_refused_naming_the_property_and_nothing_is_made(
    provider: Provider, properties: dict[str, Any], named: str
) -> None:
    answer = provider.send(provider.event("create", **properties))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith(f"{named}: ") or f"unknown: {named}" in answer["Reason"]
    assert provider.tokens() == []


def test_a_request_with_too_little_time_left_makes_nothing_and_answers_in_time(
    provider: Provider,
) -> None:
    answer = provider.send(provider.event("create"), time_left_ms=15_000)
    assert answer["Status"] == "FAILED"
    assert "out_of_time" in answer["Reason"]
    assert provider.tokens() == []


def test_a_cold_start_that_fails_is_answered_with_its_reason(
    make_provider: Callable[..., Provider],
) -> None:
    missing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:no-such-pepper-AbCdEf"
    provider = make_provider(PEPPER_SECRET_ARN=missing)
    answer = provider.send(provider.event("create"))
    assert answer["Status"] == "FAILED"
    assert "provider is unavailable" in answer["Reason"]


def test_an_answer_cloudformation_did_not_take_fails_the_invocation_for_lambda_to_retry(
    provider: Provider, hasher: Hasher
) -> None:
    event = provider.event("create")
    provider.server.refuse = 2  # both attempts
    with pytest.raises(Exception, match="cannot answer CloudFormation: HTTP 500"):
        provider.handler.lambda_handler(
            dict(event, ResponseURL=provider.server.url(event)), _Context()
        )
    # Lambda's retry carries the request out again, on the token it made.
    answer = provider.send(event)
    assert answer["Status"] == "SUCCESS"
    assert provider.tokens() == [answer["PhysicalResourceId"]]
    assert authenticates(provider, hasher, provider.delivered())


# -- Update ----------------------------------------------------------------------------------


def test_an_update_changes_the_token_in_place_and_keeps_its_secret(
    provider: Provider, hasher: Hasher
) -> None:
    client_id = provider.create()
    delivered = provider.delivered()
    answer = provider.send(provider.event("update", physical_id=client_id))
    assert answer["Status"] == "SUCCESS", answer
    assert answer["PhysicalResourceId"] == client_id  # in place: nothing to delete afterwards
    token = provider.store.get(client_id)
    assert (token.name, token.owner) == ("nightly-export-v2", "data-team@example.com")
    assert token.scopes == ("reports:read", "reports:list")
    assert token.expires_at == NOW + 365 * DAY  # not within 30 days of expiry: not refreshed
    assert provider.delivered() == delivered
    assert authenticates(provider, hasher, delivered)
    latest = provider.store.events(client_id).items[0]
    assert (latest.action, latest.actor) == (AuditAction.UPDATED, STACK)
    # The same request again changes nothing more.
    assert provider.send(provider.sent[-1])["Status"] == "SUCCESS"
    assert provider.store.events(client_id).items[0] == latest


def test_an_update_within_min_days_for_renewal_of_expiry_refreshes_the_token(
    provider: Provider, hasher: Hasher
) -> None:
    client_id = provider.create()
    event = provider.event("update", physical_id=client_id)
    # 31 days before expiry: nothing to renew
    provider.clock[0] = NOW + 334 * DAY
    assert provider.send(event)["Data"]["ExpiresAt"] == "2028-01-15T08:00:00Z"
    # 29 days before: renewed for the token's duration from now, same secret
    provider.clock[0] = NOW + 336 * DAY
    renewed = dict(event, RequestId="6b8d0f2a-4c6e-4a8c-9e0b-2d4f6a8c0e2a")
    answer = provider.send(renewed)
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["ExpiresAt"] == "2028-12-16T08:00:00Z"
    assert provider.store.get(client_id).expires_at == NOW + (336 + 365) * DAY
    assert provider.store.events(client_id).items[0].action is AuditAction.REFRESHED
    assert authenticates(provider, hasher, provider.delivered())


def test_a_new_duration_applies_from_the_update(provider: Provider) -> None:
    client_id = provider.create()
    answer = provider.send(provider.event("update", physical_id=client_id, Duration="2y"))
    assert answer["Data"]["ExpiresAt"] == "2029-01-14T08:00:00Z"
    assert str(provider.store.get(client_id).duration) == "17520h"


def test_an_update_failing_half_way_answers_failed_and_the_rollback_restores_the_token(
    provider: Provider,
) -> None:
    client_id = provider.create()
    # GIVEN the update's second write failing after its first (the new Duration applied)
    provider.faults.failing.add("dynamodb.TransactWriteItems#3")
    event = provider.event("update", physical_id=client_id, Duration="2y")
    answer = provider.send(event)
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == client_id  # a failed update is no replacement
    assert "dependency_unavailable" in answer["Reason"]
    # WHEN CloudFormation rolls back: an Update from the new properties to the old ones
    rollback = dict(
        event,
        RequestId="0e2a4c6e-8a0c-4e2a-b4c6-8e0a2c4e6a8c",
        ResourceProperties=event["OldResourceProperties"],
        OldResourceProperties=event["ResourceProperties"],
    )
    # THEN the token is as it was before the update
    assert provider.send(rollback)["Status"] == "SUCCESS"
    token = provider.store.get(client_id)
    assert (token.name, token.scopes) == ("nightly-export", ("reports:read",))
    assert (str(token.duration), token.expires_at) == ("8760h", NOW + 365 * DAY)


def test_a_new_delivery_secret_replaces_the_token_and_cloudformation_deletes_the_old_one(
    provider: Provider, hasher: Hasher
) -> None:
    old_id = provider.create()
    old_secret = provider.delivered()
    moved = make_secret(provider.secrets, "bots-nightly-export-BotSecretV2")
    event = provider.event("update-new-secret", physical_id=old_id, DeliverySecretArn=moved)
    answer = provider.send(event)
    assert answer["Status"] == "SUCCESS"
    new_id = answer["PhysicalResourceId"]
    assert new_id != old_id  # CloudFormation deletes old_id once the update completes
    assert answer["Data"]["ClientId"] == new_id
    assert provider.delivered(moved)["client_id"] == new_id
    assert authenticates(provider, hasher, provider.delivered(moved))
    assert authenticates(provider, hasher, old_secret)  # the old token works until its Delete
    # A retry of the update makes no third token.
    assert provider.send(event)["PhysicalResourceId"] == new_id
    assert sorted(provider.tokens()) == sorted([old_id, new_id])
    # The clean-up Delete of the old physical id revokes it.
    assert provider.send(provider.event("delete", physical_id=old_id))["Status"] == "SUCCESS"
    assert provider.store.get(old_id).status is TokenStatus.REVOKED
    assert provider.store.get(new_id).status is TokenStatus.ACTIVE


def test_a_replacement_whose_delivery_fails_leaves_the_old_token_and_no_new_one(
    provider: Provider, hasher: Hasher
) -> None:
    old_id = provider.create()
    old_secret = provider.delivered()
    moved = make_secret(provider.secrets, "bots-nightly-export-BotSecretV2")
    provider.faults.failing.add("secrets-manager.PutSecretValue")
    event = provider.event("update-new-secret", physical_id=old_id, DeliverySecretArn=moved)
    answer = provider.send(event)
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == old_id
    assert provider.tokens() == [old_id]
    assert authenticates(provider, hasher, old_secret)


def test_the_rollback_of_a_failed_replacement_keeps_the_old_token_in_place(
    provider: Provider, hasher: Hasher
) -> None:
    # GIVEN a move to a new delivery secret that failed
    old_id = provider.create()
    old_secret = provider.delivered()
    moved = make_secret(provider.secrets, "bots-nightly-export-BotSecretV2")
    provider.faults.failing.add("secrets-manager.PutSecretValue")
    event = provider.event("update-new-secret", physical_id=old_id, DeliverySecretArn=moved)
    assert provider.send(event)["Status"] == "FAILED"
    provider.faults.failing.clear()
    # WHEN CloudFormation rolls back: the old secret's ARN back, on the same physical id
    rollback = dict(
        event,
        RequestId="4d6f8a0c-2e4a-4c6e-8a0c-2e4a6c8e0a2c",
        ResourceProperties=event["OldResourceProperties"],
        OldResourceProperties=event["ResourceProperties"],
    )
    answer = provider.send(rollback)
    # THEN nothing is replaced: the token and its secret stay as they were
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", old_id)
    assert provider.tokens() == [old_id]
    assert provider.delivered() == old_secret
    assert authenticates(provider, hasher, old_secret)


def test_a_token_revoked_outside_the_stack_is_replaced_at_the_next_update(
    provider: Provider, hasher: Hasher
) -> None:
    client_id = provider.create()
    admin = TokenAdmin(store=provider.store, hasher=hasher, clock=lambda: NOW)
    admin.revoke(Actor(f"arn:aws:iam::{ACCOUNT_ID}:user/platform-admin"), client_id)
    answer = provider.send(provider.event("update", physical_id=client_id))
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] != client_id
    assert authenticates(provider, hasher, provider.delivered())


def test_an_update_of_a_token_another_stack_manages_is_refused(provider: Provider) -> None:
    client_id = provider.create()
    other = "arn:aws:cloudformation:us-east-1:123456789012:stack/bots-other/9f8e"
    answer = provider.send(dict(provider.event("update", physical_id=client_id), StackId=other))
    assert answer["Status"] == "FAILED"
    assert "not this stack's" in answer["Reason"]
    assert provider.store.get(client_id).name == "nightly-export"


# -- Delete ----------------------------------------------------------------------------------


def test_delete_revokes_the_token_and_a_retry_answers_the_same(provider: Provider) -> None:
    client_id = provider.create()
    event = provider.event("delete", physical_id=client_id)
    first = provider.send(event)
    assert first["Status"] == "SUCCESS"
    assert provider.send(event) == first  # retried: revoked already, the same answer
    token = provider.store.get(client_id)
    assert token.status is TokenStatus.REVOKED
    revoked = [e for e in provider.store.events(client_id).items if e.action is AuditAction.REVOKED]
    assert [e.actor for e in revoked] == [STACK]


def test_delete_with_on_delete_delete_removes_the_token(provider: Provider) -> None:
    answer = provider.send(provider.event("create", OnDelete="delete"))
    client_id = answer["PhysicalResourceId"]
    event = provider.event("delete", physical_id=client_id, OnDelete="delete")
    assert provider.send(event)["Status"] == "SUCCESS"
    assert provider.tokens() == []
    assert provider.send(event)["Status"] == "SUCCESS"  # retried: nothing left to remove


def test_a_delete_failing_answers_failed_and_its_retry_completes(provider: Provider) -> None:
    client_id = provider.create()
    provider.faults.failing.add("dynamodb.TransactWriteItems")
    event = provider.event("delete", physical_id=client_id)
    answer = provider.send(event)
    assert answer["Status"] == "FAILED"
    assert "dependency_unavailable" in answer["Reason"]
    assert provider.store.get(client_id).status is TokenStatus.ACTIVE
    provider.faults.failing.clear()
    assert provider.send(event)["Status"] == "SUCCESS"
    assert provider.store.get(client_id).status is TokenStatus.REVOKED


def test_a_delete_never_blocks_a_stack(provider: Provider) -> None:
    client_id = provider.create()
    other = "arn:aws:cloudformation:us-east-1:123456789012:stack/web-app/9f8e"
    # Another stack's delete (even one no prefix allows) leaves the token alone, and succeeds.
    foreign = dict(provider.event("delete", physical_id=client_id), StackId=other)
    assert provider.send(foreign)["Status"] == "SUCCESS"
    assert provider.store.get(client_id).status is TokenStatus.ACTIVE
    # A physical id that is no Client ID (a Create refused before it made one) succeeds too.
    assert provider.send(provider.event("delete", physical_id="nothing-made"))["Status"] == (
        "SUCCESS"
    )


# -- the secret goes nowhere else ----------------------------------------------------------------


def test_no_secret_or_response_url_reaches_an_answer_a_log_line_or_the_output(
    make_provider: Callable[..., Provider],
    captured_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the most a deployment may log (Powertools asked to log every event, too) and
    # every kind of request, retries and failures among them
    provider = make_provider(POWERTOOLS_LOGGER_LOG_EVENT="true", POWERTOOLS_LOG_LEVEL="DEBUG")
    client_id = provider.create()
    secrets = [provider.delivered()["client_secret"]]
    provider.send(provider.sent[-1])  # retried: a new secret
    secrets.append(provider.delivered()["client_secret"])
    moved = make_secret(provider.secrets, "bots-nightly-export-BotSecretV2")
    replaced = provider.send(
        provider.event("update-new-secret", physical_id=client_id, DeliverySecretArn=moved)
    )
    secrets.append(provider.delivered(moved)["client_secret"])
    provider.faults.failing.add("secrets-manager.UpdateSecretVersionStage")
    failed = provider.event("create")
    failed["RequestId"] = "1a3c5e7b-9d1f-4a3c-8e7b-9d1f3a5c7e9b"
    provider.send(failed)
    provider.faults.failing.clear()
    provider.send(provider.event("delete", physical_id=replaced["PhysicalResourceId"]))
    # THEN no secret appears in what CloudFormation received, nor in any log or output line
    output = capsys.readouterr()
    records = [{k: str(v) for k, v in r.__dict__.items()} for r in captured_logs.records]
    haystack = json.dumps(
        [provider.server.answers, output.out, output.err, captured_logs.text, records]
    )
    assert captured_logs.records  # the logs were captured
    for secret in secrets:
        assert secret.startswith("gks_")
        assert secret not in haystack
    assert "gks_" not in haystack
    # nor the presigned URL, which would let its holder answer for the stack
    assert SIGNATURE not in json.dumps([output.out, output.err, captured_logs.text, records])
