"""Read a deployed jets-deploy-iam stack back into resource properties (for `drift`).

CloudFormation's own drift detection cannot see inside custom resources; this rebuilds the
declared state from the stack's parameters exactly as template.yaml maps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.spec import Environment

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

LOGICAL_ID = "JetsDeployGroup"
_PASSED_THROUGH = (
    "GroupName",
    "Users",
    "ManagedPolicyArns",
    "AdditionalActions",
    "PolicyProfile",
    "JetsVersion",
    "Exclusive",
    "AdoptExistingGroup",
)


@dataclass(frozen=True)
class DeployedStack:
    properties: dict[str, Any]
    physical_id: str
    env: Environment


def read_stack(cfn: CloudFormationClient, stack_name: str) -> DeployedStack:
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        raise JetsDeployIamError(f"stack {stack_name}: {error}") from error
    params = {
        p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", ""))
        for p in stack.get("Parameters", [])
    }
    if "GroupName" not in params:
        raise JetsDeployIamError(f"stack {stack_name} has no GroupName parameter: not ours?")
    props: dict[str, Any] = {k: params[k] for k in _PASSED_THROUGH if k in params}
    scoped = params.get("PolicyProfile") == "scoped"
    if scoped:
        props["ResourcePrefix"] = params.get("ResourcePrefix", "")
        props["AppManagedPolicyArns"] = params.get("AppManagedPolicyArns", "")
    elif "Services" in params:
        props["Services"] = params["Services"]
    arn_parts = stack["StackId"].split(":")
    env = Environment(partition=arn_parts[1], account_id=arn_parts[4])
    return DeployedStack(props, _physical_id(cfn, stack_name, params["GroupName"]), env)


def _physical_id(cfn: CloudFormationClient, stack_name: str, fallback: str) -> str:
    """The group the stack's custom resource owns (differs from GroupName mid-rename)."""
    try:
        detail = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=LOGICAL_ID)
    except ClientError:
        return fallback
    return str(detail["StackResourceDetail"].get("PhysicalResourceId") or fallback)
