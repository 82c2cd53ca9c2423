"""Client authentication parsing and the one mapping of errors to RFC 6749 answers."""

import base64

import pytest

from gatekey.credentials import ClientSecret, generate_client_id
from gatekey.errors import (
    AuthenticationError,
    DependencyError,
    GatekeyError,
    InvalidCredentials,
    InvalidScope,
    MalformedCredential,
    NotFound,
    TokenRevoked,
    UnsupportedGrantType,
    ValidationError,
)
from gatekey.oauth import oauth_error, read_client_authentication

CLIENT_ID = generate_client_id()
SECRET = ClientSecret.generate().reveal()
WRONG_CHECKSUM = SECRET[:-1] + ("x" if SECRET[-1] != "x" else "y")
NO_COLON = "Basic " + base64.b64encode(b"no-colon").decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "form", "method"),
    [
        ({"authorization": basic(CLIENT_ID, SECRET)}, {}, "client_secret_basic"),
        ({"authorization": "basic " + basic(CLIENT_ID, SECRET)[6:]}, {}, "client_secret_basic"),
        ({}, {"client_id": [CLIENT_ID], "client_secret": [SECRET]}, "client_secret_post"),
        ({"gatekey-client-id": CLIENT_ID, "gatekey-client-secret": SECRET}, {}, "service_token"),
        (
            {"cf-access-client-id": CLIENT_ID, "cf-access-client-secret": SECRET},
            {},
            "service_token",
        ),
    ],
)
def test_each_way_of_authenticating_is_recognised(
    headers: dict[str, str], form: dict[str, list[str]], method: str
) -> None:
    auth = read_client_authentication(headers, form)
    assert (auth.client_id, auth.secret.reveal(), auth.method) == (CLIENT_ID, SECRET, method)
    assert SECRET not in repr(auth)


def test_basic_credentials_are_form_urldecoded_as_rfc_6749_says() -> None:
    encoded = CLIENT_ID.replace("_", "%5F")
    assert read_client_authentication({"authorization": basic(encoded, SECRET)}, {}).client_id == (
        CLIENT_ID
    )


@pytest.mark.parametrize(
    ("headers", "form", "error"),
    [
        ({}, {}, AuthenticationError),
        ({"authorization": "Bearer abc"}, {}, AuthenticationError),
        ({"authorization": "Basic %%%"}, {}, InvalidCredentials),
        (
            {"authorization": NO_COLON},
            {},
            InvalidCredentials,
        ),
        ({"authorization": basic("gk_bad", SECRET)}, {}, MalformedCredential),
        ({"authorization": basic(CLIENT_ID, WRONG_CHECKSUM)}, {}, MalformedCredential),
        ({}, {"client_secret": [SECRET]}, MalformedCredential),
        ({"gatekey-client-secret": SECRET}, {}, MalformedCredential),
        (
            {"authorization": basic(CLIENT_ID, SECRET)},
            {"client_id": [CLIENT_ID], "client_secret": [SECRET]},
            ValidationError,
        ),
        ({}, {"client_id": [CLIENT_ID], "client_secret": [SECRET, SECRET]}, ValidationError),
    ],
)
def test_missing_malformed_or_ambiguous_authentication_is_refused(
    headers: dict[str, str], form: dict[str, list[str]], error: type[GatekeyError]
) -> None:
    with pytest.raises(error) as caught:
        read_client_authentication(headers, form)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidCredentials("x"), 401, "invalid_client"),
        (TokenRevoked("x"), 401, "invalid_client"),
        (NotFound("x"), 401, "invalid_client"),
        (MalformedCredential("client_secret", "x"), 401, "invalid_client"),
        (InvalidScope("scope", "x"), 400, "invalid_scope"),
        (UnsupportedGrantType("grant_type", "x"), 400, "unsupported_grant_type"),
        (ValidationError("grant_type", "is required"), 400, "invalid_request"),
        (DependencyError("KMS Sign failed"), 500, "server_error"),
    ],
)
def test_every_error_has_one_rfc_6749_answer(exc: GatekeyError, status: int, code: str) -> None:
    answer = oauth_error(exc)
    assert (answer.status, answer.error) == (status, code)
    if status == 401:
        assert answer.description == "client authentication failed"  # never which check failed
    if status == 500:
        assert "KMS" not in answer.description  # internals stay in the logs


def test_both_metadata_documents_name_introspection_revocation_and_the_scope() -> None:
    from gatekey.oauth import authorization_server_metadata, openid_configuration

    issuer = "https://auth.example.com"
    for document in (authorization_server_metadata(issuer), openid_configuration(issuer)):
        assert document["introspection_endpoint"] == f"{issuer}/oauth2/introspect"
        assert document["revocation_endpoint"] == f"{issuer}/oauth2/revoke"
        for name in ("introspection", "revocation", "token"):
            methods = document[f"{name}_endpoint_auth_methods_supported"]
            assert methods == ["client_secret_basic", "client_secret_post"]
        assert document["scopes_supported"] == ["gatekey:introspect"]
