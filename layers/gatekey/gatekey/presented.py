"""What a request presents to the authorizer: the one credential read from its headers, without
I/O, by a fixed precedence among the forms a stack accepts (gatekey.credentials names them and
their headers).

A credential beside another credential header is refused (AmbiguousCredentials): API Gateway
may cache the answer under that other header, which would then let through whoever sends it
alone (docs/architecture.md, "Caching: what an Allow may depend on").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Final

from gatekey.credentials import (
    ACCESS_COOKIE,
    ACCESS_TOKEN_HEADER,
    AUTHORIZATION_SCHEMES,
    HEADER_PAIRS,
    ClientSecret,
    CredentialForm,
    decode_basic,
    parse_credentials,
)
from gatekey.errors import AmbiguousCredentials, InvalidCredentials, MissingCredentials

MAX_HEADER_VALUE: Final = 8192  # API Gateway's own limit on a header is 10 KB


@dataclass(frozen=True, slots=True)
class Presented:
    method: CredentialForm
    client_id: str | None = None
    secret: ClientSecret | None = field(default=None, repr=False)
    jwt: str | None = field(default=None, repr=False)
    proof: str | None = field(default=None, repr=False)  # the DPoP header, for the DPoP form


@dataclass(frozen=True, slots=True)
class CredentialReader:
    accepted: frozenset[CredentialForm]
    access_json_header: str
    # Refuse credentials beside an Authorization header they did not come from (config.py).
    refuse_ambiguous: bool = True
    # Headers a credential is read from (sorted): Authorization, the pairs accepted and the
    # Access JSON header if accepted. Only these count towards MAX_HEADER_VALUE.
    credential_headers: tuple[str, ...] = field(init=False)
    # Every header any credential form uses, switched off or not: what counts for ambiguity
    # (an API may cache on a pair this stack does not accept).
    known_headers: tuple[str, ...] = field(init=False)
    # What a remembered answer is keyed on: the known headers, and the Cookie header when the
    # cookie form is accepted (the answer may come from it).
    key_headers: tuple[str, ...] = field(init=False)
    _cookie: bool = field(init=False)

    def __post_init__(self) -> None:
        accepted = {"authorization"}
        for form, pair in HEADER_PAIRS.items():
            if form in self.accepted:
                accepted.update(pair)
        if CredentialForm.ACCESS_JSON in self.accepted:
            accepted.add(self.access_json_header)
        if CredentialForm.ACCESS_TOKEN_HEADER in self.accepted:
            accepted.add(ACCESS_TOKEN_HEADER)
        known = {
            "authorization",
            self.access_json_header,
            ACCESS_TOKEN_HEADER,
            *chain(*HEADER_PAIRS.values()),
        }
        # A cookie counts only when the form is on: browsers send cookies nobody asked for,
        # and an API cannot key an authorizer's cache on one cookie, only on the whole header.
        cookie = CredentialForm.ACCESS_COOKIE in self.accepted
        object.__setattr__(self, "credential_headers", tuple(sorted(accepted)))
        object.__setattr__(self, "known_headers", tuple(sorted(known)))
        object.__setattr__(
            self, "key_headers", tuple(sorted(known | ({"cookie"} if cookie else set())))
        )
        object.__setattr__(self, "_cookie", cookie)

    def read(self, headers: Mapping[str, str]) -> Presented:
        """The credentials of the request (header names in lower case). Forms switched off are
        ignored; none at all is MissingCredentials; a malformed one fails, and so does any
        credential beside another credential header (AmbiguousCredentials)."""
        if any(len(headers.get(n, "")) > MAX_HEADER_VALUE for n in self.credential_headers):
            raise InvalidCredentials("a credential header is longer than any credential")
        cookie = _access_cookie(headers.get("cookie")) if self._cookie else None
        form, used = self._form(headers, cookie)
        stray = self._stray(
            headers, used, cookie if form is not CredentialForm.ACCESS_COOKIE else None
        )
        if stray:
            raise AmbiguousCredentials(
                f"{form} credentials beside the {', '.join(sorted(stray))} header(s)"
            )
        if form in HEADER_PAIRS:
            id_header, secret_header = HEADER_PAIRS[form]
            return _pair(form, headers.get(id_header), headers.get(secret_header))
        if form is CredentialForm.ACCESS_JSON:
            return _access_json(headers[self.access_json_header].strip())
        if form is CredentialForm.ACCESS_COOKIE:
            return Presented(form, jwt=cookie)
        if form is CredentialForm.ACCESS_TOKEN_HEADER:
            return Presented(form, jwt=headers[ACCESS_TOKEN_HEADER].strip())
        value = headers["authorization"].strip().partition(" ")[2].strip()
        if form is CredentialForm.DPOP:  # the proof is checked by the authorizer (gatekey.dpop)
            return Presented(form, jwt=value, proof=headers.get("dpop"))
        return Presented(form, jwt=value) if form is CredentialForm.BEARER else _basic(value)

    def _stray(self, headers: Mapping[str, str], used: set[str], cookie: str | None) -> set[str]:
        """The credential headers (and the Access cookie, if not the one decided on) a request
        carries besides those it is decided on; with ambiguity allowed, only accepted forms'
        headers other than Authorization (it, cookies and switched-off forms pass to the API)."""
        if not self.refuse_ambiguous:
            return {n for n in self.credential_headers if n in headers} - used - {"authorization"}
        stray = {name for name in self.known_headers if name in headers} - used
        if cookie is not None:
            stray.add(f"{ACCESS_COOKIE} cookie")
        return stray

    def _form(
        self, headers: Mapping[str, str], cookie: str | None
    ) -> tuple[CredentialForm, set[str]]:
        """The first accepted credential form present, by a fixed precedence, and the headers
        it is read from; none is MissingCredentials."""
        for form, pair in HEADER_PAIRS.items():
            if form in self.accepted and any(name in headers for name in pair):
                return form, set(pair)
        json_sent = headers.get(self.access_json_header, "").strip().startswith("{")
        if CredentialForm.ACCESS_JSON in self.accepted and json_sent:
            return CredentialForm.ACCESS_JSON, {self.access_json_header}
        scheme = headers.get("authorization", "").strip().partition(" ")[0].lower()
        by_scheme = AUTHORIZATION_SCHEMES.get(scheme)
        if by_scheme is not None and by_scheme in self.accepted:
            return by_scheme, {"authorization"}
        if CredentialForm.ACCESS_TOKEN_HEADER in self.accepted and ACCESS_TOKEN_HEADER in headers:
            return CredentialForm.ACCESS_TOKEN_HEADER, {ACCESS_TOKEN_HEADER}
        if cookie is not None:
            return CredentialForm.ACCESS_COOKIE, set()
        raise MissingCredentials("no credentials in an accepted form")


def _access_cookie(header: str | None) -> str | None:
    """The CF_Authorization cookie's value, or None. Two of them are refused: which one an API
    or a proxy would read is anyone's guess."""
    if header is None or ACCESS_COOKIE not in header:
        return None
    values = [
        value.strip()
        for name, found, value in (part.strip().partition("=") for part in header.split(";"))
        if found and name == ACCESS_COOKIE
    ]
    if len(values) > 1:
        raise AmbiguousCredentials(f"{len(values)} {ACCESS_COOKIE} cookies")
    return values[0] if values else None


def _pair(method: CredentialForm, client_id: object, secret: object) -> Presented:
    return Presented(method, *parse_credentials(client_id, secret))


def _basic(value: str) -> Presented:
    return _pair(CredentialForm.BASIC, *decode_basic(value))


def _access_json(value: str) -> Presented:
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as exc:  # RecursionError: deep nesting (Python < 3.13)
        raise InvalidCredentials("the Access JSON header is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidCredentials("the Access JSON header is not an object")
    id_key, secret_key = HEADER_PAIRS[CredentialForm.ACCESS_HEADERS]  # Access's names
    return _pair(CredentialForm.ACCESS_JSON, document.get(id_key), document.get(secret_key))
