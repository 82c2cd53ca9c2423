"""Configuration: one typed object read from the environment once, at cold start.

This is the only module that reads ``os.environ``. Each field names its variable in its metadata;
tests/unit/test_config.py checks these names against template.yaml, so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, TypeVar, overload

from gatekey.credentials import CredentialForm
from gatekey.durations import DAY
from gatekey.errors import ConfigurationError
from gatekey.usage_plans import UsagePlan, UsagePlans

_REQUIRED: Any = object()
# The longest access-token lifetime the configuration allows; a retired signing key stays
# published this long (plus leeway) after its last signature, whatever the lifetime is today.
MAX_ACCESS_TOKEN_LIFETIME: Final = DAY


T = TypeVar("T")
Choice = TypeVar("Choice", bound=str)


@overload
def _env(name: str, parse: Callable[[str], T]) -> T: ...
@overload
def _env(name: str, parse: Callable[[str], T], default: T) -> T: ...
def _env(name: str, parse: Callable[[str], Any], default: Any = _REQUIRED) -> Any:
    """A field read from variable `name`: `parse` turns its text into the field's type (mypy
    holds both, and the default, to the annotation), or raises ValueError saying why not."""
    return field(metadata={"env": name, "parse": parse, "default": default})


def _one_of(*choices: Choice) -> Callable[[str], Choice]:
    def parse(raw: str) -> Choice:
        for choice in choices:
            if raw == choice:
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def _days_list(raw: str) -> tuple[int, ...]:
    parse = _bounded_int(1, 365)
    days = tuple(
        sorted({parse(part.strip()) for part in raw.split(",") if part.strip()}, reverse=True)
    )
    if not days:
        raise ValueError("must list at least one number of days, such as 30,7,1")
    return days


def _boolean(raw: str) -> bool:
    if raw.lower() not in {"true", "false"}:
        raise ValueError("must be true or false")
    return raw.lower() == "true"


def _header_name(raw: str) -> str:
    if not raw or not all(c.isascii() and (c.isalnum() or c in "-_") for c in raw):
        raise ValueError("must be an HTTP header name")
    return raw.lower()


def _issuer_url(raw: str) -> str:
    # http:// only for the local stack on loopback; anything deployed is https.
    allowed = ("https://", "http://127.0.0.1:", "http://localhost:")
    if raw and not (raw.startswith(allowed) and raw.isascii() and " " not in raw):
        raise ValueError("must be empty or an https:// URL")
    return raw.rstrip("/")


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(raw)
        if not low <= number <= high:
            raise ValueError(f"must be from {low} to {high}")
        return number

    return parse


def _stack_prefixes(raw: str) -> tuple[str, ...]:
    prefixes = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for prefix in prefixes:
        if len(prefix) > 128 or not all(c.isascii() and (c.isalnum() or c == "-") for c in prefix):
            raise ValueError("must list stack name prefixes (letters, digits, hyphens)")
    return prefixes


def _usage_plans(raw: str) -> tuple[UsagePlan, ...]:
    return tuple(UsagePlans.parse(raw))


def _non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


@dataclass(frozen=True, slots=True)
class Config:
    table_name: str = _env("TABLE_NAME", _non_empty)
    pepper_secret_arn: str = _env("PEPPER_SECRET_ARN", _non_empty)
    # Audit items expire through DynamoDB TTL; 400 days keeps a full year of history plus margin.
    audit_retention_days: int = _env("AUDIT_RETENTION_DAYS", _bounded_int(1, 3650), default=400)
    # "kms": SIGNING_KEY_ID is a KMS key; "secretsmanager": a secret holding a PEM private key.
    signing_backend: Literal["kms", "secretsmanager"] = _env(
        "SIGNING_BACKEND", _one_of("kms", "secretsmanager"), default="kms"
    )
    signing_key_id: str = _env("SIGNING_KEY_ID", _non_empty)
    access_token_lifetime_seconds: int = _env(
        "ACCESS_TOKEN_LIFETIME_SECONDS", _bounded_int(60, MAX_ACCESS_TOKEN_LIFETIME), default=3600
    )
    access_token_audience: str = _env("ACCESS_TOKEN_AUDIENCE", _non_empty, default="gatekey")
    # Empty: the token endpoint's own base URL, taken from the API Gateway request context.
    issuer: str = _env("ISSUER", _issuer_url, default="")
    # Key spec of the signing keys the rotation creates (the template's SigningKeySpec;
    # gatekey.signing.SigningKeySpec).
    signing_key_spec: Literal["RSA_2048", "ECC_NIST_P256"] = _env(
        "SIGNING_KEY_SPEC", _one_of("RSA_2048", "ECC_NIST_P256"), default="RSA_2048"
    )
    signing_key_rotation_days: int = _env(
        "SIGNING_KEY_ROTATION_DAYS", _bounded_int(1, 365), default=42
    )
    # Longer than every cache of the JWKS (max-age 300 s, verifiers' key caches, the token
    # function's ring cache of 60 s), so a key is everywhere before its first signature.
    signing_key_publication_delay_seconds: int = _env(
        "SIGNING_KEY_PUBLICATION_DELAY_SECONDS", _bounded_int(600, 7 * DAY), default=3600
    )
    stack_name: str = _env("STACK_NAME", _non_empty, default="gatekey")
    # Powertools reads it too, but at each metric; read here once, a metric cannot lack it.
    metrics_namespace: str = _env("POWERTOOLS_METRICS_NAMESPACE", _non_empty, default="Gatekey")
    # The authorizer: which credential forms it accepts (one switch each, named after its
    # CredentialForm), and its caches.
    accept_gatekey_headers: bool = _env("ACCEPT_GATEKEY_HEADERS", _boolean, default=True)
    accept_access_headers: bool = _env("ACCEPT_ACCESS_HEADERS", _boolean, default=True)
    accept_access_json: bool = _env("ACCEPT_ACCESS_JSON", _boolean, default=True)
    accept_basic: bool = _env("ACCEPT_BASIC", _boolean, default=True)
    accept_bearer: bool = _env("ACCEPT_BEARER", _boolean, default=True)
    accept_access_token_header: bool = _env("ACCEPT_ACCESS_TOKEN_HEADER", _boolean, default=True)
    # Off by default: a browser sends a cookie on its own, to every path of the domain, so a
    # page elsewhere can make requests that carry it (README, "Credentials").
    accept_access_cookie: bool = _env("ACCEPT_ACCESS_COOKIE", _boolean, default=False)
    access_json_header: str = _env("ACCESS_JSON_HEADER", _header_name, default="authorization")
    strict_mode: bool = _env("STRICT_MODE", _boolean, default=False)
    # Refuse (403, ambiguous_credentials) a request with credential headers besides those it
    # is decided on (an Authorization header beside Gatekey's, a pair this stack does not
    # accept): an authorizer cached on them would keep the Allow under their values alone.
    # false lets Authorization and the headers of forms switched off pass to the API: only for
    # uncached authorizers.
    refuse_ambiguous_credentials: bool = _env(
        "REFUSE_AMBIGUOUS_CREDENTIALS", _boolean, default=True
    )
    status_cache_ttl_seconds: int = _env(
        "STATUS_CACHE_TTL_SECONDS", _bounded_int(0, 3600), default=30
    )
    last_seen_interval_seconds: int = _env(
        "LAST_SEEN_INTERVAL_SECONDS", _bounded_int(60, DAY), default=900
    )
    http_api_simple_responses: bool = _env("HTTP_API_SIMPLE_RESPONSES", _boolean, default=False)
    # Lifecycle: reminder thresholds (days before expiry), the grace of an automatic rotation,
    # the SNS topic for people (events for systems go to the default EventBridge bus).
    reminder_days: tuple[int, ...] = _env("REMINDER_DAYS", _days_list, default=(30, 7, 1))
    rotation_grace_hours: int = _env("ROTATION_GRACE_HOURS", _bounded_int(1, 720), default=168)
    notification_topic_arn: str = _env("NOTIFICATION_TOPIC_ARN", str, default="")
    idle_disable_days: int = _env("IDLE_DISABLE_DAYS", _bounded_int(0, 3650), default=0)
    # The Custom::GatekeyServiceToken provider: names of the stacks (of this account) that may
    # create and change tokens start with one of these; none listed, no stack may.
    service_token_stack_prefixes: tuple[str, ...] = _env(
        "SERVICE_TOKEN_STACK_PREFIXES", _stack_prefixes, default=()
    )
    # The usage plans a token may be put on, `name=usagePlanId,...` (the admin's only).
    usage_plans: tuple[UsagePlan, ...] = _env("USAGE_PLANS", _usage_plans, default=())
    # DPoP (RFC 9449; gatekey.dpop, README "DPoP"). The form's switch, the window a proof's
    # iat may be off by either way (and its jti is remembered for), single use across
    # containers (a conditional write per proof), and stateless server nonces.
    accept_dpop: bool = _env("ACCEPT_DPOP", _boolean, default=True)
    dpop_proof_window_seconds: int = _env(
        "DPOP_PROOF_WINDOW_SECONDS", _bounded_int(5, 300), default=60
    )
    dpop_shared_replay: bool = _env("DPOP_SHARED_REPLAY", _boolean, default=False)
    dpop_nonces: bool = _env("DPOP_NONCES", _boolean, default=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read and validate every variable; the error names the first one that is wrong."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name, parse, default = f.metadata["env"], f.metadata["parse"], f.metadata["default"]
            raw = environ.get(name)
            if raw is None:
                if default is _REQUIRED:
                    raise ConfigurationError(f"environment variable {name} is required")
                values[f.name] = default
                continue
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise ConfigurationError(f"environment variable {name} {exc}") from exc
        return cls(**values)

    @property
    def accepted_credentials(self) -> frozenset[CredentialForm]:
        # Each form's switch is the field named after it (a test sets each ACCEPT_<FORM>).
        return frozenset(form for form in CredentialForm if getattr(self, f"accept_{form.value}"))

    @classmethod
    def variable_names(cls) -> frozenset[str]:
        return frozenset(f.metadata["env"] for f in fields(cls))

    @classmethod
    def required_variable_names(cls) -> frozenset[str]:
        return frozenset(
            f.metadata["env"] for f in fields(cls) if f.metadata["default"] is _REQUIRED
        )
