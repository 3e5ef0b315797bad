"""A fourth attack, on the Update's hand-back state (``LastUpdate.adopted``, ``taken_from``,
``took_over``), the rollback of a takeover Update (``Decision.gives_claim_back``) and the Delete of
a dead Create under CloudFormation's own id. Each test is a sequence CloudFormation, Lambda, IAM
or an operator really produces; its docstring states the sequence, the rule it breaks (quoted
from SPEC.md / README.md) and what happens. Every test here fails on the code it was written
against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from continuation_sim import Cloud
from helpers import (
    ENV,
    GENERATED,
    OTHER_STACK,
    S1,
    S2,
    Stack,
    controller_sender,
    crash,
    event,
    make_users,
    owner,
    s2_lost_its_group_to_s1,
    snapshot,
)
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import DynamoDBRegistry
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


# == the rollback of a takeover Update applies S2's old properties to S1's group =================


def test_rolling_back_a_takeover_update_does_not_rewrite_the_previous_owners_group(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2's resource ("Jets", Users bob) lost its group (deleted by hand); S1 then created
    "Jets" with alice and p1 attached. S2's operator deploys S2 with AdoptExistingGroup true and
    the same content S1 has (Users alice, p1): the takeover Update succeeds (nothing to write but
    the claim), then another resource of S2's stack fails and CloudFormation sends the rollback
    Update (S2's old properties: Users bob, no managed policy).

    README: "Rollbacks restore exactly ... Everything the reversed Update did not touch then
    follows the usual rules of the restored properties: in a real rollback that is nothing";
    "An Update that takes a claim over ... gives it back when the stack rolls it back". The
    rollback must leave S1's group exactly as S1 had it and give S1 its claim back. Found: the
    rollback reconciles S1's group with S2's *old* properties (which were never applied to this
    group): alice is removed, bob added, p1 detached - then the claim is handed to S1 with a
    group S1 never declared (bob holds S1's deploy rights).
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "bob"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice", "ManagedPolicyArns": world["p1"]}).ok
    found = snapshot(iam, "Jets")

    takeover = {"Users": "alice", "ManagedPolicyArns": world["p1"], "AdoptExistingGroup": "true"}
    assert s2.update(takeover, stack_rolls_back=True).ok
    assert owner(registry) == S1
    assert snapshot(iam, "Jets") == found


def test_rolling_back_a_takeover_update_that_changed_members_restores_only_what_it_changed(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """As above, but the takeover Update also adds carol (Users alice,carol; p1 kept). Then the
    stack rolls back.

    README: "Rollbacks restore exactly ... come back exactly as they were before that Update".
    Expected: carol removed, nothing else touched, the claim back to S1. Found: besides removing
    carol, the rollback removes alice, adds bob and detaches p1 (S2's old properties applied to
    S1's group).
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "bob"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice", "ManagedPolicyArns": world["p1"]}).ok
    found = snapshot(iam, "Jets")

    takeover = {
        "Users": "alice,carol",
        "ManagedPolicyArns": world["p1"],
        "AdoptExistingGroup": "true",
    }
    assert s2.update(takeover, stack_rolls_back=True).ok
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


# == the revert deploy of a rolled-back takeover ==================================================


def test_redeploying_a_rolled_back_takeover_is_not_a_silent_no_op(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2 takes "Jets" over from S1 with an Update (AdoptExistingGroup true, Users bob); another
    resource fails and the stack rolls the takeover back (the claim returns to S1). The operator
    fixes the other resource and deploys the same change again: an Update with the takeover's
    properties and the rolled-back ones as old properties - the shape of a rollback of the
    rollback.

    README: "an operator's revert deploy, which has the same shape, still corrects drift (and
    re-creates a group deleted meanwhile)"; "CloudFormation always gets one answer". The deploy
    must either take the group over again (bob a member, S2's claim) or fail and say why. Found:
    it is served as the rollback of the rollback, whose group is "not ours" (S1's claim): it
    writes nothing and answers SUCCESS with the group's attributes - the stack believes S2 now
    manages "Jets" with bob in it; bob has no access and S1 still owns it.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok

    takeover = {"Users": "bob", "AdoptExistingGroup": "true"}
    first = s2.update(takeover, stack_rolls_back=True)
    assert first.ok
    assert owner(registry) == S1

    again = s2.update(takeover)
    group = snapshot(iam, "Jets")
    assert group is not None
    took_over = again.ok and group["members"] == {"bob"} and owner(registry) == S2
    refused = not again.ok
    assert took_over or refused, (again.status, group["members"], owner(registry))


# == an adoption's first Update that fails, then the stack's rollback ============================


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param({"Users": "alice,ghost"}, id="a user that does not exist"),
        pytest.param({"Users": "alice", "Userz": "carol"}, id="a property with a typo"),
    ],
)
def test_the_rollback_of_an_adoptions_failed_first_update_leaves_it_adopted(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str], failing: dict
) -> None:
    """The first deploy adopts the hand-made "Jets" (bob, p1) with AdoptExistingGroup true. The
    next deploy makes a mistake (a user that does not exist, or a misspelt property): the Update
    fails before any write, CloudFormation sends the rollback Update (properties swapped), then
    the operator deletes the stack.

    README: "only a successful Update makes the group the adopter's own, and a stack rollback of
    that Update leaves it adopted again (its Delete hands it back)"; "After a failed Update
    (which wrote nothing, or undid its own writes) the rollback changes nothing"; "A Delete of
    an adopted group before the resource's first Update also hands it back as it was found".
    The failed Update and its rollback change nothing: the stack's Delete must hand the group
    back as found. Found: the rollback forgets the adoption (a typo: served from the failed
    Update's empty undo record, whose ``adopted`` is None; a bad user: served as an ordinary
    Update, which makes the group the stack's own) and the stack's Delete deletes the group
    that existed before the stack, bob's access and p1 with it.
    """
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    before = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "alice", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    failed = stack.update({**props, **failing})  # then the rollback Update (asserted ok)
    assert not failed.ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


def test_the_rollback_of_a_failed_update_of_a_taken_over_group_gives_the_claim_back(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). S2 adopts it with a Create (AdoptExistingGroup true, Users
    alice,bob): S2's claim, taken from S1. S2's next deploy names a user that does not exist:
    the Update fails before any write and CloudFormation rolls it back; then S2's stack is
    deleted (the migration abandoned).

    README: "An adoption that fails, is handed back, or is undone gives the claim back to the
    resource it took it from; only a successful Update makes the group the adopter's own";
    "After a failed Update ... the rollback changes nothing". Expected: S2's Delete hands the
    group back as S1 had it, S1's claim again. Found: the rollback Update (an ordinary no-op
    Update to this code) drops ``adopted`` and ``taken_from``; S2's Delete then deletes S1's
    group and its claim.
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    props = {"Users": "alice,bob", "AdoptExistingGroup": "true"}
    assert s2.create(props).ok
    assert not s2.update({**props, "Users": "alice,bob,ghost"}).ok
    assert s2.delete().ok
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


# == a dead adoption that had nothing to write ===================================================


def test_a_dead_adoption_with_nothing_to_write_gives_the_claim_back(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stack S1 owns "Jets" (alice, bob). Stack S2 adopts it (AdoptExistingGroup true) with the
    very same declaration, so the plan is empty; S2's invocation dies right after its write-ahead
    (the claim taken over) and never answers. CloudFormation fails the Create at ServiceTimeout
    and rolls back with a Delete carrying an id of its own invention.

    README: "An adoption is handed back on every kind of failure ... and the answer does not
    claim the group"; "An adoption that fails ... gives the claim back to the resource it took
    it from". Expected: S1 owns "Jets" again (its next Update works, its Delete deletes the
    group). Found: ``_orphan_of_a_dead_create`` only hands back an adoption whose undo record is
    not empty; this one falls through to "the physical id names no group ... does not exist":
    S2 keeps the claim, S1's Update is refused ("owned by JetsDeployGroup of stack jets") and
    S1's stack Delete leaves the group behind.
    """
    s1 = Stack(controller_sender(iam, registry))
    props = {"Users": "alice,bob"}
    assert s1.create(props).ok
    send = controller_sender(iam, registry)

    real_change = DynamoDBRegistry.change
    calls = {"n": 0}

    def dies_after_the_write_ahead(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            crash()
        return real_change(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBRegistry, "change", dies_after_the_write_ahead)
    adopt = {**props, "AdoptExistingGroup": "true"}
    with pytest.raises(SystemExit):
        send(event("Create", adopt, stack=OTHER_STACK))
    monkeypatch.setattr(DynamoDBRegistry, "change", real_change)
    assert owner(registry) == S2  # the write-ahead took the claim

    gone = send(event("Delete", adopt, GENERATED, stack=OTHER_STACK))
    assert gone.ok, gone.reason
    assert owner(registry) == S1
    updated = s1.update({"Users": "alice,bob,carol"})
    assert updated.ok, updated.reason


# == a takeover Update re-delivered after its first invocation died ==============================


def test_a_takeover_update_delivered_again_after_dying_is_still_rolled_back_to_the_owner(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2 takes "Jets" over from S1 with an Update (AdoptExistingGroup true, Users alice,bob).
    Its invocation dies after the write-ahead (the claim taken) and its first IAM write; the
    same request (same RequestId) is delivered again (Lambda's retry of an invocation that
    died, or crhelper's poll of a request going on) and completes. Another resource of S2's
    stack fails and CloudFormation sends the rollback Update.

    README: "An Update that takes a claim over (AdoptExistingGroup true on a group another
    resource's claim names) gives it back when the stack rolls it back"; "Rollbacks restore
    exactly". Expected: S1's group as it was, S1's claim. Found: the second delivery finds the
    claim already its own, so its undo record says it took nothing over (``took_over`` False,
    and its first invocation's undo record is overwritten): the rollback restores the content
    but S2 keeps the claim - S1's Update is refused and S2's stack Delete deletes S1's group.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)
    takeover = {"Users": "bob", "AdoptExistingGroup": "true"}
    forward = event("Update", takeover, "Jets", s2.props, stack=OTHER_STACK)
    strict.before_write("AddUserToGroup", crash)  # after RemoveUserFromGroup alice
    with pytest.raises(SystemExit):
        send(forward)
    again = send(forward)  # the same request, delivered again
    assert again.ok, again.reason
    back = send(event("Update", s2.props, "Jets", takeover, stack=OTHER_STACK))
    assert back.ok, back.reason
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


# == the same through crhelper's polling: the Update goes on in a second invocation ==============


def test_a_takeover_update_that_goes_on_in_a_second_invocation_is_rolled_back_to_the_owner(
    cloud: Cloud,
    iam: IAMClient,
    strict: StrictIam,
    registry: DynamoDBRegistry,
    handler_clock: VirtualClock,
) -> None:
    """S2 takes "Jets" over from S1 with an Update (AdoptExistingGroup true) that adds 60
    members; IAM grants half a write a second, so the first invocation runs out of time, records
    its progress and the polling rule finishes the Update in later invocations (README:
    "A change that made progress continues in the next invocation"). Then another resource of
    S2's stack fails and CloudFormation sends the rollback Update.

    README: "An Update that takes a claim over ... gives it back when the stack rolls it back".
    Expected: S1's claim again. Found: the later invocations find the claim already S2's; their
    write-ahead replaces the first invocation's undo record with one saying nothing was taken
    over (``took_over`` False): the rollback removes the 60 members but S2 keeps S1's claim
    (S1's next Update is refused, S2's stack Delete would delete S1's group).
    """
    many = [f"user{i:04d}" for i in range(60)]
    make_users(iam, [*many, "alice"])
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)

    takeover = {"Users": ["alice", *many], "AdoptExistingGroup": "true"}
    forward = event("Update", takeover, "Jets", s2.props, stack=OTHER_STACK)
    answer = cloud.until_answered(forward)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(cloud.invocations) > 1  # it did go on in another invocation
    back = event("Update", s2.props, "Jets", takeover, stack=OTHER_STACK)
    answer = cloud.until_answered(back)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


def test_an_adoptions_first_update_that_goes_on_in_a_second_invocation_rolls_back_to_adopted(
    cloud: Cloud,
    iam: IAMClient,
    strict: StrictIam,
    registry: DynamoDBRegistry,
    handler_clock: VirtualClock,
) -> None:
    """The first deploy adopts the hand-made "Jets" (bob). The next deploy adds 60 members; IAM
    grants half a write a second, so the Update goes on across invocations and succeeds; then
    another resource fails and CloudFormation sends the rollback Update; later the stack is
    deleted.

    README: "only a successful Update makes the group the adopter's own, and a stack rollback of
    that Update leaves it adopted again (its Delete hands it back)". Expected: the stack's Delete
    hands "Jets" back as found (bob). Found: the second invocation recomputes the undo record
    from the record the first one wrote (``adopted`` already None), so the rollback leaves the
    group owned and the stack's Delete deletes the group that existed before the stack.
    """
    many = [f"user{i:04d}" for i in range(60)]
    make_users(iam, [*many, "alice", "bob"])
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    before = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "alice", "AdoptExistingGroup": "true"}  # Exclusive: bob goes
    assert stack.create(props).ok
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)

    grown = {**props, "Users": ["alice", *many]}
    answer = cloud.until_answered(event("Update", grown, "Jets", props))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(cloud.invocations) > 1
    answer = cloud.until_answered(event("Update", props, "Jets", grown))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    strict.throttle(rate=1000, burst=1000, clock=handler_clock.now)
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


# == a takeover Update that renames, then the drift check ========================================


def test_a_takeover_update_that_renames_keeps_the_new_group_under_the_drift_check(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2's resource answers to "Jets" (its group since deleted by hand and re-made by S1). S2's
    operator, told "set AdoptExistingGroup true to take it over", deploys AdoptExistingGroup
    true together with a new GroupName "JetsNew" (DriftAction correct). The replacement succeeds
    and CloudFormation sends the cleanup Delete of the old id "Jets" (S1's group: touched not,
    rightly). Later someone adds carol to "JetsNew" by hand; the scheduled drift check runs.

    README: "A GroupName change is a replacement ... and the new name is answered";
    "DriftAction ... what the scheduled drift check does between deploys: correct". Expected:
    carol removed from "JetsNew". Found: the cleanup Delete that "touches nothing" also sets the
    record's current group to None: the drift check reports "no group: the resource is deleted
    or never created", and the live group S2 answered is never checked again (carol keeps its
    admin-equivalent rights).
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice", "DriftAction": "correct"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")

    renamed = {
        "GroupName": "JetsNew",
        "Users": "alice,bob",
        "AdoptExistingGroup": "true",
        "DriftAction": "correct",
    }
    answer = s2.update(renamed)  # then the cleanup Delete of "Jets"
    assert answer.ok, answer.reason
    assert answer.physical_id == "JetsNew"
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1
    deployed = snapshot(iam, "JetsNew")

    iam.add_user_to_group(GroupName="JetsNew", UserName="carol")
    drift = Controller(iam, registry).check_drift(S2, ENV)
    assert drift.group == "JetsNew", drift.note
    assert snapshot(iam, "JetsNew") == deployed
