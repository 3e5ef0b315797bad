"""The embedded AWS (moto, in process): IAM and the registry table, no account, no network.

moto is an optional dependency (``jets-deploy-iam[local]``); only the command line and the tests
import this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

from jets_deploy_iam.registry.store import TABLE_VARIABLE, DynamoDBRegistry, create_table
from jets_deploy_iam_cli.aws import environment

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

REGISTRY_TABLE = "jets-deploy-iam-registry"
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    TABLE_VARIABLE: REGISTRY_TABLE,
    # No profile file can name credentials or an endpoint_url (botocore reads both).
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
}
#: Anything else that could send a request elsewhere than the emulator (and every
#: AWS_ENDPOINT_URL_<SERVICE> variable, found when entering).
_ISOLATE = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")


@contextlib.contextmanager
def fake_credentials() -> Iterator[None]:
    """No real credentials or endpoints can be picked up while emulating."""
    isolate = {*_ISOLATE, *(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL"))}
    with environment({**_FAKE_ENV, **dict.fromkeys(isolate)}):
        yield


@dataclass(frozen=True)
class EmbeddedAws:
    iam: IAMClient
    registry: DynamoDBRegistry


@contextlib.contextmanager
def embedded_aws(seed_users: Iterable[str] = ()) -> Iterator[EmbeddedAws]:
    """moto's IAM (AWS managed policies loaded, so AWS_ConfigRole can be attached) and DynamoDB
    with the registry table, as the SAM template creates it."""
    from moto import mock_aws

    with fake_credentials(), mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        iam = boto3.client("iam", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, REGISTRY_TABLE)
        for user in seed_users:
            iam.create_user(UserName=user)
        yield EmbeddedAws(iam, DynamoDBRegistry(dynamodb, REGISTRY_TABLE))
