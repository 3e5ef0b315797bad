"""A stricter IAM on top of moto, for the rules moto does not model.

moto lets you delete a non-empty group, returns every member in one GetGroup page, and knows no
quotas. Real IAM does none of that, so the tests patch moto's IAM request handlers (which serve
in-process mocks and in-process servers alike) to add:

* DeleteGroup on a non-empty group -> DeleteConflict;
* GetGroup paging: 100 members a page unless MaxItems says otherwise, with Marker/IsTruncated;
* MaxItems outside IAM's 1 to 1,000 on any paged read -> ValidationError (moto accepts any);
* GetAccountAuthorizationDetails and ListGroups paging: 100 entries a page unless MaxItems says
  otherwise (moto returns everything at once);
* UpdateGroup with NewPath alone moves the group (moto ignores a path without a new name);
* managed policies IAM will not attach (``unattachable``, e.g. deprecated ones): GetPolicy answers
  IsAttachable false and AttachGroupPolicy PolicyNotAttachable;
* AddUserToGroup for a user already in 10 groups -> LimitExceeded;
* the 11th managed policy attached to a group -> LimitExceeded;
* group inline policies over 5,120 characters (whitespace not counted) -> LimitExceeded;
* injectable faults (any error code, e.g. Throttling or ServiceFailure) on any action, and
  NoSuchEntity for the first N calls naming a just-created group (eventual consistency);
* IAM's per-account throttle: token buckets (a refill rate per second and a burst) shared by every
  caller; a write (or, optionally, a read) that finds no token is answered
  ``Throttling: Rate exceeded`` (HTTP 400), as real IAM answers; the clock is injectable so tests
  run it in virtual time;
* lost answers: a request applied, then its answer lost (a 500 ServiceFailure, or the connection
  dropped), and a hook that runs just before a request (someone else acting at the worst moment);
* a log of every request that reached IAM, retries included, to count reads and writes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ConnectionClosedError
from moto.core.exceptions import ServiceException
from moto.iam import exceptions as iam_errors
from moto.iam.responses import IamResponse

from jets_deploy_iam.limits import (
    MAX_ATTACHED_POLICIES,
    MAX_GROUP_INLINE_POLICY_CHARS,
    MAX_GROUPS_PER_USER,
    MAX_PAGE_ITEMS,
)

WRITE_ACTIONS = frozenset(
    {
        "CreateGroup",
        "UpdateGroup",
        "DeleteGroup",
        "PutGroupPolicy",
        "DeleteGroupPolicy",
        "AttachGroupPolicy",
        "DetachGroupPolicy",
        "AddUserToGroup",
        "RemoveUserFromGroup",
    }
)
GROUP_ACTIONS = WRITE_ACTIONS | {
    "GetGroup",
    "ListGroupPolicies",
    "GetGroupPolicy",
    "ListAttachedGroupPolicies",
}
DEFAULT_PAGE = 100
_WS = re.compile(r"\s")


class InjectedError(ServiceException):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(code, message)


@dataclass
class Fault:
    action: str
    code: str
    skip: int = 0
    times: int = 1
    message: str = "injected by the test's strict IAM layer"


@dataclass(frozen=True)
class Call:
    action: str
    group: str | None
    params: dict[str, Any]
    at: float = 0.0  # when it reached IAM, on the layer's clock


def _dropped_connection() -> ConnectionClosedError:
    """What botocore raises when the connection drops: retried like any transient error."""
    return ConnectionClosedError(endpoint_url="https://iam.amazonaws.com/")


class TokenBucket:
    """One of IAM's per-account buckets: ``rate`` tokens a second, at most ``burst`` saved up.

    Every request of its kind takes a token; a request that finds none is refused (real IAM does
    not say how many it grants, only ``Rate exceeded``). A refused request takes no token.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._at: float | None = None
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class StrictIam:
    """Install with ``installed()``; every IAM request is then checked and recorded."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.settle_after_create = 0  # NoSuchEntity answers owed per freshly created group
        self._unsettled: dict[str, int] = {}
        self.latency = 0.0
        self.page_cap: int | None = None  # return at most this many members per page
        #: managed policy ARNs IAM refuses to attach (deprecated AWS managed policies)
        self.unattachable: set[str] = set()
        self._fail_write_at = 0
        self._fail_write_code = "ServiceFailure"
        self._fail_write_attempts = 0
        self._doomed: dict[tuple[str, str], int] = {}
        self.faulted: list[Call] = []  # every request answered with an injected error
        self.in_flight = 0
        self.max_in_flight = 0
        self.clock: Callable[[], float] = time.monotonic
        self.write_bucket: TokenBucket | None = None
        self.read_bucket: TokenBucket | None = None
        self.throttled: list[Call] = []  # every request refused for want of a token
        #: called with the action's name as each request arrives (e.g. to advance a fake clock)
        self.on_call: Callable[[str], None] | None = None
        self._lost: dict[str, tuple[int, str]] = {}
        self._hooks: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    # -- what tests use ------------------------------------------------------------------
    def inject(self, action: str, code: str, *, skip: int = 0, times: int = 1) -> Fault:
        fault = Fault(action, code, skip=skip, times=times)
        self.faults.append(fault)
        return fault

    def fail_write(self, position: int, code: str = "ServiceFailure", attempts: int = 100) -> None:
        """Fail the ``position``-th write from now on (1-based) and its next ``attempts`` retries.

        ServiceFailure and Throttling are retried while the request's time lasts (or, without a
        deadline, ``max_attempts`` times), so a fault that should reach the caller must outlast the
        retries: it sticks to that exact request.
        """
        self._fail_write_at = len(self.writes) + position
        self._fail_write_code = code
        self._fail_write_attempts = attempts

    def lose_answer(self, action: str, times: int = 1, how: str = "ServiceFailure") -> None:
        """The next ``times`` requests of ``action`` are applied, then their answers are lost:
        ``how`` is ``ServiceFailure`` (a 500) or ``connection`` (the connection drops)."""
        self._lost[action] = (times, how)

    def before_write(self, action: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, just before the next ``action`` request is served."""
        self._hooks.setdefault(action, []).append(hook)

    def throttle(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] | None = None,
        read_rate: float | None = None,
        read_burst: float | None = None,
    ) -> None:
        """Throttle writes (and reads, if ``read_rate`` is given) as IAM does: token buckets
        shared by every caller of the account. ``burst`` defaults to one second's worth."""
        if clock is not None:
            self.clock = clock
        write_burst = max(1.0, rate) if burst is None else burst
        self.write_bucket = TokenBucket(rate, write_burst, self.clock)
        if read_rate is not None:
            read_burst = max(1.0, read_rate) if read_burst is None else read_burst
            self.read_bucket = TokenBucket(read_rate, read_burst, self.clock)

    def clear_faults(self) -> None:
        """The outage is over: pending injected faults are dropped."""
        with self._lock:
            self.faults.clear()
            self._doomed.clear()
            self._lost.clear()
            self._fail_write_at = 0
            self.settle_after_create = 0
            self._unsettled.clear()
            self._lost.clear()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.max_in_flight = 0

    def actions(self) -> list[str]:
        return [c.action for c in self.calls]

    @property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.action in WRITE_ACTIONS]

    @property
    def reads(self) -> list[Call]:
        return [c for c in self.calls if c.action not in WRITE_ACTIONS]

    @property
    def accepted_writes(self) -> list[Call]:
        """Writes IAM let through its throttle (they may still have failed for other reasons)."""
        refused = {id(c) for c in self.throttled}
        return [c for c in self.writes if id(c) not in refused]

    # -- the layer ---------------------------------------------------------------------
    def _before(self, response: IamResponse, action: str) -> None:
        params = {k: v for k, v in response.querystring.items() if k != "Action"}
        flat = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in params.items()}
        group = flat.get("GroupName")
        at = self.clock()
        if self.on_call is not None:
            self.on_call(action)  # the call's duration, on a fake clock
        with self._lock:
            hooks = self._hooks.pop(action, [])
        for hook in hooks:
            hook()
        with self._lock:
            call = Call(action, group, flat, at)
            self.calls.append(call)
            bucket = self.write_bucket if action in WRITE_ACTIONS else self.read_bucket
            if bucket is not None and not bucket.take():
                self.throttled.append(call)
                raise InjectedError("Throttling", "Rate exceeded")
            signature = (action, repr(sorted(flat.items())))
            if action in WRITE_ACTIONS and len(self.writes) == self._fail_write_at:
                self._fail_write_at = 0
                self._doomed[signature] = self._fail_write_attempts
            if self._doomed.get(signature, 0) > 0:
                self._doomed[signature] -= 1
                self.faulted.append(self.calls[-1])
                if self._fail_write_code == "connection":
                    raise _dropped_connection()
                raise InjectedError(self._fail_write_code, f"injected failure of {action}")
            for fault in self.faults:
                if fault.action != action or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                raise InjectedError(fault.code, fault.message)
            if group and action in GROUP_ACTIONS and action != "CreateGroup":
                owed = self._unsettled.get(group.lower(), 0)
                if owed > 0:
                    self._unsettled[group.lower()] = owed - 1
                    raise iam_errors.NotFoundException(
                        f"The group with name {group} cannot be found."
                    )

    def _rules(self, response: IamResponse, action: str) -> None:
        backend = response.backend
        get = response._get_param
        max_items = get("MaxItems")
        if max_items is not None and not 1 <= int(max_items) <= MAX_PAGE_ITEMS:
            raise iam_errors.ValidationError(
                f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to "
                f"satisfy constraint: Member must have value between 1 and {MAX_PAGE_ITEMS}"
            )
        if action == "DeleteGroup":
            group = backend.groups.get(get("GroupName"))
            if group is not None and (group.users or group.policies or group.managed_policies):
                raise iam_errors.DeleteConflictException(
                    "Cannot delete entity, must remove users from group first."
                )
        elif action == "AddUserToGroup":
            user = backend.users.get(get("UserName"))
            group = backend.groups.get(get("GroupName"))
            if user is not None and group is not None and user not in group.users:
                count = sum(1 for g in backend.groups.values() if user in g.users)
                if count >= MAX_GROUPS_PER_USER:
                    raise iam_errors.LimitExceededException(
                        f"Cannot exceed quota for GroupsPerUser: {MAX_GROUPS_PER_USER}"
                    )
        elif action == "AttachGroupPolicy":
            group = backend.groups.get(get("GroupName"))
            arn = get("PolicyArn")
            if arn in self.unattachable:
                raise InjectedError("PolicyNotAttachable", f"Policy {arn} is not attachable.")
            full = group is not None and len(group.managed_policies) >= MAX_ATTACHED_POLICIES
            if full and arn not in group.managed_policies:
                raise iam_errors.LimitExceededException(
                    f"Cannot exceed quota for PoliciesPerGroup: {MAX_ATTACHED_POLICIES}"
                )
        elif action == "PutGroupPolicy":
            group = backend.groups.get(get("GroupName"))
            if group is not None:
                docs = dict(group.policies)
                docs[get("PolicyName")] = get("PolicyDocument")
                total = sum(len(_WS.sub("", d)) for d in docs.values())
                if total > MAX_GROUP_INLINE_POLICY_CHARS:
                    raise iam_errors.LimitExceededException(
                        f"Maximum policy size of {MAX_GROUP_INLINE_POLICY_CHARS} bytes exceeded "
                        "for group"
                    )

    def _wrap(self, action: str, method: Callable[..., Any]) -> Callable[..., Any]:
        layer = self

        @functools.wraps(method)
        def wrapper(response: IamResponse) -> Any:
            with layer._lock:
                layer.in_flight += 1
                layer.max_in_flight = max(layer.max_in_flight, layer.in_flight)
            try:
                if layer.latency:
                    time.sleep(layer.latency)
                layer._before(response, action)
                layer._rules(response, action)
                if action == "GetGroup":
                    return layer._paged_get_group(response)
                if action == "GetAccountAuthorizationDetails":
                    return layer._paged_authorization_details(response)
                if action == "ListGroups":
                    return layer._paged_list_groups(response)
                if action == "GetPolicy" and response._get_param("PolicyArn") in layer.unattachable:
                    return layer._unattachable_policy(response)
                result = method(response)
                if action == "UpdateGroup" and not response._get_param("NewGroupName"):
                    layer._move_group(response)
                with layer._lock:
                    times, how = layer._lost.get(action, (0, ""))
                    if times > 0:
                        layer._lost[action] = (times - 1, how)
                if times > 0 and how == "connection":
                    raise _dropped_connection()
                if times > 0:
                    raise InjectedError("ServiceFailure", f"{action} applied, answer lost")
                if action == "CreateGroup" and layer.settle_after_create:
                    with layer._lock:
                        name = response._get_param("GroupName").lower()
                        layer._unsettled[name] = layer.settle_after_create
                return result
            finally:
                with layer._lock:
                    layer.in_flight -= 1

        return wrapper

    def _paged_get_group(self, response: IamResponse) -> Any:
        from moto.core.responses import ActionResult

        group = response.backend.get_group(response._get_param("GroupName"))
        page = int(response._get_param("MaxItems") or DEFAULT_PAGE)
        if self.page_cap:
            page = min(page, self.page_cap)
        start = int(response._get_param("Marker") or 0)
        users = group.users[start : start + page]
        result: dict[str, Any] = {"Group": group, "Users": users}
        if start + page < len(group.users):
            result.update(IsTruncated=True, Marker=str(start + page))
        else:
            result["IsTruncated"] = False
        return ActionResult(result)

    def _paged_authorization_details(self, response: IamResponse) -> Any:
        """IAM pages the account's details: MaxItems entries (users, groups, roles, policies
        together) a page, 100 by default, with Marker/IsTruncated."""
        from moto.core.responses import ActionResult

        details = response.backend.get_account_authorization_details(
            response._get_param("Filter", [])
        )
        kinds = (
            ("UserDetailList", "users"),
            ("GroupDetailList", "groups"),
            ("RoleDetailList", "roles"),
            ("Policies", "managed_policies"),
        )
        entries = [(key, item) for key, kind in kinds for item in details[kind]]
        page = int(response._get_param("MaxItems") or DEFAULT_PAGE)
        start = int(response._get_param("Marker") or 0)
        result: dict[str, Any] = {key: [] for key, _ in kinds}
        for key, item in entries[start : start + page]:
            result[key].append(item)
        if start + page < len(entries):
            result.update(IsTruncated=True, Marker=str(start + page))
        else:
            result["IsTruncated"] = False
        return ActionResult(result)

    def _paged_list_groups(self, response: IamResponse) -> Any:
        """IAM pages ListGroups: MaxItems groups a page, 100 by default (moto returns all)."""
        from moto.core.responses import ActionResult

        groups = list(response.backend.list_groups())
        page = int(response._get_param("MaxItems") or DEFAULT_PAGE)
        start = int(response._get_param("Marker") or 0)
        result: dict[str, Any] = {"Groups": groups[start : start + page]}
        if start + page < len(groups):
            result.update(IsTruncated=True, Marker=str(start + page))
        else:
            result["IsTruncated"] = False
        return ActionResult(result)

    def _move_group(self, response: IamResponse) -> None:
        new_path = response._get_param("NewPath")
        if new_path:
            response.backend.get_group(response._get_param("GroupName")).path = new_path

    def _unattachable_policy(self, response: IamResponse) -> Any:
        from moto.core.responses import ActionResult

        found = copy.copy(response.backend.get_policy(response._get_param("PolicyArn")))
        found.is_attachable = False
        return ActionResult({"Policy": found})

    @contextlib.contextmanager
    def installed(self) -> Iterator[StrictIam]:
        from moto.core.utils import camelcase_to_underscores

        actions = {
            "CreateGroup", "GetGroup", "UpdateGroup", "DeleteGroup", "PutGroupPolicy",
            "GetGroupPolicy", "ListGroupPolicies", "DeleteGroupPolicy", "AttachGroupPolicy",
            "DetachGroupPolicy", "ListAttachedGroupPolicies", "AddUserToGroup",
            "RemoveUserFromGroup", "GetAccountAuthorizationDetails", "GetPolicy", "GetUser",
            "ListGroupsForUser", "ListUsers", "CreateUser", "ListGroups",
        }  # fmt: skip
        originals = {}
        for action in actions:
            attr = camelcase_to_underscores(action)
            originals[attr] = getattr(IamResponse, attr)
            setattr(IamResponse, attr, self._wrap(action, originals[attr]))
        try:
            yield self
        finally:
            for attr, method in originals.items():
                setattr(IamResponse, attr, method)
