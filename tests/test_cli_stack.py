"""The command line against deployed stacks (moto's CloudFormation, whose custom resources the
real controller serves): plan --stack as a change set would, drift from the registry, apply."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from helpers import (
    ACCOUNT,
    CONSUMER_TEMPLATE,
    ENV,
    MotoCloudFormation,
    controller_sender,
    event,
    main_stack_template,
    make_policy,
    make_users,
    snapshot,
)
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import DynamoDBRegistry
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam_cli import cli
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

MAIN = "jets-deploy-iam"
CONSUMER = "shop-staging-deployers"
CONFIG_ROLE = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def registry_of(stack: str) -> DynamoDBRegistry:
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    table = cfn.describe_stack_resource(StackName=stack, LogicalResourceId="RegistryTable")
    name = table["StackResourceDetail"]["PhysicalResourceId"]
    return DynamoDBRegistry(boto3.client("dynamodb", region_name="us-east-1"), name)


@pytest.fixture
def world(iam: IAMClient) -> dict[str, str]:
    make_users(iam, ["alice", "bob", "carol", "dave"])
    return {"config_role": make_policy(iam, "AWS_ConfigRole"), "extra": make_policy(iam, "Extra")}


@pytest.fixture
def main_stack(cloudformation: MotoCloudFormation, strict: StrictIam, world: dict[str, str]) -> str:
    """The main stack deployed with two users and a managed policy (the README's example)."""
    stack_id = cloudformation.deploy(
        MAIN, main_stack_template(), Users="alice,bob", ManagedPolicyArns=world["config_role"]
    )
    assert [a.ok for a in cloudformation.answers] == [True]
    strict.reset()
    return stack_id


@pytest.fixture
def consumer_stack(main_stack: str, cloudformation: MotoCloudFormation, strict: StrictIam) -> str:
    """A consumer stack with two resources, both served by the main stack's function."""
    stack_id = cloudformation.deploy(
        CONSUMER, CONSUMER_TEMPLATE, StagingUsers="carol", ReaderUsers="dave,alice"
    )
    assert [a.ok for a in cloudformation.answers] == [True, True, True]
    strict.reset()
    return stack_id


# -- plan --stack ----------------------------------------------------------------------------


def test_plan_stack_keeps_the_other_parameters_like_a_change_set(
    main_stack: str, world: dict[str, str], strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Users=alice")
    assert code == cli.EXIT_CHANGES
    assert out.splitlines() == [
        f"plan: JetsDeployGroup of stack {MAIN}: Update of Jets",
        "  - remove user bob",
        "0 to add, 0 to change, 1 to remove.",
    ]  # the managed policy and everything else stay: only Users changed
    assert f"registry: {registry_of(MAIN).table} (RegistryTable of stack {MAIN})" in err
    assert strict.writes == []


def test_plan_stack_without_overrides_sends_no_request(
    main_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", "--stack", MAIN)
    assert code == cli.EXIT_OK
    assert "its properties do not change: a deploy sends it no request" in out


def test_plan_stack_runs_the_functions_pre_flight(
    main_stack: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"arn:aws:iam::{ACCOUNT}:policy/NoSuchPolicy"
    code, out, _ = run(
        capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Users=alice,ghost",
        f"ManagedPolicyArns={missing}",
    )  # fmt: skip
    assert code == cli.EXIT_ERROR
    assert "the deploy would FAIL (nothing would be changed):" in out
    assert "- Users: no such IAM user ghost: create the user(s) first or fix the name" in out
    assert f"- ManagedPolicyArns entry {missing} does not exist in this account" in out
    assert strict.writes == []


def test_plan_stack_checks_overrides_as_cloudformation_does(
    main_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Userz=x")
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err.startswith(f"error: stack {MAIN} has no parameter Userz (its parameters: ")
    code, _, err = run(capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Exclusive=yes")
    assert code == cli.EXIT_ERROR
    assert err == "error: parameter Exclusive='yes' is not one of true, false\n"


def test_plan_stack_json_for_ci(main_stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--stack", MAIN, "--output", "json",
        "--parameter-overrides", "Users=alice,carol", "PolicyProfile=scoped", "ResourcePrefix=shop",
    )  # fmt: skip
    body = json.loads(out)
    assert code == body["exit_code"] == cli.EXIT_CHANGES
    (resource,) = body["resources"]
    assert resource["request"] == "Update"
    assert resource["group"] == "Jets"
    assert resource["action"] == "update"
    changes = [(c["symbol"], c["type"]) for c in resource["changes"]]
    assert changes == [("-", "RemoveMember"), ("~", "PutPolicy"), ("+", "AddMember")]
    assert body["summary"] == {"add": 1, "change": 1, "remove": 1}


def test_plan_stack_of_a_stack_that_is_not_ours(
    cloudformation: MotoCloudFormation, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    cloudformation.deploy("not-ours", queue)
    code, out, err = run(capsys, "plan", "--stack", "not-ours")
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == (
        "error: stack not-ours declares no Custom::JetsDeployGroup resource: not a "
        "jets-deploy-iam stack or a stack using its ServiceToken\n"
    )
    code, _, err = run(capsys, "plan", "--stack", "nope")
    assert code == cli.EXIT_ERROR
    assert err.startswith("error: stack nope: Stack with id nope does not exist")
    code, _, err = run(capsys, "plan", "--stack", "not-ours", "--region", "eu-west-1")
    assert code == cli.EXIT_ERROR  # --region: CloudFormation is regional, the stack is not there
    assert err.startswith("error: stack not-ours: Stack with id not-ours does not exist")


def test_plan_stack_of_a_consumer_with_two_resources(
    consumer_stack: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "plan", "--stack", CONSUMER, "--parameter-overrides", "ReaderUsers=dave",
        "Strict=false",
    )  # fmt: skip
    assert code == cli.EXIT_CHANGES
    # found through the ServiceToken's export and the function's configuration
    assert f"registry: {registry_of(MAIN).table} (JETS_REGISTRY_TABLE of arn:aws:lambda:" in err
    assert out.splitlines() == [
        f"plan: StagingDeployGroup of stack {CONSUMER}: Update of JetsStaging",
        "  no changes",  # Exclusive true -> false: nothing to remove or add
        f"plan: ReadersGroup of stack {CONSUMER}: Update of {CONSUMER}-readers",
        "  - remove user alice",
        "0 to add, 0 to change, 1 to remove.",
    ]
    assert strict.writes == []


def test_plan_stack_condition_turning_false_is_a_delete(
    consumer_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", "--stack", CONSUMER, "--parameter-overrides", "ReaderUsers=")
    assert code == cli.EXIT_CHANGES
    assert f"plan: ReadersGroup of stack {CONSUMER}: Delete of {CONSUMER}-readers" in out
    assert f"  - delete group {CONSUMER}-readers" in out


def test_plan_stack_says_what_it_cannot_resolve(
    main_stack: str, cloudformation: MotoCloudFormation, capsys: pytest.CaptureFixture[str]
) -> None:
    template: dict[str, Any] = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Group": {"Type": "Custom::JetsDeployGroup", "Properties": {
                "ServiceToken": {"Fn::ImportValue": f"{MAIN}-ServiceToken"},
                "GroupName": "FromQueue",
                "GroupPath": {"Fn::Sub": "/${Queue.QueueName}/"},
            }},
        }
    }  # fmt: skip
    cloudformation.deploy("opaque", template)
    code, out, _ = run(capsys, "plan", "--stack", "opaque")
    assert code == cli.EXIT_ERROR
    assert out.splitlines() == [
        "plan: Group of stack opaque",
        "  cannot preview: only CloudFormation knows",
        "    - GroupPath: Fn::GetAtt Queue.QueueName: an attribute only CloudFormation knows",
        "the deploy would fail: see above",
    ]


def test_plan_stack_uses_the_functions_registry_for_ownership(
    iam: IAMClient, cloudformation: MotoCloudFormation, world: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """carol was in the adopted group before the stack declared her: the registry records her
    as foreign, so dropping her from Users leaves her (the function's rule for Exclusive false).
    Without the registry the preview would have to guess, and would remove her."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    cloudformation.deploy(
        MAIN, main_stack_template(), Users="alice,carol", Exclusive="false",
        AdoptExistingGroup="true",
    )  # fmt: skip
    code, out, _ = run(capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Users=alice")
    assert code == cli.EXIT_OK
    assert out.splitlines() == [
        f"plan: JetsDeployGroup of stack {MAIN}: Update of Jets",
        "  no changes",
    ]
    code, out, _ = run(capsys, "plan", "--stack", MAIN, "--parameter-overrides", "Users=carol")
    assert code == cli.EXIT_CHANGES
    assert "  - remove user alice" in out  # alice, the resource added: it may remove her


# -- drift -----------------------------------------------------------------------------------

HANDMADE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def tamper(iam: IAMClient) -> None:
    """What people do by hand between deploys."""
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )
    iam.remove_user_from_group(GroupName=f"{CONSUMER}-readers", UserName="dave")


def versions(registry: DynamoDBRegistry) -> dict[str, int]:
    return {s.record.key.logical_id: s.version for s in registry.scan()}


def test_drift_prints_the_plans_of_the_scheduled_check_for_every_registered_resource(
    iam: IAMClient, consumer_stack: str, main_stack: str, strict: StrictIam,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tamper(iam)
    registry = registry_of(MAIN)
    before = versions(registry)
    strict.reset()
    code, out, err = run(capsys, "drift")  # the registry of the default main stack
    assert code == cli.EXIT_DRIFT
    assert f"(RegistryTable of stack {MAIN})" in err
    expected: list[str] = []
    for stack_id, logical, status in (
        (main_stack, "JetsDeployGroup", "drifted"),
        (consumer_stack, "ReadersGroup", "drifted"),
        (consumer_stack, "StagingDeployGroup", "in-sync"),
    ):
        key = ResourceKey(stack_id, logical)
        drift = Controller(iam, registry).check_drift(key, ENV, correct=False)  # the function's
        expected.append(f"{status}: {logical} of stack {key.stack_name}: group {drift.group}")
        expected += [f"  {line}" for line in drift.plan.lines()]
        if status == "drifted":
            expected.append(f"  to correct it now: jets-deploy-iam apply --stack {key.stack_name}")
    expected.append(
        "a deploy with unchanged parameters corrects nothing (CloudFormation sends a custom "
        "resource no request then): use apply, or DriftAction correct"
    )
    lines = [line for line in out.splitlines() if "DriftAction is correct" not in line]
    assert lines == expected
    assert "  - remove user carol" in out
    assert "  ~ policy JetsPolicy (+apigateway:*" in out
    assert "  + add user dave" in out
    assert "(DriftAction is correct: the scheduled check corrects it too)" in out  # readers'
    assert strict.writes == []
    assert versions(registry) == before  # read only


def test_drift_of_one_stack_and_as_json(
    iam: IAMClient, consumer_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(iam)
    code, out, _ = run(capsys, "drift", "--stack", CONSUMER, "--output", "json")
    body = json.loads(out)
    assert code == body["exit_code"] == cli.EXIT_DRIFT
    found = {(r["logical_id"], r["status"]) for r in body["resources"]}
    assert found == {("ReadersGroup", "drifted"), ("StagingDeployGroup", "in-sync")}
    readers = next(r for r in body["resources"] if r["logical_id"] == "ReadersGroup")
    assert readers["changes"] == [
        {"symbol": "+", "type": "AddMember", "group": f"{CONSUMER}-readers",
         "change": "add user dave"},
    ]  # fmt: skip


def test_drift_in_sync_exits_0(consumer_stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "drift", "--stack", MAIN)
    assert code == cli.EXIT_OK
    assert out.splitlines() == [f"in-sync: JetsDeployGroup of stack {MAIN}: group Jets"]


def test_drift_is_honest_about_missing_and_replaced_groups(
    iam: IAMClient, consumer_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group deleted by hand is drift (apply creates it again); a group made again by hand
    under the same name is someone else's; a resource whose Create failed holds no group (its
    placeholder physical id is never shown as one)."""
    readers = f"{CONSUMER}-readers"
    for user in ("alice", "dave"):
        iam.remove_user_from_group(GroupName=readers, UserName=user)
    iam.delete_group_policy(GroupName=readers, PolicyName="JetsPolicy")
    iam.delete_group(GroupName=readers)
    staging = "JetsStaging"
    iam.remove_user_from_group(GroupName=staging, UserName="carol")
    iam.delete_group_policy(GroupName=staging, PolicyName="JetsStagingPolicy")
    iam.delete_group(GroupName=staging)
    iam.create_group(GroupName=staging)
    failed = controller_sender(iam, registry_of(MAIN))(
        event(
            "Create",
            {"GroupName": "Broken", "Users": "ghost"},
            stack=consumer_stack,
            logical_id="Broken",
        )
    )
    assert failed.physical_id.startswith("no-group:")
    code, out, _ = run(capsys, "drift", "--stack", CONSUMER)
    assert code == cli.EXIT_DRIFT
    assert out.splitlines()[:6] == [
        f"not checked: Broken of stack {CONSUMER}: no group: the resource is deleted or never "
        "created",
        f"drifted: ReadersGroup of stack {CONSUMER}: group {readers}",
        f"  + create group {readers} (path /{CONSUMER}/)",
        "  + put policy JetsPolicy",
        "  + add user dave",
        "  + add user alice",
    ]
    assert (
        f"replaced: StagingDeployGroup of stack {CONSUMER}: group {staging}\n"
        "  the group was replaced or taken over outside this resource: left alone\n"
    ) in out
    assert "no-group:" not in out


# -- apply -----------------------------------------------------------------------------------


def test_apply_converges_the_stacks_groups_to_their_declaration(
    iam: IAMClient, consumer_stack: str, main_stack: str, strict: StrictIam,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    before = snapshot(iam, "Jets")
    tamper(iam)
    strict.reset()
    code, out, _ = run(capsys, "apply", "--stack", MAIN, "--yes")
    assert code == cli.EXIT_OK, out
    assert "applied 2 changes to group Jets" in out
    assert snapshot(iam, "Jets") == before
    assert {c.group for c in strict.writes} == {"Jets"}  # the consumer's groups: untouched
    code, out, _ = run(capsys, "drift", "--stack", MAIN)
    assert code == cli.EXIT_OK
    assert out.splitlines() == [f"in-sync: JetsDeployGroup of stack {MAIN}: group Jets"]
    code, out, _ = run(capsys, "apply", "--stack", MAIN, "--yes")
    assert (code, out.splitlines()[-1]) == (cli.EXIT_OK, "nothing to apply: every group is in sync")


def test_apply_asks_first_and_changes_nothing_unless_told_yes(
    iam: IAMClient, consumer_stack: str, strict: StrictIam, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tamper(iam)
    strict.reset()
    code, _, err = run(capsys, "apply", "--stack", CONSUMER)  # stdin is not a terminal here
    assert code == cli.EXIT_ERROR
    assert err.endswith(
        "error: apply asks before changing IAM: run it in a terminal, or pass --yes\n"
    )
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or "y")
    code, _, err = run(capsys, "apply", "--stack", CONSUMER)
    assert code == cli.EXIT_ERROR
    assert asked == [f"apply these 1 changes to {CONSUMER}-readers? Only 'yes' is accepted: "]
    assert "apply cancelled: nothing changed" in err
    assert strict.writes == []
    monkeypatch.setattr("builtins.input", lambda _q: "yes")
    code, out, _ = run(capsys, "apply", "--stack", CONSUMER)
    assert code == cli.EXIT_OK
    assert f"applied 1 changes to group {CONSUMER}-readers" in out
    assert [(c.action, c.params["UserName"]) for c in strict.writes] == [("AddUserToGroup", "dave")]


def test_apply_applies_only_the_plan_that_was_confirmed(
    iam: IAMClient, consumer_stack: str, strict: StrictIam, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tamper(iam)

    def someone_acts_meanwhile(_question: str) -> str:
        iam.add_user_to_group(GroupName=f"{CONSUMER}-readers", UserName="bob")
        strict.reset()
        return "yes"

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", someone_acts_meanwhile)
    code, _, err = run(capsys, "apply", "--stack", CONSUMER)
    assert code == cli.EXIT_ERROR
    assert err.endswith(
        f"error: group {CONSUMER}-readers changed since its plan was shown: nothing applied to "
        "it; run apply again to see the new plan\n"
    )
    assert strict.writes == []


def test_a_resource_the_registry_does_not_know_is_named_not_skipped(
    main_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group deployed before the registry existed has no record: drift cannot compare it with a
    declaration it never recorded, and says so instead of printing nothing."""
    registry = registry_of(MAIN)
    registry.client.delete_item(
        TableName=registry.table,
        Key={"StackId": {"S": main_stack}, "LogicalResourceId": {"S": "JetsDeployGroup"}},
    )
    code, out, err = run(capsys, "drift", "--stack", MAIN)
    assert (code, out) == (cli.EXIT_OK, "the registry holds no resource of stack jets-deploy-iam\n")
    assert (
        f"not registered: JetsDeployGroup of stack {MAIN} (deployed before the registry, or never "
        "created): not checked; deploy it once with this version\n"
    ) in err
