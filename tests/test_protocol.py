"""The protocol edge: crhelper's three weak spots guarded, crafted events, log redaction.

Sequence 9 of issue 9: a ResponseURL with a space made crhelper log the signature every 2 s
forever; an unreachable ResponseURL kept the function running until Lambda killed it; an event
without a ResponseURL in a warm container was answered to the previous request's URL.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

from helpers import create_props, event
from jets_deploy_iam import handler, redact
from jets_deploy_iam.config import Deadline
from jets_deploy_iam.protocol import Invocation, put_response
from jets_deploy_iam.request import parse_request
from jets_deploy_iam.response import Response
from jets_deploy_iam.spec import Environment
from jets_deploy_iam_cli.local.context import FakeLambdaContext
from jets_deploy_iam_cli.local.invoke import invoke
from jets_deploy_iam_cli.local.receiver import SIGNATURE, ResponseReceiver

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_iam import IAMClient

TOKEN_VALUE = "IQoJb3JpZ2luX2VjEXAMPLE-session-token"


@contextlib.contextmanager
def function_logs() -> Iterator[io.StringIO]:
    """Everything the function's handlers emit, as Lambda would store it."""
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(handler.logger.registered_formatter)
    sink.addFilter(redact.RedactPresignedUrls())  # as every handler of the function has it
    targets = [logging.getLogger(n) for n in ("jets-deploy-iam", "crhelper", "jets_deploy_iam")]
    for target in targets:
        target.addHandler(sink)
    try:
        yield stream
    finally:
        for target in targets:
            target.removeHandler(sink)


def signed(url: str) -> str:
    return (
        f"{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261129"
        f"&X-Amz-Security-Token={TOKEN_VALUE}&X-Amz-Signature={SIGNATURE}"
    )


def context(timeout: float = 300.0) -> LambdaContext:
    return cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout))


def test_a_response_url_with_a_space_is_dropped_and_never_logged(
    strict: Any, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    crafted = event("Create", create_props(world))
    crafted["ResponseURL"] = signed(f"https://localhost:{receiver.port}/bad path")
    strict.reset()
    with function_logs() as logs:
        handler.lambda_handler(crafted, context())
    assert receiver.pending == 0
    assert strict.calls == []
    text = logs.getvalue()
    assert "event dropped" in text
    assert SIGNATURE not in text
    assert TOKEN_VALUE not in text


@pytest.mark.parametrize("missing", ["ResponseURL", "RequestId", "StackId", "LogicalResourceId"])
def test_an_event_missing_a_protocol_field_is_never_answered_to_another_url(
    strict: Any, receiver: ResponseReceiver, world: dict[str, str], missing: str
) -> None:
    first = invoke(event("Create", create_props(world)), receiver)  # a warm container
    assert first["Status"] == "SUCCESS"
    strict.reset()
    incomplete = {**event("Delete", create_props(world), "Jets"), "ResponseURL": receiver.url("x")}
    del incomplete[missing]
    with function_logs() as logs:
        handler.lambda_handler(incomplete, context())
    with pytest.raises(TimeoutError):
        receiver.take(timeout=0.3)  # nothing was answered, to any URL
    assert strict.writes == []
    assert f"the event has no {missing}" in logs.getvalue()


def test_an_unreachable_response_url_gives_up_before_the_deadline() -> None:
    now = [0.0]
    attempts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    deadline = Deadline(at=10.0, clock=lambda: now[0])
    import jets_deploy_iam.protocol as protocol

    def refuse(*_args: object) -> int:
        attempts.append(now[0])
        now[0] += 1.0  # each attempt times out after a second
        raise ConnectionRefusedError("connection refused")

    original = protocol._put
    protocol._put = refuse  # type: ignore[assignment]
    try:
        with function_logs() as logs:
            delivered = put_response(
                signed("https://127.0.0.1:1/r"), {"Status": "x"}, deadline, sleep
            )
    finally:
        protocol._put = original
    assert not delivered
    assert attempts
    assert all(at < 10.0 for at in attempts)  # no attempt starts after the deadline
    assert now[0] < 10.0 + 1.0 + 1e-9  # and none runs past it by more than its own timeout
    assert "response not delivered before the deadline" in logs.getvalue()
    assert SIGNATURE not in logs.getvalue()


def test_a_refused_presigned_url_is_not_retried(receiver: ResponseReceiver) -> None:
    calls: list[int] = []
    import jets_deploy_iam.protocol as protocol

    original = protocol._put

    def forbidden(*_args: object) -> int:
        calls.append(1)
        return 403

    protocol._put = forbidden  # type: ignore[assignment]
    try:
        assert not put_response(receiver.url("r"), {"Status": "x"}, Deadline.after(60))
    finally:
        protocol._put = original
    assert len(calls) == 1


def test_crhelpers_timer_answers_with_the_physical_id_and_only_once(
    receiver: ResponseReceiver, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the work ever outlives the margin, the late answer still carries the right id."""
    monkeypatch.setenv("SSL_CERT_FILE", str(receiver.cafile))
    e = {**event("Create", create_props(world)), "ResponseURL": receiver.url("slow")}
    e["RequestId"] = "slow"
    request = parse_request(e, Environment.from_function_arn(e["ServiceToken"]))

    def slow(invocation: Invocation) -> Response:
        invocation.physical_id = "Jets"  # the group exists by now
        time.sleep(1.2)  # crhelper's timer fires at 0.5 s before the end
        return Response("SUCCESS", "Jets")

    invocation = Invocation(request, context(timeout=1.0), slow, physical_id=request.placeholder)
    handler.protocol.serve(invocation, e)
    answer = receiver.take("slow", timeout=5)
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == "Jets"  # never "" (CloudFormation rejects it)
    assert "ran out of time" in answer["Reason"]
    time.sleep(0.3)
    assert receiver.pending == 0  # the late SUCCESS was not sent as a second answer


def test_redaction_covers_messages_exception_text_and_tracebacks() -> None:
    url = signed("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/k")
    log = logging.getLogger("crhelper.utils")
    with function_logs() as logs:
        log.error("Unexpected failure sending response to CloudFormation %s", url)
        try:
            raise ValueError(f"Invalid URL {url!r}: No host supplied")
        except ValueError:
            log.error("failed", exc_info=True)
    text = logs.getvalue()
    assert "X-Amz-Signature" in text or "<redacted>" in text
    for secret in (SIGNATURE, TOKEN_VALUE, "AKIAEXAMPLE"):
        assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert "ValueError" in records[1]["exception"]  # the traceback is kept, redacted


def test_the_handler_process_log_has_no_signature_for_a_failing_put(
    iam: IAMClient, strict: Any, registry: Any, world: dict[str, str]
) -> None:
    """A real handler invocation whose response PUT is refused at the TCP level."""
    e = event("Create", create_props(world))
    e["ResponseURL"] = signed("https://127.0.0.1:1/cloudformation-custom-resource-response/k")
    with function_logs() as logs:
        handler.lambda_handler(e, context(timeout=4.0))
    text = logs.getvalue()
    assert "response not delivered" in text
    for secret in (SIGNATURE, TOKEN_VALUE):
        assert secret not in text
