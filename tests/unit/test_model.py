from dataclasses import replace

import pytest

from gatekey.durations import Duration
from gatekey.errors import ValidationError
from gatekey.hashing import Hasher
from gatekey.model import RotationMode, RotationPolicy, TokenStatus, new_service_token
from support.constants import DELIVERY, NOW


def test_new_token_expires_after_its_duration_and_keeps_only_a_hash(unit_hasher: Hasher) -> None:
    token, secret = new_service_token(name="ci-bot", hasher=unit_hasher, now=NOW)
    assert token.client_id.startswith("gk_")
    assert token.expires_at == NOW + 8760 * 3600
    assert token.status is TokenStatus.ACTIVE
    assert token.enabled
    assert token.routes == ("*",)
    assert token.scopes == ()
    assert token.version == 1
    assert token.client_secret_version == 1
    assert unit_hasher.verify(secret, token.secret_hash)
    assert secret.reveal() not in repr(token)


def test_forever_token_never_expires(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, duration=Duration(None))
    assert token.expires_at is None
    assert not token.is_expired(NOW + 100 * 365 * 86400)


def test_token_is_expired_from_its_expiry_second_on(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, duration=Duration(1))
    assert not token.is_expired(NOW + 3599)
    assert token.is_expired(NOW + 3600)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": " padded"}, "name"),
        ({"name": 7}, "name"),
        ({"owner": "a\nb"}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "ops@example.com\u202egro.evil"}, "owner"),  # a bidi override
        ({"owner": "ops\x85team"}, "owner"),  # a C1 control
        ({"owner": "ops\u200bteam"}, "owner"),  # zero-width
        ({"owner": "x" * 255}, "owner"),
        ({"name": "bot\u2066x"}, "name"),  # a bidi isolate
        ({"name": "ci-bot\ufe0f"}, "name"),  # a variation selector
        ({"name": "ci\u3164bot"}, "name"),  # a Hangul filler
        ({"owner": "ops\u034f"}, "owner"),  # the combining grapheme joiner
        ({"owner": "ops\U000e0100"}, "owner"),
        ({"routes": ()}, "routes"),
        ({"routes": ("GET items",)}, "routes"),
        ({"routes": ("FETCH /items",)}, "routes"),
        ({"routes": ("GET /ítems",)}, "routes"),
        ({"routes": ("GET /a",) * 101}, "routes"),
        ({"routes": "GET /items"}, "routes"),
        ({"scopes": ("has space",)}, "scopes"),
        ({"scopes": ('quote"',)}, "scopes"),
        ({"scopes": ("",)}, "scopes"),
    ],
)
def test_invalid_fields_raise_a_validation_error_naming_the_field(
    unit_hasher: Hasher, changes: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"name": "ok", **changes}
    with pytest.raises(ValidationError) as caught:
        new_service_token(hasher=unit_hasher, now=NOW, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_routes_and_scopes_are_kept_in_order_without_duplicates(unit_hasher: Hasher) -> None:
    token, _ = new_service_token(
        name="n",
        hasher=unit_hasher,
        now=NOW,
        routes=("GET /items/*", "* /health", "GET /items/*"),
        scopes=("read", "write", "read"),
    )
    assert token.routes == ("GET /items/*", "* /health")
    assert token.scopes == ("read", "write")


@pytest.mark.parametrize(
    ("mode", "arn", "message"),
    [
        (RotationMode.AUTO, None, "is required for 'auto'"),
        (RotationMode.REMIND, DELIVERY, "only used with 'auto'"),
        (RotationMode.AUTO, "arn:aws:s3:::bucket", "must be a Secrets Manager ARN"),
    ],
)
def test_rotation_policy_is_validated(mode: RotationMode, arn: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        RotationPolicy(mode, arn)
    assert caught.value.field == "rotation.delivery_secret_arn"


def test_auto_rotation_takes_a_delivery_secret() -> None:
    assert RotationPolicy(RotationMode.AUTO, DELIVERY).delivery_secret_arn == DELIVERY


def test_a_name_or_owner_stored_before_the_stricter_rule_still_loads(unit_hasher: Hasher) -> None:
    # Validated where a person sets them, not when a stored token is read: an old item with
    # such a name or owner must not lock its bot out.
    token, _ = new_service_token(name="n", hasher=unit_hasher, now=NOW, owner="ops")
    old = replace(token, name="bot \u2764\ufe0f", owner="ops\x85")
    assert (old.name, old.owner) == ("bot \u2764\ufe0f", "ops\x85")
