"""Read-only previews: the request a deploy would send, and what the controller would do with it.

Every preview goes through the function's own ``Controller.preview`` (the same decision the
Lambda makes, registry included), never a planner of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.reconcile import Controller, Decision
from jets_deploy_iam.registry.store import Registry
from jets_deploy_iam.request import Request, parse_request
from jets_deploy_iam.spec import Environment, parse_properties

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

LOCAL_STACK = "arn:aws:cloudformation:us-east-1:000000000000:stack/local-preview/00000000"
_PROTOCOL_DEFAULTS = {
    "ResponseURL": "https://localhost/preview-never-answered",
    "StackId": LOCAL_STACK,
    "LogicalResourceId": "JetsDeployGroup",
}


def request_from_event(event: Mapping[str, Any], env: Environment) -> Request:
    """An event file as a request (a preview never answers it: protocol fields may be absent)."""
    filled = {**_PROTOCOL_DEFAULTS, "RequestId": str(uuid.uuid4()), **event}
    return parse_request(filled, env)


def request_for_properties(
    iam: IAMClient, properties: Mapping[str, Any], env: Environment, stack_id: str = LOCAL_STACK
) -> Request:
    """An Update of the group named by ``properties`` if it exists, else a Create."""
    name = parse_properties(properties, env).group_name  # bad input: an error, and no call
    exists = read_group(iam, name, page_size=1) is not None
    event: dict[str, Any] = {
        "RequestType": "Update" if exists else "Create",
        "ResourceProperties": dict(properties),
        "StackId": stack_id,
    }
    if exists:
        event |= {"PhysicalResourceId": name, "OldResourceProperties": dict(properties)}
    return request_from_event(event, env)


def preview(iam: IAMClient, registry: Registry, request: Request) -> Decision:
    return Controller(iam, registry).preview(request)
