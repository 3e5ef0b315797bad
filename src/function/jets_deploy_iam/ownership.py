"""Ownership: which members, attachments and inline policies this resource added itself.

IAM groups cannot be tagged and CloudFormation sends a custom resource nothing but its current and
previous properties, so "did we add this?" has to be remembered (in the registry). It decides what
a non-exclusive resource may ever remove: only what it added. Everything else on the group was
there before the resource declared it (or was added by hand since) and is foreign.

Two moments change ownership, and the order matters for crash safety:

* ``claim``, before the first IAM write (write-ahead): every item the plan *adds* counts as owned
  even if the function dies before IAM confirms it, so a later revocation is never skipped;
* ``settle``, after the writes: what was *removed* is no longer owned.

A foreign inline policy whose document the resource overwrote (it declared the same name) becomes
owned, and its original document is kept in ``originals``: undeclaring it or deleting the
resource puts that document back instead of deleting a policy someone else wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jets_deploy_iam import policy
from jets_deploy_iam.changes import (
    AddMember,
    AttachPolicy,
    Change,
    DeleteGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    PutPolicy,
    RemoveMember,
)
from jets_deploy_iam.state import ActualGroup


@dataclass(frozen=True)
class Ownership:
    members: frozenset[str] = frozenset()
    attached: frozenset[str] = frozenset()
    inline: frozenset[str] = frozenset()
    #: original documents of foreign inline policies this resource overwrote
    originals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def claim(self, plan: Plan, before: ActualGroup | None) -> Ownership:
        """Ownership as it must be recorded before ``plan`` writes anything (write-ahead)."""
        previous = before.inline_policies if before else {}
        originals = dict(self.originals)
        for put in plan.of_type(PutPolicy):
            foreign_document = previous.get(put.policy_name)
            if put.policy_name not in self.inline and foreign_document is not None:
                originals.setdefault(put.policy_name, foreign_document)
        return Ownership(
            members=self.members | {c.user for c in plan.of_type(AddMember)},
            attached=self.attached | {c.arn for c in plan.of_type(AttachPolicy)},
            inline=self.inline | {c.policy_name for c in plan.of_type(PutPolicy) if not c.restores},
            originals=originals,
        )

    def settle(self, applied: Iterable[Change]) -> Ownership:
        """Ownership once ``applied`` (a plan, or the part that ran) is done: removals drop."""
        members, attached, inline = set(self.members), set(self.attached), set(self.inline)
        originals = dict(self.originals)
        for change in applied:
            match change:
                case RemoveMember(user=user):
                    members.discard(user)
                case DetachPolicy(arn=arn):
                    attached.discard(arn)
                case DeletePolicy(policy_name=name) | PutPolicy(policy_name=name, restores=True):
                    inline.discard(name)
                    originals.pop(name, None)
                case DeleteGroup():
                    return Ownership()
        return Ownership(frozenset(members), frozenset(attached), frozenset(inline), originals)

    def only(
        self, members: Iterable[str], attached: Iterable[str], inline: Iterable[str]
    ) -> Ownership:
        """The part of this ownership about the given items (what an undo record must keep)."""
        names = set(inline)
        return Ownership(
            members=self.members & set(members),
            attached=self.attached & set(attached),
            inline=self.inline & names,
            originals={n: d for n, d in self.originals.items() if n in names},
        )

    def without(
        self, members: Iterable[str], attached: Iterable[str], inline: Iterable[str]
    ) -> Ownership:
        names = set(inline)
        return Ownership(
            members=self.members - set(members),
            attached=self.attached - set(attached),
            inline=self.inline - names,
            originals={n: d for n, d in self.originals.items() if n not in names},
        )

    def merged(self, other: Ownership) -> Ownership:
        return Ownership(
            members=self.members | other.members,
            attached=self.attached | other.attached,
            inline=self.inline | other.inline,
            originals={**self.originals, **other.originals},
        )

    def foreign_in(self, group: ActualGroup) -> bool:
        """Whether ``group`` holds anything this resource did not add (a non-exclusive Delete
        then keeps the group)."""
        kept_inline = set(group.inline_policies) - (self.inline - set(self.originals))
        return bool(
            group.members - self.members or group.managed_policy_arns - self.attached or kept_inline
        )

    def for_copy(self, source: ActualGroup, copied: ActualGroup) -> Ownership:
        """Ownership in the new group of a rename: what was foreign stays foreign, what the
        resource owned or adds now is owned, and a foreign inline policy whose name it now
        declares is owned with its original document kept (as an in-place put would)."""
        overwritten = {
            n: source.inline_policies[n]
            for n, d in copied.inline_policies.items()
            if n in source.inline_policies
            and n not in self.inline
            and not policy.same_policy(d, source.inline_policies[n])
        }
        inline_added = set(copied.inline_policies) - set(source.inline_policies)
        originals = {n: d for n, d in self.originals.items() if n in copied.inline_policies}
        return Ownership(
            members=(self.members | (copied.members - source.members)) & copied.members,
            attached=(self.attached | (copied.managed_policy_arns - source.managed_policy_arns))
            & copied.managed_policy_arns,
            inline=(self.inline | inline_added | set(overwritten)) & set(copied.inline_policies),
            originals={**originals, **overwritten},
        )


def legacy_ownership(
    group: ActualGroup, users: Iterable[str], arns: Iterable[str], policy: str
) -> Ownership:
    """For a resource created before the registry existed: it owns what it declares."""
    return Ownership(
        members=group.members & set(users),
        attached=group.managed_policy_arns & set(arns),
        inline=frozenset({policy} & set(group.inline_policies)),
    )
