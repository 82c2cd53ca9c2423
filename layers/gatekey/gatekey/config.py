"""Configuration: one typed object read from the environment once, at cold start.

This is the only module that reads ``os.environ``. Each field names its variable in its metadata;
tests/unit/test_config.py checks these names against template.yaml, so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gatekey.errors import ConfigurationError


def _env(name: str, parse: Callable[[str], Any] = str, default: Any = None) -> Any:
    return field(metadata={"env": name, "parse": parse, "default": default})


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(raw)
        if not low <= number <= high:
            raise ValueError(f"must be from {low} to {high}")
        return number

    return parse


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read and validate every variable; the error names the first one that is wrong."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name, parse, default = f.metadata["env"], f.metadata["parse"], f.metadata["default"]
            raw = environ.get(name)
            if raw is None:
                if default is None:
                    raise ConfigurationError(f"environment variable {name} is required")
                values[f.name] = default
                continue
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise ConfigurationError(f"environment variable {name} {exc}") from exc
        return cls(**values)

    @classmethod
    def variable_names(cls) -> frozenset[str]:
        return frozenset(f.metadata["env"] for f in fields(cls))

    @classmethod
    def required_variable_names(cls) -> frozenset[str]:
        return frozenset(f.metadata["env"] for f in fields(cls) if f.metadata["default"] is None)
