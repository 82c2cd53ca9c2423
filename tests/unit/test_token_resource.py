"""The Custom::GatekeyServiceToken provider's decisions on the in-memory store: its
properties as CloudFormation passes them, which stacks may use it, what it answers. The
handler, moto and CloudFormation's events: tests/integration/test_service_token_provider.py."""

from __future__ import annotations

from typing import Any

import pytest

from gatekey.admin import TokenAdmin
from gatekey.aws.cfn_response import send_response
from gatekey.durations import DAY, Duration
from gatekey.errors import ConfigurationError, ValidationError
from gatekey.hashing import Hasher
from gatekey.model import RotationMode
from gatekey.store import InMemoryTokenStore
from gatekey.token_resource import (
    Answer,
    OnDelete,
    Request,
    ServiceTokenResource,
    Stack,
    StackPolicy,
    TokenProperties,
    respond,
)
from support.constants import ACCOUNT_ID, NOW
from support.events import load_event
from support.lifecycle import FakeDelivery

STACK = f"arn:aws:cloudformation:us-east-1:{ACCOUNT_ID}:stack/bots-nightly/5b1f0e10"


def properties(**changed: Any) -> dict[str, Any]:
    raw = dict(load_event("service-token-provider-create.json")["ResourceProperties"])
    return raw | changed


def test_properties_arrive_as_strings_and_are_read_with_defaults() -> None:
    parsed = TokenProperties.parse(properties())
    assert parsed.duration == Duration(8760)
    assert parsed.min_days_for_renewal == 30
    assert parsed.rotation is RotationMode.AUTO
    assert parsed.on_delete is OnDelete.REVOKE
    minimal = TokenProperties.parse(
        {"Name": "bot", "DeliverySecretArn": parsed.delivery_secret_arn}
    )
    assert (minimal.routes, minimal.scopes, minimal.min_days_for_renewal) == (("*",), (), 0)
    assert minimal.rotation_policy.delivery_secret_arn == parsed.delivery_secret_arn
    remind = TokenProperties.parse(properties(Rotation="remind"))
    assert remind.rotation_policy.delivery_secret_arn is None  # delivered once, at creation


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"DeliverySecretArn": None}, "DeliverySecretArn: is required"),
        ({"Routes": "GET /x"}, "Routes: must be a list"),
        ({"Scopes": ["a b"]}, "Scopes: each scope"),
        ({"MinDaysForRenewal": "3651"}, "MinDaysForRenewal: must be a whole number"),
        ({"MinDaysForRenewal": True}, "MinDaysForRenewal: must be a whole number"),
        ({"Owner": "a\u202eb"}, "Owner: must be printable"),
        ({"Duration": "0h"}, "Duration: "),
    ],
)
def test_a_bad_property_is_named_as_the_template_spells_it(
    changed: dict[str, Any], message: str
) -> None:
    raw = {k: v for k, v in properties(**changed).items() if v is not None}
    with pytest.raises(ValidationError) as raised:
        TokenProperties.parse(raw)
    assert str(raised.value).startswith(message)


def test_a_stack_is_read_from_its_arn_and_checked_against_account_and_prefixes() -> None:
    stack = Stack.of(STACK)
    assert (stack.account, stack.name) == (ACCOUNT_ID, "bots-nightly")
    StackPolicy(ACCOUNT_ID, ("ci-", "bots-")).check(stack)
    for policy in (StackPolicy(ACCOUNT_ID, ()), StackPolicy(ACCOUNT_ID, ("bot-n",))):
        with pytest.raises(ValidationError, match="ServiceTokenStackPrefixes"):
            policy.check(Stack.of(STACK.replace("bots-nightly", "web")))
    with pytest.raises(ValidationError, match="other accounts"):
        StackPolicy("210987654321", ("bots-",)).check(stack)
    for arn in ("arn:aws:s3:::bucket", "stack/bots-x/1", "arn:aws:cloudformation:r:1:stack/"):
        with pytest.raises(ValidationError, match="StackId"):
            Stack.of(arn)


def test_the_client_id_a_request_creates_is_the_same_for_each_of_its_attempts() -> None:
    event = load_event("service-token-provider-create.json")
    first, again = Request.of(event), Request.of(dict(event))
    assert first.own_client_id == again.own_client_id
    other = Request.of(dict(event, RequestId="another"))
    assert other.own_client_id != first.own_client_id


def test_an_answer_carries_no_secret_and_a_bounded_reason() -> None:
    event = load_event("service-token-provider-create.json")
    body = Answer("FAILED", "gk_x", "why " * 1000).body(event)
    assert len(body["Reason"]) == 1000
    assert "Data" not in body
    assert set(body) == {"Status", "PhysicalResourceId", "StackId", "RequestId",
                         "LogicalResourceId", "Reason"}  # fmt: skip


def test_a_change_to_remind_with_a_short_duration_is_written_in_an_order_each_step_allows(
    unit_hasher: Hasher, fake_delivery: FakeDelivery
) -> None:
    # `auto` needs a duration longer than the first reminder (30 days): going to `remind`
    # and 10 days at once is valid only if the rotation changes before the duration.
    store = InMemoryTokenStore()
    admin = TokenAdmin(store=store, hasher=unit_hasher, clock=lambda: NOW)
    arn = fake_delivery.create("bots-nightly-BotSecret")
    resource = ServiceTokenResource(
        admin=admin,
        delivery=fake_delivery,
        policy=StackPolicy(ACCOUNT_ID, ("bots-",)),
        clock=lambda: NOW,
    )
    event = load_event("service-token-provider-create.json")
    event = dict(event, StackId=STACK, ResourceProperties=properties(DeliverySecretArn=arn))
    created = resource.handle(Request.of(event), lambda: 300.0)
    assert created.status == "SUCCESS", created
    update = dict(
        event,
        RequestType="Update",
        RequestId="u1",
        PhysicalResourceId=created.physical_id,
        OldResourceProperties=event["ResourceProperties"],
        ResourceProperties=properties(DeliverySecretArn=arn, Rotation="remind", Duration="10d"),
    )
    answer = resource.handle(Request.of(update), lambda: 300.0)
    assert answer.status == "SUCCESS", answer
    token = store.get(created.physical_id)
    assert (token.rotation.mode, token.expires_at) == (RotationMode.REMIND, NOW + 10 * DAY)
    # and back: the duration first, then `auto`
    back = dict(
        update,
        RequestId="u2",
        OldResourceProperties=update["ResourceProperties"],
        ResourceProperties=event["ResourceProperties"],
    )
    assert resource.handle(Request.of(back), lambda: 300.0).status == "SUCCESS"
    assert store.get(created.physical_id).rotation.mode is RotationMode.AUTO


def _respond(event: dict[str, Any], resource: Any) -> tuple[Answer | None, list[Any]]:
    sent: list[Any] = []
    answer = respond(
        event,
        resource=resource,
        send=lambda url, body: sent.append((url, body)),
        time_left=lambda: 60.0,
    )
    return answer, sent


def test_every_request_is_answered_even_when_the_provider_fails() -> None:
    event = load_event("service-token-provider-update.json")

    def unavailable() -> ServiceTokenResource:
        raise ConfigurationError("environment variable TABLE_NAME is required")

    def bug() -> ServiceTokenResource:
        raise KeyError("gks_" + "x" * 49)  # a bug whose message might hold anything

    answer, sent = _respond(event, unavailable)
    assert answer is not None
    assert (answer.status, answer.physical_id) == ("FAILED", event["PhysicalResourceId"])
    assert "TABLE_NAME" in answer.reason
    answer, sent = _respond(event, bug)
    assert answer is not None
    assert answer.reason.startswith("Gatekey's provider failed (KeyError)")
    assert "gks_" not in str(sent)
    assert [url for url, _ in sent] == [event["ResponseURL"]]


def test_a_malformed_request_is_answered_and_one_without_a_url_cannot_be() -> None:
    event = load_event("service-token-provider-create.json")
    answer, sent = _respond(dict(event, StackId="not-a-stack"), lambda: None)
    assert answer is not None
    assert answer.status == "FAILED"
    assert answer.physical_id == f"invalid-request-{event['RequestId']}"
    assert sent[0][1]["Reason"].startswith("StackId: ")
    no_url = {k: v for k, v in event.items() if k != "ResponseURL"}
    assert _respond(no_url, lambda: None) == (None, [])


def test_an_answer_goes_only_to_an_https_url() -> None:
    for url in ("file:///etc/passwd", "http://169.254.169.254/latest", "ftp://x/y"):
        with pytest.raises(ValidationError, match="ResponseURL"):
            send_response(url, {"Status": "SUCCESS"})
