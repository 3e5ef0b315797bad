"""The embedded IAM emulator (moto, in process): no AWS account, no network.

moto is a development dependency; only the CLI and tests import this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def fake_credentials() -> Iterator[None]:
    """Make sure no real credentials or endpoints can be picked up while emulating."""
    saved = {k: os.environ.get(k) for k in [*_FAKE_ENV, "AWS_PROFILE", "AWS_ENDPOINT_URL_IAM"]}
    os.environ.update(_FAKE_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL_IAM", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def embedded_iam(seed_users: Iterable[str] = ()) -> Iterator[IAMClient]:
    """moto's IAM with AWS managed policies loaded (so AWS_ConfigRole can be attached)."""
    from moto import mock_aws

    with fake_credentials(), mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        client = boto3.client("iam", region_name="us-east-1")
        for user in seed_users:
            client.create_user(UserName=user)
        yield client
