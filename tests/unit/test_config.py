from typing import Any

import pytest

from gatekey.config import Config
from gatekey.credentials import CredentialForm
from gatekey.errors import ConfigurationError

VALID = {
    "TABLE_NAME": "tokens",
    "PEPPER_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:p",
    "SIGNING_KEY_ID": "arn:aws:kms:us-east-1:1:key/k",
}
# Variables that Powertools reads itself; they are not part of Gatekey's Config.
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}


def test_config_is_read_from_the_environment_with_defaults() -> None:
    config = Config.from_env(VALID)
    assert config.table_name == "tokens"
    assert config.pepper_secret_arn.endswith(":secret:p")
    assert config.audit_retention_days == 400
    assert config.signing_backend == "kms"
    assert config.access_token_lifetime_seconds == 3600
    assert config.access_token_audience == "gatekey"
    assert config.issuer == ""


@pytest.mark.parametrize("missing", sorted(Config.required_variable_names()))
def test_a_missing_variable_fails_cold_start_naming_it(missing: str) -> None:
    environ = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(ConfigurationError, match=f"{missing} is required"):
        Config.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUDIT_RETENTION_DAYS", "0", "must be from 1 to 3650"),
        ("AUDIT_RETENTION_DAYS", "-5", "must be a whole number"),
        ("AUDIT_RETENTION_DAYS", "ten", "must be a whole number"),
        ("AUDIT_RETENTION_DAYS", "٤٠٠", "must be a whole number"),  # Arabic-Indic digits
        ("TABLE_NAME", "  ", "must not be empty"),
        ("SIGNING_BACKEND", "vault", "must be one of kms, secretsmanager"),
        ("ACCESS_TOKEN_LIFETIME_SECONDS", "59", "must be from 60 to 86400"),
        ("ISSUER", "http://auth.example.com", "must be empty or an https:// URL"),
        ("ISSUER", "https://auth.example.com/ x", "must be empty or an https:// URL"),
        ("SERVICE_TOKEN_STACK_PREFIXES", "bots-,*", "must list stack name prefixes"),
    ],
)
def test_a_malformed_variable_fails_cold_start_naming_it(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} {message}"):
        Config.from_env({**VALID, name: value})


def test_issuer_loses_a_trailing_slash_and_may_be_loopback_http_for_the_local_stack() -> None:
    assert Config.from_env({**VALID, "ISSUER": "https://auth.example.com/"}).issuer == (
        "https://auth.example.com"
    )
    local = Config.from_env({**VALID, "ISSUER": "http://127.0.0.1:3000"})
    assert local.issuer == "http://127.0.0.1:3000"


def _function_environments(template: dict[str, Any]) -> dict[str, set[str]]:
    """Every place template.yaml sets Lambda environment variables, by where."""
    found = {"Globals": set(template["Globals"]["Function"]["Environment"]["Variables"])}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            found[name] = set(variables)
    return found


def test_config_variable_names_match_template_yaml(template: dict[str, Any]) -> None:
    environments = _function_environments(template)
    # Every variable Config requires is set for every function, through Globals.
    assert Config.required_variable_names() <= environments["Globals"]
    # Every variable the template sets is one Config (or Powertools) reads: no typo, no leftover.
    for where, names in environments.items():
        unknown = names - Config.variable_names() - POWERTOOLS
        assert not unknown, f"{where} sets variables Config does not read: {sorted(unknown)}"
    # And every optional Config variable is settable from the template.
    assert Config.variable_names() <= set().union(*environments.values())


def test_every_template_parameter_has_a_description(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters
    for name, parameter in parameters.items():
        assert str(parameter.get("Description", "")).strip(), f"{name} has no Description"


def test_each_credential_form_has_its_own_switch_named_after_it() -> None:
    # Every form but the cookie is on by default (README, "Credentials it accepts").
    default = frozenset(CredentialForm) - {CredentialForm.ACCESS_COOKIE}
    assert Config.from_env(VALID).accepted_credentials == default
    for form in CredentialForm:
        config = Config.from_env(VALID | {f"ACCEPT_{form.name}": "false"})
        assert config.accepted_credentials == default - {form}
        config = Config.from_env(VALID | {f"ACCEPT_{form.name}": "true"})
        assert config.accepted_credentials == default | {form}


def test_service_token_stack_prefixes_are_a_comma_separated_list_none_by_default() -> None:
    assert Config.from_env(VALID).service_token_stack_prefixes == ()
    config = Config.from_env({**VALID, "SERVICE_TOKEN_STACK_PREFIXES": "bots-, ci-,bots-"})
    assert config.service_token_stack_prefixes == ("bots-", "ci-")
