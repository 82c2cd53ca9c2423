"""Every failure class an operator must act on has an alarm, and the runbook says what to do
(DESIGN invariant 7). An alarm whose namespace, metric name or dimension set differs from what
is emitted never fires, so each alarm is tied to what the code emits (its EMF documents, as the
handlers print them) or to the dimensions AWS documents for its own metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import EndpointConnectionError

from gatekey.credentials import ClientSecret
from gatekey.errors import DependencyError
from support.constants import REGION, ROOT, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler
from support.harness import AuthorizerHarness, Bot, credential_headers

Emitted = set[tuple[str, str, frozenset[tuple[str, str]]]]

RUNBOOK = ROOT / "docs" / "operations.md"

# The dimension sets AWS publishes these metrics under (a subset of each service's list: the
# ones Gatekey's alarms may use). AWS/Lambda: FunctionName; API Gateway REST APIs: ApiName
# with Stage; DynamoDB's per-request metrics: TableName with Operation.
AWS_DIMENSIONS = {
    ("AWS/Lambda", "Errors"): [{"FunctionName"}],
    ("AWS/Lambda", "Throttles"): [{"FunctionName"}],
    ("AWS/Lambda", "Duration"): [{"FunctionName"}],
    ("AWS/ApiGateway", "5XXError"): [{"ApiName", "Stage"}],
    ("AWS/DynamoDB", "ThrottledRequests"): [{"TableName", "Operation"}],
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): [{"QueueName"}],
}


# The lifecycle handler works on several tokens at once; moto is not safe across threads.
pytestmark = pytest.mark.usefixtures("atomic_dynamodb_requests")


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or each MetricStat of its metric math."""
    if "MetricName" in alarm:
        keys = ("Namespace", "MetricName", "Dimensions")
        return [{k: alarm[k] for k in keys if k in alarm}]
    return [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]


def dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}


def emitted(stdout: str) -> Emitted:
    """(namespace, metric, dimension set) of every EMF document printed."""
    found: Emitted = set()
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                values = frozenset((name, str(document[name])) for name in names)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], values))
    return found


class ScheduledContext(FakeLambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _fail(**_: Any) -> None:
    raise EndpointConnectionError(endpoint_url="https://aws.invalid")


def _unreachable(client: Any, operation: str) -> None:
    """Every later `operation` of `client` fails as if AWS were unreachable (first among the
    before-call hooks: before `atomic_dynamodb_requests` takes its lock)."""
    client.meta.events.register_first(f"before-call.*.{operation}", _fail)


@pytest.fixture
def emissions(
    make_authorizer: Callable[..., AuthorizerHarness],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Emitted:
    """What the functions emit: the authorizer an allow whose last-seen write fails, a denial
    and a failure; the token endpoint a server_error and a token whose last-seen write fails;
    a run of each scheduled function."""
    authorizer = make_authorizer()
    bot, other = authorizer.bot(), authorizer.bot(name="other-bot")
    _unreachable(authorizer.handler.bookkeeping.client, "UpdateItem")
    authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    stale = Bot(bot.token, ClientSecret.generate())
    authorizer.call("rest_request", credential_headers("gatekey_headers", stale))
    _unreachable(authorizer.handler.store.client, "GetItem")
    with pytest.raises(DependencyError):
        authorizer.call("rest_request", credential_headers("gatekey_headers", other))
    authorizer.handler.counters.flush()

    # The token endpoint, with KMS unreachable (its clients copy the hook when built): a
    # server_error.
    session = boto3._get_default_session()
    session.events.register_first("before-call.kms.Sign", _fail)
    try:
        token = load_handler("token")
    finally:
        session.events.unregister("before-call.kms.Sign", _fail)
    event = load_event("token-client-credentials-basic.json")
    event["headers"] |= credential_headers("basic", bot)
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = "grant_type=client_credentials"
    assert token.lambda_handler(event, ScheduledContext())["statusCode"] == 500
    # ...and, with DynamoDB's UpdateItem unreachable, a token whose last-seen write fails.
    session.events.register_first("before-call.dynamodb.UpdateItem", _fail)
    try:
        token = load_handler("token")
    finally:
        session.events.unregister("before-call.dynamodb.UpdateItem", _fail)
    assert token.lambda_handler(event, ScheduledContext())["statusCode"] == 200

    sns = boto3.client("sns", region_name=REGION)
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", sns.create_topic(Name="reminders")["TopicArn"])
    lifecycle = load_handler("lifecycle")
    lifecycle.lambda_handler(load_event("lifecycle-scheduled.json"), ScheduledContext())
    rotation = load_handler("signing_keys")
    rotation.lambda_handler(load_event("signing-keys-scheduled.json"), ScheduledContext())
    return emitted(capsys.readouterr().out)


def test_every_gatekey_alarm_watches_a_metric_the_code_emits_with_its_exact_dimensions(
    template: dict[str, Any], emissions: Emitted
) -> None:
    # Powertools adds `service` from POWERTOOLS_SERVICE_NAME, which the template sets for all.
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "gatekey"
    checked = set()
    for name, alarm in alarms(template).items():
        for metric in watched(alarm):
            if metric["Namespace"] != env["POWERTOOLS_METRICS_NAMESPACE"]:
                continue
            if metric["MetricName"] == "AuthorizerInitFailures":
                continue  # emitted by a cold start that fails (below)
            key = (
                metric["Namespace"],
                metric["MetricName"],
                frozenset((k, str(v)) for k, v in dimensions(metric).items()),
            )
            same_name = [dict(d) for ns, m, d in emissions if (ns, m) == key[:2]]
            assert key in emissions, (name, dict(key[2]), "emitted with", same_name)
            checked.add(metric["MetricName"])
    # The totals and heartbeats: each has its alarm.
    assert {
        "AuthorizerFailures",
        "AuthorizerDenials",
        "AuthorizerAllows",
        "LastSeenWriteFailures",
        "LifecycleRuns",
        "SigningKeyRotationRuns",
    } <= checked


def test_a_failed_cold_start_of_the_authorizer_counts_what_its_alarm_watches(
    make_authorizer: Callable[..., AuthorizerHarness],
    capsys: pytest.CaptureFixture[str],
    template: dict[str, Any],
) -> None:
    # GIVEN a pepper secret the cold start cannot read
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    with pytest.raises(Exception):  # noqa: B017, PT011  (whatever the start fails with)
        make_authorizer(PEPPER_SECRET_ARN=secret)
    # THEN the failure is counted under the alarm's metric and exact dimensions
    alarm = alarms(template)["AuthorizerInitFailuresAlarm"]
    key = (
        alarm["Namespace"],
        alarm["MetricName"],
        frozenset((k, str(v)) for k, v in dimensions(alarm).items()),
    )
    assert key in emitted(capsys.readouterr().out)


def test_aws_metrics_are_watched_under_the_dimensions_aws_publishes_them_with(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    for name, alarm in alarms(template).items():
        for metric in watched(alarm):
            if not metric["Namespace"].startswith("AWS/"):
                continue
            dims = dimensions(metric)
            documented = AWS_DIMENSIONS[(metric["Namespace"], metric["MetricName"])]
            assert set(dims) in documented, (name, set(dims))
            if "FunctionName" in dims:
                function = dims["FunctionName"]["Ref"]
                assert resources[function]["Type"] == "AWS::Serverless::Function", name
            if "TableName" in dims:
                assert dims["TableName"] == {"Ref": "Table"}, name
            if "QueueName" in dims:
                assert dims["QueueName"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}


def test_admin_api_errors_are_watched_under_the_admin_apis_own_name_and_stage(
    template: dict[str, Any],
) -> None:
    # Without a Name, SAM names each REST API after the stack: the three APIs would share
    # ApiName, and the token endpoint's or the demo's 5xx would page as the admin API's.
    api = template["Resources"]["AdminApi"]["Properties"]
    alarm = alarms(template)["AdminApiErrorsAlarm"]
    assert dimensions(alarm) == {"ApiName": api["Name"], "Stage": api["StageName"]}
    names = [
        r["Properties"].get("Name")
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::Api"
    ]
    assert names.count(api["Name"]) == 1


def test_the_table_throttle_alarm_sees_every_operation_gatekey_makes_on_the_table(
    template: dict[str, Any],
) -> None:
    # ThrottledRequests is published per Operation: one the alarm leaves out is never seen.
    model = botocore.session.get_session().get_service_model("dynamodb")
    operations = {xform_name(op): op for op in model.operation_names}
    called = set()
    for path in (ROOT / "layers" / "gatekey" / "gatekey").rglob("*.py"):
        text = path.read_text()
        if "dynamodb" in text.lower():
            called |= {operations[m] for m in re.findall(r"\.(\w+)\b", text) if m in operations}
    assert {"GetItem", "UpdateItem", "TransactWriteItems", "Query"} <= called
    watched_operations = {
        dimensions(m)["Operation"]
        for m in watched(alarms(template)["TableThrottlesAlarm"])
        if m["MetricName"] == "ThrottledRequests"
    }
    assert called <= watched_operations, called - watched_operations


def test_the_timeout_alarm_sits_between_the_call_budgets_and_the_timeout(
    template: dict[str, Any],
) -> None:
    timeout_ms = template["Resources"]["AuthorizerFunction"]["Properties"]["Timeout"] * 1000
    alarm = alarms(template)["AuthorizerNearTimeoutAlarm"]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == 0.8 * timeout_ms  # the budgets hold the worst at 65%
    assert dimensions(alarm) == {"FunctionName": {"Ref": "AuthorizerFunction"}}


def test_no_alarm_watches_the_authorizers_errors(template: dict[str, Any]) -> None:
    # Every 401 is an error to Lambda (raise Exception("Unauthorized")): clients without
    # credentials would page (invariant 4).
    for name, alarm in alarms(template).items():
        for metric in watched(alarm):
            if metric["MetricName"] == "Errors":
                assert dimensions(metric) != {"FunctionName": {"Ref": "AuthorizerFunction"}}, name


def test_periods_and_windows_are_ones_cloudwatch_accepts(template: dict[str, Any]) -> None:
    for name, alarm in alarms(template).items():
        if "Metrics" in alarm:
            stats = [q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q]
            assert len(stats) <= 10, name  # metric math: at most 10 metrics per alarm
            assert sum(1 for q in alarm["Metrics"] if q.get("ReturnData")) == 1, name
            periods = {s["Period"] for s in stats}
            assert len(periods) == 1, name
            period = periods.pop()
        else:
            period = alarm["Period"]
        assert period in (10, 20, 30) or period % 60 == 0, name
        window = period * alarm["EvaluationPeriods"]
        # 7 days for periods of an hour or more, 1 day below.
        assert window <= (604_800 if period >= 3600 else 86_400), name
        assert alarm.get("DatapointsToAlarm", 1) <= alarm["EvaluationPeriods"], name


def _daily(schedule: str) -> bool:
    return (
        schedule == "rate(1 day)"
        or re.fullmatch(r"cron\(\d+ \d+ \* \* \? \*\)", schedule) is not None
    )


HEARTBEATS = {
    "LifecycleHeartbeatAlarm": "LifecycleFunction",
    "SigningKeysHeartbeatAlarm": "SigningKeysFunction",
}


@pytest.mark.parametrize(("alarm_name", "function"), sorted(HEARTBEATS.items()))
def test_a_daily_run_that_never_happened_pages_the_same_day_and_a_late_one_does_not(
    template: dict[str, Any], alarm_name: str, function: str
) -> None:
    resources = template["Resources"]
    schedules = [
        e["Properties"]
        for e in resources[function]["Properties"]["Events"].values()
        if e["Type"] == "ScheduleV2"
    ]
    # One daily run (the lifecycle's other schedule only resumes a run cut short, and counts
    # 0 when there is none: a 0 breaches like missing data).
    assert [s["ScheduleExpression"] for s in schedules if _daily(s["ScheduleExpression"])]
    alarm = alarms(template)[alarm_name]
    # Missing data breaches: a run that never happened leaves nothing to compare.
    assert alarm["TreatMissingData"] == "breaching"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    # Every period of the window must be empty: one run anywhere in it is enough.
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    hours = alarm["Period"] * alarm["EvaluationPeriods"] / 3600
    # 24 h between runs, + 1 h of a DST change, + 6 h of Lambda's asynchronous retries ...
    assert hours >= 24 + 1 + 6
    # ... and a missed day still pages before the next day's run would be due.
    assert hours < 48
    # Only where the function exists (the signing keys: with the KMS backend).
    assert resources[alarm_name].get("Condition") == resources[function].get("Condition")


def test_every_alarm_pages_and_clears_on_the_alarm_topic_and_says_what_it_means(
    template: dict[str, Any],
) -> None:
    topic = [{"Ref": "AlarmTopic"}]
    for name, alarm in alarms(template).items():
        assert alarm["AlarmActions"] == topic, name
        assert alarm["OKActions"] == topic, name
        assert len(alarm["AlarmDescription"]) >= 80, name


def rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Events::Rule"
    }


def test_the_key_and_pepper_rules_page_on_the_alarm_topic_which_lets_them_publish(
    template: dict[str, Any],
) -> None:
    paging = {
        name
        for name, rule in rules(template).items()
        if any(t["Arn"] == {"Ref": "AlarmTopic"} for t in rule["Targets"])
    }
    assert {"KeyChangeRule", "PepperChangeRule"} <= paging
    statements = template["Resources"]["AlarmTopicPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    events = next(s for s in statements if s["Principal"] == {"Service": "events.amazonaws.com"})
    assert events["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": [name, "Arn"]} for name in sorted(paging)
    ]


def test_alarms_do_not_depend_on_the_data_key(template: dict[str, Any]) -> None:
    # The page saying DataKey is disabled or pending deletion must still be delivered.
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlarmKey", "Arn"]}
    statements = template["Resources"]["AlarmKey"]["Properties"]["KeyPolicy"]["Statement"]
    publishers = {
        s["Principal"]["Service"]
        for s in statements
        if "Service" in s.get("Principal", {})
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(s["Action"])
    }
    assert publishers == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}


def test_the_key_rule_watches_the_keys_everything_depends_on(template: dict[str, Any]) -> None:
    pattern = rules(template)["KeyChangeRule"]["EventPattern"]
    branches = pattern["detail"]["$or"]
    exact = next(b for b in branches if "resources" in b)
    assert {"DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy"} <= set(exact["eventName"])
    with_signing, without = exact["resources"]["ARN"]["Fn::If"][1:]
    assert with_signing == [
        {"Fn::GetAtt": ["DataKey", "Arn"]},
        {"Fn::GetAtt": ["AlarmKey", "Arn"]},
        {"Fn::GetAtt": ["SigningKey", "Arn"]},
    ]
    assert without == with_signing[:2]
    # The rotation's own routine (creating tagged keys) is left out; nobody else's.
    creations = [b for b in branches if b["eventName"] == ["CreateKey"]]
    issuer = creations[1]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
    rotation = {"Fn::GetAtt": ["SigningKeysFunctionRole", "Arn"]}
    assert issuer["Fn::If"][1] == [{"anything-but": [rotation]}]


def test_every_alarm_and_rule_has_a_row_in_the_runbook(template: dict[str, Any]) -> None:
    text = RUNBOOK.read_text()
    section = text.split("\n## Alarms\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", section, re.MULTILINE)}
    paging_rules = {
        n
        for n, r in rules(template).items()
        if any(t["Arn"] == {"Ref": "AlarmTopic"} for t in r["Targets"])
    }
    assert set(alarms(template)) | paging_rules == rows


def test_the_signing_key_rotation_counts_a_completed_run(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    pepper_secret_arn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(
        KeySpec="RSA_2048",
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": "gatekey-signing-key", "TagValue": "gatekey"}],
    )["KeyMetadata"]["Arn"]
    for name, value in {
        "TABLE_NAME": TABLE_NAME,
        "PEPPER_SECRET_ARN": pepper_secret_arn,
        "SIGNING_KEY_ID": key,
        "POWERTOOLS_SERVICE_NAME": "gatekey",
        "POWERTOOLS_METRICS_NAMESPACE": "Gatekey",
    }.items():
        monkeypatch.setenv(name, value)
    rotation = load_handler("signing_keys")
    event = load_event("signing-keys-scheduled.json")
    rotation.lambda_handler(event, FakeLambdaContext())
    rotation.lambda_handler(event, FakeLambdaContext())
    runs = [
        doc["SigningKeyRotationRuns"]
        for doc in map(json.loads, capsys.readouterr().out.splitlines())
        if "SigningKeyRotationRuns" in doc
    ]
    assert runs == [[1.0], [1.0]]
    # AND a run that fails counts nothing
    _unreachable(rotation.rotation._ring_store.client, "GetItem")
    with (
        pytest.raises(DependencyError),
        pytest.warns(UserWarning, match="No application metrics"),
    ):
        rotation.lambda_handler(event, FakeLambdaContext())
    out = capsys.readouterr().out
    assert "SigningKeyRotationRuns" not in out
