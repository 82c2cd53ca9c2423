"""Gatekey auth for ``requests``: ``requests.get(url, auth=GatekeyRequestsAuth(...))``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from gatekey_client.auth import CredentialsAuth
from gatekey_client.sources import Credentials
from gatekey_client.tokens import CREDENTIAL_HEADERS, DEFAULT_PORTS, TokenRequestError, logger


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


def _post_form_with_headers(
    url: str, *, headers: Mapping[str, str], form: Mapping[str, str], timeout: float
) -> tuple[int, bytes, Mapping[str, str]]:
    try:
        response = requests.post(
            url, headers=dict(headers), data=dict(form), timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise TokenRequestError(f"no response ({type(exc).__name__})") from exc
    answer = {name.lower(): value for name, value in response.headers.items()}
    return response.status_code, response.content, answer


def _sent_token(request: requests.PreparedRequest) -> str | None:
    value = request.headers.get("Authorization")
    scheme, _, token = value.partition(" ") if isinstance(value, str) else ("", "", "")
    return token if scheme in ("Bearer", "DPoP") and token else None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port  # raises ValueError if the port is not a number in range
    return parts.scheme, parts.hostname, DEFAULT_PORTS.get(parts.scheme) if port is None else port


def _stays_on_origin(url: str, location: str) -> bool:
    try:
        # Resolved as Session.resolve_redirects does (urljoin, which also handles "//host").
        return _origin(urljoin(url, location)) == _origin(url)
    except ValueError:  # an unparsable host or port: counted as another origin
        return False


def _strip_credentials_on_cross_origin_redirect(response: requests.Response, **kwargs: Any) -> None:
    """Remove the headers-mode credentials from a request redirected to another origin.

    ``Session.resolve_redirects`` builds each next hop as a copy of this very request and, of
    the credentials, drops only Authorization, so these headers must go before that copy is
    made. Once gone, they stay gone for the rest of the chain, even if it comes back.
    """
    if response.is_redirect and not _stays_on_origin(response.url, response.headers["location"]):
        logger.debug("redirected to another origin; not forwarding the client credentials")
        for name in CREDENTIAL_HEADERS:
            response.request.headers.pop(name, None)


def _replayable(request: requests.PreparedRequest) -> bool:
    # A streamed body was consumed by the first attempt and cannot be sent again.
    return isinstance(request.body, str | bytes | None)


@contextmanager
def _closed_on_error(response: requests.Response) -> Iterator[None]:
    """A token request or a credentials read that raises leaves the refused response to no
    one: release its connection rather than leave the socket to the garbage collector."""
    try:
        yield
    except BaseException:
        response.close()
        raise


def _resend(response: requests.Response, retry: requests.PreparedRequest, **kwargs: Any) -> Any:
    """Send ``retry`` in place of the refused request, through the adapter rather than the
    session, so the response hooks do not run again: one retry, never a loop."""
    response.close()
    new = response.connection.send(retry, **kwargs)
    new.history.append(response)
    new.request = retry
    return new


class GatekeyRequestsAuth(CredentialsAuth, requests.auth.AuthBase):
    """Headers mode by default; JWT mode (a cached Bearer token) when ``token_url`` is given.

    The credentials: ``client_id`` and ``client_secret``, or ``credentials=`` a source
    (``gatekey_client.EnvironmentCredentials()``, ``SecretsManagerCredentials(secret_id)``).
    ``header_style`` (``gatekey``, ``cloudflare``, ``basic``) applies to headers mode only;
    ``scopes``, ``refresh_margin``, ``timeout`` and ``clock`` to JWT mode only.

    A 401 is retried once (see ``CredentialsAuth``); a request whose body was a stream is not.

    Redirects: the credential headers follow a redirect only to the origin (scheme, host and
    port) of the original request. The Bearer token and Basic are requests' Authorization
    header, which requests itself drops when a redirect leaves the origin (bar an http to https
    upgrade).
    """

    post_form = staticmethod(_post_form)
    post_form_with_headers = staticmethod(_post_form_with_headers)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._cache is None:
            credentials = self._source.get()
            r.headers.update(self._headers(credentials))
            # Runs on every hop's response: the redirect copies of this request share its hooks.
            r.register_hook("response", _strip_credentials_on_cross_origin_redirect)
            r.register_hook("response", self._retry_headers_on_401(credentials))
            return r
        r.headers.update(self._token_headers(self._cache.get(), r.method or "GET", r.url or ""))
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_headers_on_401(self, sent: Credentials) -> Callable[..., Any]:
        def hook(response: requests.Response, **kwargs: Any) -> Any:
            """Read the credentials source again and, if it holds new credentials (a rotation),
            resend the request once with them."""
            if response.status_code != 401 or not _replayable(response.request):
                return response
            with _closed_on_error(response):
                headers = self._replacement(sent, response.request.headers)
            if headers is None:
                return response
            retry = response.request.copy()
            retry.headers.update(headers)
            return _resend(response, retry, **kwargs)

        return hook

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> Any:
        """Drop a token the resource rejected, fetch a new one and resend the request once."""
        sent = _sent_token(response.request)
        if (
            response.status_code != 401
            or sent is None
            or self._cache is None
            or not _replayable(response.request)
        ):
            return response
        logger.debug("the resource answered 401; retrying once with a new token")
        with _closed_on_error(response):
            token = self._cache.renew(sent)
        retry = response.request.copy()
        retry.headers.update(self._token_headers(token, retry.method or "GET", retry.url or ""))
        return _resend(response, retry, **kwargs)
