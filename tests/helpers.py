"""Small builders shared by the IAM-level tests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jets_deploy_iam.spec import DeclaredGroup, Environment, parse_properties

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ACCOUNT = "123456789012"  # moto's default account
ENV = Environment("aws", ACCOUNT)


def declared(**props: Any) -> DeclaredGroup:
    return parse_properties(props, ENV)


def make_policy(client: IAMClient, name: str) -> str:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    return client.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"][
        "Arn"
    ]


def make_users(client: IAMClient, names: list[str]) -> None:
    for name in names:
        client.create_user(UserName=name)
