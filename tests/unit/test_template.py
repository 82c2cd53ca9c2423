"""template.yaml declares the resources the core relies on, with the protections they need."""

from typing import Any

from gatekey.store import items


def resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][name]
    return found


def test_table_is_on_demand_recoverable_protected_encrypted_with_ttl(
    template: dict[str, Any],
) -> None:
    table = resource(template, "Table")
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_table_indexes_are_the_ones_the_store_queries(template: dict[str, Any]) -> None:
    indexes = {
        i["IndexName"]: i
        for i in resource(template, "Table")["Properties"]["GlobalSecondaryIndexes"]
    }
    sparse = {
        items.BY_EXPIRY_INDEX: ["expiry_pk", "expires_at"],
        items.BY_GRACE_END_INDEX: ["grace_pk", "previous_client_secret_expires_at"],
        items.BY_IDLE_INDEX: ["idle_pk", "idle_since"],
    }
    assert set(indexes) == {items.BY_NAME_INDEX, *sparse}
    for name, keys in sparse.items():
        assert [k["AttributeName"] for k in indexes[name]["KeySchema"]] == keys
        assert indexes[name]["Projection"]["ProjectionType"] == "KEYS_ONLY"


def test_pepper_is_generated_by_secrets_manager_never_a_literal(template: dict[str, Any]) -> None:
    props = resource(template, "PepperSecret")["Properties"]
    assert "SecretString" not in props
    generated = props["GenerateSecretString"]
    assert int(generated["PasswordLength"]) >= 32
    assert generated["GenerateStringKey"] == "p1"


def test_signing_key_is_an_rsa_2048_sign_verify_kms_key_by_default(
    template: dict[str, Any],
) -> None:
    props = resource(template, "SigningKey")["Properties"]
    assert props["KeyUsage"] == "SIGN_VERIFY"
    assert props["KeySpec"] == {"Ref": "SigningKeySpec"}
    assert template["Parameters"]["SigningKeySpec"]["Default"] == "RSA_2048"


def test_functions_run_python313_on_arm64_with_the_core_layer(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    layer = resource(template, "CoreLayer")
    assert layer["Properties"]["ContentUri"] == "layers/gatekey/"
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in resource["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            # A statement under a condition: {"Fn::If": [cond, statement, AWS::NoValue]}
            if "Fn::If" in statement:
                found.extend(s for s in statement["Fn::If"][1:] if "Action" in s)
            else:
                found.append(statement)
    return found


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_only_the_token_function_may_sign(template: dict[str, Any]) -> None:
    functions = {
        name: r
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert functions
    signers = {
        name
        for name, function in functions.items()
        for statement in _statements(function)
        if _actions(statement) & {"kms:Sign", "kms:*", "*"}
    }
    assert signers == {"TokenFunction"}


def test_no_function_policy_uses_a_wildcard_action(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            for statement in _statements(resource):
                assert not any(a.endswith("*") for a in _actions(statement)), name
