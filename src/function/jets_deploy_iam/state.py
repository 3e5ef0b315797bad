"""The actual state: what IAM says the group looks like, in the shape the planner compares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActualGroup:
    """One group as read from IAM (all pages of members, every inline policy's document)."""

    name: str
    path: str
    arn: str
    group_id: str
    members: frozenset[str] = frozenset()
    inline_policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    managed_policy_arns: frozenset[str] = frozenset()
