"""The one place that builds an IAM client and classifies its errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.iam.callpath import CallPath

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def make_iam_client(
    config: ReconcileConfig | None = None,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
) -> IAMClient:
    """A client whose every call takes the call path (``callpath.py``: deadline, pacing,
    retries), with botocore's own retries off and a pool big enough for the workers.

    ``AWS_ENDPOINT_URL_IAM`` is honoured by botocore itself, which is how tests point the
    Lambda at a local emulator without code changes.
    """
    config = config or ReconcileConfig()
    connect_timeout, read_timeout = config.call_timeouts()
    botocore_config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},  # the call path retries
        max_pool_connections=max(10, config.max_in_flight * 2),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    session = session or boto3.session.Session()
    client = session.client("iam", config=botocore_config, endpoint_url=endpoint_url)
    CallPath.install(client, config)
    return client


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", str(error)))


def is_code(error: BaseException, *codes: str) -> bool:
    return isinstance(error, ClientError) and error_code(error) in codes
