"""GATEKEY_PARAMETER_OVERRIDES checked against template.yaml as CloudFormation checks them:
a known name, Type Number, AllowedValues, MinValue/MaxValue, MinLength, AllowedPattern; a
refusal is one line and exit status 2, before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gatekey_local.template import ParameterError, parameters
from support.constants import ROOT


def test_defaults_then_overrides_quoted_as_sam_deploy_takes_them() -> None:
    values = parameters("StatusCacheTtlSeconds=0 LifecycleTimezone='Europe/Paris' LogLevel=DEBUG")
    assert values["StatusCacheTtlSeconds"] == "0"
    assert values["LifecycleTimezone"] == "Europe/Paris"
    assert values["LogLevel"] == "DEBUG"
    assert values["AuditRetentionDays"] == "400"  # the template's default
    assert parameters("LogRetentionDays=14.0")["LogRetentionDays"] == "14.0"  # a Number


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "StatusCacheTTL=5",
            "StatusCacheTTL: no such parameter (did you mean StatusCacheTtlSeconds?)",
        ),
        ("Nonsense=1", "Nonsense: no such parameter"),
        ("StatusCacheTtlSeconds", "'StatusCacheTtlSeconds': expected Name=Value"),
        ("StatusCacheTtlSeconds=abc", "StatusCacheTtlSeconds=abc: must be a number (Type: Number)"),
        ("StatusCacheTtlSeconds=nan", "StatusCacheTtlSeconds=nan: must be a number (Type: Number)"),
        ("StatusCacheTtlSeconds=-1", "StatusCacheTtlSeconds=-1: must be at least 0 (MinValue)"),
        (
            "StatusCacheTtlSeconds=3601",
            "StatusCacheTtlSeconds=3601: must be at most 3600 (MaxValue)",
        ),
        ("LogLevel=TRACE", "LogLevel=TRACE: must be one of DEBUG, INFO, WARNING, ERROR"),
        ("LogRetentionDays=2", "LogRetentionDays=2: must be one of 1, 3, 5, 7, 14"),
        ("AcceptBasic=yes", "AcceptBasic=yes: must be one of true, false"),
        ("AccessTokenAudience=", "AccessTokenAudience=: must be at least 1 characters long"),
        ("ReminderDays=30;7", "ReminderDays=30;7: must match ^[0-9]{1,3}(,[0-9]{1,3})*$"),
        ("Issuer=http://x", "Issuer=http://x: must match ^(https://\\S+)?$ (AllowedPattern)"),
        ("LifecycleTimezone='Europe", "parameter overrides: No closing quotation"),
    ],
)
def test_a_refused_override_says_which_and_why(override: str, message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parameters(override)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_make_run_refuses_in_one_line_and_exits_non_zero() -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/gatekey", "local")),
        "GATEKEY_PARAMETER_OVERRIDES": "StatusCacheTtlSeconds=-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gatekey_local"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "gatekey_local: parameter override StatusCacheTtlSeconds=-1: must be at least 0"
        " (MinValue)\n"
    )
