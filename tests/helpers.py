"""Shared builders: one account, one event builder, and CloudFormation as it really drives a
custom resource (``Stack``), usable against the controller in process or the whole handler."""

from __future__ import annotations

import functools
import json
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jets_deploy_iam import policy
from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import Registry
from jets_deploy_iam.request import ResourceKey, parse_request
from jets_deploy_iam.response import Response
from jets_deploy_iam.spec import DeclaredGroup, Environment, parse_properties

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

    from strict_iam import StrictIam

ACCOUNT = "123456789012"  # moto's default account
ENV = Environment("aws", ACCOUNT)
TOKEN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:jets-deploy-iam"
STACK = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/jets/0b1c2d3e"
OTHER_STACK = f"arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/jets/9f8e7d6c"
#: the custom resource of the main stack, and of a second stack declaring the same group
S1 = ResourceKey(STACK, "JetsDeployGroup")
S2 = ResourceKey(OTHER_STACK, "JetsDeployGroup")
#: CloudFormation's own id for a Create that never answered (it fails it at ServiceTimeout)
GENERATED = "jets-JetsDeployGroup-1A2B3C4D5E6F"
TABLE = "jets-deploy-iam-registry"
#: An inline policy whose size is set by the bucket name substituted for %s.
BIG_POLICY = (
    '{"Version":"2012-10-17","Statement":'
    '[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::%s"}]}'
)


class NoSleep:
    """Stands in for time.sleep: records the backoff instead of waiting it out, and moves its
    own clock (``now``) by it, so what waits for time to pass (the call path's send-rate bucket)
    does not spin on the real clock meanwhile."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self._now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._now += max(0.0, seconds)

    def now(self) -> float:
        return self._now


def declared(**props: Any) -> DeclaredGroup:
    return parse_properties(props, ENV)


def make_policy(client: IAMClient, name: str) -> str:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    return client.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"][
        "Arn"
    ]


def make_users(client: IAMClient, names: list[str]) -> None:
    for name in names:
        client.create_user(UserName=name)


def users(n: int, start: int = 0, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(start, start + n)]


def event(
    kind: str,
    props: Mapping[str, Any] | None,
    physical_id: str | None = None,
    old: Mapping[str, Any] | None = None,
    *,
    stack: str = STACK,
    logical_id: str = "JetsDeployGroup",
    request_id: str | None = None,
) -> dict[str, Any]:
    """A CloudFormation request event as CloudFormation sends it."""
    e: dict[str, Any] = {
        "RequestType": kind,
        "ServiceToken": TOKEN,
        "ResponseURL": "https://example.invalid/replaced-by-the-sender",
        "StackId": stack,
        "RequestId": request_id or str(uuid.uuid4()),
        "LogicalResourceId": logical_id,
        "ResourceType": "Custom::JetsDeployGroup",
        "ResourceProperties": {"ServiceToken": TOKEN, **(props or {})},
    }
    if physical_id is not None:
        e["PhysicalResourceId"] = physical_id
    if old is not None:
        e["OldResourceProperties"] = {"ServiceToken": TOKEN, **old}
    return e


def snapshot(iam: IAMClient, name: str) -> dict[str, Any] | None:
    """Everything about a group that an exact restore must bring back."""
    group = read_group(iam, name)
    if group is None:
        return None
    return {
        "name": group.name,
        "path": group.path,
        "id": group.group_id,
        "members": group.members,
        "policies": {n: policy.canonical(d) for n, d in group.inline_policies.items()},
        "attached": group.managed_policy_arns,
    }


def create_props(world: Mapping[str, str]) -> dict[str, Any]:
    return {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]}


def forward_props(world: Mapping[str, str]) -> dict[str, Any]:
    """An Update of ``create_props`` that changes everything, the group's name included."""
    return {
        "GroupName": "JetsDeployers",
        "Users": "alice,carol",
        "ManagedPolicyArns": world["p2"],
        "Services": "s3,lambda",
    }


Sender = Callable[[dict[str, Any]], Response]


def controller_sender(
    iam: IAMClient, registry: Registry, config: ReconcileConfig | None = None
) -> Sender:
    """Requests straight to the controller: the lifecycle without crhelper or HTTPS."""

    def send(e: dict[str, Any]) -> Response:
        return Controller(iam, registry, config).handle(parse_request(e, ENV))

    return send


@dataclass
class Stack:
    """One custom resource in one stack, driven as CloudFormation really drives it.

    * a failed Create is followed by the rollback Delete of the physical id it answered;
    * a failed Update is followed by the rollback Update: old physical id, properties swapped;
    * a successful Update that answered a new physical id (a replacement) is followed by the
      cleanup Delete of the old id, or, if the stack rolls back for another reason, by the
      Delete of the new id; a successful in-place Update followed by a stack rollback gets the
      rollback Update (properties swapped).
    """

    send: Sender
    stack: str = STACK
    logical_id: str = "JetsDeployGroup"
    physical_id: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    log: list[tuple[str, Response]] = field(default_factory=list)

    def _request(self, kind: str, props: Mapping[str, Any] | None, physical: str | None = None,
                 old: Mapping[str, Any] | None = None) -> Response:  # fmt: skip
        e = event(kind, props, physical, old, stack=self.stack, logical_id=self.logical_id)
        response = self.send(e)
        self.log.append((kind, response))
        return response

    def create(self, props: Mapping[str, Any]) -> Response:
        response = self._request("Create", props)
        if response.ok:
            self.physical_id, self.props = response.physical_id, dict(props)
        else:
            rollback = self._request("Delete", props, response.physical_id)
            assert rollback.ok, rollback.reason
        return response

    def update(self, props: Mapping[str, Any], stack_rolls_back: bool = False) -> Response:
        """Deploy new properties; ``stack_rolls_back``: another resource then fails the deploy."""
        old, physical = self.props, self.physical_id
        response = self._request("Update", props, physical, old)
        if not response.ok:
            back = self._request("Update", old, physical, props)
            assert back.ok, back.reason
            return response
        replaced = response.physical_id != physical
        if replaced and stack_rolls_back:
            gone = self._request("Delete", props, response.physical_id)
            assert gone.ok, gone.reason
        elif replaced:
            cleanup = self._request("Delete", old, physical)
            assert cleanup.ok, cleanup.reason
            self.physical_id, self.props = response.physical_id, dict(props)
        elif stack_rolls_back:
            back = self._request("Update", old, physical, props)
            assert back.ok, back.reason
        else:
            self.props = dict(props)
        return response

    def delete(self) -> Response:
        response = self._request("Delete", self.props, self.physical_id)
        if response.ok:
            self.physical_id = None
        return response


# -- CloudFormation (moto's) running the real controller ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
ROLE = f"arn:aws:iam::{ACCOUNT}:role/jets-deploy-iam-function"
#: The consumer stack of examples/, with a second resource that exists only when it has users and
#: takes its users and path through intrinsic functions (ImportValue, Sub, If, NoValue). The
#: ServiceToken is in long form: moto's YAML reader cannot read a short-form tag around a mapping.
CONSUMER_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  JetsDeployIamStack: {Type: String, Default: jets-deploy-iam}
  StagingUsers: {Type: CommaDelimitedList, Default: ""}
  ReaderUsers: {Type: String, Default: ""}
  Strict: {Type: String, Default: "true", AllowedValues: ["true", "false"]}
Conditions:
  HasReaders: !Not [!Equals [!Ref ReaderUsers, ""]]
  IsStrict: !Equals [!Ref Strict, "true"]
Resources:
  StagingDeployGroup:
    Type: Custom::JetsDeployGroup
    Properties:
      ServiceToken: {"Fn::ImportValue": {"Fn::Sub": "${JetsDeployIamStack}-ServiceToken"}}
      ServiceTimeout: 420
      GroupName: JetsStaging
      PolicyName: JetsStagingPolicy
      PolicyProfile: scoped
      ResourcePrefix: shop
      JetsVersion: "5"
      Users: !Ref StagingUsers
      Exclusive: !If [IsStrict, "true", "false"]
  ReadersGroup:
    Type: Custom::JetsDeployGroup
    Condition: HasReaders
    Properties:
      ServiceToken: {"Fn::ImportValue": {"Fn::Sub": "${JetsDeployIamStack}-ServiceToken"}}
      GroupName: !Join ["-", [!Ref "AWS::StackName", readers]]
      GroupPath: !Sub /${AWS::StackName}/
      Users: !Split [",", !Ref ReaderUsers]
      DriftAction: !If [IsStrict, correct, !Ref "AWS::NoValue"]
"""


@functools.cache
def main_stack_template() -> str:
    """template.yaml as CloudFormation holds it after the SAM transform, cut to what moto can
    create: its parameters, conditions and custom resource as they are, the registry table,
    the function (a Lambda function with the same logical id and table variable) and the
    ServiceToken export. As JSON text (read once: CloudFormation takes text)."""
    from cfnlint.decode import cfn_yaml

    source = cfn_yaml.load(str(ROOT / "template.yaml"))
    resources = source["Resources"]
    function = resources["JetsDeployIamFunction"]["Properties"]
    table_variable = function["Environment"]["Variables"]["JETS_REGISTRY_TABLE"]
    return json.dumps({
        "Parameters": source["Parameters"],
        "Conditions": source["Conditions"],
        "Resources": {
            "RegistryTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
                k: v for k, v in resources["RegistryTable"]["Properties"].items()
                if k in ("BillingMode", "AttributeDefinitions", "KeySchema")
            }},
            "JetsDeployIamFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": function["Handler"], "Role": ROLE,
                "Code": {"ZipFile": "def lambda_handler(event, context): pass"},
                "Environment": {"Variables": {"JETS_REGISTRY_TABLE": table_variable}},
            }},
            "JetsDeployGroup": resources["JetsDeployGroup"],
        },
        "Outputs": {"ServiceToken": source["Outputs"]["ServiceToken"]},
    })  # fmt: skip


@dataclass
class MotoCloudFormation:
    """moto's CloudFormation, with what it lacks for custom resources supplied: it invokes the
    ServiceToken's function with a Create, here served by the real controller (registry: the
    function's JETS_REGISTRY_TABLE), and records the physical id the function answered, as
    CloudFormation does (moto would keep a generated name)."""

    iam: IAMClient
    config: ReconcileConfig | None = None
    answers: list[Response] = field(default_factory=list)

    def serve(self, function: Any, body: str) -> None:
        import boto3
        from moto.cloudformation import cloudformation_backends

        from jets_deploy_iam.registry.store import DynamoDBRegistry

        sent = json.loads(body)
        table = function.environment_vars["JETS_REGISTRY_TABLE"]
        registry = DynamoDBRegistry(boto3.client("dynamodb", region_name="us-east-1"), table)
        request = parse_request({**sent, "ResponseURL": "https://example.invalid/r"}, ENV)
        response = Controller(self.iam, registry, self.config).handle(request)
        self.answers.append(response)
        stack = cloudformation_backends[ACCOUNT]["us-east-1"].get_stack(sent["StackId"])
        if response.ok:
            custom = stack.get_custom_resource(sent["LogicalResourceId"])
            custom.resource_name = response.physical_id
            custom.set_data(dict(response.data))
            # No stack.verify_readiness() here: from this thread it can race moto's lazy
            # resource map and build a resource that is still being created a second time (a
            # second Create, another RequestId, at once). ``deploy`` checks from its own thread.

    def deploy(self, name: str, body: dict[str, Any] | str, **parameters: str) -> str:
        """Create the stack and wait for its custom resources' answers; its StackId."""
        import time

        import boto3
        from moto.cloudformation import cloudformation_backends

        cfn = boto3.client("cloudformation", region_name="us-east-1")
        text = body if isinstance(body, str) else json.dumps(body)
        stack_id = cfn.create_stack(
            StackName=name,
            TemplateBody=text,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )["StackId"]
        stack = cloudformation_backends[ACCOUNT]["us-east-1"].get_stack(stack_id)
        deadline = time.monotonic() + 10
        while cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, f"stack {name} not created: {self.answers}"
            time.sleep(0.01)
            stack.verify_readiness()  # every resource is built by now: no second Create
        return str(stack_id)


# -- what the function calls ----------------------------------------------------------------------


class FunctionCalls:
    """Every AWS operation the function's own code made while a Lambda invocation ran
    (``handler.lambda_handler``), whoever drove it: the least-privilege test compares the role
    with this, not with names read from the source."""

    #: the function's package (not the command line's, not the tests')
    PACKAGE = "jets_deploy_iam."

    def __init__(self) -> None:
        self.operations: set[tuple[str, str]] = set()
        self.invocations = 0
        self._lock = threading.Lock()

    def actions(self, service: str) -> set[str]:
        """IAM policy actions, e.g. ``iam:CreateGroup``."""
        return {f"{service}:{op}" for svc, op in self.operations if svc == service}

    def record(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        if self.invocations and self._called_by_the_function():
            with self._lock:
                self.operations.update((service, a) for a in _authorized_as(operation, params))

    def _called_by_the_function(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if str(frame.f_globals.get("__name__", "")).startswith(self.PACKAGE):
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def invoking(self, handler: Callable[..., object]) -> Callable[..., object]:
        def invocation(*args: object, **kwargs: object) -> object:
            with self._lock:
                self.invocations += 1
            try:
                return handler(*args, **kwargs)
            finally:
                with self._lock:
                    self.invocations -= 1

        return invocation


#: A DynamoDB transaction is authorized item by item, as the operation each item performs.
_TRANSACTION_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _authorized_as(operation: str, params: Mapping[str, Any]) -> set[str]:
    """The IAM actions a call needs: its own name, except for DynamoDB's transactions."""
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return {_TRANSACTION_ITEMS[kind] for item in params["TransactItems"] for kind in item}
    return {operation}


# -- hostile sequences ---------------------------------------------------------------------------


def crash() -> None:
    """The Lambda runtime killing the invocation (a ``strict.before_write`` hook, say)."""
    raise SystemExit("the Lambda runtime killed the invocation")


def dies_before(strict: StrictIam, action: str, deliver: Callable[[], object]) -> None:
    """Deliver a request whose invocation the Lambda runtime kills just before its next
    ``action`` reaches IAM: what it wrote before (its write-ahead included) stays, nothing after
    is written, and no answer is sent."""
    strict.before_write(action, crash)
    with pytest.raises(SystemExit):
        deliver()


def owner(registry: Registry, name: str = "Jets") -> ResourceKey | None:
    """The resource whose claim names ``name`` in the registry, if any."""
    claim = registry.load(S1, [name]).claim(name)
    return claim.owner if claim is not None else None


def delete_by_hand(iam: IAMClient, name: str = "Jets") -> None:
    """What an operator does in the console: empty the group, then delete it."""
    group = snapshot(iam, name)
    assert group is not None
    for user in group["members"]:
        iam.remove_user_from_group(GroupName=name, UserName=user)
    for policy_name in group["policies"]:
        iam.delete_group_policy(GroupName=name, PolicyName=policy_name)
    for arn in group["attached"]:
        iam.detach_group_policy(GroupName=name, PolicyArn=arn)
    iam.delete_group(GroupName=name)


def s2_lost_its_group_to_s1(iam: IAMClient, registry: Registry, s2_props: dict[str, Any]) -> Stack:
    """S2 created "Jets"; the group was deleted by hand; S1 then created and claimed a new
    "Jets" (the stale claim taken over). S2's record still answers to "Jets"."""
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert s2.create(s2_props).ok
    delete_by_hand(iam)
    return s2
