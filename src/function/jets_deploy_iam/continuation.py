"""Continuation across invocations: long work goes on in later invocations instead of failing.

A Create of 5,000 members at IAM's 2 writes a second takes 2,500 s; a Lambda invocation at most
900. When the deadline (not an IAM refusal) stops work that is making progress, the controller
records what is done and answers nothing yet (``Response`` status ``IN_PROGRESS``); crhelper's
polling rule (``protocol.py``) invokes the function again a minute later, and that invocation
re-reads the registry and IAM and goes on. Every step is idempotent, so nothing depends on what
the earlier invocation was doing when it stopped.

The request itself is kept in the registry (``Continuation.event``), and the rule's target
carries only a pointer to it (``pointer``): EventBridge limits a target's Input to 8,192
characters, far less than a request naming thousands of users, and the presigned ResponseURL
(a write credential) is then not copied into the rule.

The ``Gate`` decides, per invocation and before the controller runs, whether and how it runs, so
that invocations of one resource never work at the same time:

* EventBridge delivers at least once, and the rule fires every minute while an invocation may
  work for fifteen: an invocation of a continued request takes a lease in the registry (holder,
  until the end of its Lambda time); any other invocation of it that finds the lease held goes
  away without a word;
* CloudFormation sends one request at a time per resource, so another request of the resource
  arriving while one is continued means CloudFormation gave up on that one (a stack rollback
  cancelled it, or its ServiceTimeout passed). The new request marks it cancelled; the working
  invocation checks for that every few seconds (``watched``) and stops; the new request waits for
  the lease, closes the old request in the registry, removes its rule and does its own work. A
  Delete that supersedes a Create also removes the group that Create made: CloudFormation never
  learnt its name, and sends the Delete with an id of its own;
* the overall bound is CloudFormation's ``ServiceTimeout`` (an hour at most), counted from the
  request's first invocation: no invocation works past it, and the work does not go on when
  another invocation would have no time left to work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from jets_deploy_iam.config import Deadline
from jets_deploy_iam.exceptions import DeadlineExceededError, IamApplyError, JetsDeployIamError
from jets_deploy_iam.registry.model import Continuation, ResourceRecord
from jets_deploy_iam.registry.store import Registry, Stored
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response

if TYPE_CHECKING:
    from jets_deploy_iam.reconcile import Hooks

logger = logging.getLogger(__name__)

#: CloudFormation's ServiceTimeout when the resource sets none (and its maximum): one hour.
DEFAULT_SERVICE_TIMEOUT = 3600.0
#: Kept back from the ServiceTimeout: CloudFormation's clock starts before our first invocation
#: (the asynchronous invoke's queue, a cold start), and the answer's PUT takes time too.
ANSWER_RESERVE = 30.0
#: How long after one invocation the next may come: the polling rule fires every minute
#: (``protocol.POLLING_INTERVAL_MINUTES``), plus EventBridge's delivery delay and a cold start.
NEXT_INVOCATION_WITHIN = 90.0
#: An invocation with less work time than this is not worth it: it would spend it on reading the
#: group and the pre-flight before its first write.
MIN_WORK = 60.0
#: How often a continued invocation checks whether another request superseded its own.
CHECK_EVERY = 10.0
#: How often a superseding request looks whether the superseded invocation has stopped.
WAIT_STEP = 2.0
#: What the call path retries for as long as the deadline allows: under a deadline they reach the
#: caller only when the deadline stopped the retries.
RETRIED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceFailure",
        "ServiceUnavailable",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
#: What a polling rule's target carries: crhelper's markers and the request's key.
POINTER_FIELDS = ("RequestType", "RequestId", "StackId", "LogicalResourceId")
CRHELPER_FIELDS = ("CrHelperPoll", "CrHelperRule", "CrHelperPermission", "CrHelperData")


def now() -> float:
    """Wall-clock time in seconds: the one clock every invocation shares (tests replace it)."""
    return time.time()


def stopped_by_deadline(error: BaseException) -> bool:
    """Did the deadline, rather than an IAM refusal, stop the work?"""
    if isinstance(error, DeadlineExceededError | HTTPClientError | BotoConnectionError):
        return True
    return isinstance(error, IamApplyError) and error.code in RETRIED_CODES


class SupersededError(DeadlineExceededError):
    """Another request of the resource superseded this one: stop where it is (the deadline's
    way, so the progress is recorded as for a deadline)."""


class BusyError(JetsDeployIamError):
    """Another invocation holds the lease (raised inside a registry edit, to stop it)."""


def service_timeout(properties: Any) -> float:
    """The resource's ``ServiceTimeout`` (CloudFormation's own property), or its default."""
    raw = properties.get("ServiceTimeout") if isinstance(properties, Mapping) else None
    try:
        value = float(raw) if raw is not None else DEFAULT_SERVICE_TIMEOUT
    except (TypeError, ValueError):
        return DEFAULT_SERVICE_TIMEOUT
    if not math.isfinite(value) or value <= 0:
        return DEFAULT_SERVICE_TIMEOUT
    return min(value, DEFAULT_SERVICE_TIMEOUT)


# -- the polling event ----------------------------------------------------------------------


def pointer(event: Mapping[str, Any], marks: Mapping[str, Any]) -> dict[str, Any]:
    """What the polling rule delivers: the request's key and crhelper's marks, no more."""
    return {**{f: event[f] for f in POINTER_FIELDS if f in event}, **marks, "CrHelperPoll": True}


def is_pointer(event: Any) -> bool:
    return isinstance(event, Mapping) and bool(event.get("CrHelperPoll"))


def expand(registry: Registry, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request a polling event points to, as CloudFormation sent it (plus crhelper's marks);
    None when nothing goes on for it any more (answered, or closed by a newer request)."""
    try:
        key = ResourceKey(str(event["StackId"]), str(event["LogicalResourceId"]))
    except KeyError:
        return None
    going_on = registry.load(key).record.continuation
    if going_on is None or going_on.request_id != event.get("RequestId") or not going_on.event:
        return None
    marks = {k: event[k] for k in CRHELPER_FIELDS if k in event}
    return {**going_on.event, **marks, "CrHelperPoll": True}


def as_sent(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event without crhelper's marks: what the registry keeps."""
    return {k: v for k, v in event.items() if k not in CRHELPER_FIELDS}


# -- the budget and the policy --------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """CloudFormation waits ``service_timeout`` seconds for the answer from ``started_at``."""

    started_at: float
    service_timeout: float

    @property
    def ends_at(self) -> float:
        """No invocation works after this (wall clock): what is left is for the answer."""
        return self.started_at + self.service_timeout - ANSWER_RESERVE

    def left(self) -> float:
        return self.ends_at - now()


@dataclass(frozen=True)
class Continuing:
    """How the controller's work may go on in later invocations (``Controller(continuing=)``).

    ``refusal`` says whether another invocation would have time; ``arrange`` makes sure it comes
    (crhelper's rule, its permission and target; nothing when they exist) and raises if it
    cannot, after the progress is recorded: then the request fails now, an Update's writes
    undone, rather than wait for an invocation that never comes.
    """

    #: the request's budget (known once the gate has read the registry)
    budget: Callable[[], Budget]
    #: what each invocation keeps back from its own end (``ReconcileConfig.deadline_margin``)
    margin: float
    arrange: Callable[[], None]
    #: the request as CloudFormation sent it (the registry keeps it for later invocations)
    event: Mapping[str, Any] = field(default_factory=dict)
    #: the physical id the answer carries when the work is on another group's (``Gate``)
    answer_id: Callable[[], str | None] = lambda: None

    def refusal(self) -> str | None:
        """None when another invocation would have time to work; else why not (a Reason)."""
        budget = self.budget()
        work = budget.left() - NEXT_INVOCATION_WITHIN - self.margin
        if work < MIN_WORK:
            return (
                "another invocation would have no time before CloudFormation's ServiceTimeout "
                f"({budget.service_timeout:.0f} s after the request)"
            )
        return None

    def fresh(self, request: Request, group: str) -> Continuation:
        """The registry's record of a request that starts going on in later invocations."""
        return Continuation(
            request.request_id,
            request.kind,
            group,
            started_at=self.budget().started_at,
            event=dict(self.event),
            answer_id=self.answer_id(),
        )


# -- the gate -----------------------------------------------------------------------------------


@dataclass
class Steps:
    """What the protocol does with crhelper's polling once the invocation is over."""

    #: RequestIds whose rules must go: this request's once answered, a superseded one's
    retire: list[str] = field(default_factory=list)


Handle = Callable[[Request, Stored, str | None], Response]
Load = Callable[[Request], Stored]


class Gate:
    """Decides, from the registry, whether and how one invocation runs the controller."""

    def __init__(
        self,
        registry: Registry,
        request: Request,
        *,
        event: Mapping[str, Any],
        holder: str,
        lambda_left: Callable[[], float],
        started_at: float,
        arrange: Callable[[], None] | None,
        margin: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.request = request
        self.event = as_sent(event)
        self.holder = holder
        self.lambda_left = lambda_left
        self.arrange = arrange
        self.margin = margin
        self.sleep = sleep
        self.steps = Steps()
        #: until ``run`` reads the registry: counted from this invocation's start
        self.budget = Budget(started_at, service_timeout(request.properties))
        self.answer_id: str | None = None
        self._polled = request.continuation  # this request's rule may exist
        self._watching = False
        self._checked = now()

    # -- what the controller gets ----------------------------------------------------------------

    def time_left(self) -> float:
        """Seconds this invocation may use: its Lambda time, within the request's budget."""
        return min(self.lambda_left(), self.budget.left())

    def deadline(self, margin: float) -> Deadline:
        """``margin`` seconds before the end of ``time_left`` (a clock that counts down with it,
        whatever clock the Lambda context runs on)."""
        return Deadline(at=-margin, clock=lambda: -self.time_left())

    def continuing(self) -> Continuing | None:
        if self.arrange is None:
            return None  # polling is not configured (the command line, sam local)
        return Continuing(
            lambda: self.budget, self.margin, self.arrange, self.event, lambda: self.answer_id
        )

    def watched(self, hooks: Hooks) -> Hooks:
        """``hooks`` whose ``on_applied`` also stops the work once another request superseded
        this one (checked every ``CHECK_EVERY`` seconds, only while holding the lease)."""
        applied = hooks.on_applied

        def on_applied(change: Any) -> None:
            applied(change)
            if self._watching and now() - self._checked >= CHECK_EVERY:
                self._checked = now()
                try:
                    going_on = self.registry.load(self.request.key).record.continuation
                except JetsDeployIamError:  # the work goes on; the next check may see it
                    logger.warning("the registry could not be read to check for a newer request")
                    return
                if going_on is not None and going_on.cancelled_by is not None:
                    raise SupersededError(f"superseded by request {going_on.cancelled_by}")

        return replace(hooks, on_applied=on_applied)

    # -- the invocation ----------------------------------------------------------------------

    def run(self, load: Load, handle: Handle, physical_id: str) -> Response:
        """Serve the invocation; ``IN_PROGRESS`` means no answer now. ``load`` reads the record
        the controller needs (``Controller.load``): it is read once, here, and handed on."""
        request = self.request
        try:
            self.stored = stored = load(request)
        except JetsDeployIamError as error:
            return Response.failed(physical_id, error)
        record = stored.record
        going_on = record.continuation
        if going_on is not None and going_on.request_id == request.request_id:
            self._polled = True
            if going_on.started_at:  # the request's budget runs from its first invocation
                self.budget = replace(self.budget, started_at=going_on.started_at)
        if record.answer_for(request.request_id) is not None:
            if request.continuation:  # a late firing: the answer went out already
                self._retire("already answered")
                return Response.in_progress(physical_id)
            return handle(request, stored, None)  # a repeated delivery: answered as before
        if going_on is None:
            return self._run(handle, stored)
        if going_on.request_id == request.request_id:
            return self._resume(handle, going_on, physical_id)
        return self._supersede(handle, going_on, physical_id)

    def _resume(self, handle: Handle, going_on: Continuation, physical_id: str) -> Response:
        if going_on.cancelled_by is not None:
            self._retire(f"superseded by request {going_on.cancelled_by}")
            return Response.in_progress(physical_id)
        try:
            stored = self.registry.change(self.stored, self._take_lease)
        except BusyError:
            logger.info("another invocation is working on this request: nothing to do")
            return Response.in_progress(physical_id)
        taken = _required(stored.record.continuation)
        logger.info(
            "continuing the request",
            extra={"invocation": taken.invocations, "started_at": taken.started_at},
        )
        self._watching = True
        self.answer_id = taken.answer_id
        return self._run(handle, stored, taken.group if taken.answer_id else None)

    def _supersede(self, handle: Handle, going_on: Continuation, physical_id: str) -> Response:
        """Another request of the resource is being continued: CloudFormation gave up on it."""
        logger.warning(
            "request %s of this resource was still being continued: this one supersedes it",
            going_on.request_id,
        )
        cancelled = self.registry.change(self.stored, self._cancel)
        stored = self._wait_for(going_on, cancelled)
        if stored is None:
            return Response(
                "FAILED",
                physical_id,
                f"request {going_on.request_id} of this resource is still being worked on by "
                "another invocation; deploy again in a few minutes",
            )
        stored = self.registry.change(stored, self._close(going_on))
        self.steps.retire.append(going_on.request_id)
        request = self.request
        retarget = (
            request.kind == "Delete"
            and going_on.kind == "Create"
            and going_on.group != request.physical_id
            and going_on.group in stored.record.groups
        )
        if not retarget:
            return self._run(handle, stored)
        # CloudFormation cancelled that Create and deletes it under an id of its own invention:
        # the group the Create made goes, and the answer carries CloudFormation's id.
        logger.warning("removing group %s, made by the superseded Create", going_on.group)
        self.answer_id = str(request.physical_id)
        return self._run(handle, stored, going_on.group)

    def _run(self, handle: Handle, stored: Stored, target: str | None = None) -> Response:
        request = self.request if target is None else replace(self.request, physical_id=target)
        response = handle(request, stored, self.answer_id)
        if not response.pending:
            if self._polled:
                self._retire("answered")
            return response
        record = self.registry.load(self.request.key).record
        going_on = record.continuation
        mine = going_on is not None and going_on.request_id == self.request.request_id
        if record.answer_for(self.request.request_id) is not None:
            self._retire("closed by the request that superseded it")
        elif mine and going_on is not None and going_on.cancelled_by is not None:
            self._retire(f"superseded by request {going_on.cancelled_by}")
        return response

    def _wait_for(self, going_on: Continuation, stored: Stored) -> Stored | None:
        """The record once no invocation of the superseded request works any more; None if one
        still does when this invocation's time is up."""
        while True:
            current = stored.record.continuation
            if current is None or current.request_id != going_on.request_id:
                return stored
            if not current.held(now(), self.holder):
                return stored
            if self.time_left() - self.margin < WAIT_STEP:
                return None
            logger.info("waiting for the superseded request's invocation to stop")
            self.sleep(WAIT_STEP)
            stored = self.registry.load(self.request.key)

    # -- registry edits ------------------------------------------------------------------------

    def _take_lease(self, record: ResourceRecord) -> ResourceRecord:
        going_on = record.continuation
        if going_on is None or going_on.request_id != self.request.request_id:
            raise BusyError("the request is no longer being continued")
        if going_on.cancelled_by is not None or going_on.held(now(), self.holder):
            raise BusyError("another invocation holds the request")
        lease = now() + self.lambda_left()
        taken = replace(
            going_on, holder=self.holder, lease_until=lease, invocations=going_on.invocations + 1
        )
        return replace(record, continuation=taken)

    def _cancel(self, record: ResourceRecord) -> ResourceRecord:
        going_on = record.continuation
        if going_on is None or going_on.request_id == self.request.request_id:
            return record
        return replace(record, continuation=replace(going_on, cancelled_by=self.request.request_id))

    def _close(self, going_on: Continuation) -> Callable[[ResourceRecord], ResourceRecord]:
        """The superseded request is over: recorded as answered (its late firings then only
        remove its rule) and nothing of it goes on; what it wrote stays registered."""
        closed = Response(
            "FAILED", going_on.group, f"superseded by request {self.request.request_id}"
        )

        def edit(record: ResourceRecord) -> ResourceRecord:
            current = record.continuation
            if current is None or current.request_id != going_on.request_id:
                return record
            return record.with_answer(going_on.request_id, closed)

        return edit

    def _retire(self, why: str) -> None:
        logger.info("polling of this request ends: %s", why)
        if self.request.request_id not in self.steps.retire:
            self.steps.retire.append(self.request.request_id)


def _required(value: Continuation | None) -> Continuation:
    if value is None:
        raise AssertionError("no continuation")
    return value
