"""The scheduled drift check: every registered group kept true to its declaration between deploys.

CloudFormation sends a custom resource a request only when a property changes, and its own drift
detection cannot see inside custom resources: someone who adds themselves to the group by hand
keeps that access until a deploy happens to change something. A schedule (template.yaml) invokes
the function with a literal input that says only "reconcile all"; the registry knows every
declared resource, so the input needs no parameters and can grant nothing. For each registered
resource the run calls ``Controller.check_drift`` (the same code as the command line's ``drift``):
it compares the group with the declaration last applied, and, when the resource says
``DriftAction: correct``, applies the plan with the rules of an Update (pre-flight, revocations
first, deadline, throttling), holding the registry record meanwhile.

What people see: one ``drift`` log line per drifted group (the plan as ``plan`` prints it), one
``drift check failed`` line per resource that could not be checked, one summary line, and
CloudWatch metrics in the Embedded Metric Format (Powertools): per run, and per drifted group.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from jets_deploy_iam.changes import Change, Plan
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import (
    IamApplyError,
    JetsDeployIamError,
    MalformedEventError,
    RegistryError,
)
from jets_deploy_iam.iam.client import is_code
from jets_deploy_iam.reconcile import Controller, Drift, Hooks
from jets_deploy_iam.registry.store import Registry, Stored, Unreadable
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam.response import reason_for
from jets_deploy_iam.spec import Environment, is_group_name

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

logger = logging.getLogger(__name__)

#: The one key of the inputs the template's rules send (a CloudFormation request never has it).
TRIGGER_KEY = "jets-deploy-iam"
#: The schedule's input, exactly: check every registered resource.
RECONCILE_ALL = "reconcile-all"
#: The CloudTrail rule's input (us-east-1 only): check the resources of one group, by name.
RECONCILE_GROUP = "reconcile-group"
NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"
NAMESPACE = "JetsDeployIam"
#: Metric names (template.yaml's alarm watches the first two).
DRIFTED_GROUPS = "DriftedGroups"
FAILED_CHECKS = "FailedChecks"
DRIFT_CHANGES = "DriftChanges"
CORRECTED_CHANGES = "CorrectedChanges"
UNCHECKED_RESOURCES = "UncheckedResources"
GROUP_DIMENSION = "Group"
#: After the deadline, the rest of the registry is still counted (never checked) this long.
COUNT_GRACE_SECONDS = 10.0

Status = Literal["in-sync", "drifted", "failed", "under-way", "absent"]


@dataclass(frozen=True)
class Trigger:
    """Which registered resources a run checks: all of them, or those whose group is ``group``."""

    group: str | None = None

    def covers(self, stored: Stored) -> bool:
        """IAM names are case-insensitive: a call may spell the group in any case."""
        current = stored.record.current
        return self.group is None or (current is not None and current.lower() == self.group.lower())

    @property
    def scope(self) -> str:
        return "all" if self.group is None else f"group {self.group}"


def parse_trigger(event: object) -> Trigger | None:
    """The run an event asks for; None if it is not one (a CloudFormation request, say).

    Exactly two inputs are accepted, those template.yaml sends: ``{"jets-deploy-iam":
    "reconcile-all"}`` and ``{"jets-deploy-iam": "reconcile-group", "group": NAME}``. Neither
    carries anything that decides what is enforced (that is the registry's), so whoever can send
    them can at most make the function enforce what was declared. An event with the key and
    anything else is dropped (``MalformedEventError``), never guessed at.
    """
    if not isinstance(event, Mapping) or TRIGGER_KEY not in event:
        return None
    kind = event[TRIGGER_KEY]
    if kind == RECONCILE_ALL and set(event) == {TRIGGER_KEY}:
        return Trigger()
    group = event.get("group")
    if (
        kind == RECONCILE_GROUP
        and set(event) == {TRIGGER_KEY, "group"}
        and isinstance(group, str)
        and is_group_name(group)
    ):
        return Trigger(group)
    raise MalformedEventError(
        f'not a drift check input: only {{"{TRIGGER_KEY}": "{RECONCILE_ALL}"}} or '
        f'{{"{TRIGGER_KEY}": "{RECONCILE_GROUP}", "group": NAME}} are'
    )


@dataclass(frozen=True)
class Outcome:
    """One registered resource after the check."""

    key: ResourceKey
    group: str
    status: Status
    #: the resource's DriftAction: report | correct
    mode: str = "report"
    plan: Plan = field(default_factory=Plan)
    corrected: int = 0
    note: str = ""
    #: the check failed because IAM throttled it
    throttled: bool = False


@dataclass(frozen=True)
class Summary:
    """The run, for its summary line, its metrics and the handler's return value."""

    scope: str = "all"
    in_sync: int = 0
    drifted: int = 0
    drift_changes: int = 0
    corrected_changes: int = 0
    failed: int = 0
    #: a request or a correction was under way (checked next run)
    under_way: int = 0
    #: left for lack of time, or because IAM throttled the run
    unchecked: int = 0
    #: False if the registry was not read to the end (``unchecked`` is then a lower bound)
    complete: bool = True
    duration_ms: int = 0

    @property
    def not_checked(self) -> int:
        return self.under_way + self.unchecked

    def as_data(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "in_sync": self.in_sync,
            "drifted": self.drifted,
            "drift_changes": self.drift_changes,
            "corrected_changes": self.corrected_changes,
            "failed": self.failed,
            "under_way": self.under_way,
            "unchecked": self.unchecked,
            "complete": self.complete,
            "duration_ms": self.duration_ms,
        }


class Reporter(Protocol):
    """Where a run's findings go (logs and metrics in Lambda; a list in tests)."""

    def applied(self, change: Change) -> None: ...

    def outcome(self, outcome: Outcome) -> None: ...

    def finished(self, summary: Summary) -> None: ...


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Tally:
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, int] = field(default_factory=dict)
    drift_changes: int = 0
    corrected: int = 0
    unchecked: int = 0
    complete: bool = True

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if outcome.status == "drifted":
            self.drift_changes += len(outcome.plan)
        self.corrected += outcome.corrected

    def summary(self, trigger: Trigger) -> Summary:
        return Summary(
            scope=trigger.scope,
            in_sync=self.counts.get("in-sync", 0),
            drifted=self.counts.get("drifted", 0),
            drift_changes=self.drift_changes,
            corrected_changes=self.corrected,
            failed=self.counts.get("failed", 0),
            under_way=self.counts.get("under-way", 0),
            unchecked=self.unchecked,
            complete=self.complete,
            duration_ms=round((time.monotonic() - self.started) * 1000),
        )


def run(
    iam: IAMClient,
    registry: Registry,
    env: Environment,
    trigger: Trigger,
    reporter: Reporter,
    config: ReconcileConfig | None = None,
    deadline: Deadline | None = None,
) -> Summary:
    """Check every resource the trigger covers, each with its own controller, one at a time.

    No resource is started after the deadline; the rest of the registry is then only counted.
    A resource whose check fails is reported and the run goes on, except on IAM throttling:
    the account's IAM quota is shared with every other caller, so the run stops starting
    checks and leaves the rest for the next one.
    """
    config = config or ReconcileConfig()
    deadline = deadline or Deadline.never()
    counting = Deadline(deadline.at + COUNT_GRACE_SECONDS, deadline.clock)
    tally = _Tally()
    throttled = False
    try:
        for item in registry.scan():
            if isinstance(item, Unreadable):
                _record(tally, reporter, Outcome(item.key, "", "failed", note=item.reason))
                continue
            if not trigger.covers(item):
                continue
            if throttled or deadline.remaining() <= 0:
                tally.unchecked += 1
                if counting.remaining() <= 0:
                    tally.complete = False  # the rest of the registry is not even read
                    break
                continue
            outcome = check_one(iam, registry, env, item, reporter, config, deadline)
            _record(tally, reporter, outcome)
            throttled = outcome.throttled
    except RegistryError as error:  # the table itself: nothing more can be read
        tally.complete = False
        key = ResourceKey("", "")
        _record(tally, reporter, Outcome(key, "", "failed", note=reason_for(error)))
    summary = tally.summary(trigger)
    reporter.finished(summary)
    return summary


def _record(tally: _Tally, reporter: Reporter, outcome: Outcome) -> None:
    tally.add(outcome)
    reporter.outcome(outcome)


def check_one(
    iam: IAMClient,
    registry: Registry,
    env: Environment,
    stored: Stored,
    reporter: Reporter,
    config: ReconcileConfig,
    deadline: Deadline,
) -> Outcome:
    """One resource, through its own controller; any failure becomes a ``failed`` outcome."""
    record = stored.record
    group = record.current or ""
    mode = _mode_of(stored)
    planned: list[Plan] = []
    applied: list[Change] = []

    def on_applied(change: Change) -> None:
        applied.append(change)
        reporter.applied(change)

    hooks = Hooks(on_plan=planned.append, on_applied=on_applied)
    controller = Controller(iam, registry, config, deadline, hooks=hooks)
    try:
        drift = controller.check_drift(record.key, env, stored=stored)
    except Exception as error:
        if not isinstance(error, JetsDeployIamError | ClientError | BotoCoreError):
            logger.warning("unexpected error in a drift check", exc_info=True)
        plan = planned[-1] if planned else Plan()
        return Outcome(
            record.key, group, "failed", mode, plan, len(applied), reason_for(error),
            throttled=_throttled(error),
        )  # fmt: skip
    return _outcome_of(drift, mode)


def _throttled(error: BaseException) -> bool:
    if isinstance(error, IamApplyError):
        return error.code == "Throttling"
    return is_code(error, "Throttling")


def _mode_of(stored: Stored) -> str:
    current = stored.record.current
    entry = stored.record.groups.get(current) if current else None
    value = entry.properties.get("DriftAction") if entry is not None else None
    return "correct" if value == "correct" else "report"


def _outcome_of(drift: Drift, mode: str) -> Outcome:
    if drift.declared is not None:
        mode = drift.declared.drift_action
    if drift.under_way:
        status: Status = "under-way"
    elif drift.declared is None:
        status = "absent"
    elif drift.drifted:
        status = "drifted"
    else:
        status = "in-sync"
    return Outcome(drift.key, drift.group, status, mode, drift.plan, drift.corrected, drift.note)


# -- what people see --------------------------------------------------------------------------


class CloudWatchReporter:
    """Structured log lines (Powertools routes this module's logger) and EMF metrics.

    Metrics per run (dimension ``service``): DriftedGroups, DriftChanges, CorrectedChanges,
    FailedChecks, UncheckedResources; the alarm watches DriftedGroups + FailedChecks. Per
    drifted group (dimensions ``service`` and ``Group``): DriftChanges, CorrectedChanges, each
    group in its own EMF object (dimensions apply to a whole object), only for groups that
    drifted: a custom metric is paid per dimension value that receives data.
    """

    def __init__(self, namespace: str | None = None, service: str | None = None) -> None:
        self.namespace = namespace or os.environ.get(NAMESPACE_VARIABLE) or NAMESPACE
        self.service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or "jets-deploy-iam"

    def _metrics(self) -> EphemeralMetrics:
        return EphemeralMetrics(namespace=self.namespace, service=self.service)

    def applied(self, change: Change) -> None:
        logger.info(
            "change applied",
            extra={**change.log_fields(), "trigger": "drift check"},
        )

    def outcome(self, outcome: Outcome) -> None:
        where = {
            "stack_id": outcome.key.stack_id,
            "logical_id": outcome.key.logical_id,
            "group": outcome.group,
            "mode": outcome.mode,
        }
        if outcome.status == "failed":
            logger.error(
                "drift check failed",
                extra={**where, "reason": outcome.note, "plan": outcome.plan.lines(),
                       "corrected": outcome.corrected},
            )  # fmt: skip
        elif outcome.status == "drifted":
            logger.warning(
                "drift",
                extra={**where, "plan": outcome.plan.lines(), "change_count": len(outcome.plan),
                       "corrected": outcome.corrected, "note": outcome.note},
            )  # fmt: skip
            metrics = self._metrics()
            metrics.add_dimension(name=GROUP_DIMENSION, value=outcome.group)
            metrics.add_metric(name=DRIFT_CHANGES, unit=MetricUnit.Count, value=len(outcome.plan))
            metrics.add_metric(
                name=CORRECTED_CHANGES, unit=MetricUnit.Count, value=outcome.corrected
            )
            metrics.flush_metrics()
        elif outcome.status == "under-way":
            logger.info("drift check: not checked", extra={**where, "note": outcome.note})

    def finished(self, summary: Summary) -> None:
        logger.info("drift check finished", extra=summary.as_data())
        metrics = self._metrics()
        count = MetricUnit.Count
        metrics.add_metric(name=DRIFTED_GROUPS, unit=count, value=summary.drifted)
        metrics.add_metric(name=DRIFT_CHANGES, unit=count, value=summary.drift_changes)
        metrics.add_metric(name=CORRECTED_CHANGES, unit=count, value=summary.corrected_changes)
        metrics.add_metric(name=FAILED_CHECKS, unit=count, value=summary.failed)
        metrics.add_metric(name=UNCHECKED_RESOURCES, unit=count, value=summary.not_checked)
        metrics.flush_metrics()
