"""The IAM edge against moto plus the strict layer: paging, ordering, limits, retries, counts,
driven through the controller as CloudFormation drives it (``Stack``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from helpers import ACCOUNT, BIG_POLICY, NoSleep, Stack, declared, make_policy, make_users, users
from jets_deploy_iam import policy
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import DeadlineExceededError, IamApplyError, PreflightError
from jets_deploy_iam.iam.applier import apply_plan
from jets_deploy_iam.iam.preflight import preflight, restorable
from jets_deploy_iam.iam.reader import find_group_by_id, read_group, read_members
from jets_deploy_iam.limits import (
    MAX_ATTACHED_POLICIES,
    MAX_GROUP_INLINE_POLICY_CHARS,
    MAX_GROUPS_PER_USER,
    MAX_PAGE_ITEMS,
)
from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.plan import (
    AddMember,
    AttachPolicy,
    Change,
    CreateGroup,
    DeleteGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    RemoveMember,
    UpdateGroup,
    plan_reconcile,
)
from jets_deploy_iam.state import ActualGroup
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


# -- the strict layer itself behaves like IAM ---------------------------------------------------


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


@pytest.mark.parametrize("max_items", [MAX_PAGE_ITEMS + 1, 10 * MAX_PAGE_ITEMS])
def test_strict_layer_refuses_max_items_over_what_iam_accepts(
    iam: IAMClient, max_items: int
) -> None:
    """IAM refuses MaxItems above 1,000 (moto accepts any; botocore checks only the minimum)."""
    iam.create_group(GroupName="g")
    make_users(iam, ["alice"])
    for read in (
        lambda: iam.get_group(GroupName="g", MaxItems=max_items),
        lambda: iam.list_group_policies(GroupName="g", MaxItems=max_items),
        lambda: iam.list_attached_group_policies(GroupName="g", MaxItems=max_items),
        lambda: iam.list_groups_for_user(UserName="alice", MaxItems=max_items),
        lambda: iam.get_account_authorization_details(MaxItems=max_items),
    ):
        with pytest.raises(ClientError) as caught:
            read()
        assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert len(iam.get_group(GroupName="g", MaxItems=MAX_PAGE_ITEMS)["Users"]) == 0


# -- reader -------------------------------------------------------------------------------------


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


def test_reader_asks_for_iams_largest_page_by_default(iam: IAMClient, strict: StrictIam) -> None:
    """150 members: one GetGroup at MaxItems 1,000 (IAM's default page of 100 would take two)."""
    iam.create_group(GroupName="g")
    make_users(iam, users(150))
    for name in users(150):
        iam.add_user_to_group(GroupName="g", UserName=name)
    strict.reset()
    assert read_members(iam, "g") == frozenset(users(150))
    assert strict.actions() == ["GetGroup"]
    strict.reset()
    group = read_group(iam, "g")
    assert group is not None
    assert len(group.members) == 150
    assert strict.actions().count("GetGroup") == 1


def test_a_group_renamed_by_hand_is_found_by_its_id_on_a_later_page(
    iam: IAMClient, strict: StrictIam
) -> None:
    """UpdateGroup keeps the GroupId: the drift check finds a registered group renamed by hand
    by walking ListGroups, every page of it (IAM pages it; the group is on the last one)."""
    for n in range(4):
        iam.create_group(GroupName=f"other{n}")
    made = iam.create_group(GroupName="Jets", Path="/jets/")["Group"]
    make_users(iam, ["alice"])
    iam.add_user_to_group(GroupName="Jets", UserName="alice")
    iam.update_group(GroupName="Jets", NewGroupName="Hidden")
    strict.reset()
    found = find_group_by_id(iam, made["GroupId"], page_size=2)
    assert found is not None
    assert (found.name, found.group_id, found.path) == ("Hidden", made["GroupId"], "/jets/")
    assert found.members == frozenset({"alice"})
    assert strict.actions().count("ListGroups") == 3  # 5 groups, 2 a page
    assert find_group_by_id(iam, "AGPANOSUCHGROUP0000", page_size=2) is None


def test_reader_does_not_take_a_group_named_in_another_case(iam: IAMClient) -> None:
    """IAM finds ``jets`` when asked for ``Jets``; to us it is another resource's group."""
    iam.create_group(GroupName="jets")
    assert read_group(iam, "Jets") is None
    assert read_members(iam, "Jets") is None
    assert read_members(iam, "nope") is None


# -- apply --------------------------------------------------------------------------------------


def test_create_then_no_op_makes_zero_writes(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(30))
    props = {"Users": users(30), "ManagedPolicyArns": make_policy(iam, "p1")}
    assert stack.create(props).ok
    strict.reset()
    assert stack.update(props).ok
    assert strict.writes == []
    assert len(strict.reads) <= 4


def test_members_are_added_concurrently_but_at_most_8_in_flight(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(60))
    strict.latency = 0.01
    assert stack.create({"Users": users(60)}).ok
    assert 2 <= strict.max_in_flight <= 8
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == frozenset(users(60))


def test_delete_removes_everything_in_an_order_iam_accepts(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(5))
    arn = make_policy(iam, "p1")
    stack.create({"Users": users(5), "ManagedPolicyArns": arn})
    strict.reset()
    assert stack.delete().ok
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
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    stack.create({})
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    strict.reset()
    assert stack.delete().ok
    assert strict.writes == []


def test_delete_of_a_placeholder_id_touches_nothing(strict: StrictIam, stack: Stack) -> None:
    stack.physical_id = "no-group:1234"
    assert stack.delete().ok
    assert strict.calls == []


def test_delete_rereads_after_a_conflict(iam: IAMClient, strict: StrictIam, stack: Stack) -> None:
    stack.create({})
    strict.inject("DeleteGroup", "DeleteConflict")
    assert stack.delete().ok
    assert read_group(iam, "Jets") is None
    assert strict.actions().count("DeleteGroup") == 2


def test_throttling_is_retried(iam: IAMClient, strict: StrictIam, stack: Stack) -> None:
    make_users(iam, ["alice"])
    strict.inject("AddUserToGroup", "Throttling", times=3)
    assert stack.create({"Users": "alice"}).ok
    assert strict.actions().count("AddUserToGroup") == 4
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_throttling_beyond_retries_is_one_readable_error(iam: IAMClient, strict: StrictIam) -> None:
    """Without a deadline (this Reconciler has none) a call makes max_attempts attempts; under
    one it retries while time remains (test_throttling.py)."""
    strict.inject("PutGroupPolicy", "Throttling", times=100)
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, plan_reconcile(declared(), None))
    assert caught.value.code == "Throttling"
    assert "put policy JetsPolicy failed: Throttling" in str(caught.value)
    assert strict.actions().count("PutGroupPolicy") == ReconcileConfig().max_attempts


def test_new_group_not_yet_visible_is_retried_with_backoff(
    iam: IAMClient, strict: StrictIam, sleeper: NoSleep
) -> None:
    make_users(iam, ["alice"])
    strict.settle_after_create = 3
    apply_plan(iam, plan_reconcile(declared(Users="alice"), None), ReconcileConfig(sleep=sleeper))
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
        apply_plan(iam, plan_reconcile(declared(), None), config)
    assert sum(sleeper.slept) == pytest.approx(3.0)
    assert sleeper.slept == [0.25, 0.5, 1.0, 1.25]  # doubling, the last wait cut to the bound


def test_no_such_entity_on_an_old_group_is_not_retried(
    iam: IAMClient, strict: StrictIam, sleeper: NoSleep
) -> None:
    apply_plan(iam, plan_reconcile(declared(), None))
    make_users(iam, ["alice"])
    strict.inject("AddUserToGroup", "NoSuchEntity")
    stale = read_group(iam, "Jets")
    with pytest.raises(IamApplyError, match="add user alice failed: NoSuchEntity"):
        apply_plan(
            iam, plan_reconcile(declared(Users="alice"), stale), ReconcileConfig(sleep=sleeper)
        )
    assert sleeper.slept == []


def test_removing_something_already_gone_is_success(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, ["alice"])
    apply_plan(iam, plan_reconcile(declared(Users="alice"), None))
    stale = read_group(iam, "Jets")
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    strict.reset()
    apply_plan(iam, plan_reconcile(declared(), stale, Ownership(members=frozenset({"alice"}))))
    # IAM answers NoSuchEntity; a read confirms alice is not a member: done, not an error.
    assert strict.actions() == ["RemoveUserFromGroup", "GetGroup"]


def test_a_removal_iam_calls_gone_but_a_read_contradicts_is_an_error(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, ["alice"])
    apply_plan(iam, plan_reconcile(declared(Users="alice"), None))
    stale = read_group(iam, "Jets")
    strict.inject("RemoveUserFromGroup", "NoSuchEntity")  # IAM's eventually consistent word
    with pytest.raises(IamApplyError, match="remove user alice failed: NoSuchEntity"):
        apply_plan(iam, plan_reconcile(declared(), stale, Ownership(members=frozenset({"alice"}))))
    assert read_group(iam, "Jets").members == {"alice"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("removal", "action"),
    [
        (DetachPolicy("Jets", "POLICY"), "DetachGroupPolicy"),
        (DeletePolicy("Jets", "JetsPolicy"), "DeleteGroupPolicy"),
        (RemoveMember("Jets", "alice"), "RemoveUserFromGroup"),
    ],
)
def test_a_removal_iam_calls_gone_is_done_only_if_a_read_agrees(
    iam: IAMClient, strict: StrictIam, removal: Change, action: str
) -> None:
    """NoSuchEntity on a removal is IAM's eventually consistent word: the item still there
    is an error (a revocation must never be skipped), the item really gone is success."""
    arn = make_policy(iam, "p1")
    make_users(iam, ["alice"])
    apply_plan(iam, plan_reconcile(declared(Users="alice", ManagedPolicyArns=arn), None))
    if isinstance(removal, DetachPolicy):
        removal = DetachPolicy("Jets", arn)
    strict.inject(action, "NoSuchEntity")
    with pytest.raises(IamApplyError, match="NoSuchEntity"):
        apply_plan(iam, Plan((removal,)))
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}
    assert group.managed_policy_arns == {arn}
    assert set(group.inline_policies) == {"JetsPolicy"}
    apply_plan(iam, Plan((removal,)))  # really removed now
    strict.reset()
    result = apply_plan(iam, Plan((removal,)))  # IAM: NoSuchEntity; a read: gone. Done.
    assert result.applied == [removal]
    assert strict.actions()[0] == action


def test_deleting_a_group_already_gone_is_done_one_still_there_is_not(
    iam: IAMClient, strict: StrictIam
) -> None:
    iam.create_group(GroupName="Jets")
    strict.inject("DeleteGroup", "NoSuchEntity")
    with pytest.raises(IamApplyError, match="delete group Jets failed: NoSuchEntity"):
        apply_plan(iam, Plan((DeleteGroup("Jets"),)))
    iam.delete_group(GroupName="Jets")
    assert apply_plan(iam, Plan((DeleteGroup("Jets"),))).applied == [DeleteGroup("Jets")]


def test_a_removal_whose_confirming_read_fails_is_not_counted_as_done(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, ["alice"])
    apply_plan(iam, plan_reconcile(declared(Users="alice"), None))
    strict.inject("RemoveUserFromGroup", "NoSuchEntity")
    strict.inject("GetGroup", "AccessDenied")
    with pytest.raises(IamApplyError, match="NoSuchEntity"):
        apply_plan(iam, Plan((RemoveMember("Jets", "alice"),)))


def test_the_group_path_is_set_on_create_and_moved_in_place(iam: IAMClient, stack: Stack) -> None:
    created = stack.create({"GroupPath": "/ci/"})
    assert created.data["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/ci/Jets"
    moved = stack.update({"GroupPath": "/deploy/"})
    assert moved.data["GroupId"] == created.data["GroupId"]
    assert moved.data["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/deploy/Jets"
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.path == "/deploy/"


def test_what_was_deleted_from_iam_is_left_out_of_a_restore_and_nothing_else(
    iam: IAMClient, strict: StrictIam
) -> None:
    """A rollback (or a hand-back) cannot add a user or attach a policy deleted since: those
    changes go, every other change stays in order; one read of the users for all of them."""
    make_users(iam, ["alice", "bob"])
    kept_arn, gone_arn = make_policy(iam, "kept"), make_policy(iam, "gone")
    iam.delete_policy(PolicyArn=gone_arn)
    plan = Plan(
        (
            RemoveMember("Jets", "carol"),
            AttachPolicy("Jets", gone_arn),
            AttachPolicy("Jets", kept_arn),
            AddMember("Jets", "alice"),
            AddMember("Jets", "ghost"),
            AddMember("Jets", "bob"),
        )
    )
    strict.reset()
    assert list(restorable(iam, plan)) == [
        RemoveMember("Jets", "carol"),
        AttachPolicy("Jets", kept_arn),
        AddMember("Jets", "alice"),
        AddMember("Jets", "bob"),
    ]
    assert strict.actions().count("GetAccountAuthorizationDetails") == 1
    strict.reset()
    nothing_to_add = Plan((RemoveMember("Jets", "carol"),))
    assert list(restorable(iam, nothing_to_add)) == [RemoveMember("Jets", "carol")]
    assert strict.actions() == []  # no member to add, no policy to attach: nothing read


def test_a_restore_fails_on_a_policy_read_error_rather_than_dropping_it(
    iam: IAMClient, strict: StrictIam
) -> None:
    """Only NoSuchEntity means deleted: any other answer is not a verdict."""
    arn = make_policy(iam, "p")
    strict.inject("GetPolicy", "AccessDenied", times=1)
    with pytest.raises(ClientError):
        restorable(iam, Plan((AttachPolicy("Jets", arn),)))


def test_a_group_renamed_by_hand_gets_its_name_back_in_place(iam: IAMClient) -> None:
    """The drift check's correction of a hand rename: the same group (GroupId, members) under
    its registered name, at its declared path."""
    made = iam.create_group(GroupName="Hidden", Path="/ci/")["Group"]
    make_users(iam, ["alice"])
    iam.add_user_to_group(GroupName="Hidden", UserName="alice")
    apply_plan(iam, Plan((UpdateGroup("Hidden", new_path="/deploy/", new_name="Jets"),)))
    group = read_group(iam, "Jets")
    assert group is not None
    assert (group.group_id, group.path, group.members) == (
        made["GroupId"],
        "/deploy/",
        frozenset({"alice"}),
    )
    assert read_group(iam, "Hidden") is None


def test_a_create_whose_answer_was_lost_is_ours_and_says_so(
    iam: IAMClient, strict: StrictIam, caplog: pytest.LogCaptureFixture
) -> None:
    """CreateGroup applied, its answer lost (the connection dropped): the retry's
    EntityAlreadyExists meets a fresh group of this name and path, which is ours; the log says
    why a CreateGroup that "failed" counts as done."""
    strict.lose_answer("CreateGroup", how="connection")
    with caplog.at_level(logging.WARNING, logger="jets_deploy_iam.iam.applier"):
        result = apply_plan(iam, Plan((CreateGroup("Jets", path="/ci/"),)))
    assert result.created["Arn"].endswith(":group/ci/Jets")
    assert [r.getMessage() for r in caplog.records] == [
        "CreateGroup Jets: an earlier attempt created it (answer lost)"
    ]


@pytest.mark.parametrize(
    ("path", "member"),
    [("/other/", None), ("/ci/", "bob")],
    ids=["another path", "a member already"],
)
def test_a_group_met_after_a_failed_create_is_ours_only_if_it_looks_fresh(
    iam: IAMClient, strict: StrictIam, path: str, member: str | None
) -> None:
    """CreateGroup fails (a 500 that may have applied); before the retry someone else creates
    the name. The retry's EntityAlreadyExists is a lost answer of ours only for a group of this
    name, this path and no member: otherwise the error stands and the group is not taken."""
    make_users(iam, ["bob"])

    def someone_creates() -> None:
        iam.create_group(GroupName="Jets", Path=path)
        if member:
            iam.add_user_to_group(GroupName="Jets", UserName=member)

    strict.before_write("CreateGroup", lambda: strict.before_write("CreateGroup", someone_creates))
    strict.fail_write(1, code="ServiceFailure", attempts=1)
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, Plan((CreateGroup("Jets", path="/ci/"),)))
    assert caught.value.code == "EntityAlreadyExists"
    assert strict.actions()[-2:] == ["CreateGroup", "GetGroup"]  # the retry, then the look
    group = read_group(iam, "Jets")
    assert group is not None
    assert (group.path, group.members) == (path, frozenset({member} if member else ()))


def test_a_failure_says_what_iam_said_and_how_to_fix_it(iam: IAMClient, strict: StrictIam) -> None:
    apply_plan(iam, plan_reconcile(declared(), None))
    strict.fail_write(1, code="LimitExceeded")
    make_users(iam, ["alice"])
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, Plan((AddMember("Jets", "alice"),)))
    assert caught.value.code == "LimitExceeded"
    assert "injected failure of AddUserToGroup (an IAM quota is full" in str(caught.value)
    strict.fail_write(1, code="InvalidInput")
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, Plan((AddMember("Jets", "alice"),)))
    assert str(caught.value).endswith("injected failure of AddUserToGroup")


def test_every_applied_change_is_reported_in_order(iam: IAMClient) -> None:
    make_users(iam, ["alice", "bob"])
    plan = plan_reconcile(declared(Users="alice,bob"), None)
    seen: list[Change] = []
    result = apply_plan(iam, plan, on_applied=seen.append)
    assert seen[:2] == list(plan.changes[:2])  # the group and its policy first, in order
    assert sorted(map(str, seen)) == sorted(map(str, plan))
    assert result.applied == seen
    assert result.created["GroupName"] == "Jets"


def test_no_change_starts_after_the_deadline(iam: IAMClient, strict: StrictIam) -> None:
    past = Deadline(at=0.0, clock=lambda: 1.0)
    with pytest.raises(DeadlineExceededError, match="stopped before create group Jets"):
        apply_plan(iam, plan_reconcile(declared(), None), deadline=past)
    assert strict.writes == []


def test_members_in_flight_never_exceed_the_configured_cap(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, users(12))
    strict.latency = 0.01
    config = ReconcileConfig(max_in_flight=2)
    apply_plan(iam, plan_reconcile(declared(Users=users(12)), None), config)
    assert strict.max_in_flight == 2
    strict.reset()
    apply_plan(
        iam, plan_reconcile(declared(), read_group(iam, "Jets")), replace(config, max_in_flight=1)
    )
    assert strict.max_in_flight == 1


def test_a_failed_member_change_in_a_concurrent_batch_is_the_error_raised(
    iam: IAMClient, strict: StrictIam
) -> None:
    make_users(iam, users(6))
    apply_plan(iam, plan_reconcile(declared(), None))
    strict.fail_write(3, code="LimitExceeded")
    with pytest.raises(IamApplyError, match="LimitExceeded"):
        apply_plan(iam, plan_reconcile(declared(Users=users(6)), read_group(iam, "Jets")))


# -- limits the strict layer enforces when pre-flight is bypassed -------------------------------


def test_eleventh_attachment_is_refused_by_iam(iam: IAMClient) -> None:
    arns = [make_policy(iam, f"p{i}") for i in range(MAX_ATTACHED_POLICIES + 1)]
    apply_plan(iam, plan_reconcile(declared(ManagedPolicyArns=arns[:-1]), None))
    with pytest.raises(IamApplyError) as caught:
        apply_plan(iam, Plan((AttachPolicy("Jets", arns[-1]),)))
    assert caught.value.code == "LimitExceeded"


def test_user_in_ten_groups_is_refused_by_iam(iam: IAMClient) -> None:
    make_users(iam, ["alice"])
    for i in range(MAX_GROUPS_PER_USER):
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


# -- pre-flight: refuses before the first write -------------------------------------------------


def test_missing_user_fails_before_any_write(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, ["alice"])
    response = stack.create({"Users": "alice,ghost"})
    assert "no such IAM user ghost" in response.reason
    assert strict.writes == []


def test_missing_user_with_other_case_gets_a_hint(iam: IAMClient, stack: Stack) -> None:
    make_users(iam, ["Alice"])
    assert "alice (did you mean Alice?)" in stack.create({"Users": "alice"}).reason


def test_user_already_in_ten_groups_fails_before_any_write(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, ["alice", "bob"])
    for i in range(MAX_GROUPS_PER_USER):
        iam.create_group(GroupName=f"other{i}")
        iam.add_user_to_group(GroupName=f"other{i}", UserName="alice")
    strict.reset()
    assert (
        f"alice is already in {MAX_GROUPS_PER_USER} groups"
        in stack.create({"Users": "bob,alice"}).reason
    )
    assert strict.writes == []


def test_a_rename_counts_the_temporary_extra_group(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, ["alice"])
    stack.create({"Users": "alice"})
    for i in range(9):
        iam.create_group(GroupName=f"other{i}")
        iam.add_user_to_group(GroupName=f"other{i}", UserName="alice")
    strict.reset()
    response = stack.update({"GroupName": "Renamed", "Users": "alice"})
    assert f"alice is already in {MAX_GROUPS_PER_USER} groups" in response.reason
    assert strict.writes == []


def test_missing_managed_policy_fails_before_any_write(strict: StrictIam, stack: Stack) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:policy/Nope"
    assert f"{arn} does not exist" in stack.create({"ManagedPolicyArns": arn}).reason
    assert strict.writes == []


def test_foreign_attachments_count_toward_the_limit(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    arns = [make_policy(iam, f"p{i}") for i in range(MAX_ATTACHED_POLICIES + 1)]
    iam.create_group(GroupName="Jets")
    for arn in arns[:5]:
        iam.attach_group_policy(GroupName="Jets", PolicyArn=arn)
    strict.reset()
    props = {"ManagedPolicyArns": arns[5:], "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert "would have 11 managed policies" in stack.create(props).reason
    assert strict.writes == []


def test_foreign_inline_policies_count_toward_the_size_limit(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    iam.create_group(GroupName="Jets")
    big = BIG_POLICY
    iam.put_group_policy(GroupName="Jets", PolicyName="Foreign", PolicyDocument=big % ("x" * 4900))
    strict.reset()
    response = stack.create({"Exclusive": "false", "AdoptExistingGroup": "true"})
    assert "inline policies would total" in response.reason
    assert strict.writes == []


def test_inline_policies_a_plan_deletes_do_not_count_toward_the_limit(
    iam: IAMClient, stack: Stack
) -> None:
    iam.create_group(GroupName="Jets")
    big = BIG_POLICY
    iam.put_group_policy(GroupName="Jets", PolicyName="Foreign", PolicyDocument=big % ("x" * 4900))
    assert stack.create({"AdoptExistingGroup": "true"}).ok  # exclusive: Foreign is deleted first


def test_rename_onto_an_existing_group_fails_before_any_write(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    stack.create({})
    iam.create_group(GroupName="Taken")
    strict.reset()
    assert "a group named Taken already exists" in stack.update({"GroupName": "Taken"}).reason
    assert strict.writes == []


def test_preflight_reads_grow_with_pages_not_users(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(1000))
    strict.reset()
    assert stack.create({"Users": users(1000)}).ok
    assert len(strict.writes) == 1002  # group, policy, 1,000 members
    assert len(strict.reads) <= 6
    assert strict.actions().count("GetAccountAuthorizationDetails") == 1


def test_exactly_ten_attachments_pass_preflight(iam: IAMClient, stack: Stack) -> None:
    arns = [make_policy(iam, f"p{i}") for i in range(MAX_ATTACHED_POLICIES)]
    assert stack.create({"ManagedPolicyArns": arns}).ok
    group = read_group(iam, "Jets")
    assert group is not None
    assert len(group.managed_policy_arns) == MAX_ATTACHED_POLICIES


def test_inline_policies_totalling_exactly_5120_characters_pass_preflight(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    ours = policy.counted_size(policy.render(declared().policy_document))
    filler = MAX_GROUP_INLINE_POLICY_CHARS - ours - policy.counted_size(BIG_POLICY % "")
    for name, size in (("Jets", filler), ("Over", filler + 1)):
        iam.create_group(GroupName=name)
        foreign = BIG_POLICY % ("x" * size)
        iam.put_group_policy(GroupName=name, PolicyName="Foreign", PolicyDocument=foreign)
    props = {"Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    strict.reset()
    other = Stack(stack.send, logical_id="Other")
    reason = other.create({**props, "GroupName": "Over"}).reason
    assert f"would total {MAX_GROUP_INLINE_POLICY_CHARS + 1} characters" in reason
    assert strict.writes == []


def test_preflight_of_a_plan_deleting_a_policy_already_gone_counts_nothing_for_it(
    iam: IAMClient,
) -> None:
    group = ActualGroup(name="Jets", path="/", arn="", group_id="")
    plan = Plan.of([DeletePolicy("Jets", "Gone"), AttachPolicy("Jets", make_policy(iam, "p"))])
    preflight(iam, plan, group)  # raises PreflightError if anything is wrong


def test_every_managed_policy_problem_is_named_at_once(iam: IAMClient, strict: StrictIam) -> None:
    missing = f"arn:aws:iam::{ACCOUNT}:policy/Nope"
    deprecated = make_policy(iam, "Deprecated")
    strict.unattachable.add(deprecated)
    invalid = make_policy(iam, "Odd")
    strict.inject("GetPolicy", "InvalidInput", skip=2)  # IAM's word on the third ARN
    fine = make_policy(iam, "Fine")
    plan = Plan.of([AttachPolicy("Jets", a) for a in (missing, deprecated, invalid, fine)])
    with pytest.raises(PreflightError) as caught:
        preflight(iam, plan, None)
    assert caught.value.problems == (
        f"ManagedPolicyArns entry {missing} does not exist in this account",
        f"ManagedPolicyArns entry {deprecated} cannot be attached (IAM says so)",
        f"ManagedPolicyArns entry {invalid} is not a valid policy ARN",
    )


def test_a_policy_iam_will_not_attach_fails_before_any_write(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    arn = make_policy(iam, "Deprecated")
    strict.unattachable.add(arn)
    strict.reset()
    assert f"{arn} cannot be attached" in stack.create({"ManagedPolicyArns": arn}).reason
    assert strict.writes == []


def test_an_unexpected_error_reading_a_policy_is_not_taken_for_a_verdict(
    iam: IAMClient, strict: StrictIam
) -> None:
    strict.inject("GetPolicy", "AccessDenied")
    plan = Plan.of([AttachPolicy("Jets", make_policy(iam, "p"))])
    with pytest.raises(ClientError, match="AccessDenied"):
        preflight(iam, plan, None)


def test_missing_users_lead_the_reason_without_a_guess_when_none_is_close(
    iam: IAMClient, stack: Stack
) -> None:
    make_users(iam, ["alice", "bob"])
    for i in range(MAX_GROUPS_PER_USER):
        iam.create_group(GroupName=f"other{i}")
        iam.add_user_to_group(GroupName=f"other{i}", UserName="alice")
    reason = stack.create({"Users": "alice,ghost,bob"}).reason
    assert reason.startswith("Users: no such IAM user ghost: create the user(s) first")
    assert "did you mean" not in reason
    assert f"alice is already in {MAX_GROUPS_PER_USER} groups" in reason


@pytest.mark.parametrize(("count", "more"), [(5, 0), (6, 1), (8, 3)])
def test_many_missing_users_are_counted_after_the_first_five(
    stack: Stack, count: int, more: int
) -> None:
    ghosts = users(count, prefix="ghost")
    reason = stack.create({"Users": ghosts}).reason
    named = ", ".join(ghosts[:5])
    expected = named + (f" and {more} more" if more else "") + ": create the user(s)"
    assert f"no such IAM user {expected}" in reason
    assert ghosts[5:] == [] or ghosts[5] not in reason


def test_preflight_asks_for_iams_largest_page_of_users(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    """150 users: one GetAccountAuthorizationDetails (IAM's default page of 100 would take two)."""
    make_users(iam, users(150))
    strict.reset()
    assert stack.create({"Users": users(2, start=148)}).ok
    assert strict.actions().count("GetAccountAuthorizationDetails") == 1


# -- lifecycle through the controller -----------------------------------------------------------


def test_create_over_an_existing_group_needs_adoption(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    iam.create_group(GroupName="Jets")
    strict.reset()
    assert "AdoptExistingGroup" in stack.create({}).reason
    assert strict.writes == []


def test_adoption_takes_over_and_reconciles(iam: IAMClient, stack: Stack) -> None:
    make_users(iam, ["alice", "bob"])
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")
    assert stack.create({"Users": "alice", "AdoptExistingGroup": "true"}).ok
    group = read_group(iam, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_rename_makes_a_new_group_with_the_same_members(iam: IAMClient, stack: Stack) -> None:
    make_users(iam, ["alice"])
    before = stack.create({"Users": "alice"})
    after = stack.update({"GroupName": "Deployers", "GroupPath": "/ci/", "Users": "alice"})
    assert after.ok
    assert after.data["GroupId"] != before.data["GroupId"]  # a replacement, like AWS::IAM::Group
    assert after.data["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/ci/Deployers"
    group = read_group(iam, "Deployers")
    assert group is not None
    assert group.members == {"alice"}
    assert group.path == "/ci/"
    assert read_group(iam, "Jets") is None  # CloudFormation's cleanup Delete


def test_update_recreates_a_group_deleted_by_hand(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    stack.create({})
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    strict.reset()
    assert stack.update({"Users": []}).ok
    assert [c.action for c in strict.writes] == ["CreateGroup", "PutGroupPolicy"]
    assert read_group(iam, "Jets") is not None
