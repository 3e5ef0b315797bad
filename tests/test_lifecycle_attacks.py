"""A fresh-eyed attack on the registry lifecycle (issue 9): sequences CloudFormation, Lambda, IAM
and an operator really produce, each stated with the outcome SPEC.md requires. Each of the first
group failed on the first registry version (the comment under its name says how) and is fixed;
the ones at the end ("held") passed from the start.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from helpers import (
    ENV,
    OTHER_STACK,
    S1,
    S2,
    STACK,
    Stack,
    controller_sender,
    delete_by_hand,
    dies_before,
    event,
    owner,
    s2_lost_its_group_to_s1,
    snapshot,
)
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import CorrectionUnderWayError, RegistryError
from jets_deploy_iam.reconcile import CORRECTION_RESTARTS, Controller, Hooks
from jets_deploy_iam.registry.store import PARTITION_KEY, SORT_KEY, DynamoDBRegistry
from jets_deploy_iam.request import ResourceKey, parse_request
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

HANDMADE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
}
BACKDOOR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}],
}


def members(iam: IAMClient, name: str) -> Any:
    group = snapshot(iam, name)
    return None if group is None else group["members"]


def before_registry_change(
    registry: DynamoDBRegistry, monkeypatch: pytest.MonkeyPatch, hook: Callable[[int], None]
) -> None:
    """Run ``hook(n)`` just before the n-th registry write of what follows (1-based): another
    writer landing first, or the write failing (the hook raises). The hook's own writes (another
    stack's request, say) pass through, neither counted nor hooked."""
    change = registry.change
    count = [0]

    def hooked(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        monkeypatch.setattr(registry, "change", change)
        try:
            hook(count[0])
        finally:
            monkeypatch.setattr(registry, "change", hooked)
        return change(*args, **kwargs)

    monkeypatch.setattr(registry, "change", hooked)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# == co-ownership: an adoption does not end the previous owner's claim ==========================


def test_deleting_the_old_stack_after_another_stack_adopted_its_group_keeps_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The migration an operator does: a new stack adopts the group, then the old stack goes.

    SPEC: "Delete acts ... only when the registry says this resource owns that group ... a
    second stack's Delete touches nothing"; "No co-ownership". Once S2 took the group over, S1
    must not own it any more: its Delete must leave S2's group alone.
    """
    old = Stack(controller_sender(iam, registry))
    assert old.create({"Users": "alice"}).ok
    new = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert new.create({"Users": "alice,bob", "AdoptExistingGroup": "true"}).ok
    adopted = snapshot(iam, "Jets")
    assert old.delete().ok  # the old stack is deleted: its resource gets Delete("Jets")
    assert snapshot(iam, "Jets") == adopted


def test_deleting_a_legacy_stack_after_another_stack_adopted_its_group_keeps_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The same with a resource created before the registry existed (no record at all): the
    legacy rule "it owns what its properties declare" ignores that another resource adopted the
    group since."""
    legacy_group(iam)
    new = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert new.create({"Users": "alice,bob", "AdoptExistingGroup": "true"}).ok
    adopted = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)
    assert send(event("Delete", {"Users": "alice"}, "Jets")).ok  # legacy S1's stack deleted
    assert snapshot(iam, "Jets") == adopted


def test_cleanup_delete_of_a_renamed_group_that_a_sibling_adopted_in_the_same_deploy(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """One deploy moves the name: resource A renames Jets -> JetsOld-free name, resource B (new in
    the template) adopts Jets. CloudFormation then sends A's cleanup Delete("Jets").

    SPEC: "the cleanup Delete of an old name that another resource now uses ... touches nothing".
    """
    send = controller_sender(iam, registry)
    a_props = {"Users": "alice"}
    assert send(event("Create", a_props, logical_id="A")).ok
    renamed = {"Users": "alice", "GroupName": "JetsA"}
    assert send(event("Update", renamed, "Jets", a_props, logical_id="A")).ok
    b_props = {"Users": "bob", "AdoptExistingGroup": "true"}
    assert send(event("Create", b_props, logical_id="B")).ok
    b_group = snapshot(iam, "Jets")
    assert b_group is not None
    assert b_group["members"] == {"bob"}
    assert send(event("Delete", a_props, "Jets", logical_id="A")).ok  # A's cleanup
    assert snapshot(iam, "Jets") == b_group


def test_renaming_the_logical_id_and_following_the_reason_keeps_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The most common refactor: the template's logical id changes (JetsDeployGroup ->
    DeployGroup), same properties. CloudFormation creates the new resource, then deletes the old
    one in its cleanup. The Create fails with "set AdoptExistingGroup true to take it over"; the
    operator does exactly that and deploys again: the cleanup Delete of the old logical id then
    deletes the group the new resource just took over.

    SPEC: "No co-ownership"; Delete acts "only when the registry says this resource owns that
    group"; the cleanup Delete "of an old name that another resource now uses ... touches
    nothing".
    """
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob"}
    assert send(event("Create", props, logical_id="JetsDeployGroup")).ok
    first = send(event("Create", props, logical_id="DeployGroup"))
    assert not first.ok
    assert "AdoptExistingGroup" in first.reason
    adopting = {**props, "AdoptExistingGroup": "true"}
    assert send(event("Create", adopting, logical_id="DeployGroup")).ok
    group = snapshot(iam, "Jets")
    assert send(event("Delete", props, "Jets", logical_id="JetsDeployGroup")).ok  # cleanup
    assert snapshot(iam, "Jets") == group


# == a concurrent Create by another stack is taken for our own lost response ====================


def test_two_stacks_creating_the_same_group_at_once_never_both_own_it(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """A pipeline deploys the same samconfig to two regions at once (IAM is global). S1's
    CreateGroup lands between S2's pre-flight (name free) and S2's CreateGroup; S1 has not added
    its members yet. S2's CreateGroup is answered EntityAlreadyExists on its *first* attempt,
    which cannot be its own lost response.

    SPEC: "A Create that finds the group already there fails unless AdoptExistingGroup is true
    ... a second stack ... must never silently co-own a group."
    """
    s1_paused, s1_go = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def pause_s1() -> None:  # S1 is between its CreateGroup and its AddUserToGroup
        s1_paused.set()
        s1_go.wait(30)

    s1_done = threading.Event()

    def run_s1() -> None:
        results["s1"] = controller_sender(iam, registry)(event("Create", {"Users": "alice"}))
        s1_done.set()

    def s1_creates_first() -> None:  # runs just before S2's CreateGroup reaches IAM
        strict.before_write("AddUserToGroup", pause_s1)
        threading.Thread(target=run_s1, daemon=True).start()
        for _ in range(300):  # S1 either got as far as its members, or was refused
            if s1_done.is_set():
                s1_go.set()  # refused: S1's pause hook, left armed, must not hold S2 up
            if s1_paused.is_set() or s1_done.is_set():
                return
            threading.Event().wait(0.1)

    strict.before_write("CreateGroup", s1_creates_first)
    s2 = controller_sender(iam, registry)(event("Create", {"Users": "bob"}, stack=OTHER_STACK))
    s1_go.set()
    for _ in range(300):
        if "s1" in results:
            break
        threading.Event().wait(0.1)
    # S2 claimed the name before its CreateGroup: S1, arriving in between, is refused before any
    # IAM write (the claim is pending), and only S2 owns the group.
    assert s2.ok, s2.reason
    assert not results["s1"].ok
    assert "is creating this group right now" in results["s1"].reason
    s1_rollback = event("Delete", {"Users": "alice"}, results["s1"].physical_id)
    assert controller_sender(iam, registry)(s1_rollback).ok
    assert members(iam, "Jets") == {"bob"}


# == a rename with Exclusive false onto the name of a foreign inline policy =====================


def test_rename_with_a_policy_name_of_a_foreign_policy_keeps_it_foreign_and_restorable(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """Exclusive false; the adopted group has a hand-made inline policy "Deploy". One Update
    renames the group and declares PolicyName "Deploy". In place, the resource would record that
    it overwrote a foreign document (and put it back later). Through a rename it must too.

    SPEC: "false: the resource only ever removes what it added itself; whatever was on the group
    before the resource declared it stays"; Delete: "a foreign policy document the resource
    overwrote is put back"; never leave a group holding the resource's own grant after Delete.
    """
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")  # foreign member
    iam.put_group_policy(GroupName="Jets", PolicyName="Deploy", PolicyDocument=json.dumps(HANDMADE))
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    renamed = {**base, "GroupName": "JetsNew", "PolicyName": "Deploy"}
    assert stack.update(renamed).ok  # then the cleanup Delete of "Jets"
    assert snapshot(iam, "Jets") is None
    assert stack.delete().ok
    kept = snapshot(iam, "JetsNew")
    assert kept is not None  # dave (foreign) stays, so the group is kept
    assert kept["members"] == {"dave"}
    # The resource's own grant (apigateway:* ... iam:* ...) must not stay on dave's group, and
    # the hand-made document must be back.

    # and the hand-made document is lost for good (not even kept as an original).
    assert kept["policies"] == {"Deploy": _canonical(HANDMADE)}


def _canonical(document: dict[str, Any]) -> Any:
    from jets_deploy_iam import policy

    return policy.canonical(document)


# == a CreateGroup that landed, whose answer was lost, and whose retries then failed ==============


def test_a_create_whose_create_group_landed_but_whose_retries_failed_leaves_no_orphan(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The first CreateGroup lands and its answer is lost; botocore's retries are throttled
    until they give up (an IAM brown-out). The Create fails believing it never created a group,
    answers the placeholder, and CloudFormation's rollback Delete (placeholder) touches nothing:
    an empty group "Jets" is left behind, unregistered, and the next deploy's Create fails on
    it ("set AdoptExistingGroup").

    SPEC: "As soon as the group exists the physical id is its name, so the rollback Delete
    removes what was created; a Create that never created a group reports a placeholder id."
    """
    strict.lose_answer("CreateGroup", how="connection")
    strict.inject("CreateGroup", "Throttling", skip=1, times=50)
    stack = Stack(controller_sender(iam, registry))
    response = stack.create({"Users": "alice"})  # FAILED, then the rollback Delete
    assert not response.ok
    strict.clear_faults()
    assert snapshot(iam, "Jets") is None, response
    assert stack.create({"Users": "alice"}).ok  # the next deploy


# == CloudFormation does not retry a failed cleanup Delete =======================================


def test_a_failed_cleanup_delete_of_the_old_name_does_not_leave_its_members_their_rights(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """After a rename, CloudFormation's cleanup Delete of the old name fails (IAM brown-out).
    CloudFormation does not retry cleanup failures: the stack still ends UPDATE_COMPLETE and the
    old group is simply never deleted. Nothing in the function ever finishes it, so the old
    group keeps every member with the full deploy policy — a later revocation on the new group
    (bob) leaves bob those rights through the old one.

    SPEC: "CloudFormation then sends Delete for the old name in its cleanup"; "a user being
    revoked never holds the new rights" / "a later revocation must never be silently skipped".
    """
    send = controller_sender(iam, registry)
    a = {"Users": "alice,bob"}
    assert send(event("Create", a)).ok
    renamed = {**a, "GroupName": "JetsNew"}
    assert send(event("Update", renamed, "Jets", a)).ok
    strict.inject("RemoveUserFromGroup", "ServiceFailure", times=10_000)
    for _attempt in range(3):  # CloudFormation tries three times, then drops it from the stack
        assert not send(event("Delete", a, "Jets")).ok
    strict.clear_faults()
    revoked = {**renamed, "Users": "alice"}
    assert send(event("Update", revoked, "JetsNew", renamed)).ok  # bob revoked, days later
    holding = [g for g in ("Jets", "JetsNew") if "bob" in (members(iam, g) or ())]
    assert holding == []


# == a stack rollback right after a successful adoption ==========================================


def test_a_stack_rollback_after_an_adoption_gives_the_group_back(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """The first `sam deploy` on an account that has the Jets docs' hand-made group, with
    AdoptExistingGroup true (Exclusive defaults to true). The adoption succeeds; another
    resource of the stack then fails (e.g. its log group already exists), and CloudFormation's
    rollback sends Delete("Jets"). The group was not created by this stack.

    SPEC: "Rollbacks restore exactly"; "Adoption hand-back on every kind of failure"; a Create's
    "rollback Delete removes what was created". An exclusive Delete of an adopted group is
    fine when the operator deletes the stack; as the rollback of the adoption, it destroys a
    group (and its members' access) that existed before the deploy.
    """
    iam.create_group(GroupName="Jets")
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    before = snapshot(iam, "Jets")
    props = {"Users": "alice,bob", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    assert stack.send(event("Delete", props, "Jets")).ok  # the stack creation rolls back
    assert snapshot(iam, "Jets") == before


# == an operator's revert deploy has the shape of a rollback =====================================


def test_a_revert_deploy_days_later_still_corrects_drift_on_an_exclusive_group(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """A -> B succeeds. Days later someone hand-adds dave and an inline "Backdoor" (iam:*). The
    operator reverts the template: B -> A. That Update has exactly the shape of CloudFormation's
    rollback (same physical id, properties swapped), so it is served from B's undo record, which
    only touches what B touched.

    SPEC: "Exclusive true: members, attachments and inline policies are exactly what is
    declared; anything else found on the group is removed on every Create/Update (drift is
    corrected)."
    """
    a = {"Users": "alice"}
    b = {"Users": "alice,carol"}
    assert stack.create(a).ok
    assert stack.update(b).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Backdoor", PolicyDocument=json.dumps(BACKDOOR)
    )
    assert stack.update(a).ok  # the operator's revert
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}
    assert set(group["policies"]) == {"JetsPolicy"}  # and Backdoor (iam:*) stays


def test_a_redeploy_after_a_stack_rollback_recreates_a_group_deleted_meanwhile(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """A -> B; another resource fails, the stack rolls back (B -> A). While the operator fixes
    the other resource, someone deletes the group by hand. The redeploy sends A -> B again: the
    swap of the rollback's own undo record, so it is served as "the rollback of the rollback"
    and restores onto nothing.

    SPEC: Update "reads the group, computes the difference"; a group deleted by hand is created
    again; "Always answer CloudFormation ... with" the truth: SUCCESS must mean the group exists
    with GroupId and Arn for Fn::GetAtt.
    """
    a = {"Users": "alice"}
    b = {"Users": "alice,carol"}
    assert stack.create(a).ok
    assert stack.update(b, stack_rolls_back=True).ok
    assert members(iam, "Jets") == {"alice"}
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    response = stack.update(b)
    assert response.ok
    assert members(iam, "Jets") == {"alice", "carol"}
    assert response.data.get("GroupId")


def test_switching_exclusive_back_on_removes_what_was_added_by_hand(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """The most ordinary revert: Exclusive true -> false (a trial), dave is added by hand, then
    Exclusive back to true. That last Update is the swap of the previous one, so it is served as
    a rollback, which touches nothing the previous Update did not touch.

    SPEC: "Exclusive true: ... anything else found on the group is removed on every
    Create/Update"; README: the switch false -> true "removes foreign content".
    """
    exclusive = {"Users": "carol"}
    assert stack.create(exclusive).ok
    assert stack.update({**exclusive, "Exclusive": "false"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    assert stack.update(exclusive).ok
    assert members(iam, "Jets") == {"carol"}


# (The drift correction racing a deploy on the record is in test_enforce.py: a correction
# holds the record, a deploy waits for it, and a correction never writes over a deploy.)


# == a rollback whose properties this version cannot parse =======================================


def test_a_rollback_restores_from_the_undo_record_even_if_its_properties_do_not_parse(
    iam: IAMClient, stack: Stack, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SAM stack updates the function (new code) and its Custom::JetsDeployGroup in one
    deploy; a later resource fails, so the custom resource's rollback Update (props swapped) is
    served by the *new* code, which rejects a property of A (here: a property it dropped).
    The undo record needs no parsing; the rollback must still restore.

    SPEC: "Rollbacks restore exactly ... from the undo record."
    """
    from jets_deploy_iam import spec

    a = {"Users": "alice,bob", "DriftAction": "report"}
    assert stack.create(a).ok
    before = snapshot(iam, "Jets")
    b = {"Users": "alice"}  # bob revoked
    monkeypatch.setattr(spec, "KNOWN_PROPERTIES", spec.KNOWN_PROPERTIES - {"DriftAction"})
    old, physical = stack.props, stack.physical_id
    send = stack.send
    assert send(event("Update", b, physical, old)).ok  # A's props no longer parse: still fine
    back = send(event("Update", old, physical, b))  # CloudFormation's rollback
    assert back.ok, back.reason
    assert snapshot(iam, "Jets") == before


def test_continue_rollback_after_an_unparseable_rollback_still_has_the_undo_record(
    iam: IAMClient, stack: Stack, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Follow-on of the previous, where it loses foreign content: A (Exclusive false, adopted
    group with hand-made members and policy) -> B (Exclusive true) removes the foreign content.
    The rollback fails on A's properties and overwrites B's undo record with an empty one; once
    the function is fixed, ContinueUpdateRollback re-sends the same rollback Update (new
    RequestId): there is nothing left to restore bob, carol, Handmade and p1 from.

    SPEC: "Rollbacks restore exactly ... foreign content included — from the undo record."
    """
    from jets_deploy_iam import spec

    iam.create_group(GroupName="Jets")
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    a = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true",
         "DriftAction": "report"}  # fmt: skip
    assert stack.create(a).ok
    before = snapshot(iam, "Jets")
    b = {"Users": "alice", "Exclusive": "true", "AdoptExistingGroup": "true"}
    send, physical = stack.send, stack.physical_id
    assert send(event("Update", b, physical, a)).ok  # foreign content removed
    with monkeypatch.context() as patch:  # the new code rejects a property of A
        patch.setattr(spec, "KNOWN_PROPERTIES", spec.KNOWN_PROPERTIES - {"DriftAction"})
        assert send(event("Update", a, physical, b)).ok  # served from the undo record anyway
    assert snapshot(iam, "Jets") == before
    # Had it failed, ContinueUpdateRollback would re-send it: delivered again, it changes nothing.
    assert send(event("Update", a, physical, b)).ok
    assert snapshot(iam, "Jets") == before


# == a legacy resource whose old properties do not parse ========================================


def test_legacy_non_exclusive_update_with_unparseable_old_properties_still_revokes(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Issue 9 #3's last sentence, on the legacy path: a group made by the previous version
    (no registry record), Exclusive false, bob declared. This version rejects something in the
    old properties. The Update undeclares bob.

    SPEC: "a later revocation must never be silently skipped."
    """
    iam.create_group(GroupName="Jets")
    for user in ("alice", "bob"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    old = {"Users": "alice,bob", "Exclusive": "false", "FutureProperty": "x"}
    new = {"Users": "alice", "Exclusive": "false"}
    response = controller_sender(iam, registry)(event("Update", new, "Jets", old))
    assert response.ok
    assert members(iam, "Jets") == {"alice"}


def test_legacy_non_exclusive_delete_with_unparseable_properties_keeps_foreign_content(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Issue 9 #10 on the legacy path: Exclusive false, a hand-added member and inline policy;
    the Delete's properties do not parse in this version, so the legacy record defaults to
    exclusive and the Delete empties and deletes the whole group."""
    iam.create_group(GroupName="Jets")
    for user in ("alice", "dave"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    props = {"Users": "alice", "Exclusive": "false", "FutureProperty": "x"}
    assert controller_sender(iam, registry)(event("Delete", props, "Jets")).ok
    kept = snapshot(iam, "Jets")
    assert kept is not None
    assert "dave" in kept["members"]


# == a legacy resource whose first request after the upgrade is refused ==========================


def legacy_group(iam: IAMClient) -> None:
    """What the previous version made for stack S1 (no registry record): alice, JetsPolicy."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="alice")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )


def a_retried_delete_leaves_a_namesake_made_since(iam: IAMClient, send: Any) -> None:
    """S1's stack is deleted already; someone then makes a new "Jets" by hand (dave), and
    CloudFormation's deletion is retried (its answer was lost): a Delete with a new RequestId.
    The hand-made group is nobody's resource: it must stay exactly as made."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    handmade = snapshot(iam, "Jets")
    retried = send(event("Delete", {"Users": "alice"}, "Jets"))
    assert retried.ok, retried.reason
    assert snapshot(iam, "Jets") == handmade


def test_a_legacy_resources_update_after_a_refused_one_still_owns_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The first deploy after the upgrade names a user that does not exist yet (ghost): refused,
    and CloudFormation rolls the stack back. The operator creates nothing, drops ghost and adds
    bob instead.

    SPEC (registry): a resource created before the registry owns what its properties declare.
    A refusal changes nothing, so it must not change whose group it is either. Found: the
    refusal's recorded answer made the registry hold a record for the resource, which ended the
    legacy rule: the second Update was refused with "is not registered to this resource".
    """
    legacy_group(iam)
    stack = Stack(controller_sender(iam, registry), physical_id="Jets", props={"Users": "alice"})
    refused = stack.update({"Users": "alice,ghost"})
    assert not refused.ok
    assert "ghost" in refused.reason
    updated = stack.update({"Users": "alice,bob"})
    assert updated.ok, updated.reason
    assert members(iam, "Jets") == {"alice", "bob"}
    assert owner(registry) == S1


def test_a_legacy_stacks_delete_after_a_refused_update_deletes_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The same refused first Update; the operator then deletes the stack instead.

    SPEC: "Delete ... deletes the group" a resource owns. Found: the Delete answered SUCCESS and
    left the group with alice's deploy rights ("the registry does not say this resource owns
    the group"), owned by nobody.
    """
    legacy_group(iam)
    stack = Stack(controller_sender(iam, registry), physical_id="Jets", props={"Users": "alice"})
    assert not stack.update({"Users": "alice,ghost"}).ok
    deleted = stack.delete()
    assert deleted.ok, deleted.reason
    assert snapshot(iam, "Jets") is None


def test_a_legacy_stacks_delete_that_failed_on_a_read_deletes_the_group_when_retried(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The stack's first request after the upgrade is its Delete, and IAM refuses the group's
    read (the function's role lost iam:GetGroup, say): DELETE_FAILED. The operator fixes the
    role and retries the stack's deletion (a Delete with a new RequestId).

    The failure changed nothing in IAM, so the group is still the resource's: the retry deletes
    it. Found: the failure's recorded answer ended the legacy rule, and the retry answered
    SUCCESS leaving the group and alice's deploy rights.
    """
    legacy_group(iam)
    send = controller_sender(iam, registry)
    strict.inject("GetGroup", "AccessDenied")
    assert not send(event("Delete", {"Users": "alice"}, "Jets")).ok
    assert snapshot(iam, "Jets") is not None
    retried = send(event("Delete", {"Users": "alice"}, "Jets"))
    assert retried.ok, retried.reason
    assert snapshot(iam, "Jets") is None


def test_a_failed_create_never_makes_a_handmade_namesake_legacy(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The hand-made "Jets" (dave) exists; the stack's Create declares "Jets" without
    AdoptExistingGroup: refused, and CloudFormation's rollback Delete follows. The operator
    deploys again with AdoptExistingGroup true and later deletes the stack.

    A resource that has never answered SUCCESS is not one the previous version made: the
    legacy rule ("owns what its properties declare") must not reach the hand-made group. The
    adoption hands the group back as it was found on the stack's Delete.
    """
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    found = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    refused = stack.create({"Users": "alice"})
    assert not refused.ok
    assert snapshot(iam, "Jets") == found
    assert stack.create({"Users": "alice", "AdoptExistingGroup": "true"}).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == found


def test_a_legacy_delete_served_once_never_reaches_a_namesake_made_after_it(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The refused first Update; the operator gives up on the stack, deletes the group in the
    console, then deletes the stack: the Delete finds no group and answers SUCCESS, but the
    answer is lost on its way to CloudFormation. Meanwhile someone makes a new "Jets" by hand
    (dave). CloudFormation's Delete times out; the operator retries the stack's deletion: a
    Delete with a new RequestId.

    The resource is gone already: the legacy rule went with it and must not make the new,
    unclaimed group this resource's (and delete dave's group). (A Delete that deletes the
    group records it first, which ends the rule too.)
    """
    legacy_group(iam)
    stack = Stack(controller_sender(iam, registry), physical_id="Jets", props={"Users": "alice"})
    assert not stack.update({"Users": "alice,ghost"}).ok
    delete_by_hand(iam)
    assert stack.delete().ok
    a_retried_delete_leaves_a_namesake_made_since(iam, controller_sender(iam, registry))


def test_a_legacy_update_racing_another_stacks_adoption_leaves_the_adopters_claim(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The legacy stack S1 deploys (add bob) at the moment S2's Create adopts "Jets"
    (AdoptExistingGroup true): S2's claim lands between S1's read of the registry and S1's
    write-ahead.

    SPEC: only an adoption (or a stale claim of a group that is gone) takes a claim from
    another resource. The legacy rule finds an unclaimed group; it is no adoption: S1 must not
    take S2's fresh claim (S2's stack would then no longer own the group it adopted).
    """
    legacy_group(iam)
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)

    def adoption_lands_first(write: int) -> None:
        if write == 1:
            assert s2.create({"Users": "alice,carol", "AdoptExistingGroup": "true"}).ok

    before_registry_change(registry, monkeypatch, adoption_lands_first)
    raced = controller_sender(iam, registry)(
        event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"})
    )
    assert not raced.ok  # it wrote nothing: the group is S2's now
    assert members(iam, "Jets") == {"alice", "carol"}
    assert owner(registry) == S2


# == an Update of a group this resource does not own: refused, with the reason ===================


def test_an_update_of_a_group_another_stack_claims_is_refused_naming_the_owner(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2 created "Jets"; the group was deleted by hand and S1 created and claimed a new one.
    S2's next deploy (add carol) would change S1's group.

    SPEC: an Update acts only on a group this resource owns; the error names the fix. The
    reason must say whose group it is (the logical id and the stack), so the operator can tell
    a takeover from a mistake, and IAM must be left as S1 made it.
    """
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK, logical_id="Other")
    assert s2.create({"Users": "bob"}).ok
    delete_by_hand(iam)
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    before = snapshot(iam, "Jets")
    refused = s2.update({"Users": "bob,carol"})
    assert not refused.ok
    assert f"owned by {S1.logical_id} of stack {S1.stack_name}" in refused.reason
    assert "AdoptExistingGroup true" in refused.reason
    assert snapshot(iam, "Jets") == before
    assert owner(registry) == S1


def test_an_update_of_a_group_replaced_by_hand_is_refused_saying_so(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 created "Jets" (alice). Someone deletes it in the console and makes a new "Jets"
    (dave). S1's next deploy adds carol.

    The new group is not the one S1 made (its GroupId changed): S1 must not touch it, and the
    reason must say that the group was replaced, not that another stack owns it (none does) nor
    that it was never S1's.
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    before = snapshot(iam, "Jets")
    refused = s1.update({"Users": "alice,carol"})
    assert not refused.ok
    assert "replaced outside CloudFormation" in refused.reason
    assert "owned by" not in refused.reason
    assert snapshot(iam, "Jets") == before


def test_an_update_of_a_group_gone_again_takes_the_stale_claim_of_the_stack_that_remade_it(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2 created "Jets" (bob); it was deleted by hand, and S1 created and claimed a new one
    (alice). That one is deleted by hand too. S2's next deploy (bob, carol) finds no group.

    README (registry): a claim of a group that no longer exists is stale and is taken over.
    S2 makes "Jets" again as its own: S1's Update is then refused ("owned by"), and S1's
    Delete leaves S2's group alone.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "bob"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    delete_by_hand(iam)

    remade = s2.update({"Users": "bob,carol"})
    assert remade.ok, remade.reason
    assert members(iam, "Jets") == {"bob", "carol"}
    assert owner(registry) == S2
    assert not s1.update({"Users": "alice,dave"}).ok
    assert s1.delete().ok
    assert members(iam, "Jets") == {"bob", "carol"}


def test_an_update_after_the_registry_was_restored_from_an_older_backup_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 created "JetsA", then renamed it to "Jets". The registry table is then restored from
    a backup taken before the rename (DynamoDB point-in-time recovery): the record knows only
    "JetsA", nobody claims "Jets". S1's next deploy adds carol to "Jets".

    The registry no longer says "Jets" is S1's: S1 must not change it on the strength of its
    physical id, and the reason must say so (the group is not registered to this resource, not
    owned by another nor replaced), naming the fix, which then works.
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice", "GroupName": "JetsA"}).ok
    backup = registry.client.scan(TableName=registry.table)["Items"]
    assert s1.update({"Users": "alice", "GroupName": "Jets"}).ok
    for item in registry.client.scan(TableName=registry.table)["Items"]:
        key = {name: item[name] for name in (PARTITION_KEY, SORT_KEY)}
        registry.client.delete_item(TableName=registry.table, Key=key)
    for item in backup:
        registry.client.put_item(TableName=registry.table, Item=item)
    before = snapshot(iam, "Jets")

    refused = s1.update({"Users": "alice,carol", "GroupName": "Jets"})
    assert not refused.ok
    assert "not registered to this resource" in refused.reason
    assert "AdoptExistingGroup true" in refused.reason
    assert snapshot(iam, "Jets") == before

    adopted = s1.update({"Users": "alice,carol", "GroupName": "Jets", "AdoptExistingGroup": "true"})
    assert adopted.ok, adopted.reason
    assert members(iam, "Jets") == {"alice", "carol"}
    assert owner(registry) == S1


def test_an_update_while_another_resource_creates_the_group_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """S2 created "Jets" (bob); the group was deleted by hand. S1's Create of "Jets" is under
    way: its write-ahead claimed the name, and its invocation is still running (killed here
    before its first IAM write, its request not answered yet). S2's next deploy comes now.

    S2 would make the group again and take the claim S1 is creating under: two stacks writing
    one group. S2 is refused, and says why; S1, delivered again, creates the group as its own.
    """
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK, logical_id="Other")
    assert s2.create({"Users": "bob"}).ok
    delete_by_hand(iam)
    s1_create = event("Create", {"Users": "alice"})
    dies_before(strict, "CreateGroup", lambda: controller_sender(iam, registry)(s1_create))
    assert snapshot(iam, "Jets") is None

    refused = s2.update({"Users": "bob,carol"})
    assert not refused.ok
    assert "being created by another resource" in refused.reason
    assert snapshot(iam, "Jets") is None
    assert owner(registry) == S1

    again = controller_sender(iam, registry)(s1_create)
    assert again.ok, again.reason
    assert members(iam, "Jets") == {"alice"}
    assert owner(registry) == S1


# == the deadline: botocore's own retries are not bounded by it =================================


def test_no_iam_attempt_starts_after_the_deadline_under_throttling(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """IAM throttles (shared token bucket, other callers in the account). Each attempt of
    AddUserToGroup takes 6 s (the throttled answer plus botocore's backoff, up to 20 s in standard
    mode; or a 15 s read timeout). botocore retries up to ``max_attempts`` (8) inside one call,
    never asking the deadline, so one call started 30 s before Lambda's end outlives the Lambda.

    SPEC: "No IAM call may outlive the remaining time: per-call timeouts and the retry budget
    come from the deadline, so crhelper's own timer never answers."
    """
    send = controller_sender(iam, registry)
    assert send(event("Create", {"Users": "alice"})).ok
    clock = FakeClock()
    strict.reset()
    strict.clock = clock
    strict.on_call = lambda action: clock.advance(6.0 if action == "AddUserToGroup" else 0.0)
    strict.inject("AddUserToGroup", "Throttling", times=7)
    config = ReconcileConfig(clock=clock, sleep=clock.advance)
    margin = config.deadline_margin  # Lambda ends this long after the work deadline
    work = Deadline(at=1.0, clock=clock)
    undo = Deadline(at=1.0 + margin - config.undo_margin, clock=clock)
    controller = Controller(iam, registry, config, work, undo)
    request = parse_request(
        event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"}), ENV
    )
    controller.handle(request)
    late = [c for c in strict.calls if c.at >= work.at]

    # after Lambda's own timeout (work.at + 30 s): crhelper's timer answers meanwhile.
    assert late == [], [(c.action, c.at) for c in late]


# == the registry write after the IAM writes fails: the write-ahead record must be safe ==========


def _fail_save(registry: DynamoDBRegistry, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """From now on, the ``nth`` registry write fails (DynamoDB throttled / unreachable)."""
    from jets_deploy_iam.exceptions import RegistryError

    original = registry._write
    count = {"n": 0}

    def write(record: Any, version: int, claims: Any) -> None:
        count["n"] += 1
        if count["n"] == nth:
            raise RegistryError("the registry table cannot be written: throttled")
        original(record, version, claims)

    monkeypatch.setattr(registry, "_write", write)


def test_a_rollback_whose_outcome_is_not_recorded_never_makes_foreign_content_owned(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A (Exclusive false, adopted hand-made group) -> B (Exclusive true) removes the foreign
    content; the stack rolls back and the rollback puts it back. The rollback's write-ahead
    claims everything it re-adds as *owned*; its final registry write fails (the answer, SUCCESS,
    stands). The next ordinary deploy (A, another service) then removes all of it.

    SPEC: Exclusive false "only ever removes what it added itself; whatever was on the group
    before the resource declared it stays".
    """
    iam.create_group(GroupName="Jets")
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    send = controller_sender(iam, registry)
    a = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    b = {**a, "Exclusive": "true"}
    assert send(event("Create", a)).ok
    before = snapshot(iam, "Jets")
    assert send(event("Update", b, "Jets", a)).ok
    _fail_save(registry, monkeypatch, nth=2)  # the rollback's write-ahead lands, its outcome not
    assert send(event("Update", a, "Jets", b)).ok  # CloudFormation's rollback
    assert snapshot(iam, "Jets") == before
    monkeypatch.undo()
    a2 = {**a, "Services": "s3,lambda"}
    assert send(event("Update", a2, "Jets", a)).ok  # the next deploy
    group = snapshot(iam, "Jets")
    assert group is not None

    assert group["members"] == {"alice", "bob", "carol"}
    assert set(group["policies"]) == {"JetsPolicy", "Handmade"}
    assert group["attached"] == {world["p1"]}


def test_a_rename_whose_outcome_is_not_recorded_is_still_cleaned_up(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Exclusive false, dave hand-added. The rename's IAM writes succeed, its final registry
    write fails (SUCCESS stands). The write-ahead recorded the new group's pair but not the old
    group's, so CloudFormation's cleanup Delete of the old name treats it as a lone non-exclusive
    group with foreign content and keeps it: dave is now in two groups holding the old one's
    remaining content, and the record says the resource has no group at all.

    SPEC: "the cleanup Delete of the old name and the rollback Delete of the new name delete that
    group entirely."
    """
    send = controller_sender(iam, registry)
    a = {"Users": "alice", "Exclusive": "false"}
    assert send(event("Create", a)).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    renamed = {**a, "GroupName": "JetsNew"}
    _fail_save(registry, monkeypatch, nth=2)  # write-ahead ok, outcome lost
    assert send(event("Update", renamed, "Jets", a)).ok
    monkeypatch.undo()
    assert send(event("Delete", a, "Jets")).ok  # CloudFormation's cleanup
    assert snapshot(iam, "Jets") is None
    drift = Controller(iam, registry).check_drift(ResourceKey(STACK, "JetsDeployGroup"), ENV)
    assert drift.group == "JetsNew", drift.note


# == protocol: an answerable event is dropped ====================================================


@pytest.mark.parametrize("physical", [None, 42, ""])
def test_an_update_with_an_odd_physical_id_is_answered_not_dropped(
    strict: StrictIam, receiver: Any, world: dict[str, str], physical: Any
) -> None:
    """An Update whose PhysicalResourceId is missing, not a string or empty still carries a
    ResponseURL, RequestId, StackId and LogicalResourceId: it can be answered (FAILED, naming
    the problem). Dropping it leaves CloudFormation waiting for the whole ServiceTimeout (one
    hour by default) before it fails the resource.

    SPEC: "Always answer CloudFormation, once"; only an event without ResponseURL, RequestType,
    RequestId, StackId or LogicalResourceId is dropped.
    """
    from jets_deploy_iam import handler
    from jets_deploy_iam_cli.local.context import FakeLambdaContext

    crafted = event("Update", {"Users": "alice"}, "Jets", {"Users": "alice"})
    if physical is None:
        del crafted["PhysicalResourceId"]
    else:
        crafted["PhysicalResourceId"] = physical
    crafted["ResponseURL"] = receiver.url(crafted["RequestId"])
    import os

    os.environ["SSL_CERT_FILE"] = str(receiver.cafile)
    handler._clients.cache_clear()
    handler.lambda_handler(crafted, FakeLambdaContext(timeout_seconds=300.0))
    answer = receiver.take(crafted["RequestId"], timeout=2)
    assert answer["Status"] == "FAILED"
    assert strict.writes == []


# == what held (these pass) ======================================================================


def test_held_rename_rollback_then_the_same_rename_again_then_cleanup_twice(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    a = {"Users": "alice", "Exclusive": "false"}
    assert send(event("Create", a)).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    before = snapshot(iam, "Jets")
    renamed = {**a, "GroupName": "JetsNew", "Users": "alice,bob"}
    assert send(event("Update", renamed, "Jets", a)).physical_id == "JetsNew"
    assert send(event("Delete", renamed, "JetsNew")).ok  # the stack rolled back
    assert snapshot(iam, "Jets") == before
    assert snapshot(iam, "JetsNew") is None
    assert send(event("Update", renamed, "Jets", a)).physical_id == "JetsNew"  # next deploy
    cleanup = event("Delete", a, "Jets")
    assert send(cleanup).ok
    assert send(cleanup).ok  # the same request delivered again
    assert send(event("Delete", a, "Jets")).ok  # and another Delete of the old name
    assert snapshot(iam, "Jets") is None
    assert members(iam, "JetsNew") == {"alice", "bob", "dave"}
    assert send(event("Delete", renamed, "JetsNew")).ok
    assert members(iam, "JetsNew") == {"dave"}  # the foreign member is kept with its group


def test_held_rename_when_the_old_group_was_deleted_by_hand(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    assert stack.create({"Users": "alice"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    assert stack.update({"Users": "alice", "GroupName": "JetsNew"}).ok  # + cleanup Delete
    assert members(iam, "JetsNew") == {"alice"}
    assert stack.delete().ok
    assert snapshot(iam, "JetsNew") is None


def test_held_two_resources_of_one_stack_declaring_the_same_group_name(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    first = Stack(controller_sender(iam, registry), logical_id="First")
    second = Stack(controller_sender(iam, registry), logical_id="Second")
    assert first.create({"Users": "alice"}).ok
    before = snapshot(iam, "Jets")
    assert not second.create({"Users": "bob"}).ok  # and its rollback Delete
    assert snapshot(iam, "Jets") == before
    # renaming onto a sibling's group fails in pre-flight and writes nothing
    other = Stack(controller_sender(iam, registry), logical_id="Other")
    assert other.create({"Users": "bob", "GroupName": "Other"}).ok
    assert not first.update({"Users": "alice", "GroupName": "Other"}).ok
    assert snapshot(iam, "Jets") == before
    assert members(iam, "Other") == {"bob"}


def test_held_continue_rollback_after_a_rollback_that_failed_in_iam(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """UPDATE_ROLLBACK_FAILED (IAM failing during the restore), then ContinueUpdateRollback
    re-sends the rollback Update with a new RequestId: it restores exactly, and the foreign
    content it put back is not owned afterwards."""
    iam.create_group(GroupName="Jets")
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    send = controller_sender(iam, registry)
    a = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    b = {**a, "Exclusive": "true"}
    assert send(event("Create", a)).ok
    before = snapshot(iam, "Jets")
    assert send(event("Update", b, "Jets", a)).ok
    strict.inject("AddUserToGroup", "ServiceFailure", skip=1, times=1000)
    assert not send(event("Update", a, "Jets", b)).ok
    strict.clear_faults()
    assert send(event("Update", a, "Jets", b)).ok  # ContinueUpdateRollback
    assert snapshot(iam, "Jets") == before
    assert send(event("Update", {**a, "Services": "s3"}, "Jets", a)).ok
    assert members(iam, "Jets") == {"alice", "bob", "carol"}
    assert send(event("Delete", {**a, "Services": "s3"}, "Jets")).ok
    assert members(iam, "Jets") == {"bob", "carol"}


def test_held_non_exclusive_ownership_switches_and_hand_edits(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")  # by hand
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    assert stack.update({**base, "Users": "alice,bob"}).ok  # declares the hand-made member
    assert stack.update(base).ok  # undeclares it: it stays
    assert members(iam, "Jets") == {"alice", "bob"}
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")  # removed by hand
    assert stack.update({**base, "Users": "alice,carol"}).ok  # re-declared: added back
    assert stack.update({**base, "Users": ""}).ok
    assert members(iam, "Jets") == {"bob"}  # alice and carol were added by the resource
    assert stack.update({**base, "Users": "carol", "Exclusive": "true"}).ok
    assert members(iam, "Jets") == {"carol"}
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    assert stack.update({**base, "Users": "carol"}).ok  # back to non-exclusive: dave stays
    assert members(iam, "Jets") == {"carol", "dave"}
    # (switching Exclusive on again right now is the revert-shaped Update: see
    # test_switching_exclusive_back_on_removes_what_was_added_by_hand)


class Crash(BaseException):
    """The function dies (Lambda killed, out of memory): nothing after this point runs."""


def test_held_crash_half_way_then_the_rollback_update_restores_and_revokes(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The write-ahead landed, bob was removed and carol added, then the function died. No
    answer: CloudFormation fails the Update after its timeout and sends the rollback Update."""
    send = controller_sender(iam, registry)
    a = {"Users": "alice,bob", "Exclusive": "false"}
    b = {"Users": "alice,carol", "Exclusive": "false", "ManagedPolicyArns": world["p1"]}
    assert send(event("Create", a)).ok
    before = snapshot(iam, "Jets")

    def die() -> None:
        raise Crash

    strict.before_write("AttachGroupPolicy", lambda: None)
    strict.before_write("AddUserToGroup", lambda: strict.before_write("AddUserToGroup", die))
    with pytest.raises(Crash):
        send(event("Update", {**b, "Users": "alice,carol,dave"}, "Jets", a))
    assert "carol" in members(iam, "Jets") or "dave" in members(iam, "Jets")
    assert send(event("Update", a, "Jets", {**b, "Users": "alice,carol,dave"})).ok
    assert snapshot(iam, "Jets") == before


def test_held_deadline_during_the_undo_then_the_rollback_finishes_it(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    a = {"Users": "alice"}
    assert send(event("Create", a)).ok
    before = snapshot(iam, "Jets")
    clock = FakeClock()
    strict.clock = clock
    strict.on_call = lambda action: clock.advance(1.0 if action in (
        "AddUserToGroup", "AttachGroupPolicy", "RemoveUserFromGroup", "DetachGroupPolicy",
        "PutGroupPolicy") else 0.0)  # fmt: skip
    config = ReconcileConfig(clock=clock, sleep=clock.advance, max_in_flight=1)
    new = {"Users": "alice,bob,carol,dave", "ManagedPolicyArns": world["p1"], "Services": "s3"}
    controller = Controller(iam, registry, config, Deadline(2.5, clock), Deadline(3.5, clock))
    response = controller.handle(parse_request(event("Update", new, "Jets", a), ENV))
    assert not response.ok
    assert response.physical_id == "Jets"
    assert "undoing its changes failed too" in response.reason
    strict.on_call = None
    assert send(event("Update", a, "Jets", new)).ok  # CloudFormation's rollback
    assert snapshot(iam, "Jets") == before


def test_held_deadline_during_a_delete_then_the_retried_delete(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob,carol", "ManagedPolicyArns": world["p1"]}
    assert send(event("Create", props)).ok
    clock = FakeClock()
    strict.on_call = lambda action: clock.advance(1.0 if action == "RemoveUserFromGroup" else 0.0)
    config = ReconcileConfig(clock=clock, sleep=clock.advance, max_in_flight=1)
    controller = Controller(iam, registry, config, Deadline(1.5, clock))
    response = controller.handle(parse_request(event("Delete", props, "Jets"), ENV))
    assert not response.ok
    assert response.physical_id == "Jets"
    strict.on_call = None
    assert send(event("Delete", props, "Jets")).ok  # DELETE_FAILED, the operator retries
    assert snapshot(iam, "Jets") is None


def test_held_in_place_policy_name_change_onto_a_foreign_policy_rollback_then_delete(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    iam.put_group_policy(GroupName="Jets", PolicyName="Deploy", PolicyDocument=json.dumps(HANDMADE))
    before = snapshot(iam, "Jets")
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    assert stack.update({**base, "PolicyName": "Deploy"}, stack_rolls_back=True).ok
    assert stack.update({**base, "PolicyName": "Deploy"}).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


# == failures and their undo, exactly ============================================================


def _remade_by_hand(iam: IAMClient, name: str = "Jets") -> None:
    """Someone deletes the group (emptying it first) and makes an empty one of the same name."""
    delete_by_hand(iam, name)
    iam.create_group(GroupName=name)


def test_a_group_remade_by_hand_while_a_create_fails_is_not_taken_for_the_one_it_made(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The Create's CreateGroup succeeds; before its next write, someone deletes that group and
    makes an empty one of the same name; the next write fails. The group the Create made is
    the one whose GroupId CreateGroup answered: the rollback Delete leaves the namesake alone.

    SPEC: Delete acts "only when the registry says this resource owns that group (same
    GroupId)".
    """
    strict.before_write("PutGroupPolicy", lambda: _remade_by_hand(iam))
    strict.inject("PutGroupPolicy", "ServiceFailure", times=10_000)
    stack = Stack(controller_sender(iam, registry))
    failed = stack.create({"Users": "alice"})  # FAILED, then the rollback Delete("Jets")
    assert not failed.ok
    assert failed.physical_id == "Jets"  # the group existed: the rollback must look at it
    namesake = snapshot(iam, "Jets")
    assert namesake is not None
    assert namesake["members"] == set()
    assert owner(registry) is None  # the rollback let go of the name


def test_a_create_delivered_again_after_a_crash_then_failing_leaves_its_group_to_the_rollback(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The Lambda runtime kills the Create after its CreateGroup; Lambda delivers the same event
    again, which finds the group (its own, from its write-ahead) and fails to add a member. Its
    answer names the group, and the rollback Delete removes it: no orphan."""
    send = controller_sender(iam, registry)
    created = event("Create", {"Users": "alice,bob"})
    dies_before(strict, "AddUserToGroup", lambda: send(created))
    assert snapshot(iam, "Jets") is not None
    strict.inject("AddUserToGroup", "ServiceFailure", times=10_000)
    failed = send(created)  # the same event, delivered again
    assert not failed.ok
    assert failed.physical_id == "Jets"
    strict.clear_faults()
    assert send(event("Delete", {"Users": "alice,bob"}, "Jets")).ok  # the rollback Delete
    assert snapshot(iam, "Jets") is None
    assert owner(registry) is None


def test_a_create_whose_create_group_answer_is_lost_at_the_deadline_still_owns_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """CreateGroup lands, but its answer is lost after the work's deadline passed, so it is
    not retried. The time kept for the undo is still there to look at the name: the group is
    recognised as made, so the rollback Delete removes it."""
    clock = FakeClock()
    strict.on_call = lambda action: clock.advance(3.0 if action == "CreateGroup" else 0.0)
    strict.lose_answer("CreateGroup", how="connection")
    config = ReconcileConfig(clock=clock, sleep=clock.advance)
    controller = Controller(iam, registry, config, Deadline(2.5, clock), Deadline(60.0, clock))
    props = {"Users": "alice"}
    failed = controller.handle(parse_request(event("Create", props), ENV))
    assert not failed.ok
    assert failed.physical_id == "Jets"
    strict.on_call = None
    strict.clear_faults()
    assert controller_sender(iam, registry)(event("Delete", props, "Jets")).ok
    assert snapshot(iam, "Jets") is None


def test_a_group_someone_else_made_while_a_create_ran_is_left_to_them(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """Between the Create's pre-flight (name free) and its CreateGroup, someone makes the group
    and adds dave: CreateGroup is refused. That group is not a CreateGroup of ours whose answer
    was lost: the Create answers a placeholder, and its rollback Delete leaves the group."""

    def someone_makes_it() -> None:
        iam.create_group(GroupName="Jets")
        iam.add_user_to_group(GroupName="Jets", UserName="dave")

    strict.before_write("CreateGroup", someone_makes_it)
    stack = Stack(controller_sender(iam, registry))
    failed = stack.create({"Users": "alice"})  # FAILED, then the rollback Delete
    assert not failed.ok
    assert failed.physical_id != "Jets"
    assert members(iam, "Jets") == {"dave"}
    assert owner(registry) is None


def test_a_failed_adoption_says_last_that_it_gave_the_group_back_and_keeps_nothing_of_it(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """An adoption fails half way; the group goes back exactly as found. However long the
    cause, the Reason ends by saying so, and the registry keeps nothing of the adoption: no
    group, no claim, no undo record."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    before = snapshot(iam, "Jets")
    fault = strict.inject("AddUserToGroup", "ServiceFailure", times=10_000)
    fault.message = "IAM is having a very bad day. " * 12  # longer than a Reason may be
    stack = Stack(controller_sender(iam, registry))
    failed = stack.create({"Users": "alice,bob", "AdoptExistingGroup": "true"})
    assert not failed.ok
    assert failed.reason.endswith(" (adopted group restored)")
    assert len(failed.reason) <= 256
    assert snapshot(iam, "Jets") == before
    record = registry.load(S1).record
    assert record.groups == {}
    assert record.last_update is None
    assert owner(registry) is None


def test_a_rename_whose_undo_fails_too_is_finished_by_the_rollback(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """A rename fails while filling the new group, and deleting the new group fails too. The
    record keeps the new group for CloudFormation's rollback Update, which removes it."""
    send = controller_sender(iam, registry)
    a = {"Users": "alice"}
    assert send(event("Create", a)).ok
    before = snapshot(iam, "Jets")
    renamed = {**a, "GroupName": "JetsNew"}
    strict.inject("AddUserToGroup", "ServiceFailure", times=10_000)
    strict.inject("DeleteGroup", "ServiceFailure", times=10_000)
    failed = send(event("Update", renamed, "Jets", a))
    assert not failed.ok
    assert "undoing its changes failed too" in failed.reason
    assert snapshot(iam, "JetsNew") is not None
    strict.clear_faults()
    assert send(event("Update", a, "Jets", renamed)).ok  # CloudFormation's rollback
    assert snapshot(iam, "JetsNew") is None
    assert snapshot(iam, "Jets") == before


def test_a_rename_that_failed_and_was_undone_can_be_deployed_again(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    """A rename fails and undoes itself; the stack rolls back. Once IAM is fine again, the same
    rename is deployed again: it is a new Update (not taken for a rollback), so the group is
    renamed."""
    a = {"Users": "alice"}
    assert stack.create(a).ok
    renamed = {**a, "GroupName": "JetsNew"}
    strict.inject("AddUserToGroup", "ServiceFailure", times=10_000)
    failed = stack.update(renamed)  # FAILED, then the rollback Update
    assert not failed.ok
    assert failed.reason.endswith(" (its changes were undone)")
    assert snapshot(iam, "JetsNew") is None
    strict.clear_faults()
    again = stack.update(renamed)  # then the cleanup Delete of "Jets"
    assert again.ok
    assert again.physical_id == "JetsNew"
    assert members(iam, "JetsNew") == {"alice"}
    assert snapshot(iam, "Jets") is None


def _adopted_then_made_exclusive(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A: Exclusive false, adopting a hand-made group (dave, an inline policy); B: the same made
    exclusive, with a managed policy (removing dave and the hand-made policy)."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    a = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(a).ok
    return a, {**a, "Exclusive": "true", "ManagedPolicyArns": world["p1"]}


def test_a_failed_update_rolled_back_then_deployed_again_is_still_rolled_back_exactly(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    """A (Exclusive false, adopted hand-made group) -> B (Exclusive true, a managed policy) fails
    at its last write and undoes itself; the stack rolls back. Fixed, B is deployed again, and
    this time another resource fails the deploy: the rollback of that B must put the foreign
    content back, as the rollback of any Update does."""
    _, b = _adopted_then_made_exclusive(iam, stack, world)
    before = snapshot(iam, "Jets")
    strict.inject("AttachGroupPolicy", "ServiceFailure", times=10_000)
    failed = stack.update(b)  # dave and Handmade removed, p1 refused: undone; then rolled back
    assert not failed.ok
    assert snapshot(iam, "Jets") == before
    strict.clear_faults()
    assert stack.update(b, stack_rolls_back=True).ok  # deployed again, then rolled back
    assert snapshot(iam, "Jets") == before


def test_a_rollback_that_failed_but_put_everything_back_is_continued_as_the_rollback(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    """A (Exclusive false, adopted hand-made group) -> B (Exclusive true, a managed policy)
    succeeds; another resource fails, and B's rollback Update fails once half way, then puts the
    rest back all the same. ContinueUpdateRollback re-sends it; later B is deployed again and
    rolled back again: that rollback still puts the foreign content back."""
    a, b = _adopted_then_made_exclusive(iam, stack, world)
    before = snapshot(iam, "Jets")
    send, physical = stack.send, stack.physical_id
    assert send(event("Update", b, physical, a)).ok
    strict.inject("PutGroupPolicy", "MalformedPolicyDocument")  # once, not retried
    assert not send(event("Update", a, physical, b)).ok  # CloudFormation's rollback
    assert snapshot(iam, "Jets") == before
    assert send(event("Update", a, physical, b)).ok  # ContinueUpdateRollback
    assert stack.update(b, stack_rolls_back=True).ok  # deployed again, then rolled back
    assert snapshot(iam, "Jets") == before


def test_a_member_a_failed_update_never_added_is_foreign_if_added_by_hand_later(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """Exclusive false. An Update adding carol fails at that very write (the stack deployed
    with rollback disabled: no rollback Update follows), so it changed nothing and says only
    why. An admin later adds carol by hand; deleting the stack removes only what the resource
    added, so carol and the group stay.

    SPEC: Exclusive false "only ever removes what it added itself".
    """
    send = controller_sender(iam, registry)
    a = {"Users": "alice", "Exclusive": "false"}
    assert send(event("Create", a)).ok
    b = {**a, "Users": "alice,carol"}
    fault = strict.inject("AddUserToGroup", "ServiceFailure", times=10_000)
    fault.message = "IAM could not add carol"
    failed = send(event("Update", b, "Jets", a))
    assert not failed.ok
    assert failed.reason.endswith("IAM could not add carol")  # nothing was undone: nothing said
    strict.clear_faults()
    iam.add_user_to_group(GroupName="Jets", UserName="carol")  # by hand
    assert send(event("Delete", b, "Jets")).ok  # the stack is deleted
    assert members(iam, "Jets") == {"carol"}


def test_a_rollback_refused_in_pre_flight_keeps_its_undo_record_for_the_retry(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """A (Exclusive false, adopted hand-made group) -> B (Exclusive true) removes carol and the
    hand-made policy. Meanwhile carol joins ten other groups, so the rollback Update, which must
    add her back, is refused in pre-flight (UPDATE_ROLLBACK_FAILED). The operator frees a slot
    and continues the rollback: it restores exactly, from B's undo record."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    a = {"Users": "alice,bob", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(a).ok
    before = snapshot(iam, "Jets")
    b = {"Users": "alice", "Exclusive": "true", "AdoptExistingGroup": "true"}
    assert stack.update(b).ok
    for i in range(10):
        iam.create_group(GroupName=f"Team{i}")
        iam.add_user_to_group(GroupName=f"Team{i}", UserName="carol")
    send, physical = stack.send, stack.physical_id
    refused = send(event("Update", a, physical, b))  # CloudFormation's rollback
    assert not refused.ok
    assert "carol" in refused.reason
    iam.remove_user_from_group(GroupName="Team0", UserName="carol")
    assert send(event("Update", a, physical, b)).ok  # ContinueUpdateRollback
    assert snapshot(iam, "Jets") == before


def test_the_rollback_of_an_update_refused_in_pre_flight_changes_nothing(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """A -> B adds carol; later carol's IAM user is deleted. The next Update (C) names a user
    that does not exist and is refused before any write. Its rollback Update (back to B) changes
    nothing and succeeds: it does not fail on carol, gone since B, which C did not cause."""
    a = {"Users": "alice"}
    b = {"Users": "alice,carol"}
    assert stack.create(a).ok
    assert stack.update(b).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="carol")
    iam.delete_user(UserName="carol")
    before = snapshot(iam, "Jets")
    refused = stack.update({"Users": "alice,nobody"})  # FAILED, then the rollback (must be ok)
    assert not refused.ok
    assert "nobody" in refused.reason
    assert snapshot(iam, "Jets") == before


def _legacy_group(iam: IAMClient, registry: DynamoDBRegistry) -> dict[str, Any]:
    """A group the previous version made (no registry record); its resource's properties."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="alice")
    return {"Users": "alice"}


def _group_remade_by_hand(iam: IAMClient, registry: DynamoDBRegistry) -> dict[str, Any]:
    """The resource's group, replaced by hand (another GroupId), which it then takes over."""
    props = {"Users": "alice"}
    assert controller_sender(iam, registry)(event("Create", props)).ok
    _remade_by_hand(iam)
    iam.add_user_to_group(GroupName="Jets", UserName="alice")
    return {**props, "AdoptExistingGroup": "true"}


@pytest.mark.parametrize("origin", [_legacy_group, _group_remade_by_hand])
def test_the_cleanup_delete_of_a_renamed_group_iam_briefly_shows_missing_still_removes_it(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str],
    origin: Any,
) -> None:  # fmt: skip
    """The resource's group came to it without a record of its own (made by the previous
    version, or taken over after it was replaced by hand); an Update renames it. IAM, eventually
    consistent, first answers the cleanup Delete's read of the old group NoSuchEntity: the
    group this resource has seen (its GroupId recorded) is read again, and removed."""
    send = controller_sender(iam, registry)
    props = origin(iam, registry)
    renamed = {**props, "GroupName": "JetsNew"}
    assert send(event("Update", renamed, "Jets", props)).physical_id == "JetsNew"
    strict.inject("GetGroup", "NoSuchEntity")
    assert send(event("Delete", props, "Jets")).ok  # CloudFormation's cleanup
    assert snapshot(iam, "Jets") is None
    assert members(iam, "JetsNew") == {"alice"}


def test_a_non_exclusive_takeover_by_a_rename_rolled_back_leaves_the_group_on_delete(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """The resource's group was replaced by hand (dave in it). An Update takes it over
    (AdoptExistingGroup, Exclusive false) and renames it; another resource fails the deploy, so
    the new group goes. The old group, taken over but owning nothing, is the resource's again,
    still non-exclusive: deleting the stack removes nothing of it."""
    assert stack.create({"Users": "alice"}).ok
    _remade_by_hand(iam)
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    before = snapshot(iam, "Jets")
    takeover = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    renamed = {**takeover, "GroupName": "JetsNew"}
    assert stack.update(renamed, stack_rolls_back=True).ok  # then Delete("JetsNew")
    assert snapshot(iam, "JetsNew") is None
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


def test_a_rolled_back_update_answers_the_group_and_leaves_it_watched_by_the_drift_check(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """After CloudFormation's rollback Update, Fn::GetAtt reads the rollback's answer: it carries
    the group's attributes. The resource is still the group's: the drift check watches it."""
    assert stack.create({"Users": "alice"}).ok
    group = snapshot(iam, "Jets")
    assert group is not None
    assert stack.update({"Users": "alice,bob"}, stack_rolls_back=True).ok
    kind, back = stack.log[-1]
    assert (kind, back.ok) == ("Update", True)
    assert back.data["GroupName"] == "Jets"
    assert back.data["GroupId"] == group["id"]
    assert back.data["Arn"].endswith(":group/Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")  # by hand, on an exclusive group
    drift = Controller(iam, registry).check_drift(S1, ENV)
    assert drift.group == "Jets"
    assert drift.drifted


def test_a_group_remade_by_hand_after_a_rollback_is_not_the_resource_s(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """After a rolled-back Update, someone replaces the group with one of the same name (another
    GroupId): deleting the stack leaves that group alone."""
    assert stack.create({"Users": "alice"}).ok
    assert stack.update({"Users": "alice,bob"}, stack_rolls_back=True).ok
    _remade_by_hand(iam)
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    namesake = snapshot(iam, "Jets")
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == namesake


def test_the_rollback_of_an_update_that_made_a_deleted_group_again_keeps_the_resource_on_it(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """The group is deleted by hand; the next Update makes it again, and the stack rolls back,
    which deletes it again (the state before that Update). The resource still stands for the
    group: the drift check reports it missing, to be made again."""
    assert stack.create({"Users": "alice"}).ok
    delete_by_hand(iam)
    assert stack.update({"Users": "alice,bob"}, stack_rolls_back=True).ok
    assert snapshot(iam, "Jets") is None
    drift = Controller(iam, registry).check_drift(S1, ENV)
    assert drift.group == "Jets"
    assert drift.drifted


def test_a_rollback_returns_the_record_to_the_declaration_it_restores(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """A (Exclusive false; dave added by hand) -> B (Exclusive true, another policy document) is
    rolled back. What the registry enforces from then on is A again: its policy document (the
    drift check finds nothing to correct) and its non-exclusivity (deleting the stack keeps
    dave and his group)."""
    a = {"Users": "alice", "Exclusive": "false"}
    assert stack.create(a).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    b = {**a, "Exclusive": "true", "Services": "s3,lambda"}
    assert stack.update(b, stack_rolls_back=True).ok
    assert members(iam, "Jets") == {"alice", "dave"}
    assert not Controller(iam, registry).check_drift(S1, ENV).drifted
    assert stack.delete().ok
    assert members(iam, "Jets") == {"dave"}


def test_a_rolled_back_takeover_gives_the_group_back_and_the_resource_keeps_its_physical_id(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """S2 adopted S1's group. S1's next Update takes it over again (AdoptExistingGroup) and the
    stack rolls back: the claim goes back to S2 and S1 owns no group, but S1 still answers to
    the physical id its rollback answered (the registry's current group)."""
    assert stack.create({"Users": "alice"}).ok
    other = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert other.create({"Users": "alice,bob", "AdoptExistingGroup": "true"}).ok
    taken = {"Users": "alice,carol", "AdoptExistingGroup": "true"}
    assert stack.update(taken, stack_rolls_back=True).ok
    assert owner(registry) == ResourceKey(OTHER_STACK, "JetsDeployGroup")
    record = registry.load(S1).record
    assert record.groups == {}
    assert record.current == "Jets"


def test_an_update_that_failed_before_writing_leaves_an_adopted_group_only_adopted(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A deploy adopted the hand-made group. The next Update fails before writing anything (the
    registry refuses its write-ahead); CloudFormation's rollback Update, back to the adopting
    declaration, is then an ordinary Update changing nothing. The group is still only adopted:
    deleting the stack gives it back as it was found."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    before = snapshot(iam, "Jets")
    a = {"Users": "alice", "AdoptExistingGroup": "true"}
    assert stack.create(a).ok
    _fail_save(registry, monkeypatch, nth=1)  # the Update's write-ahead
    assert not stack.update({**a, "Users": "alice,carol"}).ok  # then the rollback Update
    monkeypatch.undo()
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


def test_the_drift_check_leaves_a_group_taken_over_by_a_rename_rolled_back_as_it_is(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """After the takeover by a rename is rolled back (the new group deleted), the old group's
    record carries the rename's declaration, which the stack never kept. The scheduled check,
    even correcting, must neither fail on it (it did, at every run) nor enforce it (granting bob
    what a rolled-back deploy declared, removing dave from a group someone else made): it says
    so and leaves the group to the next deploy."""
    assert stack.create({"Users": "alice"}).ok
    _remade_by_hand(iam)
    for user in ("alice", "dave"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    takeover = {"Users": "alice,bob", "AdoptExistingGroup": "true", "DriftAction": "correct"}
    assert stack.update({**takeover, "GroupName": "JetsNew"}, stack_rolls_back=True).ok
    before = snapshot(iam, "Jets")
    drift = Controller(iam, registry).check_drift(S1, ENV, correct=True)
    assert drift.group == "Jets"
    assert drift.drifted
    assert not drift.plan
    assert drift.corrected == 0
    assert "JetsNew" in drift.note
    assert snapshot(iam, "Jets") == before
    assert snapshot(iam, "JetsNew") is None


def test_a_failed_request_logs_its_reason_with_a_traceback_only_when_unexpected(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator searches the logs for failed requests: each logs one warning with the reason
    CloudFormation shows. A refusal the code expects (bad input) needs no traceback; anything
    else (a bug, an unwrapped library error) carries one, or nobody can find where it came from."""
    send = controller_sender(iam, registry)
    with caplog.at_level(logging.WARNING, logger="jets_deploy_iam.reconcile"):
        refused = send(event("Create", {"Users": "alice,nobody"}))
    assert not refused.ok
    [expected] = [r for r in caplog.records if r.getMessage().startswith("request failed")]
    assert expected.levelno == logging.WARNING
    assert refused.reason in expected.getMessage()
    assert "Traceback" not in caplog.text

    caplog.clear()
    change = registry.change
    calls: list[object] = []

    def breaks_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("a bug in the registry edit")
        return change(*args, **kwargs)

    monkeypatch.setattr(registry, "change", breaks_once)
    with caplog.at_level(logging.WARNING, logger="jets_deploy_iam.reconcile"):
        failed = send(event("Create", {"Users": "alice"}))
    assert not failed.ok
    [unexpected] = [r for r in caplog.records if r.getMessage().startswith("request failed")]
    assert "a bug in the registry edit" in unexpected.getMessage()
    assert "Traceback" in caplog.text  # (as logging or the redacting filter formats it)
    assert "RuntimeError: a bug in the registry edit" in caplog.text


# == what a Delete answers and logs =============================================================


def delete_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The Delete's searchable lines: each names the group it is about."""
    return [r for r in caplog.records if getattr(r, "group", None) == "Jets"]


def test_a_delete_that_keeps_the_group_answers_its_id_and_logs_why(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exclusive false: dave was added by hand. The stack's Delete removes what it granted and
    keeps the group with dave. CloudFormation is answered for the id it sent; the operator who
    wonders why "Jets" still exists finds one line, with the group's name as a field, saying
    it was kept for foreign content."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "Exclusive": "false"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        deleted = stack.delete()
    assert deleted.ok, deleted.reason
    assert deleted.physical_id == "Jets"
    assert members(iam, "Jets") == {"dave"}
    assert any("kept" in r.getMessage() for r in delete_lines(caplog))


def test_a_delete_of_a_group_another_stack_owns_logs_that_it_left_it(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S2's group was deleted by hand and S1 made and claimed a new "Jets". S2's stack is
    deleted: it answers SUCCESS for its id, leaves S1's group, and says so in a line that names
    the group."""
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "bob"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    before = snapshot(iam, "Jets")
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        deleted = s2.delete()
    assert deleted.ok, deleted.reason
    assert deleted.physical_id == "Jets"
    assert snapshot(iam, "Jets") == before
    assert any("untouched" in r.getMessage() for r in delete_lines(caplog))


def test_a_delete_that_hands_an_adopted_group_back_logs_it(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stack adopted the hand-made "Jets" (dave) and is deleted before any Update: the
    group goes back as found, and the line that names the group says it was handed back (not
    deleted, not kept for foreign content)."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    found = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "AdoptExistingGroup": "true"}).ok
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        assert stack.delete().ok
    assert snapshot(iam, "Jets") == found
    assert any("handed back" in r.getMessage() for r in delete_lines(caplog))


def test_a_delete_that_keeps_losing_to_new_members_fails_naming_the_conflict_then_finishes(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """While the stack's Delete empties "Jets", an automation keeps adding a user just before
    each DeleteGroup: IAM answers DeleteConflict every time. The Delete reads again and retries
    a bounded number of times, then fails with IAM's code and what to do (deploy again), never
    looping until Lambda kills it. CloudFormation's retry of the deletion then deletes the
    group."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice"}).ok
    joiners = ["eve", "frank", "grace", "heidi"]
    for user in joiners:
        iam.create_user(UserName=user)

    def someone_joins() -> None:  # before every DeleteGroup, for as long as there are users
        iam.add_user_to_group(GroupName="Jets", UserName=joiners.pop(0))
        if joiners:
            strict.before_write("DeleteGroup", someone_joins)

    strict.before_write("DeleteGroup", someone_joins)
    failed = stack.delete()
    assert not failed.ok
    assert "DeleteConflict" in failed.reason
    assert "deploy again" in failed.reason
    assert strict.actions().count("DeleteGroup") == 3
    retried = stack.delete()
    assert retried.ok, retried.reason
    assert snapshot(iam, "Jets") is None


def test_a_delete_whose_outcome_cannot_be_recorded_still_answers_and_logs_an_error(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    config: ReconcileConfig,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group was deleted by hand; the stack's Delete has nothing to write to IAM, but the
    registry is unavailable when it records the outcome. The resource is gone either way: the
    Delete answers SUCCESS (a FAILED would strand the stack in DELETE_FAILED for a bookkeeping
    write), and an ERROR line with the traceback tells the operator the record is stale."""
    stack = Stack(controller_sender(iam, registry, config))  # (no real sleep: IAM's waits)
    assert stack.create({"Users": "alice"}).ok
    delete_by_hand(iam)
    load = registry.load

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RegistryError("DynamoDB is unavailable")

    monkeypatch.setattr(registry, "load", load)
    monkeypatch.setattr(registry, "change", unavailable)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        deleted = stack.delete()
    assert deleted.ok, deleted.reason
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "registry" in error.getMessage()
    assert "Traceback" in caplog.text  # (as logging or the redacting filter formats it)
    assert "RegistryError: DynamoDB is unavailable" in caplog.text


# == Creates and adoptions against races, deaths and what they found ============================


def test_a_create_racing_another_stacks_create_of_the_name_leaves_it_the_winners(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two stacks declare "Jets" at once: S2's Create lands (group and claim) between S1's
    read of IAM and the registry and S1's write-ahead.

    README (registry): two stacks creating one group at once cannot both claim it. S1 is no
    adoption: it must not take S2's claim, nor write to S2's group."""
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)

    def the_other_create_lands_first(write: int) -> None:
        if write == 1:
            assert s2.create({"Users": "bob"}).ok

    before_registry_change(registry, monkeypatch, the_other_create_lands_first)
    raced = Stack(controller_sender(iam, registry)).create({"Users": "alice"})
    assert not raced.ok
    assert owner(registry) == S2
    assert members(iam, "Jets") == {"bob"}


def test_a_create_delivered_again_after_another_stack_adopted_its_group_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """S1's Create dies after CreateGroup (before alice is added). Before Lambda delivers it
    again, S2 adopts the empty "Jets" (AdoptExistingGroup true, bob).

    The group is S2's now: the retried Create of S1 is its own half-work no more, and must be
    refused like any Create of an existing group, leaving S2's group and claim alone."""
    s1_create = event("Create", {"Users": "alice"})
    dies_before(strict, "AddUserToGroup", lambda: controller_sender(iam, registry)(s1_create))
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert s2.create({"Users": "bob", "AdoptExistingGroup": "true"}).ok

    again = controller_sender(iam, registry)(s1_create)
    assert not again.ok
    assert "AdoptExistingGroup" in again.reason
    assert members(iam, "Jets") == {"bob"}
    assert owner(registry) == S2


def test_an_adoption_finished_by_a_second_delivery_still_gives_the_claim_back_on_rollback(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). S2's Create adopts it (AdoptExistingGroup true, Users bob) and
    its first invocation dies after the write-ahead; Lambda delivers it again and it finishes.
    Another resource of S2's stack then fails: CloudFormation deletes S2's resource.

    README (registry): an adoption that is undone gives the claim back to the resource it took
    it from. The second delivery resumes the adoption; it must still know whom the claim came
    from, so S1 owns its group again and can deploy."""
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    adopt = event("Create", {"Users": "bob", "AdoptExistingGroup": "true"}, stack=OTHER_STACK)
    dies_before(strict, "AddUserToGroup", lambda: controller_sender(iam, registry)(adopt))
    adopted = controller_sender(iam, registry)(adopt)
    assert adopted.ok, adopted.reason
    rollback = event(
        "Delete", {"Users": "bob", "AdoptExistingGroup": "true"}, "Jets", stack=OTHER_STACK
    )
    assert controller_sender(iam, registry)(rollback).ok
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1
    updated = s1.update({"Users": "alice,carol"})
    assert updated.ok, updated.reason


def test_a_non_exclusive_adoption_that_replaced_a_handmade_policy_restores_it_on_delete(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The hand-made "Jets" has dave and its own inline policy named JetsPolicy. The stack
    adopts it non-exclusively (Exclusive false): its JetsPolicy replaces the hand-made one.
    A later deploy (add carol) makes the group the stack's own; then the stack is deleted.

    README: a non-exclusive resource removes only what it granted and leaves foreign content;
    an inline policy it overwrote is foreign content: the Delete puts the hand-made document
    back (dave keeps what he had), it does not delete it."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )
    found = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    assert snapshot(iam, "Jets") != found
    assert stack.update({**props, "Users": "alice,carol"}).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == found


def test_a_group_path_containing_the_arn_separator_answers_the_groups_real_arn(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """IAM paths may hold any printable ASCII, ":group/" included. The Arn the resource
    answers (Fn::GetAtt, imported by other stacks for policies) must be the group's, as IAM
    reports it, for a Create and for a move to another path."""
    stack = Stack(controller_sender(iam, registry))
    created = stack.create({"Users": "alice", "GroupPath": "/ops:group/deploy/"})
    assert created.ok, created.reason
    assert created.data["Arn"] == iam.get_group(GroupName="Jets")["Group"]["Arn"]
    moved = stack.update({"Users": "alice", "GroupPath": "/x:group/y:group/"})
    assert moved.ok, moved.reason
    assert moved.data["Arn"] == iam.get_group(GroupName="Jets")["Group"]["Arn"]


def test_a_rollback_that_cannot_put_back_a_deleted_user_says_which_in_a_warning(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An Update removes carol; IAM user carol is deleted right after; another resource fails
    and CloudFormation's rollback Update would add carol back. It cannot (the user is gone): the
    rollback succeeds without her, and a warning lists what was skipped, so the operator knows
    the group is not exactly as before and why."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice,carol"}).ok
    send = controller_sender(iam, registry)
    forward = event("Update", {"Users": "alice"}, "Jets", {"Users": "alice,carol"})
    assert send(forward).ok
    iam.delete_user(UserName="carol")
    back = event("Update", {"Users": "alice,carol"}, "Jets", {"Users": "alice"})
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        rolled_back = send(back)
    assert rolled_back.ok, rolled_back.reason
    assert members(iam, "Jets") == {"alice"}
    [warning] = [r for r in caplog.records if getattr(r, "skipped", None)]
    assert warning.levelno == logging.WARNING
    assert "cannot be put back" in warning.getMessage()
    assert any("carol" in skipped for skipped in warning.skipped)  # type: ignore[attr-defined]


# == the next Update after a dropped cleanup, an adoption's Update undone, a foreign id =========


def test_the_next_update_deletes_the_old_group_a_dropped_cleanup_left_and_logs_it(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rename Jets -> JetsNew succeeds; its cleanup Delete("Jets") fails three times (the
    registry unreachable) and CloudFormation drops it: the old group keeps alice's rights. The
    next deploy (add bob to JetsNew) deletes the old group whole, and a warning naming it (as
    the group field) tells the operator why a group vanished during an Update."""
    send = controller_sender(iam, registry)
    old = {"Users": "alice"}
    assert send(event("Create", old)).ok
    renamed = {"Users": "alice", "GroupName": "JetsNew"}
    assert send(event("Update", renamed, "Jets", old)).ok
    read = registry._read

    def unreachable(*_args: Any) -> Any:
        raise RegistryError("the registry table cannot be read: throttled")

    monkeypatch.setattr(registry, "_read", unreachable)
    for _attempt in range(3):
        assert not send(event("Delete", old, "Jets")).ok
    monkeypatch.setattr(registry, "_read", read)
    assert members(iam, "Jets") == {"alice"}

    grown = {**renamed, "Users": "alice,bob"}
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        assert send(event("Update", grown, "JetsNew", renamed)).ok
    assert snapshot(iam, "Jets") is None
    assert members(iam, "JetsNew") == {"alice", "bob"}
    [swept] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert getattr(swept, "group", None) == "Jets"
    assert "rename" in swept.getMessage()


def test_an_adopters_update_that_failed_before_writing_and_was_rolled_back_still_hands_back(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S1 owns "Jets" (alice). S2 adopts it (Create, AdoptExistingGroup true, bob). S2's next
    deploy (bob, carol) fails before any write (the registry refuses its write-ahead), and
    CloudFormation's rollback Update brings S2 back to the adoption's declaration. Then S2's
    stack is deleted.

    README: only a successful Update makes the group the adopter's own; a Delete before that
    hands the group back as found, and the claim to the resource it was taken from. The
    rolled-back Update made nothing S2's own: S1 must own its group again, as it was."""
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    adoption = {"Users": "bob", "AdoptExistingGroup": "true"}
    assert s2.create(adoption).ok

    def refused_once(write: int) -> None:
        if write == 1:
            raise RegistryError("ProvisionedThroughputExceeded")

    before_registry_change(registry, monkeypatch, refused_once)
    assert not s2.update({**adoption, "Users": "bob,carol"}).ok  # then its rollback Update
    assert s2.delete().ok
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1
    assert s1.update({"Users": "alice,carol"}).ok


def test_an_adopters_own_update_ends_the_previous_owners_claim_for_good(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). S2 adopts it non-exclusively (bob) and deploys again (bob,
    carol): the group is S2's own now. S2's stack is then deleted: alice is foreign to S2, so
    the group is kept with her.

    README: an adoption takes the claim over, which ends the previous owner's rights; only an
    adoption that fails, is handed back or is undone gives it back. S2's adoption was none of
    those: the kept group is not S1's again (S1's next deploy is refused, and S1 must adopt
    it to manage it again)."""
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    adoption = {"Users": "bob", "AdoptExistingGroup": "true", "Exclusive": "false"}
    assert s2.create(adoption).ok
    assert s2.update({**adoption, "Users": "bob,carol"}).ok
    assert s2.delete().ok
    assert members(iam, "Jets") == {"alice"}
    assert owner(registry) != S1
    refused = s1.update({"Users": "alice,dave"})
    assert not refused.ok
    assert members(iam, "Jets") == {"alice"}


def test_an_update_sent_with_another_providers_physical_id_is_refused_naming_it(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """A template switches an existing custom resource's ServiceToken to this function: the
    first request it gets is an Update carrying the previous provider's PhysicalResourceId,
    which names no IAM group. It is refused, the reason quoting the id, and IAM is left alone
    (no group made from the properties)."""
    foreign = "2026/11/29/[$LATEST]0a1b2c3d"
    answer = controller_sender(iam, registry)(
        event("Update", {"Users": "alice"}, foreign, {"Users": "alice"})
    )
    assert not answer.ok
    assert foreign in answer.reason
    assert snapshot(iam, "Jets") is None


def test_an_update_delivered_again_after_its_group_was_replaced_by_hand_leaves_the_namesake(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """S1's Update (add bob, carol) dies after its first write. Before Lambda delivers it
    again, an operator deletes "Jets" in the console and makes a new one with dave.

    The write-ahead recorded which group the Update was changing (its GroupId): the retry
    must recognise the namesake as another group and refuse, not apply S1's declaration to it
    (adding alice, bob and carol, and removing dave)."""
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    update = event("Update", {"Users": "alice,bob,carol"}, "Jets", {"Users": "alice"})
    dies_before(strict, "AddUserToGroup", lambda: controller_sender(iam, registry)(update))
    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")

    again = controller_sender(iam, registry)(update)
    assert not again.ok
    assert members(iam, "Jets") == {"dave"}


# == the configuration reaches every IAM call; answers carry what templates read ================


def test_the_configured_page_size_reaches_every_paged_read_of_a_request(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    strict: StrictIam,
    sleeper: Any,
    world: dict[str, str],
) -> None:
    """``ReconcileConfig.page_size`` (MaxItems) is how an operator or a test makes paging
    visible: a read that ignores it pages at IAM's 1,000 and hides paging bugs. An adoption
    reads the group and checks its users (pre-flight); a rollback checks which users still
    exist: every paged read carries the configured MaxItems."""
    config = ReconcileConfig(sleep=sleeper, clock=sleeper.now, page_size=2)
    send = controller_sender(iam, registry, config)
    iam.create_group(GroupName="Jets")
    for user in ("alice", "bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    adoption = {"Users": "alice,bob,carol,dave", "AdoptExistingGroup": "true"}
    assert send(event("Create", adoption)).ok
    update = {**adoption, "Users": "alice"}
    assert send(event("Update", update, "Jets", adoption)).ok
    assert send(event("Update", adoption, "Jets", update)).ok  # the rollback, served exactly
    paged = [c for c in strict.calls if "MaxItems" in c.params]
    assert {c.action for c in paged} >= {"GetGroup", "GetAccountAuthorizationDetails"}
    assert {int(c.params["MaxItems"]) for c in paged} == {2}


def test_iams_eventual_consistency_is_waited_out_on_the_configured_clock(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    strict: StrictIam,
    sleeper: Any,
    world: dict[str, str],
) -> None:
    """IAM answers NoSuchEntity for a group created a moment ago: the applier waits and
    retries. It must wait with the configured ``sleep`` (virtual time in tests; in Lambda, a
    clock the deadline bounds), not a default configuration's real clock."""
    config = ReconcileConfig(sleep=sleeper, clock=sleeper.now)
    stack = Stack(controller_sender(iam, registry, config))
    strict.inject("AddUserToGroup", "NoSuchEntity", times=2)
    assert stack.create({"Users": "alice"}).ok
    assert members(iam, "Jets") == {"alice"}
    assert len([s for s in sleeper.slept if s > 0]) >= 2


def test_a_create_answers_the_policy_name_templates_read(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Fn::GetAtt reads the answer's Data by name: Arn, GroupId and PolicyName (a consumer
    stack's policy references the inline policy it must not overwrite)."""
    stack = Stack(controller_sender(iam, registry))
    created = stack.create({"Users": "alice", "PolicyName": "DeployPolicy"})
    assert created.ok, created.reason
    assert created.data["PolicyName"] == "DeployPolicy"
    assert created.data["GroupId"] == iam.get_group(GroupName="Jets")["Group"]["GroupId"]


def test_a_failed_rename_answers_the_old_physical_id_even_late(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """A rename Jets -> JetsNew fails after CreateGroup (IAM refuses adding bob): it is undone
    and answered FAILED. The answer carries the id CloudFormation sent ("Jets"): the stack
    still has that resource, and CloudFormation's rollback Update goes to it. The id a late
    answer would carry (the handler's timeout answer, told through ``on_physical_id``) stays
    "Jets" too: only a Create's CreateGroup changes it (so that its rollback Delete finds the
    group)."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice,bob"}).ok
    before = snapshot(iam, "Jets")
    told: list[str] = []
    hooks = Hooks(on_physical_id=told.append)
    strict.inject("AddUserToGroup", "AccessDenied", skip=1)
    rename = event(
        "Update", {"Users": "alice,bob", "GroupName": "JetsNew"}, "Jets", {"Users": "alice,bob"}
    )
    failed = Controller(iam, registry, hooks=hooks).handle(parse_request(rename, ENV))
    assert not failed.ok
    assert failed.physical_id == "Jets"
    assert set(told) == {"Jets"}
    assert snapshot(iam, "JetsNew") is None
    assert snapshot(iam, "Jets") == before


def test_an_update_whose_outcome_cannot_be_recorded_answers_and_logs_an_error(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An Update's IAM writes are done when the registry fails to record the outcome: the
    answer stands (IAM changed; a FAILED would trigger a rollback of changes the record still
    describes as under way), and an ERROR line with the traceback tells the operator."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice"}).ok

    def fails_after_the_write_ahead(write: int) -> None:
        if write > 1:
            raise RegistryError("DynamoDB is unavailable")

    before_registry_change(registry, monkeypatch, fails_after_the_write_ahead)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        updated = stack.update({"Users": "alice,bob"})
    assert updated.ok, updated.reason
    assert members(iam, "Jets") == {"alice", "bob"}
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "registry" in error.getMessage()
    assert "RegistryError: DynamoDB is unavailable" in caplog.text


def test_a_member_revoked_and_later_added_by_hand_is_foreign_to_a_non_exclusive_resource(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Exclusive false: the stack grants alice and bob, then revokes bob. Later someone adds
    bob back by hand. The stack's next deploy (add carol) must leave bob: he is foreign
    content now; the record must not remember him as granted by the stack."""
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "alice,bob", "Exclusive": "false"}
    assert stack.create(props).ok
    assert stack.update({**props, "Users": "alice"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    assert stack.update({**props, "Users": "alice,carol"}).ok
    assert members(iam, "Jets") == {"alice", "bob", "carol"}


def batch_gets(registry: DynamoDBRegistry) -> list[str]:
    """The registry's reads from now on, as DynamoDB bills them: one entry per BatchGetItem."""
    reads: list[str] = []
    registry.client.meta.events.register(
        "before-call.dynamodb.BatchGetItem", lambda model, **_kw: reads.append(model.name)
    )
    return reads


def corrections_get_in_first(
    registry: DynamoDBRegistry, monkeypatch: pytest.MonkeyPatch, times: int
) -> None:
    """The scheduled drift check takes the record between a request's read and its
    write-ahead, ``times`` times in a row."""

    def a_correction_got_in(write: int) -> None:
        if write <= times:
            raise CorrectionUnderWayError("a drift correction holds the record")

    before_registry_change(registry, monkeypatch, a_correction_got_in)


def test_a_request_decides_again_each_time_a_drift_correction_got_in_first(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each time, the Update has written nothing: it decides again from what the correction
    left, up to CORRECTION_RESTARTS times, and then applies."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice"}).ok
    corrections_get_in_first(registry, monkeypatch, CORRECTION_RESTARTS)
    answer = controller_sender(iam, registry)(
        event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"})
    )
    assert answer.ok, answer.reason
    assert members(iam, "Jets") == {"alice", "bob"}


def test_a_request_gives_up_when_drift_corrections_keep_getting_in_first(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One correction more than the bound: the Update fails asking for another deploy rather
    than keep the stack waiting, and has written nothing."""
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice"}).ok
    corrections_get_in_first(registry, monkeypatch, CORRECTION_RESTARTS + 1)
    answer = controller_sender(iam, registry)(
        event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"})
    )
    assert not answer.ok
    assert "deploy again" in answer.reason
    assert members(iam, "Jets") == {"alice"}


def test_a_create_of_the_default_name_while_another_stack_creates_it_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """Neither template sets GroupName (both mean the default "Jets"). S2's Create has claimed
    the name and is still under way (its invocation killed here before CreateGroup, its
    request unanswered) when S1's Create comes.

    The claim of the default name is read like any declared name's: S1 is refused, naming the
    resource that is creating the group, and S2, delivered again, creates it as its own."""
    s2_create = event("Create", {"Users": "bob"}, stack=OTHER_STACK)
    dies_before(strict, "CreateGroup", lambda: controller_sender(iam, registry)(s2_create))

    refused = Stack(controller_sender(iam, registry)).create({"Users": "alice"})
    assert not refused.ok
    assert f"of stack {S2.stack_name}" in refused.reason
    assert snapshot(iam, "Jets") is None

    again = controller_sender(iam, registry)(s2_create)
    assert again.ok, again.reason
    assert members(iam, "Jets") == {"bob"}
    assert owner(registry) == S2


def test_a_record_read_on_the_requests_behalf_is_not_read_again(
    iam: IAMClient, world: dict[str, str]
) -> None:
    """The continuation gate reads the record (to find a request going on) and hands it to
    ``handle``: the README's cost, one registry read a request, holds only if ``handle`` uses
    what it is given instead of reading again."""
    from jets_deploy_iam.registry.store import MemoryRegistry

    registry = MemoryRegistry()
    assert controller_sender(iam, registry)(event("Create", {"Users": "alice"})).ok
    registry.reads = registry.writes = 0
    request = parse_request(
        event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"}), ENV
    )
    controller = Controller(iam, registry)
    stored = controller.load(request)
    assert controller.handle(request, stored).ok
    assert (registry.reads, registry.writes) == (1, 2)
    assert members(iam, "Jets") == {"alice", "bob"}


def test_an_adoptions_first_update_that_changes_no_iam_rolled_back_still_hands_back(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The stack adopts the hand-made "Jets" (bob, p1), declaring exactly bob and p1. Its next
    deploy changes only DriftAction, which writes nothing to IAM, and another resource fails:
    CloudFormation's rollback Update follows. Then the stack is deleted.

    The Update that would have made the group the stack's own was rolled back, even though it
    wrote nothing: its rollback must be recognised as one (the Update is remembered without a
    write-ahead), and the stack's Delete hands the group back as found."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    found = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "bob", "ManagedPolicyArns": world["p1"], "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    assert stack.update({**props, "DriftAction": "report"}, stack_rolls_back=True).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == found


# == a legacy Update that failed on an IAM read, then CloudFormation's rollback ==================


def test_the_rollback_of_a_legacy_update_that_failed_on_a_read_leaves_foreign_members(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """A group the previous version made (alice, JetsPolicy), Exclusive false; dave was added
    by hand. The first deploy after the upgrade (grant dave) fails on IAM's read of the group
    (AccessDenied), before any write; CloudFormation's rollback Update follows.

    SPEC: after a failed Update the rollback leaves everything as it was; a non-exclusive
    resource never touches foreign content. Found (by a review session): the failure recorded
    no undo record, so the rollback was served as an ordinary legacy Update whose ownership
    came from the failed Update's properties (it "owned" dave) and removed dave."""
    legacy_group(iam)
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    before = snapshot(iam, "Jets")
    old = {"Users": "alice", "Exclusive": "false"}
    stack = Stack(controller_sender(iam, registry), physical_id="Jets", props=old)
    strict.inject("GetGroup", "AccessDenied")
    assert not stack.update({"Users": "alice,dave", "Exclusive": "false"}).ok  # and its rollback
    assert snapshot(iam, "Jets") == before


def test_a_legacy_update_that_failed_on_a_read_never_skips_a_later_revocation(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The legacy group grants alice and bob (Exclusive false). The deploy revoking bob fails
    on IAM's read and is rolled back; the operator deploys it again.

    SPEC: a later revocation must never be silently skipped. Found: the rollback recorded the
    ownership of the failed Update's properties (alice only), so the next deploy thought bob
    foreign and left him his deploy rights."""
    legacy_group(iam)
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    old = {"Users": "alice,bob", "Exclusive": "false"}
    stack = Stack(controller_sender(iam, registry), physical_id="Jets", props=old)
    strict.inject("GetGroup", "AccessDenied")
    revoke = {"Users": "alice", "Exclusive": "false"}
    assert not stack.update(revoke).ok
    assert stack.update(revoke).ok
    assert members(iam, "Jets") == {"alice"}


def test_a_late_duplicate_of_a_refused_legacy_update_never_revives_the_legacy_rule(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Lambda delivers the refused first Update twice; the duplicate read the registry before
    the first delivery answered, and commits only after the stack's rollback and its Delete
    were served (the group deleted). Later someone makes a new "Jets" by hand (dave), and
    CloudFormation's deletion is retried (its answer was lost).

    The resource is gone: its legacy rule must not come back with the duplicate's late commit
    (found by a review session: the commit re-applied after its lost race set the flag from
    the record it had read) and delete the hand-made group."""
    legacy_group(iam)
    send = controller_sender(iam, registry)
    refused = event("Update", {"Users": "alice,ghost"}, "Jets", {"Users": "alice"})
    early = registry.load(S1, ["Jets"])  # the duplicate delivery's read
    assert not send(refused).ok
    assert send(event("Update", {"Users": "alice"}, "Jets", {"Users": "alice,ghost"})).ok
    assert send(event("Delete", {"Users": "alice"}, "Jets")).ok
    assert snapshot(iam, "Jets") is None
    Controller(iam, registry).handle(parse_request(refused, ENV), stored=early)
    a_retried_delete_leaves_a_namesake_made_since(iam, send)


# == waiting for a drift correction's hold; repeated deliveries; restarts, as logged =============


def test_a_request_waits_out_a_corrections_hold_to_the_second_then_serves(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scheduled drift check holds S1's record for 2.5 s more (it is correcting the group)
    when S1's deploy arrives. The deploy polls the record every HOLD_POLL_SECONDS (2 s) at
    most, never past the hold's end (the last pause is the 0.5 s left, not another 2 s), logs
    that it waits, and once the hold has passed serves the Update from the record and claims
    it reads again, each time in one registry read, as the first."""
    from jets_deploy_iam.reconcile import HOLD_POLL_SECONDS
    from jets_deploy_iam.registry.model import CORRECTION_PREFIX

    assert Stack(controller_sender(iam, registry)).create({"Users": "alice"}).ok
    now = [1.7e9]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    stored = registry.load(S1)
    held = replace(stored.record, in_progress=CORRECTION_PREFIX + "x", held_until=now[0] + 2.5)
    registry._write(held, stored.version, [])
    config = ReconcileConfig(sleep=sleep, now=lambda: now[0])
    update = event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"})
    reads = batch_gets(registry)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        answer = controller_sender(iam, registry, config)(update)
    assert answer.ok, answer.reason
    assert members(iam, "Jets") == {"alice", "bob"}
    assert slept == [HOLD_POLL_SECONDS, 0.5]
    assert len(reads) == 3  # the record with its claims: once, then once after each pause
    waits = [r for r in caplog.records if "waiting for a drift correction" in r.getMessage()]
    assert len(waits) == 2


def test_a_repeated_delivery_is_answered_as_before_and_logged_with_its_status(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lambda delivers the same Create twice (an asynchronous retry). The second is answered
    from the record, writing nothing, and one line says so with the answer's status, so an
    operator who sees two invocations for one RequestId knows why the second did nothing."""
    send = controller_sender(iam, registry)
    create = event("Create", {"Users": "alice"})
    first = send(create)
    assert first.ok
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        again = send(create)
    assert again == first
    [repeated] = [r for r in caplog.records if getattr(r, "status", None) == "SUCCESS"]
    assert "repeated delivery" in repeated.getMessage()


def test_each_restart_after_a_drift_correction_got_in_first_is_logged(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each time the Update decides again because a correction took the record first, one
    line says so: the log explains why a deploy read IAM several times."""
    assert Stack(controller_sender(iam, registry)).create({"Users": "alice"}).ok
    corrections_get_in_first(registry, monkeypatch, 2)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.reconcile"):
        answer = controller_sender(iam, registry)(
            event("Update", {"Users": "alice,bob"}, "Jets", {"Users": "alice"})
        )
    assert answer.ok, answer.reason
    restarts = [r for r in caplog.records if "drift correction took" in r.getMessage()]
    assert len(restarts) == 2


def test_a_rename_costs_two_registry_reads_and_a_named_create_sees_a_pending_claim(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """README's cost table: a rename to a name no resource claims costs 2 registry reads (the
    record with the claims of both names, then the new name's claims again just before
    deciding, with those of the groups the record holds in the same call); its cleanup Delete
    2 (the record holds a group the Delete does not name). And the claim of a declared
    GroupName is read with the record: S2's Create of "JetsStaging", still under way, makes
    S1's Create of the same name refused."""
    reads = batch_gets(registry)
    send = controller_sender(iam, registry)
    assert send(event("Create", {"Users": "alice"})).ok
    reads.clear()
    renamed = {"Users": "alice", "GroupName": "JetsNew"}
    assert send(event("Update", renamed, "Jets", {"Users": "alice"})).ok
    assert len(reads) == 2
    reads.clear()
    assert send(event("Delete", {"Users": "alice"}, "Jets")).ok  # the cleanup of the old name
    assert len(reads) == 2  # the record holds JetsNew too: its claim is read after the record

    s2_create = event("Create", {"Users": "bob", "GroupName": "JetsStaging"}, stack=OTHER_STACK)
    dies_before(strict, "CreateGroup", lambda: controller_sender(iam, registry)(s2_create))
    s1 = Stack(controller_sender(iam, registry), logical_id="Staging")
    refused = s1.create({"Users": "alice", "GroupName": "JetsStaging"})
    assert not refused.ok
    assert f"of stack {S2.stack_name}" in refused.reason


def test_a_delete_whose_properties_are_not_an_object_still_deletes_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """A Delete event whose ResourceProperties is null (a hand-replayed or corrupted event):
    a Delete never needs its properties to be valid (the record says what the resource owns),
    so it is served, not crashed on while the record and claims are read."""
    send = controller_sender(iam, registry)
    assert send(event("Create", {"Users": "alice"})).ok
    delete = event("Delete", {"Users": "alice"}, "Jets")
    delete["ResourceProperties"] = None
    deleted = send(delete)
    assert deleted.ok, deleted.reason
    assert snapshot(iam, "Jets") is None
