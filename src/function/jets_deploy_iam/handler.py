"""The Lambda entry point: a thin adapter from events to the controller.

Two kinds of event arrive. The drift check's input (exactly what template.yaml's rules send, see
``enforce.parse_trigger``) is routed first: it is no CloudFormation request, and crhelper must
never see it. Anything else is parsed once into a ``Request`` (dropping what cannot be answered
safely), and crhelper speaks the protocol through ``protocol.CfnProtocol``. Logs go through
Powertools: one ``plan`` line, one ``change applied`` line per IAM write, one ``request
finished`` summary, correlated by the CloudFormation RequestId (a drift check's by the Lambda
request id). The lifecycle rules live in ``reconcile``, the drift check in ``enforce``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from botocore.config import Config

from jets_deploy_iam import continuation, enforce, redact
from jets_deploy_iam.changes import Change, Plan
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import ConfigurationError, JetsDeployIamError, MalformedEventError
from jets_deploy_iam.iam.client import make_iam_client
from jets_deploy_iam.protocol import CfnProtocol, Invocation
from jets_deploy_iam.reconcile import Controller, Hooks
from jets_deploy_iam.registry.store import TABLE_VARIABLE, DynamoDBRegistry, Registry
from jets_deploy_iam.request import Request, parse_request
from jets_deploy_iam.response import Response
from jets_deploy_iam.spec import Environment

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_iam import IAMClient

REGISTRY_TABLE_VARIABLE = TABLE_VARIABLE

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jets-deploy-iam"))


def _configure_logging() -> None:
    """One JSON line per record: crhelper's and our modules' loggers go through Powertools,
    never below INFO (crhelper's DEBUG lines print the whole event), nothing also goes to the
    runtime's root handler, and no presigned URL survives into any line."""
    logging.getLogger(logger.name).propagate = False
    level = max(logging.INFO, int(logger.log_level))
    copy_config_to_registered_loggers(
        source_logger=logger, include={"crhelper", "jets_deploy_iam"}, log_level=level
    )
    for name in ("crhelper", "jets_deploy_iam"):
        logging.getLogger(name).propagate = False
    redact.install(
        logging.getLogger(logger.name),
        logging.getLogger("crhelper"),
        logging.getLogger("jets_deploy_iam"),
    )


_configure_logging()
protocol = CfnProtocol()


@functools.cache
def _clients() -> tuple[IAMClient, Registry]:
    """One IAM client and one registry per warm container (endpoints come from the
    environment, e.g. AWS_ENDPOINT_URL_IAM / AWS_ENDPOINT_URL_DYNAMODB for emulators)."""
    table = os.environ.get(REGISTRY_TABLE_VARIABLE, "")
    if not table:
        raise ConfigurationError(
            f"{REGISTRY_TABLE_VARIABLE} is not set: the function needs its registry table "
            "(template.yaml sets it)"
        )
    dynamodb = boto3.session.Session().client(
        "dynamodb",
        config=Config(
            connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 3}
        ),
    )
    return make_iam_client(ReconcileConfig.from_env()), DynamoDBRegistry(dynamodb, table)


@dataclass
class _Tally:
    """What one request did, for its summary line."""

    started: float = field(default_factory=time.monotonic)
    planned: int = 0
    applied: int = 0


def _run(invocation: Invocation) -> Response:
    """Serve the request; every failure, even of the function's own setup, is an answer."""
    request = invocation.request
    tally = _Tally()
    try:
        config = ReconcileConfig.from_env()
        iam, registry = _clients()
    except JetsDeployIamError as error:
        response = Response.failed(invocation.physical_id, error)
    else:
        gate = invocation.gate(registry, config)  # the request's time: Lambda's, ServiceTimeout's
        controller = Controller(
            iam,
            registry,
            config,
            gate.deadline(config.deadline_margin),
            gate.deadline(config.undo_reserve()),
            gate.watched(_hooks(invocation, tally)),
            gate.continuing(),
        )
        response = gate.run(controller.load, controller.handle, invocation.physical_id)
    if not response.pending:
        response = response.within_limits(
            request.key.stack_id, request.request_id, request.key.logical_id
        )
    _summary(request, response, tally)
    return response


def _hooks(invocation: Invocation, tally: _Tally) -> Hooks:
    def on_plan(plan: Plan) -> None:
        tally.planned += len(plan)
        logger.info("plan", extra={"changes": plan.lines(), "change_count": len(plan)})

    def on_applied(change: Change) -> None:
        tally.applied += 1
        logger.info("change applied", extra=change.log_fields())

    def on_physical_id(physical_id: str) -> None:
        invocation.physical_id = physical_id

    return Hooks(on_plan, on_applied, on_physical_id)


def _summary(request: Request, response: Response, tally: _Tally) -> None:
    """The one line per request an operator searches for."""
    logger.info(
        "request finished",
        extra={
            "request_type": request.kind,
            "logical_id": request.key.logical_id,
            "stack_id": request.key.stack_id,
            "status": response.status,
            "physical_id": response.physical_id,
            "changes_planned": tally.planned,
            "changes_applied": tally.applied,
            "duration_ms": round((time.monotonic() - tally.started) * 1000),
            **({"reason": response.reason} if response.reason else {}),
        },
    )


def _drop(event: Any, error: MalformedEventError) -> None:
    fields = sorted(str(k) for k in event) if isinstance(event, Mapping) else []
    logger.error(
        "event dropped: it cannot be answered", extra={"reason": str(error), "fields": fields}
    )


def _enforce(trigger: enforce.Trigger, context: LambdaContext, env: Environment) -> dict[str, Any]:
    """The drift check: every registered resource the trigger covers, within the deadline."""
    logger.set_correlation_id(context.aws_request_id)
    reporter = enforce.CloudWatchReporter()
    try:
        config = ReconcileConfig.from_env()
        iam, registry = _clients()
    except JetsDeployIamError as error:  # the function's own setup: still counted and alarmed
        logger.error("drift check failed", extra={"reason": str(error)})
        summary = enforce.Summary(scope=trigger.scope, failed=1, complete=False)
        reporter.finished(summary)
        return summary.as_data()
    remaining = context.get_remaining_time_in_millis() / 1000
    deadline = Deadline.after(remaining - config.deadline_margin, config.clock)
    summary = enforce.run(iam, registry, env, trigger, reporter, config, deadline)
    return summary.as_data()


@logger.inject_lambda_context(correlation_id_path="RequestId", log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    """CloudFormation's request in; exactly one answer out (or none, for an unanswerable event).
    The drift check's input in; its summary out (for whoever invoked it synchronously)."""
    env = Environment.from_function_arn(context.invoked_function_arn)
    if continuation.is_pointer(event) and "ResponseURL" not in event:
        # crhelper's rule points to its request, which the registry keeps
        try:
            expanded = continuation.expand(_clients()[1], event)
        except JetsDeployIamError:
            logger.error("the registry cannot be read: the rule fires again", exc_info=True)
            return None
        if expanded is None:
            logger.info("polling event of a request with nothing to go on with: its rule goes")
            protocol.retire(event, context)
            return None
        event = expanded
    try:
        trigger = enforce.parse_trigger(event)
    except MalformedEventError as error:
        _drop(event, error)
        return None
    if trigger is not None:
        return _enforce(trigger, context, env)
    try:
        request = parse_request(event, env)
    except MalformedEventError as error:
        _drop(event, error)
        return None
    placeholder = request.placeholder if request.kind == "Create" else str(request.physical_id)
    protocol.serve(Invocation(request, context, _run, physical_id=placeholder), event)
    return None
