"""IAM in template.yaml: who may write the signing-key ring, and which KMS keys the rotation
may create and tag (a tag it can add is a key it can then delete)."""

import json
from fnmatch import fnmatchcase
from typing import Any

ITEM_WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
)
TABLE = {"Fn::GetAtt": ["Table", "Arn"]}
RING_PARTITION = {"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["SIGNING_KEYS"]}}
RING_OWNER = "SigningKeysFunction"

STACK = {"Ref": "AWS::StackName"}
SIGNING_KEY = {"kms:KeySpec": {"Ref": "SigningKeySpec"}, "kms:KeyUsage": "SIGN_VERIFY"}
STACK_TAG = {"aws:RequestTag/gatekey-signing-key": STACK}
NO_OTHER_TAG = {"ForAllValues:StringEquals": {"aws:TagKeys": ["gatekey-signing-key"]}}


def functions(template: dict[str, Any]) -> list[str]:
    return [
        name
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    ]


def role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """Every statement of the function's role: inline documents and managed policies named by
    !Ref, both branches of an Fn::If."""
    resources = template["Resources"]
    statements: list[dict[str, Any]] = []
    for policy in resources[function]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and set(policy) == {"Ref"}:
            policy = resources[policy["Ref"]]["Properties"]["PolicyDocument"]
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            branches = statement["Fn::If"][1:] if "Fn::If" in statement else [statement]
            statements += [s for s in branches if "Effect" in s]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allows(statement: dict[str, Any], action: str) -> bool:
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action, pattern) for pattern in as_list(statement["Action"])
    )


def denies_ring_writes(statement: dict[str, Any]) -> bool:
    return (
        statement["Effect"] == "Deny"
        and set(ITEM_WRITES) <= set(as_list(statement["Action"]))
        and TABLE in as_list(statement["Resource"])
        # Any further condition would narrow the Deny.
        and statement.get("Condition") == RING_PARTITION
    )


def test_every_role_that_writes_items_but_the_ring_owner_is_denied_the_ring_partition(
    template: dict[str, Any],
) -> None:
    writers = {
        function
        for function in functions(template)
        for statement in role_statements(template, function)
        if any(allows(statement, action) for action in ITEM_WRITES)
    }
    assert {"AdminFunction", "LifecycleFunction", "AuthorizerFunction", RING_OWNER} <= writers
    assert "ServiceTokenProviderFunction" in writers
    for function in writers - {RING_OWNER}:
        assert any(map(denies_ring_writes, role_statements(template, function))), function


def test_the_ring_owner_keeps_its_write_to_the_ring(template: dict[str, Any]) -> None:
    assert not any(map(denies_ring_writes, role_statements(template, RING_OWNER)))


def test_the_rotation_creates_only_sign_verify_keys_of_the_configured_spec_tagged_for_its_stack(
    template: dict[str, Any],
) -> None:
    creating = [s for s in role_statements(template, RING_OWNER) if allows(s, "kms:CreateKey")]
    assert creating
    for statement in creating:
        assert statement["Condition"] == {
            "StringEquals": {**STACK_TAG, **SIGNING_KEY},
            **NO_OTHER_TAG,
        }


def test_the_rotation_may_tag_only_its_stacks_sign_verify_keys_of_the_configured_spec(
    template: dict[str, Any],
) -> None:
    # IfExists: at CreateKey the new key has no tag yet; every existing key has a spec and usage.
    tagging = [s for s in role_statements(template, RING_OWNER) if allows(s, "kms:TagResource")]
    assert tagging
    for statement in tagging:
        assert statement["Condition"] == {
            "StringEquals": STACK_TAG,
            **NO_OTHER_TAG,
            "StringEqualsIfExists": {**SIGNING_KEY, "aws:ResourceTag/gatekey-signing-key": STACK},
        }


PROVIDER = "ServiceTokenProviderFunction"
DELIVERY_TAGGED = {"StringEquals": {"aws:ResourceTag/gatekey-delivery": "true"}}


def test_the_service_token_provider_writes_only_secrets_tagged_for_delivery(
    template: dict[str, Any],
) -> None:
    statements = role_statements(template, PROVIDER)
    secret_actions = {
        action
        for statement in statements
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        if action.startswith("secretsmanager:")
    }
    assert secret_actions == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:DescribeSecret",
    }
    for statement in statements:
        if allows(statement, "secretsmanager:GetSecretValue"):
            assert statement["Resource"] == {"Ref": "PepperSecret"}  # the pepper, nothing else
        if allows(statement, "secretsmanager:PutSecretValue"):
            assert statement["Condition"] == DELIVERY_TAGGED
        if allows(statement, "kms:GenerateDataKey"):
            # a delivery secret's own key, only through Secrets Manager
            assert statement["Condition"] == {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
                }
            }
    assert not any(allows(s, "kms:Sign") for s in statements)
    assert not any(allows(s, "dynamodb:Scan") for s in statements)


def test_only_cloudformation_of_this_account_is_granted_the_provider_and_it_is_exported(
    template: dict[str, Any],
) -> None:
    permissions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["FunctionName"] == {"Fn::GetAtt": [PROVIDER, "Arn"]}
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [PROVIDER, "Arn"]},
            "Principal": "cloudformation.amazonaws.com",
            "SourceAccount": {"Ref": "AWS::AccountId"},
        }
    ]
    output = template["Outputs"]["ServiceTokenProviderArn"]
    assert output["Value"] == {"Fn::GetAtt": [PROVIDER, "Arn"]}
    assert output["Export"] == {"Name": {"Fn::Sub": "${AWS::StackName}-ServiceTokenProviderArn"}}
    # No stack may manage tokens until the operator names prefixes.
    assert template["Parameters"]["ServiceTokenStackPrefixes"]["Default"] == ""


# -- usage plans: the admin's API Gateway calls (gatekey/aws/apigateway.py) --------------------


def apigateway_arn(path: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::{path}"}


# Each call the adapter makes, as IAM sees it: method and resource.
API_KEY_CALLS = {
    ("apigateway:POST", "/apikeys"),  # CreateApiKey
    ("apigateway:PATCH", "/apikeys/*"),  # UpdateApiKey (enabled)
    ("apigateway:DELETE", "/apikeys/*"),  # DeleteApiKey
    ("apigateway:POST", "/usageplans/*/keys"),  # CreateUsagePlanKey
    ("apigateway:DELETE", "/usageplans/*/keys/*"),  # DeleteUsagePlanKey
}


def apigateway_grants(template: dict[str, Any], function: str) -> set[tuple[str, Any]]:
    return {
        (action, json.dumps(resource, sort_keys=True))
        for statement in role_statements(template, function)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        if action.startswith("apigateway:")
        for resource in as_list(statement["Resource"])
    }


def test_the_admin_may_make_move_disable_and_delete_api_keys_in_its_region_and_nothing_more(
    template: dict[str, Any],
) -> None:
    expected = {
        (action, json.dumps(apigateway_arn(path), sort_keys=True)) for action, path in API_KEY_CALLS
    }
    assert apigateway_grants(template, "AdminFunction") == expected
    # No condition could widen it, and no statement grants apigateway:* or GET (unused).
    for statement in role_statements(template, "AdminFunction"):
        if any(str(a).startswith("apigateway:") for a in as_list(statement["Action"])):
            assert "Condition" not in statement
            assert "NotResource" not in statement


def test_no_other_function_may_call_api_gateways_management_api(
    template: dict[str, Any],
) -> None:
    for function in set(functions(template)) - {"AdminFunction"}:
        assert apigateway_grants(template, function) == set(), function


# -- DPoP proofs recorded once across containers (DpopSharedReplay) --------------------------


def test_the_authorizer_may_put_only_dpop_replay_items_and_only_when_switched_on(
    template: dict[str, Any],
) -> None:
    from gatekey.aws.dpop_replay import PARTITION_PREFIX, put_request

    shared = [
        s
        for s in template["Resources"]["AuthorizerFunction"]["Properties"]["Policies"][1][
            "Statement"
        ]
        if "Fn::If" in s and s["Fn::If"][0] == "DpopSharedReplay"
    ]
    assert len(shared) == 1
    on, off = shared[0]["Fn::If"][1:]
    assert off == {"Ref": "AWS::NoValue"}
    assert template["Conditions"]["DpopSharedReplay"] == {
        "Fn::Equals": [{"Ref": "DpopSharedReplay"}, "true"]
    }
    assert on["Action"] == "dynamodb:PutItem"
    assert on["Resource"] == TABLE
    condition = on["Condition"]
    assert condition["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["DPOP#*"]}
    assert condition["StringEqualsIfExists"] == {"dynamodb:ReturnValues": "NONE"}
    allowed = set(condition["ForAllValues:StringEquals"]["dynamodb:Attributes"])
    # What the adapter writes fits the grant: its partition and its attributes.
    request = put_request("t", "jkt", "jti", 100, 50)
    assert fnmatchcase(request["Item"]["pk"]["S"], "DPOP#*")
    assert PARTITION_PREFIX == "DPOP#"
    assert set(request["Item"]) == allowed == {"pk", "sk", "ttl"}
    # No token partition (TOKEN#...) nor the ring (SIGNING_KEYS) matches the grant.
    for partition in ("TOKEN#gk_x", "SIGNING_KEYS", "LIFECYCLE"):
        assert not fnmatchcase(partition, "DPOP#*")
    # The grant adds PutItem only: the ring stays denied, as for every writer.
    assert any(map(denies_ring_writes, role_statements(template, "AuthorizerFunction")))


def test_the_dpop_replay_item_expires_by_the_tables_ttl_attribute(
    template: dict[str, Any],
) -> None:
    from gatekey.aws.dpop_replay import put_request

    ttl = template["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    assert ttl["AttributeName"] in put_request("t", "k", "j", 100, 50)["Item"]
