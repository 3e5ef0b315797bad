"""crhelper speaks the custom-resource protocol; this module guards the three places it is wrong.

1. Its timer answers FAILED with an empty physical id half a second before Lambda's timeout
   (CloudFormation rejects that id). Ours answers with the id the request holds at that moment,
   and only if nothing answered yet. The controller's deadline margin means it should never fire.
2. Its response PUT has no timeout, retries forever and logs the signed URL on failure. Ours
   bounds every attempt and the whole by the remaining Lambda time, gives up on a 4xx (a presigned
   URL that is refused will stay refused), and logs no URL.
3. It keeps each request's fields on one global object, so an event without a ResponseURL would be
   answered to the previous request's URL. The handler drops such events before crhelper sees
   them (``request.parse_request``), and each invocation's own state lives in an ``Invocation``.

Our own values never live on crhelper's object: the controller returns a ``Response``, which is
copied onto crhelper's fields in exactly one place, ``_wrap_function``.

crhelper's polling mode (``continuation.py`` says when work goes on in a later invocation) is
used through its own hooks, with four corrections:

* crhelper sets polling up on every first invocation once poll functions exist (every request
  would wait a polling interval for its answer); here only a request whose work goes on gets a
  rule (``arrange``, called by the controller), and an invocation answers unless its response is
  ``IN_PROGRESS``;
* crhelper builds Lambda, EventBridge and Logs clients in its constructor (~110 ms of every cold
  start); here the Lambda and EventBridge clients are built the first time a rule is made or
  removed, which a request that finishes in one invocation never does;
* the rule is named ``<JETS_POLL_RULE_PREFIX><hash of stack, resource, request>``, so the
  function's role may manage exactly the rules of that prefix (template.yaml), and so that making
  and removing it are idempotent: any invocation can remove the rule of any request by its id
  (a late firing after the answer, a superseded request's);
* the rule's target carries a pointer to the request, not the request (EventBridge's Input holds
  8,192 characters; a request naming thousands of users does not fit, and the presigned
  ResponseURL is not copied into the rule): the registry keeps the request
  (``continuation.expand``).

The rule fires every minute (``POLLING_INTERVAL_MINUTES``, crhelper's minimum): an invocation
works for up to fifteen, so a longer interval would only leave the work idle between invocations
(half the interval on average) within CloudFormation's hour, while a firing that comes while an
invocation still works costs one registry read and one conditional write (the lease is held, it
goes away).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPSConnection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from crhelper import CfnResource

from jets_deploy_iam import continuation
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.continuation import Gate, Steps
from jets_deploy_iam.registry.store import Registry
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient

logger = logging.getLogger(__name__)

#: Seconds one PUT attempt may take (S3 answers in well under a second).
ATTEMPT_TIMEOUT = 5.0
#: Lambda time kept back after the last attempt.
SEND_RESERVE = 0.5
#: However late, one attempt gets at least this long.
MIN_ATTEMPT = 0.5
#: The polling rule's rate, in minutes (crhelper's minimum; why: the module's docstring).
POLLING_INTERVAL_MINUTES = 1
#: Where the rule names start (template.yaml sets it; the role may manage only those rules).
#: Unset (the command line, tests, ``sam local``): work never goes on in another invocation.
RULE_PREFIX_VARIABLE = "JETS_POLL_RULE_PREFIX"
#: The polling calls are few and made with time to spare: short timeouts, few retries.
POLLING_CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3}
)


def rule_prefix() -> str | None:
    """The configured rule prefix, or None where polling cannot run (unset, ``sam local``)."""
    if os.environ.get("AWS_SAM_LOCAL"):
        return None
    return os.environ.get(RULE_PREFIX_VARIABLE) or None


def rule_name(prefix: str, key: ResourceKey, request_id: str) -> str:
    """The one rule of one request (EventBridge allows 64 characters: 16 of hash are plenty)."""
    digest = hashlib.sha256(f"{key.stack_id}\n{key.logical_id}\n{request_id}".encode())
    return f"{prefix}{digest.hexdigest()[:16]}"


@dataclass
class Invocation:
    """One CloudFormation request being served: everything that is ours, not crhelper's."""

    request: Request
    context: LambdaContext
    run: Callable[[Invocation], Response]
    #: the physical id a late answer must carry (a Create's placeholder until the group exists)
    physical_id: str = ""
    answered: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: the event as received (crhelper's marks included), and when this invocation started
    event: Mapping[str, Any] = field(default_factory=dict, repr=False)
    started_at: float = field(default_factory=lambda: continuation.now())
    #: makes sure a later invocation continues the request (None: polling is not configured)
    arrange: Callable[[], None] | None = None
    #: what the invocation decided: its response, and the polling rules that must go
    outcome: Response | None = None
    steps: Steps = field(default_factory=Steps)

    def send_deadline(self) -> Deadline:
        remaining = self.context.get_remaining_time_in_millis() / 1000
        return Deadline.after(remaining - SEND_RESERVE)

    def gate(self, registry: Registry, config: ReconcileConfig) -> Gate:
        """The request's continuation gate (reads the registry: the request's budget is known
        from then on)."""
        gate = Gate(
            registry,
            self.request,
            event=self.event,
            holder=str(getattr(self.context, "aws_request_id", "") or id(self)),
            lambda_left=lambda: self.context.get_remaining_time_in_millis() / 1000,
            started_at=self.started_at,
            arrange=self.arrange,
            margin=config.deadline_margin,
            sleep=config.sleep,
        )
        self.steps = gate.steps
        return gate


class CfnProtocol(CfnResource):
    """crhelper, configured and guarded for this function."""

    def __init__(self) -> None:
        # crhelper's defaults are wrong for us: DEBUG logs the event and the presigned URL,
        # sleep_on_delete makes every Delete sleep 120 s. Its constructor also builds Lambda,
        # EventBridge and Logs clients for polling (~110 ms of every cold start); it skips them
        # under ``sam local``, so that switch is set for the constructor only.
        saved = os.environ.get("AWS_SAM_LOCAL")
        os.environ["AWS_SAM_LOCAL"] = "true"
        try:
            super().__init__(
                json_logging=False,
                log_level="INFO",
                boto_level="ERROR",
                polling_interval=POLLING_INTERVAL_MINUTES,
                sleep_on_delete=0,
            )
        finally:
            if saved is None:
                del os.environ["AWS_SAM_LOCAL"]
            else:
                os.environ["AWS_SAM_LOCAL"] = saved
        self._sam_local = saved
        self.invocation: Invocation | None = None
        #: the polling clients, built on first use (a quick request never builds them)
        self.polling_clients: dict[str, Any] = {}

    def serve(self, invocation: Invocation, event: Mapping[str, Any]) -> None:
        """Run one request through crhelper; it answers at most once (not at all while the
        request's work goes on in a later invocation)."""
        invocation.event = event
        if rule_prefix() is not None:
            invocation.arrange = self._arrange
        self.invocation = invocation
        try:
            self(dict(event), invocation.context)
        finally:
            self.invocation = None

    def retire(self, event: Mapping[str, Any], context: LambdaContext) -> None:
        """Remove the rule of a polling event whose request has nothing to go on with."""
        key = ResourceKey(str(event.get("StackId")), str(event.get("LogicalResourceId")))
        self._remove_polling_of(key, str(event.get("RequestId")), context.function_name)

    # -- crhelper's hooks, overridden ---------------------------------------------------------

    def _wrap_function(self, func: object) -> None:  # noqa: ARG002  (we dispatch ourselves)
        invocation = self._current()
        response = invocation.run(invocation)
        invocation.outcome = response
        self.Status, self.Reason = response.status, response.reason
        self.PhysicalResourceId, self.Data = response.physical_id, dict(response.data)

    def _poll_enabled(self) -> bool:
        """crhelper's switch into ``_polling_init``: only when the work goes on, or a rule must
        go (crhelper turns it on for every request once poll functions are registered)."""
        invocation = self.invocation
        if invocation is None or invocation.outcome is None or rule_prefix() is None:
            return False  # (then crhelper answers, and ``_send`` holds back a pending response)
        return invocation.outcome.pending or bool(invocation.steps.retire)

    def _polling_init(self, event: object) -> None:  # noqa: ARG002  (the invocation knows)
        """After the work: remove the rules that must go; answer unless the work goes on (the
        rule was made, if needed, when the controller decided: ``_arrange``)."""
        invocation = self._current()
        for request_id in invocation.steps.retire:
            self._remove_polling_of(
                invocation.request.key, request_id, invocation.context.function_name
            )
        outcome = invocation.outcome
        self._send_response = outcome is not None and not outcome.pending

    def _timeout(self) -> None:
        invocation = self._current()
        logger.error("the function is about to time out: answering FAILED now")
        response = Response(
            "FAILED",
            invocation.physical_id,
            "the function ran out of time; deploy again to finish (every step is idempotent)",
        )
        self._answer(invocation, response)

    def _send(
        self,
        status: str | None = None,
        reason: str = "",
        send_response: object = None,  # noqa: ARG002  (crhelper's unbounded sender, replaced)
    ) -> None:
        invocation = self._current()
        if status:  # crhelper's own failure paths (an exception inside crhelper)
            response = Response("FAILED", invocation.physical_id, reason[:256])
        elif invocation.outcome is not None and invocation.outcome.pending:
            return  # the work goes on: a later invocation answers
        else:
            response = Response(
                "SUCCESS" if self.Status == "SUCCESS" else "FAILED",
                str(self.PhysicalResourceId),
                str(self.Reason),
                dict(self.Data),
            )
        self._answer(invocation, response)

    # -- crhelper's polling, ours ------------------------------------------------------------

    def _arrange(self) -> None:
        """Make sure a later invocation continues the current request (the controller calls it
        once the progress is recorded); a polling event's rule exists already."""
        invocation = self._current()
        if invocation.request.continuation:
            return
        try:
            self._setup_polling()
        except Exception:
            # The request fails now instead: what was made of its polling must not stay behind.
            request = invocation.request
            self._remove_polling_of(
                request.key, request.request_id, invocation.context.function_name
            )
            raise

    def _setup_polling(self) -> None:
        """crhelper's steps (rule, permission, target), each idempotent: the rule's name comes
        from the request, the permission's statement id is the rule's name, the target's id 1."""
        rule_arn = self._put_rule()
        permission = self._add_permission(rule_arn)
        self._put_target(rule_arn, permission)

    def _put_rule(self) -> str:
        invocation = self._current()
        request = invocation.request
        minutes = POLLING_INTERVAL_MINUTES
        answer = self._events_client.put_rule(
            Name=self._rule_name(request.key, request.request_id),
            ScheduleExpression=f"rate({minutes} minute{'' if minutes == 1 else 's'})",
            State="ENABLED",
            Description=f"jets-deploy-iam: continues {request.kind} {request.request_id}"[:512],
        )
        logger.info("polling rule made", extra={"rule": answer["RuleArn"]})
        return answer["RuleArn"]

    def _add_permission(self, rule_arn: str) -> str:
        statement = rule_arn.rsplit("/", 1)[-1]
        try:
            self._lambda_client.add_permission(
                FunctionName=self._current().context.function_name,
                StatementId=statement,
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=rule_arn,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceConflictException":
                raise  # (a conflict: this statement exists already, from an earlier try)
        return statement

    def _put_target(self, rule_arn: str, permission: str) -> None:
        """crhelper's ``_put_targets``, delivering a pointer to the request (see above)."""
        invocation = self._current()
        marks = {"CrHelperRule": rule_arn, "CrHelperPermission": permission}
        answer = self._events_client.put_targets(
            Rule=rule_arn.rsplit("/", 1)[-1],
            Targets=[
                {
                    "Id": "1",
                    "Arn": _unqualified(invocation.context.invoked_function_arn),
                    "Input": json.dumps(continuation.pointer(invocation.event, marks)),
                }
            ],
        )
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"the polling rule's target was refused: {answer['FailedEntries']}")

    def _remove_polling(self) -> None:
        invocation = self._current()
        request = invocation.request
        self._remove_polling_of(request.key, request.request_id, invocation.context.function_name)

    def _remove_polling_of(self, key: ResourceKey, request_id: str, function_name: str) -> None:
        """Remove a request's rule, target and permission; what is gone already is done. A
        failure is logged: the rule fires again, and that invocation tries again."""
        prefix = rule_prefix()
        if prefix is None:
            return  # polling is off here: no rule of ours can exist
        name = rule_name(prefix, key, request_id)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("target", lambda: self._events_client.remove_targets(Rule=name, Ids=["1"])),
            ("permission", lambda: self._lambda_client.remove_permission(
                FunctionName=function_name, StatementId=name)),
            ("rule", lambda: self._events_client.delete_rule(Name=name)),
        ]  # fmt: skip
        for what, step in steps:
            try:
                step()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    continue
                logger.error("polling %s not removed", what, extra={"rule": name}, exc_info=True)
        logger.info("polling rule removed", extra={"rule": name})

    def _rule_name(self, key: ResourceKey, request_id: str) -> str:
        prefix = rule_prefix()
        if prefix is None:
            raise RuntimeError(f"{RULE_PREFIX_VARIABLE} is not set: polling is off")
        return rule_name(prefix, key, request_id)

    @property
    def _events_client(self) -> EventBridgeClient:
        client: EventBridgeClient = self._polling_client("events")
        return client

    @property
    def _lambda_client(self) -> LambdaClient:
        client: LambdaClient = self._polling_client("lambda")
        return client

    def _polling_client(self, service: str) -> Any:
        if service not in self.polling_clients:
            self.polling_clients[service] = boto3.session.Session().client(
                service,
                config=POLLING_CLIENT_CONFIG,  # type: ignore[call-overload]
            )
        return self.polling_clients[service]

    # -- ours --------------------------------------------------------------------------------

    def _current(self) -> Invocation:
        if self.invocation is None:
            raise RuntimeError("crhelper called outside an invocation")
        return self.invocation

    def _answer(self, invocation: Invocation, response: Response) -> None:
        with invocation.lock:
            if invocation.answered:
                return
            invocation.answered = True
        request = invocation.request
        body = response.body(request.key.stack_id, request.request_id, request.key.logical_id)
        put_response(request.response_url, body, invocation.send_deadline())


def _unqualified(function_arn: str) -> str:
    """arn:<p>:lambda:<region>:<account>:function:<name>[:<qualifier>] without the qualifier."""
    return ":".join(function_arn.split(":")[:7])


def put_response(
    url: str,
    body: Mapping[str, Any],
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """PUT ``body`` to the presigned ``url`` until it lands or the deadline comes."""
    parts = urlsplit(url)
    target = urlunsplit(("", "", parts.path, parts.query, ""))
    payload = json.dumps(body).encode()
    headers = {"content-type": "", "content-length": str(len(payload))}
    delay = 0.5
    attempt = 0
    while attempt == 0 or deadline.remaining() > 0:  # however late, one attempt
        attempt += 1
        timeout = max(MIN_ATTEMPT, min(ATTEMPT_TIMEOUT, deadline.remaining()))
        try:
            status = _put(str(parts.netloc), target, payload, headers, timeout)
        except (OSError, HTTPException) as error:
            logger.warning(
                "response not delivered, retrying",
                extra={"attempt": attempt, "error": type(error).__name__},
            )
        else:
            if 200 <= status < 300:
                logger.info(
                    "response delivered", extra={"http_status": status, "status": body["Status"]}
                )
                return True
            logger.warning("response refused", extra={"attempt": attempt, "http_status": status})
            if status < 500:
                return False  # a refused presigned URL stays refused
        if deadline.remaining() <= delay:
            break
        sleep(delay)
        delay = min(delay * 2, 4.0)
    logger.error("response not delivered before the deadline", extra={"attempts": attempt})
    return False


def _put(host: str, target: str, payload: bytes, headers: dict[str, str], timeout: float) -> int:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    connection = HTTPSConnection(host, timeout=timeout, context=context)
    try:
        connection.request("PUT", target, body=payload, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()
