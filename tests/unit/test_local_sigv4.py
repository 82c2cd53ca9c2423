"""The local gateway's AWS_IAM check: API Gateway's 403 bodies and error types for an unsigned
request, a header that is no signature, an unknown key, another region or service, a stale
date and a wrong signature; a good signature passes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gatekey_local.gateway import Functions, Gateway
from gatekey_local.sigv4 import MISMATCH, SigV4Refused, authenticate
from gatekey_local.template import Route

URL = "http://127.0.0.1:3000/admin/service-tokens"
KNOWN = {"testing": "testing"}


def signed(
    *,
    key: str = "testing",
    secret: str = "testing",  # noqa: S107 - the local stack's credentials
    region: str = "us-east-1",
    service: str = "execute-api",
    at: float | None = None,
) -> dict[str, str]:
    """The headers of a GET of URL signed as botocore signs, at `at` (default: now)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if at is None else at))
    request = AWSRequest(method="GET", url=URL, data=b"")
    request.headers["Host"] = "127.0.0.1:3000"
    request.headers["X-Amz-Date"] = stamp
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key, secret), service, region)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key}/{signer.credential_scope(request)},"
        f" SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))},"
        f" Signature={signature}"
    )
    return dict(request.headers.items())


def refusal(headers: dict[str, str], now: float | None = None) -> SigV4Refused:
    with pytest.raises(SigV4Refused) as caught:
        authenticate(
            method="GET",
            url=URL,
            headers=headers,
            body=b"",
            credentials=KNOWN,
            region="us-east-1",
            now=now,
        )
    return caught.value


def test_a_good_signature_names_its_key() -> None:
    key = authenticate(
        method="GET", url=URL, headers=signed(), body=b"", credentials=KNOWN, region="us-east-1"
    )
    assert key == "testing"


def test_unsigned_is_missing_authentication_token() -> None:
    refused = refusal({"Host": "127.0.0.1:3000"})
    assert (refused.error_type, refused.message) == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Bearer abc",
            "'abc' not a valid key=value pair (missing equal-sign) in Authorization header:"
            " 'Bearer abc'.",
        ),
        (
            "eyJhbGciOi.eyJzdWIi.c2ln",
            "Authorization header requires 'Credential' parameter. Authorization header requires"
            " 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."
            " Authorization header requires existence of either a 'X-Amz-Date' or a 'Date'"
            " header. Authorization=eyJhbGciOi.eyJzdWIi.c2ln",
        ),
    ],
)
def test_a_header_that_is_no_signature_is_an_incomplete_signature(
    header: str, message: str
) -> None:
    refused = refusal({"Authorization": header})
    assert (refused.error_type, refused.message) == ("IncompleteSignatureException", message)


@pytest.mark.parametrize(
    ("region", "service", "message"),
    [
        ("eu-west-1", "execute-api", "Credential should be scoped to a valid region. "),
        ("us-east-1", "es", "Credential should be scoped to correct service: 'execute-api'. "),
        (
            "eu-west-1",
            "es",
            "Credential should be scoped to a valid region. "
            "Credential should be scoped to correct service: 'execute-api'. ",
        ),
    ],
)
def test_a_signature_for_another_region_or_service_is_refused(
    region: str, service: str, message: str
) -> None:
    refused = refusal(signed(region=region, service=service))
    assert (refused.error_type, refused.message) == ("InvalidSignatureException", message)


def test_an_unknown_key_is_an_invalid_security_token() -> None:
    refused = refusal(signed(key="intruder", secret="x"))
    assert (refused.error_type, refused.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def test_a_wrong_secret_is_a_signature_mismatch_showing_the_canonical_request() -> None:
    refused = refusal(signed(secret="wrong"))
    assert refused.error_type == "InvalidSignatureException"
    assert refused.message.startswith(MISMATCH + "\n\nThe Canonical String for this request")
    assert "\n'GET\n/admin/service-tokens\n" in refused.message
    assert "The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n" in refused.message


def test_a_date_more_than_five_minutes_away_is_refused() -> None:
    now = 1_800_000_000.0
    expired = refusal(signed(at=now - 301), now=now)
    assert expired.message == (
        "Signature expired: 20270115T075459Z is now earlier than 20270115T075500Z"
        " (20270115T080000Z - 5 min.)"
    )
    early = refusal(signed(at=now + 301), now=now)
    assert early.message.startswith("Signature not yet current: 20270115T080501Z is still later")
    authenticate(
        method="GET",
        url=URL,
        headers=signed(at=now - 299),
        body=b"",
        credentials=KNOWN,
        region="us-east-1",
        now=now,
    )


def test_the_gateway_answers_as_api_gateway_does() -> None:
    calls: list[Any] = []
    gateway = Gateway(
        routes=[Route("AdminApi", "GET", "/admin/service-tokens", "Admin", "AWS_IAM")],
        schedules={},
        functions=Functions({"Admin": lambda event, context: calls.append(event)}),
        credentials=KNOWN,
        region="us-east-1",
    )
    answer = gateway.handle("GET", "/admin/service-tokens", [], b"", "127.0.0.1:3000")
    assert answer.status == 403
    assert answer.body == b'{"message":"Missing Authentication Token"}'
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    headers = list(signed(region="eu-west-1").items())
    answer = gateway.handle("GET", "/admin/service-tokens", headers, b"", "127.0.0.1:3000")
    assert json.loads(answer.body) == {"message": "Credential should be scoped to a valid region. "}
    assert not calls
