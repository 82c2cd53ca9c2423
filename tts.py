"""The state everything depends on: the pepper (every stored hash is keyed by it) and the keys.
A template edit must never regenerate, replace or un-protect the pepper, and whoever may change
it is named (PepperAdminRoleArn). docs/operations.md, "Protecting the pepper and the keys"."""

from __future__ import annotations

import json
from typing import Any

from gatekey_local.provision import generated_pepper

# CloudFormation generates a new value whenever GenerateSecretString changes (any member,
# SecretStringTemplate included), replacing the whole ring {"current": ..., "p1": ..., "p2":
# ...}: every stored hash would fail. These are the values the deployed stacks were created
# with. Do not edit them; rotate the pepper as docs/operations.md says instead.
FROZEN_GENERATION = {
    "SecretStringTemplate": '{"current": "p1"}',
    "GenerateStringKey": "p1",
    "PasswordLength": 64,
    "ExcludePunctuation": True,
}
# A new Description or KmsKeyId is an UpdateSecret, which PepperSecretPolicy refuses to a
# deploy: the update would fail. Name is absent: setting one replaces the secret (a new pepper).
FROZEN_PROPERTIES = {
    "Description": (
        "Gatekey HMAC pepper for Client Secret hashes. Losing it invalidates every secret."
    ),
    "KmsKeyId": {"Fn::GetAtt": ["DataKey", "Arn"]},
    "GenerateSecretString": FROZEN_GENERATION,
}

# What could destroy or replace the pepper's value (a new version made current, the current
# label moved to another version, a rotation, a deletion) or its second copy.
DESTRUCTIVE = {
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:RotateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:RemoveRegionsFromReplication",
    "secretsmanager:StopReplicationToReplica",
}
GUARD = {"secretsmanager:PutResourcePolicy", "secretsmanager:DeleteResourcePolicy"}
EXEMPT = {
    "Fn::If": [
        "HasPepperAdmin",
        {"Ref": "PepperAdminRoleArn"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
    ]
}


def pepper(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]["PepperSecret"]
    return found


def pepper_policy(template: dict[str, Any]) -> list[dict[str, Any]]:
    resource = template["Resources"]["PepperSecretPolicy"]
    assert resource["Properties"]["SecretId"] == {"Ref": "PepperSecret"}
    statements: list[dict[str, Any]] = resource["Properties"]["ResourcePolicy"]["Statement"]
    return statements


def test_no_template_edit_can_regenerate_or_replace_the_pepper(template: dict[str, Any]) -> None:
    secret = pepper(template)
    properties = dict(secret["Properties"])
    replica = properties.pop("ReplicaRegions")  # the one property a deploy may change
    assert properties == FROZEN_PROPERTIES, (
        "PepperSecret's generation and settings are frozen: a change regenerates the pepper "
        "(every stored hash fails) or is refused mid-deploy. See docs/operations.md."
    )
    assert replica["Fn::If"][0] == "HasPepperReplica"
    # Kept when the stack is deleted or the resource replaced (unless its creation failed).
    assert secret["DeletionPolicy"] == "RetainExceptOnCreate"
    assert secret["UpdateReplacePolicy"] == "Retain"


def test_the_local_stack_generates_the_pepper_as_secrets_manager_would(
    template: dict[str, Any],
) -> None:
    ring = json.loads(generated_pepper(template))
    assert ring["current"] == "p1"
    assert len(ring["p1"]) == 64
    assert ring["p1"].isalnum()


def test_only_the_pepper_admin_may_change_restage_rotate_or_delete_the_pepper(
    template: dict[str, Any],
) -> None:
    statements = pepper_policy(template)
    value = next(s for s in statements if s["Sid"] == "OnlyThePepperAdminChangesThePepper")
    assert value["Effect"] == "Deny"
    assert value["Principal"] == "*"
    assert set(value["Action"]) == DESTRUCTIVE
    # No exception for a deploy: a template edit that would regenerate the value is refused.
    assert value["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": EXEMPT}}


def test_the_guard_itself_changes_only_by_the_admin_or_through_a_deploy(
    template: dict[str, Any],
) -> None:
    statements = pepper_policy(template)
    guard = next(
        s for s in statements if s["Sid"] == "OnlyThePepperAdminOrADeployChangesThisPolicy"
    )
    assert guard["Effect"] == "Deny"
    assert guard["Principal"] == "*"
    assert set(guard["Action"]) == GUARD
    assert guard["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": EXEMPT},
        # Absent for direct calls (ForAllValues over nothing is true): only a deploy passes.
        "ForAllValues:StringNotEquals": {"aws:CalledVia": ["cloudformation.amazonaws.com"]},
    }
    resource = template["Resources"]["PepperSecretPolicy"]
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"  # stays on the kept secret


def test_every_function_still_reads_the_pepper(template: dict[str, Any]) -> None:
    for statement in pepper_policy(template):
        assert statement["Effect"] == "Deny"
        assert not {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} & set(
            statement["Action"]
        )
        assert not any(a.endswith("*") for a in statement["Action"])


def test_the_pepper_admin_is_a_role_or_nobody_but_the_root_user(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["PepperAdminRoleArn"]
    assert parameter["Default"] == ""
    assert "root" in parameter["Description"]
    assert template["Conditions"]["HasPepperAdmin"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PepperAdminRoleArn"}, ""]}]
    }


def test_the_replica_is_optional_in_another_region_under_a_key_of_that_region(
    template: dict[str, Any],
) -> None:
    assert template["Parameters"]["PepperReplicaRegion"]["Default"] == ""
    assert template["Parameters"]["PepperReplicaKmsKeyArn"]["Default"] == ""
    (replica,) = pepper(template)["Properties"]["ReplicaRegions"]["Fn::If"][1]
    assert replica["Region"] == {"Ref": "PepperReplicaRegion"}
    # DataKey is a single-region key: the replica's key is that region's (or aws/secretsmanager).
    assert replica["KmsKeyId"] == {
        "Fn::If": [
            "HasPepperReplicaKey",
            {"Ref": "PepperReplicaKmsKeyArn"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    rule = template["Rules"]["PepperReplicaIsElsewhere"]
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PepperReplicaRegion"}, {"Ref": "AWS::Region"}]}]
    }
