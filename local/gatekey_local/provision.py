"""Create, in moto (in-process or a moto server), the resources template.yaml declares.

Everything is read from the template, so tests, benchmarks and the local stack cannot drift
from what `sam deploy` creates.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
SIGNING_KEY_TAG = "gatekey-signing-key"


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml as plain data; intrinsics stay as {"Ref": ...} / {"Fn::...": ...}."""
    loaded: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(path))))
    return loaded


def table_definition(template: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments for the Table resource (keys, indexes, billing)."""
    props = template["Resources"]["Table"]["Properties"]
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    return {k: props[k] for k in keys}


def generated_pepper(template: dict[str, Any]) -> str:
    """What Secrets Manager generates from the PepperSecret's GenerateSecretString."""
    spec = template["Resources"]["PepperSecret"]["Properties"]["GenerateSecretString"]
    alphabet = string.ascii_letters + string.digits
    value = json.loads(spec["SecretStringTemplate"])
    value[spec["GenerateStringKey"]] = "".join(
        secrets.choice(alphabet) for _ in range(int(spec["PasswordLength"]))
    )
    return json.dumps(value)


def create_usage_plans(apigateway: Any, plans: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Create the template's usage plans (their resolved properties, by logical id) as
    CloudFormation would; their ids by logical id."""
    made = {}
    for logical, props in plans.items():
        arguments: dict[str, Any] = {"name": str(props.get("UsagePlanName", logical))}
        arguments["apiStages"] = [
            {"apiId": str(s["ApiId"]), "stage": str(s["Stage"])} for s in props.get("ApiStages", [])
        ]
        if "Throttle" in props:
            throttle = props["Throttle"]
            arguments["throttle"] = {
                "rateLimit": float(throttle.get("RateLimit", 0)),
                "burstLimit": int(throttle.get("BurstLimit", 0)),
            }
        if "Quota" in props:
            quota = props["Quota"]
            arguments["quota"] = {
                "limit": int(quota["Limit"]),
                "period": str(quota["Period"]),
                "offset": int(quota.get("Offset", 0)),
            }
        made[logical] = apigateway.create_usage_plan(**arguments)["id"]
    return made


@dataclass(frozen=True)
class Provisioned:
    table_name: str
    pepper_secret_arn: str
    signing_key_arn: str
    reminder_topic_arn: str | None = None
    # The template's usage plans (create_usage_plans): their ids by logical id.
    usage_plans: dict[str, str] = field(default_factory=dict)


def provision(
    *,
    dynamodb: Any,
    secretsmanager: Any,
    kms: Any,
    sns: Any = None,
    prefix: str = "gatekey",
    stack: str = "gatekey",
) -> Provisioned:
    """Create the table (with TTL), the pepper secret, the signing key and, given an SNS
    client, the reminder topic."""
    template = load_template()
    table = f"{prefix}-table"
    dynamodb.create_table(TableName=table, **table_definition(template))
    ttl = template["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
    )
    pepper = secretsmanager.create_secret(
        Name=f"{prefix}-pepper", SecretString=generated_pepper(template)
    )
    key_spec = template["Parameters"]["SigningKeySpec"]["Default"]
    key = kms.create_key(
        KeySpec=key_spec,
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": SIGNING_KEY_TAG, "TagValue": stack}],
    )
    topic = None
    if sns is not None:
        topic = sns.create_topic(Name=f"{prefix}-reminders")["TopicArn"]
    return Provisioned(table, pepper["ARN"], key["KeyMetadata"]["Arn"], topic)
