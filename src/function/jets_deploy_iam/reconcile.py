"""The controller: every lifecycle rule of the contract, once, for every entry point.

For each request: read the registry (one read) and answer a repeated delivery from it; observe
the group in IAM; decide (a ``Decision``: the plan, its undo record, the ownership it claims);
prove it can apply (pre-flight); record the claims before the first IAM write (write-ahead); act;
record the outcome together with the answer (commit). ``preview`` makes the same decision without
writing, so the command line's ``plan`` shows exactly what the function would do.

The rules (README, "Lifecycle rules"), against CloudFormation as it really behaves:

* a Create never takes an existing group unless ``AdoptExistingGroup``; a failed adoption hands
  the group back exactly as it was found; a Create that never created a group answers a
  placeholder id, so the rollback Delete touches nothing;
* a rename is a replacement: the new group gets the whole content of the old one, which is left
  intact for CloudFormation's cleanup Delete (or its rollback Delete of the new one);
* a failed Update undoes its own writes; CloudFormation's rollback Update (same physical id,
  properties swapped) restores the group exactly from the last Update's undo record;
* a Delete acts only on a group the registry says this resource owns (same GroupId), and with
  ``Exclusive`` false removes only what the resource added;
* work the deadline stops while it makes progress goes on in a later invocation (``continuing``,
  see ``continuation.py``): what is done is recorded, no answer is given yet, and the undo record
  stays the one of the request's first invocation (merged with what later ones found).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from jets_deploy_iam.changes import Change, CreateGroup, DeleteGroup, Plan
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.continuation import Continuing, stopped_by_deadline
from jets_deploy_iam.exceptions import (
    DeadlineExceededError,
    GroupConflictError,
    IamApplyError,
    InvalidPropertiesError,
    JetsDeployIamError,
)
from jets_deploy_iam.iam.applier import Applier, ApplyResult
from jets_deploy_iam.iam.callpath import bounded_by
from jets_deploy_iam.iam.preflight import preflight
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.ownership import Ownership, legacy_ownership
from jets_deploy_iam.plan import copied_content, plan_copy, plan_delete, plan_reconcile
from jets_deploy_iam.registry.model import GroupRecord, LastUpdate, ResourceRecord
from jets_deploy_iam.registry.store import Registry, Stored
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response, reason_for, shorten
from jets_deploy_iam.spec import DeclaredGroup, Environment, is_group_name, parse_properties
from jets_deploy_iam.state import ActualGroup
from jets_deploy_iam.undo import Undo

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

logger = logging.getLogger(__name__)

#: How many times a Delete re-reads and retries when someone adds to the group meanwhile.
DELETE_ATTEMPTS = 3

Edit = Callable[[ResourceRecord], ResourceRecord]
_T = TypeVar("_T")


def _ignore(_value: object) -> None:
    return None


def _unchanged(record: ResourceRecord) -> ResourceRecord:
    return record


@dataclass(frozen=True)
class Hooks:
    """What the edges want to hear about: logs, metrics, the id a late answer must carry."""

    on_plan: Callable[[Plan], None] = _ignore
    on_applied: Callable[[Change], None] = _ignore
    on_physical_id: Callable[[str], None] = _ignore


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
class Decision:
    """What a request will do to IAM, decided from the registry and IAM before any write."""

    #: create | adopt | update | replace | rollback | delete | keep | restore | none
    action: str
    #: the group the plan writes to
    group: str
    plan: Plan = field(default_factory=Plan)
    before: ActualGroup | None = None
    ownership: Ownership = field(default_factory=Ownership)
    undo: Undo | None = None
    #: the group's record as written ahead of the plan (its claims included)
    record: GroupRecord | None = None
    #: a rename's old group (it becomes the new one's pair)
    source: GroupRecord | None = None
    note: str = ""


@dataclass(frozen=True)
class Drift:
    """A registered resource's group against the declaration last applied to it."""

    key: ResourceKey
    group: str
    declared: DeclaredGroup | None = None
    decision: Decision | None = None
    #: changes applied to correct it (0 when only reported)
    corrected: int = 0
    note: str = ""

    @property
    def plan(self) -> Plan:
        return self.decision.plan if self.decision is not None else Plan()

    @property
    def drifted(self) -> bool:
        return bool(self.plan) or (self.decision is not None and self.decision.action == "none")


class Controller:
    """One request's worth of work: it keeps that request's registry record and progress."""

    def __init__(
        self,
        iam: IAMClient,
        registry: Registry,
        config: ReconcileConfig | None = None,
        deadline: Deadline | None = None,
        undo_deadline: Deadline | None = None,
        hooks: Hooks | None = None,
        continuing: Continuing | None = None,
    ) -> None:
        self.iam = iam
        self.registry = registry
        self.config = config or ReconcileConfig()
        self.deadline = deadline or Deadline.never()
        #: a failure's undo may run a little longer than the work it undoes
        self.undo_deadline = undo_deadline or self.deadline
        self.hooks = hooks or Hooks()
        #: None: work the deadline stops fails (the command line, tests, ``sam local``)
        self.continuing = continuing
        self._stored: Stored | None = None
        self.physical_id = ""

    # -- entry points ------------------------------------------------------------------------

    def handle(self, request: Request, stored: Stored | None = None) -> Response:
        """Serve one CloudFormation request. Never raises: every failure is a FAILED answer;
        ``IN_PROGRESS`` (with ``continuing``) means no answer yet. ``stored``: the record as the
        caller just read or wrote it (``continuation.Gate``), saving a read."""
        self.physical_id = (
            request.placeholder if request.kind == "Create" else str(request.physical_id)
        )
        self.hooks.on_physical_id(self.physical_id)
        try:
            self._stored = stored if stored is not None else self.registry.load(request.key)
        except JetsDeployIamError as error:
            return Response.failed(self.physical_id, error)
        replay = self.record.answer_for(request.request_id)
        if replay is not None:
            logger.info("repeated delivery: answered as before", extra={"status": replay.status})
            return replay
        try:
            if request.kind == "Create":
                return self._create(request)
            if request.kind == "Update":
                return self._update(request)
            return self._delete(request)
        except Exception as error:
            _log_failure(error)
            response = Response.failed(self.physical_id, error)
            self._commit(request, response, _unchanged)
            return response

    def load(self, request: Request) -> Stored:
        """The record ``handle`` needs for ``request``, for a caller that reads it on its behalf
        (``continuation.Gate``) and hands it over."""
        return self.registry.load(request.key)

    def preview(self, request: Request) -> Decision:
        """What ``handle`` would do, from the registry and IAM, without writing anything."""
        self._stored = self.registry.load(request.key)
        replay = self.record.answer_for(request.request_id)
        if replay is not None:
            return Decision("none", replay.physical_id, note="already answered: nothing to do")
        if request.kind == "Create":
            return self._decide_create(request)
        if request.kind == "Update":
            return self._decide_update(request)
        return self._decide_delete(request)

    @property
    def record(self) -> ResourceRecord:
        return _required(self._stored).record

    # -- between deploys: drift ----------------------------------------------------------------

    def check_drift(self, key: ResourceKey, env: Environment, correct: bool | None = None) -> Drift:
        """Compare a registered resource's group with the declaration last applied to it, and
        (``correct``, or the resource's own ``DriftAction: correct``) converge it now.

        The declaration is the registry's, policy document included, never one rebuilt from
        properties by this version of the code: between deploys, only what was deployed is
        enforced. Foreign content of a non-exclusive resource is never touched (the plan removes
        only what the resource owns); a group deleted by hand is created again.
        """
        self._stored = self.registry.load(key)
        record = self.record
        name = record.current
        if name is None or name not in record.groups:
            return Drift(key, name or "", note="no group: the resource is deleted or never created")
        if record.in_progress is not None:
            return Drift(key, name, note=f"request {record.in_progress} is under way: not checked")
        entry = record.groups[name]
        declared = replace(parse_properties(entry.properties, env), policy_document=entry.document)
        actual = self._read(name)
        if actual is not None and not entry.matches(actual):
            note = "the group was replaced outside CloudFormation (another GroupId): left alone"
            return Drift(key, name, declared, Decision("none", name, before=actual), note=note)
        plan = plan_reconcile(declared, actual, entry.ownership)
        claims = entry.ownership.claim(plan, actual)
        record_ahead = replace(entry, ownership=claims)
        decision = Decision("correct", name, plan, actual, entry.ownership, record=record_ahead)
        correcting = declared.drift_action == "correct" if correct is None else correct
        if not plan or not correcting:
            return Drift(key, name, declared, decision)
        self._preflight(decision)
        self._stored = self.registry.change(self._stored, lambda r: r.with_group(record_ahead))
        applier = self._applier(self.deadline)
        try:
            applier.apply(plan)
        finally:  # what was applied is recorded even if the correction stops half way
            info = self._info(declared, actual, applier.result)
            done = replace(_settled(record_ahead, applier.result), group_id=info.group_id or None)
            self._stored = self.registry.change(self._stored, lambda r: r.with_group(done))
        return Drift(key, name, declared, decision, corrected=len(applier.result.applied))

    # -- Create ------------------------------------------------------------------------------

    def _decide_create(self, request: Request) -> Decision:
        declared = request.declared
        name = declared.group_name
        actual = self._read(name)
        entry = self.record.groups.get(name)
        action, owned = "create", Ownership()
        if actual is not None:
            resuming = self.record.in_progress == request.request_id
            if resuming and entry is not None and entry.matches(actual):
                owned = entry.ownership  # this very request, delivered again or continued
                last = self.record.last_update
                if last is not None and last.request_id == request.request_id:
                    action = "adopt"  # its hand-back record says it adopted the group
            elif declared.adopt_existing_group:
                action = "adopt"
            else:
                raise GroupConflictError(
                    f"GroupName {name}: the group already exists and this resource does not own "
                    "it; set AdoptExistingGroup true to take it over, or choose another GroupName"
                )
        plan = plan_reconcile(declared, actual, owned)
        record = _record_of(name, actual, request, declared, owned.claim(plan, actual))
        undo = Undo.of(plan, actual, owned)
        return Decision(action, name, plan, actual, owned, undo, record)

    def _create(self, request: Request) -> Response:
        decision = self._decide_create(request)
        decision = replace(decision, undo=self._so_far(request, decision.undo))
        self._preflight(decision)
        record, undo = _required(decision.record), _required(decision.undo)
        adopted = decision.action == "adopt"
        # An adoption's undo record is kept where the rollback Delete (placeholder id) finds it.
        hand_back = LastUpdate(request.request_id, request.placeholder, None, None, undo)
        self._write_ahead(
            request,
            lambda r: replace(r.with_group(record), last_update=hand_back if adopted else None),
        )
        if decision.before is not None and not adopted:
            self._set_physical(decision.group)
        applier = self._applier(self.deadline, creating=True)
        try:
            applier.apply(decision.plan)
        except Exception as error:
            failure = self._go_on(request, decision, applier.result, error)
            if failure is None:
                return Response.in_progress(self.physical_id)
            if adopted:
                return self._hand_back(request, decision, failure)
            return self._failed_create(request, decision, applier.result, failure)
        info = self._info(request.declared, decision.before, applier.result)
        done = replace(_settled(record, applier.result), group_id=info.group_id)
        response = Response("SUCCESS", decision.group, data=info.as_data())
        self._commit(
            request,
            response,
            lambda r: replace(r.with_group(done), current=done.name, last_update=None),
        )
        return response

    def _failed_create(
        self, request: Request, decision: Decision, result: ApplyResult, error: Exception
    ) -> Response:
        """The group this Create made stays for CloudFormation's rollback Delete to remove (its
        id is the physical id, its GroupId is recorded); if none was made, nothing is claimed."""
        _log_failure(error)
        record = _required(decision.record)
        created = str(result.created.get("GroupId") or "")
        if self.physical_id == decision.group:
            done = replace(_settled(record, result), group_id=created or record.group_id)
            edit: Edit = lambda r: r.with_group(done)  # noqa: E731
        else:
            edit = lambda r: r.without_group(record.name)  # noqa: E731
        response = Response.failed(self.physical_id, error)
        self._commit(request, response, edit)
        return response

    def _hand_back(self, request: Request, decision: Decision, error: Exception) -> Response:
        """A failed adoption gives the group back exactly as found, whatever the failure (IAM,
        the deadline, the network). If even that fails, the rollback Delete finishes it."""
        _log_failure(error)
        failure = self._restore(_required(decision.undo))
        if failure is None:
            text = f"{reason_for(error)} (adopted group restored)"
            edit: Edit = lambda r: replace(r.without_group(decision.group), last_update=None)  # noqa: E731
        else:
            text = (
                f"{reason_for(error)}; handing the adopted group back failed too "
                f"({reason_for(failure)}): the rollback Delete retries it"
            )
            edit = _unchanged  # the write-ahead record and its undo record stay
        response = Response("FAILED", request.placeholder, shorten(text))
        self._commit(request, response, edit)
        return response

    # -- Update ------------------------------------------------------------------------------

    def _decide_update(self, request: Request) -> Decision:
        physical = str(request.physical_id)
        last = self.record.last_update
        declared = request.declared  # a rollback restores properties that were applied: valid
        if last is not None and last.reversed_by(request):
            return self._decide_rollback(last)
        if not is_group_name(physical):
            raise GroupConflictError(f"physical id {physical} names no group: nothing to update")
        actual = self._read(physical)
        entry = self._owned_entry(request, physical, actual, declared)
        if declared.group_name != physical:
            return self._decide_replace(request, declared, entry, actual)
        owned = entry.ownership if entry is not None and actual is not None else Ownership()
        plan = plan_reconcile(declared, actual, owned)
        claims = owned.claim(plan, actual)
        record = _record_of(physical, actual, request, declared, claims, entry)
        undo = Undo.of(plan, actual, owned)
        return Decision("update", physical, plan, actual, owned, undo, record)

    def _owned_entry(
        self, request: Request, name: str, actual: ActualGroup | None, declared: DeclaredGroup
    ) -> GroupRecord | None:
        """The record of the group this Update acts on: None only if the group is gone."""
        entry = self.record.groups.get(name)
        if actual is None:
            return entry  # deleted by hand: the Update creates it again
        if entry is not None and entry.matches(actual):
            return entry
        if entry is None and self._legacy:
            return _legacy_record(actual, request.old_properties, request.env)
        if declared.adopt_existing_group:
            return _taken_over(actual, request, declared)
        why = (
            "was replaced outside CloudFormation (its GroupId changed)"
            if entry is not None
            else "is not registered to this resource"
        )
        raise GroupConflictError(
            f"group {name} {why}: this resource will not change it; set AdoptExistingGroup "
            "true to take it over"
        )

    def _decide_replace(
        self,
        request: Request,
        declared: DeclaredGroup,
        entry: GroupRecord | None,
        source: ActualGroup | None,
    ) -> Decision:
        physical, new = str(request.physical_id), declared.group_name
        if new.lower() == physical.lower():
            raise InvalidPropertiesError(
                [
                    f"GroupName {new}: IAM names are case-insensitive, so {physical} -> {new} "
                    "cannot be a second group; rename through another name (two deploys)"
                ]
            )
        existing = self._read(new)
        mine = self.record.groups.get(new)
        continuing = (
            existing is not None
            and mine is not None
            and mine.matches(existing)
            and mine.pair == physical
        )
        # Anything else already named ``new`` fails the pre-flight, which names it.
        target = existing if continuing else None
        if source is None or entry is None:
            plan = plan_reconcile(declared, target, Ownership())
            claims = Ownership().claim(plan, target)
            pair = None
        else:
            content = copied_content(declared, source, entry.ownership)
            plan = plan_copy(content, target)
            claims = entry.ownership.for_copy(source, content)
            pair = physical
        record = replace(_record_of(new, target, request, declared, claims), pair=pair)
        undo = Undo(group=new, created=True)
        old = entry if source is not None else None
        return Decision("replace", new, plan, target, Ownership(), undo, record, source=old)

    def _decide_rollback(self, last: LastUpdate) -> Decision:
        undo = last.undo
        entry = self.record.groups.get(undo.group)
        current = self._read(undo.group) if is_group_name(undo.group) else None
        if current is not None and (entry is None or not entry.matches(current)):
            current = None  # not the group this resource changed: touch nothing
        owned = entry.ownership if entry is not None else Ownership()
        plan = undo.restore_plan(current)
        record = replace(entry, ownership=owned.claim(plan, current)) if entry else None
        return Decision("rollback", undo.group, plan, current, owned, undo, record)

    def _update(self, request: Request) -> Response:
        physical = str(request.physical_id)
        try:
            decision = self._decide_update(request)
        except InvalidPropertiesError as error:
            # Nothing is written. CloudFormation's rollback (properties swapped) must then change
            # nothing either: remember this Update with an empty undo record.
            nothing = LastUpdate(
                request.request_id, physical, request.properties, request.old_properties,
                Undo(group=physical),
            )  # fmt: skip
            response = Response.failed(physical, error)
            self._commit(request, response, lambda r: replace(r, last_update=nothing))
            return response
        if decision.action != "rollback":  # (a rollback's undo is the record it restores from)
            decision = replace(decision, undo=self._so_far(request, decision.undo))
        self._preflight(decision)
        undo = _required(decision.undo)
        forward = LastUpdate(
            request.request_id, physical, request.properties, request.old_properties, undo
        )
        if decision.plan:
            self._write_ahead(request, lambda r: _ahead(r, decision, forward))
        applier = self._applier(self.deadline)
        try:
            applier.apply(decision.plan)
        except Exception as error:
            failure = self._go_on(request, decision, applier.result, error)
            if failure is None:
                return Response.in_progress(self.physical_id)
            return self._undo_failed_update(request, decision, forward, applier.result, failure)
        if decision.action == "rollback":
            return self._finish_rollback(request, decision, applier.result)
        return self._finish_update(request, decision, forward, applier.result)

    def _finish_update(
        self, request: Request, decision: Decision, forward: LastUpdate, result: ApplyResult
    ) -> Response:
        info = self._info(request.declared, decision.before, result)
        done = replace(_settled(_required(decision.record), result), group_id=info.group_id)
        response = Response("SUCCESS", decision.group, data=info.as_data())

        def edit(r: ResourceRecord) -> ResourceRecord:
            r = r.with_group(done)
            if decision.source is not None:
                r = r.with_group(replace(decision.source, pair=done.name))
            return replace(r, current=done.name, last_update=forward)

        self._commit(request, response, edit)
        return response

    def _finish_rollback(
        self, request: Request, decision: Decision, result: ApplyResult
    ) -> Response:
        undo = _required(decision.undo)
        physical = str(request.physical_id)
        info = self._info_of(physical)
        response = Response("SUCCESS", physical, data=info.as_data() if info else {})
        # The rollback is an Update too: its own undo record makes it reversible in turn.
        reverse = LastUpdate(
            request.request_id,
            physical,
            request.properties,
            request.old_properties,
            _required(self._so_far(request, self._reverse(decision))),
        )

        def edit(r: ResourceRecord) -> ResourceRecord:
            if undo.created:
                r = r.without_group(undo.group)
            elif decision.record is not None:
                owned = undo.restore_ownership(_settled(decision.record, result).ownership)
                r = r.with_group(_declared_as(replace(decision.record, ownership=owned), request))
            return replace(r, current=physical, last_update=reverse)

        self._commit(request, response, edit)
        return response

    def _undo_failed_update(
        self,
        request: Request,
        decision: Decision,
        forward: LastUpdate,
        result: ApplyResult,
        error: Exception,
    ) -> Response:
        """A failed Update leaves the group as it was: it undoes what it wrote, revocations
        first. If undoing fails too, the undo record stays for CloudFormation's rollback."""
        _log_failure(error)
        undo = _required(decision.undo)
        failure = self._restore(undo) if result.applied else None
        reason = reason_for(error)
        if failure is not None:
            text = (
                f"{reason}; undoing its changes failed too ({reason_for(failure)}): "
                "the rollback retries it"
            )
        else:
            text = f"{reason} (its changes were undone)" if result.applied else reason
        response = Response("FAILED", str(request.physical_id), shorten(text))

        def edit(r: ResourceRecord) -> ResourceRecord:
            if failure is not None or decision.action == "rollback":
                return r  # the write-ahead record and the undo record stay for the next try
            if undo.created:
                return replace(r.without_group(undo.group), last_update=forward)
            if decision.record is not None:
                owned = undo.restore_ownership(decision.record.ownership)
                r = r.with_group(replace(decision.record, ownership=owned))
            return replace(r, last_update=forward)

        self._commit(request, response, edit)
        return response

    # -- Delete ------------------------------------------------------------------------------

    def _decide_delete(self, request: Request) -> Decision:
        physical = str(request.physical_id)
        last = self.record.last_update
        if not is_group_name(physical):
            if last is not None and last.physical_id == physical and not last.undo.empty:
                return self._decide_hand_back(last.undo)
            return Decision("none", physical, note="the physical id names no group")
        actual = self._read(physical)
        if actual is None:
            return Decision("none", physical, note="the group does not exist")
        entry = self.record.groups.get(physical)
        if entry is None and self._legacy:
            entry = _legacy_record(actual, request.properties, request.env)
        if entry is None or not entry.matches(actual):
            note = "the registry does not say this resource owns the group: left untouched"
            return Decision("none", physical, before=actual, note=note)
        whole = entry.pair is not None or entry.exclusive
        plan = plan_delete(actual, entry.ownership, whole)
        if plan.of_type(DeleteGroup):
            return Decision("delete", physical, plan, actual, entry.ownership, record=entry)
        note = "foreign content remains: the group is kept with it"
        return Decision("keep", physical, plan, actual, entry.ownership, record=entry, note=note)

    def _decide_hand_back(self, undo: Undo) -> Decision:
        entry = self.record.groups.get(undo.group)
        current = self._read(undo.group)
        if current is None or entry is None or not entry.matches(current):
            return Decision("none", undo.group, note="the adopted group is gone or not ours")
        plan = undo.restore_plan(current)
        note = "finishing the hand-back of a failed adoption"
        return Decision("restore", undo.group, plan, current, undo=undo, record=entry, note=note)

    def _delete(self, request: Request) -> Response:
        decision = self._decide_delete(request)
        applier = self._applier(self.deadline)
        for _attempt in range(DELETE_ATTEMPTS):
            if decision.note:
                logger.info("delete: " + decision.note, extra={"group": decision.group})
            self.hooks.on_plan(decision.plan)
            applier = self._applier(self.deadline)
            try:
                applier.apply(decision.plan)
                break
            except Exception as error:
                failure = self._go_on(request, decision, applier.result, error)
                if failure is None:
                    return Response.in_progress(self.physical_id)
                if failure is not error:
                    raise failure from error
                if not isinstance(error, IamApplyError) or error.code != "DeleteConflict":
                    raise
                decision = self._decide_delete(request)  # something joined the group: read again
        else:
            raise IamApplyError(
                f"delete group {decision.group}",
                "DeleteConflict",
                "the group kept changing while being emptied; deploy again",
            )
        response = Response("SUCCESS", str(request.physical_id))
        self._commit(request, response, lambda r: _after_delete(r, decision, applier.result))
        return response

    # -- shared steps ------------------------------------------------------------------------

    @property
    def _legacy(self) -> bool:
        """No record at all: the resource was created by a version before the registry."""
        return _required(self._stored).version == 0

    def _read(self, name: str, deadline: Deadline | None = None) -> ActualGroup | None:
        deadline = deadline or self.deadline
        deadline.check(f"reading group {name}")
        with bounded_by(self.iam, deadline):  # every page, every retry, within the deadline
            return read_group(self.iam, name, self.config.page_size)

    def _preflight(self, decision: Decision) -> None:
        self.hooks.on_plan(decision.plan)
        if decision.plan:
            self.deadline.check("the pre-flight checks")
            with bounded_by(self.iam, self.deadline):
                preflight(self.iam, decision.plan, decision.before, self.config.page_size)

    def _applier(self, deadline: Deadline, creating: bool = False) -> Applier:
        def applied(change: Change) -> None:
            if creating and isinstance(change, CreateGroup):
                self._set_physical(change.group)  # the rollback Delete must clean it up
            self.hooks.on_applied(change)

        return Applier(self.iam, self.config, deadline, applied)

    def _set_physical(self, physical_id: str) -> None:
        self.physical_id = physical_id
        self.hooks.on_physical_id(physical_id)

    def _restore(self, undo: Undo) -> Exception | None:
        """Apply ``undo`` within the time kept for it; the error if it could not finish."""
        try:
            current = self._read(undo.group, self.undo_deadline)
            entry = self.record.groups.get(undo.group)
            if current is not None and entry is not None and not entry.matches(current):
                return None  # a namesake someone else made: not ours to change
            self._applier(self.undo_deadline).apply(undo.restore_plan(current))
        except Exception as error:
            logger.warning("undo failed", exc_info=not isinstance(error, JetsDeployIamError))
            return error
        return None

    def _write_ahead(self, request: Request, edit: Edit) -> None:
        """Record the claims before the first IAM write (the request fails if it cannot)."""
        self._stored = self.registry.change(
            _required(self._stored), lambda r: replace(edit(r), in_progress=request.request_id)
        )

    def _commit(self, request: Request, response: Response, edit: Edit) -> None:
        """Record the outcome with the answer. IAM has already changed: a registry failing now
        cannot undo that, so the answer stands and the failure is logged."""
        if self._stored is None:
            return
        try:
            self._stored = self.registry.change(
                self._stored, lambda r: edit(r).with_answer(request.request_id, response)
            )
        except JetsDeployIamError:
            logger.error("the outcome could not be recorded in the registry", exc_info=True)

    def _info(
        self, declared: DeclaredGroup, actual: ActualGroup | None, result: ApplyResult
    ) -> GroupInfo:
        group_id = str(result.created.get("GroupId") or (actual.group_id if actual else ""))
        source_arn = str(result.created.get("Arn") or (actual.arn if actual else ""))
        # arn:<partition>:iam::<account>:group<path><name>, rebuilt for a move
        prefix = source_arn.split(":group/", 1)[0] if ":group/" in source_arn else ""
        arn = f"{prefix}:group{declared.path}{declared.group_name}" if prefix else source_arn
        return GroupInfo(declared.group_name, arn, group_id, declared.policy_name)

    def _info_of(self, name: str) -> GroupInfo | None:
        group = self._read(name) if is_group_name(name) else None
        if group is None:
            return None
        entry = self.record.groups.get(name)
        properties = entry.properties if entry is not None else {}
        policy_name = str(properties.get("PolicyName") or "JetsPolicy")
        return GroupInfo(group.name, group.arn, group.group_id, policy_name)

    # -- continuation across invocations -------------------------------------------------------

    def _go_on(
        self, request: Request, decision: Decision, result: ApplyResult, error: Exception
    ) -> Exception | None:
        """None when the work goes on in a later invocation: the deadline (not IAM) stopped it,
        this invocation applied something, another invocation would have time, the progress is
        recorded and the next invocation arranged. Else the error the request fails with (a
        request that made no progress fails as always)."""
        going_on = self.continuing
        if going_on is None or not result.applied or not stopped_by_deadline(error):
            return error
        refusal = going_on.refusal()
        if refusal is not None:
            to_do = len(decision.plan) - len(result.applied)
            return DeadlineExceededError(
                f"stopped with {to_do} of {len(decision.plan)} changes to do: {refusal}; raise "
                "ServiceTimeout (at most 3600) or split the change into smaller deploys"
            )
        try:
            self._in_progress(request, decision, result, going_on)
            going_on.arrange()
        except Exception as failure:
            logger.error("the work cannot go on in another invocation", exc_info=True)
            return DeadlineExceededError(
                "the work outlasted the invocation, and going on in another failed: "
                f"{reason_for(failure)}"
            )
        return None

    def _in_progress(
        self, request: Request, decision: Decision, result: ApplyResult, going_on: Continuing
    ) -> None:
        """Record what this invocation did, without an answer: a later invocation re-reads the
        registry and IAM and goes on. The request stays ``in_progress`` (its write-ahead claims
        hold), and its ``Continuation`` keeps the undo record of everything since its first
        invocation (a rollback's: its own reverse)."""
        logger.info(
            "the deadline stopped work that makes progress: it goes on in another invocation",
            extra={"applied": len(result.applied), "planned": len(decision.plan)},
        )
        undo = self._reverse(decision) if decision.action == "rollback" else decision.undo
        undo = self._so_far(request, undo)
        created = str(result.created.get("GroupId") or "")
        written = decision.record if decision.action not in ("delete", "keep", "restore") else None

        def edit(r: ResourceRecord) -> ResourceRecord:
            if written is not None:
                done = _settled(written, result)
                r = r.with_group(replace(done, group_id=created or done.group_id))
            before = r.continuation
            if before is None or before.request_id != request.request_id:
                before = going_on.fresh(request, decision.group)
            # the lease is released; a cancellation that came meanwhile stays
            after = replace(before, group=decision.group, undo=undo, holder=None)
            return replace(r, in_progress=request.request_id, continuation=after)

        self._stored = self.registry.change(_required(self._stored), edit)

    def _so_far(self, request: Request, undo: Undo | None) -> Undo | None:
        """``undo`` after the undo record of this request's earlier invocations (first wins)."""
        going_on = self.record.continuation
        if undo is None or going_on is None or going_on.undo is None:
            return undo
        if going_on.request_id != request.request_id:
            return undo
        return going_on.undo.then(undo)

    @staticmethod
    def _reverse(decision: Decision) -> Undo:
        return Undo.of(decision.plan, decision.before, decision.ownership)


# -- record edits ----------------------------------------------------------------------------


def _ahead(record: ResourceRecord, decision: Decision, forward: LastUpdate) -> ResourceRecord:
    """The write-ahead of an Update: the group's claims, and its undo record (a rollback keeps
    the undo record it is restoring from until it is done)."""
    if decision.record is not None:
        record = record.with_group(decision.record)
    if decision.action == "rollback":
        return record
    return replace(record, last_update=forward)


def _after_delete(
    record: ResourceRecord, decision: Decision, result: ApplyResult
) -> ResourceRecord:
    if decision.action == "restore":  # a failed adoption is now handed back: not ours
        return replace(record.without_group(decision.group), last_update=None)
    if decision.action == "none" and decision.before is None:
        return record.without_group(decision.group) if is_group_name(decision.group) else record
    if decision.action == "delete":
        last = record.last_update
        if last is not None and last.undo.group == decision.group:
            record = replace(record, last_update=None)  # the rollback of a rename is complete
        return record.without_group(decision.group)
    if decision.action == "keep" and decision.record is not None:
        kept = replace(_settled(decision.record, result), pair=None)
        return replace(record.with_group(kept), current=None)
    return record


def _record_of(
    name: str,
    actual: ActualGroup | None,
    request: Request,
    declared: DeclaredGroup,
    claims: Ownership,
    entry: GroupRecord | None = None,
) -> GroupRecord:
    return GroupRecord(
        name=name,
        group_id=actual.group_id if actual is not None else None,
        properties=request.properties,
        document=declared.policy_document,
        exclusive=declared.exclusive,
        ownership=claims,
        pair=entry.pair if entry is not None else None,
    )


def _settled(record: GroupRecord, result: ApplyResult) -> GroupRecord:
    return replace(record, ownership=record.ownership.settle(result.applied))


def _declared_as(record: GroupRecord, request: Request) -> GroupRecord:
    """The record with the declaration the request applied (kept as is if it does not parse)."""
    try:
        declared = request.declared
    except InvalidPropertiesError:
        return record
    return replace(
        record,
        properties=request.properties,
        document=declared.policy_document,
        exclusive=declared.exclusive,
    )


def _legacy_record(group: ActualGroup, properties: Any, env: Environment) -> GroupRecord:
    """A group created before the registry existed: it owns what its properties declare."""
    try:
        declared = parse_properties(properties, env)
    except InvalidPropertiesError:
        return GroupRecord(group.name, group.group_id, {}, {}, exclusive=True)
    owned = legacy_ownership(
        group, declared.users, declared.managed_policy_arns, declared.policy_name
    )
    return GroupRecord(
        group.name, group.group_id, properties, declared.policy_document, declared.exclusive, owned
    )


def _taken_over(group: ActualGroup, request: Request, declared: DeclaredGroup) -> GroupRecord:
    """An existing group an Update takes over (AdoptExistingGroup): it owns nothing yet."""
    return GroupRecord(
        group.name, group.group_id, request.properties, declared.policy_document, declared.exclusive
    )


def _log_failure(error: BaseException) -> None:
    expected = isinstance(error, JetsDeployIamError)
    logger.warning("request failed: %s", reason_for(error), exc_info=not expected)


def _required(value: _T | None) -> _T:
    if value is None:
        raise AssertionError("used before it was set")
    return value
