"""The command line for people: run a CloudFormation event through the real handler locally.

Exit codes: 0 success, 1 the request FAILED or an error, 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from jets_deploy_iam.iam.reader import read_group

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def _users(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jets-deploy-iam",
        description="Custom::JetsDeployGroup: reconcile the IAM group Ruby on Jets deployers need.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    invoke.add_argument("--endpoint-url", help="IAM endpoint of a running moto server")
    invoke.add_argument(
        "--seed-users", type=_users, default=[], help="users to create first (alice,bob)"
    )
    invoke.add_argument("--timeout", type=float, default=300.0, help="Lambda timeout (seconds)")
    return parser


@contextlib.contextmanager
def _iam(endpoint_url: str | None, seed_users: Sequence[str]) -> Iterator[IAMClient]:
    if endpoint_url is None:
        from jets_deploy_iam.local.emulator import embedded_iam

        with embedded_iam(seed_users) as client:
            yield client
        return
    os.environ["AWS_ENDPOINT_URL_IAM"] = endpoint_url
    client = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1")
    for user in seed_users:
        with contextlib.suppress(client.exceptions.EntityAlreadyExistsException):
            client.create_user(UserName=user)
    yield client


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


def _invoke(args: argparse.Namespace) -> int:
    from jets_deploy_iam.local.invoke import invoke
    from jets_deploy_iam.local.receiver import ResponseReceiver

    try:
        event = json.loads(args.event.read_text())
    except (OSError, ValueError) as error:
        print(f"error: cannot read {args.event}: {error}", file=sys.stderr)
        return 1
    with _iam(args.endpoint_url, args.seed_users) as client, ResponseReceiver() as receiver:
        response = invoke(event, receiver, args.timeout)
        group = _group_state(client, str(response.get("PhysicalResourceId", "")))
    print(json.dumps({"response": response, "group": group}, indent=2))
    return 0 if response.get("Status") == "SUCCESS" else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "invoke":
        return _invoke(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
