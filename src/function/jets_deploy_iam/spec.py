"""The declared state: CloudFormation ResourceProperties turned into a validated, immutable spec.

Everything that can be known without IAM is checked here, and every problem is collected (not just
the first), so one failed deploy tells the operator all they must fix. Nothing in this module
performs I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jets_deploy_iam import policy, profiles
from jets_deploy_iam.exceptions import InvalidPropertiesError
from jets_deploy_iam.limits import MAX_ATTACHED_POLICIES
from jets_deploy_iam.profiles.generations import DEFAULT_JETS_VERSION

_NAME = re.compile(r"[\w+=,.@-]+", re.ASCII)
_PATH = re.compile(r"/|/[\x21-\x7e]*/")
_SERVICE = re.compile(r"[a-z0-9-]+")
_ACTION = re.compile(r"[a-z0-9-]+:[A-Za-z0-9*?]+")
_POLICY_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<owner>aws|\d{12}):policy/(?:[\x21-\x7e]*/)?[\w+=,.@-]{1,128}",
    re.ASCII,
)
_DEPRECATED_POLICIES = {
    "policy/service-role/AWSConfigRole": "policy/service-role/AWS_ConfigRole",
}

PROFILES = ("baseline", "scoped")
DRIFT_ACTIONS = ("report", "correct")

KNOWN_PROPERTIES = frozenset(
    {
        "ServiceToken",
        "ServiceTimeout",
        "GroupName",
        "GroupPath",
        "PolicyName",
        "PolicyProfile",
        "JetsVersion",
        "ResourcePrefix",
        "Services",
        "AdditionalActions",
        "ManagedPolicyArns",
        "AppManagedPolicyArns",
        "Users",
        "Exclusive",
        "AdoptExistingGroup",
        "DriftAction",
    }
)


@dataclass(frozen=True)
class Environment:
    """Where the function runs: scoped ARNs and policy ARNs must use its partition and account."""

    partition: str = "aws"
    account_id: str = "123456789012"

    @classmethod
    def from_function_arn(cls, arn: str) -> Environment:
        parts = arn.split(":")
        if len(parts) < 5 or not parts[1] or not parts[4]:
            return cls()
        return cls(partition=parts[1], account_id=parts[4])


@dataclass(frozen=True)
class DeclaredGroup:
    """What the resource says the group must look like."""

    group_name: str
    path: str
    policy_name: str
    policy_document: Mapping[str, Any] = field(hash=False)
    managed_policy_arns: tuple[str, ...]
    users: tuple[str, ...]
    exclusive: bool
    adopt_existing_group: bool
    profile: str
    jets_version: str = DEFAULT_JETS_VERSION
    #: what the scheduled drift check does between deploys: report, or correct
    drift_action: str = "report"


class _Collector:
    """Accumulates problems so all of them are reported at once."""

    def __init__(self, props: Mapping[str, Any]) -> None:
        self.props = props
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def scalar(self, key: str, default: str) -> str:
        value = self.props.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(f"{key} must be a string, got {_show(value)}")
            return default
        return str(value)

    def named(self, key: str, default: str, max_len: int = 128) -> str:
        value = self.scalar(key, default)
        if not 1 <= len(value) <= max_len or not _NAME.fullmatch(value):
            self.fail(
                f"{key} {_show(value)} is invalid: use 1-{max_len} letters, digits or +=,.@_-"
            )
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.props.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(f"{key} must be true or false, got {_show(value)}")
        return default

    def listing(
        self, key: str, default: tuple[str, ...], check: Callable[[str], str | None]
    ) -> tuple[str, ...]:
        if key not in self.props or self.props[key] is None:
            return default
        raw = self.props[key]
        if isinstance(raw, str):
            items: list[Any] = raw.split(",")
        elif isinstance(raw, list):
            items = raw
        else:
            self.fail(f"{key} must be a list or a comma-separated string, got {_show(raw)}")
            return default
        result: list[str] = []
        for item in items:
            if not isinstance(item, str):
                self.fail(f"{key} entries must be strings, got {_show(item)}")
                continue
            entry = item.strip()
            if not entry or entry in result:
                continue
            problem = check(entry)
            if problem:
                self.fail(f"{key} entry {_show(entry)} {problem}")
                continue
            result.append(entry)
        return tuple(result)


def _show(value: Any, limit: int = 48) -> str:
    """A bad value quoted for an error message, cut so the Reason stays under 256 characters.

    A long value keeps its start and its distinguishing end (an ARN's policy name, a user name
    after a common prefix); its quotes stay balanced because both ends are kept.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "\u2026" + text[-(limit - 1 - head) :]


def _check_user(name: str) -> str | None:
    if 1 <= len(name) <= 64 and _NAME.fullmatch(name):
        return None
    return "is not a valid IAM user name (1-64 letters, digits or +=,.@_-)"


def _check_service(name: str) -> str | None:
    if _SERVICE.fullmatch(name):
        return None
    return "is not a service prefix like 's3' or 'dynamodb'"


def _check_action(name: str) -> str | None:
    if _ACTION.fullmatch(name):
        return None
    return "is not an action like 's3:GetObject' (only * and ? as wildcards, after the colon)"


def _arn_checker(env: Environment) -> Callable[[str], str | None]:
    def check(arn: str) -> str | None:
        match = _POLICY_ARN.fullmatch(arn)
        if not match:
            return "is not a managed policy ARN like arn:aws:iam::aws:policy/NAME"
        if match["partition"] != env.partition:
            return f"is in partition {match['partition']}, this function runs in {env.partition}"
        for old, new in _DEPRECATED_POLICIES.items():
            if arn.endswith(":" + old):
                fixed = arn[: -len(old)] + new
                return f"is deprecated and can no longer be attached: use {fixed}"
        return None

    return check


def parse_properties(props: Mapping[str, Any], env: Environment) -> DeclaredGroup:
    """Validate ResourceProperties; raise InvalidPropertiesError naming every problem."""
    if not isinstance(props, Mapping):
        raise InvalidPropertiesError([f"ResourceProperties must be an object, got {_show(props)}"])
    c = _Collector(props)
    unknown = sorted(str(k) for k in props if k not in KNOWN_PROPERTIES)
    if unknown:
        c.fail(
            f"unknown propert{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(_show(k) for k in unknown)}: check the spelling (see the README)"
        )

    group_name = c.named("GroupName", "Jets")
    path = c.scalar("GroupPath", "/")
    if len(path) > 512 or not _PATH.fullmatch(path):
        c.fail(f"GroupPath {_show(path)} is invalid: use / or /a/b/ (at most 512 printable ASCII)")
    policy_name = c.named("PolicyName", "JetsPolicy")
    profile = c.scalar("PolicyProfile", "baseline")
    if profile not in PROFILES:
        c.fail(f"PolicyProfile {_show(profile)} is invalid: use baseline or scoped")
    jets_version = c.scalar("JetsVersion", DEFAULT_JETS_VERSION)
    if jets_version not in profiles.JETS_VERSIONS:
        c.fail(
            f"JetsVersion {_show(jets_version)} is invalid: use the Jets major version the "
            f"members deploy with, one of {', '.join(profiles.JETS_VERSIONS)}"
        )
        jets_version = DEFAULT_JETS_VERSION
    prefix = c.scalar("ResourcePrefix", "")
    services = c.listing("Services", policy.BASELINE_SERVICES, _check_service)
    actions = c.listing("AdditionalActions", (), _check_action)
    arns = c.listing("ManagedPolicyArns", (), _arn_checker(env))
    app_arns = c.listing("AppManagedPolicyArns", (), _arn_checker(env))
    users = c.listing("Users", (), _check_user)
    exclusive = c.boolean("Exclusive", True)
    adopt = c.boolean("AdoptExistingGroup", False)
    drift_action = c.scalar("DriftAction", "report")
    if drift_action not in DRIFT_ACTIONS:
        c.fail(f"DriftAction {_show(drift_action)} is invalid: use report or correct")

    if len(arns) > MAX_ATTACHED_POLICIES:
        c.fail(
            f"ManagedPolicyArns lists {len(arns)} policies: IAM attaches at most "
            f"{MAX_ATTACHED_POLICIES} to a group"
        )
    document = _document(
        c, _Declared(profile, jets_version, prefix, services, actions, app_arns), env
    )
    if c.problems:
        raise InvalidPropertiesError(c.problems)
    return DeclaredGroup(
        group_name=group_name,
        path=path,
        policy_name=policy_name,
        policy_document=document,
        managed_policy_arns=arns,
        users=users,
        exclusive=exclusive,
        adopt_existing_group=adopt,
        profile=profile,
        jets_version=jets_version,
        drift_action=drift_action,
    )


@dataclass(frozen=True)
class _Declared:
    """The properties that decide the inline policy document."""

    profile: str
    jets_version: str
    prefix: str
    services: tuple[str, ...]
    actions: tuple[str, ...]
    app_managed_policy_arns: tuple[str, ...]


def _document(c: _Collector, d: _Declared, env: Environment) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if d.profile == "scoped":
        _check_scoped(c, d.prefix)
        document = policy.scoped_document(
            d.prefix,
            env.partition,
            env.account_id,
            d.actions,
            jets_version=d.jets_version,
            app_managed_policy_arns=d.app_managed_policy_arns,
        )
    elif d.profile == "baseline":
        _check_baseline(c, d)
        document = policy.baseline_document(d.services, d.actions, d.jets_version)
    size = policy.counted_size(policy.render(document)) if document else 0
    if size > policy.MAX_GROUP_INLINE_POLICY_CHARS:
        c.fail(
            f"the inline policy would be {size} characters: IAM allows "
            f"{policy.MAX_GROUP_INLINE_POLICY_CHARS} per group; list fewer Services, "
            "AdditionalActions or AppManagedPolicyArns (wildcards like s3:Get* help)"
        )
    return document


def _check_scoped(c: _Collector, prefix: str) -> None:
    if not profiles.PROJECT_NAME.fullmatch(prefix):
        c.fail(
            f"ResourcePrefix {_show(prefix)} is invalid: PolicyProfile scoped needs the Jets "
            f"project name (not <project>-<env>), 1-{profiles.MAX_PROJECT_NAME_LENGTH} of "
            "a-z 0-9 - starting with a letter or digit"
        )
    if "Services" in c.props and c.props["Services"] not in (None, "", []):
        c.fail("Services applies only to PolicyProfile baseline: remove it or use baseline")


def _check_baseline(c: _Collector, d: _Declared) -> None:
    if d.prefix:
        c.fail("ResourcePrefix applies only to PolicyProfile scoped: remove it or use scoped")
    if d.app_managed_policy_arns:
        c.fail(
            "AppManagedPolicyArns applies only to PolicyProfile scoped (baseline already "
            "grants iam:*): remove it or use scoped"
        )
    if not d.services and not d.actions:
        c.fail("Services is empty and there are no AdditionalActions: the policy would be empty")


def parse_previous(props: Mapping[str, Any] | None, env: Environment) -> DeclaredGroup | None:
    """OldResourceProperties, if they were valid.

    On a rollback Update the "old" properties are the ones that just failed. If they failed
    validation they were never applied, so there is nothing of theirs to undo.
    """
    if props is None:
        return None
    try:
        return parse_properties(props, env)
    except InvalidPropertiesError:
        return None


def is_group_name(value: str) -> bool:
    """True for strings IAM accepts as a group name (a failed Create's placeholder id is not)."""
    return 1 <= len(value) <= 128 and bool(_NAME.fullmatch(value))
