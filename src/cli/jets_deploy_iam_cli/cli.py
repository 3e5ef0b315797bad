"""The command line for people: see it work, preview a deploy, detect drift, run an event.

    jets-deploy-iam demo                  the whole lifecycle against an embedded IAM
    jets-deploy-iam plan [--event E | flags]   what a Create/Update/Delete would change
    jets-deploy-iam policy [--event E | flags] the inline policy those properties grant
    jets-deploy-iam drift --stack NAME    what differs between a deployed stack and IAM
    jets-deploy-iam invoke EVENT.json     run a CloudFormation event through the handler

Exit codes: 0 success (drift: in sync), 1 error or FAILED response, 2 drift found (drift) or
bad usage (argparse). `plan` and `drift` only read: they never write to IAM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from jets_deploy_iam import policy
from jets_deploy_iam.exceptions import JetsDeployIamError
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.plan import Plan
from jets_deploy_iam.registry.store import MemoryRegistry
from jets_deploy_iam.spec import Environment, parse_properties
from jets_deploy_iam_cli.preview import preview, request_for_properties, request_from_event
from jets_deploy_iam_cli.render import Style, plan_lines

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""


def _csv(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def _add_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url", help="IAM/CloudFormation endpoint (a moto server); default: AWS"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jets-deploy-iam",
        description="Custom::JetsDeployGroup: the IAM group Ruby on Jets deployers need.",
        epilog="Exit codes: 0 ok, 1 error or FAILED, 2 drift found (drift) or usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "demo",
        help="run the whole lifecycle against an embedded IAM emulator (no AWS account)",
        description="Create, update, a failing update, rename and delete, with the real handler.",
    )

    plan = commands.add_parser(
        "plan",
        help="print what a deploy would change (reads IAM, never writes)",
        description=(
            "Reads the account (default credentials, or --endpoint-url) and prints the changes "
            "a Create/Update/Delete would make. With flags, plans an Update of the group named "
            "--group-name if it exists, else a Create. Never writes."
        ),
    )
    _add_property_flags(plan)
    _add_endpoint(plan)

    shown = commands.add_parser(
        "policy",
        help="print the inline policy a set of properties grants (no AWS call with --account-id)",
        description=(
            "Prints, as JSON on stdout, the policy document the group would get from these "
            "properties (flags, or an event's ResourceProperties); its size as IAM counts it "
            "on stderr. Reads nothing from AWS when --account-id or the event's ServiceToken "
            "gives the account."
        ),
    )
    _add_property_flags(shown)
    _add_endpoint(shown)

    drift = commands.add_parser(
        "drift",
        help="compare a deployed stack's declared group with IAM (exit 2 if drifted)",
        description=(
            "Reads the stack's parameters (DescribeStacks), builds the declared group from them "
            "and reports what differs in IAM. Exit 0 in sync, 2 drifted, 1 error."
        ),
    )
    drift.add_argument("--stack", required=True, help="the jets-deploy-iam stack's name")
    _add_endpoint(drift)

    invoke = commands.add_parser(
        "invoke",
        help="run a CloudFormation request event through the real handler, locally",
        description=(
            "Runs the Lambda handler in this process against the embedded IAM emulator (or "
            "--endpoint-url), captures the response it PUTs to the ResponseURL and prints it "
            "with the group's resulting state. Exit 0 on SUCCESS, 1 on FAILED."
        ),
    )
    invoke.add_argument("event", type=Path, help="event JSON, e.g. events/create.json")
    invoke.add_argument(
        "--seed-users", type=_csv, default=[], help="users to create first (alice,bob)"
    )
    invoke.add_argument("--timeout", type=float, default=300.0, help="Lambda timeout (seconds)")
    _add_endpoint(invoke)
    return parser


def _add_property_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event", type=Path, help="a CloudFormation request event (JSON)")
    parser.add_argument("--group-name")
    parser.add_argument("--group-path")
    parser.add_argument("--policy-name")
    parser.add_argument("--policy-profile", choices=["baseline", "scoped"])
    parser.add_argument("--jets-version", help="3, 4, 5 (default) or 6")
    parser.add_argument("--resource-prefix", help="scoped: the Jets project name")
    parser.add_argument("--users", help="comma-separated IAM user names")
    parser.add_argument("--managed-policy-arns", help="comma-separated policy ARNs")
    parser.add_argument(
        "--app-managed-policy-arns", help="scoped: policy ARNs the app's roles may attach"
    )
    parser.add_argument("--services", help="comma-separated service prefixes (baseline)")
    parser.add_argument("--additional-actions", help="comma-separated actions")
    parser.add_argument("--exclusive", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--adopt-existing-group", action=argparse.BooleanOptionalAction, default=None
    )
    parser.add_argument("--account-id", help="for scoped ARNs (default: from the event or STS)")
    parser.add_argument("--partition", default=None, help="aws, aws-cn, aws-us-gov")


def _client(service: str, endpoint_url: str | None) -> Any:
    """A client from a fresh session, so credentials are resolved now, as the user set them."""
    session = boto3.session.Session()
    return session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]


def _read_event(path: Path) -> dict[str, Any]:
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}") from error
    if not isinstance(event, dict) or "RequestType" not in event:
        raise CliError(f"{path} is not a CloudFormation request event (no RequestType)")
    return event


# -- plan ---------------------------------------------------------------------------------

_FLAG_PROPERTIES = {
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
}


def _environment(args: argparse.Namespace, token: str | None) -> Environment:
    if args.account_id:
        return Environment(args.partition or "aws", args.account_id)
    if token:
        return Environment.from_function_arn(token)
    identity = _client("sts", args.endpoint_url).get_caller_identity()
    partition = str(identity["Arn"]).split(":")[1]
    return Environment(args.partition or partition, str(identity["Account"]))


def _plan(args: argparse.Namespace, out: Style) -> int:
    iam: IAMClient = _client("iam", args.endpoint_url)
    registry = MemoryRegistry()  # issue 12: the deployed stack's registry table
    if args.event:
        event = _read_event(args.event)
        props = event.get("ResourceProperties", {})
        token = props.get("ServiceToken") if isinstance(props, dict) else None
        request = request_from_event(event, _environment(args, token or event.get("ServiceToken")))
    else:
        request = request_for_properties(iam, _flag_properties(args), _environment(args, None))
    decision = preview(iam, registry, request)
    name = request.physical_id if request.kind == "Delete" else request.declared.group_name
    return _print_plan(f"{request.kind} of {name}", decision.plan, out)


def _flag_properties(args: argparse.Namespace) -> dict[str, Any]:
    return {
        prop: str(value).lower() if isinstance(value, bool) else value
        for flag, prop in _FLAG_PROPERTIES.items()
        if (value := getattr(args, flag)) is not None
    }


def _print_plan(title: str, plan: Plan, style: Style) -> int:
    print(style(f"plan: {title}", "bold"))
    for line in plan_lines(plan, style):
        print(line)
    if plan:
        counts = {s: sum(1 for c in plan if c.symbol == s) for s in "+~-"}
        print(f"{counts['+']} to add, {counts['~']} to change, {counts['-']} to remove.")
    return EXIT_OK


# -- policy -------------------------------------------------------------------------------


def _policy(args: argparse.Namespace, _style: Style) -> int:
    """The document a reviewer reads before deploying: JSON on stdout, its size on stderr."""
    if args.event:
        event = _read_event(args.event)
        props = event.get("ResourceProperties", {})
        token = props.get("ServiceToken") if isinstance(props, dict) else None
        env = _environment(args, token or event.get("ServiceToken"))
    else:
        props = _flag_properties(args)
        env = _environment(args, None)
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


# -- drift --------------------------------------------------------------------------------


def _drift(args: argparse.Namespace, style: Style) -> int:
    from jets_deploy_iam_cli.stack import read_stack

    deployed = read_stack(_client("cloudformation", args.endpoint_url), args.stack)
    iam: IAMClient = _client("iam", args.endpoint_url)
    request = request_from_event(
        {
            "RequestType": "Update",
            "PhysicalResourceId": deployed.physical_id,
            "ResourceProperties": deployed.properties,
            "OldResourceProperties": deployed.properties,
        },
        deployed.env,
    )
    plan = preview(iam, MemoryRegistry(), request).plan
    if not plan:
        print(style(f"in sync: group {deployed.physical_id} matches stack {args.stack}", "green"))
        return EXIT_OK
    print(style(f"drifted: group {deployed.physical_id} differs from stack {args.stack}", "red"))
    print("the next deploy (or an Update) would make these changes:")
    for line in plan_lines(plan, style):
        print(line)
    return EXIT_DRIFT


# -- invoke -------------------------------------------------------------------------------


@contextlib.contextmanager
def _iam(endpoint_url: str | None, seed_users: Sequence[str]) -> Iterator[IAMClient]:
    if endpoint_url is None:
        from jets_deploy_iam_cli.local.emulator import embedded_aws

        with embedded_aws(seed_users) as aws:
            yield aws.iam
        return
    from jets_deploy_iam.registry.store import create_table

    os.environ["AWS_ENDPOINT_URL_IAM"] = endpoint_url
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint_url
    table = os.environ.setdefault("JETS_REGISTRY_TABLE", "jets-deploy-iam-registry")
    dynamodb = _client("dynamodb", endpoint_url)
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        create_table(dynamodb, table)
    remote: IAMClient = _client("iam", endpoint_url)
    for user in seed_users:
        with contextlib.suppress(remote.exceptions.EntityAlreadyExistsException):
            remote.create_user(UserName=user)
    yield remote


def _group_state(client: IAMClient, name: str) -> dict[str, Any] | None:
    group = read_group(client, name)
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

    event = _read_event(args.event)
    with _iam(args.endpoint_url, args.seed_users) as client, ResponseReceiver() as receiver:
        response: Mapping[str, Any] = invoke(event, receiver, args.timeout)
        group = _group_state(client, str(response.get("PhysicalResourceId", "")))
    print(json.dumps({"response": response, "group": group}, indent=2))
    return EXIT_OK if response.get("Status") == "SUCCESS" else EXIT_ERROR


def _demo(_args: argparse.Namespace, _style: Style) -> int:
    from jets_deploy_iam_cli.local.demo import run

    return run()


_COMMANDS = {
    "plan": _plan,
    "policy": _policy,
    "drift": _drift,
    "invoke": _invoke,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args, Style.for_stream(sys.stdout))
    except NoCredentialsError:
        print(
            "error: no AWS credentials found: configure a profile (aws configure), or use "
            "--endpoint-url for a local emulator",
            file=sys.stderr,
        )
    except (CliError, JetsDeployIamError) as error:
        print(f"error: {error}", file=sys.stderr)
    except ClientError as error:
        print(f"error: AWS refused: {error}", file=sys.stderr)
    except BotoCoreError as error:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
