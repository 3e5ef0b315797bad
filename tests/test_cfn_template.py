"""Templates read and resolved as CloudFormation does, without AWS: the short-form YAML tags, the
intrinsic functions a Custom::JetsDeployGroup's properties may use, and what only CloudFormation
can know (said, never guessed)."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import ACCOUNT, ROOT
from jets_deploy_iam_cli.template import (
    MASKED,
    Parameter,
    Scope,
    UnresolvedError,
    load_template,
    resource_properties,
)

STACK_ID = f"arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/shop/0b1c"
PSEUDO = {
    "AWS::StackName": "shop",
    "AWS::StackId": STACK_ID,
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def scope(template: dict[str, Any], **values: str) -> Scope:
    declared = template.get("Parameters", {})
    parameters = {
        name: Parameter(name, spec.get("Type", "String"), values.get(name, spec.get("Default", "")),
                        bool(spec.get("NoEcho")))
        for name, spec in declared.items()
    }  # fmt: skip
    exports = {"jets-deploy-iam-ServiceToken": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f"}
    return Scope(
        template,
        parameters,
        PSEUDO,
        resources={"Fn": ("AWS::Lambda::Function", "jets-fn"), "Queue": ("AWS::SQS::Queue", "q")},
        exports=exports.get,
    )


def test_the_example_consumer_stack_resolves_with_its_short_form_tags() -> None:
    template = load_template((ROOT / "examples" / "consumer-stack.yaml").read_text())
    resolved = resource_properties(scope(template, StagingUsers="carol,dave"), "StagingDeployGroup")
    assert resolved.unresolved == ()
    assert resolved.values == {
        "ServiceToken": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f",
        "ServiceTimeout": "420",  # CloudFormation sends every scalar as a string
        "GroupName": "JetsStaging",
        "PolicyName": "JetsStagingPolicy",
        "PolicyProfile": "scoped",
        "ResourcePrefix": "shop",
        "JetsVersion": "5",
        "Users": ["carol", "dave"],
        "Exclusive": "true",
    }


TEMPLATE = """
Parameters:
  Profile: {Type: String, Default: baseline}
  Users: {Type: CommaDelimitedList, Default: "alice,bob"}
  Secret: {Type: String, NoEcho: true}
  FromSsm: {Type: "AWS::SSM::Parameter::Value<String>", Default: /jets/users}
Mappings:
  Envs: {prod: {Path: /prod/}}
Conditions:
  IsScoped: !Equals [!Ref Profile, scoped]
  IsBaseline: !Not [!Condition IsScoped]
  Both: !And [!Condition IsBaseline, !Or [!Equals [a, b], !Equals [c, c]]]
Resources:
  Group:
    Type: Custom::JetsDeployGroup
    Properties:
      ServiceToken: !GetAtt Fn.Arn
      GroupName: !Sub "${AWS::StackName}-${Profile}"
      GroupPath: !FindInMap [Envs, prod, Path]
      Users: !If [IsScoped, [carol], !Ref Users]
      Services: !If [IsScoped, !Ref AWS::NoValue, !Split [",", "s3,lambda"]]
      ResourcePrefix: !If [IsScoped, shop, !Ref AWS::NoValue]
      AdditionalActions: [!Join [":", [sqs, !Select [1, [a, SendMessage]]]], !Ref AWS::NoValue]
      Exclusive: !If [Both, true, false]
      PolicyName: !Sub ["${Name}Policy", {Name: !Ref AWS::StackName}]
  Conditional:
    Type: Custom::JetsDeployGroup
    Condition: IsScoped
    Properties: {GroupName: Other}
"""


def test_intrinsic_functions_and_conditions_resolve_as_cloudformation_would() -> None:
    template = load_template(TEMPLATE)
    baseline = resource_properties(scope(template), "Group")
    assert baseline.unresolved == ()
    assert baseline.values == {
        "ServiceToken": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:jets-fn",
        "GroupName": "shop-baseline",
        "GroupPath": "/prod/",
        "Users": ["alice", "bob"],
        "Services": ["s3", "lambda"],
        "AdditionalActions": ["sqs:SendMessage"],
        "Exclusive": "true",
        "PolicyName": "shopPolicy",
    }
    scoped = resource_properties(scope(template, Profile="scoped"), "Group")
    assert scoped.values["Users"] == ["carol"]
    assert scoped.values["ResourcePrefix"] == "shop"
    assert "Services" not in scoped.values
    assert scoped.values["Exclusive"] == "false"
    assert not resource_properties(scope(template), "Conditional").exists
    assert resource_properties(scope(template, Profile="scoped"), "Conditional").exists


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (
            {"Ref": "Secret"},
            "parameter Secret is NoEcho (CloudFormation never shows its value): "
            "pass it with --parameter-overrides Secret=...",
        ),
        ({"Ref": "FromSsm"}, "parameter FromSsm is read from SSM at deploy time (/jets/users)"),
        (
            {"Fn::GetAtt": ["Queue", "Arn"]},
            "Fn::GetAtt Queue.Arn: an attribute only CloudFormation knows",
        ),
        ({"Fn::ImportValue": "nope"}, "Fn::ImportValue nope: no such export in this region"),
        ({"Ref": "Nothing"}, "Ref Nothing: neither a parameter nor a resource of the stack"),
        ({"Fn::GetAZs": ""}, "Fn::GetAZs is not something this preview evaluates"),
        (
            {"Fn::If": ["Undeclared", "a", "b"]},
            "condition Undeclared is not declared in the template",
        ),
    ],
)
def test_what_only_cloudformation_knows_is_named(value: Any, why: str) -> None:
    template = load_template(TEMPLATE)
    values = {"Secret": MASKED}
    with pytest.raises(UnresolvedError) as caught:
        scope(template, **values).resolve(value)
    assert str(caught.value) == why


def test_an_unresolved_property_is_reported_by_name_and_the_others_still_resolve() -> None:
    template = {
        "Resources": {
            "G": {
                "Type": "Custom::JetsDeployGroup",
                "Properties": {"GroupName": "Jets", "Users": {"Fn::GetAtt": ["Queue", "Name"]}},
            }
        }
    }
    resolved = resource_properties(scope(template), "G")
    assert resolved.values == {"GroupName": "Jets"}
    assert resolved.unresolved == (
        "Users: Fn::GetAtt Queue.Name: an attribute only CloudFormation knows",
    )


def test_json_and_yaml_bodies_load_and_dates_stay_strings() -> None:
    assert load_template({"Resources": {}}) == {"Resources": {}}
    assert load_template("Version: 2012-10-17\n") == {"Version": "2012-10-17"}
    assert load_template('{"A": {"Ref": "B"}}') == {"A": {"Ref": "B"}}
