"""IAM policy documents: size accounting and semantic equality (the profiles: `profiles/`).

IAM hands a stored document back URL-decoded, possibly re-ordered, with single values where we sent
one-element lists. Comparing the JSON text would re-put an unchanged policy on every Update, so
documents are compared by a canonical form instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from jets_deploy_iam.limits import MAX_GROUP_INLINE_POLICY_CHARS
from jets_deploy_iam.profiles import BASELINE_SERVICES, baseline_document, scoped_document
from jets_deploy_iam.profiles.document import VERSION, Document

__all__ = [
    "BASELINE_SERVICES",
    "MAX_GROUP_INLINE_POLICY_CHARS",
    "VERSION",
    "Document",
    "actions_of",
    "baseline_document",
    "canonical",
    "counted_size",
    "parse_stored",
    "render",
    "same_policy",
    "scoped_document",
]

#: IAM's limit for all inline policies of one group, whitespace not counted.

_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")
_WHITESPACE = re.compile(r"\s")


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
