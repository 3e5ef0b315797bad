"""Where records live: a small base class and the DynamoDB backend the template creates.

Every write is conditional on the version read (optimistic locking): two writers of one record
(a CloudFormation request and the scheduled drift check) never overwrite each other blindly.
The record body is stored as compressed JSON in one attribute: a 5,000-member group's ownership
and undo record stay well within DynamoDB's 400 KB item limit, and a few plain attributes (group
name, timestamps) keep the table readable in the console.
"""

from __future__ import annotations

import json
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from jets_deploy_iam.exceptions import RegistryConflictError, RegistryError
from jets_deploy_iam.registry.model import ResourceRecord, record_json, record_of
from jets_deploy_iam.request import ResourceKey

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION_KEY = "StackId"
SORT_KEY = "LogicalResourceId"
#: DynamoDB's item limit is 400 KB; keep room for the key and plain attributes.
MAX_BODY_BYTES = 380_000
#: A deleted resource's record (kept for repeated deliveries of its Delete) expires after this.
DELETED_TTL_SECONDS = 30 * 24 * 3600
#: How often a write re-reads and re-applies its change after losing a race.
CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Stored:
    record: ResourceRecord
    #: 0 for a record that is not stored yet
    version: int


@dataclass(frozen=True)
class Unreadable:
    """A record a scan found but cannot decode: reported, and the scan goes on with the rest."""

    key: ResourceKey
    reason: str


class Registry(ABC):
    """The records of every resource this function manages."""

    @abstractmethod
    def load(self, key: ResourceKey) -> Stored:
        """The stored record, or an empty one at version 0."""

    @abstractmethod
    def save(self, record: ResourceRecord, version: int) -> int:
        """Store ``record`` if the stored version still is ``version``; the new version."""

    @abstractmethod
    def scan(self) -> Iterator[Stored | Unreadable]:
        """Every stored record (the scheduled drift check walks them all). One record that
        cannot be decoded is yielded as ``Unreadable``, not raised: it must not hide the others.
        A table that cannot be read raises ``RegistryError``."""

    def change(self, stored: Stored, edit: Callable[[ResourceRecord], ResourceRecord]) -> Stored:
        """Apply ``edit`` and store it; after losing a race, re-read and apply it again."""
        for _attempt in range(CONFLICT_RETRIES):
            record = edit(stored.record)
            try:
                return Stored(record, self.save(record, stored.version))
            except RegistryConflictError:
                stored = self.load(stored.record.key)
        record = edit(stored.record)
        return Stored(record, self.save(record, stored.version))


class MemoryRegistry(Registry):
    """Records in a dict: for the pure core's tests and read-only previews."""

    def __init__(self) -> None:
        self.items: dict[ResourceKey, tuple[bytes, int]] = {}
        self.reads = 0
        self.writes = 0

    def load(self, key: ResourceKey) -> Stored:
        self.reads += 1
        if key not in self.items:
            return Stored(ResourceRecord(key), 0)
        body, version = self.items[key]
        return Stored(decode(key, body), version)

    def save(self, record: ResourceRecord, version: int) -> int:
        self.writes += 1
        current = self.items.get(record.key, (b"", 0))[1]
        if current != version:
            raise RegistryConflictError(_conflict(record.key))
        self.items[record.key] = (encode(record), version + 1)
        return version + 1

    def scan(self) -> Iterator[Stored | Unreadable]:
        for key in list(self.items):
            body, version = self.items[key]
            yield _decoded(key, body, version)


class DynamoDBRegistry(Registry):
    """The table template.yaml creates (on-demand, encrypted, point-in-time recovery)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def load(self, key: ResourceKey) -> Stored:
        try:
            item = self.client.get_item(
                TableName=self.table, Key=_key(key), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise RegistryError(
                f"the registry table {self.table} cannot be read: {error}"
            ) from error
        if not item:
            return Stored(ResourceRecord(key), 0)
        return Stored(decode(key, item["body"]["B"]), int(item["version"]["N"]))

    def save(self, record: ResourceRecord, version: int) -> int:
        body = encode(record)
        item: dict[str, Any] = {
            **_key(record.key),
            "version": {"N": str(version + 1)},
            "body": {"B": body},
            "group_name": {"S": record.current or "-"},
            "updated_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        if record.deleted:
            item["expires_at"] = {"N": str(int(time.time()) + DELETED_TTL_SECONDS)}
        try:
            # Stored versions start at 1: "version = 0" never matches, so version 0 means "new".
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk) OR #version = :version",
                ExpressionAttributeNames={"#pk": PARTITION_KEY, "#version": "version"},
                ExpressionAttributeValues={":version": {"N": str(version)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise RegistryConflictError(_conflict(record.key)) from error
            raise RegistryError(
                f"the registry table {self.table} cannot be written: {error}"
            ) from error
        except BotoCoreError as error:
            raise RegistryError(
                f"the registry table {self.table} cannot be written: {error}"
            ) from error
        return version + 1

    def scan(self) -> Iterator[Stored | Unreadable]:
        paging: dict[str, Any] = {}
        while True:
            try:
                page = self.client.scan(TableName=self.table, ConsistentRead=True, **paging)
            except (ClientError, BotoCoreError) as error:
                raise RegistryError(
                    f"the registry table {self.table} cannot be read: {error}"
                ) from error
            for item in page.get("Items", []):
                key = ResourceKey(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])
                try:
                    body, version = item["body"]["B"], int(item["version"]["N"])
                except (KeyError, ValueError) as error:
                    yield Unreadable(key, f"the registry item of {key.logical_id} lacks {error}")
                    continue
                yield _decoded(key, body, version)
            if "LastEvaluatedKey" not in page:
                return
            paging = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def create_table(client: DynamoDBClient, table: str) -> None:
    """The table as template.yaml declares it (for emulators: tests, the demo, the CLI)."""
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def encode(record: ResourceRecord) -> bytes:
    body = zlib.compress(json.dumps(record_json(record), sort_keys=True).encode(), 6)
    if len(body) > MAX_BODY_BYTES:
        raise RegistryError(
            f"the registry record of {record.key.logical_id} would be {len(body)} bytes "
            f"compressed, over DynamoDB's item limit: split the group's users across resources"
        )
    return body


def decode(key: ResourceKey, body: bytes) -> ResourceRecord:
    try:
        return record_of(key, json.loads(zlib.decompress(body)))
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as error:
        raise RegistryError(
            f"the registry record of {key.logical_id} is unreadable: {error}"
        ) from error


def _decoded(key: ResourceKey, body: bytes, version: int) -> Stored | Unreadable:
    try:
        return Stored(decode(key, body), version)
    except RegistryError as error:
        return Unreadable(key, str(error))


def _key(key: ResourceKey) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": key.stack_id}, SORT_KEY: {"S": key.logical_id}}


def _conflict(key: ResourceKey) -> str:
    return (
        f"the registry record of {key.logical_id} changed while this request ran "
        "(a concurrent drift check?): deploy again"
    )
