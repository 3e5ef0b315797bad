"""Smoke test of what `sam build` produced: the built function directory alone (no repo src/ on
the path), under a python3.13 that has only boto3 like the Lambda runtime, handles
events/create.json against a moto server.

The artifact is built for arm64; its dependencies are pure Python, so the same files load here.
`make test` runs `sam build` and creates the runtime venv before pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from processes import run_handler

pytestmark = pytest.mark.sam  # `make unit` leaves these to `make test`/`make artifact`

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build" / "JetsDeployIamFunction"
RUNTIME_PYTHON = ROOT / ".venv-runtime" / "bin" / "python"
CLI = ROOT / "src" / "cli"  # only for the local runtime shim that calls the built handler


def test_artifact_contains_only_the_function_and_its_runtime_requirements() -> None:
    assert BUILD.is_dir(), "no build output: run `make test` (it runs `sam build` first)"
    top = {p.name.split("-")[0] for p in BUILD.iterdir() if not p.name.endswith(".dist-info")}
    assert {"jets_deploy_iam", "crhelper", "aws_lambda_powertools"} <= top
    assert not any(name.startswith(("boto3", "botocore", "moto", "pytest")) for name in top)
    assert "jets_deploy_iam_cli" not in top  # the command line is not part of the bundle


def test_built_function_handles_create_without_the_repo(moto_server: str, tmp_path: Path) -> None:
    assert RUNTIME_PYTHON.exists(), "no runtime venv: run `make test`"
    env = {"PYTHONPATH": f"{BUILD}:{CLI}", "PYTHONNOUSERSITE": "1"}
    where = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", "import sys, jets_deploy_iam, crhelper; "
         "print(sys.version_info[:2], jets_deploy_iam.__file__, crhelper.__file__)"],
        env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "(3, 13)" in where.stdout
    assert where.stdout.count(str(BUILD)) == 2
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1")
    for user in ("alice", "bob"):
        iam.create_user(UserName=user)
    event = json.loads((ROOT / "events" / "create.json").read_text())
    event["RequestId"] = "artifact-smoke-test"
    event["ResourceProperties"]["GroupName"] = "JetsArtifactSmoke"
    with ResponseReceiver(tmp_path) as receiver:
        response, _ = run_handler(
            event, receiver, moto_server, tmp_path, python=(str(RUNTIME_PYTHON),), extra_env=env
        )
    assert response["Status"] == "SUCCESS", response["Reason"]
    group = iam.get_group(GroupName="JetsArtifactSmoke")
    assert {u["UserName"] for u in group["Users"]} == {"alice", "bob"}
