"""The vocabulary of IAM writes, and the one order every plan runs them in.

A plan is data: it can be printed (``str(plan)`` reads like ``terraform plan``), compared in tests,
checked by the pre-flight, stored in the registry and executed by the applier.

The order is decided here, once, for every plan (create, update, rename, restore, delete):
revocations run before grants. Members are removed and policies deleted, detached or replaced
before anything is attached or anyone added, so a user being revoked never holds the new rights,
even when the plan fails half way; and replacing a policy never crosses IAM's 10-attachment or
5,120-character limits on the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar


@dataclass(frozen=True)
class Change:
    """One IAM write. ``group`` is the group it acts on."""

    group: str

    symbol = "~"
    #: Changes of the same phase may run concurrently; phases run in order.
    concurrent = False

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.symbol} {self.describe()}"

    def log_fields(self) -> dict[str, str]:
        """The fields of the one log line per applied change an operator searches for."""
        return {"change": str(self), "change_type": type(self).__name__, "group": self.group}


@dataclass(frozen=True)
class CreateGroup(Change):
    path: str
    symbol = "+"

    def describe(self) -> str:
        return f"create group {self.group} (path {self.path})"


@dataclass(frozen=True)
class UpdateGroup(Change):
    """Move the group to another path, in place (members, policies and GroupId are kept).

    A declared new name is never done in place: it is a replacement (see ``plan.plan_copy``).
    ``new_name`` only gives a group renamed by hand its registered name back (the drift
    check's correction): the same GroupId, members and policies, under the name it answers to.
    """

    new_path: str
    new_name: str | None = None

    def describe(self) -> str:
        if self.new_name is not None:
            return f"rename group {self.group} back to {self.new_name} (path {self.new_path})"
        return f"move group {self.group} to path {self.new_path}"


@dataclass(frozen=True)
class PutPolicy(Change):
    policy_name: str
    document: Mapping[str, Any] = field(hash=False)
    added_actions: frozenset[str] = frozenset()
    removed_actions: frozenset[str] = frozenset()
    replaces: bool = False
    #: puts back the document a foreign policy had before this resource overwrote it
    restores: bool = False

    @property
    def symbol(self) -> str:  # type: ignore[override]
        return "~" if self.replaces else "+"

    def describe(self) -> str:
        text = f"policy {self.policy_name}"
        if self.restores:
            return f"restore {text} (its document before this resource declared it)"
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


#: The one order of every plan: the group exists first, revocations, then grants, deletion last.
PHASES: tuple[type[Change], ...] = (
    CreateGroup,
    UpdateGroup,
    RemoveMember,
    DeletePolicy,
    DetachPolicy,
    PutPolicy,
    AttachPolicy,
    AddMember,
    DeleteGroup,
)

_C = TypeVar("_C", bound=Change)


@dataclass(frozen=True)
class Plan:
    """Ordered changes. Empty means the group already is what was declared."""

    changes: tuple[Change, ...] = ()

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Plan:
        """A plan in the phase order (stable within a phase)."""
        return cls(tuple(sorted(changes, key=lambda c: PHASES.index(type(c)))))

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

    def lines(self, limit: int = 100) -> list[str]:
        """The plan as printed, at most ``limit`` lines (logs and reports stay bounded)."""
        shown = [str(c) for c in self.changes[:limit]]
        if len(self.changes) > limit:
            shown.append(f"... and {len(self.changes) - limit} more")
        return shown
