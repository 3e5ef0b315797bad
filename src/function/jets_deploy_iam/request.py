"""A CloudFormation request, parsed once into one value that every entry point shares.

The handler, the command line's ``plan``/``apply``/``drift`` and the demo all build a ``Request``
and hand it to the controller; none of them reads the raw event again.

An event that lacks a protocol field (ResponseURL, RequestType, RequestId, StackId,
LogicalResourceId) is not a request this function can answer: answering it to some other URL (as
crhelper does with the previous request's) would be worse than dropping it, so parsing fails with
``MalformedEventError`` and the handler logs and drops it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from jets_deploy_iam.exceptions import MalformedEventError
from jets_deploy_iam.spec import DeclaredGroup, Environment, parse_properties

Kind = Literal["Create", "Update", "Delete"]
KINDS: tuple[Kind, ...] = ("Create", "Update", "Delete")
PROTOCOL_FIELDS = ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId")
#: A Create that never created a group answers this prefix + RequestId: it names no group (":" is
#: not allowed in group names), so CloudFormation's rollback Delete can never touch one.
PLACEHOLDER_PREFIX = "no-group:"


@dataclass(frozen=True)
class ResourceKey:
    """One custom resource: the registry's key."""

    stack_id: str
    logical_id: str

    @property
    def stack_name(self) -> str:
        """arn:aws:cloudformation:region:account:stack/NAME/uuid -> NAME"""
        parts = self.stack_id.split("/")
        return parts[1] if len(parts) > 2 else self.stack_id


@dataclass(frozen=True)
class Request:
    kind: Kind
    key: ResourceKey
    request_id: str
    #: None on Create; on Update/Delete the id CloudFormation holds for the resource
    physical_id: str | None
    #: as sent (validated by ``declared``, so a non-object still gets a clear error)
    properties: Any
    old_properties: Any
    env: Environment
    response_url: str = field(default="", repr=False)  # a write credential: never printed
    #: crhelper's polling marker: this invocation continues the work of an earlier one
    continuation: bool = False

    @functools.cached_property
    def declared(self) -> DeclaredGroup:
        """The properties, validated (raises InvalidPropertiesError once per request)."""
        return parse_properties(self.properties, self.env)

    @property
    def placeholder(self) -> str:
        return PLACEHOLDER_PREFIX + self.request_id


def parse_request(event: Mapping[str, Any], env: Environment) -> Request:
    """The request an event carries; MalformedEventError if it cannot be answered safely."""
    if not isinstance(event, Mapping):
        raise MalformedEventError("the event is not a JSON object")
    missing = [f for f in PROTOCOL_FIELDS if not isinstance(event.get(f), str) or not event[f]]
    if missing:
        raise MalformedEventError(f"the event has no {', '.join(missing)}")
    kind = event["RequestType"]
    if kind not in KINDS:
        raise MalformedEventError(f"RequestType {kind!r} is not Create, Update or Delete")
    if not _answerable(event["ResponseURL"]):
        raise MalformedEventError("ResponseURL is not an https URL without whitespace")
    # A missing or odd PhysicalResourceId is answered (FAILED for an Update: it names no group),
    # not dropped: CloudFormation would wait for the whole ServiceTimeout.
    physical_id = event.get("PhysicalResourceId")
    physical_id = physical_id if isinstance(physical_id, str) else ""
    return Request(
        kind=cast("Kind", kind),
        key=ResourceKey(event["StackId"], event["LogicalResourceId"]),
        request_id=event["RequestId"],
        physical_id=physical_id if kind != "Create" else None,
        properties=event.get("ResourceProperties", {}),
        old_properties=event.get("OldResourceProperties"),
        env=env,
        response_url=event["ResponseURL"],
        continuation=bool(event.get("CrHelperPoll")),
    )


def _answerable(url: str) -> bool:
    """crhelper PUTs over HTTPS only; whitespace or a control character (http.client refuses
    0x00-0x20 and DEL, 0x7f) would make http.client raise with the signed URL in the exception
    text."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)
