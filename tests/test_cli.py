"""The command line: demo, plan and drift (read-only, counted), invoke, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from helpers import ACCOUNT, Stack, make_policy, make_users
from jets_deploy_iam_cli import cli
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployed(iam: IAMClient, strict: StrictIam, stack: Stack) -> str:
    make_users(iam, ["alice", "bob", "carol"])
    arn = make_policy(iam, "Extra")
    assert stack.create({"Users": "alice,bob", "ManagedPolicyArns": arn}).ok
    strict.reset()
    return arn


# -- demo ---------------------------------------------------------------------------------------


def test_demo_runs_the_whole_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "1/12 Create" in out
    # a change made by hand: reported by the scheduled check, then put back by it
    assert "4/12 The scheduled drift check (DriftAction report)" in out
    assert "1 drifted group(s), 1 change(s) found, 0 corrected, 0 failed" in out
    assert "7/12 The scheduled drift check (DriftAction correct)" in out
    assert "1 drifted group(s), 1 change(s) found, 1 corrected, 0 failed" in out
    assert '"_aws"' not in out  # no EMF lines in the demo's output
    assert "+ attach arn:aws:iam::aws:policy/service-role/AWS_ConfigRole" in out
    assert "+ add user carol" in out
    assert "- remove user bob" in out
    assert "FAILED  PhysicalResourceId=Jets" in out
    assert "no such IAM user dave" in out
    assert "group unchanged" in out
    assert "+ create group JetsDeployers (path /)" in out  # a rename is a replacement
    assert "- delete group Jets\n" in out  # CloudFormation's cleanup of the old name
    assert "- delete group JetsDeployers" in out
    assert "demo finished: every step answered as expected" in out
    assert "\033[" not in out  # not a TTY: no colour codes


def test_help_for_every_command() -> None:
    for command in ([], ["demo"], ["plan"], ["policy"], ["drift"], ["invoke"]):
        done = subprocess.run(
            [sys.executable, "-m", "jets_deploy_iam_cli.cli", *command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0
        assert "usage: jets-deploy-iam" in done.stdout


# -- plan ---------------------------------------------------------------------------------------


def test_plan_shows_additions_and_removals_and_writes_nothing(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,carol", "--managed-policy-arns", deployed,
        "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == 0
    assert "plan: Update of Jets" in out
    assert "+ add user carol" in out
    assert "- remove user bob" in out
    assert "1 to add, 0 to change, 1 to remove." in out
    assert strict.writes == []


def test_plan_policy_edit_lists_added_and_removed_actions(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,bob", "--managed-policy-arns", deployed,
        "--services", "s3,lambda,sqs", "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == 0
    assert "~ policy JetsPolicy (+sqs:* -apigateway:*" in out
    assert strict.writes == []


def test_plan_no_changes(deployed: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,bob", "--managed-policy-arns", deployed,
        "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == 0
    assert "no changes" in out


def test_plan_for_a_new_group_is_a_create(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", "--group-name", "Fresh", "--users", "carol")
    assert code == 0
    assert "plan: Create of Fresh" in out
    assert "+ create group Fresh (path /)" in out
    assert strict.writes == []


def test_plan_from_an_event(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event = json.loads((ROOT / "events" / "update-users.json").read_text())
    for props in (event["ResourceProperties"], event["OldResourceProperties"]):
        props["ManagedPolicyArns"] = [deployed]
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, out, _ = run(capsys, "plan", "--event", str(path))
    assert code == 0
    assert "+ add user carol" in out
    assert "- remove user bob" in out
    assert strict.writes == []


def test_plan_delete_event_lists_everything_removed(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event = json.loads((ROOT / "events" / "delete.json").read_text())
    event["PhysicalResourceId"] = "Jets"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, out, _ = run(capsys, "plan", "--event", str(path))
    assert code == 0
    assert "- delete group Jets" in out
    assert strict.writes == []


def test_plan_with_bad_input_is_one_clear_line(
    strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "plan", "--group-name", "bad name", "--account-id", ACCOUNT)
    assert code == 1
    assert err.startswith("error: GroupName 'bad name' is invalid")
    assert "Traceback" not in err
    assert strict.calls == []


def test_plan_with_an_unreadable_event(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--event", "/nonexistent/event.json")
    assert code == 1
    assert "cannot read /nonexistent/event.json" in err


def test_plan_without_credentials_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = run(
        capsys, "plan", "--account-id", ACCOUNT, "--endpoint-url", "http://127.0.0.1:9"
    )
    assert code == 1
    assert "no AWS credentials found" in err


# -- drift --------------------------------------------------------------------------------------

STACK_TEMPLATE = {
    "Parameters": {
        name: {"Type": "String", "Default": ""}
        for name in (
            "GroupName",
            "Users",
            "ManagedPolicyArns",
            "Services",
            "PolicyProfile",
            "ResourcePrefix",
            "AdditionalActions",
            "Exclusive",
            "AdoptExistingGroup",
        )
    },
    "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
}


def make_stack(arn: str, exclusive: str = "true") -> None:
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    values = {
        "GroupName": "Jets",
        "Users": "alice,bob",
        "ManagedPolicyArns": arn,
        "Services": "apigateway,cloudformation,dynamodb,events,iam,lambda,logs,route53,s3",
        "PolicyProfile": "baseline",
        "Exclusive": exclusive,
        "AdoptExistingGroup": "false",
    }
    cfn.create_stack(
        StackName="jets-deploy-iam",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    )


def test_drift_in_sync(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    make_stack(deployed)
    code, out, _ = run(capsys, "drift", "--stack", "jets-deploy-iam")
    assert code == 0
    assert "in sync" in out
    assert strict.writes == []


def test_drift_reports_hand_made_changes(
    iam: IAMClient, deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    make_stack(deployed)
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    iam.detach_group_policy(GroupName="Jets", PolicyArn=deployed)
    iam.put_group_policy(
        GroupName="Jets",
        PolicyName="JetsPolicy",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )  # fmt: skip
    strict.reset()
    code, out, _ = run(capsys, "drift", "--stack", "jets-deploy-iam")
    assert code == 2
    assert "drifted" in out
    assert "- remove user carol" in out
    assert f"+ attach {deployed}" in out
    assert "~ policy JetsPolicy (+apigateway:*" in out
    assert "-*)" in out
    assert strict.writes == []


def test_drift_non_exclusive_ignores_foreign_members(
    iam: IAMClient, deployed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_stack(deployed, exclusive="false")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    code, out, _ = run(capsys, "drift", "--stack", "jets-deploy-iam")
    assert code == 0, out


def test_drift_of_a_missing_stack_is_an_error(
    strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "drift", "--stack", "nope")
    assert code == 1
    assert err.startswith("error: stack nope")


# -- invoke -------------------------------------------------------------------------------------


def test_invoke_runs_a_fixture_against_the_embedded_emulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "invoke", str(ROOT / "events" / "create.json"), "--seed-users", "alice,bob"
    )
    assert code == 0
    result = json.loads(out[out.index('{\n  "response"') :])
    assert result["response"]["Status"] == "SUCCESS"
    assert result["group"]["Members"] == ["alice", "bob"]


def test_invoke_of_an_invalid_event_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "invoke", str(ROOT / "events" / "create-invalid.json"))
    assert code == 1
    result = json.loads(out[out.index('{\n  "response"') :])
    assert result["response"]["Status"] == "FAILED"
    assert result["group"] is None


# -- policy --------------------------------------------------------------------------------


def test_policy_prints_the_document_and_its_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "policy",
        "--policy-profile",
        "scoped",
        "--resource-prefix",
        "shop",
        "--jets-version",
        "6",
        "--account-id",
        ACCOUNT,
    )
    assert code == cli.EXIT_OK
    document = json.loads(out)
    resources = {r for s in document["Statement"] for r in s["Resource"]}
    assert f"arn:aws:codebuild:*:{ACCOUNT}:project/shop-*" in resources
    compact = json.dumps(document, separators=(",", ":"))
    assert f"{len(compact)} of 5120 characters" in err
    assert "Jets 6" in err


def test_policy_from_an_event_uses_its_service_token_account(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event = json.loads((ROOT / "events" / "create.json").read_text())
    props = event["ResourceProperties"]
    props.update(PolicyProfile="scoped", ResourcePrefix="shop")
    props.pop("Services", None)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, out, _ = run(capsys, "policy", "--event", str(path))
    assert code == cli.EXIT_OK
    account = props["ServiceToken"].split(":")[4]
    assert f"arn:aws:iam::{account}:role/shop-*" in out


def test_policy_with_bad_input_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "policy",
        "--policy-profile",
        "scoped",
        "--resource-prefix",
        "shop-staging-and-far-too-long",
        "--account-id",
        ACCOUNT,
    )
    assert code == cli.EXIT_ERROR
    assert out == ""
    assert err.count("\n") == 1
    assert "ResourcePrefix 'shop-staging-and-far-too-long'" in err
