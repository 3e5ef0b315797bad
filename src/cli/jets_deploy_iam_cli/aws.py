"""Where the command line's AWS calls go: credentials, region and endpoint, decided once.

IAM is global, so a read of IAM needs no region from the user: it defaults to us-east-1 (IAM's
home region) when nothing else is configured. CloudFormation, DynamoDB (the registry) and Lambda
are regional: their region is ``--region``, else the profile's or the environment's, else (only
with ``--endpoint-url``, where it means nothing) us-east-1.

With ``--endpoint-url`` (a moto server, LocalStack) the calls are signed with dummy credentials
unless ``--profile`` names others: a local emulator needs no real keys, and real keys have no
business being sent to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3

from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.iam.client import make_iam_client

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

#: IAM's home region: its global endpoint signs requests for it.
IAM_REGION = "us-east-1"
#: Read-only commands have a person waiting: a few attempts, not the function's eight (an
#: endpoint nobody listens on is an answer after a second, not after ten).
READ_ONLY = ReconcileConfig(max_attempts=3)
#: What a local emulator accepts as credentials (moto's documented test values).
DUMMY_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


class UsageError(Exception):
    """A flag the user can fix: printed as one line, no traceback."""


def check_endpoint(url: str | None) -> str | None:
    """``url`` if it is an http(s) URL with a host; a one-line error naming the fix otherwise.

    botocore answers a scheme-less endpoint with a ValueError deep in client creation.
    """
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f": did you mean http://{url}?" if "://" not in url else ""
        raise UsageError(f"--endpoint-url {url!r} is not an http:// or https:// URL{hint}")
    return url


@dataclass(frozen=True)
class Aws:
    """The user's choice of account access: ``--region``, ``--profile``, ``--endpoint-url``."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    @property
    def local(self) -> bool:
        """Talking to an emulator: dummy credentials, any region will do."""
        return self.endpoint_url is not None

    def session(self, region: str | None = None) -> boto3.session.Session:
        dummy = self.local and self.profile is None
        return boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"] if dummy else None,
            aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"] if dummy else None,
            aws_session_token=DUMMY_CREDENTIALS["aws_session_token"] if dummy else None,
            profile_name=self.profile,
            region_name=region or self.region,
        )

    def regional_region(self) -> str:
        """The region of the regional services (the stack's, the registry's)."""
        region = self.region or self.session().region_name
        if region:
            return region
        if self.local:
            return IAM_REGION
        raise UsageError(
            "no region: pass --region (the stack's region) or set AWS_REGION / a profile region"
        )

    def global_region(self) -> str:
        """The region of a global service's calls (IAM, STS): no need to ask the user."""
        return self.region or self.session().region_name or IAM_REGION

    def client(self, service: str, region: str | None = None) -> Any:
        """A client of a regional service (cloudformation, dynamodb, lambda, sts)."""
        where = region or self.regional_region()
        return self.session(where).client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def iam(self, config: ReconcileConfig | None = None) -> IAMClient:
        """IAM as the function calls it (its call path: pacing, retries), in IAM's region."""
        return make_iam_client(config, self.endpoint_url, self.session(self.global_region()))

    @contextlib.contextmanager
    def for_the_handler(self) -> Iterator[None]:
        """The environment the in-process handler builds its own clients from (it reads no
        flags): this endpoint for IAM and DynamoDB, a region, the credentials; restored after."""
        values: dict[str, str] = {"AWS_DEFAULT_REGION": self.regional_region()}
        if self.endpoint_url is not None:
            values |= {
                "AWS_ENDPOINT_URL_IAM": self.endpoint_url,
                "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint_url,
            }
        if self.profile is not None:
            values["AWS_PROFILE"] = self.profile
        elif self.local:
            values |= {key.upper(): value for key, value in DUMMY_CREDENTIALS.items()}
        with environment(values):
            yield


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (None: unset it); every key is restored
    (or removed) after."""
    saved = {key: os.environ.get(key) for key in values}
    _set_environment(values)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
