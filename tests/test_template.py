"""The SAM template: least privilege enforced by parsing it, and wiring checked against the code.

cfn-lint, `sam validate --lint` and `sam build` run in `make test` before pytest; these tests
check what linters cannot know: that the role grants exactly what the code calls.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml

from jets_deploy_iam import profiles, spec

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "function" / "jets_deploy_iam"
GROUP_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:group/*"


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(ROOT / "template.yaml"))


def statements(template: Any) -> list[Any]:
    role = template["Resources"]["FunctionRole"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_calls_in_code() -> set[str]:
    """IAM API names the function can call: client methods and paginators in src/."""
    calls: set[str] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "client"
                and not node.attr.startswith(("get_paginator", "exc", "meta"))  # not calls
            ):
                calls.add(node.attr)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_paginator"
            ):
                arg = node.args[0]
                assert isinstance(arg, ast.Constant)
                calls.add(str(arg.value))
    operations = set(
        boto3.client("iam", region_name="us-east-1").meta.service_model.operation_names
    )
    names = {"".join(p.title() for p in c.split("_")) for c in calls}
    return {"iam:" + n for n in names & operations}


def test_no_wildcard_actions_and_no_write_on_star(template: Any) -> None:
    for statement in statements(template):
        actions = as_list(statement["Action"])
        assert all("*" not in a for a in actions), statement
        if as_list(statement["Resource"]) == ["*"]:
            assert actions == ["iam:GetAccountAuthorizationDetails"], statement


def test_group_actions_are_scoped_to_this_accounts_groups(template: Any) -> None:
    for statement in statements(template):
        actions = as_list(statement["Action"])
        if any(a.startswith("iam:") and "Group" in a for a in actions):
            assert statement["Resource"] == {"Fn::Sub": GROUP_ARN}


def test_role_grants_exactly_what_the_code_calls(template: Any) -> None:
    granted = {
        a for s in statements(template) for a in as_list(s["Action"]) if a.startswith("iam:")
    }
    used = iam_calls_in_code()
    assert used == granted


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
