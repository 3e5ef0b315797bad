"""The plan: a pure function from (declared, actual, previously declared) to ordered changes.

A plan is data. It can be printed (``str(plan)`` reads like ``terraform plan``), compared in tests,
checked by the pre-flight and executed by the applier; nothing here talks to IAM.

Order matters to IAM: a group is renamed before anything else names it; inline policies are
deleted before one is put and managed policies detached before others are attached, so that
replacing one never crosses the 5,120-character or 10-attachment limits; a group is deleted
only once it is empty.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jets_deploy_iam import policy
from jets_deploy_iam.spec import DeclaredGroup
from jets_deploy_iam.state import ActualGroup


@dataclass(frozen=True)
class Change:
    """One IAM write. ``group`` is the group's name at the time the write runs."""

    group: str

    symbol = "~"
    #: Changes of the same phase may run concurrently; phases run in order.
    concurrent = False

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.symbol} {self.describe()}"


@dataclass(frozen=True)
class CreateGroup(Change):
    path: str
    symbol = "+"

    def describe(self) -> str:
        return f"create group {self.group} (path {self.path})"


@dataclass(frozen=True)
class UpdateGroup(Change):
    """Rename and/or move in place: members, policies and GroupId are kept."""

    new_name: str | None
    new_path: str | None

    def describe(self) -> str:
        parts = []
        if self.new_name:
            parts.append(f"rename group {self.group} -> {self.new_name}")
        if self.new_path:
            parts.append(f"move group {self.new_name or self.group} to path {self.new_path}")
        return ", ".join(parts)


@dataclass(frozen=True)
class PutPolicy(Change):
    policy_name: str
    document: Mapping[str, Any] = field(hash=False)
    added_actions: frozenset[str] = frozenset()
    removed_actions: frozenset[str] = frozenset()
    replaces: bool = False

    @property
    def symbol(self) -> str:  # type: ignore[override]
        return "~" if self.replaces else "+"

    def describe(self) -> str:
        text = f"policy {self.policy_name}"
        if not self.replaces:
            return f"put {text}"
        delta = [f"+{a}" for a in sorted(self.added_actions)]
        delta += [f"-{a}" for a in sorted(self.removed_actions)]
        return f"{text} ({' '.join(delta) or 'resources or conditions changed'})"


@dataclass(frozen=True)
class DeletePolicy(Change):
    policy_name: str
    symbol = "-"

    def describe(self) -> str:
        return f"delete inline policy {self.policy_name}"


@dataclass(frozen=True)
class AttachPolicy(Change):
    arn: str
    symbol = "+"

    def describe(self) -> str:
        return f"attach {self.arn}"


@dataclass(frozen=True)
class DetachPolicy(Change):
    arn: str
    symbol = "-"

    def describe(self) -> str:
        return f"detach {self.arn}"


@dataclass(frozen=True)
class AddMember(Change):
    user: str
    symbol = "+"
    concurrent = True

    def describe(self) -> str:
        return f"add user {self.user}"


@dataclass(frozen=True)
class RemoveMember(Change):
    user: str
    symbol = "-"
    concurrent = True

    def describe(self) -> str:
        return f"remove user {self.user}"


@dataclass(frozen=True)
class DeleteGroup(Change):
    symbol = "-"

    def describe(self) -> str:
        return f"delete group {self.group}"


_C = TypeVar("_C", bound=Change)


@dataclass(frozen=True)
class Plan:
    """Ordered changes. Empty means the group already is what was declared."""

    changes: tuple[Change, ...] = ()

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __str__(self) -> str:
        if not self.changes:
            return "no changes"
        return "\n".join(str(change) for change in self.changes)

    def of_type(self, kind: type[_C]) -> list[_C]:
        return [c for c in self.changes if isinstance(c, kind)]


def plan_reconcile(
    declared: DeclaredGroup, actual: ActualGroup | None, previous: DeclaredGroup | None = None
) -> Plan:
    """Changes that turn ``actual`` into ``declared``.

    ``Exclusive`` removes everything undeclared; otherwise only what ``previous`` declared and
    ``declared`` no longer does is removed, and foreign members/policies are left alone.
    """
    name = declared.group_name
    changes: list[Change] = []
    if actual is None:
        changes.append(CreateGroup(name, declared.path))
        actual = ActualGroup(name=name, path=declared.path, arn="", group_id="")
    elif actual.name != name or actual.path != declared.path:
        changes.append(
            UpdateGroup(
                actual.name,
                new_name=name if actual.name != name else None,
                new_path=declared.path if actual.path != declared.path else None,
            )
        )

    owned_policies = {previous.policy_name} if previous else set()
    for stale in sorted(
        _removable(set(actual.inline_policies), {declared.policy_name}, owned_policies, declared)
    ):
        changes.append(DeletePolicy(name, stale))
    changes.extend(_put_policy(declared, actual))

    owned_arns = set(previous.managed_policy_arns) if previous else set()
    wanted_arns = set(declared.managed_policy_arns)
    for arn in sorted(
        _removable(set(actual.managed_policy_arns), wanted_arns, owned_arns, declared)
    ):
        changes.append(DetachPolicy(name, arn))
    changes.extend(
        AttachPolicy(name, arn)
        for arn in declared.managed_policy_arns
        if arn not in actual.managed_policy_arns
    )

    owned_users = set(previous.users) if previous else set()
    changes.extend(AddMember(name, u) for u in declared.users if u not in actual.members)
    for user in sorted(_removable(set(actual.members), set(declared.users), owned_users, declared)):
        changes.append(RemoveMember(name, user))
    return Plan(tuple(changes))


def _removable(
    present: set[str], wanted: set[str], previously_owned: set[str], declared: DeclaredGroup
) -> set[str]:
    undeclared = present - wanted
    return undeclared if declared.exclusive else undeclared & previously_owned


def _put_policy(declared: DeclaredGroup, actual: ActualGroup) -> list[Change]:
    change = _policy_change(
        declared.group_name,
        declared.policy_name,
        declared.policy_document,
        actual.inline_policies.get(declared.policy_name),
    )
    return [change] if change else []


def _policy_change(
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


def plan_delete(actual: ActualGroup | None) -> Plan:
    """Empty the group, then delete it. Users and managed policies themselves are never touched."""
    if actual is None:
        return Plan()
    name = actual.name
    changes: list[Change] = [RemoveMember(name, u) for u in sorted(actual.members)]
    changes += [DeletePolicy(name, p) for p in sorted(actual.inline_policies)]
    changes += [DetachPolicy(name, a) for a in sorted(actual.managed_policy_arns)]
    changes.append(DeleteGroup(name))
    return Plan(tuple(changes))


def plan_restore(snapshot: ActualGroup, current: ActualGroup) -> Plan:
    """Changes that put ``current`` back exactly as ``snapshot`` was (name and path unchanged).

    Used to undo a failed adoption: the group was not ours, so a failed Create must hand it back
    as it found it rather than leave it half reconciled.
    """
    name = current.name
    changes: list[Change] = [
        DeletePolicy(name, p)
        for p in sorted(set(current.inline_policies) - set(snapshot.inline_policies))
    ]
    for policy_name, document in sorted(snapshot.inline_policies.items()):
        put = _policy_change(name, policy_name, document, current.inline_policies.get(policy_name))
        changes += [put] if put else []
    changes += [
        DetachPolicy(name, a)
        for a in sorted(current.managed_policy_arns - snapshot.managed_policy_arns)
    ]
    changes += [
        AttachPolicy(name, a)
        for a in sorted(snapshot.managed_policy_arns - current.managed_policy_arns)
    ]
    changes += [AddMember(name, u) for u in sorted(snapshot.members - current.members)]
    changes += [RemoveMember(name, u) for u in sorted(current.members - snapshot.members)]
    return Plan(tuple(changes))
