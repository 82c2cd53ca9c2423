"""Example bot: a nightly export that calls an API behind Gatekey with the service token its
own stack declares (`Custom::GatekeyServiceToken`, template.yaml).

The bot never sees the secret in its template, environment or logs: Gatekey writes the Client
ID and Secret into the stack's delivery secret when it creates the token (and again at each
automatic rotation), and `SecretsManagerCredentials` reads that secret when first needed, every
15 minutes after, and after a 401. The credentials are exchanged for an access token at
Gatekey's token endpoint (JWT mode), cached and renewed before it expires.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from gatekey_client import SecretsManagerCredentials
from gatekey_client.requests_auth import GatekeyRequestsAuth

# Built once per container, so the token and the read secret are reused between runs.
auth = GatekeyRequestsAuth(
    credentials=SecretsManagerCredentials(os.environ["GATEKEY_SECRET_ARN"]),
    token_url=os.environ["GATEKEY_TOKEN_URL"],
    scopes=["reports:read"],
)
session = requests.Session()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    url = f"{os.environ['API_BASE_URL'].rstrip('/')}/reports/nightly"
    response = session.get(url, auth=auth, timeout=10)
    response.raise_for_status()
    return {"status": response.status_code, "bytes": len(response.content)}
