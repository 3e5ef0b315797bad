"""Terminal output for people: plans, groups and responses, aligned, coloured only on a TTY."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from jets_deploy_iam import policy
from jets_deploy_iam.plan import Plan
from jets_deploy_iam.state import ActualGroup

_CODES = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}
_SYMBOL_COLOURS = {"+": "green", "-": "red", "~": "yellow"}


@dataclass(frozen=True)
class Style:
    colour: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO = sys.stdout) -> Style:
        wants = (
            stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        )
        return cls(colour=wants)

    def __call__(self, text: str, *names: str) -> str:
        if not self.colour or not names:
            return text
        codes = ";".join(_CODES[n] for n in names)
        return f"\033[{codes}m{text}\033[0m"


def plan_lines(plan: Plan, style: Style, indent: str = "  ") -> list[str]:
    if not plan:
        return [indent + style("no changes", "dim")]
    return [indent + style(str(c), _SYMBOL_COLOURS.get(c.symbol, "bold")) for c in plan]


def _field(label: str, value: str, style: Style, indent: str) -> str:
    return f"{indent}{style(f'{label:<10}', 'dim')}{value}"


def group_lines(
    group: ActualGroup | None, style: Style, indent: str = "  ", name_hint: str = ""
) -> list[str]:
    if group is None:
        return [_field("group", style(f"{name_hint} (none)".strip(), "dim"), style, indent)]
    lines = [
        _field("group", style(group.name, "bold") + f"  (path {group.path})", style, indent),
        _field("arn", group.arn, style, indent),
        _field("members", ", ".join(sorted(group.members)) or "-", style, indent),
    ]
    for name, document in sorted(group.inline_policies.items()):
        actions = sorted(policy.actions_of(document))
        shown = ", ".join(actions[:6]) + (f", +{len(actions) - 6} more" if len(actions) > 6 else "")
        lines.append(_field("policy", f"{name} ({shown})", style, indent))
    for arn in sorted(group.managed_policy_arns) or ["-"]:
        lines.append(_field("attached", arn, style, indent))
    return lines


def response_lines(response: Mapping[str, Any], style: Style, indent: str = "  ") -> list[str]:
    status = str(response.get("Status"))
    lines = [
        _field(
            "status",
            style(status, "green" if status == "SUCCESS" else "red", "bold")
            + f"  PhysicalResourceId={response.get('PhysicalResourceId')}",
            style,
            indent,
        )
    ]
    if response.get("Reason"):
        lines.append(_field("reason", str(response["Reason"]), style, indent))
    data = response.get("Data") or {}
    if data:
        lines.append(_field("data", "  ".join(f"{k}={v}" for k, v in data.items()), style, indent))
    return lines
