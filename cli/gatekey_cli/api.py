"""The admin API client: finds the endpoint, signs each request with SigV4, decodes answers."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

ENDPOINT_VARIABLE = "GATEKEY_ENDPOINT"
STACK_VARIABLE = "GATEKEY_STACK"
TIMEOUT = 30


class CliError(Exception):
    """One line for the user; the CLI exits non-zero with it."""


@dataclass(frozen=True)
class ApiError(CliError):
    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status}): {self.message}"


def resolve_endpoint(session: boto3.Session, endpoint: str | None, stack: str | None) -> str:
    """--endpoint, else $GATEKEY_ENDPOINT, else the AdminApiUrl output of the deployed stack."""
    url = endpoint or os.environ.get(ENDPOINT_VARIABLE)
    if url:
        return url.rstrip("/")
    name = stack or os.environ.get(STACK_VARIABLE) or "gatekey"
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise CliError(
            f"no endpoint: pass --endpoint, set {ENDPOINT_VARIABLE}, or deploy stack "
            f"{name!r} ({type(exc).__name__})"
        ) from None
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == "AdminApiUrl":
            return str(output["OutputValue"]).rstrip("/")
    raise CliError(f"stack {name!r} has no AdminApiUrl output")


class AdminClient:
    def __init__(self, endpoint: str, session: boto3.Session, region: str | None = None) -> None:
        self.endpoint = endpoint
        credentials = session.get_credentials()
        if credentials is None:
            raise CliError("no AWS credentials found (environment, profile or instance role)")
        self._credentials = credentials.get_frozen_credentials()
        self._region = region or session.region_name or "us-east-1"

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        url = self.endpoint + path
        if query:
            url += "?" + urllib.parse.urlencode(sorted(query.items()))
        data = None if body is None else json.dumps(body).encode()
        request = AWSRequest(method=method, url=url, data=data)
        request.headers["Content-Type"] = "application/json"
        SigV4Auth(self._credentials, "execute-api", self._region).add_auth(request)
        prepared = urllib.request.Request(  # noqa: S310 - the admin API's own URL
            url, data=data, method=method, headers=dict(request.headers.items())
        )
        try:
            with urllib.request.urlopen(prepared, timeout=TIMEOUT) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read().decode(errors="replace")) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach {self.endpoint}: {reason}") from None
        return json.loads(text) if text else None


def _api_error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, str(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(status, "http_error", text[:200] or "no body")
