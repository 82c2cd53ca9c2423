"""Gatekey's client library for bots (requests and httpx auth); importable without boto3.

Neither HTTP library is imported here: import the auth class for the one you use. The
credentials are given as arguments, or as a source read when needed and again after a refusal:
``EnvironmentCredentials()`` (``GATEKEY_CLIENT_ID``, ``GATEKEY_CLIENT_SECRET``) or
``SecretsManagerCredentials(secret_id)`` (the secret an automatic rotation delivers into;
needs boto3). See client/README.md.

Headers mode with requests (the credentials go in ``Gatekey-Client-Id`` / ``-Secret``; pass
``header_style="cloudflare"`` for ``CF-Access-Client-Id`` / ``-Secret``)::

    import requests
    from gatekey_client.requests_auth import GatekeyRequestsAuth

    auth = GatekeyRequestsAuth(client_id, client_secret)
    requests.get("https://api.example.com/orders", auth=auth, timeout=10)

JWT mode with httpx (a Bearer token from the token endpoint, cached and renewed before it
expires; a failed fetch raises ``TokenRequestError``)::

    import httpx
    from gatekey_client.httpx_auth import GatekeyHttpxAuth

    auth = GatekeyHttpxAuth(
        client_id, client_secret, token_url="https://auth.example.com/token", scopes=["orders:read"]
    )
    with httpx.Client(auth=auth) as client:
        client.get("https://api.example.com/orders")

Redirects: the credentials must never reach another origin (scheme, host, port). requests
follows redirects by default; ``GatekeyRequestsAuth`` strips its headers from any hop to another
origin, and requests strips the Bearer token itself. httpx does not follow redirects unless
``follow_redirects=True``, and then copies custom headers to any origin: keep its default, or
add the response event hook that strips the credentials (in JWT mode httpx strips the Bearer
token itself)::

    from gatekey_client.httpx_auth import strip_credentials_on_redirect

    with httpx.Client(
        auth=auth,
        follow_redirects=True,
        event_hooks={"response": [strip_credentials_on_redirect]},  # async_... for AsyncClient
    ) as client:
        client.get("https://api.example.com/orders")
"""

from gatekey_client.sources import (
    Credentials,
    CredentialsError,
    CredentialsSource,
    EnvironmentCredentials,
    SecretsManagerCredentials,
    StaticCredentials,
)
from gatekey_client.tokens import AccessToken, ClientConfig, TokenCache, TokenRequestError

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "ClientConfig",
    "Credentials",
    "CredentialsError",
    "CredentialsSource",
    "EnvironmentCredentials",
    "SecretsManagerCredentials",
    "StaticCredentials",
    "TokenCache",
    "TokenRequestError",
    "__version__",
]
