"""The names Jets and CloudFormation give an app's resources, as IAM resource patterns.

`scoped` can only scope what it can name. Every name below starts with something derived from the
Jets *project name* (`Jets.project.name`), never from the namespace `<project>-<env>`, because one
policy must cover every environment the members deploy (dev, prod, stag, and any other):

- stacks: the parent is `<project>-<short_env>[-<extra>]` (Jets 3-5 map development to dev,
  production to prod, staging to stag; Jets 6 uses JETS_ENV as is); nested stacks are
  `<parent>-<Child>-<random>`;
- functions: `<namespace>-<class>-<method>`, or, when that passes Lambda's 64 characters, a name
  CloudFormation generates from the nested stack's name;
- roles, rules, SNS topics and the bucket: named by CloudFormation `<stack>-<LogicalId>-<random>`
  and cut to the service's length limit. CloudFormation keeps about 25 characters of the stack
  name before it cuts, which is why a project name may have at most 25 characters: then every
  generated name still starts with `<project>-`;
- the gem layer: `<short_env>-<project>-gems` (Jets 3-5);
- log groups: `/aws/lambda/<function>`; the CodeBuild project `<namespace>-remote` (Jets 6) logs to
  `/aws/codebuild/<project name>`;
- SSM parameters read by dotenv: `/<project>/<env>/<NAME>`.

A prefix cannot tell `shop` from a project called `shop-admin`: both own `shop-*`. The README says
so; give such apps separate accounts or groups with distinct project names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PROJECT_NAME_LENGTH = 25

#: What `ResourcePrefix` accepts: a lowercase Jets project name of at most 25 characters.
PROJECT_NAME = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{MAX_PROJECT_NAME_LENGTH - 1}}}")


@dataclass(frozen=True)
class AppNames:
    """IAM resource patterns for one Jets project in one account (every region)."""

    project: str
    partition: str
    account_id: str

    def _arn(self, service: str, rest: str, *, regional: bool = True) -> str:
        region = "*" if regional else ""
        account = self.account_id if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{account}:{rest}"

    @property
    def stacks(self) -> str:
        """The parent stack and its nested stacks, in any region."""
        return self._arn("cloudformation", f"stack/{self.project}-*/*")

    @property
    def buckets(self) -> tuple[str, str]:
        """The app's buckets (Jets' own, and S3-event buckets named `<project>-...`)."""
        bucket = f"arn:{self.partition}:s3:::{self.project}-*"
        return bucket, f"{bucket}/*"

    @property
    def roles(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{self.project}-*"

    @property
    def functions(self) -> str:
        """Functions; also the `lambda:FunctionArn` of the app's event source mappings."""
        return self._arn("lambda", f"function:{self.project}-*")

    @property
    def gem_layers(self) -> tuple[str, str]:
        """The gem layer (publish names the layer, get/delete name a version of it)."""
        layer = self._arn("lambda", f"layer:*-{self.project}-gems")
        return layer, f"{layer}:*"

    @property
    def event_source_mappings(self) -> str:
        return self._arn("lambda", "event-source-mapping:*")

    @property
    def tables(self) -> str:
        return self._arn("dynamodb", f"table/{self.project}-*")

    @property
    def rules(self) -> str:
        return self._arn("events", f"rule/{self.project}-*")

    @property
    def topics(self) -> str:
        """SNS topics (and their subscriptions, `<topic>:<id>`)."""
        return self._arn("sns", f"{self.project}-*")

    @property
    def lambda_log_groups(self) -> str:
        return self._arn("logs", f"log-group:/aws/lambda/{self.project}-*")

    @property
    def codebuild_log_groups(self) -> str:
        return self._arn("logs", f"log-group:/aws/codebuild/{self.project}-*")

    @property
    def codebuild_projects(self) -> str:
        return self._arn("codebuild", f"project/{self.project}-*")

    @property
    def hosted_zones(self) -> str:
        """Route53 zones: ids are random, so the record types narrow what may change."""
        return f"arn:{self.partition}:route53:::hostedzone/*"

    @property
    def route53_changes(self) -> str:
        return f"arn:{self.partition}:route53:::change/*"

    @property
    def parameters(self) -> str:
        """SSM parameters under `/<project>/` (every env, and the path itself)."""
        return self._arn("ssm", f"parameter/{self.project}/*")

    @property
    def rest_apis(self) -> tuple[str, str]:
        """API Gateway REST APIs and custom domain names (ids are random: not by name)."""
        api = f"arn:{self.partition}:apigateway:*::"
        return f"{api}/restapis*", f"{api}/domainnames*"

    def managed_policy(self, name: str) -> str:
        """An AWS managed policy's ARN in this partition."""
        return f"arn:{self.partition}:iam::aws:policy/{name}"
