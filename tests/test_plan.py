"""The planner, without AWS: revocations first, exclusive vs owned-only removals, the copy of a
rename, deletes that keep foreign content, undo records, ownership, semantic policy compare."""

from __future__ import annotations

from typing import Any

from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.plan import (
    AddMember,
    AttachPolicy,
    CreateGroup,
    DeleteGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    PutPolicy,
    RemoveMember,
    UpdateGroup,
    copied_content,
    plan_copy,
    plan_delete,
    plan_reconcile,
)
from jets_deploy_iam.spec import DeclaredGroup, Environment, parse_properties
from jets_deploy_iam.state import ActualGroup
from jets_deploy_iam.undo import Undo

ENV = Environment("aws", "111122223333")
P1 = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
P2 = "arn:aws:iam::aws:policy/ReadOnlyAccess"
FOREIGN = "arn:aws:iam::111122223333:policy/HandMade"


def declared(**props: Any) -> DeclaredGroup:
    return parse_properties(props, ENV)


def actual_of(spec: DeclaredGroup, **overrides: Any) -> ActualGroup:
    """The group exactly as ``spec`` declares it, with overrides (drift)."""
    values: dict[str, Any] = {
        "name": spec.group_name,
        "path": spec.path,
        "arn": f"arn:aws:iam::111122223333:group{spec.path}{spec.group_name}",
        "group_id": "AGPAEXAMPLE",
        "members": frozenset(spec.users),
        "inline_policies": {spec.policy_name: spec.policy_document},
        "managed_policy_arns": frozenset(spec.managed_policy_arns),
    }
    values.update(overrides)
    return ActualGroup(**values)


def test_create_orders_group_policy_attachments_members() -> None:
    spec = declared(Users="alice,bob", ManagedPolicyArns=P1)
    plan = plan_reconcile(spec, None)
    kinds = [type(c) for c in plan]
    assert kinds == [CreateGroup, PutPolicy, AttachPolicy, AddMember, AddMember]
    assert str(plan).splitlines() == [
        "+ create group Jets (path /)",
        "+ put policy JetsPolicy",
        f"+ attach {P1}",
        "+ add user alice",
        "+ add user bob",
    ]


def test_no_op_plan_is_empty() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    plan = plan_reconcile(spec, actual_of(spec), Ownership(members=frozenset({"alice"})))
    assert not plan
    assert str(plan) == "no changes"


def test_policy_returned_reordered_is_not_reput() -> None:
    spec = declared(Services="s3,lambda")
    reordered = {
        "Statement": {"Resource": "*", "Action": ["lambda:*", "s3:*"], "Effect": "Allow"},
        "Version": "2012-10-17",
    }
    plan = plan_reconcile(spec, actual_of(spec, inline_policies={"JetsPolicy": reordered}))
    assert not plan


def test_edited_policy_is_put_with_the_action_delta() -> None:
    spec = declared(Services="s3,lambda")
    edited = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "ec2:*"], "Resource": "*"}],
    }
    (change,) = plan_reconcile(spec, actual_of(spec, inline_policies={"JetsPolicy": edited}))
    assert isinstance(change, PutPolicy)
    assert str(change) == "~ policy JetsPolicy (+lambda:* -ec2:*)"


OTHER = declared(Services="s3").policy_document


def test_exclusive_removes_everything_undeclared_revocations_first() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    drifted = actual_of(
        spec,
        members=frozenset({"alice", "mallory"}),
        managed_policy_arns=frozenset({P1, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Extra": spec.policy_document},
    )
    plan = plan_reconcile(spec, drifted)
    assert [str(c) for c in plan] == [
        "- remove user mallory",
        "- delete inline policy Extra",
        f"- detach {FOREIGN}",
    ]


def test_every_plan_revokes_before_it_grants() -> None:
    previous = declared(Users="alice,bob", ManagedPolicyArns=P1, Services="s3")
    spec = declared(Users="alice,carol", ManagedPolicyArns=P2, Services="s3,iam")
    plan = plan_reconcile(spec, actual_of(previous))
    assert [str(c) for c in plan] == [
        "- remove user bob",
        f"- detach {P1}",
        "~ policy JetsPolicy (+iam:*)",
        f"+ attach {P2}",
        "+ add user carol",
    ]


def test_non_exclusive_removes_only_what_it_owns() -> None:
    spec = declared(Users="alice,carol", ManagedPolicyArns=P1, Exclusive="false")
    current = actual_of(
        spec,
        members=frozenset({"alice", "bob", "mallory"}),
        managed_policy_arns=frozenset({P1, P2, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Foreign": OTHER, "Old": OTHER},
    )
    owned = Ownership(
        members=frozenset({"alice", "bob"}),
        attached=frozenset({P1, P2}),
        inline=frozenset({"JetsPolicy", "Old"}),
    )
    assert [str(c) for c in plan_reconcile(spec, current, owned)] == [
        "- remove user bob",
        "- delete inline policy Old",
        f"- detach {P2}",
        "+ add user carol",
    ]


def test_non_exclusive_owning_nothing_only_adds() -> None:
    spec = declared(Users="alice", Exclusive="false")
    current = actual_of(spec, members=frozenset({"mallory"}))
    assert [str(c) for c in plan_reconcile(spec, current)] == ["+ add user alice"]


def test_undeclared_foreign_policy_it_overwrote_is_restored_not_deleted() -> None:
    spec = declared(PolicyName="New", Exclusive="false")
    current = actual_of(
        spec, inline_policies={"New": spec.policy_document, "Old": spec.policy_document}
    )
    owned = Ownership(inline=frozenset({"New", "Old"}), originals={"Old": OTHER})
    (restore,) = plan_reconcile(spec, current, owned)
    assert isinstance(restore, PutPolicy)
    assert restore.restores
    assert restore.document == OTHER
    assert str(restore).startswith("~ restore policy Old")


def test_path_change_is_a_move_in_place() -> None:
    (change,) = plan_reconcile(declared(GroupPath="/deploy/"), actual_of(declared()))
    assert change == UpdateGroup("Jets", "/deploy/")
    assert str(change) == "~ move group Jets to path /deploy/"


def test_in_place_planning_refuses_another_groups_name() -> None:
    import pytest

    with pytest.raises(ValueError, match="in place"):
        plan_reconcile(declared(GroupName="Other"), actual_of(declared()))


def test_rename_copies_declared_and_foreign_content_into_a_new_group() -> None:
    spec = declared(GroupName="New", Users="alice,carol", ManagedPolicyArns=P1, Exclusive="false")
    old = actual_of(
        declared(Users="alice,bob", ManagedPolicyArns=P1),
        members=frozenset({"alice", "bob", "mallory"}),
        inline_policies={"JetsPolicy": OTHER, "Handmade": OTHER},
    )
    owned = Ownership(members=frozenset({"alice", "bob"}), attached=frozenset({P1}),
                      inline=frozenset({"JetsPolicy"}))  # fmt: skip
    target = copied_content(spec, old, owned)
    assert target.members == {"alice", "carol", "mallory"}  # bob was ours and is undeclared
    assert set(target.inline_policies) == {"JetsPolicy", "Handmade"}
    plan = plan_copy(target)
    assert plan.changes[0] == CreateGroup("New", "/")
    assert {c.group for c in plan} == {"New"}  # the old group is never touched
    assert {c.user for c in plan.of_type(AddMember)} == {"alice", "carol", "mallory"}
    copied = owned.for_copy(old, target)
    assert copied.members == {"alice", "carol"}  # mallory stays foreign in the new group


def test_exclusive_rename_copies_only_the_declaration() -> None:
    spec = declared(GroupName="New", Users="alice")
    old = actual_of(declared(Users="alice"), members=frozenset({"alice", "mallory"}))
    assert copied_content(spec, old, Ownership()).members == {"alice"}


def test_continuing_an_interrupted_copy_plans_only_what_is_missing() -> None:
    spec = declared(GroupName="New", Users="alice,bob")
    target = copied_content(spec, actual_of(declared(Users="alice,bob")), Ownership())
    half = actual_of(spec, members=frozenset({"alice"}), inline_policies={})
    assert [str(c) for c in plan_copy(target, half)] == [
        "+ put policy JetsPolicy",
        "+ add user bob",
    ]


def test_whole_delete_empties_then_deletes() -> None:
    spec = declared(Users="bob,alice", ManagedPolicyArns=P1)
    plan = plan_delete(actual_of(spec))
    assert [type(c) for c in plan] == [
        RemoveMember,
        RemoveMember,
        DeletePolicy,
        DetachPolicy,
        DeleteGroup,
    ]


def test_owned_only_delete_keeps_the_group_when_foreign_content_remains() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    current = actual_of(spec, members=frozenset({"alice", "mallory"}))
    owned = Ownership(members=frozenset({"alice"}), attached=frozenset({P1}),
                      inline=frozenset({"JetsPolicy"}))  # fmt: skip
    plan = plan_delete(current, owned, whole=False)
    assert [str(c) for c in plan] == [
        "- remove user alice",
        "- delete inline policy JetsPolicy",
        f"- detach {P1}",
    ]
    everything = Ownership(members=frozenset({"alice", "mallory"}), attached=frozenset({P1}),
                           inline=frozenset({"JetsPolicy"}))  # fmt: skip
    assert plan_delete(current, everything, whole=False).changes[-1] == DeleteGroup("Jets")


def test_delete_of_missing_group_is_empty() -> None:
    assert not plan_delete(None)


def test_member_changes_may_run_concurrently_nothing_else() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    concurrent = {type(c) for c in plan_reconcile(spec, None) if c.concurrent}
    assert concurrent == {AddMember}


# -- undo records -------------------------------------------------------------------------------


def test_undo_restores_exactly_the_items_a_plan_touched() -> None:
    previous = declared(Users="alice,bob", ManagedPolicyArns=P1, GroupPath="/a/")
    before = actual_of(previous, inline_policies={"JetsPolicy": OTHER, "Extra": OTHER})
    spec = declared(Users="alice,carol", ManagedPolicyArns=P2, GroupPath="/b/")
    plan = plan_reconcile(spec, before)
    undo = Undo.of(plan, before, Ownership(members=frozenset({"bob"})))
    after = actual_of(spec, members=frozenset({"alice", "carol", "mallory"}))  # mallory: by hand
    assert [str(c) for c in undo.restore_plan(after)] == [
        "~ move group Jets to path /a/",
        "- remove user carol",
        f"- detach {P2}",
        "+ put policy Extra",
        "~ policy JetsPolicy (-apigateway:* -cloudformation:* -dynamodb:* -events:* "
        "-iam:* -lambda:* -logs:* -route53:*)",
        f"+ attach {P1}",
        "+ add user bob",
    ]
    assert not undo.restore_plan(before)  # restoring twice changes nothing the second time
    assert undo.restore_ownership(Ownership(members=frozenset({"carol"}))).members == {"bob"}


def test_undo_of_a_plan_that_created_the_group_removes_it_whole() -> None:
    spec = declared(Users="alice")
    undo = Undo.of(plan_reconcile(spec, None), None, Ownership())
    assert undo.created
    assert [type(c) for c in undo.restore_plan(actual_of(spec))] == [
        RemoveMember, DeletePolicy, DeleteGroup,
    ]  # fmt: skip


def test_an_empty_plan_has_an_empty_undo_record() -> None:
    spec = declared(Users="alice")
    undo = Undo.of(Plan(), actual_of(spec), Ownership())
    assert undo.empty
    assert not undo.restore_plan(actual_of(spec, members=frozenset({"mallory"})))


# -- ownership ----------------------------------------------------------------------------------


def test_additions_are_claimed_before_and_removals_settled_after() -> None:
    spec = declared(Users="alice,carol", ManagedPolicyArns=P2)
    before = actual_of(
        declared(Users="alice,bob", ManagedPolicyArns=P1), inline_policies={"JetsPolicy": OTHER}
    )
    plan = plan_reconcile(spec, before)
    owned = Ownership(members=frozenset({"bob"}), attached=frozenset({P1}))
    claimed = owned.claim(plan, before)
    assert claimed.members == {"bob", "carol"}  # carol counts as owned before she is added
    assert claimed.attached == {P1, P2}
    assert claimed.originals == {"JetsPolicy": OTHER}  # a foreign document it overwrites
    settled = claimed.settle(plan)
    assert settled.members == {"carol"}
    assert settled.attached == {P2}
    assert Ownership(members=frozenset({"x"})).settle([DeleteGroup("Jets")]) == Ownership()
