"""Verify an AWS Signature Version 4 the way API Gateway's AWS_IAM authorization does, for the
local stack and the tests: recompute the signature with botocore and compare, and refuse as API
Gateway refuses, with its messages and `x-amzn-ErrorType`.

The messages are API Gateway's (REST APIs, execute-api), as its callers have reported them:
- no Authorization header: "Missing Authentication Token" (AWS knowledge center,
  api-gateway-authentication-token-errors; kndt84/aws-api-gateway-client#29);
- a header that is not a signature: IncompleteSignatureException, "Authorization header
  requires 'Credential' parameter. ..." (aws/chalice#828, nordcloud/cognitocurl#15) or "'x' not
  a valid key=value pair (missing equal-sign) in Authorization header: '...'."
  (serverless/serverless#3205);
- an unknown access key: "The security token included in the request is invalid."
  (kndt84/aws-api-gateway-client#31);
- a credential scoped to another region or service: "Credential should be scoped to a valid
  region. " and "Credential should be scoped to correct service: 'execute-api'. ", both when
  both are wrong (n8n-io/n8n#21337, Kong/insomnia#713, aws/aws-sdk-js-v3#1831);
- a wrong signature: "The request signature we calculated does not match ...", then the
  canonical request and the string to sign expected (mhart/aws4#33, aws/aws-sdk-js#2372);
- a date more than 5 minutes away: "Signature expired: ..." / "Signature not yet current: ..."
  (SigV4's messages, as other AWS services send them).
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SKEW_SECONDS = 300  # SigV4's 5 minutes either way
_DATE = re.compile(r"\d{8}T\d{6}Z")
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your"
    " AWS Secret Access Key and signing method. Consult the service documentation for details."
)


class SigV4Refused(Exception):
    """A request AWS_IAM refuses: API Gateway's status, `x-amzn-ErrorType` and message."""

    def __init__(self, error_type: str, message: str, status: int = 403) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.status = status


def _incomplete(message: str) -> SigV4Refused:
    return SigV4Refused("IncompleteSignatureException", message)


def _parse(header: str, has_date: bool) -> dict[str, str]:
    """The Authorization header's Credential, SignedHeaders and Signature, or the refusal."""
    _, _, rest = header.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in (p.strip() for p in rest.split(",") if p.strip()):
        name, equals, value = part.partition("=")
        if not equals:
            raise _incomplete(
                f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization"
                f" header: '{header}'."
            )
        fields[name.strip()] = value.strip()
    required = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if not has_date:
        required.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if required:
        raise _incomplete(" ".join(required) + f" Authorization={header}")
    return fields


def authenticate(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    region: str | None,
    service: str = "execute-api",
    now: float | None = None,
) -> str:
    """The signing access key id of a request validly signed by one of `credentials` (access
    key id -> secret key) for `service` in `region` (None: any region); SigV4Refused otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    header = lowered.get("authorization")
    if not header:
        raise SigV4Refused("MissingAuthenticationTokenException", "Missing Authentication Token")
    amz_date = lowered.get("x-amz-date") or lowered.get("date") or ""
    fields = _parse(header, bool(amz_date))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _incomplete(
            "Credential should be scoped with a valid terminator: 'aws4_request', not"
            f" '{scope[-1]}'. "
        )
    key, date, signed_region, signed_service = scope[:4]
    wrong = ""
    if region is not None and signed_region != region:
        wrong += "Credential should be scoped to a valid region. "
    if signed_service != service:
        wrong += f"Credential should be scoped to correct service: '{service}'. "
    if wrong:
        raise SigV4Refused("InvalidSignatureException", wrong)
    secret = credentials.get(key)
    if secret is None:
        raise SigV4Refused(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if not _DATE.fullmatch(amz_date) or not amz_date.startswith(date):
        raise SigV4Refused(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from"
            f" HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    # The wall clock as botocore's signer reads it (datetime, not a patched time.time).
    _check_time(amz_date, datetime.now(UTC).timestamp() if now is None else now)
    request = AWSRequest(method=method, url=url, data=body)
    for name in fields["SignedHeaders"].split(";"):
        if name in lowered:  # a signed header the request lacks makes the signatures differ
            request.headers[name] = lowered[name]
    request.context["timestamp"] = amz_date
    token = lowered.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(key, secret, token), service, signed_region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    if not hmac.compare_digest(signer.signature(string_to_sign, request), fields["Signature"]):
        raise SigV4Refused(
            "InvalidSignatureException",
            f"{MISMATCH}\n\nThe Canonical String for this request should have been\n"
            f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
        )
    return key


def _check_time(amz_date: str, now: float) -> None:
    signed = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))

    def stamp(seconds: float) -> str:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))

    if signed < now - SKEW_SECONDS:
        raise SigV4Refused(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {stamp(now - SKEW_SECONDS)}"
            f" ({stamp(now)} - 5 min.)",
        )
    if signed > now + SKEW_SECONDS:
        raise SigV4Refused(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than"
            f" {stamp(now + SKEW_SECONDS)} ({stamp(now)} + 5 min.)",
        )


def verify_sigv4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    service: str = "execute-api",
    region: str | None = None,
) -> str | None:
    """The signing access key id if the request is validly signed by one of `credentials`
    (access key id -> secret key) for `service` (and `region`, if given); None otherwise."""
    try:
        return authenticate(
            method=method,
            url=url,
            headers=headers,
            body=body,
            credentials=credentials,
            region=region,
            service=service,
        )
    except SigV4Refused:
        return None
