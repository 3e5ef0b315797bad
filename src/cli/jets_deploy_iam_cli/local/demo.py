"""`make demo`: the whole lifecycle of Custom::JetsDeployGroup, run by the real handler against
the embedded IAM emulator, in one process so state carries over between steps.

For each step it prints the plan (read-only, before acting), the response CloudFormation would
receive (or, for the scheduled drift check, the run's summary), and the group afterwards. Two
steps are someone changing the group by hand, outside CloudFormation, for the drift check to
find: first reported (``DriftAction: report``), then put back (``DriftAction: correct``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from jets_deploy_iam.enforce import RECONCILE_ALL, TRIGGER_KEY
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam.spec import Environment
from jets_deploy_iam_cli.local.context import FUNCTION_ARN
from jets_deploy_iam_cli.local.emulator import EmbeddedAws, embedded_aws
from jets_deploy_iam_cli.local.invoke import invoke, invoke_scheduled
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from jets_deploy_iam_cli.preview import preview, request_from_event
from jets_deploy_iam_cli.render import Style, group_lines, plan_lines, response_lines

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

CONFIG_ROLE = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/jets-deploy-iam/demo"
SEED_USERS = ("alice", "bob", "carol")
BASE = {"ServiceToken": FUNCTION_ARN, "GroupName": "Jets", "ManagedPolicyArns": [CONFIG_ROLE]}
#: From step 5 on, the scheduled drift check puts hand-made changes back.
CORRECTING = {**BASE, "DriftAction": "correct"}
#: What template.yaml's schedule sends (its DriftCheckRule's Input).
SCHEDULE_INPUT = {TRIGGER_KEY: RECONCILE_ALL}
KEY = ResourceKey(STACK, "JetsDeployGroup")
BY_HAND = "by hand"
SCHEDULED = "scheduled"


def _bob_added_by_hand(iam: IAMClient) -> None:
    iam.add_user_to_group(GroupName="Jets", UserName="bob")


@dataclass(frozen=True)
class Step:
    title: str
    #: Create | Update | Delete (a CloudFormation request), by hand, or scheduled (drift check)
    kind: str
    props: dict[str, Any] = field(default_factory=dict)
    physical_id: str | None = None
    old: dict[str, Any] | None = None
    show: tuple[str, ...] = ()  # groups to print afterwards (default: the physical id's)
    #: the request's status, or for the drift check (drifted groups, changes corrected)
    want: str | tuple[int, int] = "SUCCESS"
    hand: Callable[[IAMClient], None] | None = None


STEPS = (
    Step("Create: the Jets docs' group, policy and AWS_ConfigRole", "Create",
         {**BASE, "Users": "alice,bob"}),
    Step("Update: grant carol, revoke bob (revocations run first)", "Update",
         {**BASE, "Users": "alice,carol"}, "Jets", {**BASE, "Users": "alice,bob"}),
    Step("By hand, outside CloudFormation: someone puts bob back in the group", BY_HAND,
         physical_id="Jets", hand=_bob_added_by_hand),
    Step("The scheduled drift check (DriftAction report): the change is reported, not undone",
         SCHEDULED, physical_id="Jets", want=(1, 0)),
    Step("Update: DriftAction correct (a deploy also puts the group back as declared)",
         "Update", {**CORRECTING, "Users": "alice,carol"}, "Jets",
         {**BASE, "Users": "alice,carol"}),
    Step("By hand again: bob is put back in the group", BY_HAND, physical_id="Jets",
         hand=_bob_added_by_hand),
    Step("The scheduled drift check (DriftAction correct): the change is put back", SCHEDULED,
         physical_id="Jets", want=(1, 1)),
    Step("Update with a mistake: a user that does not exist", "Update",
         {**CORRECTING, "Users": "alice,carol,dave"}, "Jets",
         {**CORRECTING, "Users": "alice,carol"}, want="FAILED"),
    Step("CloudFormation's rollback of that Update (properties swapped): nothing to undo",
         "Update", {**CORRECTING, "Users": "alice,carol"}, "Jets",
         {**CORRECTING, "Users": "alice,carol,dave"}),
    Step("Update: rename the group (a replacement: a new group with the same content)",
         "Update", {**CORRECTING, "GroupName": "JetsDeployers", "Users": "alice,carol"}, "Jets",
         {**CORRECTING, "Users": "alice,carol"}, show=("Jets", "JetsDeployers")),
    Step("CloudFormation's cleanup: Delete of the old name", "Delete",
         {**CORRECTING, "Users": "alice,carol"}, "Jets", show=("Jets", "JetsDeployers")),
    Step("Delete: the stack goes away", "Delete",
         {**CORRECTING, "GroupName": "JetsDeployers", "Users": "alice,carol"}, "JetsDeployers"),
)  # fmt: skip


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
    shown = preview(aws.iam, aws.registry, request_from_event(event, env))
    if shown.problems:  # the same pre-flight as the function: it would fail, changing nothing
        return ["  " + style(f"would fail: {'; '.join(shown.problems)}", "red")]
    notes = ["  " + style(f"({note})", "dim") for note in shown.notes]
    return plan_lines(shown.plan, style) + notes


def _drift_preview(aws: EmbeddedAws, style: Style) -> list[str]:
    """What the drift check will find: the same check, read-only (correct=False)."""
    env = Environment.from_function_arn(FUNCTION_ARN)
    drift = Controller(aws.iam, aws.registry).check_drift(KEY, env, correct=False)
    note = ["  " + style(f"({drift.note})", "dim")] if drift.note else []
    return plan_lines(drift.plan, style) + note


def _summary_lines(summary: dict[str, Any], style: Style) -> list[str]:
    drifted, corrected = summary.get("drifted", 0), summary.get("corrected_changes", 0)
    colour = "yellow" if drifted else "green"
    return [
        "  "
        + style(f"{drifted} drifted group(s)", colour, "bold")
        + f", {summary.get('drift_changes', 0)} change(s) found, {corrected} corrected,"
        f" {summary.get('failed', 0)} failed; metrics DriftedGroups={drifted}"
        f" CorrectedChanges={corrected}"
    ]


def _run_step(
    aws: EmbeddedAws, receiver: ResponseReceiver, step: Step, say: Callable[[str], None],
    style: Style,
) -> bool:  # fmt: skip
    """One step, printed; whether it went as the contract says it must."""
    client = aws.iam
    if step.kind == BY_HAND:
        if step.hand is not None:
            step.hand(client)
        ok = True
    elif step.kind == SCHEDULED:
        say(style("plan", "bold"))
        for line in _drift_preview(aws, style):
            say(line)
        summary = invoke_scheduled(SCHEDULE_INPUT)
        say(style("drift check", "bold"))
        for line in _summary_lines(summary, style):
            say(line)
        ok = (summary.get("drifted"), summary.get("corrected_changes")) == step.want
    else:
        say(style("plan", "bold"))
        event = _event(step)
        for line in _preview(aws, event, style):
            say(line)
        before = read_group(client, step.physical_id or step.props["GroupName"])
        response = invoke(event, receiver)
        say(style("response", "bold"))
        for line in response_lines(response, style):
            say(line)
        ok = response["Status"] == step.want
        if response["Status"] == "FAILED":
            unchanged = read_group(client, step.physical_id or "") == before
            say("  " + style("group unchanged" if unchanged else "GROUP CHANGED", "dim"))
            ok = ok and unchanged
        step = replace(step, physical_id=str(response["PhysicalResourceId"]))
    say(style("afterwards", "bold"))
    for name in step.show or (str(step.physical_id),):
        for line in group_lines(read_group(client, name), style, name_hint=name):
            say(line)
    return ok


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The handler's JSON logs and EMF metric lines stay out of the demo's output (unless the
    caller set these variables), and the environment is put back afterwards: the demo also
    runs inside other processes (the test suite)."""
    wanted = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def run(out: TextIO | None = None) -> int:
    """Run every step; exit 0 only if each step answered as the contract says it must."""
    with _quiet():
        return _run_all(out or sys.stdout)  # the stream of now, not of the first import


def _run_all(out: TextIO) -> int:
    style = Style.for_stream(out)
    say: Callable[[str], None] = functools.partial(print, file=out)
    say(style("jets-deploy-iam demo", "bold") + " - the real handler against an embedded IAM")
    say(style(f"seeded IAM users: {', '.join(SEED_USERS)}", "dim"))
    ok = True
    with embedded_aws(SEED_USERS) as aws, ResponseReceiver() as receiver:
        for number, step in enumerate(STEPS, start=1):
            say("")
            say(style(f"== {number}/{len(STEPS)} {step.title} ", "cyan", "bold"))
            ok = _run_step(aws, receiver, step, say, style) and ok
    say("")
    say(style("demo finished: every step answered as expected" if ok else "demo FAILED", "bold"))
    return 0 if ok else 1
