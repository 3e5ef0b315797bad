"""Real processes for end-to-end tests: a moto server and the handler as Lambda would run it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from helpers import TABLE
from jets_deploy_iam.registry.store import create_table
from jets_deploy_iam_cli.local.receiver import ResponseReceiver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def started_moto_server() -> Iterator[str]:
    """``moto_server`` on a free loopback port, AWS managed policies loaded."""
    port = _free_port()
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        dynamodb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        create_table(dynamodb, TABLE)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """One moto server per test module, so modules never see each other's IAM state."""
    with started_moto_server() as url:
        yield url


def run_handler(
    event: dict[str, Any],
    receiver: ResponseReceiver,
    endpoint: str,
    tmp: Path,
    python: Sequence[str] = (sys.executable,),
    extra_env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """One Lambda invocation in a fresh interpreter; returns (response, everything it printed)."""
    request = {**event, "ResponseURL": receiver.url(event["RequestId"])}
    path = tmp / f"{event['RequestId']}.json"
    path.write_text(json.dumps(request))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_IAM": endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "JETS_REGISTRY_TABLE": TABLE,
        "SSL_CERT_FILE": str(receiver.cafile),
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_SERVICE_NAME": "jets-deploy-iam",
        "AWS_LAMBDA_FUNCTION_NAME": "jets-deploy-iam",
        **(extra_env or {}),
    }
    done = subprocess.run(
        [*python, "-m", "jets_deploy_iam_cli.local.runtime", str(path)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    response = receiver.take(event["RequestId"], timeout=10)
    assert response["_path"].endswith(event["RequestId"])
    return response, done.stdout + done.stderr
