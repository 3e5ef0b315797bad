"""A LambdaContext look-alike, so the real handler can run outside Lambda."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:jets-deploy-iam"


def lambda_time() -> float:
    """The clock the remaining Lambda time counts down on: real time here; the tests run it on
    the virtual clock their retries wait on, so the handler's deadline counts those waits."""
    return time.monotonic()


@dataclass
class FakeLambdaContext:
    timeout_seconds: float = 300.0
    function_name: str = "jets-deploy-iam"
    invoked_function_arn: str = FUNCTION_ARN
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/jets-deploy-iam"
    log_stream_name: str = "local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=lambda: lambda_time())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (lambda_time() - self._started)) * 1000))
