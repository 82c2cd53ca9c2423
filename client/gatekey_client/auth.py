"""What both auth classes share: the credentials source, validated settings, the token cache,
and the one retry after a refusal. Imports no HTTP library."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gatekey_client.sources import Credentials, CredentialsSource, StaticCredentials
from gatekey_client.tokens import (
    AccessToken,
    ClientConfig,
    Clock,
    HeaderStyle,
    PostForm,
    TokenCache,
    TokenRequestError,
    logger,
)

if TYPE_CHECKING:
    from gatekey_client.dpop import DPoPKey, DPoPNonceStore, PostFormWithHeaders

# Stands in for the credentials while the settings are checked, before any source is read.
_PLACEHOLDER = "placeholder"


class CredentialsAuth:
    """Headers mode (``header_style``: Gatekey's headers, Access's, or Basic) or, with a
    ``token_url``, JWT mode (a cached Bearer token from the token endpoint).

    The credentials are ``client_id`` and ``client_secret``, or a ``credentials`` source
    (``EnvironmentCredentials``, ``SecretsManagerCredentials``) read when first needed.

    After a 401 the request is sent again once, never more: in JWT mode with a new token (if the
    token endpoint then refuses the credentials, the source is read again and the token asked
    for once more); in headers mode only if reading the source again gave other credentials.
    A second 401 is returned to the caller. A subclass sets ``post_form`` to its HTTP library's
    way of posting the token request.
    """

    post_form: PostForm
    post_form_with_headers: PostFormWithHeaders  # DPoP's token request reads DPoP-Nonce

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        credentials: CredentialsSource | None = None,
        token_url: str | None = None,
        scopes: Sequence[str] = (),
        header_style: HeaderStyle = "gatekey",
        refresh_margin: float | None = None,
        timeout: float = 10.0,
        clock: Clock = time.monotonic,
        dpop_key: DPoPKey | None = None,
    ) -> None:
        if credentials is None:
            if client_id is None or client_secret is None:
                raise ValueError("give client_id and client_secret, or a credentials source")
            credentials = StaticCredentials(client_id, client_secret)
        elif client_id is not None or client_secret is not None:
            raise ValueError("give client_id and client_secret, or credentials, not both")
        # Checks every setting now, whatever the source will hold.
        self._settings = ClientConfig(
            _PLACEHOLDER,
            _PLACEHOLDER,
            token_url=token_url,
            scopes=scopes,
            header_style=header_style,
            timeout=timeout,
        )
        self._source = credentials
        # DPoP (gatekey_client.dpop): DPoP-bound tokens, and a fresh proof on every request.
        self._dpop: tuple[DPoPKey, DPoPNonceStore] | None = None
        if dpop_key is not None:
            if token_url is None:
                raise ValueError("dpop_key needs a token_url (DPoP binds access tokens)")
            from gatekey_client.dpop import DPoPNonceStore

            self._dpop = (dpop_key, DPoPNonceStore())
        # The settings with the credentials last used, in one attribute (swapped, not mutated).
        self._current: tuple[Credentials, ClientConfig] | None = None
        self._cache = (
            TokenCache(self._fetch_token, refresh_margin=refresh_margin, clock=clock)
            if token_url is not None
            else None
        )

    def _config(self, credentials: Credentials) -> ClientConfig:
        current = self._current
        if current is not None and current[0] is credentials:
            return current[1]
        config = dataclasses.replace(
            self._settings,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
        )
        self._current = (credentials, config)
        return config

    def _fetch_token(self) -> AccessToken:
        """The token request, with the source's credentials; if the token endpoint refuses them
        (401, e.g. a rotation whose grace ended), read the source again and ask once more."""
        credentials = self._source.get()
        try:
            return self._fetch_with(self._config(credentials))
        except TokenRequestError as exc:
            if exc.status != 401:
                raise
            fresh = self._source.refresh(credentials)
            if fresh.same_pair(credentials):
                raise
            logger.debug("the token endpoint refused the credentials; trying the new ones once")
            return self._fetch_with(self._config(fresh))

    def _fetch_with(self, config: ClientConfig) -> AccessToken:
        if self._dpop is None:
            return config.fetch_token(self.post_form)
        from gatekey_client.dpop import fetch_dpop_token

        key, nonces = self._dpop
        return fetch_dpop_token(config, key, self.post_form_with_headers, nonces)

    def _token_headers(self, token: str, method: str, url: str) -> dict[str, str]:
        """JWT mode's headers for one request: the Bearer token, or with DPoP the bound token
        and a fresh proof for this method and URL."""
        if self._dpop is None:
            return {"Authorization": f"Bearer {token}"}
        key, nonces = self._dpop
        proof = key.proof(method, url, access_token=token, nonce=nonces.get(url))
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    # Headers mode -------------------------------------------------------------------------

    def _headers(self, credentials: Credentials) -> dict[str, str]:
        return self._config(credentials).static_headers()

    def _replacement(
        self, sent: Credentials, request_headers: Mapping[str, str | bytes]
    ) -> dict[str, str] | None:
        """After a 401 in headers mode: the headers to send the request again with, or None.

        None if the request no longer carries the credentials (a redirect to another origin
        removed them), or if reading the source again gave the same credentials."""
        headers = self._headers(sent)
        if any(request_headers.get(name) != value for name, value in headers.items()):
            return None
        fresh = self._source.refresh(sent)
        if fresh.same_pair(sent):
            return None
        logger.debug("the resource answered 401; retrying once with the source's new credentials")
        return self._headers(fresh)

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"{type(self).__name__}({self._source!r}, token_url={s.token_url!r},"
            f" scopes={s.scopes!r}, header_style={s.header_style!r})"
        )
