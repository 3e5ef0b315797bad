"""Shared fixtures: moto's IAM with the strict layer, and a client built the way the Lambda does."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.client import BaseClient
from moto import mock_aws

from continuation_sim import PREFIX, Cloud, StrictLambda, deploy_function
from helpers import (
    ROLE,
    TABLE,
    FunctionCalls,
    MotoCloudFormation,
    NoSleep,
    Stack,
    controller_sender,
    make_policy,
    make_users,
)
from jets_deploy_iam import continuation, handler
from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.iam.client import make_iam_client
from jets_deploy_iam.registry.store import DynamoDBRegistry, create_table
from jets_deploy_iam_cli.local import context as lambda_context
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from processes import moto_server
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)
for _var in (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_DYNAMODB",
):
    os.environ.pop(_var, None)
os.environ["JETS_REGISTRY_TABLE"] = TABLE


__all__ = ["moto_server"]


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader() -> Iterator[None]:
    """botocore parses its service models (megabytes of JSON) again for every new session, and
    the function, the command line and the tests make a session per client: most of a handler
    test's time. One loader for the run parses each model once (the data is read-only)."""
    from botocore import loaders
    from botocore import session as botocore_session

    shared = loaders.create_loader()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore_session, "create_loader", lambda *_args: shared)
        yield


@pytest.fixture(autouse=True)
def handler_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The handler reads its config from the environment, with the real sleep: there its retry
    backoff, consistency retries and pacing would make tests slow. They wait in virtual time
    instead (the retries still happen), on this clock; the Lambda context's remaining time runs
    on it too, so the handler's deadline counts those waits: a test moves time by sleeping."""
    original = ReconcileConfig.from_env.__func__  # type: ignore[attr-defined]
    clock = VirtualClock()

    def from_env(cls: type[ReconcileConfig], environ: Mapping[str, str] = os.environ) -> object:
        return replace(original(cls, environ), sleep=clock.sleep, clock=clock.now)

    monkeypatch.setattr(ReconcileConfig, "from_env", classmethod(from_env))
    monkeypatch.setattr(lambda_context, "lambda_time", clock.now)
    return clock


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def sleeper() -> NoSleep:
    return NoSleep()


@pytest.fixture
def config(sleeper: NoSleep) -> ReconcileConfig:
    return ReconcileConfig(sleep=sleeper, clock=sleeper.now, consistency_timeout=10.0)


@pytest.fixture
def strict() -> Iterator[StrictIam]:
    layer = StrictIam()
    with mock_aws(), layer.installed():
        yield layer


@pytest.fixture
def iam(strict: StrictIam, config: ReconcileConfig) -> IAMClient:
    return make_iam_client(config)


@pytest.fixture
def registry(strict: StrictIam) -> DynamoDBRegistry:
    """The registry table as the template declares it, in moto's DynamoDB."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, TABLE)
    return DynamoDBRegistry(client, TABLE)


@pytest.fixture
def stack(iam: IAMClient, registry: DynamoDBRegistry, config: ReconcileConfig) -> Stack:
    """CloudFormation driving one resource through the controller (no crhelper, no HTTPS)."""
    return Stack(controller_sender(iam, registry, config))


def seed_users(client: IAMClient, *names: str) -> None:
    for name in names:
        client.create_user(UserName=name)


@pytest.fixture
def receiver(registry: DynamoDBRegistry) -> Iterator[ResponseReceiver]:
    """The local HTTPS endpoint standing in for CloudFormation's presigned S3 URL."""
    with ResponseReceiver() as r:
        yield r


@pytest.fixture
def world(iam: IAMClient) -> dict[str, str]:
    """Four users and two customer managed policies."""
    make_users(iam, ["alice", "bob", "carol", "dave"])
    return {"p1": make_policy(iam, "p1"), "p2": make_policy(iam, "p2")}


@pytest.fixture
def cloudformation(
    iam: IAMClient, config: ReconcileConfig, monkeypatch: pytest.MonkeyPatch
) -> MotoCloudFormation:
    """moto's CloudFormation whose custom resources are served by the real controller."""
    from moto.awslambda.models import LambdaFunction
    from moto.cloudformation.models import Stack as MotoStack

    cfn = MotoCloudFormation(iam, config)
    monkeypatch.setattr(LambdaFunction, "invoke", lambda fn, body, *_: cfn.serve(fn, body))
    # DescribeStacks: CloudFormation shows a list parameter as "a,b"; moto shows "['a', 'b']".
    monkeypatch.setattr(
        MotoStack,
        "parameter_list",
        property(
            lambda stack: [
                {"ParameterKey": k, "ParameterValue": ",".join(v) if isinstance(v, list) else v}
                for k, v in stack.resource_map.resolved_parameters.items()
            ]
        ),
    )
    iam.create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument="{}")
    return cfn


# -- what the function calls, recorded across the suite ----------------------------------------


@pytest.fixture(scope="session", autouse=True)
def function_calls() -> Iterator[FunctionCalls]:
    """Installed for the whole session (botocore's one call entry, and the Lambda entry point)."""
    from jets_deploy_iam import handler

    calls = FunctionCalls()
    make_api_call = BaseClient._make_api_call

    def recorded(client: BaseClient, operation: str, params: Mapping[str, Any]) -> object:
        calls.record(client.meta.service_model.signing_name, operation, params)
        return make_api_call(client, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recorded)
        patch.setattr(handler, "lambda_handler", calls.invoking(handler.lambda_handler))
        yield calls


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` run after the others (they read what the suite recorded)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture
def cloud(
    strict: StrictIam,
    receiver: ResponseReceiver,
    handler_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cloud]:
    """The deployed function: polling configured (its rule prefix), a 60 s timeout with the
    margins scaled to it (10 s; the undo's 5 s), wall-clock time virtual."""
    monkeypatch.setenv("JETS_POLL_RULE_PREFIX", PREFIX)
    monkeypatch.setenv("JETS_DEADLINE_MARGIN", "10")
    monkeypatch.setenv("JETS_UNDO_MARGIN", "5")
    monkeypatch.setenv("SSL_CERT_FILE", str(receiver.cafile))
    monkeypatch.setattr(continuation, "now", handler_clock.now)
    handler._clients.cache_clear()
    deploy_function()
    handler.protocol.polling_clients.clear()
    handler.protocol.polling_clients["lambda"] = StrictLambda(boto3.client("lambda"))
    yield Cloud(receiver, handler_clock)
    handler.protocol.polling_clients.clear()
