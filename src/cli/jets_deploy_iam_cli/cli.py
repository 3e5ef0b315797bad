"""The command line for people: preview a deploy, find and correct drift, run an event, see it work.

    jets-deploy-iam plan --stack NAME [--parameter-overrides K=V ...]   what the deploy would do
    jets-deploy-iam plan --event EVENT.json | plan [property flags]    a request, previewed
    jets-deploy-iam drift [--stack NAME]       registered groups that differ from their declaration
    jets-deploy-iam apply --stack NAME [--yes] converge the stack's groups to their declaration now
    jets-deploy-iam policy [flags | --event E] the inline policy those properties grant
    jets-deploy-iam invoke EVENT.json          a CloudFormation event through the real handler
    jets-deploy-iam demo                       the whole lifecycle against an embedded IAM

Exit codes, like ``terraform plan -detailed-exitcode``: 0 nothing to do (plan: no changes;
drift: in sync; apply, invoke, policy, demo: done), 2 changes (plan) or drift found (drift),
1 an error, a plan that would fail, a FAILED response, or a usage error. Results go to stdout,
logs and errors to stderr. ``plan`` and ``drift`` only read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.parsers import ResponseParserError

from jets_deploy_iam import policy
from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.iam.client import error_code, error_message
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.registry.store import DynamoDBRegistry, MemoryRegistry, Registry
from jets_deploy_iam.request import ResourceKey
from jets_deploy_iam.spec import Environment, parse_properties
from jets_deploy_iam_cli import drift as drifts
from jets_deploy_iam_cli.aws import READ_ONLY, Aws, UsageError, check_endpoint
from jets_deploy_iam_cli.preview import (
    Preview,
    preview,
    preview_stack,
    request_for_properties,
    request_from_event,
)
from jets_deploy_iam_cli.render import (
    Style,
    checked_json,
    checked_lines,
    count_line,
    counts,
    preview_json,
    preview_lines,
)
from jets_deploy_iam_cli.stack import (
    DeployedStack,
    RegistryLocation,
    StackError,
    find_registry,
    parse_overrides,
    read_stack,
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_DRIFT = EXIT_CHANGES
#: samconfig.toml's stack name: where ``drift`` finds the registry when told nothing else.
DEFAULT_MAIN_STACK = "jets-deploy-iam"
DEFAULT_LOCAL_TABLE = "jets-deploy-iam-registry"


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit 2 means "changes" to a CI job reading ``plan``'s code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"error: {message}\n")


def _csv(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


# -- arguments ---------------------------------------------------------------------------------


def _add_aws(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS access")
    group.add_argument(
        "--region",
        help="the stack's region (IAM itself is global: it defaults to us-east-1)",
    )
    group.add_argument("--profile", help="a named profile of ~/.aws/config")
    group.add_argument(
        "--endpoint-url",
        help="an emulator (http://127.0.0.1:5000 for a moto server); signs with dummy "
        "credentials unless --profile is given",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", choices=["text", "json"], default="text", help="json: for CI (stdout)"
    )


def _add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry-table",
        help="the function's registry table (default: found from the stack: its RegistryTable, "
        "or the JETS_REGISTRY_TABLE of the function its ServiceToken names)",
    )


_PROPERTY_FLAGS = {
    "group_name": "GroupName",
    "group_path": "GroupPath",
    "policy_name": "PolicyName",
    "policy_profile": "PolicyProfile",
    "jets_version": "JetsVersion",
    "resource_prefix": "ResourcePrefix",
    "users": "Users",
    "managed_policy_arns": "ManagedPolicyArns",
    "app_managed_policy_arns": "AppManagedPolicyArns",
    "services": "Services",
    "additional_actions": "AdditionalActions",
    "exclusive": "Exclusive",
    "adopt_existing_group": "AdoptExistingGroup",
    "drift_action": "DriftAction",
}
_ENV_FLAGS = ("account_id", "partition")


def _add_property_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event", type=Path, help="a CloudFormation request event (JSON)")
    props = parser.add_argument_group("resource properties (instead of --event)")
    props.add_argument("--group-name")
    props.add_argument("--group-path")
    props.add_argument("--policy-name")
    props.add_argument("--policy-profile", choices=["baseline", "scoped"])
    props.add_argument("--jets-version", help="3, 4, 5 (default) or 6")
    props.add_argument("--resource-prefix", help="scoped: the Jets project name")
    props.add_argument("--users", help="comma-separated IAM user names")
    props.add_argument("--managed-policy-arns", help="comma-separated policy ARNs")
    props.add_argument(
        "--app-managed-policy-arns", help="scoped: policy ARNs the app's roles may attach"
    )
    props.add_argument("--services", help="comma-separated service prefixes (baseline)")
    props.add_argument("--additional-actions", help="comma-separated actions")
    props.add_argument("--exclusive", action=argparse.BooleanOptionalAction, default=None)
    props.add_argument(
        "--adopt-existing-group", action=argparse.BooleanOptionalAction, default=None
    )
    props.add_argument("--drift-action", choices=["report", "correct"])
    props.add_argument("--account-id", help="for scoped ARNs (default: from the event or STS)")
    props.add_argument("--partition", default=None, help="aws, aws-cn, aws-us-gov")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jets-deploy-iam",
        description="Custom::JetsDeployGroup: the IAM group Ruby on Jets deployers need.",
        epilog="Exit codes: 0 nothing to do or done, 2 changes (plan) or drift (drift), "
        "1 error, a plan that would fail, a FAILED response, or a usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = commands.add_parser(
        "plan",
        help="what a deploy would change, pre-flight included (reads, never writes)",
        description=(
            "--stack NAME: the request the next deploy of that stack would send each of its "
            "Custom::JetsDeployGroup resources (its deployed parameters, changed by "
            "--parameter-overrides, as a change set does), previewed through the function's "
            "own decision and pre-flight with the function's registry. --event: one event. "
            "Property flags: an Update of the group named --group-name if it exists, else a "
            "Create. Exit 0 no changes, 2 changes, 1 error or a deploy that would fail."
        ),
    )
    plan.add_argument("--stack", help="a deployed stack holding Custom::JetsDeployGroup resources")
    plan.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="as for sam deploy (only with --stack)",
    )
    _add_registry(plan)
    _add_property_flags(plan)
    _add_output(plan)
    _add_aws(plan)

    drift = commands.add_parser(
        "drift",
        help="groups that differ from their deployed declaration (exit 2 if any)",
        description=(
            "For every resource the function's registry knows (or one stack's), compares the "
            "group in IAM with the declaration last applied to it, as the function's scheduled "
            "check does, and says how to correct it. A deploy with unchanged parameters sends "
            "a custom resource no request, so it corrects nothing: `apply` does. Exit 0 in "
            "sync, 2 drifted, 1 error."
        ),
    )
    drift.add_argument("--stack", help="only this stack's resources")
    drift.add_argument(
        "--main-stack",
        default=DEFAULT_MAIN_STACK,
        help="without --stack or --registry-table: the jets-deploy-iam stack whose registry "
        f"to read (default {DEFAULT_MAIN_STACK}, samconfig.toml's)",
    )
    _add_registry(drift)
    _add_output(drift)
    _add_aws(drift)

    apply = commands.add_parser(
        "apply",
        help="converge a stack's groups to their deployed declaration now (asks first)",
        description=(
            "Shows each drifted group's plan (as `drift` does), asks for confirmation, and "
            "applies exactly that plan with the function's own rules (pre-flight, revocations "
            "first, ownership: foreign content of a non-exclusive resource is never touched)."
        ),
    )
    apply.add_argument("--stack", required=True, help="the stack whose groups to correct")
    apply.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    _add_registry(apply)
    _add_aws(apply)

    shown = commands.add_parser(
        "policy",
        help="print the inline policy a set of properties grants",
        description=(
            "Prints, as JSON on stdout, the policy document the group would get from these "
            "properties (flags, or an event's ResourceProperties); its size as IAM counts it "
            "on stderr. Reads nothing from AWS when --account-id or the event's ServiceToken "
            "gives the account."
        ),
    )
    _add_property_flags(shown)
    _add_aws(shown)

    invoke = commands.add_parser(
        "invoke",
        help="run a CloudFormation request event through the real handler, locally",
        description=(
            "Runs the Lambda handler in this process against the embedded emulator (moto: "
            "IAM with AWS managed policies, and the registry table), or --endpoint-url (a moto "
            "server started with MOTO_IAM_LOAD_MANAGED_POLICIES=true; the registry table is "
            "created there if missing), captures the response it PUTs to the ResponseURL and "
            "prints it with the group's state as JSON on stdout (logs on stderr). Exit 0 on "
            "SUCCESS, 1 on FAILED."
        ),
    )
    invoke.add_argument("event", type=Path, help="event JSON, e.g. events/create.json")
    invoke.add_argument(
        "--seed-users", type=_csv, default=[], help="users to create first (alice,bob)"
    )
    invoke.add_argument("--timeout", type=float, default=300.0, help="Lambda timeout (seconds)")
    invoke.add_argument(
        "--registry-table",
        default=DEFAULT_LOCAL_TABLE,
        help=f"with --endpoint-url: the registry table (default {DEFAULT_LOCAL_TABLE})",
    )
    _add_aws(invoke)

    commands.add_parser(
        "demo",
        help="run the whole lifecycle against an embedded IAM emulator (no AWS account)",
        description="Create, update, a failing update, rename and delete, with the real handler.",
    )
    return parser


def _aws(args: argparse.Namespace) -> Aws:
    return Aws(
        region=getattr(args, "region", None),
        profile=getattr(args, "profile", None),
        endpoint_url=check_endpoint(getattr(args, "endpoint_url", None)),
    )


def _given(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    return [
        "--" + name.replace("_", "-") for name in names if getattr(args, name, None) is not None
    ]


def _read_event(path: Path) -> dict[str, Any]:
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}") from error
    if not isinstance(event, dict) or "RequestType" not in event:
        raise CliError(f"{path} is not a CloudFormation request event (no RequestType)")
    return event


def _flag_properties(args: argparse.Namespace) -> dict[str, Any]:
    return {
        prop: str(value).lower() if isinstance(value, bool) else value
        for flag, prop in _PROPERTY_FLAGS.items()
        if (value := getattr(args, flag)) is not None
    }


def _environment(args: argparse.Namespace, aws: Aws, token: str | None) -> Environment:
    if args.account_id:
        return Environment(args.partition or "aws", args.account_id)
    if token:
        return Environment.from_function_arn(token)
    identity = aws.client("sts", aws.global_region()).get_caller_identity()
    partition = str(identity["Arn"]).split(":")[1]
    return Environment(args.partition or partition, str(identity["Account"]))


def _event_token(event: Mapping[str, Any]) -> str | None:
    props = event.get("ResourceProperties")
    token = props.get("ServiceToken") if isinstance(props, dict) else None
    return str(token or event.get("ServiceToken") or "") or None


def _no_mixing(args: argparse.Namespace) -> None:
    """Flags that would be silently ignored are an error instead."""
    flags = _given(args, list(_PROPERTY_FLAGS))
    if args.event is not None and flags:
        raise UsageError(
            f"--event takes its properties from the event: drop {', '.join(flags)} (or edit "
            "the event)"
        )


# -- plan --------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace, style: Style) -> int:
    aws = _aws(args)
    _no_mixing(args)
    if args.stack is not None:
        mixed = _given(args, [*_PROPERTY_FLAGS, *_ENV_FLAGS, "event"])
        if mixed:
            raise UsageError(
                f"plan --stack previews the stack's own properties: drop {', '.join(mixed)}; "
                "change parameters with --parameter-overrides KEY=VALUE"
            )
        return _plan_stack(args, aws, style)
    if args.parameter_overrides:
        raise UsageError("--parameter-overrides needs --stack (the stack whose parameters change)")
    iam = aws.iam(READ_ONLY)
    registry = _event_registry(aws, args.registry_table)
    if args.event is not None:
        event = _read_event(args.event)
        request = request_from_event(event, _environment(args, aws, _event_token(event)))
    else:
        env = _environment(args, aws, None)
        request = request_for_properties(iam, _flag_properties(args), env)
    return _report_plan([preview(iam, registry, request)], args.output, style)


def _event_registry(aws: Aws, table: str | None) -> Registry:
    """An event or flags preview: the registry named by --registry-table, else none (the
    resource is then previewed as one the registry does not know yet)."""
    if table is None:
        return MemoryRegistry()
    return DynamoDBRegistry(aws.client("dynamodb"), table)


def _plan_stack(args: argparse.Namespace, aws: Aws, style: Style) -> int:
    stack = read_stack(aws, args.stack, parse_overrides(args.parameter_overrides))
    registry, where = _stack_registry(aws, stack, args.registry_table)
    _note_stack(stack, where)
    previews = preview_stack(aws.iam(READ_ONLY), registry, stack)
    return _report_plan(previews, args.output, style)


def _stack_registry(
    aws: Aws, stack: DeployedStack, flag: str | None
) -> tuple[Registry, RegistryLocation]:
    where = find_registry(aws, stack, flag)
    return DynamoDBRegistry(aws.client("dynamodb", where.region), where.table), where


def _note_stack(stack: DeployedStack, where: RegistryLocation) -> None:
    print(f"stack {stack.name} ({stack.status}); registry: {where.table} ({where.source})",
          file=sys.stderr)  # fmt: skip
    if stack.status.endswith("_IN_PROGRESS"):
        print(
            f"warning: stack {stack.name} is {stack.status}: the preview may be stale by the "
            "time it finishes",
            file=sys.stderr,
        )


def _report_plan(previews: Sequence[Preview], output: str, style: Style) -> int:
    failed = any(p.failed for p in previews)
    changes = any(p.plan for p in previews)
    code = EXIT_ERROR if failed else EXIT_CHANGES if changes else EXIT_OK
    if output == "json":
        body = {
            "resources": [preview_json(p) for p in previews],
            "summary": counts(p.plan for p in previews),
            "exit_code": code,
        }
        print(json.dumps(body, indent=2))
        return code
    for p in previews:
        for line in preview_lines(p, style):
            print(line)
    if failed:
        print(style("the deploy would fail: see above", "red"))
    elif changes:
        print(count_line(p.plan for p in previews))
    return code


# -- drift and apply ---------------------------------------------------------------------------


def _drift(args: argparse.Namespace, style: Style) -> int:
    aws = _aws(args)
    stack: DeployedStack | None = None
    if args.stack is not None:
        stack = read_stack(aws, args.stack)
        registry, where = _stack_registry(aws, stack, args.registry_table)
    elif args.registry_table is not None:
        registry = DynamoDBRegistry(aws.client("dynamodb"), args.registry_table)
        where = RegistryLocation(args.registry_table, "", "--registry-table")
    else:
        try:
            main = read_stack(aws, args.main_stack)
        except StackError as error:
            raise UsageError(
                f"{error}: name the registry with --stack, --main-stack or --registry-table"
            ) from error
        registry, where = _stack_registry(aws, main, None)
    print(f"registry: {where.table} ({where.source})", file=sys.stderr)
    keys = drifts.registered_keys(registry, stack.stack_id if stack else None)
    if stack is not None:
        _unregistered(stack, keys)
    results = drifts.check(aws.iam(READ_ONLY), registry, keys)
    drifted = any(c.status in ("drifted", "replaced") for c in results)
    failed = any(c.status == "failed" for c in results)
    code = EXIT_ERROR if failed else EXIT_DRIFT if drifted else EXIT_OK
    if args.output == "json":
        print(json.dumps({"resources": [checked_json(c) for c in results], "exit_code": code},
                         indent=2))  # fmt: skip
        return code
    if not results:
        scope = f"stack {args.stack}" if args.stack else "any stack"
        print(f"the registry holds no resource of {scope}")
    for checked in results:
        for line in checked_lines(checked, style):
            print(line)
    if drifted:
        print(
            "a deploy with unchanged parameters corrects nothing (CloudFormation sends a custom "
            "resource no request then): use apply, or DriftAction correct"
        )
    return code


def _apply(args: argparse.Namespace, style: Style) -> int:
    aws = _aws(args)
    stack = read_stack(aws, args.stack)
    registry, where = _stack_registry(aws, stack, args.registry_table)
    print(f"registry: {where.table} ({where.source})", file=sys.stderr)
    iam = aws.iam()
    keys = drifts.registered_keys(registry, stack.stack_id)
    unregistered = _unregistered(stack, keys)
    results = drifts.check(iam, registry, keys)
    for checked in results:
        for line in checked_lines(checked, style):
            print(line)
    todo = [c for c in results if c.correctable]
    stuck = [c for c in results if c.status in ("replaced", "failed")]
    if not todo:
        print("nothing to apply" + ("" if stuck or unregistered else ": every group is in sync"))
        return EXIT_ERROR if stuck else EXIT_OK
    total = sum(len(c.plan) for c in todo)
    groups = ", ".join(c.group for c in todo)
    if not args.yes and not _confirmed(f"apply these {total} changes to {groups}?"):
        print("apply cancelled: nothing changed", file=sys.stderr)
        return EXIT_ERROR
    for checked, applied in drifts.correct(iam, registry, todo):
        print(style(f"applied {applied} changes to group {checked.group}", "green"))
    after = drifts.check(iam, registry, [c.key for c in todo])
    left = [c for c in after if c.status != "in-sync"]
    for checked in left:
        print(f"still differs: {checked.key.logical_id}: group {checked.group or '-'}")
    return EXIT_ERROR if left or stuck else EXIT_OK


def _unregistered(stack: DeployedStack, keys: Sequence[ResourceKey]) -> list[str]:
    """The stack's resources the registry has no record of, said so (on stderr)."""
    missing = sorted({r.logical_id for r in stack.resources} - {k.logical_id for k in keys})
    for logical in missing:
        print(
            f"not registered: {logical} of stack {stack.name} (deployed before the registry, "
            "or never created): not checked; deploy it once with this version",
            file=sys.stderr,
        )
    return missing


def _confirmed(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("apply asks before changing IAM: run it in a terminal, or pass --yes")
    answer = input(f"{question} Only 'yes' is accepted: ")
    return answer.strip() == "yes"


# -- policy ------------------------------------------------------------------------------------


def _policy(args: argparse.Namespace, _style: Style) -> int:
    """The document a reviewer reads before deploying: JSON on stdout, its size on stderr."""
    aws = _aws(args)
    _no_mixing(args)
    if args.event:
        event = _read_event(args.event)
        props = event.get("ResourceProperties", {})
        env = _environment(args, aws, _event_token(event))
    else:
        props = _flag_properties(args)
        env = _environment(args, aws, None)
    declared = parse_properties(props, env)
    text = policy.render(declared.policy_document)
    print(json.dumps(declared.policy_document, indent=2))
    size = policy.counted_size(text)
    print(
        f"{declared.policy_name}: {size} of {policy.MAX_GROUP_INLINE_POLICY_CHARS} characters "
        f"(whitespace not counted), {declared.profile} profile, Jets {declared.jets_version}",
        file=sys.stderr,
    )
    return EXIT_OK


# -- invoke and demo ---------------------------------------------------------------------------


@contextlib.contextmanager
def _local_aws(
    aws: Aws, seed_users: Sequence[str], table: str
) -> Iterator[IAMClient]:  # fmt: skip
    """IAM (and the registry table) for an in-process handler: embedded, or the endpoint."""
    if aws.endpoint_url is None:
        from jets_deploy_iam_cli.local.emulator import embedded_aws

        with embedded_aws(seed_users) as embedded:
            yield embedded.iam
        return
    from jets_deploy_iam.registry.store import TABLE_VARIABLE, create_table
    from jets_deploy_iam_cli.aws import environment

    dynamodb = aws.client("dynamodb")
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        create_table(dynamodb, table)
    iam = aws.iam()
    for user in seed_users:
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=user)
    with aws.for_the_handler(), environment({TABLE_VARIABLE: table}):
        yield iam


def _group_state(client: IAMClient, name: str) -> dict[str, Any] | None:
    group = read_group(client, name) if name and ":" not in name else None
    if group is None:
        return None
    return {
        "GroupName": group.name,
        "Path": group.path,
        "Arn": group.arn,
        "Members": sorted(group.members),
        "InlinePolicies": sorted(group.inline_policies),
        "ManagedPolicyArns": sorted(group.managed_policy_arns),
    }


def _invoke(args: argparse.Namespace, _style: Style) -> int:
    from jets_deploy_iam_cli.local.invoke import invoke
    from jets_deploy_iam_cli.local.receiver import ResponseReceiver

    aws = _aws(args)
    event = _read_event(args.event)
    with (
        _local_aws(aws, args.seed_users, args.registry_table) as client,
        ResponseReceiver() as receiver,
    ):
        response: Mapping[str, Any] = invoke(event, receiver, args.timeout)
        group = _group_state(client, str(response.get("PhysicalResourceId", "")))
    print(json.dumps({"response": response, "group": group}, indent=2))
    _hint(aws, response)
    return EXIT_OK if response.get("Status") == "SUCCESS" else EXIT_ERROR


def _hint(aws: Aws, response: Mapping[str, Any]) -> None:
    reason = str(response.get("Reason") or "")
    if aws.local and ":policy/" in reason and "does not exist" in reason:
        print(
            "hint: a moto server knows AWS managed policies only when started with "
            "MOTO_IAM_LOAD_MANAGED_POLICIES=true",
            file=sys.stderr,
        )


def _demo(_args: argparse.Namespace, _style: Style) -> int:
    from jets_deploy_iam_cli.local.demo import run

    return run()


_COMMANDS = {
    "plan": _plan,
    "drift": _drift,
    "apply": _apply,
    "policy": _policy,
    "invoke": _invoke,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args, Style.for_stream(sys.stdout))
    except Exception as error:  # every expected failure: one line on stderr
        message = _one_line(error, getattr(args, "endpoint_url", None))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


#: What the ``[local]`` extra installs (``demo`` and ``invoke`` import them).
_LOCAL_TOOLS = frozenset({"moto", "cryptography", "werkzeug", "flask", "responses"})


def _one_line(error: Exception, endpoint: str | None) -> str | None:
    """What to tell the user about ``error``; None for a bug (its traceback is wanted)."""
    if isinstance(error, NoCredentialsError):
        if endpoint is not None:
            return (
                "the --profile given has no credentials (without --profile, --endpoint-url "
                "uses dummy ones)"
            )
        return (
            "no AWS credentials found: configure them (aws configure, AWS_PROFILE, --profile), "
            "or pass --endpoint-url to use a local emulator (a moto server)"
        )
    if isinstance(error, ModuleNotFoundError) and str(error.name).split(".")[0] in _LOCAL_TOOLS:
        return (
            f"this command needs the local tools ({error.name} is missing): "
            "pip install 'jets-deploy-iam[local]'"
        )
    if isinstance(error, NoRegionError):
        return "no region: pass --region (the stack's region) or set AWS_REGION"
    if isinstance(error, ResponseParserError):
        where = endpoint or "AWS"
        return f"the answer from {where} is not an AWS API response (is it a moto server?)"
    if isinstance(error, ClientError):
        operation = getattr(error, "operation_name", "a call")
        return f"AWS refused {operation}: {error_code(error)}: {error_message(error)}"
    if isinstance(error, (CliError, UsageError, StackError, JetsDeployIamError, BotoCoreError)):
        return " ".join(str(error).split())
    return None


if __name__ == "__main__":
    sys.exit(main())
