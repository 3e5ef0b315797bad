"""The CloudFormation edge: crhelper speaks the custom-resource protocol, Powertools logs.

This module maps the three request types onto the reconciler and turns every failure into a
FAILED response whose Reason a person can act on. It holds no business rules of its own.

Physical id rules (the contract's lifecycle section):
* a Create reports the group name only once the group exists, so CloudFormation's rollback Delete
  cleans up what a failed Create made; until then the id is a placeholder that is not a valid
  group name, so that rollback Delete never touches a group this resource did not create;
* an Update answers with the (possibly new) group name; on failure CloudFormation keeps the old;
* a Delete acts on the physical id only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from botocore.exceptions import ClientError
from crhelper import CfnResource

from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import JetsDeployIamError, ResponseTooLargeError
from jets_deploy_iam.iam.client import error_code, error_message, make_iam_client
from jets_deploy_iam.plan import Change, CreateGroup, Plan, UpdateGroup
from jets_deploy_iam.reconcile import Outcome, Reconciler
from jets_deploy_iam.spec import Environment, parse_previous, parse_properties

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_iam import IAMClient

MAX_REASON = 256
MAX_RESPONSE_BYTES = 4096
PLACEHOLDER_PREFIX = "no-group:"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jets-deploy-iam"))


def _make_helper() -> CfnResource:
    """crhelper configured for us: INFO (its DEBUG logs the event), no 120 s sleep on Delete.

    Its constructor also builds Lambda, EventBridge and CloudWatch Logs clients for its polling
    mode, which this function never uses: about 110 ms of every cold start. It skips them when
    it believes it runs under ``sam local``, so the variable is set for the constructor only.
    """
    saved = os.environ.get("AWS_SAM_LOCAL")
    os.environ["AWS_SAM_LOCAL"] = "true"
    try:
        return CfnResource(
            json_logging=False, log_level="INFO", boto_level="ERROR", sleep_on_delete=0
        )
    finally:
        if saved is None:
            del os.environ["AWS_SAM_LOCAL"]
        else:
            os.environ["AWS_SAM_LOCAL"] = saved


helper = _make_helper()

_SIGNED_QUERY = re.compile(r"(https://[^\s'\"?]+)\?[^\s'\"]*")


class _RedactPresignedUrls(logging.Filter):
    """Defence in depth: a presigned ResponseURL is a write credential and is never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "https://" in message:
            record.msg = _SIGNED_QUERY.sub(r"\1?<redacted>", message)
            record.args = None
        return True


def _configure_logging() -> None:
    """One JSON line per record: crhelper logs through Powertools, never below INFO (its DEBUG
    lines print the whole event), nothing also goes to the runtime's root handler."""
    logging.getLogger(logger.name).propagate = False
    level = max(logging.INFO, int(logger.log_level))
    copy_config_to_registered_loggers(source_logger=logger, include={"crhelper"}, log_level=level)
    redact = _RedactPresignedUrls()
    for handler in logger.handlers:
        handler.addFilter(redact)
    for name in ("crhelper.resource_helper", "crhelper.utils"):
        logging.getLogger(name).addFilter(redact)


_configure_logging()


@functools.cache
def _iam_client() -> IAMClient:
    """One client per warm container (honours AWS_ENDPOINT_URL_IAM)."""
    return make_iam_client(ReconcileConfig.from_env())


class _Request:
    """One CloudFormation request: its deadline, its counters, its Reconciler."""

    def __init__(self, event: Mapping[str, Any], context: LambdaContext) -> None:
        self.event = event
        self.config = ReconcileConfig.from_env()
        self.env = Environment.from_function_arn(context.invoked_function_arn)
        remaining = context.get_remaining_time_in_millis() / 1000
        self.deadline = Deadline.after(remaining - self.config.deadline_margin)
        self.started = time.monotonic()
        self.plan = Plan()
        self.applied = 0
        self.reconciler = Reconciler(
            _iam_client(), self.config, self.deadline, self._on_applied, self._on_plan
        )

    def _on_plan(self, plan: Plan) -> None:
        self.plan = plan
        logger.info(
            "plan",
            extra={"changes": [str(c) for c in plan.changes[:100]], "change_count": len(plan)},
        )

    def _on_applied(self, change: Change) -> None:
        self.applied += 1
        if isinstance(change, CreateGroup):
            helper.PhysicalResourceId = change.group  # rollback Delete must clean it up
        if isinstance(change, UpdateGroup) and change.new_name:
            helper.PhysicalResourceId = change.new_name
        logger.info(
            "change applied",
            extra={
                "change": str(change),
                "change_type": type(change).__name__,
                "group": change.group,
            },
        )


def _summary(
    event: Mapping[str, Any],
    request: _Request | None,
    status: str,
    physical_id: str,
    reason: str = "",
) -> None:
    """The one line per request an operator searches for."""
    logger.info(
        "request finished",
        extra={
            "request_type": event.get("RequestType"),
            "logical_id": event.get("LogicalResourceId"),
            "status": status,
            "physical_id": physical_id,
            "changes_planned": len(request.plan) if request else 0,
            "changes_applied": request.applied if request else 0,
            "duration_ms": round((time.monotonic() - request.started) * 1000) if request else 0,
            **({"reason": reason} if reason else {}),
        },
    )


def _reason(error: BaseException) -> str:
    """A Reason within CloudFormation's 256 characters that keeps the start (the cause)."""
    if isinstance(error, JetsDeployIamError):
        text = str(error)
    elif isinstance(error, ClientError):
        operation = getattr(error, "operation_name", "a call")
        text = f"IAM refused {operation}: {error_code(error)}: {error_message(error)}"
    else:
        text = f"unexpected error {type(error).__name__}: {error} (see the function's log)"
    if len(text) <= MAX_REASON:
        return text
    return text[: MAX_REASON - 5].rstrip() + " (…)"


def _handle(
    event: Mapping[str, Any], context: LambdaContext, action: Callable[[_Request], str]
) -> str:
    """Run one request; a failure becomes crhelper's Status FAILED with our own Reason.

    Failing by setting Status/Reason rather than raising through crhelper keeps the physical id
    the one chosen here and logs an expected failure once, as a warning, instead of crhelper's
    ERROR with a traceback.
    """
    if event.get("RequestType") == "Create":
        # Until the group exists, a Create owns no group: never let crhelper invent an id.
        helper.PhysicalResourceId = PLACEHOLDER_PREFIX + str(event.get("RequestId", ""))
    request: _Request | None = None
    try:
        request = _Request(event, context)
        physical_id = action(request)
    except Exception as error:
        reason = _reason(error)
        if isinstance(error, JetsDeployIamError):
            logger.warning("request failed", extra={"reason": reason})
        else:
            logger.exception("request failed unexpectedly")
        physical_id = str(
            helper.PhysicalResourceId  # Create: the placeholder, or the group once it exists
            if event.get("RequestType") == "Create"
            else event.get("PhysicalResourceId", "")  # CloudFormation keeps the old one
        )
        helper.Status, helper.Reason, helper.Data = "FAILED", reason, {}
        _summary(event, request, "FAILED", physical_id, reason)
        return physical_id
    _summary(event, request, "SUCCESS", physical_id)
    return physical_id


def _publish(outcome: Outcome) -> str:
    helper.Data.update(outcome.info.as_data())
    _check_response_size(outcome.info.group_name)
    return outcome.info.group_name


def _check_response_size(physical_id: str) -> None:
    body = {
        "Status": "SUCCESS",
        "PhysicalResourceId": physical_id,
        "StackId": helper.StackId,
        "RequestId": helper.RequestId,
        "LogicalResourceId": helper.LogicalResourceId,
        "Reason": "",
        "Data": helper.Data,
        "NoEcho": False,
    }
    size = len(json.dumps(body))
    if size > MAX_RESPONSE_BYTES:
        helper.Data = {"GroupName": physical_id}
        raise ResponseTooLargeError(f"response would be {size} bytes, over CloudFormation's 4,096")


def _create(request: _Request) -> str:
    declared = parse_properties(request.event.get("ResourceProperties", {}), request.env)
    return _publish(request.reconciler.create(declared))


def _update(request: _Request) -> str:
    event = request.event
    declared = parse_properties(event.get("ResourceProperties", {}), request.env)
    previous = parse_previous(event.get("OldResourceProperties"), request.env)
    return _publish(request.reconciler.update(declared, previous, str(event["PhysicalResourceId"])))


def _delete(request: _Request) -> str:
    physical_id = str(request.event["PhysicalResourceId"])
    request.reconciler.delete(physical_id)
    return physical_id


@helper.create
def create(event: dict[str, Any], context: LambdaContext) -> str:
    return _handle(event, context, _create)


@helper.update
def update(event: dict[str, Any], context: LambdaContext) -> str:
    return _handle(event, context, _update)


@helper.delete
def delete(event: dict[str, Any], context: LambdaContext) -> str:
    return _handle(event, context, _delete)


@logger.inject_lambda_context(correlation_id_path="RequestId", log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """The Lambda entry point: crhelper answers CloudFormation exactly once."""
    helper(event, context)
