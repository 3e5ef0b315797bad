"""A third fresh-eyed attack, on the claim hand-back (``GroupRecord.taken_from``), continued
adoption, the drift check's rename-back of a group renamed by hand, the foreign rollback and
the removal of a dead Create's group. Each test is a sequence CloudFormation, Lambda, IAM or an
operator really produces; its docstring states the sequence, the rule it breaks (quoted from
SPEC.md / README.md) and what happens. Every test here fails on the code it was written against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from helpers import (
    ENV,
    GENERATED,
    OTHER_STACK,
    S1,
    Stack,
    controller_sender,
    crash,
    event,
    owner,
    snapshot,
)
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import DynamoDBRegistry
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


# == a takeover Update that succeeds, then the stack rolls back ==================================


def test_a_takeover_update_rolled_back_by_the_stack_gives_the_claim_back(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """S2's resource answers to "Jets", but its group was deleted by hand and S1 then created
    and claimed a new "Jets" (the stale claim taken over). S2's next Update is refused with
    "owned by ... of stack ...: set AdoptExistingGroup true to take it over", so the operator
    deploys S2 with AdoptExistingGroup true: the Update succeeds (takeover), then another
    resource of S2's stack fails and CloudFormation sends the rollback Update (properties
    swapped). Then S1 deploys (grant carol) and later deletes its stack.

    README (registry): "An adoption that fails, is handed back, or is undone gives the claim
    back to the resource it took it from"; "Rollbacks restore exactly ... restores the group
    exactly as it was before that Update". The rollback undoes the takeover: S1 must own "Jets"
    again. Found: ``_finish_update`` cleared ``taken_from`` on the forward Update's success, so
    the rollback (which restores the members and policies) keeps the claim with S2: S1's Update
    is refused ("owned by JetsDeployGroup of stack jets") and S1's Delete touches nothing - the
    group and alice's rights survive S1's stack, with a claim held by a stack whose template
    never adopted it.
    """
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert s2.create({"Users": "bob"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice"}).ok
    found = snapshot(iam, "Jets")
    assert owner(registry) == S1

    takeover = {"Users": "bob", "AdoptExistingGroup": "true"}
    assert s2.update(takeover, stack_rolls_back=True).ok  # forward Update, then the rollback
    assert snapshot(iam, "Jets") == found  # the content is restored ...
    assert owner(registry) == S1  # ... and so must be the claim

    updated = s1.update({"Users": "alice,carol"})
    assert updated.ok, updated.reason
    assert s1.delete().ok
    assert snapshot(iam, "Jets") is None


# == an adoption whose first Update is rolled back ===============================================


def test_an_adoptions_first_update_rolled_back_leaves_the_group_adopted_not_owned(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The first ``sam deploy`` adopts the Jets docs' hand-made group (AdoptExistingGroup
    true): SUCCESS. The next deploy changes a parameter (add carol) - the README's "Use an
    Update (any property change) to make the group the stack's own" - but another resource
    fails and CloudFormation sends the rollback Update. The operator then deletes the stack.

    README: "A Delete of an adopted group before the resource's first Update also hands it back
    as it was found instead of deleting it"; "only a successful Update makes the group the
    adopter's own"; "Rollbacks restore exactly". The Update that would have made the group the
    stack's own was rolled back: the stack is as it was after the adoption, and its deletion
    must hand the group back. Found: ``adopted`` (and ``taken_from``) are dropped by the forward
    Update and not restored by the rollback, so the stack's Delete deletes the whole group that
    existed before the stack (bob's access, the hand-made policy, the p1 attachment).
    """
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    before = snapshot(iam, "Jets")
    stack = Stack(controller_sender(iam, registry))
    props = {"Users": "alice", "AdoptExistingGroup": "true"}  # Exclusive: bob and p1 go
    assert stack.create(props).ok
    assert stack.update({**props, "Users": "alice,carol"}, stack_rolls_back=True).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


# == a dead adoption, then CloudFormation's Delete with an id of its own =========================


def test_a_dead_adoption_is_handed_back_not_deleted_by_the_delete_with_cloudformations_id(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Stack S1 owns "Jets" (alice, bob). Stack S2 adopts it (AdoptExistingGroup true, the
    migration the README describes); S2's invocation dies after its write-ahead and its first
    IAM writes (out of memory, the sandbox recycled) and never answers. CloudFormation fails
    the Create at ServiceTimeout and rolls back with Delete, sending a PhysicalResourceId of
    its own invention.

    README: "An adoption is handed back on every kind of failure (IAM, the deadline, the
    network): members, policy documents, attachments and path exactly as found ... If even the
    hand-back fails, CloudFormation's rollback Delete ... finishes it from the undo record".
    Expected: the group as S1 had it, the claim back to S1. Found: the new
    ``_orphan_of_a_dead_create`` takes the adopted group for one the dead Create *made* and
    deletes it whole: S1's group, its members' access and S1's claim are gone.
    """
    s1 = Stack(controller_sender(iam, registry))
    assert s1.create({"Users": "alice,bob"}).ok
    found = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)
    props = {"Users": "alice,carol", "AdoptExistingGroup": "true"}
    strict.before_write("AddUserToGroup", crash)  # after RemoveUserFromGroup bob
    with pytest.raises(SystemExit):
        send(event("Create", props, stack=OTHER_STACK))
    gone = send(event("Delete", props, GENERATED, stack=OTHER_STACK))
    assert gone.ok, gone.reason
    assert snapshot(iam, "Jets") == found
    assert owner(registry) == S1


# == the removal of a dead Create's group x a group the record kept ==============================


def test_a_dead_creates_rollback_delete_does_not_delete_a_group_the_resource_kept(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """A non-exclusive resource (Exclusive false) of stack S1 manages "Jets", to which dave was
    added by hand. The resource is removed from the template: its Delete keeps the group (dave,
    foreign content, remains; README: "with Exclusive false, if foreign content remains, the
    group is kept with it"). Months later the same logical id is added back for another group,
    "JetsTwo"; that Create's invocation dies after its write-ahead and CloudFormation rolls it
    back with Delete under an id of its own.

    README: "A Create that died after CreateGroup ... the rollback Delete ... removes that group
    when the record shows it was this resource's Create that made it"; "Delete acts only on the
    group named by the physical id". The dead Create made nothing (or only JetsTwo). Found:
    ``_orphan_of_a_dead_create`` walks every group of the record, finds the kept "Jets" first
    and deletes it whole - dave's hand-granted membership and the group with it.
    """
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice", "Exclusive": "false"}).ok
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    assert stack.delete().ok  # removed from the template: kept, dave remains
    kept = snapshot(iam, "Jets")
    assert kept is not None
    assert kept["members"] == {"dave"}

    send = controller_sender(iam, registry)
    props = {"GroupName": "JetsTwo", "Users": "bob"}
    strict.before_write("CreateGroup", crash)
    with pytest.raises(SystemExit):
        send(event("Create", props))
    gone = send(event("Delete", props, GENERATED))
    assert gone.ok, gone.reason
    assert snapshot(iam, "Jets") == kept


# == the drift check's rename-back x IAM's eventual consistency ==================================


def test_a_revocation_right_after_the_rename_back_is_not_skipped_on_a_stale_no_such_entity(
    iam: IAMClient, strict: StrictIam, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """Someone renames the registered group by hand (``update-group --new-group-name Hidden``)
    and adds carol to it. The drift check (DriftAction correct) finds it by its GroupId and
    plans: rename Hidden back to Jets, then remove carol. IAM is eventually consistent: right
    after the rename, calls naming "Jets" may answer NoSuchEntity for a moment (here: the
    RemoveUserFromGroup and the confirming GetGroup).

    SPEC: "Eventual consistency: right after CreateGroup, calls naming the group can return
    NoSuchEntity for a while: retry those with backoff"; applier.py: "right after CreateGroup
    (or a rename) IAM may answer NoSuchEntity for the new name for a while: calls naming such a
    group are retried"; README (registry): "a later revocation must never be silently skipped".
    Found: only CreateGroup marks a name fresh; after the rename-back, NoSuchEntity on the
    removal is taken for "already removed", the confirming read agrees (same lag), and the
    correction reports success while carol keeps the group's admin-equivalent rights.
    """
    stack = Stack(controller_sender(iam, registry))
    assert stack.create({"Users": "alice,bob", "DriftAction": "correct"}).ok
    deployed = snapshot(iam, "Jets")
    iam.update_group(GroupName="Jets", NewGroupName="Hidden")
    iam.add_user_to_group(GroupName="Hidden", UserName="carol")

    def not_propagated_yet() -> None:  # what the next calls naming "Jets" see
        strict.inject("RemoveUserFromGroup", "NoSuchEntity")
        strict.inject("GetGroup", "NoSuchEntity")

    strict.before_write("UpdateGroup", not_propagated_yet)
    drift = Controller(iam, registry).check_drift(S1, ENV)
    assert drift.corrected
    strict.clear_faults()
    assert snapshot(iam, "Hidden") is None
    assert snapshot(iam, "Jets") == deployed  # carol removed
