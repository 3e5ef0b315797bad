"""The SAM template: least privilege checked against what the function really calls, and its
wiring against the code.

cfn-lint, `sam validate --lint` and `sam build` run in `make test` before pytest; these tests
check what linters cannot know: that the role grants exactly what the code calls.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cfnlint.decode import cfn_yaml
from policy_sentry.querying.actions import get_action_data

from helpers import FunctionCalls, event, make_policy, make_users
from jets_deploy_iam import enforce, profiles, spec
from jets_deploy_iam_cli.local.invoke import invoke, invoke_scheduled
from jets_deploy_iam_cli.local.receiver import ResponseReceiver

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "function" / "jets_deploy_iam"
GROUP_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:group/*"
#: reads IAM cannot scope to a resource (the catalogue lists "*" as their only resource)
ACCOUNT_WIDE_READS = ({"iam:GetAccountAuthorizationDetails"}, {"iam:ListGroups"})


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(ROOT / "template.yaml"))


def statements(template: Any) -> list[Any]:
    role = template["Resources"]["FunctionRole"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_actions_and_no_write_on_star(template: Any) -> None:
    for statement in statements(template):
        actions = as_list(statement["Action"])
        assert all("*" not in a for a in actions), statement
        if as_list(statement["Resource"]) == ["*"]:
            assert set(actions) in ACCOUNT_WIDE_READS, statement
            for action in actions:  # IAM's catalogue: no resource to scope it to, and a read
                rows = get_action_data("iam", action.split(":")[1])["iam"]
                assert {(r["resource_arn_format"], r["access_level"]) for r in rows} <= {
                    ("*", "Read"),
                    ("*", "List"),
                }, action


def test_group_actions_are_scoped_to_this_accounts_groups(template: Any) -> None:
    for statement in statements(template):
        actions = as_list(statement["Action"])
        if set(actions) in ACCOUNT_WIDE_READS:
            continue
        if any(a.startswith("iam:") and "Group" in a for a in actions):
            assert statement["Resource"] == {"Fn::Sub": GROUP_ARN}


def granted(template: Any, service: str) -> set[str]:
    return {
        a for s in statements(template) for a in as_list(s["Action"]) if a.startswith(service + ":")
    }


@pytest.mark.last
def test_role_grants_exactly_what_the_function_calls(
    template: Any, function_calls: FunctionCalls, iam: IAMClient, registry: Any,
    receiver: ResponseReceiver,
) -> None:  # fmt: skip
    """The role against every IAM and DynamoDB operation the function made in a Lambda
    invocation anywhere in this run (recorded at botocore's call entry, ``conftest``), plus a
    lifecycle driven here so the comparison holds when this test runs alone: a call the code
    makes that the role lacks fails here, and so does a grant nothing uses."""
    make_users(iam, ["alice", "bob", "carol"])
    p1, p2 = make_policy(iam, "p1"), make_policy(iam, "p2")
    first = {"Users": "alice,bob", "ManagedPolicyArns": p1}
    moved = {"Users": "alice,carol", "ManagedPolicyArns": p2, "Services": "s3", "GroupPath": "/m/"}
    renamed = {**moved, "GroupName": "JetsDeployers"}
    lifecycle = [
        event("Create", first),
        event("Update", moved, "Jets", first),  # members, attachments, policy, path
        event("Update", renamed, "Jets", moved),  # a replacement
        event("Delete", moved, "Jets"),  # CloudFormation's cleanup of the old name
    ]
    statuses = [invoke(e, receiver)["Status"] for e in lifecycle]
    assert statuses == ["SUCCESS"] * len(lifecycle)
    iam.add_user_to_group(GroupName="JetsDeployers", UserName="bob")  # drift, by hand
    summary = invoke_scheduled({enforce.TRIGGER_KEY: enforce.RECONCILE_ALL})  # the drift check
    assert summary["drifted"] == 1
    iam.update_group(GroupName="JetsDeployers", NewGroupName="Hidden")  # renamed by hand
    summary = invoke_scheduled({enforce.TRIGGER_KEY: enforce.RECONCILE_ALL})
    assert summary["drifted"] == 1  # found by its GroupId (ListGroups)
    assert invoke(event("Delete", renamed, "JetsDeployers"), receiver)["Status"] == "SUCCESS"
    assert function_calls.actions("iam") == granted(template, "iam")
    assert function_calls.actions("dynamodb") == granted(template, "dynamodb")


def test_logs_only_to_its_own_log_group(template: Any) -> None:
    for statement in statements(template):
        if any(a.startswith("logs:") for a in as_list(statement["Action"])):
            assert statement["Resource"] == {"Fn::GetAtt": ["FunctionLogGroup", "Arn"]}
    function = template["Resources"]["JetsDeployIamFunction"]["Properties"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert template["Resources"]["FunctionLogGroup"]["Properties"]["RetentionInDays"]


def test_function_settings(template: Any) -> None:
    function = template["Resources"]["JetsDeployIamFunction"]["Properties"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["CodeUri"] == "src/function/"
    module, name = function["Handler"].rsplit(".", 1)
    source = ROOT / "src" / "function" / (module.replace(".", "/") + ".py")
    assert f"def {name}(" in source.read_text()
    env = function["Environment"]["Variables"]
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    resource = template["Resources"]["JetsDeployGroup"]["Properties"]
    assert resource["ServiceTimeout"] > function["Timeout"]
    assert resource["ServiceTimeout"] == 3600  # CloudFormation's maximum: room to continue
    assert function["Timeout"] == 900
    assert env["JETS_POLL_RULE_PREFIX"] == {"Fn::Sub": [POLL_PREFIX, {"StackUuid": STACK_UUID}]}
    assert resource_depends_on(template, "JetsDeployGroup") == ["ContinuationPolicy"]


POLL_PREFIX = "jdi-${StackUuid}-"
STACK_UUID = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}


def resource_depends_on(template: Any, name: str) -> list[str]:
    return as_list(template["Resources"][name].get("DependsOn", []))


def test_polling_may_touch_only_this_stacks_rules_and_this_function(template: Any) -> None:
    """crhelper's polling, exactly: its rules by their prefix (the function's JETS_POLL_RULE_PREFIX,
    this stack's UUID), and the permission of this very function to be invoked by them."""
    policy = template["Resources"]["ContinuationPolicy"]
    assert policy["Type"] == "AWS::IAM::RolePolicy"
    assert policy["Properties"]["RoleName"] == {"Ref": "FunctionRole"}
    rules, permission = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(rules["Action"]) == [
        "events:DeleteRule", "events:PutRule", "events:PutTargets", "events:RemoveTargets",
    ]  # fmt: skip
    arn = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/" + POLL_PREFIX + "*"
    assert rules["Resource"] == {"Fn::Sub": [arn, {"StackUuid": STACK_UUID}]}
    assert sorted(permission["Action"]) == ["lambda:AddPermission", "lambda:RemovePermission"]
    assert permission["Resource"] == {"Fn::GetAtt": ["JetsDeployIamFunction", "Arn"]}
    for statement in (rules, permission):
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement


def test_polling_calls_in_the_code_are_what_the_policy_grants() -> None:
    source = (SRC / "protocol.py").read_text()
    called = set(re.findall(r"_(events|lambda)_client\.(\w+)\(", source))
    assert called == {
        ("events", "put_rule"), ("events", "put_targets"), ("events", "remove_targets"),
        ("events", "delete_rule"), ("lambda", "add_permission"), ("lambda", "remove_permission"),
    }  # fmt: skip


def test_custom_resource_properties_are_all_known_to_the_spec(template: Any) -> None:
    resource = template["Resources"]["JetsDeployGroup"]
    assert resource["Type"] == "Custom::JetsDeployGroup"
    assert set(resource["Properties"]) <= spec.KNOWN_PROPERTIES


def test_parameter_patterns_match_the_spec(template: Any) -> None:
    params = template["Parameters"]
    assert re.fullmatch(params["GroupName"]["AllowedPattern"], "Jets")
    assert not re.fullmatch(params["GroupName"]["AllowedPattern"], "Jets Deployers")
    assert params["PolicyProfile"]["AllowedValues"] == list(spec.PROFILES)
    assert params["Users"]["Type"] == "CommaDelimitedList"
    assert params["ManagedPolicyArns"]["Type"] == "CommaDelimitedList"
    grouped = {
        p
        for g in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        for p in g["Parameters"]
    }
    assert grouped == set(params)


def test_policy_parameters_reach_the_resource_as_the_spec_reads_them(template: Any) -> None:
    params = template["Parameters"]
    props = template["Resources"]["JetsDeployGroup"]["Properties"]
    assert params["JetsVersion"]["AllowedValues"] == sorted(profiles.JETS_VERSIONS)
    assert params["JetsVersion"]["Default"] == "5"
    assert props["JetsVersion"] == {"Ref": "JetsVersion"}
    pattern = params["ResourcePrefix"]["AllowedPattern"]
    for name in ("shop", "a" * 25, "", "inventory-sync-service-01"):
        assert bool(re.fullmatch(pattern, name)) == (
            name == "" or bool(profiles.PROJECT_NAME.fullmatch(name))
        ), name
    assert not re.fullmatch(pattern, "a" * 26)
    assert params["AppManagedPolicyArns"]["Type"] == "CommaDelimitedList"
    # scoped-only properties are sent only when scoped, like ResourcePrefix
    for name in ("ResourcePrefix", "AppManagedPolicyArns"):
        assert props[name] == {"Fn::If": ["IsScoped", {"Ref": name}, {"Ref": "AWS::NoValue"}]}


def test_outputs_are_exported_for_other_stacks(template: Any) -> None:
    exports = {
        name: output["Export"]["Name"]["Fn::Sub"] for name, output in template["Outputs"].items()
    }
    assert exports == {
        "ServiceToken": "${AWS::StackName}-ServiceToken",
        "GroupName": "${AWS::StackName}-GroupName",
        "GroupArn": "${AWS::StackName}-GroupArn",
    }


def test_runtime_requirements_are_pinned_and_exclude_boto3() -> None:
    lines = [
        line
        for line in (ROOT / "src" / "function" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all("==" in line for line in lines)
    names = {line.split("==")[0] for line in lines}
    assert names == {"crhelper", "aws-lambda-powertools"}


def test_registry_table_is_the_one_the_code_expects_and_only_its_items_are_touched(
    template: Any,
) -> None:
    from jets_deploy_iam.registry.store import PARTITION_KEY, SORT_KEY

    table = template["Resources"]["RegistryTable"]
    props = table["Properties"]
    assert [k["AttributeName"] for k in props["KeySchema"]] == [PARTITION_KEY, SORT_KEY]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    function = template["Resources"]["JetsDeployIamFunction"]["Properties"]
    assert function["Environment"]["Variables"]["JETS_REGISTRY_TABLE"] == {"Ref": "RegistryTable"}
    dynamodb = [
        s
        for s in statements(template)
        if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))
    ]
    assert len(dynamodb) == 1
    assert dynamodb[0]["Resource"] == {"Fn::GetAtt": ["RegistryTable", "Arn"]}


def test_no_second_delivery_of_an_asynchronous_invocation(template: Any) -> None:
    function = template["Resources"]["JetsDeployIamFunction"]["Properties"]
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


# -- the drift check (issue 13) ------------------------------------------------------------------

FUNCTION_ARN = {"Fn::GetAtt": ["JetsDeployIamFunction", "Arn"]}


def test_role_has_nothing_for_metrics_or_alarms(template: Any) -> None:
    """EMF metrics are log lines; the alarm and its topic are CloudWatch's and SNS's own."""
    prefixes = {a.split(":")[0] for s in statements(template) for a in as_list(s["Action"])}
    assert prefixes == {"iam", "dynamodb", "logs"}


def test_the_schedule_sends_the_literal_input_and_off_disables_it(template: Any) -> None:
    from jets_deploy_iam import enforce

    params, resources = template["Parameters"], template["Resources"]
    schedule = params["DriftCheckSchedule"]
    assert schedule["Default"] == "rate(1 hour)"
    for value, ok in [("off", True), ("rate(5 minutes)", True), ("cron(0 8 * * ? *)", True),
                      ("hourly", False), ("", False)]:  # fmt: skip
        assert bool(re.fullmatch(schedule["AllowedPattern"], value)) == ok, value
    assert template["Conditions"]["DriftCheckScheduled"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DriftCheckSchedule"}, "off"]}]
    }
    rule = resources["DriftCheckRule"]
    assert rule["Type"] == "AWS::Events::Rule"
    assert rule["Condition"] == "DriftCheckScheduled"
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "DriftCheckSchedule"}
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == FUNCTION_ARN
    assert set(target) == {"Id", "Arn", "Input"}  # a literal: no InputPath, no transformer
    assert enforce.parse_trigger(json.loads(target["Input"])) == enforce.Trigger()


def test_only_the_rules_may_invoke_the_function(template: Any) -> None:
    permissions = {
        name: r
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Permission"
    }
    assert {
        name: (r["Condition"], r["Properties"]["SourceArn"]) for name, r in permissions.items()
    } == {
        "DriftCheckPermission": (
            "DriftCheckScheduled", {"Fn::GetAtt": ["DriftCheckRule", "Arn"]},
        ),
        "IamGroupChangePermission": (
            "IamEventsArriveHere", {"Fn::GetAtt": ["IamGroupChangeRule", "Arn"]},
        ),
    }  # fmt: skip
    for r in permissions.values():
        props = r["Properties"]
        assert (props["Action"], props["Principal"]) == ("lambda:InvokeFunction",
                                                         "events.amazonaws.com")  # fmt: skip
        assert props["FunctionName"] == FUNCTION_ARN


def test_iam_change_rule_only_in_us_east_1_and_never_on_the_functions_own_calls(
    template: Any,
) -> None:
    from jets_deploy_iam import enforce

    condition = template["Conditions"]["IamEventsArriveHere"]["Fn::And"]
    assert {"Condition": "DriftCheckScheduled"} in condition
    assert {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]} in condition
    rule = template["Resources"]["IamGroupChangeRule"]
    assert rule["Condition"] == "IamEventsArriveHere"
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.iam"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    detail = pattern["detail"]
    assert detail["errorCode"] == [{"exists": False}]  # a refused call changed nothing
    # every group write the function may make, but the creation of a group
    manage = next(s for s in statements(template) if s["Sid"] == "ManageGroups")
    writes = {a[4:] for a in manage["Action"] if not a.startswith(("iam:Get", "iam:List"))}
    assert set(detail["eventName"]) == writes - {"CreateGroup"}
    assert len(detail["eventName"]) == 8
    [excluded] = detail["userIdentity"]["arn"]
    own = excluded["anything-but"]["prefix"]["Fn::Sub"]
    assert own == "arn:${AWS::Partition}:sts::${AWS::AccountId}:assumed-role/${FunctionRole}/"
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == FUNCTION_ARN
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"group": "$.detail.requestParameters.groupName"}
    # EventBridge puts the string in with its quotes
    sent = transformer["InputTemplate"].replace("<group>", json.dumps("Jets"))
    assert enforce.parse_trigger(json.loads(sent)) == enforce.Trigger("Jets")


def test_drift_action_reaches_the_stacks_resource(template: Any) -> None:
    param = template["Parameters"]["DriftAction"]
    assert param["AllowedValues"] == list(spec.DRIFT_ACTIONS)
    assert param["Default"] == "report"
    props = template["Resources"]["JetsDeployGroup"]["Properties"]
    assert props["DriftAction"] == {"Ref": "DriftAction"}


def test_drift_alarm_only_with_an_email_and_on_the_metrics_the_code_emits(
    template: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from jets_deploy_iam import enforce

    resources = template["Resources"]
    condition = template["Conditions"]["DriftAlarmWanted"]["Fn::And"]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "DriftAlarmEmail"}, ""]}]} in condition
    assert template["Parameters"]["DriftAlarmEmail"]["Default"] == ""
    for name in ("DriftAlarmTopic", "DriftAlarmSubscription", "DriftAlarm"):
        assert resources[name]["Condition"] == "DriftAlarmWanted"
    subscription = resources["DriftAlarmSubscription"]["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == (
        "email", {"Ref": "DriftAlarmEmail"},
    )  # fmt: skip
    alarm = resources["DriftAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "DriftAlarmTopic"}]
    watched = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in watched} == {enforce.DRIFTED_GROUPS, enforce.FAILED_CHECKS}

    # what the function prints is what the alarm watches: namespace, name, dimensions
    env = resources["JetsDeployIamFunction"]["Properties"]["Environment"]["Variables"]
    reporter = enforce.CloudWatchReporter(
        env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    )
    capsys.readouterr()
    reporter.finished(enforce.Summary(drifted=1, failed=1))
    [printed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                 if '"_aws"' in line]  # fmt: skip
    [directive] = printed["_aws"]["CloudWatchMetrics"]
    for metric in watched:
        assert metric["Namespace"] == directive["Namespace"]
        assert metric["MetricName"] in {m["Name"] for m in directive["Metrics"]}
        assert [d["Name"] for d in metric["Dimensions"]] == directive["Dimensions"][0]
        assert all(printed[d["Name"]] == d["Value"] for d in metric["Dimensions"])
