"""The planner, without AWS: revocations first, exclusive vs owned-only removals, the copy of a
rename, deletes that keep foreign content, undo records, ownership, semantic policy compare."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jets_deploy_iam.ownership import Ownership, legacy_ownership
from jets_deploy_iam.plan import (
    AddMember,
    AttachPolicy,
    Change,
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
    state_after,
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


# -- every change acts on the plan's group, with the item it names --------------------------------


def test_an_update_plan_names_its_group_in_every_change() -> None:
    previous = declared(Users="alice,bob", ManagedPolicyArns=P1, Services="s3")
    spec = declared(Users="alice,carol", ManagedPolicyArns=P2, Services="s3,iam")
    before = actual_of(previous, inline_policies={"JetsPolicy": OTHER, "Extra": OTHER})
    assert plan_reconcile(spec, before).changes == (
        RemoveMember("Jets", "bob"),
        DeletePolicy("Jets", "Extra"),
        DetachPolicy("Jets", P1),
        PutPolicy(
            "Jets",
            "JetsPolicy",
            spec.policy_document,
            added_actions=frozenset({"iam:*"}),
            replaces=True,
        ),
        AttachPolicy("Jets", P2),
        AddMember("Jets", "carol"),
    )


def test_a_create_plan_puts_the_declared_document_on_the_declared_group() -> None:
    spec = declared(GroupName="Deployers", GroupPath="/ci/", Users="alice", ManagedPolicyArns=P1)
    assert plan_reconcile(spec, None).changes == (
        CreateGroup("Deployers", "/ci/"),
        PutPolicy(
            "Deployers",
            "JetsPolicy",
            spec.policy_document,
            added_actions=policy_actions(spec.policy_document),
        ),
        AttachPolicy("Deployers", P1),
        AddMember("Deployers", "alice"),
    )


def policy_actions(document: Any) -> frozenset[str]:
    return frozenset(document["Statement"][0]["Action"])


def test_a_whole_delete_names_the_group_in_every_change() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    current = actual_of(spec, inline_policies={"JetsPolicy": OTHER, "Extra": OTHER})
    assert plan_delete(current).changes == (
        RemoveMember("Jets", "alice"),
        DeletePolicy("Jets", "Extra"),
        DeletePolicy("Jets", "JetsPolicy"),
        DetachPolicy("Jets", P1),
        DeleteGroup("Jets"),
    )


def test_an_owned_only_delete_names_the_group_and_puts_overwritten_documents_back() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1, PolicyName="Mine")
    current = actual_of(
        spec,
        inline_policies={"Mine": spec.policy_document, "Shared": spec.policy_document},
    )
    owned = Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P1}),
        inline=frozenset({"Mine", "Shared"}),
        originals={"Shared": OTHER},
    )
    plan = plan_delete(current, owned, whole=False)
    assert plan.changes[:3] == (
        RemoveMember("Jets", "alice"),
        DeletePolicy("Jets", "Mine"),
        DetachPolicy("Jets", P1),
    )
    (restore,) = plan.of_type(PutPolicy)
    assert (restore.group, restore.policy_name, restore.document) == ("Jets", "Shared", OTHER)
    assert restore.restores
    assert restore.replaces
    # The restored document is someone else's: the group stays with it.
    assert not plan.of_type(DeleteGroup)


def test_an_owned_only_delete_restores_a_document_already_back_to_its_original() -> None:
    """Someone put the original document back by hand: the restore still hands the policy
    back (ownership drops), and IAM is asked for the same document (a harmless re-put)."""
    spec = declared(PolicyName="Shared")
    current = actual_of(spec, inline_policies={"Shared": OTHER})
    owned = Ownership(inline=frozenset({"Shared"}), originals={"Shared": OTHER})
    (restore,) = plan_delete(current, owned, whole=False)
    assert restore == PutPolicy("Jets", "Shared", OTHER, replaces=True, restores=True)


def test_an_owned_only_delete_ignores_owned_items_already_gone_from_the_group() -> None:
    """What the registry says it owns but someone already removed by hand is not removed
    again (IAM would answer NoSuchEntity) and never makes the group look foreign."""
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    current = actual_of(spec, members=frozenset(), managed_policy_arns=frozenset(),
                        inline_policies={})  # fmt: skip
    owned = Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P1}),
        inline=frozenset({"JetsPolicy"}),
        originals={"JetsPolicy": OTHER},
    )
    assert plan_delete(current, owned, whole=False).changes == (DeleteGroup("Jets"),)


# -- non-exclusive resources: they revoke what they added, and only that --------------------------


def test_a_non_exclusive_update_revokes_the_previous_declaration_it_replaces() -> None:
    """The previous declaration (owned) replaced by nothing: every item it added goes."""
    spec = declared(Services="s3", Exclusive="false")
    current = actual_of(
        declared(Users="alice,bob", ManagedPolicyArns=P1, Services="s3"),
        members=frozenset({"alice", "bob", "mallory"}),
        managed_policy_arns=frozenset({P1, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Old": OTHER, "Theirs": OTHER},
    )
    owned = Ownership(
        members=frozenset({"alice", "bob"}),
        attached=frozenset({P1}),
        inline=frozenset({"JetsPolicy", "Old"}),
    )
    assert plan_reconcile(spec, current, owned).changes == (
        RemoveMember("Jets", "alice"),
        RemoveMember("Jets", "bob"),
        DeletePolicy("Jets", "Old"),
        DetachPolicy("Jets", P1),
    )


def test_a_non_exclusive_update_puts_back_a_foreign_document_it_no_longer_declares() -> None:
    spec = declared(PolicyName="New", Exclusive="false")
    current = actual_of(
        spec, inline_policies={"New": spec.policy_document, "Old": spec.policy_document}
    )
    owned = Ownership(inline=frozenset({"New", "Old"}), originals={"Old": OTHER})
    (restore,) = plan_reconcile(spec, current, owned)
    assert (restore.group, restore.policy_name) == ("Jets", "Old")
    assert restore.replaces


def test_an_exclusive_update_deletes_an_overwritten_policy_instead_of_restoring_it() -> None:
    """Exclusive: the group is exactly its declaration, so a foreign original is not put back."""
    spec = declared(PolicyName="New")
    current = actual_of(
        spec, inline_policies={"New": spec.policy_document, "Old": spec.policy_document}
    )
    owned = Ownership(inline=frozenset({"New", "Old"}), originals={"Old": OTHER})
    assert plan_reconcile(spec, current, owned).changes == (DeletePolicy("Jets", "Old"),)


def test_a_plan_is_true_exactly_when_it_has_changes() -> None:
    spec = declared(Users="alice")
    assert plan_reconcile(spec, None)
    assert len(plan_reconcile(spec, None)) == 3
    assert not plan_reconcile(spec, actual_of(spec))


def test_printed_plans_stay_bounded() -> None:
    plan = plan_reconcile(declared(Users=[f"u{i}" for i in range(150)]), None)
    lines = plan.lines()
    assert len(lines) == 101
    assert lines[:2] == [str(plan.changes[0]), str(plan.changes[1])]
    assert lines[-1].endswith(f" and {len(plan) - 100} more")
    assert plan.lines(limit=len(plan)) == str(plan).splitlines()


def test_a_policy_change_that_keeps_the_actions_says_what_else_changed() -> None:
    spec = declared(Services="s3")
    narrowed = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::x"]}],
    }
    (change,) = plan_reconcile(spec, actual_of(spec, inline_policies={"JetsPolicy": narrowed}))
    assert str(change) == "~ policy JetsPolicy (resources or conditions changed)"


def test_a_change_logs_what_an_operator_searches_for() -> None:
    change = RemoveMember("Jets", "alice")
    assert change.log_fields() == {
        "change": str(change),
        "change_type": "RemoveMember",
        "group": "Jets",
    }


# -- the copy of a rename -------------------------------------------------------------------------


def test_a_non_exclusive_rename_copies_foreign_attachments_beside_the_declared_ones() -> None:
    spec = declared(GroupName="New", ManagedPolicyArns=P1, Exclusive="false")
    old = actual_of(declared(ManagedPolicyArns=P2), managed_policy_arns=frozenset({P2, FOREIGN}))
    target = copied_content(spec, old, Ownership(attached=frozenset({P2})))
    assert target.managed_policy_arns == {P1, FOREIGN}  # P2 was ours and is undeclared
    assert (target.name, target.path) == ("New", "/")


def test_continuing_a_copy_corrects_the_partly_built_group_in_place() -> None:
    """An interrupted rename left the new group with a wrong path, an extra policy, attachment
    and member (someone acted in between): the continuation fixes each, on the new group."""
    spec = declared(GroupName="New", GroupPath="/ci/", Users="alice", ManagedPolicyArns=P1)
    target = copied_content(spec, actual_of(declared(Users="alice")), Ownership())
    half = ActualGroup(
        name="New",
        path="/",
        arn="arn:aws:iam::111122223333:group/New",
        group_id="AGPANEW",
        members=frozenset({"alice", "mallory"}),
        inline_policies={"JetsPolicy": spec.policy_document, "Stray": OTHER},
        managed_policy_arns=frozenset({P2}),
    )
    assert plan_copy(target, half).changes == (
        UpdateGroup("New", "/ci/"),
        RemoveMember("New", "mallory"),
        DeletePolicy("New", "Stray"),
        DetachPolicy("New", P2),
        AttachPolicy("New", P1),
    )


def test_a_new_copy_puts_every_policy_of_its_target() -> None:
    target = copied_content(
        declared(GroupName="New", Exclusive="false"),
        actual_of(declared(), inline_policies={"JetsPolicy": OTHER, "Theirs": OTHER}),
        Ownership(inline=frozenset({"JetsPolicy"})),
    )
    plan = plan_copy(target)
    puts = {(c.group, c.policy_name): c.document for c in plan.of_type(PutPolicy)}
    assert puts == {("New", "JetsPolicy"): declared().policy_document, ("New", "Theirs"): OTHER}


# -- ownership: what a non-exclusive resource may remove ------------------------------------------


def test_a_create_claims_everything_it_adds() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    claimed = Ownership().claim(plan_reconcile(spec, None), None)
    assert claimed == Ownership(
        members=frozenset({"alice"}), attached=frozenset({P1}), inline=frozenset({"JetsPolicy"})
    )


def test_re_putting_its_own_policy_records_no_foreign_original() -> None:
    """Only a document someone else wrote is kept to put back; the resource's own older
    document is not (undeclaring the policy must delete it, not restore our old version)."""
    spec = declared(Services="s3,iam")
    before = actual_of(spec, inline_policies={"JetsPolicy": OTHER})
    owned = Ownership(inline=frozenset({"JetsPolicy"}))
    claimed = owned.claim(plan_reconcile(spec, before), before)
    assert claimed.originals == {}
    assert claimed.inline == {"JetsPolicy"}


def test_restoring_a_foreign_document_hands_the_policy_back() -> None:
    spec = declared(PolicyName="New", Exclusive="false")
    current = actual_of(
        spec, inline_policies={"New": spec.policy_document, "Old": spec.policy_document}
    )
    owned = Ownership(inline=frozenset({"New", "Old"}), originals={"Old": OTHER})
    plan = plan_reconcile(spec, current, owned)
    claimed = owned.claim(plan, current)
    assert claimed.inline == {"New", "Old"}  # a restore claims nothing new
    settled = claimed.settle(plan)
    assert settled.inline == {"New"}
    assert settled.originals == {}


def test_settle_drops_deleted_policies_and_keeps_the_rest() -> None:
    owned = Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P1}),
        inline=frozenset({"A", "B"}),
        originals={"A": OTHER, "B": OTHER},
    )
    settled = owned.settle([DeletePolicy("Jets", "A")])
    assert settled == Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P1}),
        inline=frozenset({"B"}),
        originals={"B": OTHER},
    )
    assert settled.settle([DeletePolicy("Jets", "NeverOwned")]) == settled


def test_ownership_parts_are_selected_removed_and_merged_field_by_field() -> None:
    owned = Ownership(
        members=frozenset({"alice", "bob"}),
        attached=frozenset({P1, P2}),
        inline=frozenset({"A", "B"}),
        originals={"A": OTHER, "B": OTHER},
    )
    part = owned.only(members=["alice", "zed"], attached=[P1], inline=["A", "Z"])
    assert part == Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P1}),
        inline=frozenset({"A"}),
        originals={"A": OTHER},
    )
    rest = owned.without(members=["alice"], attached=[P1], inline=["A"])
    assert rest == Ownership(
        members=frozenset({"bob"}),
        attached=frozenset({P2}),
        inline=frozenset({"B"}),
        originals={"B": OTHER},
    )
    assert rest.merged(part) == owned
    assert rest.merged(part).originals == owned.originals


def test_foreign_content_is_anything_the_resource_did_not_add() -> None:
    spec = declared(Users="alice", ManagedPolicyArns=P1)
    mine = Ownership(
        members=frozenset({"alice"}), attached=frozenset({P1}), inline=frozenset({"JetsPolicy"})
    )
    assert not mine.foreign_in(actual_of(spec))
    assert mine.foreign_in(actual_of(spec, members=frozenset({"alice", "mallory"})))
    assert mine.foreign_in(actual_of(spec, managed_policy_arns=frozenset({P1, FOREIGN})))
    extra_policy = {"JetsPolicy": spec.policy_document, "Theirs": OTHER}
    assert mine.foreign_in(actual_of(spec, inline_policies=extra_policy))
    # A policy it overwrote is put back, not deleted: the group keeps foreign content.
    overwritten = replace(mine, originals={"JetsPolicy": OTHER})
    assert overwritten.foreign_in(actual_of(spec))


def test_a_legacy_resource_owns_what_it_declares_and_finds() -> None:
    group = actual_of(
        declared(Users="alice,mallory", ManagedPolicyArns=P1),
        inline_policies={"JetsPolicy": OTHER, "Theirs": OTHER},
    )
    owned = legacy_ownership(group, ["alice", "bob"], [P1, P2], "JetsPolicy")
    assert owned == Ownership(
        members=frozenset({"alice"}), attached=frozenset({P1}), inline=frozenset({"JetsPolicy"})
    )
    assert legacy_ownership(group, [], [], "Missing").inline == frozenset()


def test_the_copy_of_a_rename_keeps_foreign_items_foreign_and_owns_what_it_adds() -> None:
    spec = declared(GroupName="New", Users="alice,carol", ManagedPolicyArns=P1, Exclusive="false")
    old = actual_of(
        declared(Users="alice", ManagedPolicyArns=P2),
        members=frozenset({"alice", "mallory"}),
        managed_policy_arns=frozenset({P2, FOREIGN}),
        inline_policies={"JetsPolicy": spec.policy_document, "Theirs": OTHER, "Kept": OTHER},
    )
    owned = Ownership(
        members=frozenset({"alice"}),
        attached=frozenset({P2}),
        inline=frozenset({"JetsPolicy", "Kept"}),
        originals={"Kept": OTHER, "Gone": OTHER},
    )
    target = copied_content(spec, old, owned)
    copied = owned.for_copy(old, target)
    assert copied.members == {"alice", "carol"}
    assert copied.attached == {P1}  # P2 is not copied; FOREIGN stays foreign
    assert copied.inline == {"JetsPolicy"}  # Kept was ours and is not copied; Theirs is foreign
    assert copied.originals == {}


def test_the_copy_of_a_rename_owns_a_foreign_policy_it_overwrites_with_its_original() -> None:
    spec = declared(GroupName="New", PolicyName="Theirs", Exclusive="false")
    old = actual_of(declared(), inline_policies={"JetsPolicy": OTHER, "Theirs": OTHER})
    owned = Ownership(inline=frozenset({"JetsPolicy"}), originals={"JetsPolicy": OTHER})
    target = copied_content(spec, old, owned)
    copied = owned.for_copy(old, target)
    assert copied.inline == {"Theirs"}
    assert copied.originals == {"Theirs": OTHER}
    # The same document already there is not overwritten: nothing to keep or own.
    same = actual_of(declared(), inline_policies={"Theirs": spec.policy_document})
    assert Ownership().for_copy(same, copied_content(spec, same, Ownership())).inline == set()


# -- undo records: what goes back, on which group -------------------------------------------------


def test_restoring_names_the_group_and_the_items_it_puts_back() -> None:
    before = actual_of(
        declared(Users="alice", ManagedPolicyArns=P1), inline_policies={"JetsPolicy": OTHER}
    )
    spec = declared(Users="carol", ManagedPolicyArns=P2, Services="s3,iam")
    plan = plan_reconcile(spec, before)
    undo = Undo.of(plan, before, Ownership())
    after = actual_of(spec)
    assert undo.restore_plan(after).changes == (
        RemoveMember("Jets", "carol"),
        DetachPolicy("Jets", P2),
        PutPolicy(
            "Jets",
            "JetsPolicy",
            OTHER,
            removed_actions=frozenset({"iam:*"}),
            replaces=True,
        ),
        AttachPolicy("Jets", P1),
        AddMember("Jets", "alice"),
    )


def test_restoring_deletes_policies_the_plan_added_and_only_those_still_there() -> None:
    before = actual_of(declared(PolicyName="B"), inline_policies={})
    plan = Plan.of(
        [
            PutPolicy("Jets", "A", OTHER),
            PutPolicy("Jets", "B", OTHER),
            PutPolicy("Jets", "C", OTHER),
        ]
    )
    undo = Undo.of(plan, before, Ownership())
    now = actual_of(declared(), inline_policies={"B": OTHER, "C": OTHER})  # A deleted by hand
    assert undo.restore_plan(now).changes == (
        DeletePolicy("Jets", "B"),
        DeletePolicy("Jets", "C"),
    )


def test_the_undo_record_of_a_plan_that_changes_nothing_names_the_group() -> None:
    spec = declared(Users="alice")
    assert Undo.of(Plan(), actual_of(spec), Ownership()).group == "Jets"
    assert not Undo.of(Plan(), None, Ownership()).touches(AddMember("Jets", "alice"))


def test_a_plan_that_creates_the_group_is_undone_by_deleting_it() -> None:
    """Even when a stale read still showed the group (it was deleted by hand meanwhile)."""
    spec = declared(GroupName="New", Users="alice")
    stale = actual_of(spec)
    undo = Undo.of(Plan.of([CreateGroup("New", "/")]), stale, Ownership())
    assert undo == Undo(group="New", created=True)
    assert undo.restore_plan(actual_of(spec)).changes[-1] == DeleteGroup("New")


def test_an_undo_record_touches_exactly_the_items_it_restores() -> None:
    before = actual_of(declared(Users="alice", ManagedPolicyArns=P1, GroupPath="/a/"))
    spec = declared(Users="bob", ManagedPolicyArns=P2, PolicyName="Other")
    undo = Undo.of(plan_reconcile(spec, before), before, Ownership())
    touched = [
        UpdateGroup("Jets", "/"),
        AddMember("Jets", "alice"),
        RemoveMember("Jets", "bob"),
        AttachPolicy("Jets", P1),
        DetachPolicy("Jets", P2),
        PutPolicy("Jets", "Other", OTHER),
        DeletePolicy("Jets", "JetsPolicy"),
    ]
    untouched = [
        AddMember("Jets", "carol"),
        DetachPolicy("Jets", FOREIGN),
        DeletePolicy("Jets", "Theirs"),
        DeleteGroup("Jets"),
    ]
    assert [undo.touches(c) for c in touched] == [True] * len(touched)
    assert [undo.touches(c) for c in untouched] == [False] * len(untouched)
    assert not Undo(group="Jets").touches(UpdateGroup("Jets", "/"))
    assert Undo(group="Jets", created=True).touches(DeleteGroup("Jets"))


def test_a_continued_plan_keeps_the_first_state_of_every_item() -> None:
    first = Undo(
        group="Jets",
        path="/a/",
        members={"alice": True},
        attached={P1: False},
        inline={"JetsPolicy": OTHER},
        ownership=Ownership(members=frozenset({"alice"})),
    )
    later = Undo(
        group="Jets",
        path="/b/",
        members={"alice": False, "bob": True},
        attached={P1: True, P2: True},
        inline={"JetsPolicy": None, "Extra": None},
        ownership=Ownership(
            members=frozenset({"alice", "bob"}), attached=frozenset({P1, P2}),
            inline=frozenset({"Extra"}),
        ),
    )  # fmt: skip
    merged = first.then(later)
    assert merged == Undo(
        group="Jets",
        path="/a/",
        members={"alice": True, "bob": True},
        attached={P1: False, P2: True},
        inline={"JetsPolicy": OTHER, "Extra": None},
        ownership=Ownership(
            members=frozenset({"alice", "bob"}), attached=frozenset({P2}),
            inline=frozenset({"Extra"}),
        ),
    )  # fmt: skip
    assert Undo(group="Jets", members={"x": True}).then(later).path == "/b/"


def test_a_continued_plan_on_another_or_a_created_group_keeps_the_right_record() -> None:
    first = Undo(group="Jets", members={"alice": True})
    assert first.then(Undo(group="Other", members={"bob": True})) == first
    created = Undo(group="Jets", created=True)
    assert created.then(Undo(group="Jets", members={"bob": True})) == created
    assert first.then(created) == created


# -- the state a plan leaves (planning ahead of what has not been applied yet) --------------------


def test_the_state_after_a_plan_is_its_declaration() -> None:
    """Planning again from the predicted state finds nothing to do, for every kind of change."""
    spec = declared(GroupPath="/b/", Users="alice,carol", ManagedPolicyArns=P2, Services="s3")
    before = actual_of(
        declared(GroupPath="/a/", Users="alice,bob", ManagedPolicyArns=P1),
        inline_policies={"JetsPolicy": OTHER, "Extra": OTHER},
    )
    for start in (before, None):
        predicted = state_after(start, plan_reconcile(spec, start))
        assert predicted is not None
        assert (predicted.name, predicted.path) == ("Jets", "/b/")
        assert predicted.members == {"alice", "carol"}
        assert predicted.managed_policy_arns == {P2}
        assert predicted.inline_policies == {"JetsPolicy": spec.policy_document}
        assert not plan_reconcile(spec, predicted)


def test_nothing_is_left_after_a_delete_and_nothing_acts_on_a_missing_group() -> None:
    spec = declared(Users="alice")
    assert state_after(actual_of(spec), plan_delete(actual_of(spec))) is None
    changes: list[Change] = [AddMember("Jets", "bob"), DeletePolicy("Jets", "JetsPolicy")]
    assert state_after(None, Plan.of(changes)) is None
    assert state_after(actual_of(spec), Plan()) == actual_of(spec)
