"""What an attacker's review of the authorizer found that lives in AWS: keys planted in the
table's ring item, damaged ring entries and an unusable ring, against KMS and DynamoDB's reads.
The review's other findings (credentials outside the cache key, access tokens outliving their
secret, inputs that crashed the function, wildcards that backtracked, the smaller holes) are
decisions, tested on the in-memory store: tests/unit/test_authorizer_decisions.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekey.access_tokens import issue_access_token, issued_at
from gatekey.aws.keyring_store import KeyRingStore
from gatekey.errors import ConfigurationError, MissingCredentials
from gatekey.introspection import revoke_access_token
from gatekey.keyring import KeyRing, RingKey
from gatekey.signing import LocalKeySigner, b64url
from support.aws import AwsCallCounter
from support.constants import ISSUER, NOW, TABLE_NAME
from support.harness import AuthorizerHarness, Bot, authorizer_event

STATUS_TTL = 30  # the authorizer's default StatusCacheTtlSeconds


def outcome(authorizer: AuthorizerHarness, headers: dict[str, str], **kwargs: Any) -> str:
    """'allowed', the reason of a denial, or 'unauthorized' (401), as the handler decides for
    GET /items/42 on a REST REQUEST authorizer."""
    event = authorizer_event(
        kwargs.pop("shape", "rest_request"), headers, method="GET", path="/items/42", **kwargs
    )
    try:
        result = authorizer.handler.authorizer.authorize(event)
    except MissingCredentials:
        return "unauthorized"
    return "allowed" if result.allowed else result.reason


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def bot(authorizer: AuthorizerHarness) -> Bot:
    return authorizer.bot()


def test_a_revoked_access_token_is_refused_within_the_status_ttl_without_a_read_of_its_own(
    aws_calls: AwsCallCounter, authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # GIVEN two access tokens of one bot, both allowed
    leaked, other = authorizer.jwt(bot), authorizer.jwt(bot)
    assert outcome(authorizer, bearer(leaked)) == "allowed"
    assert outcome(authorizer, bearer(other)) == "allowed"
    # WHEN the bot revokes one (as /oauth2/revoke does, on the same table)
    claims = json.loads(base64.urlsafe_b64decode(leaked.split(".")[1] + "=="))
    revoke_access_token(
        authorizer.store,
        client_id=bot.client_id,
        jti=claims["jti"],
        exp=claims["exp"],
        issued=issued_at(claims),
        now=int(authorizer.clock[0]),
        actor=bot.client_id,
        source_ip=None,
    )
    # THEN once the status cache's copy expires, one read of the item refuses it and still
    # allows the other
    authorizer.clock[0] += STATUS_TTL
    reads = aws_calls.calls["dynamodb.GetItem"]
    assert outcome(authorizer, bearer(leaked)) == "access_token_revoked"
    assert outcome(authorizer, bearer(other)) == "allowed"
    assert aws_calls.calls["dynamodb.GetItem"] - reads == 1
    # AND the denial is answered as any other: a Deny policy (API Gateway's 403)
    response = authorizer.call("rest_request", bearer(leaked))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_a_key_planted_in_the_ring_item_cannot_sign_access_tokens(
    aws_calls: AwsCallCounter, authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # GIVEN someone who may write the table adds their own key to the ring, both as a new
    # entry and as the public half of the deployment's real key id
    attacker = LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    real = authorizer.signer.public_key
    ring = KeyRing(
        (
            RingKey(authorizer.signer.key_id, real, NOW, active_from=0, managed=False),
            RingKey("arn:aws:kms:us-east-1:123456789012:key/planted", attacker.public_key, NOW, 0),
            RingKey(authorizer.signer.key_id, attacker.public_key, NOW, 0, managed=False),
        )
    )
    KeyRingStore(TABLE_NAME, authorizer.store.client).save(ring)
    before = aws_calls.calls["kms.GetPublicKey"]
    # WHEN they sign an access token with it
    forged = issue_access_token(
        bot.token,
        attacker,
        issuer=ISSUER,
        audience="gatekey",
        lifetime=3600,
        scopes=(),
        now=int(authorizer.clock[0]),
    ).access_token
    # THEN it is refused, and the deployment's own key still verifies
    assert outcome(authorizer, bearer(forged)) == "unknown_key"
    assert outcome(authorizer, bearer(authorizer.jwt(bot))) == "allowed"
    # KMS is asked for a key id when a token first names its entry, once for the container's
    # life: the forged token named the attacker's kid, claimed by the planted id (KMS: no such
    # key) and by the real id (KMS: another key); the genuine token the real key, now known.
    assert aws_calls.calls["kms.GetPublicKey"] - before == 2
    authorizer.clock[0] += 300  # the verifier reloads the ring (PUBLIC_KEY_TTL)
    assert outcome(authorizer, bearer(authorizer.jwt(bot))) == "allowed"
    assert aws_calls.calls["kms.GetPublicKey"] - before == 2


def ring_item(authorizer: AuthorizerHarness, *entries: dict[str, Any]) -> None:
    """Write the ring item as a table writer could, entries as given (DynamoDB JSON maps)."""
    real = authorizer.signer.public_key
    genuine = {
        "key_id": {"S": authorizer.signer.key_id},
        "jwk": {"S": json.dumps(real.jwk())},
        "created_at": {"N": str(NOW)},
        "active_from": {"N": "0"},
        "managed": {"BOOL": False},
    }
    authorizer.store.client.put_item(
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": "SIGNING_KEYS"},
            "sk": {"S": "RING"},
            "keys": {"L": [{"M": e} for e in (*entries, genuine)]},
            "version": {"N": "1"},
        },
    )


def test_damaged_ring_entries_cost_only_themselves(
    aws_calls: AwsCallCounter, authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # GIVEN a ring with an empty key id, an unreadable entry and 20 keys of no one
    attacker = LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    bogus = [
        {
            "key_id": {"S": f"arn:aws:kms:us-east-1:123456789012:key/bogus-{i}"},
            "jwk": {"S": json.dumps(attacker.public_key.jwk())},
            "created_at": {"N": "0"},
            "active_from": {"N": "0"},
            "managed": {"BOOL": True},
        }
        for i in range(20)
    ]
    empty = {**bogus[0], "key_id": {"S": ""}}
    ring_item(authorizer, empty, {"key_id": {"S": "x"}}, *bogus[:5])
    before = dict(aws_calls.calls)
    # THEN genuine access tokens verify, and garbage ones are refused without further I/O
    assert outcome(authorizer, bearer(authorizer.jwt(bot))) == "allowed"
    for _ in range(20):
        garbage = b64url(json.dumps({"typ": "at+jwt", "alg": "RS256", "kid": "nope"}).encode())
        assert outcome(authorizer, bearer(f"{garbage}.e30.AAAA")) == "unknown_key"
    reads = {k: v - before.get(k, 0) for k, v in aws_calls.calls.items()}
    # One ring read and one status read; KMS asked only for the key a token named, and the
    # garbage naming no published key costs nothing within the refetch interval.
    assert (reads["dynamodb.GetItem"], reads["kms.GetPublicKey"]) == (2, 1)


def test_a_ring_that_cannot_be_used_fails_closed_without_a_read_per_request(
    aws_calls: AwsCallCounter, authorizer: AuthorizerHarness, bot: Bot
) -> None:
    authorizer.store.client.put_item(
        TableName=TABLE_NAME,
        Item={"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING"}, "keys": {"L": []}},
    )
    token = authorizer.jwt(bot)
    before = aws_calls.calls["dynamodb.GetItem"]
    for _ in range(10):
        with pytest.raises(ConfigurationError):
            outcome(authorizer, bearer(token))
    assert aws_calls.calls["dynamodb.GetItem"] - before == 1  # then one try per 30 s
