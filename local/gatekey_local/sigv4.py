"""Verify an AWS Signature Version 4 the way API Gateway's AWS_IAM authorization does, for the
local stack and the tests: recompute the signature with botocore and compare."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+),"
    r" ?Signature=(?P<sig>[0-9a-f]{64})"
)


def verify_sigv4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    service: str = "execute-api",
) -> str | None:
    """The signing access key id if the request is validly signed by one of `credentials`
    (access key id -> secret key) for `service`; None otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _AUTHORIZATION.fullmatch(lowered.get("authorization", "").strip())
    amz_date = lowered.get("x-amz-date", "")
    if match is None or match["service"] != service or not amz_date.startswith(match["date"]):
        return None
    secret = credentials.get(match["key"])
    if secret is None:
        return None
    signed = match["signed"].split(";")
    request = AWSRequest(method=method, url=url, data=body)
    for name in signed:
        if name not in lowered:
            return None
        request.headers[name] = lowered[name]
    request.context["timestamp"] = amz_date
    token = lowered.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(match["key"], secret, token), service, match["region"])
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return match["key"] if hmac.compare_digest(expected, match["sig"]) else None
