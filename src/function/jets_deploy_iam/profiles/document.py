"""The building blocks of a policy document, shared by both profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

VERSION = "2012-10-17"

Document = dict[str, Any]


def allow(
    actions: Sequence[str],
    resources: Sequence[str],
    condition: Mapping[str, Mapping[str, str | Sequence[str]]] | None = None,
) -> dict[str, Any]:
    """One Allow statement; a condition only where IAM must check more than the resource."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": list(resources),
    }
    if condition:
        statement["Condition"] = {
            op: {key: value if isinstance(value, str) else list(value) for key, value in c.items()}
            for op, c in condition.items()
        }
    return statement
