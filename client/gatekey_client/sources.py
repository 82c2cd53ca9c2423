"""Where a bot's Client ID and Secret come from: its arguments, the environment, or the AWS
Secrets Manager secret that Gatekey delivers automatically rotated secrets into.

A source answers ``get()`` (the credentials to use now) and ``refresh(rejected)`` (called after
a resource or the token endpoint refused ``rejected``: read the source again, at most once per
``min_reread`` seconds, and return what it holds now, which may be the same credentials).
Nothing here imports boto3 until a Secrets Manager source reads its secret.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from gatekey_client.tokens import Clock, check_credential, check_number, logger

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ENV_CLIENT_ID: Final = "GATEKEY_CLIENT_ID"
ENV_CLIENT_SECRET: Final = "GATEKEY_CLIENT_SECRET"
DEFAULT_REFRESH_INTERVAL: Final = 900.0  # seconds: a Secrets Manager secret is read again
DEFAULT_MIN_REREAD: Final = 5.0  # seconds: the least time between two reads after a refusal


class CredentialsError(Exception):
    """The credentials could not be read, or what was read is not a Client ID and Secret.

    The message names the variable or secret and what is wrong; it never holds a secret value.
    """


@dataclass(frozen=True)
class Credentials:
    """A Client ID and Secret; ``repr()`` omits the secret. ``version`` names where they came
    from (the secret's VersionId for Secrets Manager), for logs."""

    client_id: str
    client_secret: str = field(repr=False)
    version: str | None = None

    def __post_init__(self) -> None:
        check_credential("client_id", self.client_id)
        check_credential("client_secret", self.client_secret)

    def same_pair(self, other: Credentials) -> bool:
        return (self.client_id, self.client_secret) == (other.client_id, other.client_secret)


class CredentialsSource(Protocol):
    def get(self) -> Credentials:
        """The credentials to use now (a source may read them again when they are due)."""
        ...

    def cached(self) -> Credentials | None:
        """The credentials held, if no read is due: never blocks, never does I/O."""
        ...

    def refresh(self, rejected: Credentials) -> Credentials:
        """After ``rejected`` was refused: read the source again unless it was read within
        ``min_reread`` seconds or already holds others, and return what it holds."""
        ...


class StaticCredentials:
    """Credentials given as arguments: ``refresh`` has nothing to read again."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._credentials = Credentials(client_id, client_secret)

    def get(self) -> Credentials:
        return self._credentials

    def cached(self) -> Credentials:
        return self._credentials

    def refresh(self, rejected: Credentials) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentials(client_id={self._credentials.client_id!r})"


class _ReadingSource:
    """A source that reads its credentials, keeps them, and reads again when due (every
    ``refresh_interval`` seconds, if set) or after a refusal (at most once per ``min_reread``).

    One lock serialises reads, so concurrent callers share one read; the held credentials are
    one attribute, so a lock-free reader never sees a half-updated pair.
    """

    def __init__(self, *, refresh_interval: float | None, min_reread: float, clock: Clock) -> None:
        self._interval = (
            None if refresh_interval is None else check_number("refresh_interval", refresh_interval)
        )
        self._min_reread = check_number("min_reread", min_reread, allow_zero=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._entry: tuple[Credentials, float] | None = None  # (credentials, read at)

    def _read(self) -> Credentials:
        raise NotImplementedError

    def cached(self) -> Credentials | None:
        entry = self._entry
        if entry is None:
            return None
        if self._interval is not None and self._clock() - entry[1] >= self._interval:
            return None
        return entry[0]

    def get(self) -> Credentials:
        credentials = self.cached()
        if credentials is not None:
            return credentials
        with self._lock:
            credentials = self.cached()  # another thread may have read while this one waited
            if credentials is not None:
                return credentials
            return self._store(self._read())

    def refresh(self, rejected: Credentials) -> Credentials:
        with self._lock:
            entry = self._entry
            if entry is not None and (
                not entry[0].same_pair(rejected) or self._clock() - entry[1] < self._min_reread
            ):
                return entry[0]  # already replaced, or read a moment ago
            logger.debug("credentials refused; reading %s again", self._name())
            return self._store(self._read())

    def _store(self, credentials: Credentials) -> Credentials:
        previous = self._entry
        if previous is not None and not previous[0].same_pair(credentials):
            logger.info(
                "%s holds new credentials (client_id %s, version %s)",
                self._name(),
                credentials.client_id,
                credentials.version,
            )
        self._entry = (credentials, self._clock())
        return credentials

    def _name(self) -> str:
        raise NotImplementedError


class EnvironmentCredentials(_ReadingSource):
    """``GATEKEY_CLIENT_ID`` and ``GATEKEY_CLIENT_SECRET`` (or the names given), read when
    first needed and again after a refusal (a process can change its own environment)."""

    def __init__(
        self,
        id_variable: str = ENV_CLIENT_ID,
        secret_variable: str = ENV_CLIENT_SECRET,
        *,
        environ: Mapping[str, str] | None = None,
        min_reread: float = DEFAULT_MIN_REREAD,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(refresh_interval=None, min_reread=min_reread, clock=clock)
        self._variables = (id_variable, secret_variable)
        self._environ = os.environ if environ is None else environ

    def _read(self) -> Credentials:
        values = []
        for variable in self._variables:
            value = self._environ.get(variable)
            if not value:
                raise CredentialsError(f"the environment variable {variable} is not set or empty")
            values.append(value)
        try:
            return Credentials(values[0], values[1], version="environment")
        except ValueError:
            raise CredentialsError(
                f"{' or '.join(self._variables)} has surrounding whitespace or control characters"
            ) from None

    def _name(self) -> str:
        return f"the environment ({', '.join(self._variables)})"

    def __repr__(self) -> str:
        return f"EnvironmentCredentials({self._variables[0]!r}, {self._variables[1]!r})"


class SecretsManagerCredentials(_ReadingSource):
    """The secret Gatekey delivers an automatic rotation into (``--rotation auto``): its
    AWSCURRENT version, JSON ``{"client_id": "gk_...", "client_secret": "gks_..."}``.

    Read when first needed, again every ``refresh_interval`` seconds (900 by default) and after
    a refusal (at most once per ``min_reread`` seconds); the answer's VersionId tells whether the
    secret changed. ``client`` is a boto3 Secrets Manager client; without one, one is built from
    boto3's default session (``region_name`` if given) at the first read. The bot needs
    ``secretsmanager:GetSecretValue`` on the secret (and ``kms:Decrypt`` if it is encrypted
    with a customer-managed key).
    """

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        region_name: str | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        min_reread: float = DEFAULT_MIN_REREAD,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(refresh_interval=refresh_interval, min_reread=min_reread, clock=clock)
        if not isinstance(secret_id, str) or not secret_id:
            raise ValueError("secret_id must be a secret's name or ARN")
        self._secret_id = secret_id
        self._client = client
        self._region_name = region_name

    def _secrets_manager(self) -> SecretsManagerClient:
        if self._client is None:
            try:
                import boto3  # optional: pip install 'gatekey-client[aws]'
            except ImportError:
                raise CredentialsError(
                    "reading a Secrets Manager secret needs boto3:"
                    " pip install 'gatekey-client[aws]'"
                ) from None
            self._client = boto3.client("secretsmanager", region_name=self._region_name)
        return self._client

    def _read(self) -> Credentials:
        client = self._secrets_manager()
        try:
            # The stage named, though it is the default: the version the delivery made current.
            answer = client.get_secret_value(SecretId=self._secret_id, VersionStage="AWSCURRENT")
        except Exception as exc:  # noqa: BLE001 - botocore's errors, without importing botocore
            code = _error_code(exc)
            raise CredentialsError(
                f"cannot read the secret {self._secret_id}: {code or type(exc).__name__}"
            ) from None
        version = answer.get("VersionId")
        return _parse_secret(self._secret_id, answer.get("SecretString"), version)

    def _name(self) -> str:
        return f"the secret {self._secret_id}"

    def __repr__(self) -> str:
        return f"SecretsManagerCredentials({self._secret_id!r})"


def _error_code(exc: Exception) -> str | None:
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _parse_secret(secret_id: str, text: object, version: str | None) -> Credentials:
    # No exception raised here chains the parsing error: json's keeps the document it parsed.
    where = f"the secret {secret_id} (version {version})"
    if not isinstance(text, str):
        raise CredentialsError(f"{where} has no SecretString")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CredentialsError(f'{where} is not JSON {{"client_id": ..., "client_secret": ...}}')
    client_id, client_secret = data.get("client_id"), data.get("client_secret")
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"{where} has no {name}")
    try:
        return Credentials(str(client_id), str(client_secret), version=version)
    except ValueError:
        raise CredentialsError(
            f"{where}: client_id or client_secret has surrounding whitespace or control characters"
        ) from None
