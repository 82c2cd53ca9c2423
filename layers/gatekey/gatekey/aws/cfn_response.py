"""CloudFormation's side of a custom resource: the answer PUT to the request's ResponseURL.

The URL is presigned (S3): whoever holds it can answer for the stack, so it is never logged,
and errors name only what failed. urllib, not an AWS client: the URL carries its own
authorization. Redirects are not followed (urllib refuses to redirect a PUT).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from gatekey.errors import DependencyError, ValidationError

logger = logging.getLogger(__name__)

# Two attempts of 4 s and a 1 s wait: 9 s at worst, inside the provider's reserve
# (gatekey.token_resource.RESERVE_SECONDS) with the undo's two DynamoDB calls.
TIMEOUT_SECONDS: Final = 4.0
ATTEMPTS: Final = 2
WAIT_SECONDS: Final = 1.0
# Where an answer may go: CloudFormation's presigned S3 URLs, and loopback for tests and the
# local stack (as ISSUER allows).
_ALLOWED: Final = ("https://", "http://127.0.0.1:", "http://localhost:")


def worst_case() -> float:
    return ATTEMPTS * TIMEOUT_SECONDS + (ATTEMPTS - 1) * WAIT_SECONDS


def send_response(url: str, body: Mapping[str, Any]) -> None:
    """PUT `body` (JSON) to `url`, as CloudFormation's presigned URL expects it (an empty
    Content-Type, which the signature covers). Raise DependencyError when no attempt was
    accepted: Lambda then retries the invocation, and the request is answered again."""
    if not url.startswith(_ALLOWED):
        raise ValidationError("ResponseURL", "must be an https:// URL")
    data = json.dumps(body).encode()
    failure = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(WAIT_SECONDS)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, data=data, method="PUT", headers={"Content-Type": ""}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
                if 200 <= answer.status < 300:
                    return
                failure = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            failure = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            failure = type(exc).__name__
        logger.warning("answer to CloudFormation not accepted", extra={"failure": failure})
    raise DependencyError(f"cannot answer CloudFormation: {failure}")
