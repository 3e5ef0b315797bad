"""What CloudFormation is told: the response value, its Reason and its size.

CloudFormation shows the Reason to the person deploying: it must name the property, user or ARN at
fault and fit in 256 characters; the whole response body must stay under 4,096 bytes (crhelper
does not check either).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError

from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.iam.client import error_code, error_message

MAX_REASON = 256
MAX_RESPONSE_BYTES = 4096
#: IN_PROGRESS is never sent: the work goes on in another invocation (``continuation.py``).
Status = Literal["SUCCESS", "FAILED", "IN_PROGRESS"]


@dataclass(frozen=True)
class Response:
    status: Status
    physical_id: str
    reason: str = ""
    data: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def failed(cls, physical_id: str, error: BaseException) -> Response:
        return cls("FAILED", physical_id, reason_for(error))

    @classmethod
    def in_progress(cls, physical_id: str) -> Response:
        """No answer yet: the work goes on in a later invocation."""
        return cls("IN_PROGRESS", physical_id)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def pending(self) -> bool:
        return self.status == "IN_PROGRESS"

    def body(self, stack_id: str, request_id: str, logical_id: str) -> dict[str, object]:
        """The JSON CloudFormation expects at the ResponseURL."""
        return {
            "Status": self.status,
            "PhysicalResourceId": self.physical_id,
            "StackId": stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "Reason": self.reason,
            "Data": dict(self.data),
            "NoEcho": False,
        }

    def within_limits(self, stack_id: str, request_id: str, logical_id: str) -> Response:
        """This response, or a FAILED one if CloudFormation would reject its size."""
        size = len(json.dumps(self.body(stack_id, request_id, logical_id)))
        if size <= MAX_RESPONSE_BYTES:
            return self
        reason = f"response would be {size} bytes, over CloudFormation's 4,096"
        return Response("FAILED", self.physical_id, reason)


def reason_for(error: BaseException) -> str:
    """A Reason within CloudFormation's 256 characters that keeps the start (the cause)."""
    if isinstance(error, JetsDeployIamError):
        text = str(error)
    elif isinstance(error, ClientError):
        operation = getattr(error, "operation_name", "a call")
        text = f"IAM refused {operation}: {error_code(error)}: {error_message(error)}"
    elif isinstance(error, BotoCoreError):
        text = f"IAM could not be reached: {error}"
    else:
        text = f"unexpected error {type(error).__name__}: {error} (see the function's log)"
    return shorten(text)


def shorten(text: str, limit: int = MAX_REASON, then: str = "") -> str:
    """``text`` cut to fit, followed by ``then`` whole (what must survive the cut)."""
    room = limit - len(then)
    if len(text) > room:
        text = text[: room - 5].rstrip() + " (\u2026)"
    return text + then
