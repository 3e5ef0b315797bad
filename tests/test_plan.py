"""The planner, without AWS: exclusive vs non-exclusive, rename/move, semantic policy compare."""

from __future__ import annotations

from typing import Any

from jets_deploy_iam.plan import (
    AddMember,
    AttachPolicy,
    CreateGroup,
    DeleteGroup,
    DeletePolicy,
    DetachPolicy,
    PutPolicy,
    RemoveMember,
    UpdateGroup,
    plan_delete,
    plan_reconcile,
    plan_restore,
)
from jets_deploy_iam.spec import DeclaredGroup, Environment, parse_properties
from jets_deploy_iam.state import ActualGroup

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
    plan = plan_reconcile(spec, actual_of(spec), previous=spec)
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


def test_exclusive_removes_everything_undeclared() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    drifted = actual_of(
        spec,
        members=frozenset({"alice", "mallory"}),
        managed_policy_arns=frozenset({P1, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Extra": spec.policy_document},
    )
    plan = plan_reconcile(spec, drifted)
    assert [str(c) for c in plan] == [
        "- delete inline policy Extra",
        f"- detach {FOREIGN}",
        "- remove user mallory",
    ]


def test_non_exclusive_keeps_foreign_items_and_removes_only_previous_ones() -> None:
    previous = declared(Users="alice,bob", ManagedPolicyArns=f"{P1},{P2}", Exclusive="false")
    spec = declared(Users="alice,carol", ManagedPolicyArns=P1, Exclusive="false")
    current = actual_of(
        previous,
        members=frozenset({"alice", "bob", "mallory"}),
        managed_policy_arns=frozenset({P1, P2, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Foreign": spec.policy_document},
    )
    plan = plan_reconcile(spec, current, previous)
    assert [str(c) for c in plan] == [
        f"- detach {P2}",
        "+ add user carol",
        "- remove user bob",
    ]


def test_non_exclusive_without_previous_only_adds() -> None:
    spec = declared(Users="alice", Exclusive="false")
    current = actual_of(spec, members=frozenset({"mallory"}))
    assert [str(c) for c in plan_reconcile(spec, current, None)] == ["+ add user alice"]


def test_policy_rename_deletes_the_old_inline_policy_first() -> None:
    previous = declared(PolicyName="Old")
    spec = declared(PolicyName="New", Exclusive="false")
    current = actual_of(previous)
    plan = plan_reconcile(spec, current, previous)
    assert [type(c) for c in plan] == [DeletePolicy, PutPolicy]
    assert plan.changes[0] == DeletePolicy("Jets", "Old")


def test_rename_is_in_place_and_later_changes_use_the_new_name() -> None:
    previous = declared(GroupName="Jets", Users="alice")
    spec = declared(GroupName="Deployers", Users="alice,bob")
    plan = plan_reconcile(spec, actual_of(previous), previous)
    assert plan.changes == (
        UpdateGroup("Jets", new_name="Deployers", new_path=None),
        AddMember("Deployers", "bob"),
    )
    assert str(plan.changes[0]) == "~ rename group Jets -> Deployers"


def test_path_change_is_a_move() -> None:
    previous = declared()
    spec = declared(GroupPath="/deploy/")
    (change,) = plan_reconcile(spec, actual_of(previous), previous)
    assert change == UpdateGroup("Jets", new_name=None, new_path="/deploy/")
    assert "move group Jets to path /deploy/" in str(change)


def test_detach_comes_before_attach_to_respect_the_limit() -> None:
    previous = declared(ManagedPolicyArns=P1)
    spec = declared(ManagedPolicyArns=P2)
    plan = plan_reconcile(spec, actual_of(previous), previous)
    assert plan.changes == (DetachPolicy("Jets", P1), AttachPolicy("Jets", P2))


def test_delete_empties_then_deletes() -> None:
    spec = declared(Users="bob,alice", ManagedPolicyArns=P1)
    plan = plan_delete(actual_of(spec))
    assert [type(c) for c in plan] == [
        RemoveMember,
        RemoveMember,
        DeletePolicy,
        DetachPolicy,
        DeleteGroup,
    ]


def test_delete_of_missing_group_is_empty() -> None:
    assert not plan_delete(None)


def test_member_changes_may_run_concurrently_nothing_else() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    concurrent = {type(c) for c in plan_reconcile(spec, None) if c.concurrent}
    assert concurrent == {AddMember}


def test_restore_puts_a_group_back_exactly_as_found() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    other = declared(Services="s3")
    found = actual_of(
        spec,
        members=frozenset({"bob", "mallory"}),
        inline_policies={"Handmade": other.policy_document, "Second": spec.policy_document},
        managed_policy_arns=frozenset({FOREIGN}),
    )
    half_done = actual_of(
        spec,
        members=frozenset({"alice", "bob"}),
        inline_policies={"JetsPolicy": spec.policy_document, "Second": other.policy_document},
        managed_policy_arns=frozenset({P1}),
    )
    assert [str(c) for c in plan_restore(found, half_done)] == [
        "- delete inline policy JetsPolicy",
        "+ put policy Handmade",
        "~ policy Second (+apigateway:* +cloudformation:* +dynamodb:* +events:* +iam:* "
        "+lambda:* +logs:* +route53:*)",
        f"- detach {P1}",
        f"+ attach {FOREIGN}",
        "+ add user mallory",
        "- remove user alice",
    ]
    assert not plan_restore(found, found)
