"""Run the real Lambda handler in this process: a CloudFormation request (capturing what it PUTs
to CloudFormation), or the drift check's scheduled input (returning the run's summary).

The handler logs JSON lines to stdout, as Lambda wants; here stdout carries the command's result
(``invoke ... | jq``), so its log lines go to stderr for the duration of the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from jets_deploy_iam_cli.local.context import FUNCTION_ARN, FakeLambdaContext
from jets_deploy_iam_cli.local.receiver import ResponseReceiver

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

#: The loggers whose handlers the function configures (handler.py).
_FUNCTION_LOGGERS = ("crhelper", "jets_deploy_iam")


def invoke(
    event: Mapping[str, Any], receiver: ResponseReceiver, timeout_seconds: float = 300.0
) -> dict[str, Any]:
    """Send ``event`` through ``lambda_handler`` and return the response CloudFormation gets."""
    from jets_deploy_iam import handler

    handler._clients.cache_clear()  # clients for whatever endpoints are configured now
    os.environ["SSL_CERT_FILE"] = str(receiver.cafile)
    request_id = str(event.get("RequestId", "local"))
    request = {**event, "ResponseURL": receiver.url(request_id)}
    context = FakeLambdaContext(
        timeout_seconds=timeout_seconds, invoked_function_arn=_function_arn(event)
    )
    with logs_to_stderr(handler.logger.name):
        handler.lambda_handler(request, cast("LambdaContext", context))
    response = receiver.take(request_id if "RequestId" in event else None, 10)
    response.pop("_path", None)
    return response


def invoke_scheduled(event: Mapping[str, Any], timeout_seconds: float = 300.0) -> dict[str, Any]:
    """Send the drift check's input (as EventBridge would) through ``lambda_handler`` and return
    the summary it returns; ``{}`` if the handler dropped the event."""
    from jets_deploy_iam import handler

    handler._clients.cache_clear()
    context = cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout_seconds))
    with logs_to_stderr(handler.logger.name):
        return handler.lambda_handler(dict(event), context) or {}


def _function_arn(event: Mapping[str, Any]) -> str:
    """The function CloudFormation would invoke: the event's ServiceToken, if it names one."""
    token = event.get("ServiceToken")
    if isinstance(token, str) and token.startswith("arn:") and ":lambda:" in token:
        return token
    return FUNCTION_ARN


@contextlib.contextmanager
def logs_to_stderr(service_logger: str) -> Iterator[None]:
    """Point the function's stdout log handlers at stderr for the block."""
    moved: dict[logging.StreamHandler[Any], Any] = {}
    for name in (service_logger, *_FUNCTION_LOGGERS):
        for log_handler in logging.getLogger(name).handlers:
            if (
                isinstance(log_handler, logging.StreamHandler)
                and log_handler.stream in (sys.stdout, sys.__stdout__)
                and log_handler not in moved
            ):
                moved[log_handler] = log_handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for log_handler, stream in moved.items():
            log_handler.setStream(stream)
