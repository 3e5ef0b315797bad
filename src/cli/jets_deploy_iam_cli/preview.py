"""Read-only previews: the request a deploy would send, and what the function would do with it.

Every preview goes through the function's own ``Controller.preview`` (the same decision the
Lambda makes, from the same registry) and then the same pre-flight the function runs before its
first write (``iam.preflight``): a user that does not exist, a policy that cannot be attached, a
full quota are shown as the deploy's failure, never as a plan that looks fine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jets_deploy_iam.exceptions import JetsDeployIamError, PreflightError
from jets_deploy_iam.iam.preflight import preflight
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.plan import Plan
from jets_deploy_iam.reconcile import Controller, Decision
from jets_deploy_iam.registry.store import Claim, ClaimWrite, Registry, Stored, Unreadable
from jets_deploy_iam.request import Request, parse_request
from jets_deploy_iam.spec import Environment, parse_properties

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

    from jets_deploy_iam.registry.model import ResourceRecord
    from jets_deploy_iam.request import ResourceKey
    from jets_deploy_iam_cli.stack import DeployedStack, Resource

LOCAL_STACK = "arn:aws:cloudformation:us-east-1:000000000000:stack/local-preview/00000000"
_PROTOCOL_DEFAULTS = {
    "ResponseURL": "https://localhost/preview-never-answered",
    "StackId": LOCAL_STACK,
    "LogicalResourceId": "JetsDeployGroup",
}


class ReadOnlyRegistry(Registry):
    """A registry that can be read and never written: ``plan`` and ``drift`` only look."""

    def __init__(self, inner: Registry) -> None:
        self.inner = inner

    def _read(
        self, key: ResourceKey, names: Iterable[str]
    ) -> tuple[ResourceRecord, int, dict[str, Claim]]:
        return self.inner._read(key, names)

    def _read_claims(self, names: Iterable[str]) -> dict[str, Claim]:
        return self.inner._read_claims(names)

    def scan(self) -> Iterator[Stored | Unreadable]:
        return self.inner.scan()

    def _write(self, record: ResourceRecord, version: int, claims: list[ClaimWrite]) -> None:  # noqa: ARG002
        raise AssertionError(f"a read-only command tried to write {record.key.logical_id}")


@dataclass(frozen=True)
class Preview:
    """One resource's preview: what it is, what the deploy would do, and why it would fail."""

    title: str
    #: Create | Update | Delete, or "" when CloudFormation would send nothing
    request: str = ""
    group: str = ""
    decision: Decision | None = None
    #: why the deploy would fail (pre-flight problems, invalid properties, conflicts)
    problems: tuple[str, ...] = ()
    #: values only CloudFormation knows, so no preview was made
    unresolved: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def plan(self) -> Plan:
        return self.decision.plan if self.decision is not None else Plan()

    @property
    def failed(self) -> bool:
        return bool(self.problems or self.unresolved)


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


def preview(iam: IAMClient, registry: Registry, request: Request, about: str = "") -> Preview:
    """What ``handle(request)`` would do: the controller's decision, then its pre-flight."""
    name = str(request.physical_id) if request.kind == "Delete" else _group_name(request)
    title = f"{about}: {request.kind} of {name}" if about else f"{request.kind} of {name}"
    try:
        decision = Controller(iam, ReadOnlyRegistry(registry)).preview(request)
    except JetsDeployIamError as error:
        return Preview(title, request.kind, name, problems=_problems(error))
    notes = (decision.note,) if decision.note else ()
    if request.kind == "Delete" or not decision.plan:  # as the function: no pre-flight there
        return Preview(title, request.kind, decision.group, decision, notes=notes)
    try:
        preflight(iam, decision.plan, decision.before)
    except PreflightError as error:
        return Preview(title, request.kind, decision.group, decision, error.problems, notes=notes)
    return Preview(title, request.kind, decision.group, decision, notes=notes)


def _group_name(request: Request) -> str:
    try:
        return request.declared.group_name
    except JetsDeployIamError:
        return str(request.physical_id or "")


def _problems(error: JetsDeployIamError) -> tuple[str, ...]:
    problems = getattr(error, "problems", None)
    return tuple(problems) if problems else (str(error),)


# -- a deployed stack ------------------------------------------------------------------------

UNCHANGED = (
    "its properties do not change: a deploy sends it no request (drift stays until corrected: "
    "see `jets-deploy-iam drift` and `apply`)"
)


def preview_stack(iam: IAMClient, registry: Registry, stack: DeployedStack) -> list[Preview]:
    """Each of the stack's resources: the request the deploy would send it, previewed."""
    return [_preview_resource(iam, registry, stack, r) for r in stack.resources]


def _preview_resource(
    iam: IAMClient, registry: Registry, stack: DeployedStack, resource: Resource
) -> Preview:
    title = f"{resource.logical_id} of stack {stack.name}"
    if resource.unresolved:
        return Preview(title, unresolved=resource.unresolved)
    token = resource.service_token
    env = Environment.from_function_arn(token) if token else stack.env
    event: dict[str, Any] = {
        "StackId": stack.stack_id,
        "LogicalResourceId": resource.logical_id,
        "ResourceProperties": resource.proposed.values,
    }
    if not resource.physical_id:
        if not resource.proposed.exists:
            return Preview(title, notes=("not in the stack (its Condition is false)",))
        event["RequestType"] = "Create"
    elif not resource.proposed.exists:
        event |= {
            "RequestType": "Delete",
            "PhysicalResourceId": resource.physical_id,
            "ResourceProperties": resource.deployed.values,
        }
    elif not resource.changed:
        return Preview(title, group=resource.physical_id, notes=(UNCHANGED,))
    else:
        event |= {
            "RequestType": "Update",
            "PhysicalResourceId": resource.physical_id,
            "OldResourceProperties": resource.deployed.values,
        }
    request = request_from_event(event, env)
    return preview(iam, registry, request, title)
