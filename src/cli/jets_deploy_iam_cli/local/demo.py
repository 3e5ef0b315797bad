"""`make demo`: the whole lifecycle of Custom::JetsDeployGroup, run by the real handler against
the embedded IAM emulator, in one process so state carries over between steps.

For each step it prints the plan (read-only, before acting), the response CloudFormation would
receive, and the group afterwards.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.spec import Environment
from jets_deploy_iam_cli.local.context import FUNCTION_ARN
from jets_deploy_iam_cli.local.emulator import EmbeddedAws, embedded_aws
from jets_deploy_iam_cli.local.invoke import invoke
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from jets_deploy_iam_cli.preview import preview, request_from_event
from jets_deploy_iam_cli.render import Style, group_lines, plan_lines, response_lines

if TYPE_CHECKING:
    pass

CONFIG_ROLE = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/jets-deploy-iam/demo"
SEED_USERS = ("alice", "bob", "carol")
BASE = {"ServiceToken": FUNCTION_ARN, "GroupName": "Jets", "ManagedPolicyArns": [CONFIG_ROLE]}


@dataclass(frozen=True)
class Step:
    title: str
    kind: str
    props: dict[str, Any]
    physical_id: str | None = None
    old: dict[str, Any] | None = None
    show: tuple[str, ...] = ()  # groups to print afterwards (default: the physical id's)


STEPS = (
    Step("Create: the Jets docs' group, policy and AWS_ConfigRole", "Create",
         {**BASE, "Users": "alice,bob"}),
    Step("Update: grant carol, revoke bob (revocations run first)", "Update",
         {**BASE, "Users": "alice,carol"}, "Jets", {**BASE, "Users": "alice,bob"}),
    Step("Update with a mistake: a user that does not exist", "Update",
         {**BASE, "Users": "alice,carol,dave"}, "Jets", {**BASE, "Users": "alice,carol"}),
    Step("CloudFormation's rollback of that Update (properties swapped): nothing to undo",
         "Update", {**BASE, "Users": "alice,carol"}, "Jets",
         {**BASE, "Users": "alice,carol,dave"}),
    Step("Update: rename the group (a replacement: a new group with the same content)",
         "Update", {**BASE, "GroupName": "JetsDeployers", "Users": "alice,carol"}, "Jets",
         {**BASE, "Users": "alice,carol"}, show=("Jets", "JetsDeployers")),
    Step("CloudFormation's cleanup: Delete of the old name", "Delete",
         {**BASE, "Users": "alice,carol"}, "Jets", show=("Jets", "JetsDeployers")),
    Step("Delete: the stack goes away", "Delete",
         {**BASE, "GroupName": "JetsDeployers", "Users": "alice,carol"}, "JetsDeployers"),
)  # fmt: skip
EXPECTED = ("SUCCESS", "SUCCESS", "FAILED", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS")


def _event(step: Step) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": step.kind,
        "ServiceToken": FUNCTION_ARN,
        "ResponseURL": "https://localhost/replaced",
        "StackId": STACK,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "JetsDeployGroup",
        "ResourceType": "Custom::JetsDeployGroup",
        "ResourceProperties": step.props,
    }
    if step.physical_id:
        event["PhysicalResourceId"] = step.physical_id
    if step.old:
        event["OldResourceProperties"] = step.old
    return event


def _preview(aws: EmbeddedAws, event: dict[str, Any], style: Style) -> list[str]:
    """What the function will do, decided from the registry and IAM without writing."""
    env = Environment.from_function_arn(FUNCTION_ARN)
    try:
        decision = preview(aws.iam, aws.registry, request_from_event(event, env))
    except JetsDeployIamError as error:
        return ["  " + style(f"would fail: {error}", "red")]
    note = ["  " + style(f"({decision.note})", "dim")] if decision.note else []
    return plan_lines(decision.plan, style) + note


def run(out: TextIO = sys.stdout) -> int:
    """Run every step; exit 0 only if each step answered as the contract says it must."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the handler's JSON logs stay quiet
    style = Style.for_stream(out)
    say: Callable[[str], None] = functools.partial(print, file=out)
    say(style("jets-deploy-iam demo", "bold") + " - the real handler against an embedded IAM")
    say(style(f"seeded IAM users: {', '.join(SEED_USERS)}", "dim"))
    ok = True
    with embedded_aws(SEED_USERS) as aws, ResponseReceiver() as receiver:
        client = aws.iam
        for number, (step, want) in enumerate(zip(STEPS, EXPECTED, strict=True), start=1):
            say("")
            say(style(f"== {number}/{len(STEPS)} {step.title} ", "cyan", "bold"))
            say(style("plan", "bold"))
            event = _event(step)
            for line in _preview(aws, event, style):
                say(line)
            before = read_group(client, step.physical_id or step.props["GroupName"])
            response = invoke(event, receiver)
            say(style("response", "bold"))
            for line in response_lines(response, style):
                say(line)
            if response["Status"] == "FAILED":
                unchanged = read_group(client, step.physical_id or "") == before
                say("  " + style("group unchanged" if unchanged else "GROUP CHANGED", "dim"))
                ok = ok and unchanged
            say(style("afterwards", "bold"))
            for name in step.show or (str(response["PhysicalResourceId"]),):
                for line in group_lines(read_group(client, name), style, name_hint=name):
                    say(line)
            ok = ok and response["Status"] == want
    say("")
    say(style("demo finished: every step answered as expected" if ok else "demo FAILED", "bold"))
    return 0 if ok else 1
