"""The scheduled drift check (issue 13): groups deployed through the real handler, changed by hand,
then checked by invoking the handler with the schedule's own input, read from template.yaml.

IAM is moto plus the strict layer; the registry is moto's DynamoDB. What people see is asserted
as they would see it: the function's JSON log lines and the EMF metric objects it prints.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cfnlint.decode import cfn_yaml

from helpers import (
    ENV,
    STACK,
    Stack,
    controller_sender,
    event,
    make_policy,
    make_users,
    snapshot,
    users,
)
from jets_deploy_iam import enforce, handler
from jets_deploy_iam.changes import Change
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.policy import BASELINE_SERVICES
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.model import CORRECTION_PREFIX, HOLD_SECONDS
from jets_deploy_iam.registry.store import DynamoDBRegistry, Stored
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam_cli.local.invoke import invoke, invoke_scheduled
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ROOT = Path(__file__).resolve().parent.parent
KEY = ResourceKey(STACK, "JetsDeployGroup")
#: The inline policy after someone edited it by hand: iam:* dropped, sqs:SendMessage added.
EDITED = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                *(f"{s}:*" for s in BASELINE_SERVICES if s != "iam"),
                "sqs:SendMessage",
            ],
            "Resource": "*",
        }
    ],
}
FOREIGN = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}],
}


@functools.cache
def template_input() -> dict[str, Any]:
    """The schedule's input exactly as template.yaml sends it (never a copy of it)."""
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    target = template["Resources"]["DriftCheckRule"]["Properties"]["Targets"][0]
    data: dict[str, Any] = json.loads(target["Input"])
    return data


@contextlib.contextmanager
def function_logs() -> Iterator[list[dict[str, Any]]]:
    """The function's log lines, as Lambda would store them (Powertools JSON), parsed."""
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(handler.logger.registered_formatter)
    targets = [logging.getLogger(n) for n in ("jets-deploy-iam", "jets_deploy_iam")]
    for target in targets:
        target.addHandler(sink)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        for target in targets:
            target.removeHandler(sink)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def emf(printed: str) -> list[dict[str, Any]]:
    """The Embedded Metric Format objects among what the function printed (a metric that was
    added once, as every one of ours, read as its single value)."""
    objects = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    found = [o for o in objects if "_aws" in o]
    for o in found:
        for metric in o["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            [o[metric["Name"]]] = o[metric["Name"]]
    return found


def emf_for(objects: list[dict[str, Any]], **dimensions: str) -> dict[str, Any]:
    """The one EMF object whose dimension set is exactly ``service`` plus ``dimensions``."""
    wanted = {"service", *dimensions}
    found = [
        o
        for o in objects
        if set(o["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == wanted
        and all(o[k] == v for k, v in dimensions.items())
    ]
    assert len(found) == 1, objects
    return found[0]


def scheduled(**extra: Any) -> dict[str, Any]:
    """Invoke the handler with the template's schedule input (plus ``extra`` keys)."""
    return invoke_scheduled({**template_input(), **extra})


def messages(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["message"] == message]


def deploy(receiver: ResponseReceiver, props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's Create of the stack's group, through the real handler."""
    response = invoke(event("Create", props), receiver)
    assert response["Status"] == "SUCCESS", response["Reason"]
    return response


def put_policy(iam: IAMClient, name: str, document: dict[str, Any], group: str = "Jets") -> None:
    iam.put_group_policy(GroupName=group, PolicyName=name, PolicyDocument=json.dumps(document))


def tamper(iam: IAMClient, world: dict[str, str]) -> None:
    """The hand-made changes of the issue: a member added, a policy detached, the policy
    document edited, a foreign inline policy."""
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    iam.detach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    put_policy(iam, "JetsPolicy", EDITED)
    put_policy(iam, "Extra", FOREIGN)


def expected_plan(world: dict[str, str]) -> list[str]:
    """The plan of ``tamper``'s drift, in the one phase order (revocations first)."""
    return [
        "- remove user carol",
        "- delete inline policy Extra",
        "~ policy JetsPolicy (+iam:* -sqs:SendMessage)",
        f"+ attach {world['p1']}",
    ]


# -- report and correct ---------------------------------------------------------------------------


def test_report_mode_logs_the_plan_and_metrics_and_changes_nothing(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, receiver: ResponseReceiver,
    world: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    deploy(receiver, {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]})
    tamper(iam, world)
    tampered = snapshot(iam, "Jets")
    version = registry.load(KEY).version
    strict.reset()
    capsys.readouterr()
    with function_logs() as lines:
        summary = scheduled()
    printed = capsys.readouterr().out

    assert strict.writes == []
    assert snapshot(iam, "Jets") == tampered
    assert registry.load(KEY).version == version
    assert summary["drifted"] == 1
    assert summary["drift_changes"] == 4
    assert summary["corrected_changes"] == 0
    [drift] = messages(lines, "drift")
    assert drift["plan"] == expected_plan(world)
    # the command line's `drift` calls the same method: the same plan, line for line
    assert drift["plan"] == Controller(iam, registry).check_drift(KEY, ENV).plan.lines()
    assert (drift["stack_id"], drift["logical_id"], drift["group"]) == (
        STACK, "JetsDeployGroup", "Jets",
    )  # fmt: skip
    assert (drift["mode"], drift["corrected"], drift["change_count"]) == ("report", 0, 4)
    [finished] = messages(lines, "drift check finished")
    assert finished["drifted"] == 1
    assert finished["correlation_id"] == drift["correlation_id"]  # the Lambda request id

    objects = emf(printed)
    per_group = emf_for(objects, Group="Jets")
    assert per_group["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "JetsDeployIam"
    assert (per_group["DriftChanges"], per_group["CorrectedChanges"]) == (4, 0)
    run = emf_for(objects)
    assert (run["DriftedGroups"], run["DriftChanges"], run["FailedChecks"]) == (1, 4, 0)
    assert run["service"] == "jets-deploy-iam"


def test_correct_mode_puts_the_group_back_revocations_first_and_records_it(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, receiver: ResponseReceiver,
    world: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    deploy(
        receiver, {"Users": "alice,bob", "ManagedPolicyArns": world["p1"], "DriftAction": "correct"}
    )
    deployed = snapshot(iam, "Jets")
    tamper(iam, world)
    strict.reset()
    capsys.readouterr()
    with function_logs() as lines:
        summary = scheduled()

    assert snapshot(iam, "Jets") == deployed  # same GroupId, members, documents, attachments
    assert [c.action for c in strict.writes] == [
        "RemoveUserFromGroup", "DeleteGroupPolicy", "PutGroupPolicy", "AttachGroupPolicy",
    ]  # fmt: skip
    assert (summary["drifted"], summary["corrected_changes"]) == (1, 4)
    [drift] = messages(lines, "drift")
    assert (drift["mode"], drift["corrected"]) == ("correct", 4)
    assert drift["plan"] == expected_plan(world)
    applied = messages(lines, "change applied")
    assert [a["change"] for a in applied] == expected_plan(world)
    assert {a["trigger"] for a in applied} == {"drift check"}
    assert emf_for(emf(capsys.readouterr().out), Group="Jets")["CorrectedChanges"] == 4

    record = registry.load(KEY).record
    assert (record.in_progress, record.held_until, record.current) == (None, None, "Jets")
    entry = record.groups["Jets"]
    assert entry.group_id == deployed["id"]  # type: ignore[index]
    assert entry.ownership.members == {"alice", "bob"}
    assert entry.ownership.attached == {world["p1"]}
    assert entry.ownership.inline == {"JetsPolicy"}

    strict.reset()
    again = scheduled()
    assert (again["in_sync"], again["drifted"]) == (1, 0)
    assert strict.writes == []


@pytest.mark.parametrize("mode", ["report", "correct"])
def test_foreign_content_of_a_non_exclusive_group_is_untouched(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    mode: str,
) -> None:  # fmt: skip
    make_users(iam, ["erin"])
    iam.create_group(GroupName="Jets")  # made by hand before the stack, then adopted
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p2"])
    put_policy(iam, "Legacy", FOREIGN)
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"], "Exclusive": "false",
             "AdoptExistingGroup": "true", "DriftAction": mode}  # fmt: skip
    deploy(receiver, props)
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")  # declared, removed
    iam.detach_group_policy(GroupName="Jets", PolicyArn=world["p1"])  # declared, detached
    put_policy(iam, "JetsPolicy", EDITED)
    iam.add_user_to_group(GroupName="Jets", UserName="dave")  # foreign, added by hand since
    put_policy(iam, "Extra", FOREIGN)
    strict.reset()
    with function_logs() as lines:
        scheduled()

    [drift] = messages(lines, "drift")
    assert drift["plan"] == [
        "~ policy JetsPolicy (+iam:* -sqs:SendMessage)",
        f"+ attach {world['p1']}",
        "+ add user alice",
    ]
    group = snapshot(iam, "Jets")
    assert group is not None
    foreign_members, foreign_arns = {"carol", "dave"}, {world["p2"]}
    assert foreign_members <= group["members"]
    assert foreign_arns <= group["attached"]
    assert {"Legacy", "Extra"} <= set(group["policies"])
    assert group["policies"]["Legacy"] == group["policies"]["Extra"]  # documents untouched
    touched = {c.params.get("UserName") or c.params.get("PolicyName") for c in strict.writes}
    assert touched.isdisjoint({"carol", "dave", "Legacy", "Extra"})
    if mode == "report":
        assert strict.writes == []
    else:
        assert group["members"] == {"alice", "bob", "carol", "dave"}
        assert group["attached"] == {world["p1"], world["p2"]}


@pytest.mark.parametrize("mode", ["report", "correct"])
def test_a_group_deleted_by_hand_is_reported_and_recreated_when_correcting(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, receiver: ResponseReceiver,
    world: dict[str, str], mode: str,
) -> None:  # fmt: skip
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"], "DriftAction": mode}
    deploy(receiver, props)
    deployed = snapshot(iam, "Jets")
    assert deployed is not None
    for user in ("alice", "bob"):
        iam.remove_user_from_group(GroupName="Jets", UserName=user)
    iam.detach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    with function_logs() as lines:
        summary = scheduled()

    [drift] = messages(lines, "drift")
    assert drift["plan"][0] == "+ create group Jets (path /)"
    assert summary["drift_changes"] == 5  # the group, its policy, one attachment, two members
    if mode == "report":
        assert snapshot(iam, "Jets") is None
        return
    recreated = snapshot(iam, "Jets")
    assert recreated is not None
    assert recreated["id"] != deployed["id"]
    assert {k: v for k, v in recreated.items() if k != "id"} == {
        k: v for k, v in deployed.items() if k != "id"
    }
    assert registry.load(KEY).record.groups["Jets"].group_id == recreated["id"]
    # the registry knows the new GroupId: CloudFormation's Delete still removes the group
    assert invoke(event("Delete", props, "Jets"), receiver)["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None


@pytest.mark.parametrize("mode", ["report", "correct"])
def test_a_group_renamed_by_hand_is_found_by_its_group_id_and_renamed_back_when_correcting(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, receiver: ResponseReceiver,
    world: dict[str, str], mode: str,
) -> None:  # fmt: skip
    """``aws iam update-group --new-group-name`` keeps the GroupId, the members and the policy:
    the rights live on under a name nothing manages. Re-creating the registered name (what a
    group deleted by hand gets) would leave them there; the group itself goes back instead."""
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"], "DriftAction": mode}
    deploy(receiver, props)
    deployed = snapshot(iam, "Jets")
    iam.update_group(GroupName="Jets", NewGroupName="Hidden", NewPath="/elsewhere/")
    iam.add_user_to_group(GroupName="Hidden", UserName="carol")  # and one more member
    strict.reset()
    with function_logs() as lines:
        summary = scheduled()

    [drift] = messages(lines, "drift")
    assert drift["plan"] == [
        "~ rename group Hidden back to Jets (path /)",
        "- remove user carol",
    ]
    assert "renamed by hand to Hidden" in drift["note"]
    assert summary["drifted"] == 1
    if mode == "report":
        assert strict.writes == []
        assert snapshot(iam, "Jets") is None
        assert snapshot(iam, "Hidden")["members"] == {"alice", "bob", "carol"}
        return
    assert snapshot(iam, "Hidden") is None
    assert snapshot(iam, "Jets") == deployed  # the very group: same GroupId, path, content
    assert [w.action for w in strict.writes] == ["UpdateGroup", "RemoveUserFromGroup"]
    assert invoke(event("Delete", props, "Jets"), receiver)["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None


def test_each_resource_is_enforced_by_its_own_drift_action(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    reporting = Stack(send, logical_id="Reporting")
    correcting = Stack(send, logical_id="Correcting")
    assert reporting.create({"GroupName": "Watched", "Users": "alice"}).ok
    guarded = {"GroupName": "Guarded", "Users": "alice", "DriftAction": "correct"}
    assert correcting.create(guarded).ok
    for group in ("Watched", "Guarded"):
        iam.add_user_to_group(GroupName=group, UserName="carol")
    strict.reset()
    summary = scheduled()
    assert (summary["drifted"], summary["corrected_changes"]) == (2, 1)
    assert [(c.action, c.group) for c in strict.writes] == [("RemoveUserFromGroup", "Guarded")]
    assert snapshot(iam, "Watched")["members"] == {"alice", "carol"}  # type: ignore[index]


# -- the input can grant nothing ------------------------------------------------------------------


def test_only_the_templates_exact_inputs_run_a_check_and_none_can_grant_anything(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, receiver: ResponseReceiver,
    world: dict[str, str],
) -> None:  # fmt: skip
    make_users(iam, ["mallory"])
    iam.create_group(GroupName="Admins")  # someone else's group, never registered
    deploy(receiver, {"Users": "alice,bob"})  # DriftAction report (the default)
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")  # drift a correction would add
    before = {name: snapshot(iam, name) for name in ("Jets", "Admins")}
    version = registry.load(KEY).version
    crafted: list[Any] = [
        {**template_input(), "DriftAction": "correct"},
        {**template_input(), "Users": ["mallory"]},
        {**template_input(), "ResourceProperties": {"Users": "mallory", "DriftAction": "correct"}},
        {**template_input(), "group": "Jets"},
        {"jets-deploy-iam": "reconcile-group", "group": "Jets", "Users": "mallory"},
        {"jets-deploy-iam": "reconcile-group", "group": "Jets", "DriftAction": "correct"},
        {"jets-deploy-iam": "reconcile-group", "group": "Jets\n"},
        {"jets-deploy-iam": "reconcile-group", "group": ["Jets"]},
        {"jets-deploy-iam": "reconcile-group"},
        {"jets-deploy-iam": "correct-all"},
        {"jets-deploy-iam": ["reconcile-all"]},
        {"jets-deploy-iam": "RECONCILE-ALL"},
    ]
    strict.reset()
    with function_logs() as lines:
        results = [invoke_scheduled(e) for e in crafted]
    assert results == [{}] * len(crafted)  # every one dropped, none ran
    assert len(messages(lines, "event dropped: it cannot be answered")) == len(crafted)
    assert strict.calls == []

    # The exact inputs only ever enforce what is registered, in the resource's own mode.
    for exact in (template_input(), {"jets-deploy-iam": "reconcile-group", "group": "Jets"},
                  {"jets-deploy-iam": "reconcile-group", "group": "Admins"}):  # fmt: skip
        invoke_scheduled(exact)
    assert strict.writes == []
    assert {name: snapshot(iam, name) for name in ("Jets", "Admins")} == before
    assert registry.load(KEY).version == version
    assert "mallory" not in json.dumps(
        [line for line in lines if line["message"] != "event dropped: it cannot be answered"]
    )


def test_the_cloudtrail_input_checks_only_the_group_it_names(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    for name in ("Jets", "Other"):
        assert Stack(send, logical_id=name).create({"GroupName": name, "Users": "alice"}).ok
    strict.reset()
    summary = invoke_scheduled({"jets-deploy-iam": "reconcile-group", "group": "Other"})
    assert (summary["scope"], summary["in_sync"]) == ("group Other", 1)
    assert {c.group for c in strict.calls} == {"Other"}


# -- failures, time, throttling -------------------------------------------------------------------


class Collected:
    """A reporter that keeps what a run reports (enforce.run without the handler)."""

    def __init__(self) -> None:
        self.outcomes: list[enforce.Outcome] = []
        self.changes: list[Change] = []
        self.summary: enforce.Summary | None = None

    def applied(self, change: Change) -> None:
        self.changes.append(change)

    def outcome(self, outcome: enforce.Outcome) -> None:
        self.outcomes.append(outcome)

    def finished(self, summary: enforce.Summary) -> None:
        self.summary = summary


@pytest.fixture
def three(iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]) -> list[str]:
    """Three registered groups, in sync."""
    names = ["GroupA", "GroupB", "GroupC"]
    send = controller_sender(iam, registry)
    for name in names:
        assert Stack(send, logical_id=name).create({"GroupName": name, "Users": "alice"}).ok
    return names


def test_an_unreadable_record_bad_properties_or_an_iam_refusal_fail_alone(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, three: list[str]
) -> None:
    registry.client.put_item(
        TableName=registry.table,
        Item={"StackId": {"S": STACK}, "LogicalResourceId": {"S": "Broken"},
              "version": {"N": "3"}, "body": {"B": b"not zlib"}},
    )  # fmt: skip
    key = ResourceKey(STACK, "GroupC")  # deployed by a version that accepted another property
    entry = registry.load(key).record.groups["GroupC"]
    odd = replace(entry, properties={**entry.properties, "Userz": "mallory"})
    registry.change(registry.load(key), lambda r: r.with_group(odd))
    strict.inject("GetGroup", "AccessDenied")  # the first group read is refused
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)
    assert (summary.failed, summary.in_sync) == (3, 1)
    failures = {o.key.logical_id: o.note for o in reporter.outcomes if o.status == "failed"}
    assert "registry record of Broken is unreadable" in failures.pop("Broken")
    assert "unknown property 'Userz'" in failures.pop("GroupC")
    [refused] = failures.values()
    assert refused.startswith("IAM refused GetGroup: AccessDenied")


def test_a_run_whose_function_cannot_start_still_counts_a_failed_check(
    strict: StrictIam, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JETS_REGISTRY_TABLE")
    capsys.readouterr()
    with function_logs() as lines:
        summary = scheduled()
    assert (summary["failed"], summary["complete"]) == (1, False)
    [failed] = messages(lines, "drift check failed")
    assert "JETS_REGISTRY_TABLE is not set" in failed["reason"]
    assert emf_for(emf(capsys.readouterr().out))["FailedChecks"] == 1  # the alarm sees it
    assert strict.calls == []


def test_iam_throttling_stops_the_run_and_leaves_the_rest_for_the_next(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, three: list[str]
) -> None:
    strict.inject("GetGroup", "Throttling", times=1000)
    strict.reset()
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)
    assert (summary.failed, summary.unchecked, summary.complete) == (1, 2, True)
    # one group's read (however often the client retried it), and nothing more
    assert set(strict.actions()) == {"GetGroup"}
    assert len({c.group for c in strict.calls}) == 1


def test_no_check_starts_after_the_deadline_and_the_rest_is_counted(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, three: list[str]
) -> None:
    now = [0.0]

    def tick(_action: str) -> None:
        now[0] += 7.0  # each IAM call takes 7 s on this clock: one group's 4 reads take 28 s

    strict.on_call = tick
    strict.reset()
    deadline = Deadline(25.0, lambda: now[0])
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), Collected(), deadline=deadline)
    assert (summary.in_sync, summary.unchecked, summary.complete) == (1, 2, True)
    assert len(strict.calls) == 4
    # past the counting grace, the registry is not even read to the end: "at least"
    # (every IAM call is bounded by the deadline too: the group's reads all start before it,
    # 3 s apart, and the last one takes long enough to end past the grace)
    now[0] = 0.0
    durations = iter([3.0, 3.0, 3.0, 17.0])
    strict.on_call = lambda _action: now.__setitem__(0, now[0] + next(durations, 7.0))
    late = Deadline(25.0 - enforce.COUNT_GRACE_SECONDS, lambda: now[0])
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), Collected(), deadline=late)
    assert (summary.in_sync, summary.unchecked, summary.complete) == (1, 1, False)


def test_a_record_in_progress_is_not_checked_and_says_so(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, three: list[str]
) -> None:
    key = ResourceKey(STACK, "GroupB")
    registry.change(registry.load(key), lambda r: replace(r, in_progress="cfn-request-1"))
    strict.reset()
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)
    assert (summary.in_sync, summary.under_way, summary.not_checked) == (2, 1, 1)
    [waiting] = [o for o in reporter.outcomes if o.status == "under-way"]
    assert waiting.note == "request cfn-request-1 is under way: not checked"
    assert "GroupB" not in {c.group for c in strict.calls}


@pytest.mark.parametrize(
    "held_until", [1.0, 4e9], ids=["hold-long-past", "hold-further-ahead-than-any-can-be"]
)
def test_a_correction_that_died_lets_go_and_an_implausible_hold_is_ignored(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    sleeper: Any, held_until: float,
) -> None:  # fmt: skip
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    stored = registry.load(KEY)
    dead = replace(stored.record, in_progress=CORRECTION_PREFIX + "died", held_until=held_until)
    registry.save(dead, stored.version)
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert drift.corrected == 1
    assert registry.load(KEY).record.in_progress is None
    registry.save(dead, registry.load(KEY).version)
    deploying = Stack(controller_sender(iam, registry, ReconcileConfig(sleep=sleeper)),
                      physical_id="Jets", props=stack.props)  # fmt: skip
    assert deploying.update({"Users": "alice,bob"}).ok
    assert sleeper.slept == []  # the deploy did not wait for it either


# -- races with CloudFormation --------------------------------------------------------------------


def test_a_correction_never_undoes_a_deploy_made_while_it_was_deciding(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """carol is added by hand, and a deploy grants her between the check's read and its first
    write: the check must neither revoke her nor put the old declaration back in the record."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    save = registry._write
    deployed: list[bool] = []

    def deploy_first(record: Any, version: int, claims: Any = ()) -> None:
        if record.in_progress and record.in_progress.startswith(CORRECTION_PREFIX) and not deployed:
            deployed.append(stack.update({"Users": "alice,carol", "DriftAction": "correct"}).ok)
        save(record, version, claims)

    monkeypatch.setattr(registry, "_write", deploy_first)
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert deployed == [True]
    assert drift.corrected == 0
    assert "not corrected this time" in drift.note
    assert snapshot(iam, "Jets")["members"] == {"alice", "carol"}  # type: ignore[index]
    entry = registry.load(KEY).record.groups["Jets"]
    assert entry.properties["Users"] == "alice,carol"  # the deploy's record stands
    assert not Controller(iam, registry).check_drift(KEY, ENV).plan


def test_a_deploy_waits_for_a_correction_holding_the_record_then_decides_again(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
) -> None:  # fmt: skip
    """alice is removed by hand; the correction re-adds her while a deploy revokes her. Were the
    two to interleave, the deploy would see her absent, plan nothing, and the correction would
    leave her a member after the deploy that revoked her."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice,bob", "DriftAction": "correct"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    waiting, released = threading.Event(), threading.Event()
    answers: list[bool] = []

    def wait_for_release(_seconds: float) -> None:
        waiting.set()
        released.wait(10)

    deploy_config = ReconcileConfig(sleep=wait_for_release)
    deploying = Stack(controller_sender(iam, registry, deploy_config), physical_id="Jets",
                      props={"Users": "alice,bob", "DriftAction": "correct"})  # fmt: skip

    def deploy_meanwhile() -> None:
        thread = threading.Thread(
            target=lambda: answers.append(deploying.update({"Users": "bob"}).ok)
        )
        thread.start()
        assert waiting.wait(10), "the deploy did not wait for the correction"
        threads.append(thread)

    threads: list[threading.Thread] = []
    strict.before_write("AddUserToGroup", deploy_meanwhile)
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    released.set()
    threads[0].join(10)
    assert drift.corrected == 1
    assert answers == [True]
    assert snapshot(iam, "Jets")["members"] == {"bob"}  # type: ignore[index]
    record = registry.load(KEY).record
    assert record.groups["Jets"].properties["Users"] == "bob"
    assert (record.in_progress, record.held_until) == (None, None)


@pytest.mark.parametrize("kind", ["Update", "Delete"])
def test_a_deploy_that_loses_the_record_to_a_correction_decides_again(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, kind: str,
) -> None:  # fmt: skip
    """The request read the record before the correction took it: its mark before its first IAM
    write finds the hold, and it starts over from the registry and IAM as the correction left
    them (an Update then revokes the alice the correction re-added; a Delete empties the group
    the correction refilled, instead of failing on DeleteConflict)."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice,bob", "DriftAction": "correct"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    save = registry._write
    corrected: list[int] = []
    now = [1.7e9]

    def correct_first(record: Any, version: int, claims: Any = ()) -> None:
        deploys = record.in_progress and not record.in_progress.startswith(CORRECTION_PREFIX)
        if deploys and not corrected:  # the request's mark: a correction got there first
            corrected.append(Controller(iam, registry).check_drift(KEY, ENV).corrected)
            stored = registry.load(KEY)  # and it still holds the record for a moment
            held = replace(stored.record, in_progress=CORRECTION_PREFIX + "x",
                           held_until=now[0] + HOLD_SECONDS)  # fmt: skip
            save(held, stored.version, [])
        save(record, version, claims)

    def later(_seconds: float) -> None:
        now[0] += HOLD_SECONDS + 1  # the hold passes while the request waits

    monkeypatch.setattr(registry, "_write", correct_first)
    config = ReconcileConfig(sleep=later, now=lambda: now[0])
    deploying = Stack(controller_sender(iam, registry, config), physical_id="Jets",
                      props={"Users": "alice,bob", "DriftAction": "correct"})  # fmt: skip
    if kind == "Update":
        assert deploying.update(
            {"Users": "bob", "ManagedPolicyArns": world["p1"], "DriftAction": "correct"}
        ).ok  # a change besides alice's revocation: the deploy writes ahead whatever it finds
        assert snapshot(iam, "Jets")["members"] == {"bob"}  # type: ignore[index]
    else:
        assert deploying.delete().ok
        assert snapshot(iam, "Jets") is None
        assert strict.actions().count("DeleteGroup") == 1  # no DeleteConflict to retry
    assert corrected == [1]


# -- cost ----------------------------------------------------------------------------------------


def test_calls_of_a_scheduled_run_over_10_groups_of_100_members_with_no_drift(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    make_users(iam, users(1000))
    arn = make_policy(iam, "app")
    send = controller_sender(iam, registry)
    for i in range(10):
        props = {"GroupName": f"Jets{i:02d}", "Users": users(100, i * 100),
                 "ManagedPolicyArns": arn}  # fmt: skip
        assert Stack(send, logical_id=f"Group{i:02d}").create(props).ok
    dynamodb: list[str] = []
    registry.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: dynamodb.append(model.name)
    )
    clients = functools.cache(lambda: (iam, registry))
    monkeypatch.setattr(handler, "_clients", clients)
    strict.reset()
    summary = scheduled()
    assert (summary["in_sync"], summary["drifted"], summary["failed"]) == (10, 0, 0)
    iam_calls = Counter(strict.actions())
    print(f"\nIAM: {dict(iam_calls)}  DynamoDB: {dict(Counter(dynamodb))}")
    # per group: one GetGroup page (100 members <= MaxItems 1,000), the inline policy names,
    # the one inline document, the attachments; no pre-flight, no write
    assert iam_calls == {
        "GetGroup": 10, "ListGroupPolicies": 10, "GetGroupPolicy": 10,
        "ListAttachedGroupPolicies": 10,
    }  # fmt: skip
    # one Scan page holds the 10 records; no GetItem (a record is read again only if its
    # group drifted), no PutItem (nothing to correct)
    assert dynamodb == ["Scan"]


def test_a_registry_of_1000_records_is_read_page_by_page(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from jets_deploy_iam.registry.model import ResourceRecord

    for i in range(1000):  # deleted resources' records: kept for repeated Delete deliveries
        registry.save(ResourceRecord(ResourceKey(STACK, f"Gone{i:04d}")), 0)
    scan = registry.client.scan
    pages: list[int] = []

    def small_pages(**kwargs: Any) -> Any:
        page = scan(**kwargs, Limit=100)
        pages.append(len(page["Items"]))
        return page

    monkeypatch.setattr(registry.client, "scan", small_pages)
    strict.reset()
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)
    assert sum(pages) == 1000
    assert len(pages) >= 10
    assert [o.status for o in reporter.outcomes] == ["absent"] * 1000
    assert (summary.in_sync, summary.failed, summary.complete) == (0, 0, True)
    assert strict.calls == []


def test_stored_record_from_a_scan_is_read_again_before_drift_is_reported(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """A deploy committed after the scan read the record is not drift."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice"}).ok
    scanned = next(s for s in registry.scan() if isinstance(s, Stored))
    assert stack.update({"Users": "alice,bob"}).ok
    drift = Controller(iam, registry).check_drift(KEY, ENV, stored=scanned)
    assert not drift.drifted


def test_a_correction_that_dies_after_recreating_the_group_still_owns_it(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Written ahead, a re-created group is known by no GroupId yet (as a Create's): had the old
    GroupId stayed, the group the correction made would look foreign forever (and a Delete
    would leave it behind)."""
    import time

    from jets_deploy_iam.exceptions import IamApplyError, RegistryError

    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    strict.fail_write(2, "AccessDenied")  # the policy after CreateGroup is refused...
    save = registry._write

    def die_before_release(record: Any, version: int, claims: Any = ()) -> None:
        if record.in_progress is None:  # ...and the function dies before it records anything
            raise RegistryError("the function died")
        save(record, version, claims)

    monkeypatch.setattr(registry, "_write", die_before_release)
    with pytest.raises(IamApplyError):
        Controller(iam, registry).check_drift(KEY, ENV)
    monkeypatch.setattr(registry, "_write", save)
    strict.clear_faults()
    assert Controller(iam, registry).check_drift(KEY, ENV).under_way  # still held
    later = ReconcileConfig(now=lambda: time.time() + HOLD_SECONDS + 1)
    drift = Controller(iam, registry, later).check_drift(KEY, ENV)
    assert [str(c) for c in drift.plan] == ["+ put policy JetsPolicy", "+ add user alice"]
    assert drift.corrected == 2
    assert stack.delete().ok
    assert snapshot(iam, "Jets") is None


# -- a correction's outcome, and what a check takes for a renamed group ---------------------------


def test_a_correction_whose_hold_ran_out_leaves_the_deploys_record_and_logs_why(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
) -> None:  # fmt: skip
    """The correction's hold ran out before its write (IAM slow), and a deploy granting bob took
    the record meanwhile: the correction's outcome must not overwrite the deploy's record (a
    later check would then revoke bob), and the operator is told which group's outcome is lost."""
    import time

    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    after_the_hold = ReconcileConfig(now=lambda: time.time() + HOLD_SECONDS + 1)
    deploying = Stack(controller_sender(iam, registry, after_the_hold), physical_id="Jets",
                      props={"Users": "alice", "DriftAction": "correct"})  # fmt: skip
    granted = {"Users": "alice,bob", "DriftAction": "correct"}
    deployed: list[bool] = []
    strict.before_write(
        "RemoveUserFromGroup", lambda: deployed.append(deploying.update(granted).ok)
    )
    with function_logs() as lines:
        drift = Controller(iam, registry).check_drift(KEY, ENV)

    assert deployed == [True]
    assert drift.corrected == 1
    record = registry.load(KEY).record
    assert record.groups["Jets"].properties["Users"] == "alice,bob"  # the deploy's record stands
    assert record.groups["Jets"].ownership.members == {"alice", "bob"}
    assert (record.in_progress, record.held_until) == (None, None)
    assert not Controller(iam, registry).check_drift(KEY, ENV).plan  # bob is not revoked
    assert snapshot(iam, "Jets")["members"] == {"alice", "bob"}  # type: ignore[index]
    [lost] = [line for line in lines if line["level"] == "ERROR"]
    assert lost["group"] == "Jets"
    assert "RegistryConflictError" in lost["exception"]  # why: the record changed meanwhile


def test_a_group_one_read_misses_is_not_taken_for_one_renamed_to_its_own_name(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
) -> None:  # fmt: skip
    """IAM is eventually consistent: GetGroup may answer NoSuchEntity for a group ListGroups
    shows under the very same name. That group was not renamed by hand: no "rename back" (an
    UpdateGroup onto its own name) and no note telling the operator of a rename."""
    from jets_deploy_iam.changes import UpdateGroup

    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    strict.inject("GetGroup", "NoSuchEntity")
    drift = Controller(iam, registry).check_drift(KEY, ENV, correct=False)
    assert "ListGroups" in strict.actions()  # the group was looked for by its GroupId
    assert not drift.plan.of_type(UpdateGroup)
    assert "renamed" not in drift.note


# -- what a check reports, and what it takes as the resource's own ---------------------------------


def _as_snapshot_shows(document: dict[str, Any]) -> Any:
    """An inline policy document as ``snapshot`` shows it."""
    from jets_deploy_iam import policy

    return policy.canonical(document)


def _lose_jets_to_a_namesake(iam: IAMClient, registry: DynamoDBRegistry) -> None:
    """Jets deleted by hand, and a namesake made by hand (carol in it) in its place."""
    from helpers import delete_by_hand

    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")


def _lose_jets_to_another_stack(iam: IAMClient, registry: DynamoDBRegistry) -> None:
    """Jets deleted by hand; another stack's resource then made (and claimed) a Jets of its own,
    which was deleted by hand too: the name is that resource's now."""
    from helpers import OTHER_STACK, delete_by_hand

    delete_by_hand(iam)
    assert Stack(controller_sender(iam, registry), stack=OTHER_STACK).create({"Users": "bob"}).ok
    delete_by_hand(iam)


@pytest.mark.parametrize(
    ("lose", "why"),
    [
        (_lose_jets_to_a_namesake, "replaced or taken over outside this resource"),
        (_lose_jets_to_another_stack, "claimed by another resource"),
    ],
    ids=["namesake-made-by-hand", "name-claimed-by-another-resource"],
)
def test_a_group_the_resource_lost_is_reported_as_drift_and_left_alone(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    lose: Any, why: str,
) -> None:  # fmt: skip
    """Nothing to correct, but the operator must hear of it (the alarm counts drifted groups)."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    lose(iam, registry)
    before = snapshot(iam, "Jets")
    strict.reset()
    reporter = Collected()
    enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)

    [outcome] = [o for o in reporter.outcomes if o.key == KEY]
    assert (outcome.status, outcome.mode, outcome.group) == ("drifted", "correct", "Jets")
    assert not outcome.plan
    assert why in outcome.note
    assert "left alone" in outcome.note
    assert strict.writes == []
    assert snapshot(iam, "Jets") == before


def test_a_deleted_resource_and_one_a_correction_holds_are_not_checked_and_say_why(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    import time

    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    stored = registry.load(KEY)
    held = replace(stored.record, in_progress=CORRECTION_PREFIX + "elsewhere",
                   held_until=time.time() + HOLD_SECONDS - 1)  # fmt: skip
    registry.save(held, stored.version)
    strict.reset()
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert drift.under_way
    assert "drift correction is under way" in drift.note  # not "request <its marker>"
    assert strict.writes == []

    registry.save(stored.record, registry.load(KEY).version)  # the correction let go
    assert stack.delete().ok
    gone = Controller(iam, registry).check_drift(KEY, ENV)
    assert (gone.decision, gone.declared) == (None, None)
    assert "no group" in gone.note


def test_a_group_an_earlier_rename_left_is_named_until_it_is_gone(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """CloudFormation dropped the cleanup Delete of the old name: the old group keeps its members'
    rights, so every check says which group is left; once it is deleted, no note at all."""
    send = controller_sender(iam, registry)
    stack = Stack(send)
    old = {"Users": "alice"}
    assert stack.create(old).ok
    renamed = {"GroupName": "Renamed", "Users": "alice"}
    assert send(event("Update", renamed, "Jets", old)).ok  # no cleanup Delete follows
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert drift.group == "Renamed"
    assert "group Jets left by an earlier rename" in drift.note

    assert send(event("Delete", old, "Jets")).ok  # the cleanup Delete, late
    assert snapshot(iam, "Jets") is None
    assert Controller(iam, registry).check_drift(KEY, ENV).note == ""


def test_the_policy_document_enforced_is_the_one_deployed_not_one_rebuilt_by_this_version(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The group was deployed by a version whose baseline document differs from this version's
    (EDITED stands for it): between deploys, that document is the declaration."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    entry = registry.load(KEY).record.groups["Jets"]
    registry.change(registry.load(KEY), lambda r: r.with_group(replace(entry, document=EDITED)))
    # the group holds this version's document: drift from the one deployed
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert drift.plan.lines() == ["~ policy JetsPolicy (+sqs:SendMessage -iam:*)"]
    assert drift.corrected == 1
    assert snapshot(iam, "Jets")["policies"]["JetsPolicy"] == _as_snapshot_shows(EDITED)  # type: ignore[index]


def test_a_correcting_resource_in_sync_is_neither_written_nor_held(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    version = registry.load(KEY).version
    strict.reset()
    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert (drift.drifted, drift.corrected) == (False, 0)
    assert registry.load(KEY).version == version  # no hold taken, no outcome recorded
    assert strict.writes == []


def test_a_grant_a_failed_update_could_not_undo_is_revoked_from_a_non_exclusive_group(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The Update adding bob and dave failed half way and so did its undo (the stack's rollback
    fails the same way): the declaration last applied lacks the one it added, and the resource
    added him, so the check revokes him, though the group is not exclusive (carol stays)."""
    send = controller_sender(iam, registry)
    applied = {"Users": "alice", "Exclusive": "false", "DriftAction": "correct"}
    assert Stack(send).create(applied).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    strict.inject("AddUserToGroup", "AccessDenied", skip=1)  # one of the two is added
    strict.inject("RemoveUserFromGroup", "AccessDenied")  # and the undo cannot remove him
    failed = send(event("Update", {**applied, "Users": "alice,bob,dave"}, "Jets", applied))
    assert not failed.ok
    members = snapshot(iam, "Jets")["members"]  # type: ignore[index]
    assert len(members - {"alice", "carol"}) == 1

    drift = Controller(iam, registry).check_drift(KEY, ENV)
    assert drift.corrected == 1
    assert snapshot(iam, "Jets")["members"] == {"alice", "carol"}  # type: ignore[index]


def test_what_a_correction_puts_on_an_adopted_group_becomes_the_resources_own(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Adopted as it was (alice a member, JetsPolicy already the declared document), the group
    held nothing the resource added. alice removed and the policy edited by hand, the correction
    adds alice and overwrites the edited document: both are then the resource's doing, so an
    Update that undeclares them removes alice and puts the document it overwrote back (never
    deleting a policy someone else wrote)."""
    from helpers import declared

    props = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true",
             "DriftAction": "correct"}  # fmt: skip
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="alice")
    put_policy(iam, "JetsPolicy", dict(declared(**props).policy_document))
    stack = Stack(controller_sender(iam, registry))
    assert stack.create(props).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    put_policy(iam, "JetsPolicy", EDITED)
    assert Controller(iam, registry).check_drift(KEY, ENV).corrected == 2

    assert stack.update({**props, "Users": "bob", "PolicyName": "BobPolicy"}).ok
    group = snapshot(iam, "Jets")
    assert group["members"] == {"bob"}  # type: ignore[index]
    assert group["policies"].get("JetsPolicy") == _as_snapshot_shows(EDITED)  # type: ignore[index]


def test_a_correction_that_dies_before_recording_still_knows_its_group_by_its_group_id(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Its write-ahead keeps the GroupId of the group it corrects: a namesake made by hand after
    it died is someone else's group, never corrected into this resource's."""
    import time

    from jets_deploy_iam.exceptions import RegistryError

    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    save = registry._write

    def die_before_release(record: Any, version: int, claims: Any = ()) -> None:
        if record.in_progress is None:
            raise RegistryError("the function died")
        save(record, version, claims)

    monkeypatch.setattr(registry, "_write", die_before_release)
    assert Controller(iam, registry).check_drift(KEY, ENV).corrected == 1
    monkeypatch.setattr(registry, "_write", save)
    _lose_jets_to_a_namesake(iam, registry)
    namesake = snapshot(iam, "Jets")
    strict.reset()
    later = ReconcileConfig(now=lambda: time.time() + HOLD_SECONDS + 1)
    drift = Controller(iam, registry, later).check_drift(KEY, ENV)
    assert (drift.drifted, drift.corrected) == (True, 0)
    assert "replaced or taken over" in drift.note
    assert strict.writes == []
    assert snapshot(iam, "Jets") == namesake
