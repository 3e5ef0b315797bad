"""A fifth attack, on the hand-back state after f7b240d / 5dfe262: ``GroupRecord.taken_from`` left
on a group the resource made its own (a revert deploy after a rollback, a rename of an
adopted group), the rollback of a takeover Update that failed (its own undo record, and one that
failed before writing), a takeover's rollback sent again, and a rename's rollback Delete that
finds the new group missing (``_after_delete`` "none"). Each test is a sequence CloudFormation,
Lambda, IAM or an operator really produces; its docstring states the sequence, the rule it breaks
(quoted from SPEC.md / README.md) and what happens. Every test here fails on the code it was
written against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from helpers import (
    ENV,
    OTHER_STACK,
    S1,
    S2,
    Sender,
    Stack,
    controller_sender,
    crash,
    delete_by_hand,
    event,
    owner,
    s2_lost_its_group_to_s1,
    snapshot,
)
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import DynamoDBRegistry
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


# == taken_from left on a group the adopter made its own ===========================================


def test_a_revert_deploy_after_an_adoptions_rolled_back_update_does_not_hand_the_claim_back_later(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice, DriftAction correct). S2 adopts it with a Create
    (AdoptExistingGroup true, Users alice,bob). S2's next deploy adds carol; it succeeds but
    another resource fails and the stack rolls it back (the group is adopted again, as README
    says). The operator fixes the other resource and deploys the same change again (Users
    alice,bob,carol; old properties the rolled-back ones: the shape of a rollback of the
    rollback, served from the rollback's undo record). It succeeds. Later S2's stack is
    deleted; then S1's scheduled drift check runs.

    README: "only a successful Update makes the group the adopter's own"; "an adoption takes
    the claim over (which ends the previous owner's rights: its Delete then touches nothing)".
    S2's Delete deletes its own group, and the claim goes with it (as it does when S2 made the
    group its own with any other successful Update). Found: the revert deploy is served from the
    rollback's undo record, whose ``taken_from`` is S1 (``_claimed`` kept it in the rollback's
    write-ahead) while ``adopted`` is None: the group is S2's own yet still "taken from S1". S2's
    Delete deletes the group and hands the claim to S1, whose drift check then re-creates "Jets"
    with S1's old declaration - alice and the admin-equivalent baseline policy - in a group
    nobody deploys any more.
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice", "DriftAction": "correct"}).ok
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    props = {"Users": "alice,bob", "AdoptExistingGroup": "true"}
    assert s2.create(props).ok
    assert owner(registry) == S2

    grown = {**props, "Users": "alice,bob,carol"}
    assert s2.update(grown, stack_rolls_back=True).ok  # then the rollback Update
    again = s2.update(grown)  # the operator deploys the change again
    assert again.ok, again.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob", "carol"}

    assert s2.delete().ok
    assert snapshot(iam, "Jets") is None
    Controller(iam, registry).check_drift(S1, ENV)
    assert owner(registry) is None
    assert snapshot(iam, "Jets") is None


def test_renaming_an_adopted_group_does_not_hand_the_old_names_claim_back(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice, DriftAction correct). S2 adopts it with a Create
    (AdoptExistingGroup true, Users alice,bob). S2's next deploy renames it to "JetsNew": the
    replacement copies the whole group and succeeds, and CloudFormation's cleanup Delete of the
    old id "Jets" deletes the old group whole. Then S1's scheduled drift check runs.

    README: "only a successful Update makes the group the adopter's own"; "an adoption takes
    the claim over (which ends the previous owner's rights ...)"; "A GroupName change is a
    replacement ... CloudFormation then deletes the old name in its cleanup"; "Either side of a
    rename is deleted whole (its content exists in the other group)". Expected: "Jets" is gone
    and its claim with it; the members' rights live on in "JetsNew" only. Found: the old
    group's record keeps ``taken_from`` S1 through the replacement, so the cleanup Delete hands
    the claim of the deleted "Jets" to S1, whose drift check re-creates "Jets" with alice and
    the admin-equivalent policy: a second group granting the same rights, beside "JetsNew".
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice", "DriftAction": "correct"}).ok
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    props = {"Users": "alice,bob", "AdoptExistingGroup": "true"}
    assert s2.create(props).ok

    answer = s2.update({**props, "GroupName": "JetsNew"})  # then the cleanup Delete of "Jets"
    assert answer.ok, answer.reason
    assert answer.physical_id == "JetsNew"
    assert snapshot(iam, "Jets") is None
    Controller(iam, registry).check_drift(S1, ENV)
    assert owner(registry) is None
    assert snapshot(iam, "Jets") is None


# == the rollback of a takeover Update that failed ================================================


def test_redeploying_a_takeover_whose_failed_update_was_rolled_back_is_not_a_silent_no_op(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2's resource answers to "Jets" (its group since deleted by hand and re-made by S1, with
    alice). S2's operator deploys AdoptExistingGroup true with Users bob: the takeover Update
    removes alice, then IAM refuses AddUserToGroup bob (LimitExceeded); the Update undoes its
    writes, gives the claim back and fails; CloudFormation sends the rollback Update (properties
    swapped), which rightly changes nothing. The operator fixes the cause and deploys the
    takeover again: an Update with the takeover's properties and the old ones as old
    properties.

    README: "After a failed Update (which wrote nothing, or undid its own writes) the rollback
    changes nothing"; "an operator's revert deploy, which has the same shape, still corrects
    drift"; "CloudFormation always gets one answer". The deploy must take the group over (bob a
    member, S2's claim) or fail and say why. Found: the rollback, finding the group not S2's,
    records as its own undo record ``Undo.of`` an empty plan on no group: ``Undo(group="",
    created=True)``. The deploy again has the shape of the rollback's rollback, is served from
    that record, writes nothing and answers SUCCESS with the group's attributes: the stack
    believes S2 manages "Jets" with bob; bob has no access and S1 still owns the group.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")

    takeover = {"Users": "bob", "AdoptExistingGroup": "true"}
    strict.inject("AddUserToGroup", "LimitExceeded", times=1)
    failed = s2.update(takeover)  # then the rollback Update (asserted ok)
    assert not failed.ok
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1

    again = s2.update(takeover)
    group = snapshot(iam, "Jets")
    assert group is not None
    took_over = again.ok and group["members"] == {"bob"} and owner(registry) == S2
    assert took_over or not again.ok, (again.status, group["members"], owner(registry))


def test_the_rollback_of_a_takeover_update_that_failed_its_preflight_succeeds(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2's resource answers to "Jets" (its group since deleted by hand and re-made by S1).
    S2's operator deploys AdoptExistingGroup true with Users bob,ghost (a user that does not
    exist): the Update fails its pre-flight, before any write. CloudFormation sends the
    rollback Update (S2's old properties, without AdoptExistingGroup).

    README: "Everything is validated before the first write ... A request that fails validation
    writes nothing to IAM"; "After a failed Update (which wrote nothing, or undid its own
    writes) the rollback changes nothing". The rollback must succeed and change nothing - as it
    does when the same takeover fails after a write and undoes it. Found: a pre-flight failure
    records no undo record of the Update (unlike a failure of the properties or of IAM), so the
    rollback is served as an ordinary Update of a group S1 owns and fails: "group Jets is owned
    by JetsDeployGroup of stack jets ...". The stack ends UPDATE_ROLLBACK_FAILED, and every
    continue-update-rollback fails the same way until the operator skips the resource.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)

    takeover = {"Users": "bob,ghost", "AdoptExistingGroup": "true"}
    failed = send(event("Update", takeover, "Jets", s2.props, stack=OTHER_STACK))
    assert not failed.ok
    back = send(event("Update", s2.props, "Jets", takeover, stack=OTHER_STACK))
    assert back.ok, back.reason
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


def test_a_takeovers_rollback_sent_again_still_succeeds(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2 takes "Jets" over from S1 with an Update (AdoptExistingGroup true, Users bob); it
    succeeds, another resource fails, and CloudFormation sends the rollback Update. The
    rollback restores the group and gives the claim back, but its invocation dies before the
    answer reaches CloudFormation (or the answer's PUT fails): CloudFormation fails the rollback
    at ServiceTimeout, the stack is UPDATE_ROLLBACK_FAILED, and the operator runs
    continue-update-rollback - the same rollback Update again, under a new RequestId.

    README: "A request that died before answering and is delivered again ... keeps the undo
    record of its first delivery"; "After a failed Update ... the rollback changes nothing";
    "CloudFormation always gets one answer". The rollback sent again must succeed and change
    nothing, as it does for any other resource's rollback (an ordinary Update's rollback sent
    again is a no-op Update). Found: the takeover's rollback set ``last_update`` to None, so the
    second rollback is an ordinary Update of S1's group with S2's old properties and fails
    ("group Jets is owned by JetsDeployGroup of stack jets"): the stack cannot finish its
    rollback.
    """
    s2 = s2_lost_its_group_to_s1(iam, registry, {"Users": "alice"})
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)

    takeover = {"Users": "bob", "AdoptExistingGroup": "true"}
    assert send(event("Update", takeover, "Jets", s2.props, stack=OTHER_STACK)).ok
    back = send(event("Update", s2.props, "Jets", takeover, stack=OTHER_STACK))
    assert back.ok, back.reason  # ... but CloudFormation never hears it
    again = send(event("Update", s2.props, "Jets", takeover, stack=OTHER_STACK))
    assert again.ok, again.reason
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


def renamed_to_jets_new(
    iam: IAMClient, send: Sender
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """ "Jets" (alice, DriftAction correct) renamed to "JetsNew" by a deploy that succeeded:
    the renamed properties, and "Jets" as deployed (still intact: its cleanup Delete is next)."""
    props = {"Users": "alice", "DriftAction": "correct"}
    assert Stack(send).create(props).ok
    renamed = {**props, "GroupName": "JetsNew"}
    answer = send(event("Update", renamed, "Jets", props))
    assert answer.ok, answer.reason
    assert answer.physical_id == "JetsNew"
    return renamed, snapshot(iam, "Jets")


# == a rename's rollback Delete that finds the new group missing ==================================


def test_a_renames_rollback_delete_that_cannot_see_the_new_group_yet_does_not_orphan_it(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The resource owns "Jets" (alice, DriftAction correct). A deploy renames it to "JetsNew":
    the replacement creates "JetsNew" with alice and the policy, and answers it; seconds later
    another resource of the stack fails and CloudFormation's rollback Delete of "JetsNew"
    arrives. IAM, eventually consistent, answers its GetGroup of the seconds-old group
    NoSuchEntity. Later someone adds carol to "Jets" by hand and the drift check runs.

    SPEC: "Eventual consistency: right after CreateGroup, calls naming the group can return
    NoSuchEntity for a while: retry those with backoff for a bounded time"; README: "if the
    stack rolls back, deletes the new name while the old group is still intact"; "DriftAction
    ... correct". Expected: "JetsNew" is deleted (or the Delete fails and is retried), and
    "Jets" stays the resource's group under the drift check. Found: the Delete takes the one
    NoSuchEntity for "the group does not exist", answers SUCCESS and drops "JetsNew" from the
    record with its claim: "JetsNew" stays in IAM, unowned, with alice and the admin-equivalent
    policy, forever; and ``_after_delete`` sets the record's current group to None although
    "Jets" is live, so the drift check says "no group: the resource is deleted" and carol keeps
    her access.
    """
    send = controller_sender(iam, registry)
    renamed, deployed = renamed_to_jets_new(iam, send)

    strict.inject("GetGroup", "NoSuchEntity", times=1)  # "JetsNew" is seconds old
    send(event("Delete", renamed, "JetsNew"))
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    Controller(iam, registry).check_drift(S1, ENV)
    assert snapshot(iam, "JetsNew") is None
    assert snapshot(iam, "Jets") == deployed


def test_a_renames_rollback_delete_sent_again_keeps_the_old_group_under_the_drift_check(
    iam: IAMClient,
    registry: DynamoDBRegistry,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resource owns "Jets" (alice, DriftAction correct). A deploy renames it to "JetsNew"
    and succeeds; the stack rolls back and sends the Delete of "JetsNew". That Delete deletes
    "JetsNew", but its invocation dies before it records the outcome and answers.
    CloudFormation sends the Delete again (README: "CloudFormation tries the cleanup Delete of
    an old name three times"; likewise a rollback's Delete, or continue-update-rollback), which
    finds "JetsNew" gone and answers SUCCESS. Later someone adds carol to "Jets" by hand and
    the scheduled drift check runs.

    README: "if the stack rolls back, deletes the new name while the old group is still
    intact"; "DriftAction ... correct"; "Deleting one side of a rename leaves the other as the
    resource's group" (model ``_survivor``). Expected: carol removed from "Jets". Found:
    ``_after_delete`` "none" sets ``current`` to None because the deleted name was the record's
    current group, overriding the survivor ``without_group`` chose: the drift check reports "no
    group: the resource is deleted or never created" and never checks "Jets" again until the
    next deploy; carol keeps the admin-equivalent rights.
    """
    send = controller_sender(iam, registry)
    renamed, deployed = renamed_to_jets_new(iam, send)

    real_change = DynamoDBRegistry.change
    calls = {"n": 0}

    def dies_before_its_commit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the write-ahead went through; the outcome never does
            crash()
        return real_change(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBRegistry, "change", dies_before_its_commit)
    with pytest.raises(SystemExit):
        send(event("Delete", renamed, "JetsNew"))
    monkeypatch.setattr(DynamoDBRegistry, "change", real_change)
    assert snapshot(iam, "JetsNew") is None

    again = send(event("Delete", renamed, "JetsNew"))
    assert again.ok, again.reason
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    drift = Controller(iam, registry).check_drift(S1, ENV)
    assert drift.group == "Jets", drift.note
    assert snapshot(iam, "Jets") == deployed


# == mutation tests: rollbacks served from the undo record, and what a Delete leaves ==============

NEW_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:jets-deploy-iam-v2"


def _remade_with_dave(iam: IAMClient) -> dict[str, Any] | None:
    """Someone deletes the group by hand and makes a namesake (another GroupId) holding dave."""
    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    return snapshot(iam, "Jets")


def test_a_rollback_that_finds_a_namesake_leaves_it_alone_and_never_makes_it_the_resources(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """An Update removes bob; before CloudFormation's rollback Update arrives, someone replaces
    the group with a namesake. The rollback restores nothing onto it, and the stack's Delete
    leaves it alone: it was never this resource's group."""
    send = controller_sender(iam, registry)
    old, new = {"Users": "alice,bob"}, {"Users": "alice"}
    assert Stack(send).create(old).ok
    assert send(event("Update", new, "Jets", old)).ok
    namesake = _remade_with_dave(iam)
    back = send(event("Update", old, "Jets", new))
    assert back.ok, back.reason
    assert snapshot(iam, "Jets") == namesake
    assert send(event("Delete", old, "Jets")).ok
    assert snapshot(iam, "Jets") == namesake


def test_a_rollback_leaves_out_a_declared_member_the_update_put_back_after_a_hand_removal(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """bob, declared, was removed by hand; the next Update (adding carol) puts him back too; the
    stack rolls back. Rollbacks restore exactly what the reversed Update touched: bob is out
    again, as that Update found him (putting him back is the drift check's job, not the
    rollback's)."""
    assert stack.create({"Users": "alice,bob"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")
    before = snapshot(iam, "Jets")
    assert stack.update({"Users": "alice,bob,carol"}, stack_rolls_back=True).ok
    assert snapshot(iam, "Jets") == before


def test_a_rollback_makes_a_group_deleted_by_hand_again_with_the_members_the_update_removed(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """An Update removes bob; the group is then deleted by hand; CloudFormation's rollback
    Update makes it again with everything the restored properties declare, bob included."""
    send = controller_sender(iam, registry)
    old, new = {"Users": "alice,bob"}, {"Users": "alice"}
    assert Stack(send).create(old).ok
    assert send(event("Update", new, "Jets", old)).ok
    delete_by_hand(iam)
    back = send(event("Update", old, "Jets", new))
    assert back.ok, back.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob"}


def test_the_rollback_of_an_update_refused_for_an_empty_physical_id_succeeds_without_writing(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """An Update arrives with an empty PhysicalResourceId: it names no group and is refused.
    CloudFormation's rollback Update (same id, properties swapped) must succeed and write
    nothing: there is no group to read, let alone restore."""
    send = controller_sender(iam, registry)
    old, new = {"Users": "alice"}, {"Users": "alice,bob"}
    assert not send(event("Update", new, "", old)).ok
    back = send(event("Update", old, "", new))
    assert back.ok, back.reason
    assert strict.writes == []


def test_a_non_exclusive_delete_that_keeps_the_group_leaves_it_to_its_foreign_members(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    """Deleting a non-exclusive resource keeps a group with foreign content (dave): the resource
    is gone, so its drift check, even in correct mode, no longer puts its members back."""
    assert stack.create({"Users": "alice", "Exclusive": "false", "DriftAction": "correct"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    assert stack.delete().ok
    assert snapshot(iam, "Jets") is not None
    Controller(iam, registry).check_drift(S1, ENV)
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"dave"}


def test_a_legacy_delete_that_keeps_the_group_finishes_when_delivered_again_after_a_crash(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """A non-exclusive group the previous version made (no record) holds alice, bob and dave
    (foreign). Its Delete writes its record ahead and dies before its first IAM write; the
    Delete delivered again must still know alice and bob as the resource's (the legacy rule
    needs an empty registry) and remove them, keeping dave's group."""
    iam.create_group(GroupName="Jets")
    for user in ("alice", "bob", "dave"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    props = {"Users": "alice,bob", "Exclusive": "false"}
    send = controller_sender(iam, registry)
    strict.before_write("RemoveUserFromGroup", crash)
    with pytest.raises(SystemExit):
        send(event("Delete", props, "Jets"))
    again = send(event("Delete", props, "Jets"))
    assert again.ok, again.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"dave"}


def test_an_update_changing_only_the_service_token_leaves_an_adopted_group_only_adopted(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """The ServiceToken names the function, not the group: an Update that changes nothing else
    (the function moved to another ARN) declares what was applied, so the adopted group is
    still only adopted and deleting the stack gives it back as it was found."""
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    before = snapshot(iam, "Jets")
    adopt = {"Users": "alice", "AdoptExistingGroup": "true"}
    assert stack.create(adopt).ok
    assert stack.update({**adopt, "ServiceToken": NEW_TOKEN}).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before
