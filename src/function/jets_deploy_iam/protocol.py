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
"""

from __future__ import annotations

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

from crhelper import CfnResource

from jets_deploy_iam.config import Deadline
from jets_deploy_iam.request import Request
from jets_deploy_iam.response import Response

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logging.getLogger(__name__)

#: Seconds one PUT attempt may take (S3 answers in well under a second).
ATTEMPT_TIMEOUT = 5.0
#: Lambda time kept back after the last attempt.
SEND_RESERVE = 0.5
#: However late, one attempt gets at least this long.
MIN_ATTEMPT = 0.5


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

    def send_deadline(self) -> Deadline:
        remaining = self.context.get_remaining_time_in_millis() / 1000
        return Deadline.after(remaining - SEND_RESERVE)


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
                json_logging=False, log_level="INFO", boto_level="ERROR", sleep_on_delete=0
            )
        finally:
            if saved is None:
                del os.environ["AWS_SAM_LOCAL"]
            else:
                os.environ["AWS_SAM_LOCAL"] = saved
        self._sam_local = saved
        self.invocation: Invocation | None = None

    def serve(self, invocation: Invocation, event: Mapping[str, Any]) -> None:
        """Run one request through crhelper; it answers exactly once."""
        self.invocation = invocation
        try:
            self(dict(event), invocation.context)
        finally:
            self.invocation = None

    # -- crhelper's hooks, overridden ---------------------------------------------------------

    def _wrap_function(self, func: object) -> None:  # noqa: ARG002  (we dispatch ourselves)
        invocation = self._current()
        response = invocation.run(invocation)
        self.Status, self.Reason = response.status, response.reason
        self.PhysicalResourceId, self.Data = response.physical_id, dict(response.data)

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
        else:
            response = Response(
                "SUCCESS" if self.Status == "SUCCESS" else "FAILED",
                str(self.PhysicalResourceId),
                str(self.Reason),
                dict(self.Data),
            )
        self._answer(invocation, response)

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
