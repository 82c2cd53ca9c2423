"""What an attacker's review of the authorizer found, each as the attack it was: credentials
outside the cache key, access tokens outliving their secret, keys planted in the table, inputs
that crashed the function, wildcards that backtracked, and the smaller holes."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekey.access_tokens import issue_access_token, issued_at
from gatekey.admin import Actor, TokenAdmin
from gatekey.apigw import arn_matches
from gatekey.aws.keyring_store import KeyRingStore
from gatekey.aws.kms import kms_public_key
from gatekey.credentials import ClientSecret
from gatekey.errors import ConfigurationError, MissingCredentials
from gatekey.introspection import revoke_access_token
from gatekey.keyring import KeyRing, RingKey
from gatekey.signing import LocalKeySigner, b64url
from gatekey_local.gateway import Answer, Functions, Gateway
from gatekey_local.policy import policy_allows
from gatekey_local.template import Authorizer, Route
from support.aws import AwsCallCounter
from support.constants import ADMIN, ISSUER, NOW, REGION, TABLE_NAME
from support.constants import ARN as API
from support.harness import AuthorizerHarness, Bot, authorizer_event, credential_headers

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


# -- 1. an Allow may depend only on what API Gateway caches it under ---------------------------


class CachedApi:
    """One route behind the authorizer as API Gateway runs it (the local stack's gateway),
    with the result cache keyed on `identity` headers."""

    def __init__(self, authorizer: AuthorizerHarness, payload: str, identity: tuple[str, ...]):
        def backend(event: dict[str, Any], _: Any) -> dict[str, Any]:
            return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}

        spec = Authorizer("Cached", "Gatekey", payload, identity, ttl=300)
        route = Route("Api", "GET", "/items/{id}", "Backend", "LAMBDA", spec)
        functions = Functions({"Gatekey": authorizer.handler.lambda_handler, "Backend": backend})
        self.gateway = Gateway(routes=[route], schedules={}, functions=functions, credentials={})

    def get(self, headers: dict[str, str]) -> Answer:
        return self.gateway.handle("GET", "/items/42", list(headers.items()), b"", "127.0.0.1")


def test_an_allow_decided_on_other_headers_is_never_cached_under_authorization(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # GIVEN a REQUEST authorizer cached on Authorization only (the shape the review attacked)
    api = CachedApi(authorizer, "REQUEST", ("authorization",))
    anything = {"Authorization": "Basic " + base64.b64encode(b"any:thing").decode()}
    # WHEN valid Gatekey headers come with that Authorization value
    assert api.get({**credential_headers("gatekey_headers", bot), **anything}).status == 403
    # THEN the value alone is no Allow, for this token or anyone
    assert api.get(anything).status == 403


def test_credentials_beside_an_authorization_header_are_ambiguous(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    for form in ("gatekey_headers", "access_headers"):
        sent = {**credential_headers(form, bot), "Authorization": "Bearer the-apis-own-token"}
        assert outcome(authorizer, sent) == "ambiguous_credentials"
    both = {
        **credential_headers("gatekey_headers", bot),
        **credential_headers("access_headers", bot),
    }
    assert outcome(authorizer, both) == "ambiguous_credentials"
    # A header no accepted form reads does not count.
    assert outcome(authorizer, {**credential_headers("basic", bot), "X-Other": "1"}) == "allowed"


def test_the_switch_lets_an_apis_own_authorization_pass_beside_service_token_headers(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer(REFUSE_AMBIGUOUS_CREDENTIALS="false")
    bot = authorizer.bot()
    own = {"Authorization": "Bearer the-apis-own-token"}
    assert outcome(authorizer, {**credential_headers("gatekey_headers", bot), **own}) == "allowed"
    # Two service-token forms at once stay ambiguous.
    both = {
        **credential_headers("gatekey_headers", bot),
        **credential_headers("access_headers", bot),
    }
    assert outcome(authorizer, both) == "ambiguous_credentials"


def test_a_token_authorizer_decides_on_authorization_alone(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # The demo's cached route: API Gateway hands a TOKEN authorizer its one identity source.
    api = CachedApi(authorizer, "TOKEN", ("authorization",))
    anything = {"Authorization": "Basic " + base64.b64encode(b"any:thing").decode()}
    assert api.get({**credential_headers("gatekey_headers", bot), **anything}).status == 403
    assert api.get(anything).status == 403
    assert api.get(credential_headers("basic", bot)).status == 200


# -- 2. a rotation ends the access tokens of the secret it replaces -----------------------------


def rotate(authorizer: AuthorizerHarness, bot: Bot, **grace: Any) -> ClientSecret:
    admin = TokenAdmin(
        store=authorizer.store, hasher=authorizer.hasher, clock=lambda: int(authorizer.clock[0])
    )
    return admin.rotate(Actor(ADMIN), bot.client_id, **grace).secret


def test_a_rotation_without_grace_ends_the_old_secrets_access_tokens(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400)
    assert outcome(authorizer, bearer(token)) == "allowed"
    rotate(authorizer, bot)
    authorizer.clock[0] += STATUS_TTL  # the status cache's copy expires
    assert outcome(authorizer, bearer(token)) == "secret_rotated"


def test_the_previous_secrets_access_tokens_end_with_its_grace(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400)
    grace_ends = int(authorizer.clock[0]) + 3600
    rotate(authorizer, bot, previous_expires_at=grace_ends)
    authorizer.clock[0] += STATUS_TTL
    assert outcome(authorizer, bearer(token)) == "allowed"
    authorizer.clock[0] = grace_ends
    assert outcome(authorizer, bearer(token)) == "secret_rotated"


def test_an_access_token_without_a_secret_version_is_refused_once_the_token_was_rotated(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # Access tokens minted before secret versions were stamped on them.
    def legacy() -> str:
        token = authorizer.jwt(bot)
        head, body, _ = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        del claims["client_secret_version"]
        signing_input = f"{head}.{b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64url(authorizer.signer.sign(signing_input.encode()))}"

    assert outcome(authorizer, bearer(legacy())) == "allowed"  # never rotated: version 1
    rotate(authorizer, bot, previous_expires_at=int(authorizer.clock[0]) + 3600)
    authorizer.clock[0] += STATUS_TTL
    assert outcome(authorizer, bearer(legacy())) == "secret_rotated"


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


# -- 3. a key planted in the table's ring item is not trusted ---------------------------------


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


def test_a_key_taken_out_of_the_ring_stops_its_tokens_in_warm_containers(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # GIVEN a token verified with a key that the ring then replaces (say it was compromised)
    token = authorizer.jwt(bot, lifetime=86_400)
    assert outcome(authorizer, bearer(token)) == "allowed"
    kms = boto3.client("kms", region_name=REGION)
    tag = [{"TagKey": "gatekey-signing-key", "TagValue": "gatekey"}]
    successor = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", Tags=tag)
    arn = successor["KeyMetadata"]["Arn"]
    public = kms_public_key(arn, kms)
    KeyRingStore(TABLE_NAME, authorizer.store.client).save(
        KeyRing((RingKey(arn, public, NOW, active_from=0),))
    )
    # THEN a warm container stops accepting it once its keys are refetched, not at its exp
    authorizer.clock[0] += 300
    assert outcome(authorizer, bearer(token)) == "unknown_key"


def test_each_access_token_refusal_is_decided_under_its_own_reason(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    # Well signed by the deployment's key unless said otherwise; the reason is what the handler
    # logs and counts, so an operator can tell a misconfigured client from a forgery.
    now = int(authorizer.clock[0])

    def signed(*, issuer: str = ISSUER, audience: str = "gatekey", at: int = now) -> str:
        return issue_access_token(
            bot.token,
            authorizer.signer,
            issuer=issuer,
            audience=audience,
            lifetime=600,
            scopes=(),
            now=at,
        ).access_token

    assert outcome(authorizer, bearer(signed(issuer="https://elsewhere.example"))) == (
        "wrong_issuer"
    )
    assert outcome(authorizer, bearer(signed(audience="another-api"))) == "wrong_audience"
    assert outcome(authorizer, bearer(signed(at=now + 120))) == "not_yet_valid"
    head, body, _ = signed().split(".")
    other = signed(at=now - 1).split(".")[2]  # the signature of other claims
    assert outcome(authorizer, bearer(f"{head}.{body}.{other}")) == "bad_signature"
    assert outcome(authorizer, bearer(signed(at=now - 600 - 30))) == "token_expired"
    assert outcome(authorizer, bearer(signed())) == "allowed"


def test_an_access_token_longer_lived_than_any_issued_is_refused(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    token = authorizer.jwt(bot, lifetime=86_400 + 1)  # well signed, by the real key
    assert outcome(authorizer, bearer(token)) == "invalid_credentials"


def test_a_pair_this_stack_does_not_accept_is_still_a_credential_header(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    # An API may cache on the Gatekey pair while the stack accepts only Basic and Bearer: an
    # Allow decided on Basic must not be left under the pair's values.
    authorizer = make_authorizer(ACCEPT_GATEKEY_HEADERS="false")
    bot = authorizer.bot()
    api = CachedApi(authorizer, "REQUEST", ("gatekey-client-id", "gatekey-client-secret"))
    chosen = {"Gatekey-Client-Id": "anything", "Gatekey-Client-Secret": "at-all"}
    assert api.get({**credential_headers("basic", bot), **chosen}).status == 403
    assert api.get(chosen).status == 403


# -- 4. nothing a client sends is a 500 --------------------------------------------------------


def test_non_ascii_bytes_in_an_access_token_after_a_published_kid_are_a_refusal(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    head, _, signature = authorizer.jwt(bot).split(".")
    for body in ("é", "\x80\xff", "\udcff"):  # as API Gateway hands over latin-1 and odd bytes
        assert outcome(authorizer, bearer(f"{head}.{body}.{signature}")) == "invalid_credentials"


def test_deeply_nested_json_is_a_refusal(authorizer: AuthorizerHarness) -> None:
    nested = "[" * 2_500 + "]" * 2_500  # deeper than Python's recursion limit, within 8 KB
    access_json = {"Authorization": '{"cf-access-client-id": ' + nested + "}"}
    assert outcome(authorizer, access_json) == "invalid_credentials"
    header = b64url(('{"typ":"at+jwt","kid":' + nested + "}").encode())
    assert outcome(authorizer, bearer(f"{header}.e30.AAAA")) == "invalid_credentials"


# -- 6. route wildcards cannot backtrack -----------------------------------------------------


@contextmanager
def deadline(seconds: float = 60) -> Iterator[None]:
    """Fail what does not end within a bound far beyond what it needs (milliseconds): a
    liveness check, not a performance target (those are in `make bench`). A signal, not a
    thread, because a backtracking regex never gives another thread the GIL; the regex engine
    checks for signals, so it is interrupted."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_many_wildcards_against_a_long_path_answer_at_once() -> None:
    pattern = f"{API}/GET/a*a*a*a*a*a*a*a*b"
    subject = f"{API}/GET/" + "a" * 5_000
    with deadline():
        assert not arn_matches(pattern, subject)
    assert arn_matches(pattern, subject + "b")


def test_an_http_api_route_with_wildcards_and_a_long_path_is_decided(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    authorizer = make_authorizer(HTTP_API_SIMPLE_RESPONSES="true")
    bot = authorizer.bot(routes=("GET /a*a*a*a*a*a*b",))
    event = authorizer_event(
        "http", credential_headers("basic", bot), method="GET", path="/" + "a" * 5_000
    )
    with deadline():
        assert authorizer.invoke(event) == {"isAuthorized": False}


def test_the_allow_policy_is_evaluated_with_the_same_matcher() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Resource": [f"{API}/GET/items/*/?x"]}]}
    assert policy_allows(policy, f"{API}/GET/items/1/2/ax")
    assert not policy_allows(policy, f"{API}/GET/items/1/2/x")


# -- 7. smaller holes --------------------------------------------------------------------------


def test_a_rotated_secret_works_at_once_not_after_the_status_cache(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    assert outcome(authorizer, credential_headers("gatekey_headers", bot)) == "allowed"
    new = Bot(bot.token, rotate(authorizer, bot))  # the old copy is still in the status cache
    assert outcome(authorizer, credential_headers("gatekey_headers", new)) == "allowed"


def test_an_access_token_of_a_new_secret_works_at_once(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    assert outcome(authorizer, bearer(authorizer.jwt(bot))) == "allowed"
    rotated = Bot(bot.token, rotate(authorizer, bot))
    current = authorizer.store.get(bot.client_id, consistent=True)
    assert current.client_secret_version == 2
    assert outcome(authorizer, bearer(authorizer.jwt(Bot(current, rotated.secret)))) == "allowed"


def test_wrong_secrets_re_read_the_token_at_most_once_per_interval(
    aws_calls: AwsCallCounter, authorizer: AuthorizerHarness, bot: Bot
) -> None:
    assert outcome(authorizer, credential_headers("gatekey_headers", bot)) == "allowed"
    before = aws_calls.calls["dynamodb.GetItem"]
    for _ in range(50):
        wrong = Bot(bot.token, ClientSecret.generate())
        assert outcome(authorizer, credential_headers("gatekey_headers", wrong)) != "allowed"
    assert aws_calls.calls["dynamodb.GetItem"] - before == 1
    authorizer.clock[0] += 5  # REREAD_INTERVAL
    wrong = Bot(bot.token, ClientSecret.generate())
    assert outcome(authorizer, credential_headers("gatekey_headers", wrong)) != "allowed"
    assert aws_calls.calls["dynamodb.GetItem"] - before == 2


def test_a_large_cookie_does_not_deny_valid_credentials(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    big = {"Cookie": "session=" + "x" * 12_000, "X-Trace": "y" * 9_000}
    for form in ("gatekey_headers", "basic"):
        assert outcome(authorizer, {**credential_headers(form, bot), **big}) == "allowed"
    too_long = {"Gatekey-Client-Id": bot.client_id, "Gatekey-Client-Secret": "x" * 9_000}
    assert outcome(authorizer, too_long) == "invalid_credentials"


def test_a_refusal_for_ambiguity_is_a_403_through_the_handler(
    authorizer: AuthorizerHarness, bot: Bot
) -> None:
    sent = {**credential_headers("gatekey_headers", bot), "Authorization": "Basic Og=="}
    response = authorizer.call("rest_request", sent)  # a 401 would raise Unauthorized
    assert response["principalId"] == "anonymous"
    assert not policy_allows(response["policyDocument"], f"{API}/GET/items/42")
