"""Act: execute a plan against IAM, in order, with bounded concurrency and bounded retries.

Throttling is retried by botocore's standard mode. What botocore cannot know is that right
after CreateGroup (or a rename) IAM may answer NoSuchEntity for the new name for a while: calls
naming such a group are retried here with exponential backoff, up to a bounded time.
Removals are idempotent: NoSuchEntity on a removal means it is already done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jets_deploy_iam import policy
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import IamApplyError
from jets_deploy_iam.iam.client import error_code, error_message
from jets_deploy_iam.iam.reader import read_members
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
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

OnApplied = Callable[[Change], None]

_FIXES = {
    "LimitExceeded": "an IAM quota is full (10 groups per user, 10 policies per group)",
    "DeleteConflict": "the group is not empty: something was added while deleting; retry",
    "MalformedPolicyDocument": "IAM rejected the policy: check AdditionalActions",
    "PolicyNotAttachable": "this policy cannot be attached to groups (deprecated?)",
    "EntityAlreadyExists": "the name is taken (IAM compares names case-insensitively)",
    "Throttling": "IAM kept throttling after retries; deploy again later",
}


@dataclass
class ApplyResult:
    """What happened; ``created`` holds CreateGroup's answer (Arn, GroupId) when there was one."""

    applied: list[Change] = field(default_factory=list)
    created: dict[str, Any] = field(default_factory=dict)


def _call(client: IAMClient, change: Change) -> dict[str, Any]:
    g = change.group
    match change:
        case CreateGroup(path=path):
            return _create_group(client, g, path)
        case UpdateGroup(new_path=new_path):
            client.update_group(GroupName=g, NewPath=new_path)
        case PutPolicy(policy_name=name, document=doc):
            client.put_group_policy(GroupName=g, PolicyName=name, PolicyDocument=policy.render(doc))
        case DeletePolicy(policy_name=name):
            client.delete_group_policy(GroupName=g, PolicyName=name)
        case AttachPolicy(arn=arn):
            client.attach_group_policy(GroupName=g, PolicyArn=arn)
        case DetachPolicy(arn=arn):
            client.detach_group_policy(GroupName=g, PolicyArn=arn)
        case AddMember(user=user):
            client.add_user_to_group(GroupName=g, UserName=user)
        case RemoveMember(user=user):
            client.remove_user_from_group(GroupName=g, UserName=user)
        case DeleteGroup():
            client.delete_group(GroupName=g)
        case _:
            raise TypeError(f"unknown change {change!r}")
    return {}


def _create_group(client: IAMClient, name: str, path: str) -> dict[str, Any]:
    """CreateGroup, counting our own lost response as created.

    Every CreateGroup runs right after the pre-flight saw the name free. If it is answered
    EntityAlreadyExists, the likeliest cause is our own earlier attempt whose response was lost
    (botocore retried it): the group then has exactly this name and path and no members yet.
    Anything else is someone else's group and the error stands.
    """
    try:
        return dict(client.create_group(GroupName=name, Path=path)["Group"])
    except ClientError as error:
        if error_code(error) != "EntityAlreadyExists":
            raise
        found = client.get_group(GroupName=name, MaxItems=1)
        group = dict(found["Group"])
        if group["GroupName"] != name or group["Path"] != path or found["Users"]:
            raise
        return group


_REMOVALS = (DeletePolicy, DetachPolicy, RemoveMember, DeleteGroup)


class Applier:
    """Runs one plan. Not reused across plans: it remembers which names are freshly created."""

    def __init__(
        self,
        client: IAMClient,
        config: ReconcileConfig | None = None,
        deadline: Deadline | None = None,
        on_applied: OnApplied | None = None,
    ) -> None:
        self.client = client
        self.config = config or ReconcileConfig()
        self.deadline = deadline or Deadline.never()
        self.on_applied = on_applied or (lambda _change: None)
        self.result = ApplyResult()
        self._fresh: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, plan: Plan) -> ApplyResult:
        batch: list[Change] = []
        for change in plan:
            if change.concurrent:
                batch.append(change)
                continue
            self._run_batch(batch)
            batch = []
            self._run_one(change)
        self._run_batch(batch)
        return self.result

    def _run_batch(self, batch: Sequence[Change]) -> None:
        if not batch:
            return
        if len(batch) == 1 or self.config.max_in_flight == 1:
            for change in batch:
                self._run_one(change)
            return
        stop = threading.Event()
        errors: list[BaseException] = []

        def task(change: Change) -> None:
            if stop.is_set():
                return
            try:
                self._run_one(change)
            except BaseException as error:
                stop.set()
                errors.append(error)

        with ThreadPoolExecutor(max_workers=self.config.max_in_flight) as pool:
            list(pool.map(task, batch))
        if errors:
            raise errors[0]

    def _run_one(self, change: Change) -> None:
        self.deadline.check(change.describe())
        answer = self._with_consistency_retry(change)
        with self._lock:
            if isinstance(change, CreateGroup):
                self.result.created = answer
                self._fresh.add(change.group)
            self.result.applied.append(change)
            self.on_applied(change)  # under the lock: callbacks never run concurrently

    def _with_consistency_retry(self, change: Change) -> dict[str, Any]:
        waited = 0.0
        delay = self.config.backoff_initial
        while True:
            try:
                return _call(self.client, change)
            except ClientError as error:
                code = error_code(error)
                fresh = change.group in self._fresh
                gone = code == "NoSuchEntity" and not fresh and isinstance(change, _REMOVALS)
                if gone and self._confirmed_gone(change):
                    return {}  # already gone: a retried request must not fail on it
                retry = code == "NoSuchEntity" and fresh
                if not retry or waited >= self.config.consistency_timeout:
                    raise _apply_error(change, error) from error
            delay = min(delay, self.config.consistency_timeout - waited)
            self.deadline.check(f"retrying {change.describe()}")
            self.config.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.config.backoff_max)

    def _confirmed_gone(self, change: Change) -> bool:
        """A removal IAM answers NoSuchEntity is done only if a read agrees: IAM is eventually
        consistent, and a revocation must never be counted on its word alone."""
        try:
            match change:
                case RemoveMember(user=user):
                    members = read_members(self.client, change.group, self.config.page_size)
                    return members is None or user not in members
                case DetachPolicy(arn=arn):
                    return arn not in _attached_arns(self.client, change.group)
                case DeletePolicy(policy_name=name):
                    self.client.get_group_policy(GroupName=change.group, PolicyName=name)
                    return False
                case _:
                    self.client.get_group(GroupName=change.group, MaxItems=1)
                    return False
        except ClientError as error:
            return error_code(error) == "NoSuchEntity"


def _attached_arns(client: IAMClient, group: str) -> set[str]:
    arns: set[str] = set()
    for page in client.get_paginator("list_attached_group_policies").paginate(GroupName=group):
        arns.update(a["PolicyArn"] for a in page["AttachedPolicies"])
    return arns


def _apply_error(change: Change, error: ClientError) -> IamApplyError:
    code = error_code(error)
    message = error_message(error)
    fix = _FIXES.get(code)
    return IamApplyError(change.describe(), code, f"{message} ({fix})" if fix else message)


def apply_plan(
    client: IAMClient,
    plan: Plan,
    config: ReconcileConfig | None = None,
    deadline: Deadline | None = None,
    on_applied: OnApplied | None = None,
) -> ApplyResult:
    return Applier(client, config, deadline, on_applied).apply(plan)
