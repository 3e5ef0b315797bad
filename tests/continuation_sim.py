"""CloudFormation, EventBridge and Lambda around the real handler, in virtual time.

``Cloud`` sends CloudFormation's request to ``handler.lambda_handler`` with a Lambda context whose
remaining time runs on a ``VirtualClock`` (the function's timeout is whatever the test says, e.g.
60 s), then plays EventBridge: while the request is unanswered and its polling rule exists (in
moto's EventBridge, made by the function itself), the clock moves to the rule's next firing
(``rate(1 minute)`` from when it was made) and the handler is invoked with exactly the rule
target's ``Input``. The answers arrive at the local HTTPS receiver, as CloudFormation's would.

Invocations run one after another: a firing that in reality comes while an invocation still
works (and finds the lease held) is played by the tests that need it, on purpose.
"""

from __future__ import annotations

import io
import json
import math
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.exceptions import ClientError

from jets_deploy_iam import handler
from jets_deploy_iam.protocol import POLLING_INTERVAL_MINUTES, rule_name
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam_cli.local.context import FUNCTION_ARN
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

PREFIX = "jdi-0b1c2d3e-"
FUNCTION = "jets-deploy-iam"
INTERVAL = 60.0 * POLLING_INTERVAL_MINUTES


@dataclass
class VirtualContext:
    """A LambdaContext whose remaining time runs on the virtual clock."""

    clock: VirtualClock
    timeout_seconds: float
    function_name: str = FUNCTION
    invoked_function_arn: str = FUNCTION_ARN
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/jets-deploy-iam"
    log_stream_name: str = "local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock.now()

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_seconds - (self.clock.now() - self.started)
        return max(0, int(left * 1000))


class StrictLambda:
    """moto's Lambda, with the real service's answer to a statement id that exists already."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def add_permission(self, **kwargs: Any) -> Any:
        try:
            policy = json.loads(
                self._client.get_policy(FunctionName=kwargs["FunctionName"])["Policy"]
            )
        except ClientError:
            policy = {"Statement": []}
        if any(s["Sid"] == kwargs["StatementId"] for s in policy["Statement"]):
            error = {"Error": {"Code": "ResourceConflictException", "Message": "exists"}}
            raise ClientError(error, "AddPermission")  # type: ignore[arg-type]
        return self._client.add_permission(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def deploy_function() -> None:
    """The function in moto's Lambda (AddPermission needs it to exist)."""
    role = boto3.client("iam").create_role(
        RoleName="jets-deploy-iam-role", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context): pass\n")
    boto3.client("lambda").create_function(
        FunctionName=FUNCTION,
        Runtime="python3.13",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )


@dataclass
class Invoked:
    """One invocation: what it was given and whether it answered."""

    event: dict[str, Any]
    at: float
    answered: bool


@dataclass
class Cloud:
    """Drives one request through the handler and crhelper's polling rule, in virtual time."""

    receiver: ResponseReceiver
    clock: VirtualClock
    timeout: float = 60.0
    invocations: list[Invoked] = field(default_factory=list)
    #: when each request's rule was made (its firings follow every interval from then)
    made_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = boto3.client("events")
        self.lam = boto3.client("lambda")

    # -- one invocation ----------------------------------------------------------------------

    def invoke(self, event: Mapping[str, Any]) -> bool:
        """Invoke the handler once; True if it answered CloudFormation."""
        before = self.receiver.pending
        started = self.clock.now()
        context = VirtualContext(self.clock, self.timeout)
        handler.lambda_handler(dict(event), cast("LambdaContext", context))
        answered = self.receiver.pending > before
        self.invocations.append(Invoked(dict(event), started, answered))
        rule = self.rule_of(event)
        if rule is not None and rule not in self.made_at and self.rule_exists(rule):
            self.made_at[rule] = self.clock.now()
        return answered

    def send(self, event: Mapping[str, Any]) -> bool:
        """CloudFormation's request (the receiver's URL as its ResponseURL)."""
        request_id = str(event["RequestId"])
        return self.invoke({**event, "ResponseURL": self.receiver.url(request_id)})

    # -- EventBridge -------------------------------------------------------------------------

    @staticmethod
    def rule_of(event: Mapping[str, Any]) -> str | None:
        if "RequestId" not in event:
            return None
        key = ResourceKey(str(event["StackId"]), str(event["LogicalResourceId"]))
        return rule_name(PREFIX, key, str(event["RequestId"]))

    def rule_exists(self, rule: str) -> bool:
        return any(r["Name"] == rule for r in self.events.list_rules(NamePrefix=rule)["Rules"])

    def rules(self) -> list[str]:
        return [r["Name"] for r in self.events.list_rules(NamePrefix=PREFIX)["Rules"]]

    def target_input(self, rule: str) -> dict[str, Any]:
        """Exactly what the rule delivers."""
        targets = self.events.list_targets_by_rule(Rule=rule)["Targets"]
        assert len(targets) == 1, targets
        assert targets[0]["Arn"] == FUNCTION_ARN
        return cast("dict[str, Any]", json.loads(targets[0]["Input"]))

    def permissions(self) -> list[dict[str, Any]]:
        try:
            policy = self.lam.get_policy(FunctionName=FUNCTION)["Policy"]
        except ClientError:
            return []
        return cast("list[dict[str, Any]]", json.loads(policy)["Statement"])

    def next_firing(self, rule: str) -> float:
        made = self.made_at[rule]
        periods = max(1, math.floor((self.clock.now() - made) / INTERVAL) + 1)
        return made + periods * INTERVAL

    def fire(self, rule: str) -> bool:
        """Move the clock to the rule's next firing and deliver its Input."""
        at = self.next_firing(rule)
        self.clock.sleep(at - self.clock.now())
        return self.invoke(self.target_input(rule))

    def until_answered(self, event: Mapping[str, Any], most: int = 50) -> dict[str, Any]:
        """Send the request, then let the rule fire until it is answered; the answer."""
        request_id = str(event["RequestId"])
        answered = self.send(event)
        rule = self.rule_of(event)
        while not answered:
            assert rule is not None
            assert self.rule_exists(rule), "no answer and no rule"
            assert len(self.invocations) < most, "still not answered"
            answered = self.fire(rule)
        return self.receiver.take(request_id, 1)


class RefusingTargets:
    """EventBridge refusing the rule's target (e.g. a role without events:PutTargets)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_targets(self, **_kwargs: Any) -> Any:
        error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
        raise ClientError(error, "PutTargets")  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
