"""A second fresh-eyed attack (after the continuation, enforcement and claim features merged):
sequences CloudFormation, Lambda, EventBridge, IAM and an operator really produce, where those
features meet. Each test states the outcome SPEC.md / the README require; the docstring says
the sequence and the rule.
"""

from __future__ import annotations

import collections
import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from continuation_sim import PREFIX, Cloud, RefusingTargets
from helpers import (
    ENV,
    OTHER_STACK,
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
from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.protocol import rule_name
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import DynamoDBRegistry
from jets_deploy_iam.request import ResourceKey
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

KEY = ResourceKey(STACK, "JetsDeployGroup")


@pytest.fixture
def record(registry: DynamoDBRegistry) -> Any:
    return lambda key=KEY: registry.load(key).record


def added(strict: StrictIam, group: str | None = None) -> collections.Counter[str]:
    return collections.Counter(
        c.params["UserName"]
        for c in strict.accepted_writes
        if c.action == "AddUserToGroup" and (group is None or c.group == group)
    )


# == continuation x rename =======================================================================


def test_a_rename_too_long_for_one_invocation_finishes_and_keeps_its_new_group(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """A GroupName change of a 60-member group at 0.5 IAM writes/s: the copy (CreateGroup, the
    policy, 60 AddUserToGroup) takes three invocations of 60 s.

    README, continuation: "When the deadline ... stops work that made progress, the invocation
    records what it did and answers nothing yet; ... that invocation re-reads the registry and
    IAM and goes on (every step is idempotent)". SPEC: "A GroupName change is a replacement:
    create the new group with the whole content of the old one, answer the new name".
    The answer must be SUCCESS with the new name, every member added to the new group once.
    """
    make_users(iam, users(60))
    old = {"Users": users(60)}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    new = {"Users": users(60), "GroupName": "JetsRenamed"}
    answer = cloud.until_answered(event("Update", new, "Jets", old))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == "JetsRenamed"
    assert snapshot(iam, "JetsRenamed")["members"] == frozenset(users(60))
    assert snapshot(iam, "Jets") == before  # left for CloudFormation's cleanup Delete
    assert added(strict, "JetsRenamed") == dict.fromkeys(users(60), 1)
    assert not strict.actions().count("DeleteGroup")


# == a Create that never answered, then CloudFormation's Delete with an id of its own ============


def test_a_create_that_died_mid_way_is_removed_by_the_delete_with_cloudformations_own_id(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry
) -> None:
    """The Lambda invocation of a Create dies after CreateGroup and some AddUserToGroup (the
    runtime killed it: out of memory, the sandbox recycled). It never answers; CloudFormation
    fails the Create when the ServiceTimeout passes and rolls back with Delete, sending a
    PhysicalResourceId of its own invention (the Create never answered one).

    SPEC (registry): "write-ahead: an item the plan adds counts as owned even if the function
    dies before it confirms ... a crash can never leave something this resource added unowned";
    README: "A Delete that supersedes a Create also removes the group that Create made, although
    CloudFormation sends it with an id of its own invention". The registry knows (in_progress:
    the Create's RequestId, its group written ahead) that the group is this resource's: the
    rollback Delete must remove it. Found: SUCCESS, nothing removed: the group with the
    admin-equivalent policy (and, in a longer Create, members) stays, no stack owns it, the
    drift check never looks at it (the record holds no current group) and the next stack's
    Create of the name fails until someone adopts it.
    """
    make_users(iam, ["alice", "bob"])
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob"}

    def crash() -> None:
        raise SystemExit("the Lambda runtime killed the invocation")

    strict.before_write("AddUserToGroup", crash)
    create = event("Create", props)
    with pytest.raises(SystemExit):
        send(create)
    assert snapshot(iam, "Jets") is not None  # CreateGroup and the policy landed
    generated = "jets-JetsDeployGroup-1A2B3C4D5E6F"  # CloudFormation's own
    gone = send(event("Delete", props, generated))
    assert gone.ok, gone.reason
    assert snapshot(iam, "Jets") is None


# == claims x drift check ========================================================================


class Collected:
    """A reporter that keeps what a drift run reports."""

    def __init__(self) -> None:
        self.outcomes: list[enforce.Outcome] = []
        self.summary: enforce.Summary | None = None

    def applied(self, change: Any) -> None:
        pass

    def outcome(self, outcome: enforce.Outcome) -> None:
        self.outcomes.append(outcome)

    def finished(self, summary: enforce.Summary) -> None:
        self.summary = summary


def test_after_the_documented_migration_the_old_stacks_deleted_resource_is_not_reported_drifted(
    iam: IAMClient, registry: DynamoDBRegistry
) -> None:
    """The migration README and SPEC describe: stack S2 adopts the group S1 created (the claim
    moves to S2), then S1 is deleted (its Delete touches nothing: S2 owns the group).

    README (registry): "an adoption takes the claim over (which ends the previous owner's
    rights: its Delete then touches nothing)"; (enforcement) the drift check checks "every group
    it manages", reports drift (DriftedGroups) and alarms on DriftedGroups >= 1. After S1's
    Delete answered SUCCESS, S1's resource no longer exists: it manages nothing and must not be
    reported as a drifted group. Found: its record keeps ``current = "Jets"`` forever (the
    Delete of a group it no longer owns leaves the record as it was), so every scheduled run
    counts it in DriftedGroups, with an empty plan, and the alarm never clears.
    """
    make_users(iam, ["alice", "bob"])
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert s2.create({"Users": "alice,bob", "AdoptExistingGroup": "true"}).ok
    assert s1.delete().ok
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, enforce.Trigger(), reporter)
    statuses = {o.key.stack_id: o.status for o in reporter.outcomes}
    assert statuses[OTHER_STACK] == "in-sync"
    assert statuses.get(STACK) in (None, "absent"), reporter.outcomes
    assert summary.drifted == 0


# == a failed Update x drift check =================================================================


def test_a_failed_and_undone_update_is_not_what_the_drift_check_enforces(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry
) -> None:
    """An Update granting carol and a managed policy fails half way in IAM (a quota, a
    permission) and undoes its own writes: FAILED, the group as it was. Before CloudFormation's
    rollback Update arrives (it waits for the stack's other resources; if their rollback fails
    and the operator continues the rollback skipping this resource, it never arrives), the
    drift check runs in ``correct`` mode.

    SPEC (registry): the record holds "the declared properties last applied"; README
    (enforcement): "the group is compared with the declaration last applied". The failed Update
    applied nothing (it undid its writes): the declaration enforced must stay the Create's, so
    the check finds no drift. Found: the undone Update's properties are recorded as the
    group's declaration, and the correction grants carol and the policy CloudFormation's
    deploy failed to grant: an over-grant nobody deployed.
    """
    make_users(iam, ["alice", "carol"])
    p1 = make_policy(iam, "p1")
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    before = snapshot(iam, "Jets")
    strict.fail_write(2, "LimitExceeded")
    send = controller_sender(iam, registry)
    forward = {"Users": "alice,carol", "ManagedPolicyArns": p1, "DriftAction": "correct"}
    failed = send(event("Update", forward, "Jets", stack.props))
    assert not failed.ok
    assert "undone" in failed.reason
    assert snapshot(iam, "Jets") == before
    strict.clear_faults()

    drift = Controller(iam, registry).check_drift(KEY, ENV)  # the hourly run, before the rollback
    assert not drift.plan, [str(c) for c in drift.plan]
    assert snapshot(iam, "Jets") == before  # carol was never granted by any deploy


# == continuation x adoption =======================================================================


def test_a_continued_adoption_then_the_stack_rollback_gives_the_group_back_as_found(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """A group made by hand (member ``intruder``, which an exclusive adoption removes) is
    adopted with 60 declared users at 0.5 writes/s: three invocations, SUCCESS. Another
    resource of the stack then fails and CloudFormation rolls the stack back: Delete("Jets").

    README: "A Delete of an adopted group before the resource's first Update also hands it back
    as it was found instead of deleting it: CloudFormation's rollback of the deploy that adopted
    it looks exactly like that"; continuation: "A continued adoption keeps its hand-back
    record". The hand-back must restore the group exactly as found: intruder back, none of the
    60 users left in it. Found: the group's ``adopted`` record is the undo of the *last*
    invocation (the group as that invocation found it, half adopted), so the members earlier
    invocations added keep the group's rights and intruder never comes back.
    """
    make_users(iam, [*users(60), "intruder"])
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="intruder")
    found = snapshot(iam, "Jets")
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    props = {"Users": users(60), "AdoptExistingGroup": "true"}
    answer = cloud.until_answered(event("Create", props))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(cloud.invocations) >= 3
    strict.throttle(rate=100, clock=handler_clock.now)
    back = cloud.until_answered(event("Delete", props, "Jets"))  # the stack rolls back
    assert back["Status"] == "SUCCESS", back["Reason"]
    assert snapshot(iam, "Jets") == found


def test_a_claim_left_by_a_create_that_died_before_create_group_does_not_block_the_name_forever(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry
) -> None:
    """Stack S1's Create records its claim of "Jets" (write-ahead, GroupId not known yet) and
    the invocation dies before CreateGroup reaches IAM. CloudFormation times the Create out and
    rolls back with Delete (an id of its own invention): SUCCESS, S1's resource is gone. Stack
    S2 (the operator deploys again, under another stack name) then creates "Jets".

    README (registry): "two stacks creating one group at once cannot both claim it" - a live
    claim is refused; the brief's rule: "a stale claim must be taken over, a live one refused".
    S1's claim outlived its resource (its Delete answered SUCCESS, no group of that name
    exists): S2's Create must succeed. Found: refused for ever, "another resource ... is creating
    this group right now", with no way out but editing the table by hand.
    """
    make_users(iam, ["alice"])
    send = controller_sender(iam, registry)
    props = {"Users": "alice"}

    def crash() -> None:
        raise SystemExit("the Lambda runtime killed the invocation")

    strict.before_write("CreateGroup", crash)
    with pytest.raises(SystemExit):
        send(event("Create", props))
    assert snapshot(iam, "Jets") is None
    gone = send(event("Delete", props, "jets-JetsDeployGroup-1A2B3C4D5E6F"))
    assert gone.ok, gone.reason

    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    created = s2.create(props)
    assert created.ok, created.reason
    assert snapshot(iam, "Jets")["members"] == {"alice"}


# == claims x a failed adoption ====================================================================


def test_a_failed_adoption_by_another_stack_gives_the_claim_back_to_the_owner(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry
) -> None:
    """Stack S1 created "Jets" (alice). Stack S2 declares the same group with
    AdoptExistingGroup (the migration the README describes) and its adoption fails half way in
    IAM: handed back, FAILED, CloudFormation's rollback Delete of S2's placeholder id. S1 goes
    on: an Update (grant carol), later the stack's deletion.

    README: "An adoption is handed back on every kind of failure ... exactly as found, and the
    answer does not claim the group"; "an adoption takes the claim over (which ends the previous
    owner's rights)" - a *successful* one. S2's failed adoption must leave S1 the owner: S1's
    Update applies and S1's Delete removes the group. Found: the hand-back deletes the claim
    S2 took over, so S1 owns nothing any more: its Update is refused ("replaced outside
    CloudFormation") and its stack's Delete leaves the group and alice's rights behind.
    """
    make_users(iam, ["alice", "bob", "carol"])
    p1 = make_policy(iam, "p1")
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    strict.fail_write(2, "LimitExceeded")  # its second write is refused: handed back
    failed = s2.create(
        {"Users": "alice,bob", "ManagedPolicyArns": p1, "AdoptExistingGroup": "true"}
    )
    assert not failed.ok
    assert "adopted group restored" in failed.reason
    assert snapshot(iam, "Jets") == found
    strict.clear_faults()

    updated = s1.update({"Users": "alice,carol"})
    assert updated.ok, updated.reason
    assert snapshot(iam, "Jets")["members"] == {"alice", "carol"}
    assert s1.delete().ok
    assert snapshot(iam, "Jets") is None  # S1's stack is gone: so is its group


def test_a_delete_superseding_a_continued_adoption_gives_the_group_back_as_found(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock
) -> None:
    """The same hand-back through the supersede path: the adoption is still going on (two
    invocations done) when another resource fails and CloudFormation cancels it and deletes it
    with an id of its own.

    README: "A Delete that supersedes a Create also removes the group that Create made" - for
    an adoption, the Delete "hands it back as it was found". Found: handed back to the state
    the last invocation found (half adopted: the baseline policy and the members added so far
    stay, intruder is not put back).
    """
    make_users(iam, [*users(60), "intruder"])
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="intruder")
    found = snapshot(iam, "Jets")
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    props = {"Users": users(60), "AdoptExistingGroup": "true"}
    create = event("Create", props)
    assert not cloud.send(create)
    assert not cloud.fire(str(cloud.rule_of(create)))
    strict.throttle(rate=100, clock=handler_clock.now)
    generated = "jets-JetsDeployGroup-1A2B3C4D5E6F"
    answer = cloud.until_answered(event("Delete", props, generated))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert snapshot(iam, "Jets") == found


def test_a_repeated_delivery_of_a_superseding_delete_gets_the_answer_it_got_before(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock
) -> None:
    """A Delete superseding a polling Create is answered with CloudFormation's own id (it never
    learnt the group's name). The same Delete delivered again (EventBridge/Lambda deliver at
    least once; an operator re-invoking from the logs) must get that same answer.

    SPEC: "a request that was already answered (same RequestId in the registry) gets the
    recorded answer again". Found: the registry records the answer with the group's name
    ("Jets"), not the id that was sent, so the repeat answers a different PhysicalResourceId.
    """
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    props = {"Users": users(40)}
    assert not cloud.send(event("Create", props))
    strict.throttle(rate=100, clock=handler_clock.now)
    generated = "jets-JetsDeployGroup-1A2B3C4D5E6F"
    delete = event("Delete", props, generated)
    first = cloud.until_answered(delete)
    assert first["PhysicalResourceId"] == generated
    assert cloud.send(delete)
    again = cloud.receiver.take(delete["RequestId"], 1)
    assert again["Status"] == first["Status"]
    assert again["PhysicalResourceId"] == generated


# == enforcement: what the CloudTrail rule delivers ================================================


def test_the_cloudtrail_check_finds_the_group_whatever_case_the_hand_made_call_used(
    iam: IAMClient, registry: DynamoDBRegistry
) -> None:
    """Someone runs ``aws iam add-user-to-group --group-name jets --user-name mallory`` on the
    registered group "Jets". IAM names are case-insensitive (SPEC: "Names are unique
    case-insensitively"; the registry keys its claims by lower case for that reason), and the
    CloudTrail rule delivers ``requestParameters.groupName`` exactly as the caller typed it:
    ``{"jets-deploy-iam": "reconcile-group", "group": "jets"}``.

    README: "the resources registered for that group are checked within about a minute". Found:
    ``Trigger.covers`` compares the name case-sensitively, so the run checks nothing and the
    member keeps the group's rights until the hourly schedule.
    """
    make_users(iam, ["alice", "mallory"])
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="mallory")  # (moto wants the exact case)
    trigger = enforce.parse_trigger({"jets-deploy-iam": "reconcile-group", "group": "jets"})
    assert trigger is not None
    reporter = Collected()
    summary = enforce.run(iam, registry, ENV, trigger, reporter)
    assert summary.drifted == 1, reporter.outcomes
    assert snapshot(iam, "Jets")["members"] == {"alice"}


def test_a_group_renamed_by_hand_does_not_keep_its_members_rights_unnoticed(
    iam: IAMClient, registry: DynamoDBRegistry
) -> None:
    """Someone renames the registered group by hand: ``aws iam update-group --group-name Jets
    --new-group-name Hidden`` (UpdateGroup is one of the calls the CloudTrail rule watches). The
    group, its GroupId, its members and its admin-equivalent policy now live under "Hidden".

    README (enforcement): "someone who adds themselves to the group by hand ... would keep that
    access until a deploy ... So the function checks every group it manages"; the check treats
    the name as "a group deleted by hand" and re-creates "Jets". Expected: the group the
    resource owns (its GroupId) does not keep granting rights under another name, unnoticed -
    at the least the drift run reports it. Found: "Jets" is re-created, the run reports one
    re-creation and nothing about "Hidden", and the stack's Delete later removes only "Jets":
    alice keeps the policy through "Hidden" for ever.
    """
    make_users(iam, ["alice"])
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.update_group(GroupName="Jets", NewGroupName="Hidden")
    reporter = Collected()
    enforce.run(iam, registry, ENV, enforce.Trigger("Jets"), reporter)
    assert stack.delete().ok
    hidden = snapshot(iam, "Hidden")
    reported = " ".join(o.note for o in reporter.outcomes)
    assert hidden is None or "Hidden" in reported, (hidden, reporter.outcomes)


# == enforcement x a request that writes nothing to IAM ============================================


def test_a_delete_that_found_no_group_does_not_orphan_the_group_a_correction_recreates(
    iam: IAMClient,
    strict: StrictIam,
    registry: DynamoDBRegistry,
    monkeypatch: pytest.MonkeyPatch,
    config: ReconcileConfig,
) -> None:
    """The group is deleted by hand; the CloudTrail rule's drift check (DriftAction correct)
    and the operator's stack deletion run at the same time. The Delete reads the registry and
    IAM (no group: nothing to do, so no write-ahead); the correction, between that read and the
    Delete's one registry write, holds the record, re-creates "Jets" with alice and the policy,
    and releases it. The Delete's write then conflicts, and ``Registry.change`` re-applies the
    same edit ("the group is gone: forget it") to the new record.

    README: "A deploy and the drift check never write to the same group at once ... one whose
    first registry write finds that a correction got in after it read the record decides again
    from scratch". Expected: the Delete decides again and removes the re-created group (or the
    record still owns it). Found: the Delete answers SUCCESS and drops the group and its claim
    from the registry while the re-created group stays in IAM: alice keeps the policy, no
    stack owns the group, no drift check ever looks at it again.
    """
    make_users(iam, ["alice"])
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "DriftAction": "correct"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")

    delete = event("Delete", stack.props, "Jets")
    save = registry._write
    corrected: list[int] = []

    def correction_first(record: Any, version: int, claims: Any = ()) -> None:
        if record.answer_for(delete["RequestId"]) is not None and not corrected:
            monkeypatch.setattr(registry, "_write", save)  # (the correction's own writes)
            corrected.append(Controller(iam, registry).check_drift(KEY, ENV).corrected)
        save(record, version, claims)

    monkeypatch.setattr(registry, "_write", correction_first)
    gone = controller_sender(iam, registry, config)(delete)  # (IAM's consistency: virtual waits)
    monkeypatch.setattr(registry, "_write", save)
    assert corrected == [3]  # CreateGroup, the policy, alice: the correction did run meanwhile
    assert gone.ok, gone.reason
    group = snapshot(iam, "Jets")
    owned = registry.load(KEY, ["Jets"])
    assert group is None or owned.owns("Jets", group["id"]), (group, owned.record.groups)


# == the sweep of rename leftovers x what CloudFormation holds =====================================


def test_after_a_dropped_rollback_delete_of_a_rename_the_next_update_keeps_the_live_group(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename Jets -> JetsNew succeeds, then the stack rolls back (another resource failed):
    CloudFormation's Delete("JetsNew") fails (here: the registry is unreachable for a while),
    is tried three times and dropped; the stack is UPDATE_ROLLBACK_COMPLETE and CloudFormation
    holds "Jets" as the physical id. The next deploy sends Update("Jets") adding bob.

    README: "CloudFormation tries the cleanup Delete ... three times and then drops it; a group
    so left behind is deleted by the resource's next Update". The group left behind is
    JetsNew; "Jets" is the live group CloudFormation holds (its GroupId is the stack's GetAtt).
    Expected: JetsNew goes, "Jets" keeps its GroupId and alice, and bob is added. Found: the
    sweep takes the registry's ``current`` (JetsNew) for the live group and deletes "Jets"
    first - members lose access mid-deploy, the GroupId changes, and the Update then has to
    create "Jets" from scratch.
    """
    from jets_deploy_iam.exceptions import RegistryError

    make_users(iam, ["alice", "bob"])
    send = controller_sender(iam, registry)
    old = {"Users": "alice"}
    assert send(event("Create", old)).ok
    before = snapshot(iam, "Jets")
    renamed = {"Users": "alice", "GroupName": "JetsNew"}
    assert send(event("Update", renamed, "Jets", old)).physical_id == "JetsNew"

    read = registry._read

    def unreachable(*_args: Any) -> Any:
        raise RegistryError("the registry table cannot be read: throttled")

    monkeypatch.setattr(registry, "_read", unreachable)
    for _attempt in range(3):  # the stack's rollback deletes the new name, and gives up
        assert not send(event("Delete", renamed, "JetsNew")).ok
    monkeypatch.setattr(registry, "_read", read)

    strict.reset()
    answer = send(event("Update", {"Users": "alice,bob"}, "Jets", old))
    assert answer.ok, answer.reason
    assert answer.physical_id == "Jets"
    after = snapshot(iam, "Jets")
    assert after["id"] == before["id"]  # the live group was never deleted
    assert after["members"] == {"alice", "bob"}
    assert ("DeleteGroup", "Jets") not in {(c.action, c.group) for c in strict.calls}


# == continuation: what one invocation records for the next ======================================


def test_a_continued_create_records_the_group_id_of_the_group_its_first_invocation_made(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock,
    registry: DynamoDBRegistry, record: Any, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Between invocations the registry must know the group by its GroupId: it is what tells
    the group this Create made from a namesake someone makes meanwhile (and what a Delete
    CloudFormation sends, giving up on the Create, removes). The progress line says how far
    the work got (an operator follows a long request by it)."""
    make_users(iam, users(60))
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60)})
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        assert not cloud.send(create)
    made = snapshot(iam, "Jets")
    assert made is not None
    assert record().in_progress == create["RequestId"]
    assert record().groups["Jets"].group_id == made["id"]
    assert registry.load(KEY, ["Jets"]).owns("Jets", made["id"])
    [progress] = [r for r in caplog.records if hasattr(r, "planned")]
    assert progress.planned == 62  # CreateGroup, the policy, 60 members
    assert progress.applied == len(strict.accepted_writes) < 62


def test_an_invocation_a_newer_request_stops_keeps_the_cancellation_and_frees_the_lease(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock,
    registry: DynamoDBRegistry, record: Any,
) -> None:  # fmt: skip
    """A Delete arrives (in another container) while the Create's second invocation works: that
    invocation stops, records its progress without dropping the cancellation (else the rule
    fires again and the Create goes on against the Delete) and lets go of its lease (else the
    Delete waits for the end of its Lambda time)."""
    make_users(iam, users(60))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)

    def cancel() -> None:
        stored = registry.load(KEY)
        cancelled = replace(stored.record.continuation, cancelled_by="the-delete")
        registry.save(replace(stored.record, continuation=cancelled), stored.version)

    strict.before_write("AddUserToGroup", cancel)
    assert not cloud.fire(rule)
    going_on = record().continuation
    assert going_on.request_id == create["RequestId"]
    assert going_on.cancelled_by == "the-delete"
    assert going_on.holder is None
    assert going_on.invocations == 2
    assert cloud.rules() == []  # CloudFormation gave up on it: no invocation comes any more


def test_a_continued_update_keeps_its_undo_record_and_a_continued_rollback_keeps_none(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """The continuation keeps what the Update's invocations touched, as it was before the first
    touched it (a member added by hand between invocations, then revoked, included); a
    rollback's keeps none of its own: it goes on from the undo record it restores from."""
    make_users(iam, [*users(70), "intruder"])
    old = {"Users": users(10)}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    new = {"Users": users(60, 10), "Services": "s3,lambda"}
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    update = event("Update", new, "Jets", old)
    rule = rule_name(PREFIX, KEY, update["RequestId"])
    assert not cloud.send(update)
    going_on = record().continuation
    assert going_on.request_id == update["RequestId"]
    assert going_on.undo.members == {
        **dict.fromkeys(users(10), True),
        **dict.fromkeys(users(60, 10), False),
    }
    assert "JetsPolicy" in going_on.undo.inline
    strict.throttle(rate=100, clock=handler_clock.now)
    iam.add_user_to_group(GroupName="Jets", UserName="intruder")  # by hand, meanwhile
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    assert not cloud.fire(rule)
    assert record().continuation.undo.members["intruder"] is True
    while not cloud.fire(rule):
        assert len(cloud.invocations) < 12
    assert cloud.receiver.take(update["RequestId"], 1)["Status"] == "SUCCESS"

    back = event("Update", old, "Jets", new)
    assert not cloud.send(back)
    assert record().continuation.request_id == back["RequestId"]
    assert record().continuation.undo is None
    answer = cloud.until_answered(back)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    restored = snapshot(iam, "Jets")
    assert restored["members"] == before["members"] | {"intruder"}  # as before the Update
    assert {k: v for k, v in restored.items() if k != "members"} == {
        k: v for k, v in before.items() if k != "members"
    }


# == continuation: when the work does not go on ==================================================


def test_an_iam_refusal_after_some_progress_fails_the_request_at_once(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, record: Any
) -> None:
    """Only the deadline makes work go on in another invocation: IAM refusing a write (here
    alice is in too many groups) fails the request now, whatever was applied before it."""
    make_users(iam, users(5))
    strict.fail_write(3, "LimitExceeded")  # after CreateGroup and the policy
    create = event("Create", {"Users": users(5)})
    assert cloud.send(create)  # answered by its first invocation
    answer = cloud.receiver.take(create["RequestId"], 1)
    assert answer["Status"] == "FAILED"
    assert "LimitExceeded" in answer["Reason"]
    assert cloud.rules() == []
    assert record().continuation is None


def test_work_left_when_the_service_timeout_nears_fails_saying_how_much_is_left(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """195 members at 0.5 writes/s cannot be added in a ServiceTimeout of 600 s: the request
    fails before CloudFormation stops waiting, saying how many changes were left undone."""
    make_users(iam, users(200))
    old = {"Users": users(5), "ServiceTimeout": "600"}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    new = {"Users": users(200), "ServiceTimeout": "600"}
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    started = handler_clock.now()
    answer = cloud.until_answered(event("Update", new, "Jets", old))
    assert answer["Status"] == "FAILED"
    assert "ServiceTimeout (600 s after the request)" in answer["Reason"]
    assert handler_clock.now() - started < 600
    left = re.search(r"stopped with (\d+) of (\d+) changes to do", answer["Reason"])
    assert left is not None, answer["Reason"]
    to_do, planned = int(left[1]), int(left[2])
    assert 0 < to_do < planned <= 195  # the last invocation's plan, less what it applied
    assert cloud.rules() == []


def test_when_no_next_invocation_can_be_arranged_the_request_fails_saying_why(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The answer names EventBridge's refusal, and the log keeps its traceback."""
    make_users(iam, users(60))
    old = {"Users": users(5)}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    handler.protocol.polling_clients["events"] = RefusingTargets(boto3.client("events"))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    update = event("Update", {"Users": users(60)}, "Jets", old)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        assert cloud.send(update)
    answer = cloud.receiver.take(update["RequestId"], 1)
    assert answer["Status"] == "FAILED"
    assert "AccessDeniedException" in answer["Reason"]
    assert record().continuation is None
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "AccessDeniedException" in str(logged.exc_text)  # the traceback, formatted


# == continuation: a resource older than the registry ============================================


def test_a_continued_delete_of_a_group_made_before_the_registry_deletes_it_all(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """A group the previous version made (no registry record) is deleted by a Delete too long
    for one invocation. The first invocation's write-ahead creates the record: the next must
    still know the group as this resource's (the legacy rule needs an empty registry), or it
    answers SUCCESS and leaves the group, its remaining members keeping their rights."""
    make_users(iam, users(60))
    iam.create_group(GroupName="Jets")
    for user in users(60):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    delete = event("Delete", {"Users": users(60)}, "Jets")
    assert not cloud.send(delete)  # goes on in another invocation
    assert snapshot(iam, "Jets") is not None
    answer = cloud.until_answered(delete)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(cloud.invocations) > 1
    assert snapshot(iam, "Jets") is None
    assert record().groups == {}
