"""A small IAM evaluator for identity policies that only Allow, with AWS's matching rules.

moto's `IAMPolicy` (the reference the tests cross-check against) evaluates only StringEquals
conditions, ignores a condition whose key the request lacks, and matches `?` as a regex token.
This evaluator implements what our documents use, as IAM does: actions match case-insensitively,
resources case-sensitively, `*` and `?` are globs; a condition holds when every operator holds;
a missing key fails every operator except `ForAllValues:` (which holds vacuously, as in IAM).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Context = Mapping[str, str | Sequence[str]]


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(regex, flags)


def _values(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _match_one(operator: str, expected: str, actual: str) -> bool:
    if operator == "StringEquals":
        return expected == actual
    if operator in ("StringLike", "ArnLike"):
        return bool(_glob(expected, ignore_case=False).fullmatch(actual))
    if operator == "ArnEquals":
        return expected == actual
    raise ValueError(f"condition operator {operator} is not supported by this evaluator")


def _condition_holds(qualified: str, key: str, expected: Any, context: Context) -> bool:
    qualifier, _, operator = qualified.rpartition(":")
    if key not in context:
        return qualifier == "ForAllValues"
    actual = _values(context[key])
    wanted = _values(expected)

    def any_match(value: str) -> bool:
        return any(_match_one(operator, w, value) for w in wanted)

    if qualifier == "ForAllValues":
        return all(any_match(a) for a in actual)
    if qualifier in ("ForAnyValue", ""):
        return any(any_match(a) for a in actual)
    raise ValueError(f"condition qualifier {qualifier} is not supported")


@dataclass(frozen=True)
class Request:
    """One call as IAM authorises it."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


def statement_allows(statement: Mapping[str, Any], request: Request) -> bool:
    if statement.get("Effect") != "Allow" or "NotAction" in statement:
        raise ValueError("this evaluator handles Allow statements with Action only")
    actions = _values(statement["Action"])
    if not any(_glob(a, ignore_case=True).fullmatch(request.action) for a in actions):
        return False
    resources = _values(statement["Resource"])
    if not any(_glob(r, ignore_case=False).fullmatch(request.resource) for r in resources):
        return False
    conditions: Mapping[str, Mapping[str, Any]] = statement.get("Condition", {})
    return all(
        _condition_holds(op, key, expected, request.context)
        for op, block in conditions.items()
        for key, expected in block.items()
    )


def allows(document: Mapping[str, Any], request: Request) -> bool:
    """True when some statement explicitly allows the request (no Deny in our documents)."""
    statements = document["Statement"]
    if isinstance(statements, Mapping):
        statements = [statements]
    return any(statement_allows(s, request) for s in statements)
