"""The command line: demo, plan from flags or an event (read-only, counted), policy, invoke, and
local use (regions, endpoints, credentials, one-line errors, logs apart from results).

Stacks (plan --stack, drift, apply) are in test_cli_stack.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from helpers import ACCOUNT, Stack, make_policy, make_users
from jets_deploy_iam.limits import MAX_GROUP_INLINE_POLICY_CHARS
from jets_deploy_iam.registry.store import DynamoDBRegistry
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


@pytest.mark.parametrize(
    "command", [[], ["plan"], ["drift"], ["apply"], ["policy"], ["invoke"], ["demo"]]
)
def test_help_for_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: jets-deploy-iam")


def test_usage_errors_exit_1_not_2_which_means_changes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["plan", "--no-such-flag"])
    assert done.value.code == cli.EXIT_ERROR
    assert "error: unrecognized arguments: --no-such-flag" in capsys.readouterr().err


# -- plan ---------------------------------------------------------------------------------------


def test_plan_shows_additions_and_removals_and_writes_nothing(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,carol", "--managed-policy-arns", deployed,
        "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == cli.EXIT_CHANGES
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
    assert code == cli.EXIT_CHANGES
    assert "~ policy JetsPolicy (+sqs:* -apigateway:*" in out
    assert strict.writes == []


def test_plan_no_changes(deployed: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,bob", "--managed-policy-arns", deployed,
        "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == cli.EXIT_OK
    assert out.splitlines() == ["plan: Update of Jets", "  no changes"]


def test_plan_for_a_new_group_is_a_create(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", "--group-name", "Fresh", "--users", "carol")
    assert code == cli.EXIT_CHANGES
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
    assert code == cli.EXIT_CHANGES
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
    assert code == cli.EXIT_CHANGES
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


def test_plan_runs_the_functions_pre_flight(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's example: a user and a policy that do not exist are the deploy's failure."""
    missing = f"arn:aws:iam::{ACCOUNT}:policy/NoSuchPolicy"
    code, out, _ = run(
        capsys, "plan", "--users", "alice,ghost", "--managed-policy-arns", missing,
        "--account-id", ACCOUNT,
    )  # fmt: skip
    assert code == cli.EXIT_ERROR
    assert out.splitlines()[-4:] == [
        "  the deploy would FAIL (nothing would be changed):",
        "    - Users: no such IAM user ghost: create the user(s) first or fix the name",
        f"    - ManagedPolicyArns entry {missing} does not exist in this account",
        "the deploy would fail: see above",
    ]
    assert strict.writes == []


def test_plan_refuses_flags_it_would_ignore(
    deployed: str, strict: StrictIam, capsys: pytest.CaptureFixture[str]
) -> None:
    event = str(ROOT / "events" / "update-users.json")
    cases = {
        ("--event", event, "--users", "alice"): "error: --event takes its properties from the "
        "event: drop --users (or edit the event)",
        ("--stack", "s", "--users", "alice"): "error: plan --stack previews the stack's own "
        "properties: drop --users; change parameters with --parameter-overrides KEY=VALUE",
        ("--parameter-overrides", "Users=alice"): "error: --parameter-overrides needs --stack "
        "(the stack whose parameters change)",
    }
    for argv, message in cases.items():
        code, out, err = run(capsys, "plan", *argv)
        assert (code, out, err) == (cli.EXIT_ERROR, "", message + "\n")
    assert strict.calls == []


def test_plan_json_for_ci(deployed: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--users", "alice,carol", "--managed-policy-arns", deployed,
        "--account-id", ACCOUNT, "--output", "json",
    )  # fmt: skip
    body = json.loads(out)
    assert code == body["exit_code"] == cli.EXIT_CHANGES
    assert [c["change"] for c in body["resources"][0]["changes"]] == [
        "remove user bob",
        "add user carol",
    ]


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
    assert f"{len(compact)} of {MAX_GROUP_INLINE_POLICY_CHARS} characters" in err
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


def test_policy_refuses_flags_next_to_an_event(capsys: pytest.CaptureFixture[str]) -> None:
    event = str(ROOT / "events" / "create.json")
    code, out, err = run(capsys, "policy", "--event", event, "--policy-profile", "scoped")
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == (
        "error: --event takes its properties from the event: drop --policy-profile (or edit the "
        "event)\n"
    )


# -- invoke ------------------------------------------------------------------------------------


def test_invoke_runs_a_fixture_against_the_embedded_emulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "invoke", str(ROOT / "events" / "create.json"), "--seed-users", "alice,bob"
    )
    assert code == cli.EXIT_OK
    result = json.loads(out)  # stdout is the result alone
    assert result["response"]["Status"] == "SUCCESS"
    assert result["group"]["Members"] == ["alice", "bob"]
    # the embedded emulator loads AWS managed policies: the fixture's AWS_ConfigRole attached
    assert result["group"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
    ]


def test_invoke_of_an_invalid_event_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "invoke", str(ROOT / "events" / "create-invalid.json"))
    assert code == cli.EXIT_ERROR
    result = json.loads(out)
    assert result["response"]["Status"] == "FAILED"
    assert result["group"] is None


def test_invoke_output_pipes_to_a_json_tool(tmp_path: Path) -> None:
    """The handler's JSON log lines go to stderr: stdout parses as one JSON document."""
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "INFO"}
    invoked = subprocess.run(
        [sys.executable, "-m", "jets_deploy_iam_cli.cli", "invoke",
         str(ROOT / "events" / "create.json"), "--seed-users", "alice,bob"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert invoked.returncode == cli.EXIT_OK, invoked.stderr
    assert json.loads(invoked.stdout)["response"]["Status"] == "SUCCESS"
    logged = [json.loads(line) for line in invoked.stderr.splitlines()]
    assert "request finished" in [line["message"] for line in logged]


def test_invoke_of_a_sam_cli_generated_event_answers_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sam local generate-event cloudformation create-request` (tests/data): its RequestId has
    spaces (escaped in the response URL) and its properties are not ours (one FAILED answer)."""
    code, out, _ = run(capsys, "invoke", str(ROOT / "tests" / "data" / "sam-create-request.json"))
    assert code == cli.EXIT_ERROR
    response = json.loads(out)["response"]
    assert response["Status"] == "FAILED"
    assert response["RequestId"] == "unique id for this create request"
    assert response["Reason"].startswith("unknown properties 'List', 'StackName'")


def test_the_embedded_emulator_ignores_endpoints_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens there
    config = tmp_path / "config"
    config.write_text("[default]\nendpoint_url = http://127.0.0.1:9\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    code, out, _ = run(
        capsys, "invoke", str(ROOT / "events" / "create.json"), "--seed-users", "alice,bob"
    )
    assert code == cli.EXIT_OK, out
    assert os.environ["AWS_ENDPOINT_URL_IAM"] == "http://127.0.0.1:9"  # restored afterwards


def test_invoke_against_a_moto_server(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    """As the README says: a moto server with AWS managed policies; no credentials and no region
    configured (dummy credentials, us-east-1); the registry table is created there."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_DEFAULT_REGION", "AWS_REGION"):  # fmt: skip
        monkeypatch.delenv(variable)
    event = json.loads((ROOT / "events" / "create.json").read_text())
    event["ResourceProperties"]["GroupName"] = "JetsOnMotoServer"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, out, _ = run(
        capsys, "invoke", str(path), "--seed-users", "alice,bob", "--endpoint-url", moto_server,
        "--registry-table", "invoke-registry",
    )  # fmt: skip
    assert code == cli.EXIT_OK, out
    assert json.loads(out)["group"]["Members"] == ["alice", "bob"]
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=moto_server, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    records = [s.record for s in DynamoDBRegistry(dynamodb, "invoke-registry").scan()]
    assert [r.current for r in records] == ["JetsOnMotoServer"]  # the function recorded it


# -- local use: regions, endpoints, credentials, errors -----------------------------------------


def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_DEFAULT_REGION", "AWS_REGION"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_without_credentials_the_message_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_credentials(monkeypatch, tmp_path)  # and no region: IAM and STS need none
    for argv in (["--account-id", ACCOUNT], ["--group-name", "Jets"]):
        code, out, err = run(capsys, "plan", *argv)
        assert (code, out) == (cli.EXIT_ERROR, "")
        assert err == (
            "error: no AWS credentials found: configure them (aws configure, AWS_PROFILE, "
            "--profile), or pass --endpoint-url to use a local emulator (a moto server)\n"
        )


def test_an_endpoint_needs_no_credentials_and_no_region(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    no_credentials(monkeypatch, tmp_path)
    code, out, err = run(
        capsys, "plan", "--group-name", "NotThereYet", "--endpoint-url", moto_server
    )  # the account comes from STS, on the emulator
    assert code == cli.EXIT_CHANGES, err
    assert "+ create group NotThereYet (path /)" in out


def test_an_unknown_profile_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_credentials(monkeypatch, tmp_path)
    code, _, err = run(capsys, "plan", "--account-id", ACCOUNT, "--profile", "nobody")
    assert code == cli.EXIT_ERROR
    assert err == "error: The config profile (nobody) could not be found\n"


@pytest.mark.parametrize(
    ("url", "hint"),
    [("localhost:5000", ": did you mean http://localhost:5000?"), ("ftp://host", "")],
)
def test_an_endpoint_without_a_scheme_is_one_line(
    url: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["plan", "--account-id", ACCOUNT], ["invoke", "events/create.json"]):
        code, out, err = run(capsys, *command, "--endpoint-url", url)
        assert (code, out) == (cli.EXIT_ERROR, "")
        assert err == f"error: --endpoint-url {url!r} is not an http:// or https:// URL{hint}\n"


def test_an_endpoint_that_is_not_aws_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """botocore's ResponseParserError: a web server that answers 200 with something else."""

    class NotAws(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>a web page</body>")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), NotAws)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run(capsys, "plan", "--account-id", ACCOUNT, "--endpoint-url", url)
    finally:
        server.shutdown()
        server.server_close()
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == (
        f"error: the answer from {url} is not an AWS API response (is it a moto server?)\n"
    )


def test_an_endpoint_nobody_listens_on_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "plan", "--account-id", ACCOUNT, "--endpoint-url", "http://127.0.0.1:9"
    )
    assert code == cli.EXIT_ERROR
    assert err == 'error: Could not connect to the endpoint URL: "http://127.0.0.1:9/"\n'


def test_without_the_local_tools_demo_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # as after `pip install .` without [local]
    code, _, err = run(capsys, "demo")
    assert code == cli.EXIT_ERROR
    assert err == (
        "error: this command needs the local tools (moto is missing): "
        "pip install 'jets-deploy-iam[local]'\n"
    )
