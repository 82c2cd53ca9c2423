"""Gatekey auth for ``httpx``: ``httpx.Client(auth=GatekeyHttpxAuth(...))``, sync or async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence

import httpx

from gatekey_client.tokens import (
    ClientConfig,
    Clock,
    HeaderStyle,
    TokenCache,
    TokenRequestError,
    logger,
)


def _post_form(
    url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    try:
        # A short-lived client: tokens are fetched rarely, and it never follows redirects.
        response = httpx.post(url, headers=headers, data=form, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TokenRequestError(f"no response ({type(exc).__name__})") from exc
    return response.status_code, response.content


class GatekeyHttpxAuth(httpx.Auth):
    """Headers mode by default; JWT mode (a cached Bearer token) when ``token_url`` is given.

    ``header_style`` applies to headers mode only; ``scopes``, ``refresh_margin``, ``timeout``
    and ``clock`` to JWT mode only. The async flow fetches tokens in a worker thread
    (``asyncio.to_thread``), so it needs asyncio, and shares the cache with the sync flow.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        scopes: Sequence[str] = (),
        header_style: HeaderStyle = "gatekey",
        refresh_margin: float | None = None,
        timeout: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._config = ClientConfig(
            client_id,
            client_secret,
            token_url=token_url,
            scopes=scopes,
            header_style=header_style,
            timeout=timeout,
        )
        self._cache = (
            TokenCache(
                lambda: self._config.fetch_token(_post_form),
                refresh_margin=refresh_margin,
                clock=clock,
            )
            if token_url is not None
            else None
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        if self._cache is None:
            request.headers.update(self._config.static_headers())
            yield request
            return
        token = self._cache.get()
        response = yield _with_bearer(request, token)
        if response.status_code == 401:
            logger.debug("the resource answered 401; retrying once with a new token")
            yield _with_bearer(request, self._cache.renew(token))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._cache is None:
            request.headers.update(self._config.static_headers())
            yield request
            return
        # The fast path stays on the event loop; anything that may lock or fetch (blocking I/O)
        # runs in a worker thread.
        token = self._cache.cached()
        if token is None:
            token = await asyncio.to_thread(self._cache.get)
        response = yield _with_bearer(request, token)
        if response.status_code == 401:
            logger.debug("the resource answered 401; retrying once with a new token")
            yield _with_bearer(request, await asyncio.to_thread(self._cache.renew, token))


def _with_bearer(request: httpx.Request, token: str) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token}"
    return request
