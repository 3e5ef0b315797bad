"""Prove a plan can apply before making its first write.

A request that fails here has changed nothing. The reads grow with pages, not with users: one
paged GetAccountAuthorizationDetails answers "does this user exist and how many groups is it in"
for every user at once, so adding 1,000 users costs one or two reads, not 2,000.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from jets_deploy_iam import policy
from jets_deploy_iam.exceptions import PreflightError
from jets_deploy_iam.iam.client import error_code, is_code
from jets_deploy_iam.limits import MAX_ATTACHED_POLICIES, MAX_GROUPS_PER_USER, MAX_PAGE_ITEMS
from jets_deploy_iam.plan import (
    AddMember,
    AttachPolicy,
    CreateGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    PutPolicy,
)
from jets_deploy_iam.state import ActualGroup

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


@dataclass(frozen=True)
class _User:
    name: str
    group_count: int


def preflight(
    client: IAMClient, plan: Plan, actual: ActualGroup | None, page_size: int = MAX_PAGE_ITEMS
) -> None:
    """Raise PreflightError naming every reason the plan would fail; read-only."""
    problems: list[str] = []
    problems += _check_limits(plan, actual)
    problems += _check_new_name(client, plan)
    problems += _check_users(client, [c.user for c in plan.of_type(AddMember)], page_size)
    problems += _check_policies(client, [c.arn for c in plan.of_type(AttachPolicy)])
    if problems:
        raise PreflightError(problems)


def restorable(client: IAMClient, plan: Plan, page_size: int = MAX_PAGE_ITEMS) -> Plan:
    """A rollback's or hand-back's plan without what can no longer be put back: members whose
    IAM user, and managed policies, deleted since (deleting a user removes it from every group
    anyway). Refusing those would leave the stack in UPDATE_ROLLBACK_FAILED (or DELETE_FAILED)
    with no way out but skipping the resource."""
    users = [c.user for c in plan.of_type(AddMember)]
    known = {u.name for u in _list_users(client, page_size)} if users else set()
    gone = {c.arn for c in plan.of_type(AttachPolicy) if _policy_gone(client, c.arn)}
    return Plan.of(
        c
        for c in plan
        if not (isinstance(c, AddMember) and c.user not in known)
        and not (isinstance(c, AttachPolicy) and c.arn in gone)
    )


def _policy_gone(client: IAMClient, arn: str) -> bool:
    try:
        client.get_policy(PolicyArn=arn)
    except ClientError as error:
        if is_code(error, "NoSuchEntity"):
            return True
        raise
    return False


def _check_limits(plan: Plan, actual: ActualGroup | None) -> list[str]:
    """Limits that depend on what stays on the group (non-exclusive mode keeps foreign items)."""
    problems = []
    attached = set(actual.managed_policy_arns) if actual else set()
    attached -= {c.arn for c in plan.of_type(DetachPolicy)}
    attached |= {c.arn for c in plan.of_type(AttachPolicy)}
    if len(attached) > MAX_ATTACHED_POLICIES:
        problems.append(
            f"the group would have {len(attached)} managed policies attached: IAM allows "
            f"{MAX_ATTACHED_POLICIES}; detach foreign ones or use Exclusive true"
        )
    inline = {n: policy.render(d) for n, d in (actual.inline_policies if actual else {}).items()}
    for deleted in plan.of_type(DeletePolicy):
        inline.pop(deleted.policy_name, None)
    for put in plan.of_type(PutPolicy):
        inline[put.policy_name] = policy.render(put.document)
    total = sum(policy.counted_size(doc) for doc in inline.values())
    if total > policy.MAX_GROUP_INLINE_POLICY_CHARS:
        problems.append(
            f"the group's inline policies would total {total} characters: IAM allows "
            f"{policy.MAX_GROUP_INLINE_POLICY_CHARS}; remove foreign inline policies "
            f"({', '.join(sorted(inline))}) or use Exclusive true"
        )
    return problems


def _check_new_name(client: IAMClient, plan: Plan) -> list[str]:
    """A group to create (a Create, or the new group of a rename) must have a free name: IAM
    compares names case-insensitively."""
    targets = [c.group for c in plan.of_type(CreateGroup)]
    problems = []
    for name in targets:
        try:
            existing = client.get_group(GroupName=name, MaxItems=1)["Group"]["GroupName"]
        except ClientError as error:
            if is_code(error, "NoSuchEntity"):
                continue
            raise
        problems.append(
            f"GroupName {name}: a group named {existing} already exists and this resource does "
            "not own it; choose another GroupName or set AdoptExistingGroup true on Create"
        )
    return problems


def _list_users(client: IAMClient, page_size: int) -> Iterable[_User]:
    for page in client.get_paginator("get_account_authorization_details").paginate(
        Filter=["User"], PaginationConfig={"PageSize": page_size}
    ):
        for user in page.get("UserDetailList", []):
            yield _User(user["UserName"], len(user.get("GroupList", [])))


def _check_users(client: IAMClient, names: list[str], page_size: int) -> list[str]:
    if not names:
        return []
    known = {u.name: u for u in _list_users(client, page_size)}
    by_lower = {n.lower(): n for n in known}
    problems = []
    missing = []
    for name in names:
        user = known.get(name)
        if user is None:
            hint = by_lower.get(name.lower())
            missing.append(f"{name} (did you mean {hint}?)" if hint else name)
        elif user.group_count >= MAX_GROUPS_PER_USER:
            problems.append(
                f"Users entry {name} is already in {user.group_count} groups, IAM's maximum: "
                "remove it from another group first"
            )
    if missing:
        problems.insert(
            0,
            f"Users: no such IAM user {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + ": create the user(s) first or fix the name",
        )
    return problems


def _check_policies(client: IAMClient, arns: list[str]) -> list[str]:
    problems = []
    for arn in arns:
        try:
            found = client.get_policy(PolicyArn=arn)["Policy"]
        except ClientError as error:
            if is_code(error, "NoSuchEntity"):
                problems.append(f"ManagedPolicyArns entry {arn} does not exist in this account")
                continue
            if error_code(error) == "InvalidInput":
                problems.append(f"ManagedPolicyArns entry {arn} is not a valid policy ARN")
                continue
            raise
        if found.get("IsAttachable") is False:
            problems.append(f"ManagedPolicyArns entry {arn} cannot be attached (IAM says so)")
    return problems
