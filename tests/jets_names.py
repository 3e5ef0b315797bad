"""The names a Jets app's resources really get, for one project and one env (the test's model).

Written from Jets' source and CloudFormation's naming, independently of the policy code: the
tests fill the templates of tests/data/jets_calls.yaml with these names and evaluate the calls.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data" / "jets_calls.yaml"

#: Jets 3-5 shorten the env in names (Jets.short_env); other envs are used as they are.
SHORT_ENV = {"development": "dev", "production": "prod", "staging": "stag"}

#: CloudFormation keeps about this many characters of the stack name in names it generates
#: when the whole `<stack>-<LogicalId>-<random>` would pass the service's limit.
CFN_STACK_CHARS = 25


def cfn_generated(stack: str, logical_id: str, limit: int, *, lowercase: bool = False) -> str:
    """A physical name as CloudFormation makes it: `<stack>-<LogicalId>-<random>`, cut to fit."""
    alphabet = string.ascii_lowercase if lowercase else string.ascii_uppercase
    suffix = (alphabet + string.digits)[7 : 7 + (13 if lowercase else 12)]
    if lowercase:
        stack, logical_id = stack.lower(), logical_id.lower()
    whole = f"{stack}-{logical_id}-{suffix}"
    if len(whole) <= limit:
        return whole
    stack = stack[:CFN_STACK_CHARS]
    room = limit - len(stack) - len(suffix) - 2
    return f"{stack}-{logical_id[:room]}-{suffix}"


@dataclass(frozen=True)
class JetsApp:
    """One deployed Jets app: project name, the env its members set, the Jets generation."""

    project: str
    env: str
    generation: str  # "local" (Jets 3-5) or "remote" (Jets 6)
    partition: str = "aws"
    account: str = "123456789012"
    region: str = "eu-west-1"

    @property
    def short_env(self) -> str:
        if self.generation == "local":
            return SHORT_ENV.get(self.env, self.env)
        return self.env

    @property
    def ns(self) -> str:
        return f"{self.project}-{self.short_env}".replace("_", "-")

    def nested(self, child: str) -> str:
        return f"{self.ns}-{child}-1EPIUF1EN4LSQ"

    def placeholders(self, app_managed_policy: str = "") -> dict[str, str]:
        nested = self.nested("PostsController")
        jobs = self.nested("HardJob")
        return {
            "partition": self.partition,
            "region": self.region,
            "account": self.account,
            "project": self.project,
            "env": self.env,
            "ns": self.ns,
            "parent_stack": self.ns,
            "nested_stack": nested,
            "api_stack": self.nested("ApiGateway"),
            "bucket": cfn_generated(self.ns, "S3Bucket", 63, lowercase=True),
            "role": cfn_generated(nested, "PostsControllerIamRole", 64),
            "function": f"{self.ns}-posts_controller-index",
            "generated_function": cfn_generated(
                self.nested("AdminReportsController"),
                "AdminReportsControllerGenerateQuarterlyLambdaFunction",
                64,
            ),
            "layer": f"{self.short_env}-{self.project}-gems",
            "rule": cfn_generated(jobs, "HardJobDigEventsRule", 64),
            "topic": cfn_generated(self.nested("UploadsBucket"), "SnsTopic", 256),
            "table": f"{self.project}-{self.short_env}-posts",
            "event_bucket": f"{self.project}-uploads",
            "codebuild_project": f"{self.ns}-remote",
            "codebuild_role": cfn_generated(self.ns, "CodebuildRole", 64),
            "uuid": "0f373000-f229-11ee-9f5f-0a3e531c7fd5",
            "api_id": "mke40eh6l0",
            "zone_id": "Z0123456789ABCDEFGHIJ",
            "domain": "api.example.com",
            "app_managed_policy": app_managed_policy,
        }


@dataclass(frozen=True)
class Call:
    """One (action, resource) pair of the data file, not yet filled in."""

    gen: str
    feature: str
    phases: tuple[str, ...]
    by: str
    action: str
    resource: str
    context: tuple[tuple[str, Any], ...]
    cfn_type: str
    cfn_handler: str
    opt_in: bool
    sources: tuple[str, ...]

    def render(self, app: JetsApp, app_managed_policy: str = "") -> tuple[str, dict[str, Any]]:
        values = app.placeholders(app_managed_policy)
        context = {
            key: value.format(**values) if isinstance(value, str) else list(value)
            for key, value in self.context
        }
        return self.resource.format(**values), context


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DATA.read_text())
    return data


def calls() -> list[Call]:
    """Every pair of the data file, one per action."""
    found = []
    for entry in load()["calls"]:
        cfn = entry.get("cfn", {})
        for action in entry["actions"]:
            found.append(
                Call(
                    gen=entry["gen"],
                    feature=entry["feature"],
                    phases=tuple(entry["phases"]),
                    by=entry["by"],
                    action=action,
                    resource=entry["resource"],
                    context=tuple(sorted(entry.get("context", {}).items())),
                    cfn_type=cfn.get("type", ""),
                    cfn_handler=cfn.get("handler", ""),
                    opt_in=bool(entry.get("opt_in", False)),
                    sources=tuple(entry["sources"]),
                )
            )
    return found
