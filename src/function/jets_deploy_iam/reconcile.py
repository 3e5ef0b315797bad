"""The controller: observe -> plan -> pre-flight -> apply, for each lifecycle request.

The CloudFormation handler and the command line both drive the resource through these functions,
so the lifecycle rules of the contract live here once, not in either edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import GroupConflictError, IamApplyError
from jets_deploy_iam.iam.applier import ApplyResult, OnApplied, apply_plan
from jets_deploy_iam.iam.preflight import preflight
from jets_deploy_iam.iam.reader import find_group, read_group
from jets_deploy_iam.plan import Plan, plan_delete, plan_reconcile, plan_restore
from jets_deploy_iam.spec import (
    DeclaredGroup,
    Environment,
    is_group_name,
    parse_previous,
    parse_properties,
)
from jets_deploy_iam.state import ActualGroup

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

#: How many times a Delete re-reads and retries when someone adds to the group meanwhile.
DELETE_ATTEMPTS = 3


@dataclass(frozen=True)
class GroupInfo:
    """What CloudFormation gets back through Fn::GetAtt."""

    group_name: str
    arn: str
    group_id: str
    policy_name: str

    def as_data(self) -> dict[str, str]:
        return {
            "GroupName": self.group_name,
            "Arn": self.arn,
            "GroupId": self.group_id,
            "PolicyName": self.policy_name,
        }


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    info: GroupInfo


class Reconciler:
    """One request's worth of work against one IAM client."""

    def __init__(
        self,
        client: IAMClient,
        config: ReconcileConfig | None = None,
        deadline: Deadline | None = None,
        on_applied: OnApplied | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config or ReconcileConfig()
        self.deadline = deadline or Deadline.never()
        self.on_applied = on_applied
        self.on_plan = on_plan or (lambda _plan: None)

    def _read(self, name: str) -> ActualGroup | None:
        self.deadline.check(f"reading group {name}")
        return read_group(self.client, name, self.config.page_size)

    def _execute(self, plan: Plan, actual: ActualGroup | None) -> ApplyResult:
        self.on_plan(plan)
        if plan:
            self.deadline.check("the pre-flight checks")
            preflight(self.client, plan, actual, self.config.page_size)
        return apply_plan(self.client, plan, self.config, self.deadline, self.on_applied)

    def observe_create(self, declared: DeclaredGroup) -> ActualGroup | None:
        """The group a Create works on: an existing one only if adoption was asked for, or if it
        already is exactly as declared (a repeated delivery of the same Create)."""
        actual = self._read(declared.group_name)
        if actual is not None and not self._may_take(declared, actual):
            raise GroupConflictError(
                f"GroupName {declared.group_name}: the group already exists; set "
                "AdoptExistingGroup true to take it over, or choose another GroupName"
            )
        return actual

    @staticmethod
    def _may_take(declared: DeclaredGroup, found: ActualGroup) -> bool:
        """A group this resource did not find by its own ids may be worked on if adoption was
        asked for, or if it already is exactly as declared: then this is a repeated delivery of
        a request that already succeeded (Lambda's async invocations are at-least-once)."""
        exact = not plan_reconcile(replace(declared, exclusive=True), found)
        return declared.adopt_existing_group or exact

    def observe_update(
        self, declared: DeclaredGroup, previous: DeclaredGroup | None, physical_id: str
    ) -> ActualGroup | None:
        """The group found by physical id, or (after a failed rename) by the previous name."""
        candidates = [physical_id]
        if previous is not None:
            candidates.append(previous.group_name)
        valid = [n for n in candidates if is_group_name(n)]
        self.deadline.check("reading the group")
        actual = find_group(self.client, valid, self.config.page_size)
        if actual is None and declared.group_name not in valid:
            found = self._read(declared.group_name)
            if found is not None and self._may_take(declared, found):
                actual = found
        return actual

    def preview(
        self,
        declared: DeclaredGroup | None,
        previous: DeclaredGroup | None = None,
        physical_id: str | None = None,
        delete: bool = False,
    ) -> Plan:
        """The plan a Create (no physical id), Update or Delete would apply; reads only."""
        if delete:
            return plan_delete(self.observe_delete(physical_id or ""))
        assert declared is not None
        if physical_id is None:
            return plan_reconcile(declared, self.observe_create(declared), None)
        actual = self.observe_update(declared, previous, physical_id)
        return plan_reconcile(declared, actual, previous)

    def create(self, declared: DeclaredGroup) -> Outcome:
        actual = self.observe_create(declared)
        try:
            return self._converge(declared, actual, previous=None)
        except IamApplyError as error:
            if actual is None:
                raise  # the group is ours: CloudFormation's rollback Delete removes it
            raise self._hand_back(actual, error) from error

    def _hand_back(self, snapshot: ActualGroup, error: IamApplyError) -> IamApplyError:
        """Undo a failed adoption: the group goes back exactly as it was found."""
        try:
            current = self._read(snapshot.name)
            if current is not None:
                restore = plan_restore(snapshot, current)
                apply_plan(self.client, restore, self.config, self.deadline, self.on_applied)
        except Exception as undo:
            detail = f"{error.detail}; restoring the adopted group also failed: {undo}"
            return IamApplyError(error.change, error.code, detail)
        return IamApplyError(error.change, error.code, f"{error.detail} (adopted group restored)")

    def update(
        self, declared: DeclaredGroup, previous: DeclaredGroup | None, physical_id: str
    ) -> Outcome:
        actual = self.observe_update(declared, previous, physical_id)
        return self._converge(declared, actual, previous)

    def observe_delete(self, physical_id: str) -> ActualGroup | None:
        """Exactly the group named by the physical id (a placeholder id names none)."""
        return self._read(physical_id) if is_group_name(physical_id) else None

    def _converge(
        self, declared: DeclaredGroup, actual: ActualGroup | None, previous: DeclaredGroup | None
    ) -> Outcome:
        plan = plan_reconcile(declared, actual, previous)
        result = self._execute(plan, actual)
        return Outcome(plan, self._info(declared, actual, result))

    def _info(
        self, declared: DeclaredGroup, actual: ActualGroup | None, result: ApplyResult
    ) -> GroupInfo:
        group_id = str(result.created.get("GroupId") or (actual.group_id if actual else ""))
        source_arn = str(result.created.get("Arn") or (actual.arn if actual else ""))
        # arn:<partition>:iam::<account>:group<path><name>, rebuilt for a rename or a move.
        prefix = source_arn.split(":group/", 1)[0] if ":group/" in source_arn else ""
        arn = f"{prefix}:group{declared.path}{declared.group_name}" if prefix else source_arn
        return GroupInfo(declared.group_name, arn, group_id, declared.policy_name)

    def delete(self, physical_id: str) -> Plan:
        """Empty and delete exactly the group named by the physical id; missing is success."""
        last_error: IamApplyError | None = None
        for _attempt in range(DELETE_ATTEMPTS):
            plan = plan_delete(self.observe_delete(physical_id))
            self.on_plan(plan)
            try:
                apply_plan(self.client, plan, self.config, self.deadline, self.on_applied)
            except IamApplyError as error:
                if error.code != "DeleteConflict":
                    raise
                last_error = error  # something joined the group meanwhile: read again
                continue
            return plan
        assert last_error is not None
        raise last_error


def preview_request(
    reconciler: Reconciler,
    request_type: str,
    properties: Mapping[str, Any] | None,
    old_properties: Mapping[str, Any] | None,
    physical_id: str | None,
    env: Environment,
) -> Plan:
    """The plan a CloudFormation request would apply, from its raw fields; reads only."""
    if request_type == "Delete":
        return reconciler.preview(None, physical_id=physical_id or "", delete=True)
    declared = parse_properties(properties or {}, env)
    previous = parse_previous(old_properties, env)
    target = physical_id if request_type == "Update" else None
    return reconciler.preview(declared, previous, target)
