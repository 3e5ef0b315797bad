"""A deployed stack's ``Custom::JetsDeployGroup`` resources, as CloudFormation would send them.

Any stack qualifies: the main jets-deploy-iam stack (whose ``JetsDeployGroup`` takes its
properties from the stack's parameters) and any consumer stack declaring its own groups. Each
resource's properties are read from the stack's template (GetTemplate) and resolved against the
stack's parameters (``template.py``), twice: with the deployed values (what the resource last
got) and with ``--parameter-overrides`` applied (what the next deploy would send), as a change
set does. CloudFormation's own drift detection cannot see inside custom resources; this can.

The registry the function keeps (which members and policies each resource owns, the undo record
of its last Update) is found the way the function finds it: the main stack's ``RegistryTable``,
or the ``JETS_REGISTRY_TABLE`` of the function a consumer's ServiceToken names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jets_deploy_iam.registry.store import TABLE_VARIABLE as REGISTRY_TABLE_VARIABLE
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam.spec import Environment
from jets_deploy_iam_cli.aws import Aws, UsageError
from jets_deploy_iam_cli.template import (
    Parameter,
    Properties,
    Scope,
    TemplateError,
    UnresolvedError,
    canonical,
    load_template,
    resource_properties,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

RESOURCE_TYPE = "Custom::JetsDeployGroup"
#: The main stack's registry table (template.yaml).
REGISTRY_LOGICAL_ID = "RegistryTable"
_ARN = re.compile(
    r"arn:(?P<partition>[^:]+):(?P<service>[^:]+):(?P<region>[^:]*):(?P<account>\d*):"
)


class StackError(Exception):
    """The stack cannot be read, or is not one this tool can preview."""


@dataclass(frozen=True)
class Resource:
    """One ``Custom::JetsDeployGroup`` of the stack: deployed, and after the overrides."""

    logical_id: str
    #: CloudFormation's physical id ("" if it has none: never created, or its Create failed)
    physical_id: str
    status: str
    deployed: Properties
    proposed: Properties

    @property
    def unresolved(self) -> tuple[str, ...]:
        """What blocks a preview (the ServiceToken is only needed to find the registry)."""
        both = dict.fromkeys([*self.deployed.unresolved, *self.proposed.unresolved])
        return tuple(u for u in both if not u.startswith("ServiceToken:"))

    @property
    def service_token(self) -> str | None:
        token = self.proposed.values.get("ServiceToken") or self.deployed.values.get("ServiceToken")
        return str(token) if token else None

    @property
    def changed(self) -> bool:
        """CloudFormation sends an Update only when a property changes."""
        return canonical(self.deployed.values) != canonical(self.proposed.values)


@dataclass(frozen=True)
class DeployedStack:
    name: str
    stack_id: str
    status: str
    resources: tuple[Resource, ...]
    #: the stack's own registry table (the main stack's RegistryTable), if it has one
    registry_table: str | None

    @property
    def env(self) -> Environment:
        """Partition and account, from the stack's ARN."""
        return Environment.from_function_arn(self.stack_id)

    @property
    def region(self) -> str:
        match = _ARN.match(self.stack_id)
        return match["region"] if match else ""

    def key(self, resource: Resource) -> ResourceKey:
        return ResourceKey(self.stack_id, resource.logical_id)


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``K=V`` pairs as ``sam deploy --parameter-overrides`` takes them."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--parameter-overrides entry {pair!r} is not KEY=VALUE")
        overrides[key.strip()] = value
    return overrides


def read_stack(aws: Aws, name: str, overrides: Mapping[str, str] | None = None) -> DeployedStack:
    """The stack ``name`` and its Custom::JetsDeployGroup resources (StackError if none)."""
    cfn: CloudFormationClient = aws.client("cloudformation")
    try:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        body = cfn.get_template(StackName=name, TemplateStage="Processed")["TemplateBody"]
        listed = [
            r
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name)
            for r in page["StackResourceSummaries"]
        ]
    except ClientError as error:
        raise StackError(f"stack {name}: {_message(error)}") from error
    try:
        template = load_template(body)
    except TemplateError as error:
        raise StackError(f"stack {name}: {error}") from error
    declared = template.get("Resources") or {}
    ours = [
        k for k, v in declared.items() if isinstance(v, dict) and v.get("Type") == RESOURCE_TYPE
    ]
    if not ours:
        raise StackError(
            f"stack {name} declares no {RESOURCE_TYPE} resource: not a jets-deploy-iam stack "
            "or a stack using its ServiceToken"
        )
    physical = {
        r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", "")) for r in listed
    }
    status = {r["LogicalResourceId"]: r["ResourceStatus"] for r in listed}
    deployed = _parameters(template, stack.get("Parameters", []))
    proposed = _overridden(name, template, deployed, overrides or {})
    now = _scope(cfn, template, stack, deployed, physical)
    then = _scope(cfn, template, stack, proposed, physical)
    resources = tuple(
        Resource(
            logical_id=logical,
            physical_id=_live_physical_id(physical, status, logical),
            status=status.get(logical, "NOT_CREATED"),
            deployed=resource_properties(now, logical),
            proposed=resource_properties(then, logical),
        )
        for logical in ours
    )
    table_type, table = physical.get(REGISTRY_LOGICAL_ID, ("", ""))
    return DeployedStack(
        name=stack["StackName"],
        stack_id=stack["StackId"],
        status=stack["StackStatus"],
        resources=resources,
        registry_table=table if table_type == "AWS::DynamoDB::Table" and table else None,
    )


def _live_physical_id(
    physical: Mapping[str, tuple[str, str]], status: Mapping[str, str], logical: str
) -> str:
    """The physical id CloudFormation holds for a resource that exists ("" otherwise)."""
    if status.get(logical, "").startswith(("CREATE_FAILED", "DELETE_COMPLETE")):
        return ""
    return physical.get(logical, ("", ""))[1] or ""


def _parameters(template: Mapping[str, Any], values: Sequence[Any]) -> dict[str, Parameter]:
    declared = template.get("Parameters") or {}
    result: dict[str, Parameter] = {}
    for entry in values:
        name = entry["ParameterKey"]
        spec = declared.get(name) or {}
        value = entry.get("ResolvedValue", entry.get("ParameterValue", ""))
        result[name] = Parameter(
            name, str(spec.get("Type", "String")), str(value), bool(spec.get("NoEcho"))
        )
    for name, spec in declared.items():  # a parameter the stack does not list: its default
        if name not in result and "Default" in spec:
            result[name] = Parameter(name, str(spec.get("Type", "String")), str(spec["Default"]))
    return result


def _overridden(
    stack: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Parameter],
    overrides: Mapping[str, str],
) -> dict[str, Parameter]:
    """The parameters after ``overrides``, checked as CloudFormation checks them."""
    declared = template.get("Parameters") or {}
    result = dict(parameters)
    for name, value in overrides.items():
        spec = declared.get(name)
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(f"stack {stack} has no parameter {name} (its parameters: {known})")
        _check_constraints(name, spec, value)
        result[name] = Parameter(name, str(spec.get("Type", "String")), value)
    return result


def _check_constraints(name: str, spec: Mapping[str, Any], value: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise UsageError(
            f"parameter {name}={value!r} is not one of {', '.join(str(a) for a in allowed)}"
        )
    pattern = spec.get("AllowedPattern")
    is_list = str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<"))
    for item in value.split(",") if is_list else [value]:
        if pattern is not None and not re.fullmatch(str(pattern), item):
            described = spec.get("ConstraintDescription") or f"the pattern {pattern}"
            raise UsageError(f"parameter {name}={item!r} does not match {described}")


def _scope(
    cfn: CloudFormationClient,
    template: Mapping[str, Any],
    stack: Mapping[str, Any],
    parameters: Mapping[str, Parameter],
    physical: Mapping[str, tuple[str, str]],
) -> Scope:
    stack_id = str(stack["StackId"])
    match = _ARN.match(stack_id)
    partition, region, account = (
        (match["partition"], match["region"], match["account"]) if match else ("aws", "", "")
    )
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    exports: dict[str, str] | None = None

    def export(name: str) -> str | None:
        nonlocal exports
        if exports is None:
            exports = {
                e["Name"]: e["Value"]
                for page in cfn.get_paginator("list_exports").paginate()
                for e in page["Exports"]
            }
        return exports.get(name)

    return Scope(
        template=template,
        parameters=parameters,
        pseudo={
            "AWS::StackName": str(stack["StackName"]),
            "AWS::StackId": stack_id,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::URLSuffix": suffix,
        },
        resources=physical,
        exports=export,
    )


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryLocation:
    table: str
    region: str
    #: how it was found, for the output ("--registry-table", "stack X's RegistryTable", ...)
    source: str


def find_registry(aws: Aws, stack: DeployedStack, flag: str | None) -> RegistryLocation:
    """The registry table the function serving this stack uses."""
    if flag:
        return RegistryLocation(flag, stack.region or aws.regional_region(), "--registry-table")
    if stack.registry_table:
        return RegistryLocation(
            stack.registry_table, stack.region, f"{REGISTRY_LOGICAL_ID} of stack {stack.name}"
        )
    tokens = [r.service_token for r in stack.resources if r.service_token]
    if not tokens:
        why = "; ".join(
            u for r in stack.resources for u in r.deployed.unresolved if u.startswith("Service")
        )
        raise StackError(
            f"cannot find the registry table of stack {stack.name}: its ServiceToken cannot be "
            f"resolved ({why or 'none declared'}); pass --registry-table"
        )
    return registry_of_function(aws, tokens[0])


def registry_of_function(aws: Aws, function_arn: str) -> RegistryLocation:
    """The ``JETS_REGISTRY_TABLE`` of the function a ServiceToken names."""
    match = _ARN.match(function_arn)
    region = match["region"] if match else aws.regional_region()
    try:
        configuration = aws.client("lambda", region).get_function_configuration(
            FunctionName=function_arn
        )
    except ClientError as error:
        raise StackError(
            f"cannot read the function {function_arn} to find its registry table "
            f"({_message(error)}); pass --registry-table"
        ) from error
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    table = variables.get(REGISTRY_TABLE_VARIABLE)
    if not table:
        raise StackError(
            f"the function {function_arn} has no {REGISTRY_TABLE_VARIABLE}: not a "
            "jets-deploy-iam function, or a version before the registry; pass --registry-table"
        )
    return RegistryLocation(str(table), region, f"{REGISTRY_TABLE_VARIABLE} of {function_arn}")


def stack_id_of(aws: Aws, name: str) -> str:
    """A stack's id from its name (for filtering registry records)."""
    try:
        return str(
            aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]["StackId"]
        )
    except ClientError as error:
        raise StackError(f"stack {name}: {_message(error)}") from error


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message") or error)


__all__ = [
    "DeployedStack",
    "RegistryLocation",
    "Resource",
    "StackError",
    "UnresolvedError",
    "find_registry",
    "parse_overrides",
    "read_stack",
    "registry_of_function",
    "stack_id_of",
]
