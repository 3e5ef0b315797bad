"""Drift between deploys, found and corrected by the function's own ``Controller.check_drift``.

CloudFormation sends a custom resource a request only when one of its properties changes, so a
deploy with unchanged parameters corrects nothing: a member added by hand keeps their access.
``drift`` asks the same question the function's scheduled check asks (same method, same
registry, so they agree by construction) for every resource the registry knows, or one stack's;
``apply`` converges a stack's groups to their deployed declaration now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.plan import Plan
from jets_deploy_iam.reconcile import Controller, Drift, Hooks
from jets_deploy_iam.registry.store import Registry, Unreadable
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam.spec import Environment
from jets_deploy_iam_cli.preview import ReadOnlyRegistry

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

Status = Literal["in-sync", "drifted", "replaced", "not-checked", "failed"]


class PlanChangedError(JetsDeployIamError):
    """The group changed between the plan shown and the confirmed apply: nothing was applied."""


@dataclass(frozen=True)
class Checked:
    """One registered resource after a drift check."""

    key: ResourceKey
    status: Status
    #: the group it holds ("" when it holds none)
    group: str = ""
    plan: Plan = field(default_factory=Plan)
    #: why it was not checked, or what the check found beyond the plan
    note: str = ""
    drift_action: str = "report"

    @property
    def correctable(self) -> bool:
        return self.status == "drifted"


def env_of(key: ResourceKey) -> Environment:
    """Partition and account of the resource's stack (from its ARN, as from a function's)."""
    return Environment.from_function_arn(key.stack_id)


def classify(drift: Drift) -> Checked:
    """A Drift as people read it (a missing group is never shown as a group name)."""
    action = drift.declared.drift_action if drift.declared is not None else "report"
    if drift.decision is None:
        return Checked(drift.key, "not-checked", note=drift.note, drift_action=action)
    if drift.decision.action == "none":
        return Checked(drift.key, "replaced", drift.group, note=drift.note, drift_action=action)
    status: Status = "drifted" if drift.plan else "in-sync"
    return Checked(drift.key, status, drift.group, drift.plan, drift.note, action)


def check(iam: IAMClient, registry: Registry, keys: Iterable[ResourceKey]) -> list[Checked]:
    """Every key's drift, read-only: the registry is never written, IAM only read."""
    results = []
    for key in keys:
        try:
            drift = Controller(iam, ReadOnlyRegistry(registry)).check_drift(
                key, env_of(key), correct=False
            )
        except JetsDeployIamError as error:
            results.append(Checked(key, "failed", note=str(error)))
            continue
        results.append(classify(drift))
    return results


def registered_keys(registry: Registry, stack_id: str | None = None) -> list[ResourceKey]:
    """The keys of every record (of one stack's, with ``stack_id``), in a stable order."""
    # an undecodable record is checked too: its check fails and says why
    keys = [s.key if isinstance(s, Unreadable) else s.record.key for s in registry.scan()]
    if stack_id is not None:
        keys = [k for k in keys if k.stack_id == stack_id]
    return sorted(keys, key=lambda k: (k.stack_name, k.stack_id, k.logical_id))


def correct(
    iam: IAMClient,
    registry: Registry,
    shown: Sequence[Checked],
    config: ReconcileConfig | None = None,
) -> list[tuple[Checked, int]]:
    """Apply each shown plan, exactly as shown: if a group changed since, ``PlanChangedError`` is
    raised before that group's first write. Returns each resource with its applied count."""
    done = []
    for checked in shown:
        hooks = Hooks(on_plan=_exactly(checked))
        controller = Controller(iam, registry, config or ReconcileConfig(), hooks=hooks)
        drift = controller.check_drift(checked.key, env_of(checked.key), correct=True)
        done.append((checked, drift.corrected))
    return done


def _exactly(checked: Checked) -> Callable[[Plan], None]:
    def guard(plan: Plan) -> None:
        if plan != checked.plan:
            raise PlanChangedError(
                f"group {checked.group} changed since its plan was shown: nothing applied to "
                "it; run apply again to see the new plan"
            )

    return guard
