"""Observe: read a group from IAM into an ActualGroup, every page of it."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jets_deploy_iam import policy
from jets_deploy_iam.iam.client import is_code
from jets_deploy_iam.limits import MAX_PAGE_ITEMS
from jets_deploy_iam.state import ActualGroup

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def read_group(client: IAMClient, name: str, page_size: int = MAX_PAGE_ITEMS) -> ActualGroup | None:
    """The group called exactly ``name``, or None.

    IAM looks names up case-insensitively; a group whose stored name differs in case is a
    different resource to us (a Delete for ``Jets`` must not delete ``jets``), so it is None.
    """
    found = _group_and_members(client, name, page_size)
    if found is None:
        return None
    group, members = found
    return ActualGroup(
        name=group["GroupName"],
        path=group["Path"],
        arn=group["Arn"],
        group_id=group["GroupId"],
        members=members,
        inline_policies=_inline_policies(client, name, page_size),
        managed_policy_arns=frozenset(_attached(client, name, page_size)),
    )


def find_group_by_id(
    client: IAMClient, group_id: str, page_size: int = MAX_PAGE_ITEMS
) -> ActualGroup | None:
    """The group whose GroupId is ``group_id``, whatever it is called now, or None.

    UpdateGroup renames a group in place (GroupId, members and policies kept), and IAM looks
    groups up only by name: a registered group missing under its name may live on under
    another, granting its rights, and only a walk of ListGroups finds it. Called only when a
    registered group is missing, so the walk is rare.
    """
    for page in client.get_paginator("list_groups").paginate(
        PaginationConfig={"PageSize": page_size}
    ):
        for group in page["Groups"]:
            if group["GroupId"] == group_id:
                return read_group(client, group["GroupName"], page_size)
    return None


def read_members(
    client: IAMClient, name: str, page_size: int = MAX_PAGE_ITEMS
) -> frozenset[str] | None:
    """Only the members of the group called exactly ``name`` (every page), or None."""
    found = _group_and_members(client, name, page_size)
    return None if found is None else found[1]


def _group_and_members(
    client: IAMClient, name: str, page_size: int
) -> tuple[dict[str, Any], frozenset[str]] | None:
    members: set[str] = set()
    group: dict[str, Any] | None = None
    try:
        pages = client.get_paginator("get_group").paginate(
            GroupName=name, PaginationConfig={"PageSize": page_size}
        )
        for page in pages:
            group = dict(page["Group"])
            members.update(user["UserName"] for user in page["Users"])
    except ClientError as error:
        if is_code(error, "NoSuchEntity"):
            return None
        raise
    if group is None or group["GroupName"] != name:
        return None
    return group, frozenset(members)


def _inline_policies(client: IAMClient, name: str, page_size: int) -> dict[str, dict[str, Any]]:
    names: list[str] = []
    for page in client.get_paginator("list_group_policies").paginate(
        GroupName=name, PaginationConfig={"PageSize": page_size}
    ):
        names.extend(page["PolicyNames"])
    if not names:
        return {}
    # A group rarely has more than a couple; fetch them side by side all the same.
    with ThreadPoolExecutor(max_workers=min(4, len(names))) as pool:
        docs = pool.map(
            lambda n: client.get_group_policy(GroupName=name, PolicyName=n)["PolicyDocument"],
            names,
        )
        return {n: policy.parse_stored(doc) for n, doc in zip(names, docs, strict=True)}


def _attached(client: IAMClient, name: str, page_size: int) -> Iterable[str]:
    for page in client.get_paginator("list_attached_group_policies").paginate(
        GroupName=name, PaginationConfig={"PageSize": page_size}
    ):
        for attached in page["AttachedPolicies"]:
            yield attached["PolicyArn"]
