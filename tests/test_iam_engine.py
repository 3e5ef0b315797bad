"""The IAM edge against moto plus the strict layer: paging, ordering, limits, retries, counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conftest import NoSleep
from helpers import ACCOUNT, declared, make_policy, make_users
from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.exceptions import GroupConflictError, IamApplyError, PreflightError
from jets_deploy_iam.iam.applier import apply_plan
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.plan import AttachPolicy, Plan, plan_reconcile
from jets_deploy_iam.reconcile import Reconciler
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


BIG_POLICY = (
    '{"Version":"2012-10-17","Statement":'
    '[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::%s"}]}'
)


def users(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


# -- the strict layer itself behaves like IAM ------------------------------------------


def test_strict_layer_refuses_to_delete_a_non_empty_group(iam: IAMClient) -> None:
    iam.create_group(GroupName="g")
    make_users(iam, ["alice"])
    iam.add_user_to_group(GroupName="g", UserName="alice")
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_group(GroupName="g")


def test_strict_layer_pages_get_group_at_100_by_default(iam: IAMClient) -> None:
    iam.create_group(GroupName="g")
    make_users(iam, users(150))
    for name in users(150):
        iam.add_user_to_group(GroupName="g", UserName=name)
    first = iam.get_group(GroupName="g")
    assert len(first["Users"]) == 100
    assert first["IsTruncated"] is True


# -- reader ------------------------------------------------------------------------------


def test_reader_follows_every_page_of_members(iam: IAMClient, strict: StrictIam) -> None:
    iam.create_group(GroupName="g")
    make_users(iam, users(250))
    for name in users(250):
        iam.add_user_to_group(GroupName="g", UserName=name)
    strict.reset()
    group = read_group(iam, "g", page_size=100)
    assert group is not None
    assert group.members == frozenset(users(250))
    assert strict.actions().count("GetGroup") == 3


def test_reader_copes_with_pages_shorter_than_asked(iam: IAMClient, strict: StrictIam) -> None:
    iam.create_group(GroupName="g")
    make_users(iam, users(250))
    for name in users(250):
        iam.add_user_to_group(GroupName="g", UserName=name)
    strict.page_cap = 100  # IAM "may return fewer" than MaxItems=1000
    strict.reset()
    group = read_group(iam, "g")
    assert group is not None
    assert len(group.members) == 250
    assert strict.actions().count("GetGroup") == 3


def test_reader_returns_policies_and_attachments(iam: IAMClient) -> None:
    spec = declared(GroupName="g", ManagedPolicyArns=make_policy(iam, "p1"))
    apply_plan(iam, plan_reconcile(spec, None))
    group = read_group(iam, "g")
    assert group is not None
    assert group.arn == f"arn:aws:iam::{ACCOUNT}:group/g"
    assert group.managed_policy_arns == frozenset(spec.managed_policy_arns)
    assert dict(group.inline_policies) == {"JetsPolicy": spec.policy_document}


def test_reader_missing_group_is_none(iam: IAMClient) -> None:
    assert read_group(iam, "nope") is None


# -- apply -------------------------------------------------------------------------------


def test_create_then_no_op_makes_zero_writes(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, users(30))
    spec = declared(Users=users(30), ManagedPolicyArns=make_policy(iam, "p1"))
    Reconciler(iam).create(spec)
    strict.reset()
    outcome = Reconciler(iam).update(spec, spec, physical_id="Jets")
    assert not outcome.plan
    assert strict.writes == []
    assert len(strict.reads) <= 4


def test_members_are_added_concurrently_but_at_most_8_in_flight(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, users(60))
    strict.latency = 0.01
    Reconciler(iam).create(declared(Users=users(60)))
    assert 2 <= strict.max_in_flight <= 8
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == frozenset(users(60))


def test_delete_removes_everything_in_an_order_iam_accepts(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, users(5))
    arn = make_policy(iam, "p1")
    Reconciler(iam).create(declared(Users=users(5), ManagedPolicyArns=arn))
    strict.reset()
    Reconciler(iam).delete("Jets")
    actions = strict.writes
    assert actions[-1].action == "DeleteGroup"
    assert {c.action for c in actions[:-1]} == {
        "RemoveUserFromGroup",
        "DeleteGroupPolicy",
        "DetachGroupPolicy",
    }
    assert read_group(iam, "Jets") is None
    assert len(iam.list_users()["Users"]) == 5  # users are never deleted
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


def test_delete_of_a_missing_group_succeeds_without_writes(
    iam: IAMClient, strict: StrictIam
) -> None:
    assert not Reconciler(iam).delete("Jets")
    assert strict.writes == []


def test_delete_of_a_placeholder_id_touches_nothing(iam: IAMClient, strict: StrictIam) -> None:
    assert not Reconciler(iam).delete("failed-create:1234")
    assert strict.calls == []


def test_delete_rereads_after_a_conflict(iam: IAMClient, strict: StrictIam) -> None:
    Reconciler(iam).create(declared())
    strict.inject("DeleteGroup", "DeleteConflict")
    Reconciler(iam).delete("Jets")
    assert read_group(iam, "Jets") is None
    assert strict.actions().count("DeleteGroup") == 2


def test_throttling_is_retried(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, ["alice"])
    strict.inject("AddUserToGroup", "Throttling", times=3)
    Reconciler(iam).create(declared(Users="alice"))
    assert strict.actions().count("AddUserToGroup") == 4
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_throttling_beyond_retries_is_one_readable_error(iam: IAMClient, strict: StrictIam) -> None:
    """Without a deadline (this Reconciler has none) a call makes max_attempts attempts; under
    one it retries while time remains (test_throttling.py)."""
    strict.inject("PutGroupPolicy", "Throttling", times=100)
    with pytest.raises(IamApplyError) as caught:
        Reconciler(iam).create(declared())
    assert caught.value.code == "Throttling"
    assert "put policy JetsPolicy failed: Throttling" in str(caught.value)
    assert strict.actions().count("PutGroupPolicy") == ReconcileConfig().max_attempts


def test_new_group_not_yet_visible_is_retried_with_backoff(
    iam: IAMClient, strict: StrictIam, sleeper: NoSleep
) -> None:
    make_users(iam, ["alice"])
    strict.settle_after_create = 3
    Reconciler(iam, ReconcileConfig(sleep=sleeper)).create(declared(Users="alice"))
    assert sleeper.slept == [0.25, 0.5, 1.0]
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_consistency_retries_are_bounded(
    iam: IAMClient, strict: StrictIam, sleeper: NoSleep
) -> None:
    strict.settle_after_create = 1000
    config = ReconcileConfig(sleep=sleeper, consistency_timeout=3.0)
    with pytest.raises(IamApplyError, match="NoSuchEntity"):
        Reconciler(iam, config).create(declared())
    assert sum(sleeper.slept) == pytest.approx(3.0)


def test_no_such_entity_on_an_old_group_is_not_retried(
    iam: IAMClient, strict: StrictIam, sleeper: NoSleep
) -> None:
    Reconciler(iam).create(declared())
    make_users(iam, ["alice"])
    strict.inject("AddUserToGroup", "NoSuchEntity")
    with pytest.raises(IamApplyError, match="add user alice failed: NoSuchEntity"):
        Reconciler(iam, ReconcileConfig(sleep=sleeper)).update(
            declared(Users="alice"), declared(), "Jets"
        )
    assert sleeper.slept == []


def test_removing_something_already_gone_is_success(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, ["alice"])
    spec = declared(Users="alice")
    Reconciler(iam).create(spec)
    stale = read_group(iam, "Jets")
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    plan = plan_reconcile(declared(), stale, spec)
    apply_plan(iam, plan)
    assert strict.calls[-1].action == "RemoveUserFromGroup"


# -- limits the strict layer enforces when pre-flight is bypassed -------------------------


def test_eleventh_attachment_is_refused_by_iam(iam: IAMClient) -> None:
    arns = [make_policy(iam, f"p{i}") for i in range(11)]
    Reconciler(iam).create(declared(ManagedPolicyArns=arns[:10]))
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, Plan((AttachPolicy("Jets", arns[10]),)))
    assert caught.value.code == "LimitExceeded"


def test_user_in_ten_groups_is_refused_by_iam(iam: IAMClient) -> None:
    make_users(iam, ["alice"])
    for i in range(10):
        iam.create_group(GroupName=f"other{i}")
        iam.add_user_to_group(GroupName=f"other{i}", UserName="alice")
    iam.create_group(GroupName="Jets")
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.add_user_to_group(GroupName="Jets", UserName="alice")


def test_inline_policies_over_5120_are_refused_by_iam(iam: IAMClient) -> None:
    iam.create_group(GroupName="Jets")
    big = BIG_POLICY
    iam.put_group_policy(GroupName="Jets", PolicyName="a", PolicyDocument=big % ("x" * 3000))
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.put_group_policy(GroupName="Jets", PolicyName="b", PolicyDocument=big % ("y" * 3000))


# -- pre-flight: refuses before the first write --------------------------------------------


def test_missing_user_fails_before_any_write(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, ["alice"])
    with pytest.raises(PreflightError) as caught:
        Reconciler(iam).create(declared(Users="alice,ghost"))
    assert "no such IAM user ghost" in str(caught.value)
    assert strict.writes == []


def test_missing_user_with_other_case_gets_a_hint(iam: IAMClient) -> None:
    make_users(iam, ["Alice"])
    with pytest.raises(PreflightError, match=r"alice \(did you mean Alice\?\)"):
        Reconciler(iam).create(declared(Users="alice"))


def test_user_already_in_ten_groups_fails_before_any_write(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, ["alice", "bob"])
    for i in range(10):
        iam.create_group(GroupName=f"other{i}")
        iam.add_user_to_group(GroupName=f"other{i}", UserName="alice")
    strict.reset()
    with pytest.raises(PreflightError, match="alice is already in 10 groups"):
        Reconciler(iam).create(declared(Users="bob,alice"))
    assert strict.writes == []


def test_missing_managed_policy_fails_before_any_write(iam: IAMClient, strict: StrictIam) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:policy/Nope"
    with pytest.raises(PreflightError, match=f"{arn} does not exist"):
        Reconciler(iam).create(declared(ManagedPolicyArns=arn))
    assert strict.writes == []


def test_foreign_attachments_count_toward_the_limit(iam: IAMClient, strict: StrictIam) -> None:
    arns = [make_policy(iam, f"p{i}") for i in range(11)]
    iam.create_group(GroupName="Jets")
    for arn in arns[:5]:
        iam.attach_group_policy(GroupName="Jets", PolicyArn=arn)
    strict.reset()
    spec = declared(ManagedPolicyArns=arns[5:11], Exclusive="false", AdoptExistingGroup="true")
    with pytest.raises(PreflightError, match="would have 11 managed policies"):
        Reconciler(iam).create(spec)
    assert strict.writes == []


def test_foreign_inline_policies_count_toward_the_size_limit(
    iam: IAMClient, strict: StrictIam
) -> None:
    iam.create_group(GroupName="Jets")
    big = BIG_POLICY
    iam.put_group_policy(GroupName="Jets", PolicyName="Foreign", PolicyDocument=big % ("x" * 4900))
    strict.reset()
    with pytest.raises(PreflightError, match="inline policies would total"):
        Reconciler(iam).create(declared(Exclusive="false", AdoptExistingGroup="true"))
    assert strict.writes == []


def test_rename_onto_an_existing_group_fails_before_any_write(
    iam: IAMClient, strict: StrictIam
) -> None:
    Reconciler(iam).create(declared())
    iam.create_group(GroupName="Taken")
    strict.reset()
    with pytest.raises(PreflightError, match="a group named Taken already exists"):
        Reconciler(iam).update(declared(GroupName="Taken"), declared(), "Jets")
    assert strict.writes == []


def test_preflight_reads_grow_with_pages_not_users(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, users(1000))
    strict.reset()
    Reconciler(iam).create(declared(Users=users(1000)))
    assert len(strict.writes) == 1002  # group, policy, 1,000 members
    assert len(strict.reads) <= 6
    assert strict.actions().count("GetAccountAuthorizationDetails") == 1


# -- lifecycle through the reconciler --------------------------------------------------------


def test_create_over_an_existing_group_needs_adoption(iam: IAMClient, strict: StrictIam) -> None:
    iam.create_group(GroupName="Jets")
    strict.reset()
    with pytest.raises(GroupConflictError, match="AdoptExistingGroup"):
        Reconciler(iam).create(declared())
    assert strict.writes == []


def test_adoption_takes_over_and_reconciles(iam: IAMClient) -> None:
    make_users(iam, ["alice", "bob"])
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    outcome = Reconciler(iam).create(declared(Users="alice", AdoptExistingGroup="true"))
    assert [str(c) for c in outcome.plan] == [
        "+ put policy JetsPolicy",
        "+ add user alice",
        "- remove user bob",
    ]
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_rename_keeps_members_and_group_id(iam: IAMClient) -> None:
    make_users(iam, ["alice"])
    before = Reconciler(iam).create(declared(Users="alice"))
    after = Reconciler(iam).update(
        declared(GroupName="Deployers", GroupPath="/ci/", Users="alice"),
        declared(Users="alice"),
        "Jets",
    )
    assert after.info.group_id == before.info.group_id
    assert after.info.arn == f"arn:aws:iam::{ACCOUNT}:group/ci/Deployers"
    group = read_group(iam, "Deployers")
    assert group is not None
    assert group.members == {"alice"}
    assert group.path == "/ci/"
    assert read_group(iam, "Jets") is None


def test_rollback_after_failed_rename_finds_the_group_by_its_new_name(iam: IAMClient) -> None:
    make_users(iam, ["alice", "bob"])
    old = declared(Users="alice")
    new = declared(GroupName="Deployers", Users="alice,bob")
    Reconciler(iam).create(old)
    iam.update_group(GroupName="Jets", NewGroupName="Deployers")  # the forward update got this far
    iam.add_user_to_group(GroupName="Deployers", UserName="bob")
    Reconciler(iam).update(old, new, physical_id="Jets")  # CloudFormation's rollback Update
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}
    assert read_group(iam, "Deployers") is None


def test_update_recreates_a_group_deleted_by_hand(iam: IAMClient) -> None:
    Reconciler(iam).create(declared())
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    outcome = Reconciler(iam).update(declared(), declared(), "Jets")
    assert [type(c).__name__ for c in outcome.plan] == ["CreateGroup", "PutPolicy"]
    assert read_group(iam, "Jets") is not None
