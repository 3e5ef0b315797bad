"""IAM policy documents: the two profiles, size accounting and semantic equality.

IAM hands a stored document back URL-decoded, possibly re-ordered, with single values where we sent
one-element lists. Comparing the JSON text would re-put an unchanged policy on every Update, so
documents are compared by a canonical form instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

VERSION = "2012-10-17"

#: What the Jets documentation grants, one ``<service>:*`` statement each.
BASELINE_SERVICES: tuple[str, ...] = (
    "apigateway",
    "cloudformation",
    "dynamodb",
    "events",
    "iam",
    "lambda",
    "logs",
    "route53",
    "s3",
)

#: IAM's limit for all inline policies of one group, whitespace not counted.
MAX_GROUP_INLINE_POLICY_CHARS = 5120

Document = dict[str, Any]

_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")
_WHITESPACE = re.compile(r"\s")


def _statement(actions: Sequence[str], resources: Sequence[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def baseline_document(services: Sequence[str], additional_actions: Sequence[str]) -> Document:
    """The Jets doc's policy: every listed service's actions on every resource."""
    statements = []
    if services:
        statements.append(_statement([f"{svc}:*" for svc in services], ["*"]))
    if additional_actions:
        statements.append(_statement(additional_actions, ["*"]))
    return {"Version": VERSION, "Statement": statements}


def scoped_document(
    prefix: str, partition: str, account_id: str, additional_actions: Sequence[str]
) -> Document:
    """Least privilege for an app whose resources are all named ``<prefix>-...``.

    Region is ``*``: IAM is global and a Jets app may be deployed to any region of the account.
    """
    arn = f"arn:{partition}"
    acct = account_id
    statements: list[dict[str, Any]] = [
        _statement(
            [
                "cloudformation:CreateStack",
                "cloudformation:UpdateStack",
                "cloudformation:DeleteStack",
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStackResources",
            ],
            [
                f"{arn}:cloudformation:*:{acct}:stack/{prefix}-*",
                f"{arn}:cloudformation:*:{acct}:stack/{prefix}-*/*",
            ],
        ),
        _statement(
            [
                "iam:PassRole",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:DeleteRole",
            ],
            [f"{arn}:iam::{acct}:role/{prefix}-*"],
        ),
        _statement(
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:InvokeFunction",
                "lambda:PublishLayerVersion",
                "lambda:GetLayerVersion",
                "lambda:DeleteLayerVersion",
            ],
            [
                f"{arn}:lambda:*:{acct}:function:{prefix}-*",
                f"{arn}:lambda:*:{acct}:layer:*-{prefix}-*",
            ],
        ),
        _statement(
            ["s3:CreateBucket", "s3:List*", "s3:Get*", "s3:Put*", "s3:Delete*"],
            [f"{arn}:s3:::{prefix}-*", f"{arn}:s3:::{prefix}-*/*"],
        ),
        _statement(
            ["logs:DeleteLogGroup"],
            [f"{arn}:logs:*:{acct}:log-group:/aws/lambda/{prefix}-*"],
        ),
        _statement(
            [
                "events:PutRule",
                "events:DeleteRule",
                "events:DescribeRule",
                "events:PutTargets",
                "events:RemoveTargets",
            ],
            [f"{arn}:events:*:{acct}:rule/{prefix}-*"],
        ),
        _statement(
            ["apigateway:*", "cloudformation:DescribeStacks", "logs:DescribeLogGroups"],
            ["*"],
        ),
    ]
    if additional_actions:
        statements.append(_statement(additional_actions, ["*"]))
    return {"Version": VERSION, "Statement": statements}


def render(document: Mapping[str, Any]) -> str:
    """The compact JSON we send to IAM (and measure)."""
    return json.dumps(document, separators=(",", ":"))


def counted_size(document_json: str) -> int:
    """Characters IAM counts against the 5,120 limit: everything but whitespace."""
    return len(_WHITESPACE.sub("", document_json))


def parse_stored(document: str | Mapping[str, Any]) -> Document:
    """A document as IAM returned it: boto3 usually decodes it, raw responses are URL-encoded."""
    if isinstance(document, Mapping):
        return dict(document)
    text = document.strip()
    if not text.startswith("{"):
        text = unquote(text)
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("policy document is not a JSON object")
    return parsed


def _canonical_value(key: str, value: Any) -> Any:
    if key in _LIST_KEYS:
        values = [value] if isinstance(value, str) else list(value)
        return sorted(set(values))
    if isinstance(value, Mapping):
        return {k: _canonical_value(k, v) for k, v in sorted(value.items())}
    if isinstance(value, list) and len(value) == 1:
        return _canonical_value(key, value[0])
    if isinstance(value, list):
        return sorted((_canonical_value(key, v) for v in value), key=render_any)
    return value


def render_any(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def canonical(document: Mapping[str, Any]) -> str:
    """A text equal for two documents exactly when IAM would treat them as the same policy."""
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    canon_statements = sorted(
        (render_any(_canonical_value("", dict(s))) for s in statements),
    )
    rest = {k: _canonical_value(k, v) for k, v in document.items() if k != "Statement"}
    return render_any({**rest, "Statement": canon_statements})


def same_policy(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return canonical(a) == canonical(b)


def actions_of(document: Mapping[str, Any]) -> frozenset[str]:
    """Every action an Allow statement names; used to print what a policy change adds/removes."""
    found: set[str] = set()
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    for statement in statements:
        action = statement.get("Action", [])
        found.update([action] if isinstance(action, str) else action)
    return frozenset(found)
