"""Gatekey auth for ``httpx``: ``httpx.Client(auth=GatekeyHttpxAuth(...))``, sync or async."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Mapping

import httpx

from gatekey_client.auth import CredentialsAuth
from gatekey_client.tokens import CREDENTIAL_HEADERS, DEFAULT_PORTS, TokenRequestError, logger


def _post_form(
    url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    try:
        # A short-lived client: tokens are fetched rarely, and it never follows redirects.
        response = httpx.post(url, headers=headers, data=form, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TokenRequestError(f"no response ({type(exc).__name__})") from exc
    return response.status_code, response.content


def _post_form_with_headers(
    url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
) -> tuple[int, bytes, Mapping[str, str]]:
    try:
        response = httpx.post(url, headers=headers, data=form, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TokenRequestError(f"no response ({type(exc).__name__})") from exc
    answer = {name.lower(): value for name, value in response.headers.items()}
    return response.status_code, response.content, answer


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, DEFAULT_PORTS.get(url.scheme) if url.port is None else url.port


def _stays_on_origin(url: httpx.URL, location: str) -> bool:
    try:
        target = httpx.URL(location)
    except httpx.InvalidURL:  # httpx will not follow it either
        return False
    if target.scheme and not target.host:
        # httpx sends such a malformed Location to the request's host on the scheme's default
        # port; counted as another origin rather than mirroring that rule.
        return False
    return _origin(url.join(target)) == _origin(url)


def strip_credentials_on_redirect(response: httpx.Response) -> None:
    """A response event hook for ``httpx.Client(follow_redirects=True, ...)``: the headers-mode
    credentials follow a redirect only to the origin (scheme, host, port) of the request.

    httpx builds each next hop from this request's headers right after the response hooks run,
    so removing the credentials here keeps them from the new origin, and from every later hop.
    """
    request = response.request
    if response.has_redirect_location and not _stays_on_origin(
        request.url, response.headers["Location"]
    ):
        logger.debug("redirected to another origin; not forwarding the client credentials")
        for name in CREDENTIAL_HEADERS:
            request.headers.pop(name, None)


async def async_strip_credentials_on_redirect(response: httpx.Response) -> None:
    """``strip_credentials_on_redirect`` for ``httpx.AsyncClient``, which awaits its hooks."""
    strip_credentials_on_redirect(response)


class GatekeyHttpxAuth(CredentialsAuth, httpx.Auth):
    """Headers mode by default; JWT mode (a cached Bearer token) when ``token_url`` is given.

    The credentials: ``client_id`` and ``client_secret``, or ``credentials=`` a source
    (``gatekey_client.EnvironmentCredentials()``, ``SecretsManagerCredentials(secret_id)``).
    ``header_style`` (``gatekey``, ``cloudflare``, ``basic``) applies to headers mode only;
    ``scopes``, ``refresh_margin``, ``timeout`` and ``clock`` to JWT mode only. A 401 is
    retried once (see ``CredentialsAuth``). The async flow fetches tokens and reads credentials
    sources in a worker thread (``asyncio.to_thread``), so it needs asyncio, and shares the
    cache with the sync flow.

    Redirects: httpx follows them beneath the auth flow, which never sees them, and copies
    every header but Authorization to the next hop, whatever its origin. With
    ``follow_redirects=True`` the headers-mode credentials would therefore reach any host the
    API redirects to: keep httpx's default (``follow_redirects=False``), or install
    ``strip_credentials_on_redirect`` (``async_strip_credentials_on_redirect`` for
    ``httpx.AsyncClient``) as a response event hook. This auth adds the credentials to every
    request sent with it, so do not send a ``next_request`` for another origin with it either.
    The Bearer token of JWT mode is an Authorization header, which httpx drops when a redirect
    leaves the origin (bar an http to https upgrade).
    """

    post_form = staticmethod(_post_form)
    post_form_with_headers = staticmethod(_post_form_with_headers)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        if self._cache is None:
            sent = self._source.get()
            response = yield _with_headers(request, self._headers(sent))
            if response.status_code == 401:
                headers = self._replacement(sent, response.request.headers)
                if headers is not None:
                    yield _with_headers(request, headers)
            return
        token = self._cache.get()
        response = yield self._with_token(request, token)
        if response.status_code == 401:
            logger.debug("the resource answered 401; retrying once with a new token")
            yield self._with_token(request, self._cache.renew(token))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._cache is None:
            sent = self._source.cached()
            if sent is None:
                sent = await asyncio.to_thread(self._source.get)
            response = yield _with_headers(request, self._headers(sent))
            if response.status_code == 401:
                headers = await asyncio.to_thread(self._replacement, sent, response.request.headers)
                if headers is not None:
                    yield _with_headers(request, headers)
            return
        # The fast path stays on the event loop; anything that may lock or fetch (blocking I/O)
        # runs in a worker thread.
        token = self._cache.cached()
        if token is None:
            token = await asyncio.to_thread(self._cache.get)
        response = yield self._with_token(request, token)
        if response.status_code == 401:
            logger.debug("the resource answered 401; retrying once with a new token")
            yield self._with_token(request, await asyncio.to_thread(self._cache.renew, token))

    def _with_token(self, request: httpx.Request, token: str) -> httpx.Request:
        """The Bearer token, or the DPoP-bound one with a fresh proof for this request."""
        request.headers.update(self._token_headers(token, request.method, str(request.url)))
        return request


def _with_headers(request: httpx.Request, headers: dict[str, str]) -> httpx.Request:
    request.headers.update(headers)
    return request
