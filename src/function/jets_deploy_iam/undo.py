"""The undo record: what a plan removes or changes, and the plan that puts it back.

It is computed before the plan's first write and stored in the registry (write-ahead), so every
way an Update can end is covered: a failure half way undoes the writes made so far, and
CloudFormation's rollback Update (the same properties swapped) restores the group exactly as it
was before that Update, foreign content and policy documents included.

The record is a delta, not a snapshot: it names only the items the plan touches and their state
before. Restoring touches only those items, so anything someone added by hand meanwhile is left
alone, and restoring twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jets_deploy_iam.changes import (
    AddMember,
    AttachPolicy,
    Change,
    CreateGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    PutPolicy,
    RemoveMember,
    UpdateGroup,
)
from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.plan import plan_delete, policy_change
from jets_deploy_iam.state import ActualGroup


@dataclass(frozen=True)
class Undo:
    """The state before a plan of everything the plan touches, on one group."""

    group: str
    #: the plan created the group: undoing it removes the group whole
    created: bool = False
    #: the path before, if the plan moved the group
    path: str | None = None
    #: user -> was a member before
    members: Mapping[str, bool] = field(default_factory=dict)
    #: policy ARN -> was attached before
    attached: Mapping[str, bool] = field(default_factory=dict)
    #: inline policy name -> its document before (None: it did not exist)
    inline: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    #: the ownership of the touched items before
    ownership: Ownership = field(default_factory=Ownership)

    @classmethod
    def of(cls, plan: Plan, before: ActualGroup | None, owned: Ownership) -> Undo:
        """The undo record of ``plan`` applied to ``before``."""
        name = before.name if before else _group_of(plan)
        if before is None or plan.of_type(CreateGroup):
            return cls(group=name, created=True)
        moves = plan.of_type(UpdateGroup)
        members = {c.user: c.user in before.members for c in plan.of_type(AddMember)}
        members |= {c.user: c.user in before.members for c in plan.of_type(RemoveMember)}
        attached = {c.arn: c.arn in before.managed_policy_arns for c in plan.of_type(AttachPolicy)}
        attached |= {c.arn: c.arn in before.managed_policy_arns for c in plan.of_type(DetachPolicy)}
        names = [c.policy_name for c in plan.of_type(PutPolicy)]
        names += [c.policy_name for c in plan.of_type(DeletePolicy)]
        inline = {n: before.inline_policies.get(n) for n in names}
        return cls(
            group=name,
            path=before.path if moves else None,
            members=members,
            attached=attached,
            inline=inline,
            ownership=owned.only(members, attached, inline),
        )

    @property
    def empty(self) -> bool:
        return not (self.created or self.path or self.members or self.attached or self.inline)

    def restore_plan(self, current: ActualGroup | None) -> Plan:
        """The changes that put the touched items back, given the group as it is now."""
        if current is None:
            return Plan()  # nothing left to restore onto (or, for a created group, to remove)
        if self.created:
            return plan_delete(current, whole=True)
        name = current.name
        changes: list[Change] = []
        if self.path is not None and current.path != self.path:
            changes.append(UpdateGroup(name, self.path))
        for user, was in sorted(self.members.items()):
            if was != (user in current.members):
                changes.append(AddMember(name, user) if was else RemoveMember(name, user))
        for arn, was in sorted(self.attached.items()):
            if was != (arn in current.managed_policy_arns):
                changes.append(AttachPolicy(name, arn) if was else DetachPolicy(name, arn))
        for policy_name, document in sorted(self.inline.items()):
            now = current.inline_policies.get(policy_name)
            if document is None:
                changes += [DeletePolicy(name, policy_name)] if now is not None else []
                continue
            put = policy_change(name, policy_name, document, now)
            changes += [put] if put else []
        return Plan.of(changes)

    def touches(self, change: Change) -> bool:
        """Whether ``change`` acts on an item this record restores."""
        match change:
            case AddMember(user=user) | RemoveMember(user=user):
                return user in self.members
            case AttachPolicy(arn=arn) | DetachPolicy(arn=arn):
                return arn in self.attached
            case PutPolicy(policy_name=name) | DeletePolicy(policy_name=name):
                return name in self.inline
            case UpdateGroup():
                return self.path is not None
        return self.created

    def then(self, later: Undo) -> Undo:
        """The undo record of this plan followed by ``later`` on the same group (a request that
        continues in another invocation plans again from where it stopped): every item goes
        back to its state before the first plan that touched it, so the first record wins and
        ``later`` adds only what the first did not touch (something changed in between)."""
        if later.group != self.group or self.created:
            return self
        if later.created:  # the group vanished in between and the later plan made it again
            return later
        members = {**later.members, **self.members}
        attached = {**later.attached, **self.attached}
        inline = {**later.inline, **self.inline}
        added = later.ownership.only(
            members.keys() - self.members.keys(),
            attached.keys() - self.attached.keys(),
            inline.keys() - self.inline.keys(),
        )
        return Undo(
            group=self.group,
            path=self.path if self.path is not None else later.path,
            members=members,
            attached=attached,
            inline=inline,
            ownership=self.ownership.merged(added),
        )

    def restore_ownership(self, now: Ownership) -> Ownership:
        """Ownership once restored: the touched items are owned exactly as they were before."""
        touched = (self.members, self.attached, self.inline)
        return now.without(*touched).merged(self.ownership)


def _group_of(plan: Plan) -> str:
    for change in plan:
        return change.group
    return ""
