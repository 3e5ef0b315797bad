"""Terminal output for people: plans, groups and responses, aligned, coloured only on a TTY."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from jets_deploy_iam import policy
from jets_deploy_iam.plan import Change, Plan
from jets_deploy_iam.state import ActualGroup

if TYPE_CHECKING:
    from jets_deploy_iam_cli.drift import Checked
    from jets_deploy_iam_cli.preview import Preview

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


# -- plan and drift: text for people, JSON for CI ----------------------------------------------


def counts(plans: Iterable[Plan]) -> dict[str, int]:
    changes = [c for plan in plans for c in plan]
    return {
        "add": sum(c.symbol == "+" for c in changes),
        "change": sum(c.symbol == "~" for c in changes),
        "remove": sum(c.symbol == "-" for c in changes),
    }


def count_line(plans: Iterable[Plan]) -> str:
    n = counts(plans)
    return f"{n['add']} to add, {n['change']} to change, {n['remove']} to remove."


def preview_lines(preview: Preview, style: Style) -> list[str]:
    lines = [style(f"plan: {preview.title}", "bold")]
    if preview.unresolved:
        lines.append("  " + style("cannot preview: only CloudFormation knows", "red"))
        lines += [f"    - {why}" for why in preview.unresolved]
        return lines
    if preview.request:
        lines += plan_lines(preview.plan, style)
    lines += ["  " + style(f"({note})", "dim") for note in preview.notes]
    if preview.problems:
        lines.append(
            "  " + style("the deploy would FAIL (nothing would be changed):", "red", "bold")
        )
        lines += ["    - " + style(problem, "red") for problem in preview.problems]
    return lines


def change_json(change: Change) -> dict[str, str]:
    return {
        "symbol": change.symbol,
        "type": type(change).__name__,
        "group": change.group,
        "change": change.describe(),
    }


def preview_json(preview: Preview) -> dict[str, Any]:
    decision = preview.decision
    return {
        "title": preview.title,
        "request": preview.request or None,
        "group": preview.group or None,
        "action": decision.action if decision is not None else None,
        "changes": [change_json(c) for c in preview.plan],
        "problems": list(preview.problems),
        "unresolved": list(preview.unresolved),
        "notes": list(preview.notes),
    }


_STATUS_COLOURS = {"in-sync": "green", "drifted": "red", "replaced": "yellow"}


def checked_lines(checked: Checked, style: Style) -> list[str]:
    key = checked.key
    where = f"{key.logical_id} of stack {key.stack_name}"
    colour = _STATUS_COLOURS.get(checked.status, "dim")
    if checked.status in ("not-checked", "failed"):
        label = "not checked" if checked.status == "not-checked" else "check FAILED"
        return [f"{style(label, colour, 'bold')}: {where}: {checked.note}"]
    lines = [f"{style(checked.status, colour, 'bold')}: {where}: group {checked.group}"]
    if checked.status == "replaced":
        lines.append(f"  {checked.note}")
        lines.append(
            "  neither apply nor a deploy changes a group this resource does not own; to take "
            "it over, deploy with AdoptExistingGroup=true"
        )
    if checked.status == "drifted":
        lines += [
            "  " + style(line, _SYMBOL_COLOURS.get(line[:1], "dim"))
            for line in checked.plan.lines()
        ]
        lines.append(f"  to correct it now: jets-deploy-iam apply --stack {key.stack_name}")
        if checked.drift_action == "correct":
            lines.append("  (DriftAction is correct: the scheduled check corrects it too)")
    return lines


def checked_json(checked: Checked) -> dict[str, Any]:
    return {
        "stack_id": checked.key.stack_id,
        "stack": checked.key.stack_name,
        "logical_id": checked.key.logical_id,
        "status": checked.status,
        "group": checked.group or None,
        "changes": [change_json(c) for c in checked.plan],
        "note": checked.note or None,
        "drift_action": checked.drift_action,
    }
