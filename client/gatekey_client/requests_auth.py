"""Gatekey auth for ``requests``: ``requests.get(url, auth=GatekeyRequestsAuth(...))``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

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
        # No redirects: the credentials are for this endpoint only.
        response = requests.post(
            url, headers=dict(headers), data=dict(form), timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise TokenRequestError(f"no response ({type(exc).__name__})") from exc
    return response.status_code, response.content


def _sent_token(request: requests.PreparedRequest) -> str | None:
    value = request.headers.get("Authorization")
    scheme, _, token = value.partition(" ") if isinstance(value, str) else ("", "", "")
    return token if scheme == "Bearer" and token else None


class GatekeyRequestsAuth(requests.auth.AuthBase):
    """Headers mode by default; JWT mode (a cached Bearer token) when ``token_url`` is given.

    ``header_style`` applies to headers mode only; ``scopes``, ``refresh_margin``, ``timeout``
    and ``clock`` to JWT mode only.
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

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._cache is None:
            r.headers.update(self._config.static_headers())
            return r
        r.headers["Authorization"] = f"Bearer {self._cache.get()}"
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Drop a token the resource rejected, fetch a new one and resend the request once."""
        sent = _sent_token(response.request)
        # A streamed body was consumed by the first attempt and cannot be sent again.
        replayable = isinstance(response.request.body, str | bytes | None)
        if response.status_code != 401 or sent is None or self._cache is None or not replayable:
            return response
        logger.debug("the resource answered 401; retrying once with a new token")
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {self._cache.renew(sent)}"
        response.close()
        # Sent through the adapter, not the session, so this hook does not run again: no loop.
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new
