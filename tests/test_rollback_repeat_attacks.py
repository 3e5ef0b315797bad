"""A seventh attack, on c48d57d / 37ce07a: a rollback keeps the reversed Update's undo record
instead of writing its own (``_finish_rollback``), the rollback's plan drops what was deleted
from IAM since (``restorable``), a refused Update records an empty undo record
(``_refused_first``). Each test is a sequence CloudFormation, Lambda, IAM or an operator really
produces; its docstring states the sequence, the rule it breaks (quoted from SPEC.md /
README.md) and what happens. Every test here fails on the code it was written against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers import controller_sender, event, snapshot
from jets_deploy_iam.registry.store import DynamoDBRegistry

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


# == the same rollback served twice ==============================================================


def test_a_rollback_sent_again_does_not_remove_a_member_added_by_hand_meanwhile(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """S1 owns "Jets" with Exclusive false (alice). A deploy grants carol (Users alice,carol);
    it succeeds, another resource fails, and CloudFormation sends this resource's rollback
    Update: carol is removed and answered SUCCESS, but the answer never reaches CloudFormation
    (the invocation dies after recording it, or the PUT to the presigned URL fails): at
    ServiceTimeout CloudFormation fails the rollback and the stack is UPDATE_ROLLBACK_FAILED.
    While the team investigates, an admin adds carol to the group by hand - the group is
    non-exclusive, so hand-made grants are legitimate and the resource must leave them. The
    operator then runs continue-update-rollback: the same rollback Update, new RequestId.

    README: "`Exclusive` ... `false`: the resource only ever removes what it added itself;
    whatever was on the group before the resource declared it stays"; undo.py: "Restoring
    touches only those items, so anything someone added by hand meanwhile is left alone, and
    restoring twice changes nothing the second time." Found: the first rollback kept the
    reversed Update's undo record (carol: not a member before), so the second is served from it
    again and removes carol - a member the resource did not add (after the first rollback she
    was foreign: the record does not own her) - and answers SUCCESS.
    """
    send = controller_sender(iam, registry, config)
    a = {"Users": "alice", "Exclusive": "false"}
    b = {"Users": "alice,carol", "Exclusive": "false"}
    assert send(event("Create", a)).ok
    assert send(event("Update", b, "Jets", a)).ok
    back = send(event("Update", a, "Jets", b))
    assert back.ok, back.reason  # ... but CloudFormation never hears it
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}

    iam.add_user_to_group(GroupName="Jets", UserName="carol")  # by hand, a legitimate grant
    again = send(event("Update", a, "Jets", b))  # continue-update-rollback
    assert again.ok, again.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "carol"}, "a member added by hand was removed"


# == what was deleted from IAM since, outside the rollback Update =================================


def test_deleting_an_adopting_stack_after_a_found_member_was_deleted_does_not_fail_forever(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """The Jets docs' hand-made group "Jets" exists with alice and dave. A stack adopts it
    (AdoptExistingGroup true, Users alice; Exclusive true, so dave is removed) and is never
    updated after. Months later dave leaves and his IAM user is deleted. Then the stack is
    deleted (or, the same request, CloudFormation rolls back the deploy that adopted it).

    README: "A Delete of an adopted group before the resource's first Update also hands it back
    as it was found instead of deleting it: CloudFormation's rollback of the deploy that adopted
    it ... looks exactly like that"; "A member whose IAM user, or a managed policy, was deleted
    since the reversed Update cannot be put back: the rollback skips it ... instead of leaving
    the stack in `UPDATE_ROLLBACK_FAILED`"; "a missing group is success". The hand-back is
    that rollback for an adoption: dave cannot be put back, alice is. Found: ``restorable``
    filters only a rollback Update's plan; the Delete's hand-back plan re-adds dave, IAM
    answers NoSuchEntity, and the Delete FAILS - every time CloudFormation sends it: the stack
    ends in DELETE_FAILED (or ROLLBACK_FAILED) with no way out but retaining the resource.
    """
    iam.create_group(GroupName="Jets")
    for user in ("alice", "dave"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    send = controller_sender(iam, registry, config)
    props = {"Users": "alice", "AdoptExistingGroup": "true"}
    assert send(event("Create", props)).ok
    iam.delete_user(UserName="dave")  # not a member any more: IAM lets it go

    for _try in range(2):
        gone = send(event("Delete", props, "Jets"))
        assert gone.ok, gone.reason
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}


# == the rollback of a refused Update =============================================================


def test_the_rollback_of_a_refused_update_does_not_fail_on_drift_it_did_not_cause(
    iam: IAMClient, registry: DynamoDBRegistry, config: Any, world: dict[str, str]
) -> None:
    """S1 owns "Jets" (Users alice,bob; DriftAction report, the default). Between deploys an
    admin moves alice around by hand: removes her from "Jets" and puts her in ten other
    groups, IAM's maximum (the drift check reports it; nothing corrects it). The operator
    deploys Users alice,bob,carol: the pre-flight refuses it (alice is already in 10 groups),
    nothing is written, and CloudFormation sends the rollback Update (properties swapped), then
    the same again on continue-update-rollback.

    README: "After a failed Update (which wrote nothing, or undid its own writes) the rollback
    changes nothing, and does not fail either"; commit 37ce07a: "a refused Update ... records
    an empty undo record so its rollback changes nothing and cannot fail". Found: the empty
    undo record touches nothing, so the rollback's "extra" part is the whole
    reconciliation of the old properties against the drifted group: it plans to add alice back,
    its own pre-flight refuses that for the same reason, and the rollback FAILS, every time it is
    sent: the stack is stuck in UPDATE_ROLLBACK_FAILED over drift the refused Update never
    touched.
    """
    send = controller_sender(iam, registry, config)
    a = {"Users": "alice,bob"}
    assert send(event("Create", a)).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")  # by hand
    for i in range(10):
        iam.create_group(GroupName=f"Other{i}")
        iam.add_user_to_group(GroupName=f"Other{i}", UserName="alice")
    before = snapshot(iam, "Jets")

    b = {"Users": "alice,bob,carol"}
    refused = send(event("Update", b, "Jets", a))
    assert not refused.ok
    assert "alice" in refused.reason
    for _try in range(2):  # the rollback, then continue-update-rollback
        back = send(event("Update", a, "Jets", b))
        assert back.ok, back.reason
    assert snapshot(iam, "Jets") == before
