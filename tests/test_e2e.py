"""End to end with real processes: a moto server, the handler in its own Python process per
request (as the Lambda runtime runs it) and a local HTTPS receiver for the presigned URL.

Every fixture in events/ is sent in lifecycle order; responses and the final IAM state are
asserted, and the handler's whole output (at DEBUG) is checked for the URL's signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from jets_deploy_iam_cli.local.receiver import SIGNATURE, ResponseReceiver
from processes import run_handler

EVENTS = Path(__file__).resolve().parent.parent / "events"
pytestmark = pytest.mark.e2e


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def test_every_fixture_in_lifecycle_order(moto_server: str, tmp_path: Path) -> None:
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1")
    for user in ("alice", "bob", "carol"):
        iam.create_user(UserName=user)
    output = ""
    with ResponseReceiver(tmp_path) as receiver:

        def send(event: dict[str, Any]) -> dict[str, Any]:
            nonlocal output
            response, printed = run_handler(event, receiver, moto_server, tmp_path)
            output += printed
            return response

        invalid = send(load("create-invalid.json"))
        assert invalid["Status"] == "FAILED"
        assert "GroupName 'Jets Deployers'" in invalid["Reason"]
        assert iam.list_groups()["Groups"] == []

        created = send(load("create.json"))
        assert created["Status"] == "SUCCESS", created["Reason"]
        assert created["PhysicalResourceId"] == "Jets"
        group_id = created["Data"]["GroupId"]

        updated = send(load("update-users.json"))
        assert updated["Status"] == "SUCCESS", updated["Reason"]
        members = {u["UserName"] for u in iam.get_group(GroupName="Jets")["Users"]}
        assert members == {"alice", "carol"}

        renamed = send(load("update-rename.json"))
        assert renamed["Status"] == "SUCCESS", renamed["Reason"]
        assert renamed["PhysicalResourceId"] == "JetsDeployers"
        assert renamed["Data"]["GroupId"] != group_id  # a replacement, like AWS::IAM::Group
        assert iam.get_group(GroupName="Jets")["Group"]["GroupId"] == group_id  # still intact

        # CloudFormation's cleanup then deletes the old physical id.
        cleanup = {**load("delete.json"), "PhysicalResourceId": "Jets", "RequestId": "cleanup-1"}
        assert send(cleanup)["Status"] == "SUCCESS"
        assert [g["GroupName"] for g in iam.list_groups()["Groups"]] == ["JetsDeployers"]
        attached = iam.list_attached_group_policies(GroupName="JetsDeployers")["AttachedPolicies"]
        assert [p["PolicyName"] for p in attached] == ["AWS_ConfigRole"]

        deleted = send(load("delete.json"))
        assert deleted["Status"] == "SUCCESS", deleted["Reason"]

    assert iam.list_groups()["Groups"] == []
    assert {u["UserName"] for u in iam.list_users()["Users"]} == {"alice", "bob", "carol"}
    assert "request finished" in output
    assert '"name":"jets_deploy_iam.protocol"' in output  # module loggers go through Powertools
    assert "'ResponseURL'" not in output  # crhelper never below INFO, even at DEBUG
    assert SIGNATURE not in output
