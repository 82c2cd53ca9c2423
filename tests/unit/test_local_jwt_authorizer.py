"""The local gateway's built-in JWT authorizer: discovery, keys, and each check and refusal."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gatekey_local.gateway import Functions, Gateway
from gatekey_local.jwt_authorizer import IssuerKeys, JwtAuthorizer, JwtRefused, jwt_context
from gatekey_local.template import Authorizer, Route

ISSUER = "https://issuer.example/v1"
NOW = 1_800_000_000
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    members: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return members | {"kid": kid, "alg": alg, "use": "sig"}


class Issuer:
    """The issuer's two documents, served from memory; records what is fetched."""

    def __init__(self, *, discovery: str = "/.well-known/openid-configuration") -> None:
        self.keys = [jwk(RSA_KEY, "rsa1", "RS256"), jwk(EC_KEY, "ec1", "ES256")]
        self.discovery = discovery
        self.fetched: list[str] = []

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetched.append(url)
        if url == ISSUER + self.discovery:
            return {"issuer": ISSUER, "jwks_uri": ISSUER + "/.well-known/jwks.json"}
        if url == ISSUER + "/.well-known/jwks.json":
            return {"keys": self.keys}
        raise OSError(f"HTTP Error 404: {url}")


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": "gatekey",
        "sub": "gk_1",
        "client_id": "gk_1",
        "scope": "read write",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, kid: str = "rsa1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def authorizer(issuer: Issuer | None = None, clock: float = NOW) -> JwtAuthorizer:
    issuer = issuer or Issuer()
    keys = IssuerKeys(ISSUER, fetch=issuer.fetch, clock=lambda: clock)
    return JwtAuthorizer(ISSUER, ["gatekey"], keys, clock=lambda: clock)


def refusal(token: str, scopes: tuple[str, ...] = (), **kwargs: Any) -> JwtRefused:
    with pytest.raises(JwtRefused) as refused:
        authorizer(**kwargs).authorize(token, scopes)
    return refused.value


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer ", ""])
def test_a_valid_token_with_or_without_bearer(prefix: str) -> None:
    token = sign(claims())
    assert authorizer().authorize(prefix + token, ("read",))["client_id"] == "gk_1"


def test_an_es256_token_is_refused_as_api_gateway_verifies_rsa_signatures_only() -> None:
    refused = refusal(sign(claims(), EC_KEY, "ec1", "ES256"))
    assert refused.status == 401
    assert "ES256" in refused.description


def test_keys_are_found_through_oidc_discovery_and_cached() -> None:
    issuer = Issuer()
    checker = authorizer(issuer)
    for _ in range(3):
        checker.authorize(sign(claims()), ())
    assert issuer.fetched == [
        ISSUER + "/.well-known/openid-configuration",
        ISSUER + "/.well-known/jwks.json",
    ]


def test_without_oidc_discovery_the_keys_are_not_found() -> None:
    # API Gateway reads {issuer}/.well-known/openid-configuration only, not RFC 8414's path.
    issuer = Issuer(discovery="/.well-known/oauth-authorization-server")
    refused = refusal(sign(claims()), issuer=issuer)
    assert refused.status == 401
    assert "discovery document" in refused.description


def test_an_unknown_kid_fetches_the_key_set_again_at_most_every_few_seconds() -> None:
    issuer = Issuer()
    clock = [float(NOW)]
    keys = IssuerKeys(ISSUER, fetch=issuer.fetch, clock=lambda: clock[0])
    checker = JwtAuthorizer(ISSUER, ["gatekey"], keys, clock=lambda: clock[0])
    checker.authorize(sign(claims()), ())
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.keys.append(jwk(new_key, "rsa2", "RS256"))  # a key published after the first fetch
    with pytest.raises(JwtRefused, match="kid"):
        checker.authorize(sign(claims(), new_key, "rsa2"), ())  # fetched too recently
    clock[0] += 5
    assert checker.authorize(sign(claims(), new_key, "rsa2"), ())["sub"] == "gk_1"
    assert len(issuer.fetched) == 4


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "not a JWT"),
        (jwt.encode(claims(), "secret-hmac-key-of-32-bytes-long", algorithm="HS256"), "algorithm"),
        (sign(claims(), kid="unknown"), "kid"),
        (sign(claims(), OTHER_RSA_KEY), "signature"),  # the kid of another key
        (sign(claims(), RSA_KEY, "rsa1", "RS512"), "algorithm is not its key's"),
        (sign(claims(iss="https://elsewhere.example")), "issuer"),
        (sign(claims(aud="someone-else")), "audience"),
        (sign(claims(aud=["a", "b"])), "audience"),
        (sign(claims(aud="someone-else", client_id="gatekey")), "audience"),  # aud wins
        (sign(claims(exp=NOW)), "expired"),
        (sign(claims(exp=None)), "expired"),  # no exp at all
        (sign(claims(nbf=NOW + 1)), "nbf"),
        (sign(claims(iat=NOW + 1)), "iat"),
    ],
)
def test_each_invalid_token_is_a_401(token: str, reason: str) -> None:
    refused = refusal(token)
    assert refused.status == 401
    assert refused.error == "invalid_token"
    assert reason in refused.description
    assert refused.www_authenticate.startswith('Bearer scope="" error="invalid_token"')


def test_client_id_stands_for_aud_only_when_there_is_no_aud() -> None:
    token = sign(claims(aud=None, client_id="gatekey"))
    assert authorizer().authorize(token, ())["client_id"] == "gatekey"
    assert authorizer().authorize(sign(claims(aud=["other", "gatekey"])), ())


def test_a_token_without_one_of_the_route_scopes_is_a_403() -> None:
    refused = refusal(sign(claims(scope="write")), ("read", "admin"))
    assert refused.status == 403
    assert refused.www_authenticate.startswith(
        'Bearer scope="read admin" error="insufficient_scope"'
    )
    assert authorizer().authorize(sign(claims(scope="admin")), ("read", "admin"))
    token = sign(claims(scope=None, scp=["read"]))  # scp, as a list
    assert authorizer().authorize(token, ("read",))
    assert refusal(sign(claims(scope=None)), ("read",)).status == 403


def test_the_claims_reach_the_handler_as_strings_with_the_scopes() -> None:
    context = jwt_context(claims(aud=["a", "b"]))
    assert context["scopes"] == ["read", "write"]
    assert context["claims"]["exp"] == str(NOW + 600)
    assert context["claims"]["aud"] == '["a", "b"]'


def test_the_gateway_answers_refusals_as_http_apis_do() -> None:
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        return {"statusCode": 204}

    spec = Authorizer(
        "Jwt",
        "",
        "JWT",
        (),
        0,
        identity_sources=("$request.header.Authorization",),
        jwt_issuer=ISSUER,
        jwt_audiences=("gatekey",),
    )
    route = Route(
        "Http", "GET", "/a", "Fn", "JWT", spec, http=True, stage="$default", scopes=("read",)
    )
    issuer = Issuer()
    gateway = Gateway(
        routes=[route],
        schedules={},
        functions=Functions({"Fn": handler}),
        credentials={},
        issuer_keys=lambda name: IssuerKeys(name, fetch=issuer.fetch),
    )

    def call(headers: list[tuple[str, str]]) -> Any:
        return gateway.handle("GET", "/a", headers, b"", "h")

    valid = sign(claims(iat=None, nbf=None, exp=2**40))
    assert call([("Authorization", f"Bearer {valid}")]).status == 204
    assert seen[-1]["requestContext"]["authorizer"]["jwt"]["claims"]["client_id"] == "gk_1"
    missing = call([])
    assert (missing.status, json.loads(missing.body)) == (401, {"message": "Unauthorized"})
    expired = call([("Authorization", f"Bearer {sign(claims(exp=1))}")])
    assert (expired.status, json.loads(expired.body)) == (401, {"message": "Unauthorized"})
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    narrow = call(
        [("Authorization", f"Bearer {sign(claims(scope='write', iat=None, nbf=None, exp=2**40))}")]
    )
    assert (narrow.status, json.loads(narrow.body)) == (403, {"message": "Forbidden"})
    assert len(seen) == 1
