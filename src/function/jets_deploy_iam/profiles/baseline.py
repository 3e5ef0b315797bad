"""`baseline`: the policy the Jets documentation tells people to create, plus what Jets 6 needs.

The Jets docs grant `<service>:*` on every resource for nine services. That is admin-equivalent
(`iam:*`), and the README says so; we keep it because it is what Jets users already run, and it
deploys every feature of Jets 3-5. Jets 6 also reads SSM parameters, and deploys through a
CodeBuild project whose logs it tails: those needs are added in the same spirit, in a statement
of their own so that a custom `Services` list never drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

from jets_deploy_iam.profiles.document import VERSION, Document, allow
from jets_deploy_iam.profiles.generations import Generation, generation_of

#: What the Jets documentation grants, one ``<service>:*`` each.
BASELINE_SERVICES: tuple[str, ...] = (
    "apigateway",
    "cloudformation",
    "dynamodb",
    "events",
    "iam",
    "lambda",
    "logs",
    "route53",
    "s3",
)

#: Jets 6 before any CloudFormation call: dotenv reads `/<project>/<env>/` by path, and the remote
#: runner creates, starts and polls the CodeBuild project (its logs: `logs:*` above).
JETS6_ACTIONS: tuple[str, ...] = (
    "codebuild:*",
    "ssm:GetParameter",
    "ssm:GetParametersByPath",
)


def baseline_document(
    services: Sequence[str], additional_actions: Sequence[str], jets_version: str = "5"
) -> Document:
    """The Jets doc's policy for `services`, Jets 6's additions, then `additional_actions`."""
    statements = []
    if services:
        statements.append(allow([f"{svc}:*" for svc in services], ["*"]))
    if generation_of(jets_version) is Generation.REMOTE:
        statements.append(allow(JETS6_ACTIONS, ["*"]))
    if additional_actions:
        statements.append(allow(additional_actions, ["*"]))
    return {"Version": VERSION, "Statement": statements}
