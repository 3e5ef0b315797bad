"""Act: execute a plan against IAM, in order, with bounded concurrency and bounded retries.

Throttling and transient failures are retried by the client's call path (``callpath.py``) for
as long as the plan's deadline allows; the applier binds that deadline to every call it makes.
What the call path cannot know is that right after CreateGroup (or a rename) IAM may answer
NoSuchEntity for the new name for a while: calls naming such a group are retried here with
exponential backoff, up to a bounded time. Removals are idempotent: NoSuchEntity on a removal
means it is already done; EntityAlreadyExists on a CreateGroup whose earlier attempt may have
been applied (its answer lost) means our own group.

Member changes run side by side; a progress line per batch of them (``progress_every`` changes
or ``progress_interval`` seconds) says how many are done, how many to do, and how fast.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jets_deploy_iam import policy
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import IamApplyError
from jets_deploy_iam.iam.callpath import MAY_HAVE_APPLIED, CallPath
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

logger = logging.getLogger(__name__)

_FIXES = {
    "LimitExceeded": "an IAM quota is full (10 groups per user, 10 policies per group)",
    "DeleteConflict": "the group is not empty: something was added while deleting; retry",
    "MalformedPolicyDocument": "IAM rejected the policy: check AdditionalActions",
    "PolicyNotAttachable": "this policy cannot be attached to groups (deprecated?)",
    "EntityAlreadyExists": "the name is taken (IAM compares names case-insensitively)",
    "Throttling": "IAM kept throttling for as long as this request could wait; deploy again "
    "to finish (every step is idempotent)",
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
            return dict(client.create_group(GroupName=g, Path=path)["Group"])
        case UpdateGroup(new_path=new_path, new_name=None):
            client.update_group(GroupName=g, NewPath=new_path)
        case UpdateGroup(new_path=new_path, new_name=str(new_name)):
            client.update_group(GroupName=g, NewPath=new_path, NewGroupName=new_name)
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
        self._path = CallPath.of(client)

    def apply(self, plan: Plan) -> ApplyResult:
        bound = self._path.bounded_by(self.deadline) if self._path else contextlib.nullcontext()
        with bound:
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
        progress = _Progress(len(batch), self.config, self._path)
        if len(batch) == 1 or self.config.max_in_flight == 1:
            for change in batch:
                try:
                    self._run_one(change)
                except BaseException as error:
                    progress.stopped(error)
                    raise
                progress.one_done()
            return
        stop = threading.Event()
        errors: list[BaseException] = []

        def task(change: Change) -> None:
            if stop.is_set():
                return
            try:
                self._run_one(change)
                progress.one_done()
            except BaseException as error:
                stop.set()
                errors.append(error)

        with ThreadPoolExecutor(max_workers=self.config.max_in_flight) as pool:
            list(pool.map(task, batch))
        if errors:
            progress.stopped(errors[0])
            raise errors[0]

    def _run_one(self, change: Change) -> None:
        self.deadline.check(change.describe())
        answer = self._with_consistency_retry(change)
        with self._lock:
            if isinstance(change, CreateGroup):
                self.result.created = answer
                self._fresh.add(change.group)
            if isinstance(change, UpdateGroup) and change.new_name is not None:
                self._fresh.add(change.new_name)  # renamed back: IAM may not know the name yet
            self.result.applied.append(change)
            self.on_applied(change)  # under the lock: callbacks never run concurrently

    def _with_consistency_retry(self, change: Change) -> dict[str, Any]:
        waits = self.config.consistency_waits()
        while True:
            try:
                return _call(self.client, change)
            except ClientError as error:
                code = error_code(error)
                if isinstance(change, CreateGroup) and _ours_after_lost_answer(change, error):
                    return self._created_by_lost_answer(change, error)
                fresh = change.group in self._fresh
                gone = code == "NoSuchEntity" and not fresh and isinstance(change, _REMOVALS)
                if gone and self._confirmed_gone(change):
                    return {}  # already gone: a retried request must not fail on it
                retry = code == "NoSuchEntity" and fresh
                delay = next(waits, None) if retry else None
                if delay is None:
                    raise _apply_error(change, error) from error
            self.deadline.check(f"retrying {change.describe()}")
            self.config.sleep(delay)

    def _created_by_lost_answer(self, change: CreateGroup, error: ClientError) -> dict[str, Any]:
        """CreateGroup's first attempt created the group but its answer was lost: the group is
        ours (the pre-flight saw the name free), and its Arn and GroupId are read back. Only if
        it looks freshly created (this name exactly, this path, no member yet): anything else is
        someone else's group and the error stands."""
        found = self.client.get_group(GroupName=change.group, MaxItems=1)
        group = dict(found["Group"])
        if group["GroupName"] != change.group or group["Path"] != change.path or found["Users"]:
            raise _apply_error(change, error) from error
        logger.warning("CreateGroup %s: an earlier attempt created it (answer lost)", change.group)
        return group

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


def _ours_after_lost_answer(change: Change, error: ClientError) -> bool:
    metadata = error.response.get("ResponseMetadata", {})
    return (
        isinstance(change, CreateGroup)
        and error_code(error) == "EntityAlreadyExists"
        and bool(metadata.get(MAY_HAVE_APPLIED))
    )


class _Progress:
    """One log line per batch of member changes, so an operator watching the logs sees it move:
    done, to do, the rate achieved since the last line and what the call path allows now."""

    def __init__(self, total: int, config: ReconcileConfig, path: CallPath | None) -> None:
        self.total = total
        self.done = 0
        self._config = config
        self._path = path
        self._lock = threading.Lock()
        self._last_at = config.clock()
        self._last_done = 0
        self._pacing_at_start = path.state() if path else None

    def one_done(self) -> None:
        with self._lock:
            self.done += 1
            now = self._config.clock()
            due = self.done - self._last_done >= self._config.progress_every
            due = due or now - self._last_at >= self._config.progress_interval
            if self.total >= 2 and (due or self.done == self.total):
                self._log(now)

    def stopped(self, error: BaseException) -> None:
        with self._lock:
            self._log(self._config.clock(), stopped_by=type(error).__name__)

    def _log(self, now: float, stopped_by: str | None = None) -> None:
        elapsed = now - self._last_at
        rate = (self.done - self._last_done) / elapsed if elapsed > 0 else None
        speed = f"{rate:.1f}/s over the last {elapsed:.0f} s" if rate is not None else "at once"
        pacing = None
        if self._path and self._pacing_at_start:
            pacing = self._path.state().since(self._pacing_at_start)
        logger.info(
            "member changes: %d of %d done, %d to do, %s%s%s",
            self.done,
            self.total,
            self.total - self.done,
            speed,
            f"; {pacing.describe()}" if pacing else "",
            f"; stopped by {stopped_by}" if stopped_by else "",
            extra={
                "members_done": self.done,
                "members_to_do": self.total - self.done,
                "changes_per_second": round(rate, 2) if rate is not None else None,
                "allowed_writes_per_second": pacing.write_rate if pacing else None,
                "in_flight_limit": pacing.in_flight_limit if pacing else None,
                "throttled": pacing.throttled if pacing else None,
            },
        )
        self._last_at = now
        self._last_done = self.done


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
