"""Run the real Lambda handler in this process and capture what it PUTs to CloudFormation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from jets_deploy_iam_cli.local.context import FakeLambdaContext
from jets_deploy_iam_cli.local.receiver import ResponseReceiver

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def invoke(
    event: Mapping[str, Any], receiver: ResponseReceiver, timeout_seconds: float = 300.0
) -> dict[str, Any]:
    """Send ``event`` through ``lambda_handler`` and return the response CloudFormation gets."""
    from jets_deploy_iam.handler import lambda_handler

    os.environ["SSL_CERT_FILE"] = str(receiver.cafile)
    request = {**event, "ResponseURL": receiver.url(str(event.get("RequestId", "local")))}
    context = cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout_seconds))
    lambda_handler(request, context)
    response = receiver.take(str(request["RequestId"]) if "RequestId" in request else None, 10)
    response.pop("_path", None)
    return response
