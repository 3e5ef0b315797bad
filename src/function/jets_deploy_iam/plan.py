"""The plan: pure functions from (declared, actual, ownership) to ordered changes.

Nothing here talks to IAM. ``changes`` holds the vocabulary and the one order every plan runs in
(revocations before grants); this module decides *what* changes:

* ``plan_reconcile`` turns a group into its declaration, in place;
* ``plan_copy`` builds the new group of a rename (a replacement, as for ``AWS::IAM::Group``);
* ``plan_delete`` empties a group and deletes it, or keeps it when foreign content remains.

``Exclusive`` makes the group exactly its declaration; otherwise only what the resource owns
(added itself, see ``ownership``) is ever removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jets_deploy_iam import policy
from jets_deploy_iam.changes import (
    AddMember,
    AttachPolicy,
    Change,
    CreateGroup,
    DeleteGroup,
    DeletePolicy,
    DetachPolicy,
    Plan,
    PutPolicy,
    RemoveMember,
    UpdateGroup,
)
from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.spec import DeclaredGroup
from jets_deploy_iam.state import ActualGroup

__all__ = [
    "AddMember",
    "AttachPolicy",
    "Change",
    "CreateGroup",
    "DeleteGroup",
    "DeletePolicy",
    "DetachPolicy",
    "Plan",
    "PutPolicy",
    "RemoveMember",
    "UpdateGroup",
    "plan_copy",
    "plan_delete",
    "plan_reconcile",
    "policy_change",
    "state_after",
]


def plan_reconcile(
    declared: DeclaredGroup, actual: ActualGroup | None, owned: Ownership | None = None
) -> Plan:
    """Changes that turn ``actual`` (named like ``declared``, or missing) into ``declared``."""
    owned = owned or Ownership()
    name = declared.group_name
    changes: list[Change] = []
    if actual is None:
        changes.append(CreateGroup(name, declared.path))
        actual = ActualGroup(name=name, path=declared.path, arn="", group_id="")
    elif actual.name != name:
        raise ValueError(f"plan_reconcile works in place: {actual.name} is not {name}")
    elif actual.path != declared.path:
        changes.append(UpdateGroup(name, declared.path))

    wanted_users = set(declared.users)
    changes += [AddMember(name, u) for u in declared.users if u not in actual.members]
    changes += [
        RemoveMember(name, u)
        for u in sorted(_removable(actual.members - wanted_users, owned.members, declared))
    ]

    wanted_arns = set(declared.managed_policy_arns)
    changes += [
        AttachPolicy(name, a)
        for a in declared.managed_policy_arns
        if a not in actual.managed_policy_arns
    ]
    stale_arns = _removable(actual.managed_policy_arns - wanted_arns, owned.attached, declared)
    changes += [DetachPolicy(name, a) for a in sorted(stale_arns)]

    stale = set(actual.inline_policies) - {declared.policy_name}
    for stale_name in sorted(_removable(stale, owned.inline, declared)):
        original = owned.originals.get(stale_name)
        if original is not None and not declared.exclusive:
            changes.append(_restore(name, stale_name, original, actual.inline_policies[stale_name]))
        else:
            changes.append(DeletePolicy(name, stale_name))
    put = policy_change(
        name,
        declared.policy_name,
        declared.policy_document,
        actual.inline_policies.get(declared.policy_name),
    )
    changes += [put] if put else []
    return Plan.of(changes)


def _removable(
    undeclared: frozenset[str] | set[str], owned: frozenset[str], declared: DeclaredGroup
) -> set[str]:
    return set(undeclared) if declared.exclusive else set(undeclared) & owned


def _restore(
    group: str, name: str, original: Mapping[str, Any], current: Mapping[str, Any]
) -> PutPolicy:
    put = policy_change(group, name, original, current)
    if put is None:  # already the original document: only the ownership changes
        return PutPolicy(group, name, original, replaces=True, restores=True)
    return PutPolicy(
        group,
        name,
        original,
        added_actions=put.added_actions,
        removed_actions=put.removed_actions,
        replaces=True,
        restores=True,
    )


def policy_change(
    group: str, name: str, wanted: Mapping[str, Any], current: Mapping[str, Any] | None
) -> PutPolicy | None:
    """A put of ``wanted`` unless ``current`` already means the same, with the action delta."""
    if current is not None and policy.same_policy(current, wanted):
        return None
    new_actions = policy.actions_of(wanted)
    old_actions = policy.actions_of(current) if current is not None else frozenset()
    return PutPolicy(
        group,
        name,
        wanted,
        added_actions=new_actions - old_actions,
        removed_actions=old_actions - new_actions,
        replaces=current is not None,
    )


def copied_content(declared: DeclaredGroup, source: ActualGroup, owned: Ownership) -> ActualGroup:
    """What the new group of a rename must hold: the declaration, plus (when not exclusive) the
    old group's foreign content, so that nothing someone else put there is lost by a rename."""
    inline: dict[str, Mapping[str, Any]] = {}
    members, arns = set(declared.users), set(declared.managed_policy_arns)
    if not declared.exclusive:
        members |= source.members - owned.members
        arns |= source.managed_policy_arns - owned.attached
        inline.update((n, d) for n, d in source.inline_policies.items() if n not in owned.inline)
    inline[declared.policy_name] = declared.policy_document
    return ActualGroup(
        name=declared.group_name,
        path=declared.path,
        arn="",
        group_id="",
        members=frozenset(members),
        inline_policies=inline,
        managed_policy_arns=frozenset(arns),
    )


def plan_copy(target: ActualGroup, current: ActualGroup | None = None) -> Plan:
    """Build the renamed group: ``target`` is its whole content (see ``copied_content``).

    The old group is not touched: CloudFormation deletes it in its cleanup, or, if the stack rolls
    back, deletes the new one while the old is still intact. (An in-place rename would leave the
    rollback's Delete of the new name nothing but the only group to destroy.) ``current`` is the
    new group if an interrupted attempt of this very rename already made part of it.
    """
    name = target.name
    base = current or ActualGroup(name=name, path=target.path, arn="", group_id="")
    changes: list[Change] = [] if current else [CreateGroup(name, target.path)]
    if current is not None and current.path != target.path:
        changes.append(UpdateGroup(name, target.path))
    for policy_name, document in target.inline_policies.items():
        put = policy_change(name, policy_name, document, base.inline_policies.get(policy_name))
        changes += [put] if put else []
    changes += [
        DeletePolicy(name, n)
        for n in sorted(set(base.inline_policies) - set(target.inline_policies))
    ]
    changes += [
        AttachPolicy(name, a) for a in sorted(target.managed_policy_arns - base.managed_policy_arns)
    ]
    changes += [
        DetachPolicy(name, a) for a in sorted(base.managed_policy_arns - target.managed_policy_arns)
    ]
    changes += [AddMember(name, u) for u in sorted(target.members - base.members)]
    changes += [RemoveMember(name, u) for u in sorted(base.members - target.members)]
    return Plan.of(changes)


def plan_delete(
    actual: ActualGroup | None, owned: Ownership | None = None, whole: bool = True
) -> Plan:
    """Empty the group and delete it; users and managed policies themselves are never touched.

    ``whole`` (exclusive resources, and either side of a rename) removes everything. Otherwise
    only what the resource owns is removed, foreign inline documents it overwrote are put back,
    and the group is kept if foreign content remains.
    """
    if actual is None:
        return Plan()
    name = actual.name
    owned = owned or Ownership()
    if whole:
        changes: list[Change] = [RemoveMember(name, u) for u in sorted(actual.members)]
        changes += [DeletePolicy(name, p) for p in sorted(actual.inline_policies)]
        changes += [DetachPolicy(name, a) for a in sorted(actual.managed_policy_arns)]
        return Plan.of([*changes, DeleteGroup(name)])
    changes = [RemoveMember(name, u) for u in sorted(actual.members & owned.members)]
    changes += [DetachPolicy(name, a) for a in sorted(actual.managed_policy_arns & owned.attached)]
    for policy_name in sorted(set(actual.inline_policies) & owned.inline):
        original = owned.originals.get(policy_name)
        current = actual.inline_policies[policy_name]
        changes.append(
            _restore(name, policy_name, original, current)
            if original is not None
            else DeletePolicy(name, policy_name)
        )
    if not owned.foreign_in(actual):
        changes.append(DeleteGroup(name))
    return Plan.of(changes)


def state_after(actual: ActualGroup | None, plan: Plan) -> ActualGroup | None:
    """The group as it will be once ``plan`` has run (pure: nothing is read or written).

    Lets a planner reason about a plan it has not applied yet, e.g. what a rollback's restore
    leaves for the rest of its reconciliation.
    """
    group = actual
    for change in plan:
        match change:
            case CreateGroup(path=path):
                group = ActualGroup(name=change.group, path=path, arn="", group_id="")
            case DeleteGroup():
                group = None
            case _ if group is None:
                continue
            case UpdateGroup(new_path=new_path, new_name=new_name):
                group = replace(group, path=new_path, name=new_name or group.name)
            case AddMember(user=user):
                group = replace(group, members=group.members | {user})
            case RemoveMember(user=user):
                group = replace(group, members=group.members - {user})
            case AttachPolicy(arn=arn):
                group = replace(group, managed_policy_arns=group.managed_policy_arns | {arn})
            case DetachPolicy(arn=arn):
                group = replace(group, managed_policy_arns=group.managed_policy_arns - {arn})
            case PutPolicy(policy_name=name, document=document):
                group = replace(group, inline_policies={**group.inline_policies, name: document})
            case DeletePolicy(policy_name=name):
                inline = {n: d for n, d in group.inline_policies.items() if n != name}
                group = replace(group, inline_policies=inline)
    return group
