"""The registry's record of one custom resource, and its JSON form.

One record per resource (StackId, LogicalResourceId). It is the only place that knows what a
resource owns: IAM groups cannot be tagged, and CloudFormation sends nothing but the current and
previous properties. A record holds, per group the resource manages (two during a rename):

* the GroupId, so a Delete acts only on the very group this resource created or adopted;
* the properties and policy document last applied (what the scheduled drift check enforces);
* the ownership: what the resource added itself (a non-exclusive resource removes nothing else);
* ``pair``: the other side of an unfinished rename (a Delete of either side removes it whole);

and, for the resource: the undo record of its last Update (what CloudFormation's rollback Update
restores), the request under way (write-ahead, not yet committed), the answers already sent
(a repeated delivery gets the recorded answer again and makes no write) and, while a request's
work goes on in later invocations, its ``Continuation`` (``continuation.py``).

The scheduled drift check writes to a record only to correct it: it holds the record for a
bounded time (``held_until``) and CloudFormation requests wait for it, so the two never write
IAM for the same resource at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response
from jets_deploy_iam.state import ActualGroup
from jets_deploy_iam.undo import Undo

#: Answers kept for repeated deliveries (CloudFormation sends one request at a time per resource).
ANSWERS_KEPT = 10
#: ``in_progress`` of a correction by the scheduled drift check (CloudFormation's are RequestIds).
CORRECTION_PREFIX = "drift-correction:"
#: The longest a correction may hold a record; a later ``held_until`` (a wrong clock) is ignored.
HOLD_SECONDS = 90.0


@dataclass(frozen=True)
class PreviousOwner:
    owner: ResourceKey
    group_id: str | None


@dataclass(frozen=True)
class GroupRecord:
    name: str
    #: None until IAM confirmed CreateGroup (a write-ahead record of a Create)
    group_id: str | None
    properties: Mapping[str, Any] = field(hash=False)
    document: Mapping[str, Any] = field(hash=False)
    exclusive: bool = True
    ownership: Ownership = field(default_factory=Ownership)
    #: the other group of a rename CloudFormation has not cleaned up or rolled back yet
    pair: str | None = None
    #: an adopted group's state before the adoption, until the resource's first Update: a Delete
    #: before then (CloudFormation's rollback of the deploy that adopted it looks just like one)
    #: gives the group back as it was found instead of deleting it
    adopted: Undo | None = None
    #: the resource whose claim this one took over (an adoption of another resource's group):
    #: if this resource lets go of the group without having made it its own (a failed or
    #: handed-back adoption), the claim goes back to that owner
    taken_from: PreviousOwner | None = None

    def matches(self, group: ActualGroup) -> bool:
        """Is ``group`` the very group this record is about (not a namesake made since)?"""
        return group.name == self.name and self.group_id in (None, group.group_id)


@dataclass(frozen=True)
class LastUpdate:
    """The last Update of the resource, to recognise and serve CloudFormation's rollback."""

    request_id: str
    physical_id: str
    properties: Any
    old_properties: Any
    undo: Undo
    #: the group's hand-back state before this Update (``GroupRecord.adopted`` and
    #: ``taken_from``): its rollback puts it back, so an adopted group whose first Update is
    #: rolled back is still only adopted
    adopted: Undo | None = None
    taken_from: PreviousOwner | None = None
    #: this Update took the group's claim over (AdoptExistingGroup): its rollback lets the
    #: group go again, and the claim returns to ``GroupRecord.taken_from``
    took_over: bool = False
    #: its rollback was served: the same rollback sent again (its answer lost, then
    #: continue-update-rollback) changes nothing more
    rolled_back: bool = False
    #: refused before it wrote anything (its undo record is empty): its rollback serves that
    #: record alone, so it cannot fail on drift the refused Update did not cause
    refused: bool = False

    def reversed_by(self, request: Request) -> bool:
        """CloudFormation's rollback Update sends the same physical id with the properties
        swapped."""
        return (
            request.kind == "Update"
            and request.request_id != self.request_id
            and request.physical_id == self.physical_id
            and not _same(self.properties, self.old_properties)  # an Update changes something
            and _same(request.properties, self.old_properties)
            and _same(request.old_properties, self.properties)
        )


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@dataclass(frozen=True)
class Continuation:
    """A request whose work goes on in later invocations (crhelper's polling: ``continuation.py``).

    Invocations of one request never overlap: each takes the lease (``holder``, until
    ``lease_until``, the wall-clock end of its Lambda time) before it works, and a request of the
    same resource that arrives meanwhile (CloudFormation gave up on this one) sets
    ``cancelled_by`` and takes over once the lease is free.
    """

    request_id: str
    kind: str
    #: the group the request writes to (a Delete that supersedes a Create removes it)
    group: str
    #: what the request's invocations so far touched, as it was before the first touched it
    undo: Undo | None = None
    #: when its first invocation started (wall clock): CloudFormation's ServiceTimeout runs from
    #: about then
    started_at: float = 0.0
    #: the request as CloudFormation sent it (the polling rule's target only points here)
    event: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)
    #: the physical id its answer carries when it works on another group (a superseding Delete)
    answer_id: str | None = None
    #: how many invocations have worked on it
    invocations: int = 1
    #: the Lambda request id of the invocation working on it now, and until when (epoch seconds)
    holder: str | None = None
    lease_until: float = 0.0
    #: the RequestId of the request of this resource that superseded it
    cancelled_by: str | None = None

    def held(self, now: float, by: str) -> bool:
        """Is another invocation working on it now?"""
        return self.holder is not None and self.holder != by and self.lease_until > now


@dataclass(frozen=True)
class ResourceRecord:
    key: ResourceKey
    groups: Mapping[str, GroupRecord] = field(default_factory=dict)
    #: the physical id last answered with SUCCESS (None once deleted)
    current: str | None = None
    last_update: LastUpdate | None = None
    answers: tuple[tuple[str, Response], ...] = ()
    #: the RequestId whose IAM writes are under way (write-ahead, not committed yet), or a
    #: drift correction's ``CORRECTION_PREFIX``-marked id
    in_progress: str | None = None
    #: a drift correction holds the record until then (epoch seconds): CloudFormation requests
    #: wait for it; a correction that died lets go when the time has passed
    held_until: float | None = None
    #: the request whose work goes on in later invocations
    continuation: Continuation | None = None
    #: created by the version before the registry, and only refused since: the legacy rule
    #: (the resource owns the unclaimed group its physical id names) still applies. A refusal
    #: changes nothing, whose group it is included; recording a group ends the rule.
    legacy: bool = False

    def answer_for(self, request_id: str) -> Response | None:
        return next((r for rid, r in self.answers if rid == request_id), None)

    def with_answer(self, request_id: str, response: Response) -> ResourceRecord:
        kept = tuple((rid, r) for rid, r in self.answers if rid != request_id)
        going_on = self.continuation
        if going_on is not None and going_on.request_id == request_id:
            going_on = None  # answered: nothing goes on
        return replace(
            self,
            answers=(*kept, (request_id, response))[-ANSWERS_KEPT:],
            in_progress=None,
            held_until=None,
            continuation=going_on,
        )

    def held(self, now: float) -> bool:
        """Is a drift correction writing to IAM for this resource right now?"""
        return self.held_until is not None and now < self.held_until <= now + HOLD_SECONDS

    def under_way(self, now: float) -> bool:
        """Is a request or a live correction between its write-ahead and its commit?

        A CloudFormation request's mark stays until CloudFormation's next request for the
        resource commits (a request that died is finished by the rollback CloudFormation sends);
        a correction's mark lapses with its hold.
        """
        if self.in_progress is None:
            return False
        return not self.in_progress.startswith(CORRECTION_PREFIX) or self.held(now)

    def with_group(self, group: GroupRecord) -> ResourceRecord:
        return replace(self, groups={**self.groups, group.name: group}, legacy=False)

    def without_group(self, name: str) -> ResourceRecord:
        groups = {n: g for n, g in self.groups.items() if n != name}
        groups = {n: replace(g, pair=None) if g.pair == name else g for n, g in groups.items()}
        current = self.current if self.current != name else _survivor(self.groups.get(name))
        return replace(self, groups=groups, current=current)

    @property
    def deleted(self) -> bool:
        return not self.groups and self.current is None


def _survivor(group: GroupRecord | None) -> str | None:
    """Deleting one side of a rename leaves the other as the resource's group."""
    return group.pair if group else None


# -- JSON form ------------------------------------------------------------------------------


def ownership_json(o: Ownership) -> dict[str, Any]:
    return {
        "members": sorted(o.members),
        "attached": sorted(o.attached),
        "inline": sorted(o.inline),
        "originals": dict(o.originals),
    }


def ownership_of(data: Mapping[str, Any]) -> Ownership:
    return Ownership(
        members=frozenset(data.get("members", ())),
        attached=frozenset(data.get("attached", ())),
        inline=frozenset(data.get("inline", ())),
        originals=dict(data.get("originals", {})),
    )


def undo_json(u: Undo) -> dict[str, Any]:
    return {
        "group": u.group,
        "created": u.created,
        "path": u.path,
        "members": dict(u.members),
        "attached": dict(u.attached),
        "inline": dict(u.inline),
        "ownership": ownership_json(u.ownership),
    }


def undo_of(data: Mapping[str, Any]) -> Undo:
    return Undo(
        group=data["group"],
        created=bool(data.get("created")),
        path=data.get("path"),
        members=dict(data.get("members", {})),
        attached=dict(data.get("attached", {})),
        inline=dict(data.get("inline", {})),
        ownership=ownership_of(data.get("ownership", {})),
    )


def continuation_json(c: Continuation) -> dict[str, Any]:
    return {
        "request_id": c.request_id,
        "kind": c.kind,
        "group": c.group,
        "undo": undo_json(c.undo) if c.undo is not None else None,
        "started_at": c.started_at,
        "event": dict(c.event),
        "answer_id": c.answer_id,
        "invocations": c.invocations,
        "holder": c.holder,
        "lease_until": c.lease_until,
        "cancelled_by": c.cancelled_by,
    }


def continuation_of(data: Mapping[str, Any]) -> Continuation:
    return Continuation(
        request_id=data["request_id"],
        kind=data["kind"],
        group=data["group"],
        undo=undo_of(data["undo"]) if data.get("undo") else None,
        started_at=float(data.get("started_at", 0.0)),
        event=dict(data.get("event") or {}),
        answer_id=data.get("answer_id"),
        invocations=int(data.get("invocations", 1)),
        holder=data.get("holder"),
        lease_until=float(data.get("lease_until", 0.0)),
        cancelled_by=data.get("cancelled_by"),
    )


def record_json(r: ResourceRecord) -> dict[str, Any]:
    return {
        "groups": {
            name: {
                "group_id": g.group_id,
                "properties": g.properties,
                "document": g.document,
                "exclusive": g.exclusive,
                "ownership": ownership_json(g.ownership),
                "pair": g.pair,
                "adopted": _undo_or_none(g.adopted),
                "taken_from": _previous_owner_json(g.taken_from),
            }
            for name, g in r.groups.items()
        },
        "current": r.current,
        "last_update": None
        if r.last_update is None
        else {
            "request_id": r.last_update.request_id,
            "physical_id": r.last_update.physical_id,
            "properties": r.last_update.properties,
            "old_properties": r.last_update.old_properties,
            "undo": undo_json(r.last_update.undo),
            "adopted": _undo_or_none(r.last_update.adopted),
            "taken_from": _previous_owner_json(r.last_update.taken_from),
            "took_over": r.last_update.took_over,
            "rolled_back": r.last_update.rolled_back,
            "refused": r.last_update.refused,
        },
        "answers": [
            {
                "request_id": rid,
                "status": a.status,
                "physical_id": a.physical_id,
                "reason": a.reason,
                "data": dict(a.data),
            }
            for rid, a in r.answers
        ],
        "in_progress": r.in_progress,
        "held_until": r.held_until,
        "continuation": continuation_json(r.continuation) if r.continuation else None,
        "legacy": r.legacy,
    }


def record_of(key: ResourceKey, data: Mapping[str, Any]) -> ResourceRecord:
    last = data.get("last_update")
    return ResourceRecord(
        key=key,
        groups={
            name: GroupRecord(
                name=name,
                group_id=g.get("group_id"),
                properties=g.get("properties", {}),
                document=g.get("document", {}),
                exclusive=bool(g.get("exclusive", True)),
                ownership=ownership_of(g.get("ownership", {})),
                pair=g.get("pair"),
                adopted=undo_of(g["adopted"]) if g.get("adopted") else None,
                taken_from=_previous_owner(g.get("taken_from")),
            )
            for name, g in data.get("groups", {}).items()
        },
        current=data.get("current"),
        last_update=None
        if not last
        else LastUpdate(
            request_id=last["request_id"],
            physical_id=last["physical_id"],
            properties=last.get("properties"),
            old_properties=last.get("old_properties"),
            undo=undo_of(last["undo"]),
            adopted=undo_of(last["adopted"]) if last.get("adopted") else None,
            taken_from=_previous_owner(last.get("taken_from")),
            took_over=bool(last.get("took_over", False)),
            rolled_back=bool(last.get("rolled_back", False)),
            refused=bool(last.get("refused", False)),
        ),
        answers=tuple(
            (
                a["request_id"],
                Response(a["status"], a["physical_id"], a.get("reason", ""), a.get("data", {})),
            )
            for a in data.get("answers", ())
        ),
        in_progress=data.get("in_progress"),
        held_until=data.get("held_until"),
        continuation=continuation_of(data["continuation"]) if data.get("continuation") else None,
        legacy=bool(data.get("legacy", False)),
    )


def _undo_or_none(undo: Undo | None) -> dict[str, Any] | None:
    return undo_json(undo) if undo is not None else None


def _previous_owner_json(owner: PreviousOwner | None) -> dict[str, Any] | None:
    if owner is None:
        return None
    return {
        "stack_id": owner.owner.stack_id,
        "logical_id": owner.owner.logical_id,
        "group_id": owner.group_id,
    }


def _previous_owner(data: Mapping[str, Any] | None) -> PreviousOwner | None:
    if not data:
        return None
    return PreviousOwner(ResourceKey(data["stack_id"], data["logical_id"]), data.get("group_id"))
