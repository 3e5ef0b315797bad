"""Run the handler once in its own process, as the Lambda runtime would.

``python -m jets_deploy_iam_cli.local.runtime EVENT.json [TIMEOUT]``: the event's ResponseURL must
already point at a receiver; IAM is whatever ``AWS_ENDPOINT_URL_IAM`` names.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, cast

from jets_deploy_iam_cli.local.context import FakeLambdaContext

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def main(argv: list[str]) -> int:
    from jets_deploy_iam.handler import lambda_handler

    with open(argv[0]) as source:
        event = json.load(source)
    timeout = float(argv[1]) if len(argv) > 1 else 300.0
    lambda_handler(event, cast("LambdaContext", FakeLambdaContext(timeout_seconds=timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
