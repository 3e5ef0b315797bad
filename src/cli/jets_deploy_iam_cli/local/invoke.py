"""Run the real Lambda handler in this process: a CloudFormation request (capturing what it PUTs
to CloudFormation), or the drift check's scheduled input (returning the run's summary)."""

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
    from jets_deploy_iam import handler

    handler._clients.cache_clear()  # clients for whatever endpoints are configured now
    os.environ["SSL_CERT_FILE"] = str(receiver.cafile)
    request_id = str(event.get("RequestId", "local"))
    request = {**event, "ResponseURL": receiver.url(request_id)}
    context = cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout_seconds))
    handler.lambda_handler(request, context)
    response = receiver.take(request_id if "RequestId" in event else None, 10)
    response.pop("_path", None)
    return response


def invoke_scheduled(event: Mapping[str, Any], timeout_seconds: float = 300.0) -> dict[str, Any]:
    """Send the drift check's input (as EventBridge would) through ``lambda_handler`` and return
    the summary it returns; ``{}`` if the handler dropped the event."""
    from jets_deploy_iam import handler

    handler._clients.cache_clear()
    context = cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout_seconds))
    return handler.lambda_handler(dict(event), context) or {}
