"""The fake AWS the tests run against: moto's resources as template.yaml declares them, the
least-privilege recording of every handler's calls, call counters, and moto's missing atomicity."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.loaders
import botocore.session

from gatekey_local.provision import table_definition
from support.constants import REGION, TABLE_NAME

# No test may reach real AWS, whatever the machine's own configuration says.
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


# Moto gives every test a new default session, and each handler's cold start makes its own: each
# would parse botocore's service models again (most of a moto test's setup). One cache of parsed
# models for every session in the run; botocore already shares it between a session's clients.
_PARSED_MODELS: dict[Any, Any] = {}
_create_loader = botocore.loaders.create_loader


def _sharing_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    loader = _create_loader(search_path_string)
    loader._cache = _PARSED_MODELS  # type: ignore[attr-defined]
    return loader


botocore.session.create_loader = _sharing_loader


def create_table(client: Any, template: dict[str, Any]) -> None:
    """The table exactly as template.yaml declares it, TTL included."""
    client.create_table(TableName=TABLE_NAME, **table_definition(template))
    ttl = template["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=TABLE_NAME,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
    )


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
            if prefix == "apigateway":
                # API Gateway's management calls are authorized by HTTP method (and path).
                parts = [f"apigateway:{model.http['method']}"]
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


class AwsCallCounter:
    """Counts AWS API calls (e.g. 'kms.Sign') made by every client created after it starts."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        service, operation = event_name.split(".", 2)[1:]
        self.calls[f"{service}.{operation}"] += 1


@contextmanager
def atomic_requests(session: boto3.session.Session) -> Iterator[None]:
    """AWS executes each request atomically; moto, called from several threads, does not (its
    DynamoDB transactions copy the table while another thread writes to it). One lock around
    each request of any service (not around a read-modify-write sequence) restores what AWS
    promises and nothing more. (`session` is moto's default one: the handlers' clients come
    from it.)"""
    lock = threading.Lock()
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
    try:
        yield
    finally:
        session.events.unregister("before-call", acquire)
        session.events.unregister("after-call", release)
        session.events.unregister("after-call-error", release)
