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

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from jets_deploy_iam.changes import Change, CreateGroup, DeleteGroup, Plan, UpdateGroup
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.continuation import Continuing, stopped_by_deadline
from jets_deploy_iam.exceptions import (
    CorrectionUnderWayError,
    DeadlineExceededError,
    GroupConflictError,
    IamApplyError,
    InvalidPropertiesError,
    JetsDeployIamError,
    RegistryConflictError,
)
from jets_deploy_iam.iam.applier import Applier, ApplyResult
from jets_deploy_iam.iam.callpath import bounded_by
from jets_deploy_iam.iam.preflight import preflight, restorable
from jets_deploy_iam.iam.reader import find_group_by_id, read_group
from jets_deploy_iam.ownership import Ownership, legacy_ownership
from jets_deploy_iam.plan import (
    copied_content,
    plan_copy,
    plan_delete,
    plan_reconcile,
    state_after,
)
from jets_deploy_iam.registry.model import (
    CORRECTION_PREFIX,
    HOLD_SECONDS,
    GroupRecord,
    LastUpdate,
    PreviousOwner,
    ResourceRecord,
)
from jets_deploy_iam.registry.store import Claim, Registry, Stored
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response, reason_for, shorten
from jets_deploy_iam.spec import DeclaredGroup, Environment, is_group_name, parse_properties
from jets_deploy_iam.state import ActualGroup
from jets_deploy_iam.undo import Undo

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

logger = logging.getLogger(__name__)

#: What a Reason must keep, however long the cause before it (the undo's own error is logged).
UNDO_FAILED = "; undoing its changes failed too: the rollback retries it"
HAND_BACK_FAILED = "; handing the adopted group back failed too: the rollback Delete retries it"
#: How many times a Delete re-reads and retries when someone adds to the group meanwhile.
DELETE_ATTEMPTS = 3
#: A drift correction starts no IAM call after this many seconds; it holds the record for
#: ``HOLD_SECONDS`` (longer: the calls still in flight finish meanwhile).
CORRECTION_SECONDS = 60.0
#: A CloudFormation request waiting for a correction reads the record again this often...
HOLD_POLL_SECONDS = 2.0
#: ...at most this many times (the whole hold, whatever the clocks say).
HOLD_POLLS = int(HOLD_SECONDS / HOLD_POLL_SECONDS) + 1
#: How many times a request decides again after a correction took the record before its write.
CORRECTION_RESTARTS = 3

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
    #: group names whose claims this decision takes from another resource (adoption, stale)
    takeovers: frozenset[str] = frozenset()
    #: the rollback of an Update that took the group over: the group is let go again and its
    #: claim returns to ``record.taken_from``
    gives_claim_back: bool = False
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
    #: a request or a correction was under way: not checked this time
    under_way: bool = False

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
        self.answer_id: str | None = None

    # -- entry points ------------------------------------------------------------------------

    def handle(
        self, request: Request, stored: Stored | None = None, answer_id: str | None = None
    ) -> Response:
        """Serve one CloudFormation request. Never raises: every failure is a FAILED answer;
        ``IN_PROGRESS`` (with ``continuing``) means no answer yet. ``stored``: the record as the
        caller just read or wrote it (``continuation.Gate``), saving a read. ``answer_id``: the
        physical id to answer (and record the answer) with, if not the request's own: a Delete
        CloudFormation sends under an id of its own for a Create it gave up on."""
        self.answer_id = answer_id
        response = self._handle(request, stored)
        return replace(response, physical_id=answer_id) if answer_id else response

    def _handle(self, request: Request, stored: Stored | None) -> Response:
        self.physical_id = (
            request.placeholder if request.kind == "Create" else str(request.physical_id)
        )
        self.hooks.on_physical_id(self.physical_id)
        for _attempt in range(CORRECTION_RESTARTS + 1):
            try:
                self._stored = self._load_unheld(request, stored if _attempt == 0 else None)
            except JetsDeployIamError as error:
                return Response.failed(self.physical_id, error)
            replay = self.record.answer_for(request.request_id)
            if replay is not None:
                logger.info(
                    "repeated delivery: answered as before", extra={"status": replay.status}
                )
                return replay
            try:
                return self._serve(request)
            except CorrectionUnderWayError:
                # Nothing was written to IAM yet: wait for the correction, then decide again
                # from what it left (the registry and the group as they are now).
                logger.info("a drift correction took the record first: deciding again")
            except Exception as error:
                _log_failure(error)
                response = Response.failed(self.physical_id, error)
                self._commit(request, response, self._refusal(request))
                return response
        busy = CorrectionUnderWayError(
            "the scheduled drift check kept correcting this resource's group: deploy again"
        )
        return Response.failed(self.physical_id, busy)

    def _serve(self, request: Request) -> Response:
        if request.kind == "Create":
            return self._create(request)
        if request.kind == "Update":
            return self._update(request)
        return self._delete(request)

    def _load_unheld(self, request: Request, stored: Stored | None = None) -> Stored:
        """The record and the claims the request needs (``stored``, if read already), once no
        drift correction holds the record (a bounded wait: a correction holds a record for at
        most ``HOLD_SECONDS``)."""
        stored = stored if stored is not None else self.load(request)
        for _poll in range(HOLD_POLLS):
            held_until = stored.record.held_until
            if not stored.record.held(self.config.now()) or held_until is None:
                break
            self.deadline.check("waiting for a drift correction of this resource to finish")
            logger.info("waiting for a drift correction of this resource to finish")
            pause = min(HOLD_POLL_SECONDS, held_until - self.config.now())
            self.config.sleep(max(0.0, min(pause, self.deadline.remaining())))
            stored = self.registry.load(request.key, _names_of(request))
        return stored

    def load(self, request: Request) -> Stored:
        """The record ``handle`` needs for ``request``, for a caller that reads it on its behalf
        (``continuation.Gate``) and hands it over: with the claims of the groups it names."""
        return self.registry.load(request.key, _names_of(request))

    def preview(self, request: Request) -> Decision:
        """What ``handle`` would do, from the registry and IAM, without writing anything."""
        self._stored = self.load(request)
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

    def check_drift(
        self,
        key: ResourceKey,
        env: Environment,
        correct: bool | None = None,
        stored: Stored | None = None,
    ) -> Drift:
        """Compare a registered resource's group with the declaration last applied to it, and
        (``correct``, or the resource's own ``DriftAction: correct``) converge it now.

        The declaration is the registry's, policy document included, never one rebuilt from
        properties by this version of the code: between deploys, only what was deployed is
        enforced. Foreign content of a non-exclusive resource is never touched (the plan removes
        only what the resource owns); a group deleted by hand is created again.

        ``stored`` is the record as a scan of the registry returned it (no read of its own); if
        the group has drifted, the record is read again first, so that a deploy made since the
        scan is never mistaken for drift.

        A correction holds the record while it writes to IAM (conditional writes, no retry):
        it never starts on a record a CloudFormation request or another correction changed
        since it was read, and CloudFormation requests wait until it is done.
        """
        self._stored = stored if stored is not None else self.registry.load(key)
        drift = self._observe(key, env)
        if stored is not None and (drift.drifted or drift.under_way):
            fresh = self.registry.load(key)
            if fresh.version != stored.version:
                self._stored = fresh
                drift = self._observe(key, env)
        declared = drift.declared
        if correct is None:
            correct = declared is not None and declared.drift_action == "correct"
        decision = drift.decision
        if not correct or decision is None or decision.action != "correct" or not decision.plan:
            return drift
        return self._correct(drift, decision)

    def _observe(self, key: ResourceKey, env: Environment) -> Drift:
        record = self.record
        name = record.current
        if name is None or name not in record.groups:
            return Drift(key, name or "", note="no group: the resource is deleted or never created")
        if record.under_way(self.config.now()):
            what = (
                "a drift correction"
                if str(record.in_progress).startswith(CORRECTION_PREFIX)
                else f"request {record.in_progress}"
            )
            return Drift(key, name, note=f"{what} is under way: not checked", under_way=True)
        leftovers = [g.name for g in _leftovers(record)]
        note = f"group {', '.join(leftovers)} left by an earlier rename: the next deploy deletes it"
        note = note if leftovers else ""
        entry = record.groups[name]
        declared = replace(parse_properties(entry.properties, env), policy_document=entry.document)
        if declared.group_name != name:
            # A group taken over by a rename that was rolled back (or failed): the declaration
            # recorded for it is the rename's, which the stack never kept. Enforcing it would
            # grant what a rolled-back deploy declared; the next deploy decides.
            other = declared.group_name
            note = f"the declaration recorded for this group is one for {other}: left alone"
            return Drift(key, name, declared, Decision("none", name), note=note)
        actual = self._read(name)
        if actual is not None and not self._owns(name, actual):
            note = "the group was replaced or taken over outside this resource: left alone"
            return Drift(key, name, declared, Decision("none", name, before=actual), note=note)
        if actual is None and not _required(self._stored).owns(name):
            note = "the group is gone and its name is claimed by another resource: left alone"
            return Drift(key, name, declared, Decision("none", name), note=note)
        renamed = self._renamed_by_hand(entry) if actual is None else None
        if renamed is not None:
            note = (
                f"the group was renamed by hand to {renamed.name} (same GroupId): its members "
                f"keep its rights under that name; correcting renames it back to {name}"
            )
            actual = replace(renamed, name=name, path=declared.path)
        plan = plan_reconcile(declared, actual, entry.ownership)
        if renamed is not None:
            back = UpdateGroup(renamed.name, declared.path, new_name=name)
            plan = Plan.of([back, *(c for c in plan if not isinstance(c, UpdateGroup))])
        claims = entry.ownership.claim(plan, actual)
        # A group created again is known by its new GroupId only once IAM confirms it.
        ahead = replace(entry, ownership=claims, group_id=entry.group_id if actual else None)
        decision = Decision("correct", name, plan, actual, entry.ownership, record=ahead)
        return Drift(key, name, declared, decision, note=note)

    def _renamed_by_hand(self, entry: GroupRecord) -> ActualGroup | None:
        """The registered group living on under another name (its GroupId is the record's)."""
        if entry.group_id is None:
            return None
        self.deadline.check(f"looking for group {entry.group_id}")
        with bounded_by(self.iam, self.deadline):
            found = find_group_by_id(self.iam, entry.group_id, self.config.page_size)
        return found if found is not None and found.name != entry.name else None

    def _correct(self, drift: Drift, decision: Decision) -> Drift:
        """Apply the drift's plan as an Update would (pre-flight, revocations first, deadline),
        holding the record meanwhile."""
        self._preflight(decision)
        ahead_entry = _required(decision.record)
        marker = CORRECTION_PREFIX + str(uuid.uuid4())
        until = self.config.now() + HOLD_SECONDS

        def hold(record: ResourceRecord) -> ResourceRecord:
            return replace(record.with_group(ahead_entry), in_progress=marker, held_until=until)

        try:
            self._stored = self.registry.change(_required(self._stored), hold, reapply=False)
        except RegistryConflictError:
            note = "the record changed while it was checked (a deploy?): not corrected this time"
            return replace(drift, note=note)
        budget = Deadline(
            min(self.deadline.at, self.deadline.clock() + CORRECTION_SECONDS), self.deadline.clock
        )
        applier = self._applier(budget)
        try:
            applier.apply(decision.plan)
        finally:  # what was applied is recorded even if the correction stops half way
            declared = _required(drift.declared)
            info = self._info(declared, decision.before, applier.result)
            done = replace(_settled(ahead_entry, applier.result), group_id=info.group_id or None)
            self._release(done)
        return replace(drift, corrected=len(applier.result.applied))

    def _release(self, done: GroupRecord) -> None:
        """Record a correction's outcome and let go of the record. Only over the correction's
        own write: if the hold ran out and a CloudFormation request took the record over, that
        request's record stands (the claims written ahead are in it) and this outcome is only
        logged. IAM has changed either way, so nothing here raises."""

        def release(record: ResourceRecord) -> ResourceRecord:
            return replace(record.with_group(done), in_progress=None, held_until=None)

        try:
            self._stored = self.registry.change(_required(self._stored), release, reapply=False)
        except JetsDeployIamError:
            logger.error(
                "the drift correction's outcome could not be recorded",
                extra={"group": done.name},
                exc_info=True,
            )

    # -- Create ------------------------------------------------------------------------------

    def _decide_create(self, request: Request) -> Decision:
        declared = request.declared
        name = declared.group_name
        actual = self._read(name)
        claim = _required(self._stored).claim(name)
        action, owned, takeover = "create", Ownership(), False
        taken_from = None
        if actual is not None:
            resuming = self.record.in_progress == request.request_id
            if resuming and self._owns(name, actual):
                owned = self.record.groups[name].ownership  # this request, again or continued
                taken_from = self.record.groups[name].taken_from
                last = self.record.last_update
                if last is not None and last.request_id == request.request_id:
                    action = "adopt"  # its hand-back record says it adopted the group
            elif declared.adopt_existing_group:
                action, takeover = "adopt", True
                taken_from = _previous_owner(claim, request)
            else:
                raise GroupConflictError(
                    f"GroupName {name}: the group already exists and this resource does not own "
                    "it; set AdoptExistingGroup true to take it over, or choose another GroupName"
                )
        elif claim is not None and claim.owner != request.key:
            if claim.group_id is None and self._creating(claim):
                raise GroupConflictError(
                    f"GroupName {name}: another resource ({claim.owner.logical_id} of stack "
                    f"{claim.owner.stack_name}) is creating this group right now"
                )
            takeover = True  # the claim of a group that no longer exists
        plan = plan_reconcile(declared, actual, owned)
        record = _record_of(name, actual, request, declared, owned.claim(plan, actual))
        undo = Undo.of(plan, actual, owned)
        if action == "adopt":
            record = replace(record, adopted=undo, taken_from=taken_from)
        takeovers = frozenset({name}) if takeover else frozenset()
        return Decision(action, name, plan, actual, owned, undo, record, takeovers=takeovers)

    def _create(self, request: Request) -> Response:
        decision = self._decide_create(request)
        decision = replace(decision, undo=self._so_far(request, decision.undo))
        adopted = decision.action == "adopt"
        if adopted:  # a continued adoption hands back the group its first invocation found
            found = replace(_required(decision.record), adopted=decision.undo)
            decision = replace(decision, record=found)
        self._preflight(decision)
        record, undo = _required(decision.record), _required(decision.undo)
        # An adoption's undo record is kept where the rollback Delete (placeholder id) finds it.
        hand_back = LastUpdate(request.request_id, request.placeholder, None, None, undo)
        self._write_ahead(
            request,
            lambda r: replace(r.with_group(record), last_update=hand_back if adopted else None),
            decision.takeovers,
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
        id is the physical id, its GroupId is recorded); if none was made, nothing is claimed.

        A CreateGroup whose answer was lost and whose retries then failed made the group all the
        same: it is recognised (this name and path, still empty, the claim ours and pending) and
        answered as made, so the rollback Delete removes it instead of leaving an orphan.
        """
        _log_failure(error)
        record = _required(decision.record)
        created = str(result.created.get("GroupId") or "")
        if self.physical_id != decision.group and decision.before is None:
            landed = self._landed(decision.group, request.declared.path)
            if landed is not None:
                created = landed.group_id
                self._set_physical(decision.group)
        if self.physical_id == decision.group:
            done = replace(_settled(record, result), group_id=created or record.group_id)
            edit: Edit = lambda r: r.with_group(done)  # noqa: E731
        else:
            edit = lambda r: r.without_group(record.name)  # noqa: E731
        response = Response.failed(self.physical_id, error)
        self._commit(request, response, edit)
        return response

    def _landed(self, name: str, path: str) -> ActualGroup | None:
        try:
            group = self._read(name, self.undo_deadline)
        except Exception:
            return None
        fresh = group is not None and group.path == path and not group.members
        return group if fresh and not group.inline_policies else None  # type: ignore[union-attr]

    def _hand_back(self, request: Request, decision: Decision, error: Exception) -> Response:
        """A failed adoption gives the group back exactly as found, whatever the failure (IAM,
        the deadline, the network). If even that fails, the rollback Delete finishes it."""
        _log_failure(error)
        failure = self._restore(_required(decision.undo))
        if failure is None:
            text, then = reason_for(error), " (adopted group restored)"
            edit: Edit = lambda r: replace(r.without_group(decision.group), last_update=None)  # noqa: E731
        else:
            text, then = reason_for(error), HAND_BACK_FAILED
            edit = _unchanged  # the write-ahead record and its undo record stay
        response = Response("FAILED", request.placeholder, shorten(text, then=then))
        self._commit(request, response, edit)
        return response

    # -- Update ------------------------------------------------------------------------------

    def _decide_update(self, request: Request) -> Decision:
        physical = str(request.physical_id)
        last = self.record.last_update
        if last is not None and last.reversed_by(request):
            # Served from the undo record, even if this version cannot parse the properties.
            return self._decide_rollback(request, last)
        declared = request.declared
        if not is_group_name(physical):
            raise GroupConflictError(
                f"PhysicalResourceId {physical!r} names no group: nothing to update "
                "(CloudFormation always sends the id this resource answered)"
            )
        actual = self._read(physical)
        entry, takeover = self._owned_entry(request, physical, actual, declared)
        if declared.group_name != physical:
            return self._decide_replace(request, declared, entry, actual)
        owned = entry.ownership if entry is not None and actual is not None else Ownership()
        plan = plan_reconcile(declared, actual, owned)
        claims = owned.claim(plan, actual)
        # The group is this resource's own from now on, unless the Update fails and is undone:
        # the claim it takes over then goes back to its owner.
        taken_from = (
            _previous_owner(_required(self._stored).claim(physical), request) if takeover else None
        )
        # An Update back to the declaration already applied (CloudFormation's rollback of an
        # Update that failed before it wrote its undo record) does not make an adopted group
        # the resource's own: it stays as the adoption left it.
        kept = entry if entry is not None and _same_declaration(entry, request) else None
        record = replace(
            _record_of(physical, actual, request, declared, claims, entry),
            adopted=kept.adopted if kept is not None else None,
            taken_from=(taken_from if actual is not None else None)
            if takeover
            else (kept.taken_from if kept is not None else None),
        )
        undo = Undo.of(plan, actual, owned)
        takeovers = frozenset({physical}) if takeover else frozenset()
        return Decision("update", physical, plan, actual, owned, undo, record, takeovers=takeovers)

    def _owned_entry(
        self, request: Request, name: str, actual: ActualGroup | None, declared: DeclaredGroup
    ) -> tuple[GroupRecord | None, bool]:
        """The record of the group this Update acts on (None only if the group is gone), and
        whether its claim must be taken over."""
        entry = self.record.groups.get(name)
        claim = _required(self._stored).claim(name)
        if actual is None:
            pending = claim is not None and claim.owner != request.key and claim.group_id is None
            if pending and self._creating(_required(claim)):
                raise GroupConflictError(f"group {name} is being created by another resource")
            return entry, claim is not None and claim.owner != request.key
        if self._owns(name, actual):
            return entry, False
        if entry is None and self._legacy(name):
            return _legacy_record(actual, request.old_properties, request.env), False
        if declared.adopt_existing_group:
            return _taken_over(actual, request, declared), True
        why = (
            f"is owned by {claim.owner.logical_id} of stack {claim.owner.stack_name}"
            if claim is not None and claim.owner != request.key
            else "was replaced outside CloudFormation (its GroupId changed)"
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
        claims_read = (  # (with the held groups' names: one BatchGetItem, not a second)
            self.registry.load(request.key, [new, *self.record.groups]).claims
            if new.lower() not in (_required(self._stored).claims)
            else {}
        )
        if claims_read:
            self._stored = replace(
                _required(self._stored), claims={**_required(self._stored).claims, **claims_read}
            )
        existing = self._read(new)
        claim = _required(self._stored).claim(new)
        # The group this rename made in an earlier invocation (delivered again, or going on):
        # paired with the old one, or, if there was no old group to copy, this request's own.
        continuing = (
            existing is not None
            and self._owns(new, existing)
            and (
                self.record.groups[new].pair == physical
                or self.record.in_progress == request.request_id
            )
        )
        # Anything else already named ``new`` fails the pre-flight, which names it.
        target = existing if continuing else None
        foreign = existing is None and claim is not None and claim.owner != request.key
        if foreign and _required(claim).group_id is None and self._creating(_required(claim)):
            raise GroupConflictError(f"GroupName {new}: another resource is creating it right now")
        takeover = foreign  # the claim of a group that no longer exists, or of a dead Create
        if source is None or entry is None:
            # (a retry that finds the group its first invocation made owns what it recorded)
            owned = self.record.groups[new].ownership if continuing else Ownership()
            plan = plan_reconcile(declared, target, owned)
            claims = owned.claim(plan, target)
            pair = None
        else:
            content = copied_content(declared, source, entry.ownership)
            plan = plan_copy(content, target)
            claims = entry.ownership.for_copy(source, content)
            pair = physical
        record = replace(_record_of(new, target, request, declared, claims), pair=pair)
        undo = Undo(group=new, created=True)
        old = replace(entry, pair=new) if source is not None and entry is not None else None
        return Decision(
            "replace", new, plan, target, Ownership(), undo, record, source=old,
            takeovers=frozenset({new}) if takeover else frozenset(),
        )  # fmt: skip

    def _decide_rollback(self, request: Request, last: LastUpdate) -> Decision:
        """Restore what the reversed Update touched, exactly; then, for everything it did not
        touch, the usual rules of the properties it returns to (a revert deploy that merely looks
        like a rollback still corrects drift; in a real rollback this part is empty). A group
        deleted meanwhile is created again."""
        undo = last.undo
        entry = self.record.groups.get(undo.group)
        if last.rolled_back:
            # Served already (its answer lost): restoring again would undo what happened since,
            # e.g. a member added by hand that is foreign to a non-exclusive resource.
            owned = entry.ownership if entry is not None else Ownership()
            note = "this rollback was served already"
            return Decision("rollback", undo.group, Plan(), None, owned, undo, entry, note=note)
        current = self._read(undo.group) if is_group_name(undo.group) else None
        foreign = current is not None and not self._owns(undo.group, current)
        if foreign:
            current = None  # not the group this resource changed: touch nothing
            entry = None
        owned = entry.ownership if entry is not None else Ownership()
        restore = undo.restore_plan(current)
        restored_owned = undo.restore_ownership(owned)
        try:
            declared: DeclaredGroup | None = request.declared
        except InvalidPropertiesError:
            declared = None  # this version cannot parse it: the undo record alone is served
        in_place = undo.group == request.physical_id and not undo.created
        extra: list[Change] = []
        # The properties a takeover's rollback returns to were never this group's, and the
        # rollback of an Update refused before writing (an empty undo record) must not fail on
        # drift it did not cause: only the undo record is served.
        mine = not foreign and not last.took_over and not last.refused
        if declared is not None and in_place and declared.group_name == undo.group and mine:
            restored = state_after(current, restore)
            rest = plan_reconcile(declared, restored, restored_owned)
            extra = [c for c in rest if not undo.touches(c)] if current is not None else list(rest)
        plan = Plan.of([*restore, *extra])
        record = None
        if entry is not None or (extra and declared is not None):
            base = entry or _record_of(undo.group, current, request, _required(declared), owned)
            ahead = restored_owned.claim(Plan.of(extra), state_after(current, restore))
            # what the reversed Update changed of the group's hand-back state comes back too
            record = replace(
                base, ownership=ahead, adopted=last.adopted, taken_from=last.taken_from
            )
        gives_back = last.took_over and record is not None and record.taken_from is not None
        return Decision(
            "rollback", undo.group, plan, current, owned, undo, record, gives_claim_back=gives_back
        )

    def _update(self, request: Request) -> Response:
        physical = str(request.physical_id)
        if self.record.in_progress != request.request_id:  # not this request's own half-work
            self._sweep_leftovers(physical)
        try:
            decision = self._decide_update(request)
            if decision.action != "rollback":  # (a rollback's undo is the record it restores from)
                decision = replace(decision, undo=self._so_far(request, decision.undo))
            decision = self._restorable(decision)
            self._preflight(decision)
        except CorrectionUnderWayError:
            raise  # nothing written: _handle decides again
        except Exception as error:
            if not self._refused_first(request):
                raise
            # Nothing is written (refused, or IAM or the registry failed while deciding).
            # CloudFormation's rollback (properties swapped) must then change nothing either
            # (not even fail on a group this Update was refused, nor apply ownership derived
            # from properties never applied): remember this Update with an empty undo record.
            nothing = _hand_back_state(
                LastUpdate(
                    request.request_id, physical, request.properties, request.old_properties,
                    Undo(group=physical), refused=True,
                ),
                self.record.groups.get(physical),
            )  # fmt: skip
            _log_failure(error)
            response = Response.failed(physical, error)
            refusal = self._refusal(request)
            self._commit(request, response, lambda r: replace(refusal(r), last_update=nothing))
            return response
        forward = self._forward(request, decision)
        if decision.plan or decision.takeovers or decision.gives_claim_back:
            self._write_ahead(request, lambda r: _ahead(r, decision, forward), decision.takeovers)
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

    def _refused_first(self, request: Request) -> bool:
        """The Update was refused before any write of its own: not a rollback (whose undo
        record must stay for its next try), nor a request whose earlier invocation wrote."""
        last, going_on = self.record.last_update, self.record.continuation
        if last is not None and (
            last.reversed_by(request) or last.request_id == request.request_id
        ):
            return False
        return going_on is None or going_on.request_id != request.request_id

    def _forward(self, request: Request, decision: Decision) -> LastUpdate:
        """The undo record of this Update, with what its rollback must put back besides the
        content: whether the group was still only adopted, and whom a claim it takes over
        belongs to."""
        undo = _required(decision.undo)
        physical = str(request.physical_id)
        forward = LastUpdate(
            request.request_id, physical, request.properties, request.old_properties, undo
        )
        if decision.action != "update" or decision.record is None:
            return forward
        prior = self.record.last_update
        if prior is not None and prior.request_id == request.request_id:
            # this Update again (delivered again, or going on in another invocation): what its
            # first invocation found is what a rollback must put back
            return replace(
                forward,
                adopted=prior.adopted,
                taken_from=prior.taken_from,
                took_over=prior.took_over,
            )
        if decision.record.taken_from is not None and decision.takeovers:
            return replace(forward, taken_from=decision.record.taken_from, took_over=True)
        return _hand_back_state(forward, self.record.groups.get(decision.group))

    def _finish_update(
        self, request: Request, decision: Decision, forward: LastUpdate, result: ApplyResult
    ) -> Response:
        info = self._info(request.declared, decision.before, result)
        done = _settled(_required(decision.record), result)
        taken_from = done.taken_from if done.adopted is not None else None  # still only adopted
        done = replace(done, group_id=info.group_id, taken_from=taken_from)
        response = Response("SUCCESS", decision.group, data=info.as_data())

        def edit(r: ResourceRecord) -> ResourceRecord:
            r = r.with_group(done)
            if decision.source is not None:
                r = r.with_group(replace(decision.source, pair=done.name))
            return replace(r, current=done.name, last_update=forward)

        self._commit(request, response, edit, decision.takeovers)
        return response

    def _finish_rollback(
        self, request: Request, decision: Decision, result: ApplyResult
    ) -> Response:
        undo = _required(decision.undo)
        physical = str(request.physical_id)
        info = self._info_of(physical)
        response = Response("SUCCESS", physical, data=info.as_data() if info else {})
        reversed_update = _required(self.record.last_update)
        reversed_id = reversed_update.request_id

        def edit(r: ResourceRecord) -> ResourceRecord:
            if reversed_update.rolled_back:
                # Sent again: the record stays as the first serving and what came since left it
                # (a group replaced by hand since is not the resource's; one the drift check
                # made again since is).
                return replace(r, current=physical)
            if undo.created and undo.group != physical:
                r = r.without_group(undo.group)
            elif decision.gives_claim_back:
                # a takeover rolled back: the claim goes back to whom it was taken from
                r = r.without_group(_required(decision.record).name)
            elif decision.record is not None:
                done = _settled(decision.record, result)
                done = replace(done, group_id=info.group_id if info else done.group_id)
                r = r.with_group(_declared_as(done, request))
            elif undo.created:
                r = r.without_group(undo.group)
            # The reversed Update's undo record stays, marked served: CloudFormation never rolls
            # a rollback back, but it may send the same rollback again (continue-update-rollback),
            # which is then recognised and changes nothing; the next deploy, even of the reversed
            # properties again, is an ordinary Update.
            last = r.last_update
            if last is None or last.request_id != reversed_id:
                return replace(r, current=physical)
            return replace(r, current=physical, last_update=replace(last, rolled_back=True))

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
        text, then = reason_for(error), ""
        if failure is not None:
            then = UNDO_FAILED  # the undo's own error is logged
        elif result.applied:
            then = " (its changes were undone)"
        response = Response("FAILED", str(request.physical_id), shorten(text, then=then))

        def edit(r: ResourceRecord) -> ResourceRecord:
            if failure is not None or decision.action == "rollback":
                return r  # the write-ahead record and the undo record stay for the next try
            if undo.created:
                return replace(r.without_group(undo.group), last_update=forward)
            if forward.took_over and decision.record is not None:
                # a takeover undone: the claim goes back to the resource it was taken from
                return replace(r.without_group(decision.record.name), last_update=forward)
            if decision.record is not None:
                owned = undo.restore_ownership(decision.record.ownership)
                applied = r.groups.get(decision.record.name, decision.record)
                r = r.with_group(replace(applied, ownership=owned))
            return replace(r, last_update=forward)

        self._commit(request, response, edit)
        return response

    def _sweep_leftovers(self, live: str) -> None:
        """Delete what an earlier rename left behind. CloudFormation tries the cleanup Delete of
        the old name three times and then drops it; the old group would keep every member with
        the old rights. An Update means that stack operation is over: it goes now. (A Delete of
        the new name cannot tell a stack deletion from the rollback of the rename, which must
        keep the old group, so it leaves it; the drift check reports it meanwhile.)"""
        for name in [g.name for g in _leftovers(self.record, live)]:
            actual = self._read(name)
            if actual is not None and self._owns(name, actual):
                logger.warning("deleting the group an earlier rename left", extra={"group": name})
                plan = plan_delete(actual, whole=True)
                self.hooks.on_plan(plan)
                self._applier(self.deadline).apply(plan)
            self._stored = self.registry.change(
                _required(self._stored), functools.partial(ResourceRecord.without_group, name=name)
            )

    # -- Delete ------------------------------------------------------------------------------

    def _decide_delete(self, request: Request) -> Decision:
        physical = str(request.physical_id)
        last = self.record.last_update
        handed_back = last is not None and last.physical_id == physical and not last.undo.empty
        if not is_group_name(physical) and handed_back:
            return self._decide_hand_back(_required(last).undo)
        if physical not in self.record.groups:
            orphan = self._orphan_of_a_dead_create(request)
            if orphan is not None:
                return orphan
        if not is_group_name(physical):
            return Decision("none", physical, note="the physical id names no group")
        # (unless a request of this resource died half way: it may have deleted the group itself,
        # as a Delete sent again after its first invocation died)
        again = self.record.in_progress is not None
        actual = self._read(physical) or (None if again else self._once_visible(physical))
        if actual is None:
            return Decision("none", physical, note="the group does not exist")
        entry = self.record.groups.get(physical)
        if entry is None and self._legacy(physical):
            entry = _legacy_record(actual, request.properties, request.env)
        elif entry is None or not self._owns(physical, actual):
            note = "the registry does not say this resource owns the group: left untouched"
            return Decision("none", physical, before=actual, note=note)
        if entry.adopted is not None and entry.pair is None:
            # Never updated since it was adopted: CloudFormation's rollback of the deploy that
            # adopted it looks like this, so the group goes back as it was found.
            decision = self._decide_hand_back(entry.adopted)
            return replace(decision, note="an adopted group, not updated since: handed back")
        whole = entry.pair is not None or entry.exclusive
        plan = plan_delete(actual, entry.ownership, whole)
        if plan.of_type(DeleteGroup):
            return Decision("delete", physical, plan, actual, entry.ownership, record=entry)
        note = "foreign content remains: the group is kept with it"
        return Decision("keep", physical, plan, actual, entry.ownership, record=entry, note=note)

    def _once_visible(self, name: str) -> ActualGroup | None:
        """IAM is eventually consistent: a group this resource saw created (its GroupId is
        recorded) can read as missing for a while, e.g. a rename's new side that the stack's
        rollback deletes seconds later. Dropping it from the record then would leave it in IAM
        with its members' rights and no owner, so it is read again with backoff, for a bounded
        time, before it counts as gone."""
        entry = self.record.groups.get(name)
        if entry is None or entry.group_id is None:
            return None
        for delay in self.config.consistency_waits():
            self.deadline.check(f"waiting for IAM to show group {name}")
            self.config.sleep(delay)
            actual = self._read(name)
            if actual is not None:
                return actual
        return None

    def _orphan_of_a_dead_create(self, request: Request) -> Decision | None:
        """A Create that died after its write-ahead was never answered: CloudFormation's Delete
        then carries an id of its own, and the group that Create made (or its claim) would be
        left behind, unowned. Only what that Create wrote ahead is considered: an adoption is
        handed back as found; a group it made (the GroupName the Delete carries, recorded with
        no GroupId yet or by the dead request's continuation) goes. A group an earlier request
        left in the record (a kept non-exclusive group) is never this Create's."""
        record = self.record
        dead = record.in_progress
        if record.current is not None or dead is None or record.answer_for(dead) is not None:
            return None
        last = record.last_update
        if last is not None and last.request_id == dead:
            return self._decide_hand_back(last.undo)  # a dead adoption
        name = _declared_name(request)
        entry = record.groups.get(name)
        going_on = record.continuation
        continued = going_on is not None and going_on.request_id == dead and going_on.group == name
        if entry is None or not (entry.group_id is None or continued):
            return None
        actual = self._read(name)
        if actual is None:
            return Decision("none", name, note="a dead Create's claim is released")
        if not self._owns(name, actual):
            return None
        note = "removing the group a Create that died before answering made"
        return Decision("delete", name, plan_delete(actual), actual, record=entry, note=note)

    def _decide_hand_back(self, undo: Undo) -> Decision:
        entry = self.record.groups.get(undo.group)
        current = self._read(undo.group)
        if current is None or entry is None or not self._owns(undo.group, current):
            return Decision("none", undo.group, note="the adopted group is gone or not ours")
        plan = undo.restore_plan(current)
        note = "handing an adopted group back as it was found"
        return Decision("restore", undo.group, plan, current, undo=undo, record=entry, note=note)

    def _delete(self, request: Request) -> Response:
        physical = str(request.physical_id)
        decision = self._restorable(self._decide_delete(request))
        if decision.plan:
            # Marked before the first IAM write, as Create and Update are: no drift correction
            # starts on this resource meanwhile, and one that got in first is waited for.
            self._write_ahead(request, lambda r: _deleting(r, decision))
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
                # something joined the group: read again
                decision = self._restorable(self._decide_delete(request))
        else:
            raise IamApplyError(
                f"delete group {decision.group}",
                "DeleteConflict",
                "the group kept changing while being emptied; deploy again",
            )
        response = Response("SUCCESS", physical)
        if decision.plan:
            self._commit(request, response, lambda r: _after_delete(r, decision, applier.result))
            return response
        # Nothing was written ahead: if the record changed since it was read (a drift correction
        # re-created the group, say), this decision is stale: decide again from scratch.
        try:
            self._stored = self.registry.change(
                _required(self._stored),
                lambda r: _after_delete(r, decision, applier.result).with_answer(
                    request.request_id, response
                ),
                reapply=False,
            )
        except RegistryConflictError as error:
            raise CorrectionUnderWayError("the record changed while the Delete decided") from error
        except JetsDeployIamError:
            logger.error("the outcome could not be recorded in the registry", exc_info=True)
        return response

    # -- shared steps ------------------------------------------------------------------------

    def _creating(self, claim: Claim) -> bool:
        """Is the resource holding this pending claim really creating the group now? A claim
        written ahead by a Create that died (its request never answered, superseded since) must
        not block the name forever: only a request still under way holds it."""
        owner = self.registry.load(claim.owner).record
        return owner.in_progress is not None and owner.answer_for(owner.in_progress) is None

    def _owns(self, name: str, group: ActualGroup) -> bool:
        """This resource owns ``group``: its record has it, with this GroupId, and the claim of
        the name is this resource's (an adoption by another resource ends that)."""
        entry = self.record.groups.get(name)
        stored = _required(self._stored)
        return entry is not None and entry.matches(group) and stored.owns(name, group.group_id)

    def _legacy(self, name: str) -> bool:
        """No record (or one of refusals only: ``ResourceRecord.legacy``), and nobody claims the
        group: the resource was created by a version before the registry existed."""
        stored = _required(self._stored)
        return (stored.version == 0 or stored.record.legacy) and stored.claim(name) is None

    def _refusal(self, request: Request) -> Edit:
        """What a request that failed records besides its answer. A resource the previous
        version created stays one (``ResourceRecord.legacy``): otherwise its refused first
        Update would end the legacy rule, and its next Update be refused and its Delete leave
        the group with its members' deploy rights, owned by nobody. Judged from the record
        edited, not the one read: a commit re-applied after a lost race (a late duplicate
        delivery) must not bring the rule back to a record whose Delete was served since."""
        if request.kind == "Create":
            return _unchanged

        def refused(r: ResourceRecord) -> ResourceRecord:
            unserved = r.legacy or not r.answers  # (no answer yet: the registry had no record)
            return replace(r, legacy=unserved and not r.groups)

        return refused

    def _read(self, name: str, deadline: Deadline | None = None) -> ActualGroup | None:
        deadline = deadline or self.deadline
        deadline.check(f"reading group {name}")
        with bounded_by(self.iam, deadline):  # every page, every retry, within the deadline
            return read_group(self.iam, name, self.config.page_size)

    def _restorable(self, decision: Decision) -> Decision:
        """A rollback or a hand-back puts back only what still exists in IAM (see
        ``restorable``)."""
        if decision.action not in ("rollback", "restore") or not decision.plan:
            return decision
        self.deadline.check("the pre-flight checks")
        with bounded_by(self.iam, self.deadline):
            plan = restorable(self.iam, decision.plan, self.config.page_size)
        kept = list(plan)
        dropped = [c.describe() for c in decision.plan if c not in kept]
        if dropped:
            logger.warning(
                "rollback: what was deleted from IAM since cannot be put back",
                extra={"skipped": dropped},
            )
        return replace(decision, plan=plan)

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
            if current is not None and not self._owns(undo.group, current):
                return None  # a namesake someone else made: not ours to change
            self._applier(self.undo_deadline).apply(undo.restore_plan(current))
        except Exception as error:
            logger.warning("undo failed", exc_info=not isinstance(error, JetsDeployIamError))
            return error
        return None

    def _write_ahead(
        self, request: Request, edit: Edit, takeovers: frozenset[str] = frozenset()
    ) -> None:
        """Record the claims before the first IAM write (the request fails if it cannot)."""

        def ahead(record: ResourceRecord) -> ResourceRecord:
            if record.held(self.config.now()):  # a correction got in since the record was read
                raise CorrectionUnderWayError("a drift correction holds the record")
            return replace(edit(record), in_progress=request.request_id, held_until=None)

        self._stored = self.registry.change(_required(self._stored), ahead, takeovers)

    def _commit(
        self,
        request: Request,
        response: Response,
        edit: Edit,
        takeovers: frozenset[str] = frozenset(),
    ) -> None:
        """Record the outcome with the answer. IAM has already changed: a registry failing now
        cannot undo that, so the answer stands and the failure is logged (the write-ahead record
        is safe on its own: see ``_ahead``)."""
        if self._stored is None:
            return
        recorded = replace(response, physical_id=self.answer_id) if self.answer_id else response
        try:
            self._stored = self.registry.change(
                self._stored, lambda r: edit(r).with_answer(request.request_id, recorded), takeovers
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
        invocation (none for a rollback: it goes on from the record it restores from)."""
        logger.info(
            "the deadline stopped work that makes progress: it goes on in another invocation",
            extra={"applied": len(result.applied), "planned": len(decision.plan)},
        )
        undo = None if decision.action == "rollback" else self._so_far(request, decision.undo)
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
        """``undo`` after the undo record of this request's earlier invocations (first wins):
        one that went on in another invocation, or one that died after its write-ahead and is
        delivered again (its undo record is then the registry's last Update)."""
        if undo is None:
            return undo
        earlier = [
            u.undo
            for u in (self.record.last_update, self.record.continuation)
            if u is not None and u.undo is not None and u.request_id == request.request_id
        ]
        for first in reversed(earlier):
            undo = first.then(undo)
        return undo


# -- record edits ----------------------------------------------------------------------------


def _ahead(record: ResourceRecord, decision: Decision, forward: LastUpdate) -> ResourceRecord:
    """The write-ahead of an Update, safe on its own if the outcome is never recorded: the
    group's claims (a rollback's restores the ownership of what it puts back instead of claiming
    it), a rename's link on both groups (the cleanup Delete of the old name then removes it
    whole), and the undo record (a rollback keeps the one it restores from until it is done)."""
    if decision.record is not None:
        record = record.with_group(
            _claimed(record.groups.get(decision.record.name), decision.record)
        )
    if decision.source is not None:
        record = record.with_group(decision.source)
    if decision.action == "rollback":
        return record
    return replace(record, last_update=forward)


def _claimed(applied: GroupRecord | None, planned: GroupRecord) -> GroupRecord:
    """What a write-ahead records of a group: the plan's ownership claims, but the declaration
    last *applied* (kept until the outcome is recorded), so that a request that fails, or dies,
    never leaves its unapplied declaration for the drift check to enforce."""
    if applied is None:
        return planned
    return replace(
        applied,
        ownership=planned.ownership,
        group_id=planned.group_id,
        pair=planned.pair,
        taken_from=planned.taken_from or applied.taken_from,
    )


def _deleting(record: ResourceRecord, decision: Decision) -> ResourceRecord:
    """The Delete's mark. A group the previous version made (no record yet: the legacy rule) is
    recorded with it: once the registry holds this resource's record the legacy rule no longer
    applies, and an invocation that goes on with this Delete must still know the group as its
    own. A group deleted whole (a rename's old side that was adopted, say) leaves no claim to
    give back: it is released with the group."""
    entry = record.groups.get(decision.group)
    if entry is None and decision.record is not None and decision.action in ("delete", "keep"):
        return record.with_group(decision.record)
    if decision.action != "delete" or entry is None or entry.taken_from is None:
        return record
    return record.with_group(replace(entry, taken_from=None))


def _after_delete(
    record: ResourceRecord, decision: Decision, result: ApplyResult
) -> ResourceRecord:
    # The Delete is served: the resource is gone, and the legacy rule with it (an unclaimed
    # namesake made since is not the previous version's group).
    record = replace(record, legacy=False)
    if decision.action == "restore":  # an adopted group is handed back: not ours any more
        last = record.last_update
        handed = last is not None and last.undo.group == decision.group
        record = replace(record, last_update=None) if handed else record
        return record.without_group(decision.group)
    if decision.action == "none":
        # The group is gone, or not this resource's any more (another took it over): the record
        # lets go of it, so nothing reports or acts on it in this resource's name again.
        if not is_group_name(decision.group):
            return record
        return record.without_group(decision.group)  # (the other side of a rename stays current)
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
    """A group created before the registry existed: it owns what its properties declare.

    Only what ownership needs is read (Users, ManagedPolicyArns, PolicyName, Exclusive), so a
    property this version rejects elsewhere never turns a revocation into a no-op, nor a
    non-exclusive group into an exclusive one; if even those do not parse, nothing is guessed.
    """
    try:
        declared = parse_properties(properties, env)
    except InvalidPropertiesError:
        essential = {k: v for k, v in (properties or {}).items() if k in _OWNERSHIP_PROPERTIES}
        try:
            declared = parse_properties(essential, env)
        except InvalidPropertiesError as error:
            raise InvalidPropertiesError(
                [
                    f"this resource predates the registry and its properties do not say what it "
                    f"owns: {error}"
                ]
            ) from error
    owned = legacy_ownership(
        group, declared.users, declared.managed_policy_arns, declared.policy_name
    )
    return GroupRecord(
        group.name, group.group_id, properties, declared.policy_document, declared.exclusive, owned
    )


_OWNERSHIP_PROPERTIES = frozenset(
    {"Users", "ManagedPolicyArns", "PolicyName", "Exclusive", "GroupName", "GroupPath"}
)


def _leftovers(record: ResourceRecord, live: str | None = None) -> list[GroupRecord]:
    """Other sides of renames CloudFormation never cleaned up: a group paired with the live one
    (the physical id CloudFormation holds; by default the registry's current group) that is not
    the live one. After a rollback whose Delete of the new name was dropped, CloudFormation
    holds the old name: the new group is then the leftover."""
    live = live if live is not None else record.current
    return [
        g for g in record.groups.values() if live is not None and g.name != live and g.pair == live
    ]


def _hand_back_state(last: LastUpdate, entry: GroupRecord | None) -> LastUpdate:
    """``last`` remembering whether the group was still only adopted before it."""
    if entry is None or entry.adopted is None:
        return last  # (a claim taken over is given back only while the group is adopted)
    return replace(last, adopted=entry.adopted, taken_from=entry.taken_from)


def _same_declaration(entry: GroupRecord, request: Request) -> bool:
    """The request declares what was last applied to the group (the ServiceToken aside)."""
    if not isinstance(entry.properties, Mapping) or not isinstance(request.properties, Mapping):
        return False
    return _without_token(entry.properties) == _without_token(request.properties)


def _without_token(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if k != "ServiceToken"}


def _names_of(request: Request) -> list[str]:
    """The group names whose claims a request may need (read with its record in one call)."""
    names = [str(request.physical_id or ""), _declared_name(request)]
    return [n for n in names if is_group_name(n)]


def _declared_name(request: Request) -> str:
    """The GroupName the request's properties declare, read leniently (a Delete's may not
    parse with this version): "" if it is not a string."""
    properties = request.properties if isinstance(request.properties, Mapping) else {}
    declared = properties.get("GroupName", "Jets")
    return declared if isinstance(declared, str) else ""


def _previous_owner(claim: Claim | None, request: Request) -> PreviousOwner | None:
    """Whose claim an adoption takes over, so a failed or handed-back one can return it."""
    if claim is None or claim.owner == request.key:
        return None
    return PreviousOwner(claim.owner, claim.group_id)


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
