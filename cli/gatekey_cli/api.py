"""The admin API client: finds the endpoint, signs each request with SigV4, decodes answers."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

ENDPOINT_VARIABLE: Final = "GATEKEY_ENDPOINT"
STACK_VARIABLE: Final = "GATEKEY_STACK"
DEFAULT_STACK: Final = "gatekey"
TIMEOUT: Final = 30

# Exit codes: the one list, printed by `gatekey --help` and in the README.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # the API refused the request, or AWS / the network failed
EXIT_USAGE: Final = 2  # a bad flag or value, caught before any request (argparse's code too)
EXIT_NOT_FOUND: Final = 3  # no such token (HTTP 404)
EXIT_DENIED: Final = 4  # the admin API refused the caller (HTTP 403): credentials or region
EXIT_ALREADY_REVOKED: Final = 5  # `revoke` of a token already revoked: nothing changed
EXIT_INTERRUPTED: Final = 130  # Ctrl-C, as shells report it
EXIT_CODES: Final = {
    EXIT_OK: "success",
    EXIT_ERROR: "the API refused the request (400, 409, 422, 5xx), or AWS or the network failed",
    EXIT_USAGE: "usage: a bad flag or value (an endpoint without a scheme, a name for an id)",
    EXIT_NOT_FOUND: "no such token (404)",
    EXIT_DENIED: "the admin API refused the caller (403): check credentials and region",
    EXIT_ALREADY_REVOKED: "revoke: the token was already revoked (nothing changed)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

# https://{api}.execute-api.{region}.amazonaws.com[.cn]/...
_EXECUTE_API_HOST: Final = re.compile(
    r"[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?"
)


class CliError(Exception):
    """One line for the user; the CLI exits with `exit_code`."""

    exit_code: int = EXIT_ERROR


class UsageError(CliError):
    exit_code = EXIT_USAGE


# Not frozen: raising sets __traceback__ (and a context manager's exit, __context__) on it.
@dataclass(eq=False)
class ApiError(CliError):
    status: int
    code: str
    message: str
    hint: str = ""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return {403: EXIT_DENIED, 404: EXIT_NOT_FOUND}.get(self.status, EXIT_ERROR)

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status}): {self.message}" + (
            f"; {self.hint}" if self.hint else ""
        )


def check_endpoint(url: str, given_as: str = "--endpoint") -> str:
    """The admin API's base URL, as the AdminApiUrl output gives it: scheme, host and at most
    the stage (`/v1`). Anything else is a one-line UsageError that says what to type."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise UsageError(f"{given_as} {url!r} is not a URL: try https://HOST/STAGE") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        guess = url.strip().split("://")[-1].lstrip("/")
        local = guess.split(":")[0].split("/")[0] in ("127.0.0.1", "localhost", "[::1]")
        raise UsageError(
            f"{given_as} needs http:// or https:// and a host: try "
            f"{given_as}={'http' if local else 'https'}://{guess}"
        )
    segments = [s for s in parts.path.split("/") if s]
    base = f"{parts.scheme}://{parts.netloc}"
    if "admin" in segments:  # a route pasted where the base URL goes
        before = "".join("/" + s for s in segments[: segments.index("admin")])
        raise UsageError(
            f"{given_as} is the admin API's base URL, without /admin/...: try "
            f"{given_as}={base}{before}"
        )
    if len(segments) > 1 or parts.query or parts.fragment:
        stage = f"/{segments[0]}" if segments else ""
        raise UsageError(
            f"{given_as} takes the base URL (scheme, host and stage only, as the stack's "
            f"AdminApiUrl output): try {given_as}={base}{stage}"
        )
    return base + (f"/{segments[0]}" if segments else "")


def region_of(url: str) -> str | None:
    """The region of an execute-api URL (the one to sign for), else None."""
    match = _EXECUTE_API_HOST.fullmatch(urllib.parse.urlsplit(url).hostname or "")
    return match.group(1) if match else None


def stack_name(stack: str | None) -> str:
    return stack or os.environ.get(STACK_VARIABLE) or DEFAULT_STACK


def stack_outputs(session: boto3.Session, name: str) -> dict[str, str]:
    """The outputs of a deployed stack, read with the caller's credentials and region."""
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        region = session.region_name or "no region set"
        raise CliError(
            f"no endpoint: pass --endpoint, set {ENDPOINT_VARIABLE}, or deploy stack {name!r} "
            f"(CloudFormation, {region}: {error.get('Code', 'error')}: "
            f"{error.get('Message', '')})".rstrip()
        ) from None
    except BotoCoreError as exc:
        raise CliError(
            f"no endpoint: pass --endpoint, set {ENDPOINT_VARIABLE}, or name a stack with "
            f"--stack and a region ({exc})"
        ) from None
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in outputs}


def resolve_endpoint(session: boto3.Session, endpoint: str | None, stack: str | None) -> str:
    """--endpoint, else $GATEKEY_ENDPOINT, else the AdminApiUrl output of the deployed stack
    (--stack, else $GATEKEY_STACK, else "gatekey")."""
    if endpoint:
        return check_endpoint(endpoint, "--endpoint")
    if stack is None and os.environ.get(ENDPOINT_VARIABLE):
        return check_endpoint(os.environ[ENDPOINT_VARIABLE], ENDPOINT_VARIABLE)
    name = stack_name(stack)
    outputs = stack_outputs(session, name)
    if "AdminApiUrl" not in outputs:
        raise CliError(f"stack {name!r} has no AdminApiUrl output: is it a Gatekey stack?")
    return check_endpoint(outputs["AdminApiUrl"], f"stack {name!r} output AdminApiUrl")


def token_path(base: str, client_id: str, suffix: str = "") -> str:
    """The path of one token: its id URL-encoded as one path segment."""
    return f"{base}/{urllib.parse.quote(client_id, safe='')}{suffix}"


class AdminClient:
    def __init__(self, endpoint: str, session: boto3.Session, region: str | None = None) -> None:
        self.endpoint = endpoint
        credentials = session.get_credentials()
        if credentials is None:
            raise CliError(
                "no AWS credentials found (environment, profile or instance role): "
                "run `aws configure`, or set AWS_PROFILE"
            )
        self._credentials = credentials.get_frozen_credentials()
        # The region to sign for: --region, else the API's own (from its URL), else the
        # session's: a signature for another region than the API's is refused with a 403.
        self.region = region or region_of(endpoint) or session.region_name or "us-east-1"

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        url = self.endpoint + path
        if query:
            url += "?" + urllib.parse.urlencode(sorted(query.items()))
        data = None if body is None else json.dumps(body).encode()
        request = AWSRequest(method=method, url=url, data=data)
        request.headers["Content-Type"] = "application/json"
        SigV4Auth(self._credentials, "execute-api", self.region).add_auth(request)
        prepared = urllib.request.Request(  # noqa: S310 - the admin API's own URL
            url, data=data, method=method, headers=dict(request.headers.items())
        )
        try:
            with urllib.request.urlopen(prepared, timeout=TIMEOUT) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc.code, exc.read().decode(errors="replace")) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach {self.endpoint}: {reason}") from None
        return json.loads(text) if text else None

    def _api_error(self, status: int, text: str) -> ApiError:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body and "message" in body:
            code, message = str(body["code"]), str(body["message"])
        elif isinstance(body, dict) and "message" in body:  # API Gateway's own answers
            code, message = "http_error", str(body["message"])
        else:
            code, message = "http_error", text[:200] or "no body"
        hint = ""
        if status == 403:
            hint = (
                f"check your AWS credentials (`aws sts get-caller-identity`) and the region "
                f"(signed for {self.region}; --region or AWS_REGION to change it), and that "
                "your IAM policy allows execute-api:Invoke on the admin API"
            )
        return ApiError(status, code, message, hint)
