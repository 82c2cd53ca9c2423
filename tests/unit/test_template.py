"""template.yaml declares the resources the core relies on, with the protections they need."""

from typing import Any

import pytest

from gatekey.aws import dynamodb_items as items
from gatekey.credentials import HEADER_PAIRS
from gatekey.hashing import Hasher
from gatekey.model import AuditAction, AuditEvent, new_service_token
from gatekey.oauth import OAUTH_METADATA_PATH, OPENID_CONFIGURATION_PATH, openid_configuration
from gatekey.revocations import AccessTokenRevocations
from gatekey.store import layout
from gatekey.token_resource import RESOURCE_TYPE, TokenProperties
from gatekey_local.__main__ import shared_environment
from gatekey_local.provision import load_template
from gatekey_local.template import Stack, parameters
from support.aws import item_actions, policy_actions
from support.constants import ROOT


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
    # Kept when the stack is deleted, not when its first deploy rolls back.
    assert table["DeletionPolicy"] == "RetainExceptOnCreate"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_table_indexes_are_the_ones_the_store_queries(template: dict[str, Any]) -> None:
    indexes = {
        i["IndexName"]: i
        for i in resource(template, "Table")["Properties"]["GlobalSecondaryIndexes"]
    }
    sparse = {
        layout.BY_DUE_INDEX: ["due_pk", "next_due_at"],
        layout.BY_EXPIRY_INDEX: ["expiry_pk", "expires_at"],
        layout.BY_GRACE_END_INDEX: ["grace_pk", "previous_client_secret_expires_at"],
        layout.BY_IDLE_INDEX: ["idle_pk", "idle_since"],
    }
    assert set(indexes) == {layout.BY_NAME_INDEX, *sparse}
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


@pytest.mark.parametrize("function", ["AuthorizerFunction", "TokenFunction"])
def test_what_records_a_use_may_write_exactly_the_attributes_its_last_seen_update_sets(
    template: dict[str, Any], function: str
) -> None:
    request = items.last_seen_request("t", "gk_x", now=1000, min_interval=60)
    assignments = request["UpdateExpression"].removeprefix("SET ").split(", ")
    written = {assignment.split(" = ")[0] for assignment in assignments}
    statements = resource(template, function)["Properties"]["Policies"][1]["Statement"]
    update = next(s for s in statements if s.get("Action") == "dynamodb:UpdateItem")
    allowed = update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(allowed) == {"pk", "sk", *written}


def test_the_token_function_may_write_exactly_what_a_revocation_writes(
    template: dict[str, Any],
) -> None:
    # The transaction of a revocation: an UpdateItem of the revocation attributes only, and
    # the audit item's PutItem; each allowed by a statement of exactly those attributes.
    token, _ = new_service_token(name="bot", hasher=Hasher({"p1": b"p" * 32}, "p1"), now=1000)
    event = AuditEvent(token.client_id, AuditAction.ACCESS_TOKEN_REVOKED, token.client_id, 1000)
    revoked = AccessTokenRevocations((("j" * 22, 2000),), 0, 1)
    update, put = items.revocations_request("t", token.client_id, revoked, 0, event, 1)
    written = set(update["Update"]["ExpressionAttributeNames"].values())
    audit = set(put["Put"]["Item"])
    statements = resource(template, "TokenFunction")["Properties"]["Policies"][1]["Statement"]
    scoped = [
        (s["Action"], set(s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]))
        for s in statements
        if s.get("Action") in ("dynamodb:UpdateItem", "dynamodb:PutItem")
    ]
    # The last-seen UpdateItem, the revocation's, and the audit item's PutItem.
    assert len(scoped) == 3
    updates = [attributes for action, attributes in scoped if action == "dynamodb:UpdateItem"]
    assert {"pk", "sk", *written} in updates
    [allowed_put] = [attributes for action, attributes in scoped if action == "dynamodb:PutItem"]
    assert set(layout.REVOCATION_ATTRIBUTES) == written
    # source_ip is absent from this event; the policy allows it for those that carry one.
    assert allowed_put == audit | {"source_ip"}
    assert set(layout.UPDATABLE).isdisjoint(written)


EXPORTED = (
    "AuthorizerFunctionArn",
    "TokenEndpointUrl",
    "JwksUrl",
    "IssuerUrl",
    "AccessTokenAudience",
    "AdminApiUrl",
)
EXAMPLES = ROOT / "examples"


def test_other_stacks_can_import_the_authorizer_and_the_urls(template: dict[str, Any]) -> None:
    for name in EXPORTED:
        export = template["Outputs"][name]["Export"]["Name"]
        assert export == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


def token_api_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every route of GatekeyApi, the token function's API."""
    events = resource(template, "TokenFunction")["Properties"]["Events"].values()
    return {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in events
        if e["Type"] == "Api" and e["Properties"]["RestApiId"] == {"Ref": "GatekeyApi"}
    }


def test_every_url_the_discovery_metadata_names_is_a_route_of_the_token_api(
    template: dict[str, Any],
) -> None:
    # The issuer is the stage's URL, so each URL in the metadata is the issuer plus a path
    # of the API; the documents themselves are appended to the issuer too (README, "Discovery").
    issuer = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"
    metadata = openid_configuration(issuer)
    named = {name: value for name, value in metadata.items() if str(value).startswith("https:")}
    assert named.keys() == {
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
    }
    method = {
        "token_endpoint": "POST",
        "jwks_uri": "GET",
        "introspection_endpoint": "POST",
        "revocation_endpoint": "POST",
    }
    served = {
        (method[name], str(url).removeprefix(issuer))
        for name, url in named.items()
        if name != "issuer"
    }
    served |= {("GET", OAUTH_METADATA_PATH), ("GET", OPENID_CONFIGURATION_PATH)}
    assert served == token_api_routes(template)


def test_the_exported_issuer_is_the_one_the_authorizer_checks(template: dict[str, Any]) -> None:
    # An HTTP API's JWT authorizer must be given the `iss` of the tokens, exactly.
    authorizer = resource(template, "AuthorizerFunction")["Properties"]["Environment"]
    assert template["Outputs"]["IssuerUrl"]["Value"] == authorizer["Variables"]["ISSUER"]


def test_the_example_stack_protects_every_route_with_the_exported_authorizer() -> None:
    example = load_template(EXAMPLES / "protected-api" / "template.yaml")
    apis = [
        r["Properties"]
        for r in example["Resources"].values()
        if r["Type"] in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi")
    ]
    assert {"AWS::Serverless::Api", "AWS::Serverless::HttpApi"} <= {
        r["Type"] for r in example["Resources"].values()
    }
    for api in apis:
        assert api["Auth"]["DefaultAuthorizer"] in api["Auth"]["Authorizers"]
        for authorizer in api["Auth"]["Authorizers"].values():
            imported = authorizer["FunctionArn"]["Fn::ImportValue"]
            assert imported == {"Fn::Sub": "${GatekeyStackName}-AuthorizerFunctionArn"}


def test_the_jwt_example_trusts_only_the_exported_issuer_and_audience_on_every_route() -> None:
    example = load_template(EXAMPLES / "jwt-http-api" / "template.yaml")
    (api,) = [r for r in example["Resources"].values() if r["Type"] == "AWS::Serverless::HttpApi"]
    auth = api["Properties"]["Auth"]
    jwt = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert jwt["JwtConfiguration"] == {
        "issuer": {"Fn::ImportValue": {"Fn::Sub": "${GatekeyStackName}-IssuerUrl"}},
        "audience": [{"Fn::ImportValue": {"Fn::Sub": "${GatekeyStackName}-AccessTokenAudience"}}],
    }
    events = [
        event["Properties"]
        for r in example["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
        for event in r["Properties"]["Events"].values()
    ]
    assert events, "the example serves routes"
    for event in events:  # no route opts out of the authorizer
        assert event.get("Auth", {}).get("Authorizer", auth["DefaultAuthorizer"]) == "GatekeyJwt"


def test_the_bot_example_declares_its_token_with_the_exported_provider_and_valid_properties(
    template: dict[str, Any],
) -> None:
    example = load_template(EXAMPLES / "bot-with-token" / "template.yaml")
    resources = example["Resources"]
    (token,) = [r for r in resources.values() if r["Type"] == RESOURCE_TYPE]
    properties = token["Properties"]
    exported = template["Outputs"]["ServiceTokenProviderArn"]["Export"]["Name"]["Fn::Sub"]
    assert exported == "${AWS::StackName}-ServiceTokenProviderArn"
    assert properties["ServiceToken"]["Fn::ImportValue"] == {
        "Fn::Sub": "${GatekeyStackName}-ServiceTokenProviderArn"
    }
    # The delivery secret is the stack's own, tagged for delivery, and the bot reads it.
    secret = properties["DeliverySecretArn"]["Ref"]
    tags = resources[secret]["Properties"]["Tags"]
    assert {"Key": "gatekey-delivery", "Value": "true"} in tags
    bot = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::Function")
    assert bot["Properties"]["Environment"]["Variables"]["GATEKEY_SECRET_ARN"] == {"Ref": secret}
    # Every property the example sets is one the provider reads, and valid.
    literal = {
        k: v
        for k, v in properties.items()
        if not isinstance(v, dict) or k in ("ServiceToken", "DeliverySecretArn", "Name", "Owner")
    }
    literal |= {
        "Name": "bots-example-nightly-export",
        "Owner": "reports-team@example.com",
        "DeliverySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:b-AbCdEf",
    }
    parsed = TokenProperties.parse(
        {k: str(v) if isinstance(v, int) else v for k, v in literal.items()}
    )
    assert parsed.rotation.value == "auto"
    # Fn::GetAtt gives the two attributes the provider answers, never the secret.
    gets = [
        o["Value"]["Fn::GetAtt"] for o in example["Outputs"].values() if "Fn::GetAtt" in o["Value"]
    ]
    assert {attribute for _, attribute in gets} == {"ClientId", "ExpiresAt"}


def test_every_cached_authorizer_shipped_is_keyed_on_what_it_decides(
    template: dict[str, Any],
) -> None:
    # An Allow may depend only on what API Gateway caches it under: a cached authorizer is a
    # TOKEN authorizer (the function sees the Authorization header alone), or its identity
    # sources hold both headers of a service-token pair (which are read before Authorization).
    # REST and HTTP APIs alike: an HTTP API has no TOKEN authorizer, so it needs the pair. A
    # simple response is for its route only, so a cached one is keyed on the route key too.
    # A bound token's answer depends on the source IP, so a REQUEST or HTTP API cache holds it.
    examples = [load_template(path) for path in sorted(EXAMPLES.glob("*/template.yaml"))]
    cached: dict[str, list[str]] = {"AWS::Serverless::Api": [], "AWS::Serverless::HttpApi": []}
    for stack in (template, *examples):
        for api in stack["Resources"].values():
            if api["Type"] not in cached:
                continue
            for name, spec in api["Properties"].get("Auth", {}).get("Authorizers", {}).items():
                if "JwtConfiguration" in spec:  # API Gateway's own: no function, no result cache
                    continue
                identity = spec.get("Identity", {})
                if identity.get("ReauthorizeEvery", 300) == 0:
                    continue
                cached[api["Type"]].append(name)
                headers = {h.lower() for h in identity.get("Headers", [])}
                pairs = [set(pair) for pair in HEADER_PAIRS.values()]
                token = spec.get("FunctionPayloadType") == "TOKEN"
                assert token or any(pair <= headers for pair in pairs), name
                if spec.get("EnableSimpleResponses", False) is not False:
                    assert "routeKey" in identity.get("Context", []), name
                # A token bound to source addresses is decided on the source IP: a REQUEST or
                # HTTP API cache is keyed on it too (a TOKEN event has none: refused there).
                if not token:
                    assert "identity.sourceIp" in identity.get("Context", []), name
    assert all(cached.values()), f"a cached route on each kind of API is shown: {cached}"


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }


def test_data_at_rest_uses_the_customer_managed_key(template: dict[str, Any]) -> None:
    data_key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert resource(template, "DataKey")["Properties"]["EnableKeyRotation"] is True
    assert template["Globals"]["Function"]["KmsKeyArn"] == data_key
    assert resource(template, "Table")["Properties"]["SSESpecification"]["KMSMasterKeyId"] == (
        data_key
    )
    assert resource(template, "PepperSecret")["Properties"]["KmsKeyId"] == data_key
    assert resource(template, "DeadLetterQueue")["Properties"]["KmsMasterKeyId"] == data_key
    for name, function in functions(template).items():
        assert {"Ref": "DataKeyDecryptPolicy"} in function["Properties"]["Policies"], name
        logs = resource(template, function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"])
        assert logs["Properties"]["KmsKeyId"] == data_key, name
        assert logs["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_scheduled_functions_fail_into_the_dead_letter_queue(template: dict[str, Any]) -> None:
    queue = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    for name, function in functions(template).items():
        schedules = [
            e
            for e in function["Properties"].get("Events", {}).values()
            if e["Type"] == "ScheduleV2"
        ]
        for schedule in schedules:
            assert function["Properties"]["DeadLetterQueue"]["TargetArn"] == queue, name
            assert schedule["Properties"]["DeadLetterConfig"]["Arn"] == queue, name


def test_every_alarm_tells_the_alarm_topic(template: dict[str, Any]) -> None:
    alarms = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) >= 5
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}


def test_writers_may_perform_every_part_of_their_transactions(template: dict[str, Any]) -> None:
    # A transaction part is authorized as the item operation it is; there is no
    # dynamodb:TransactWriteItems permission to grant.
    token, _ = new_service_token(name="bot", hasher=Hasher({"p1": b"p" * 32}, "p1"), now=1000)
    event = AuditEvent(token.client_id, AuditAction.UPDATED, "me", 1000, None, {})
    requests = {
        "admin": [
            items.create_request("t", token, event, 1),
            items.update_request("t", token, 1, event, 1),
            items.delete_request("t", token.client_id, 1, event, 1),
        ],
        "lifecycle": [items.update_request("t", token, 1, event, 1)],
        "service_token_provider": [
            items.create_request("t", token, event, 1),
            items.update_request("t", token, 1, event, 1),
            items.delete_request("t", token.client_id, 1, event, 1),
        ],
    }
    for function, transactions in requests.items():
        needed = {action for parts in transactions for action in item_actions(parts)}
        allowed = policy_actions(template, function, resource=TABLE_ARN)
        assert needed <= allowed, (function, needed - allowed)
        assert "dynamodb:TransactWriteItems" not in allowed


def test_the_local_stack_gives_every_function_its_own_environment_for_good() -> None:
    # As `make run` resolves the template: the issuer is the local URL.
    values = {**parameters(), "Issuer": "http://127.0.0.1:3000"}
    physical = dict.fromkeys(
        ("Table", "PepperSecret", "SigningKey", "GatekeyApi", "AdminApi", "DemoApi"), "local"
    )
    physical |= {"CoreLayer": "layer", "ReminderTopic": "topic", "DemoUsagePlan": "plan"}
    attributes = {"SigningKey.Arn": "arn:key", "Table.Arn": "arn:table"}
    stack = Stack(parameters=values, physical=physical, attributes=attributes)
    shared = shared_environment({f: stack.environment(f) for f in stack.functions()})
    for function in stack.functions():
        assert stack.environment(function).items() <= shared.items(), function
    with pytest.raises(RuntimeError, match="sets ISSUER to another value"):
        shared_environment({"A": {"ISSUER": "https://a"}, "B": {"ISSUER": "https://b"}})


# -- usage plans: the metered routes shipped (README, "Rate limits and quotas") ----------------


@pytest.mark.parametrize("path", ["template.yaml", "examples/protected-api/template.yaml"])
def test_each_shipped_metered_route_takes_its_key_from_the_authorizer_under_a_plan(
    path: str,
) -> None:
    resources = load_template(ROOT / path)["Resources"]
    metered = [
        event["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
        for event in r["Properties"].get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("ApiKeyRequired")
    ]
    assert metered, "a metered route is shown"
    plans = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"
    ]
    for route in metered:
        api = route["RestApiId"]["Ref"]
        assert resources[api]["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
        stages = [s["ApiId"] for p in plans for s in p["ApiStages"]]
        assert {"Ref": api} in stages, f"no usage plan on {api}'s stage"
