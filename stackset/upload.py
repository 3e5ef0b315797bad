"""Upload the StackSet's code artifacts to the artifact bucket of each region.

    python stackset/upload.py --bucket-prefix jets-deploy-iam-111122223333 --region eu-west-1

For every zip that stackset/template.json points at, in every region given: upload
dist/<sha256>.zip to <bucket-prefix>-<region> under the same key, unless it is already there.
Run it with the management (or delegated admin) account's credentials, before
create-stack-set or update-stack-set.

Keys are content-addressed, so an upload never replaces anything: a key already present with
other bytes is an error, and nothing is ever deleted (rollbacks of stack instances load the code
an earlier template points at). S3 checks each upload against its SHA-256.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from generate import ARTIFACT_BUCKET  # stdlib-only at import: no samtranslator needed here

HERE = Path(__file__).resolve().parent


class UploadError(Exception):
    """A reason an artifact was not (or must not be) uploaded."""


@dataclass(frozen=True)
class LocalArtifact:
    """A zip of dist/ and the SHA-256 its key claims."""

    key: str
    path: Path

    def read_verified(self) -> bytes:
        """The zip's bytes, after checking they still hash to the key (no stale or edited zip)."""
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() + ".zip" != self.key:
            raise UploadError(f"{self.path} does not hash to its name: run `make stackset`")
        return data


def referenced_keys(template: dict[str, Any]) -> list[str]:
    """The S3 keys of the functions whose code the template loads from the artifact bucket."""
    keys = set()
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        code = resource.get("Properties", {}).get("Code", {})
        if code.get("S3Bucket") == ARTIFACT_BUCKET:
            keys.add(code["S3Key"])
    return sorted(keys)


def artifacts(template_path: Path, dist: Path) -> list[LocalArtifact]:
    """The local zips the template needs, each of which must exist."""
    template = json.loads(template_path.read_text())
    found = []
    for key in referenced_keys(template):
        path = dist / key
        if not path.is_file():
            raise UploadError(f"{template_path} needs {path}: run `make stackset`")
        found.append(LocalArtifact(key, path))
    if not found:
        raise UploadError(f"{template_path} loads no code from the artifact bucket")
    return found


def stored_sha256(s3: S3Client, bucket: str, key: str) -> str | None:
    """The SHA-256 (hex) of the object stored under key, or None if there is none.

    Read from the bytes themselves (a megabyte or so), not from checksum metadata that an
    object put by other means may lack.
    """
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "NoSuchBucket":
            raise UploadError(
                f"no bucket {bucket}: deploy stackset/artifact-bucket.yaml in its region first"
            ) from error
        if code in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    return hashlib.sha256(body).hexdigest()


def upload_one(s3: S3Client, bucket: str, artifact: LocalArtifact) -> str:
    """Put one artifact unless present; say what happened. Never overwrites, never deletes."""
    data = artifact.read_verified()
    digest = hashlib.sha256(data)
    stored = stored_sha256(s3, bucket, artifact.key)
    if stored == digest.hexdigest():
        return f"s3://{bucket}/{artifact.key}: already there"
    if stored is not None:
        raise UploadError(
            f"s3://{bucket}/{artifact.key} exists with other content (SHA-256 {stored}): not"
            " overwriting a key stack instances may point at; investigate"
        )
    s3.put_object(
        Bucket=bucket,
        Key=artifact.key,
        Body=data,
        ChecksumSHA256=base64.b64encode(digest.digest()).decode(),  # S3 verifies it on arrival
        ContentType="application/zip",
    )
    return f"s3://{bucket}/{artifact.key}: uploaded ({len(data)} bytes)"


def upload(
    bucket_prefix: str,
    regions: list[str],
    local: list[LocalArtifact],
    endpoint_url: str | None = None,
) -> Iterator[str]:
    """Upload every artifact to <bucket_prefix>-<region> for each region, yielding progress."""
    for region in regions:
        s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
        for artifact in local:
            yield upload_one(s3, f"{bucket_prefix}-{region}", artifact)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line: the bucket prefix, the regions, and where the generated files are."""
    parser = argparse.ArgumentParser(description="Upload the StackSet's code artifacts to S3.")
    parser.add_argument(
        "--bucket-prefix",
        required=True,
        help="the artifact bucket stack's ArtifactBucketPrefix output (<name>-<account id>)",
    )
    parser.add_argument(
        "--region",
        action="append",
        required=True,
        dest="regions",
        help="a home region (repeat for several); the bucket is <prefix>-<region>",
    )
    parser.add_argument("--template", type=Path, default=HERE / "template.json")
    parser.add_argument("--dist", type=Path, default=HERE / "dist")
    parser.add_argument("--endpoint-url", help="an S3 endpoint other than AWS's (tests)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Upload, printing one line per artifact and region; exit 1 on the first problem."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        local = artifacts(args.template, args.dist)
        for line in upload(args.bucket_prefix, args.regions, local, args.endpoint_url):
            print(line)
    except (UploadError, ClientError, BotoCoreError) as error:
        print(f"upload: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
