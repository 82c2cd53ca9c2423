"""Access's follow-up forms, read without I/O: an access token in the cf-access-token header or
in the CF_Authorization cookie, each switchable, and the ambiguity rule applied to both."""

from __future__ import annotations

import pytest

from gatekey.apigw import parse_event
from gatekey.credentials import CredentialForm
from gatekey.errors import AmbiguousCredentials, MissingCredentials
from gatekey.presented import CredentialReader
from support.constants import ARN

ALL = frozenset(CredentialForm)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnayJ9.c2ln"


def reader(*off: CredentialForm, refuse_ambiguous: bool = True) -> CredentialReader:
    return CredentialReader(
        accepted=ALL - set(off),
        access_json_header="authorization",
        refuse_ambiguous=refuse_ambiguous,
    )


def test_the_cf_access_token_header_presents_an_access_token() -> None:
    presented = reader().read({"cf-access-token": f" {JWT} "})
    assert (presented.method, presented.jwt) == (CredentialForm.ACCESS_TOKEN_HEADER, JWT)


def test_the_cf_authorization_cookie_presents_an_access_token_among_other_cookies() -> None:
    cookie = f"session=abc; CF_Authorization={JWT}; theme=dark"
    presented = reader().read({"cookie": cookie})
    assert (presented.method, presented.jwt) == (CredentialForm.ACCESS_COOKIE, JWT)


def test_switched_off_the_header_is_no_credential_and_the_cookie_is_not_even_read() -> None:
    off = reader(CredentialForm.ACCESS_TOKEN_HEADER, CredentialForm.ACCESS_COOKIE)
    with pytest.raises(MissingCredentials):
        off.read({"cf-access-token": JWT})
    with pytest.raises(MissingCredentials):
        off.read({"cookie": f"CF_Authorization={JWT}"})
    # Off, the cookie is not the authorizer's business: it does not make Bearer ambiguous.
    bearer = off.read({"authorization": f"Bearer {JWT}", "cookie": f"CF_Authorization={JWT}"})
    assert bearer.method is CredentialForm.BEARER


def test_cookie_names_are_case_sensitive_and_a_lookalike_is_no_credential() -> None:
    for cookie in (f"cf_authorization={JWT}", f"XCF_Authorization={JWT}", "CF_Authorization"):
        with pytest.raises(MissingCredentials):
            reader().read({"cookie": cookie})


@pytest.mark.parametrize(
    "headers",
    [
        {"cf-access-token": JWT, "authorization": f"Bearer {JWT}"},
        {"cookie": f"CF_Authorization={JWT}", "authorization": f"Bearer {JWT}"},
        {"cookie": f"CF_Authorization={JWT}", "cf-access-token": JWT},
        {"cf-access-token": JWT, "gatekey-client-id": "gk_x", "gatekey-client-secret": "gks_x"},
    ],
)
def test_either_beside_another_credential_is_ambiguous(headers: dict[str, str]) -> None:
    # An API cached on the other header would keep this Allow under it (README, "Caching").
    with pytest.raises(AmbiguousCredentials):
        reader().read(headers)


def test_the_header_counts_for_ambiguity_even_switched_off_as_the_pairs_do() -> None:
    with pytest.raises(AmbiguousCredentials, match="cf-access-token"):
        reader(CredentialForm.ACCESS_TOKEN_HEADER).read(
            {"cf-access-token": JWT, "authorization": f"Bearer {JWT}"}
        )


def test_two_cf_authorization_cookies_are_refused() -> None:
    with pytest.raises(AmbiguousCredentials, match="2 CF_Authorization cookies"):
        reader().read({"cookie": f"CF_Authorization={JWT}; CF_Authorization=other"})


def test_with_ambiguity_allowed_the_cookie_passes_beside_the_form_decided_on() -> None:
    lenient = reader(refuse_ambiguous=False)
    presented = lenient.read({"authorization": f"Bearer {JWT}", "cookie": "CF_Authorization=x"})
    assert (presented.method, presented.jwt) == (CredentialForm.BEARER, JWT)


def test_a_remembered_answer_is_keyed_on_the_cookie_only_when_it_may_decide() -> None:
    assert "cookie" in reader().key_headers
    assert "cookie" not in reader(CredentialForm.ACCESS_COOKIE).key_headers
    assert "cf-access-token" in reader(CredentialForm.ACCESS_TOKEN_HEADER).key_headers


def test_http_api_payload_2_cookies_reach_the_reader_as_one_cookie_header() -> None:
    event = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"{ARN}/GET/items/42",
        "headers": {"host": "example.com"},
        "cookies": ["session=abc", f"CF_Authorization={JWT}", 42],
    }
    request = parse_event(event)
    assert request.headers["cookie"] == f"session=abc; CF_Authorization={JWT}"
    assert reader().read(request.headers).jwt == JWT
