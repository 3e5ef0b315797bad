"""A sixth attack, on 37ce07a: the empty undo record of a refused Update (``_refused_first``), the
undo record a rollback kept of its own and the hand-back state. Most findings share one root: a
rollback's (or revert deploy's) own undo record makes the *next* deploy of the reversed
properties look like "a rollback of the rollback" (``LastUpdate.reversed_by``), and it is then
served from that undo record instead of being reconciled: a rename is skipped, a typo is
accepted, an ownership is restored that the resource did not earn, a group the revert re-created
is deleted, an adoption stays an adoption. Also: a rollback that cannot restore a deleted user.
Each test is a sequence CloudFormation, Lambda, IAM or an operator really produces; its
docstring states the sequence, the rule it breaks (quoted from SPEC.md / README.md) and what
happens. Every test here fails on the code it was written against (and on e54bcf7, before
37ce07a: the roots predate it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers import (
    OTHER_STACK,
    S2,
    Stack,
    controller_sender,
    delete_by_hand,
    event,
    owner,
    snapshot,
)
from jets_deploy_iam.registry.store import DynamoDBRegistry

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def test_a_rename_redeployed_after_its_refused_attempt_was_rolled_back_is_not_skipped(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). A deploy renames it to "JetsNew" and adds ghost, a user that does
    not exist yet: the pre-flight refuses it (FAILED, nothing written), and CloudFormation's
    rollback Update (properties swapped) changes nothing. The operator creates ghost and
    deploys the very same change again.

    README: "A GroupName change is a replacement ... a new group is created with the whole
    content of the old one ... and the new name is answered." Found: the redeploy has the shape
    of a rollback of the rollback (properties = the rollback's old properties and vice versa),
    so it is served from the rollback's (empty) undo record; the rollback path only adds
    "extra" work in place, so the rename is skipped: SUCCESS with the old physical id, no
    "JetsNew", ghost never added. CloudFormation now holds GroupName JetsNew for a resource
    whose group is "Jets".
    """
    a = {"Users": "alice"}
    assert stack.create(a).ok
    renamed = {"GroupName": "JetsNew", "Users": "alice,ghost"}
    refused = stack.update(renamed)  # then the rollback Update, which succeeds
    assert not refused.ok
    assert snapshot(iam, "JetsNew") is None

    iam.create_user(UserName="ghost")
    again = stack.update(renamed)
    assert again.ok, again.reason
    assert again.physical_id == "JetsNew"
    group = snapshot(iam, "JetsNew")
    assert group is not None
    assert group["members"] == {"alice", "ghost"}


def test_a_typo_redeployed_after_its_refusal_was_rolled_back_still_fails(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). A deploy means to grant carol and attach p2 but misspells a
    property ("ManagedPolicyArn"): it is refused before any write (FAILED), and
    CloudFormation's rollback Update changes nothing. The pipeline (or the operator, not yet
    having spotted the typo) deploys the same template again.

    README: "Any other property fails the request and is named (a typo is never ignored)";
    "Everything is validated before the first write". Found: the second deploy has the shape of
    a rollback of the rollback, so it is served from the rollback's undo record, which is
    served "even if this version cannot parse the properties": SUCCESS, nothing applied, carol
    not granted, the typo never named. CloudFormation now holds properties the function never
    applied, and reports the deploy complete.
    """
    a = {"Users": "alice"}
    assert stack.create(a).ok
    typo = {"Users": "alice,carol", "ManagedPolicyArn": world["p2"]}
    first = stack.update(typo)  # refused, then the rollback Update
    assert not first.ok
    assert "ManagedPolicyArn" in first.reason

    again = stack.update(typo)
    assert not again.ok, "an unknown property was accepted"
    assert "ManagedPolicyArn" in again.reason


def test_a_member_added_by_hand_stays_foreign_when_a_rolled_back_grant_is_deployed_again(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """S1 owns "Jets" with Exclusive false (alice). A deploy grants bob; it succeeds, but another
    resource fails and the stack rolls it back (bob removed). While the team sorts that out, an
    admin adds bob to the group by hand. The fixed template (Users alice,bob) is deployed again;
    bob is already a member, so nothing is written. Later bob is dropped from Users.

    README: "`Exclusive` ... `false`: the resource only ever removes what it added itself ...
    whatever was on the group before the resource declared it stays"; ownership.py: "Everything
    else on the group was there before the resource declared it (or was added by hand since) and
    is foreign". A plain Update declaring a member who is already there does not claim him.
    Found: the redeploy has the shape of a rollback of the rollback and is served from the
    rollback's undo record, which restores the *ownership* bob had before the rollback (owned)
    although the resource did not add him this time: the hand-made membership becomes the
    resource's, and dropping bob from Users removes the admin's grant.
    """
    a = {"Users": "alice", "Exclusive": "false"}
    assert stack.create(a).ok
    grant = {**a, "Users": "alice,bob"}
    assert stack.update(grant, stack_rolls_back=True).ok  # then the rollback Update
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}

    iam.add_user_to_group(GroupName="Jets", UserName="bob")  # by hand
    assert stack.update(grant).ok
    assert stack.update(a).ok
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob"}, "a member added by hand was removed"


def test_continue_rollback_after_the_revoked_user_was_deleted_does_not_stay_stuck(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice, bob). A deploy offboards bob (Users alice): it succeeds, but
    another resource fails and that resource's own rollback fails too: the stack is in
    UPDATE_ROLLBACK_FAILED before CloudFormation got to this resource's rollback Update. Meanwhile
    the offboarding goes on: bob's IAM user (in no group any more) is deleted. The operator fixes
    the other resource and runs continue-update-rollback: this resource's rollback Update
    (properties swapped) is sent, and sent again on every later continue-update-rollback.

    README: "Rollbacks restore exactly ... even if this version of the function cannot parse the
    properties"; "After a failed Update ... the rollback changes nothing, and does not fail
    either". A member who no longer exists as a user cannot be restored (IAM removes a user from
    its groups before it can delete it): the closest state to "before" is the group without
    him. Found: the rollback's restore plan re-adds bob, the pre-flight refuses it ("no such IAM
    user bob"), and the rollback FAILS, every time it is sent: the stack can only leave
    UPDATE_ROLLBACK_FAILED by skipping the resource.
    """
    send = controller_sender(iam, registry, config)
    p0 = {"Users": "alice,bob"}
    p1 = {"Users": "alice"}
    assert send(event("Create", p0)).ok
    assert send(event("Update", p1, "Jets", p0)).ok
    iam.delete_user(UserName="bob")  # offboarded while the stack was stuck

    for _continue_update_rollback in range(2):
        back = send(event("Update", p0, "Jets", p1))
        assert back.ok, back.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}


def test_a_rollback_skips_a_managed_policy_deleted_since_and_restores_the_rest(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """The same for a managed policy: a deploy detaches p1 and p2 and succeeds; p1 is then
    deleted from IAM (it was attached nowhere else) while the stack waits in
    UPDATE_ROLLBACK_FAILED; continue-update-rollback sends this resource's rollback. p1 cannot
    be attached again; p2 is, and the rollback succeeds."""
    send = controller_sender(iam, registry, config)
    p0 = {"Users": "alice", "ManagedPolicyArns": f"{world['p1']},{world['p2']}"}
    p1 = {"Users": "alice"}
    assert send(event("Create", p0)).ok
    assert send(event("Update", p1, "Jets", p0)).ok
    iam.delete_policy(PolicyArn=world["p1"])

    back = send(event("Update", p0, "Jets", p1))
    assert back.ok, back.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["attached"] == {world["p2"]}


def test_redeploying_after_a_revert_that_recreated_the_group_does_not_delete_it(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    """S1 deploys "Jets" (alice), then grants bob (Users alice,bob). Someone deletes the group
    by hand. The operator notices and deploys the previous template again (Users alice): as
    README says, the revert deploy re-creates the group. Then the operator deploys the
    template with bob again.

    README: "an operator's revert deploy, which has the same shape, still corrects drift (and
    re-creates a group deleted meanwhile)"; "**Update** reads the group, computes the difference
    and makes only the writes it needs". Found: the last deploy has the shape of a rollback of
    the revert and is served from the revert's undo record, which says the revert *created* the
    group: "restoring" it deletes the group whole (members, policy and all) and answers SUCCESS.
    CloudFormation holds Users alice,bob for a group that no longer exists; alice and bob
    lost their deploy rights, and with DriftAction report nothing puts the group back.
    """
    assert stack.create({"Users": "alice"}).ok
    assert stack.update({"Users": "alice,bob"}).ok
    delete_by_hand(iam)

    assert stack.update({"Users": "alice"}).ok  # the revert deploy
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}

    again = stack.update({"Users": "alice,bob"})
    assert again.ok, again.reason
    group = snapshot(iam, "Jets")
    assert group is not None, "a deploy deleted the group"
    assert group["members"] == {"alice", "bob"}


def test_an_adopters_first_real_update_after_a_refused_one_makes_the_group_its_own(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (alice). S2 adopts it with a Create (AdoptExistingGroup true, Users
    alice,bob). S2's next deploy adds ghost, a user not created yet: refused before any write,
    and CloudFormation's rollback Update changes nothing (the group stays adopted, as README
    says). The operator creates ghost and deploys the same change again: it succeeds, ghost is
    added. Later S2's stack is deleted.

    README: "only a successful Update makes the group the adopter's own"; "Use an Update (any
    property change) to make the group the stack's own, so that deleting the stack deletes it."
    Found: the successful deploy has the shape of a rollback of the rollback and is served from
    the rollback's undo record, which restores the hand-back state the rollback saw (still
    adopted, taken from S1): the group stays "adopted" after a successful Update, and S2's
    Delete hands it back to S1 instead of deleting it - with ghost still a member (the adoption's
    hand-back record never knew him): S1 declares only alice, yet ghost keeps the group's
    admin-equivalent rights in S1's group.
    """
    s1 = Stack(controller_sender(iam, registry, config))
    assert s1.create({"Users": "alice"}).ok
    s2 = Stack(controller_sender(iam, registry, config), stack=OTHER_STACK)
    props = {"Users": "alice,bob", "AdoptExistingGroup": "true"}
    assert s2.create(props).ok
    assert owner(registry) == S2

    grown = {**props, "Users": "alice,bob,ghost"}
    assert not s2.update(grown).ok  # refused, then the rollback Update
    iam.create_user(UserName="ghost")
    again = s2.update(grown)
    assert again.ok, again.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob", "ghost"}

    assert s2.delete().ok
    assert snapshot(iam, "Jets") is None, "the adopter's own group was handed back, not deleted"
