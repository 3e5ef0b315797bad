"""Where records live: a small base class, the DynamoDB backend the template creates, and an
in-memory one.

Two kinds of item share the table:

* a resource's **record** (key: StackId, LogicalResourceId), its body compressed JSON so that a
  5,000-member group's ownership and undo record fit DynamoDB's 400 KB item limit;
* a **claim** per group name (key: ``GROUP#<name in lower case>``, ``claim``): which resource owns
  the group of that name, and its GroupId. IAM names are unique case-insensitively, so a name has
  at most one owner: a resource acts on a group only while the claim names it. An adoption takes
  the claim over, which is what ends the previous owner's rights (its Delete then touches
  nothing); two stacks creating one group at once cannot both claim it.

A record and the claims of the groups it holds are written in one transaction, conditional on the
versions read (optimistic locking): a writer that lost a race re-reads and tries again, and never
overwrites a claim someone else took meanwhile. Reading a record and the claims a request needs
is one BatchGetItem; writing them is one PutItem or TransactWriteItems.
"""

from __future__ import annotations

import json
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from jets_deploy_iam.exceptions import RegistryConflictError, RegistryError
from jets_deploy_iam.registry.model import ResourceRecord, record_json, record_of
from jets_deploy_iam.request import ResourceKey

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: The function's environment variable naming its table (template.yaml sets it).
TABLE_VARIABLE = "JETS_REGISTRY_TABLE"
PARTITION_KEY = "StackId"
SORT_KEY = "LogicalResourceId"
CLAIM_PREFIX = "GROUP#"
CLAIM_SORT = "claim"
#: DynamoDB's item limit is 400 KB; keep room for the key and plain attributes.
MAX_BODY_BYTES = 380_000
#: A deleted resource's record (kept for repeated deliveries of its Delete) expires after this.
DELETED_TTL_SECONDS = 30 * 24 * 3600
#: How often a write re-reads and re-applies its change after losing a race.
CONFLICT_RETRIES = 3

Edit = Callable[[ResourceRecord], ResourceRecord]


@dataclass(frozen=True)
class Claim:
    """The resource that owns the group of this name, and that group's GroupId."""

    name: str
    owner: ResourceKey
    #: None while the group is being created (the claim is written before CreateGroup)
    group_id: str | None
    version: int


@dataclass(frozen=True)
class Stored:
    record: ResourceRecord
    #: 0 for a record that is not stored yet
    version: int
    #: the claims read with the record, by group name in lower case (absent: unclaimed)
    claims: Mapping[str, Claim] = field(default_factory=dict)

    def claim(self, name: str) -> Claim | None:
        return self.claims.get(name.lower())

    def owns(self, name: str, group_id: str | None = None) -> bool:
        """Does this resource own the group called ``name`` (with this GroupId, if given)?"""
        claim = self.claim(name)
        return (
            claim is not None
            and claim.owner == self.record.key
            and (group_id is None or claim.group_id in (None, group_id))
        )


@dataclass(frozen=True)
class ClaimWrite:
    """One claim to put (``group_id`` set) or delete, conditional on the version read."""

    name: str
    delete: bool
    group_id: str | None
    #: the version read (0: there was none)
    expected: int
    #: whose claim it is once written (None: the writer's)
    owner: ResourceKey | None = None


@dataclass(frozen=True)
class Unreadable:
    """A record a scan found but cannot decode: reported, and the scan goes on with the rest."""

    key: ResourceKey
    reason: str


class Registry(ABC):
    """The records of every resource this function manages, and the claims of their groups."""

    @abstractmethod
    def _read(
        self, key: ResourceKey, names: Iterable[str]
    ) -> tuple[ResourceRecord, int, dict[str, Claim]]:
        """The record (or an empty one at version 0) and the claims of ``names``."""

    @abstractmethod
    def _read_claims(self, names: Iterable[str]) -> dict[str, Claim]:
        """The claims of ``names`` (lower-cased keys; unclaimed names are absent)."""

    @abstractmethod
    def _write(self, record: ResourceRecord, version: int, claims: list[ClaimWrite]) -> None:
        """Store the record and claims if nothing changed since read (RegistryConflictError)."""

    @abstractmethod
    def scan(self) -> Iterator[Stored | Unreadable]:
        """Every stored record, with the claims of its groups (the scheduled drift check walks
        them all). One record that cannot be decoded is yielded as ``Unreadable``, not raised: it
        must not hide the others. A table that cannot be read raises ``RegistryError``."""

    def save(self, record: ResourceRecord, version: int) -> int:
        """Store ``record`` as it is, claims untouched, if the stored version still is
        ``version``; the new version. (Lifecycle writes go through ``change``.)"""
        self._write(record, version, [])
        return version + 1

    def load(self, key: ResourceKey, names: Iterable[str] = ()) -> Stored:
        """The record and the claims of ``names`` and of every group it holds."""
        asked = {n.lower() for n in names if n}
        record, version, claims = self._read(key, asked)
        missing = {n.lower() for n in record.groups} - asked
        if missing:
            claims.update(self._read_claims(missing))
        return Stored(record, version, claims)

    def change(
        self,
        stored: Stored,
        edit: Edit,
        takeovers: frozenset[str] = frozenset(),
        reapply: bool = True,
    ) -> Stored:
        """Apply ``edit`` and store it with the claims of the groups it holds.

        ``takeovers`` names groups whose claim this change may take from another resource (an
        adoption, or a stale claim of a group that no longer exists); any other claim held by
        someone else is left alone, and the record's entry for it is inert. After losing a race
        the record is read again and ``edit`` re-applied (``reapply``), keeping every ownership
        claim the other writer recorded: ownership is never lost to a race.
        """
        record = edit(stored.record)
        for _attempt in range(CONFLICT_RETRIES if reapply else 0):
            try:
                return self._store(stored, record, takeovers)
            except RegistryConflictError:
                stored = self.load(stored.record.key, takeovers)
                record = _keeping_ownership(edit(stored.record), stored.record)
        return self._store(stored, record, takeovers)

    def _store(self, before: Stored, record: ResourceRecord, takeovers: frozenset[str]) -> Stored:
        writes = _claim_writes(before, record, {n.lower() for n in takeovers})
        self._write(record, before.version, writes)
        claims = dict(before.claims)
        for w in writes:
            if w.delete:
                claims.pop(w.name.lower(), None)
            else:
                owner = w.owner or record.key
                claims[w.name.lower()] = Claim(w.name, owner, w.group_id, w.expected + 1)
        return Stored(record, before.version + 1, claims)


def _claim_writes(before: Stored, record: ResourceRecord, takeovers: set[str]) -> list[ClaimWrite]:
    key = record.key
    writes: list[ClaimWrite] = []
    held = {n.lower() for n in record.groups}
    for name, group in record.groups.items():
        claim = before.claims.get(name.lower())
        if claim is not None and claim.owner != key and name.lower() not in takeovers:
            continue  # taken over by someone else: this entry no longer acts
        if claim is not None and claim.owner == key and claim.group_id == group.group_id:
            continue  # already claimed as it is
        expected = claim.version if claim is not None else 0
        writes.append(ClaimWrite(name, False, group.group_id, expected))
    for name, group in before.record.groups.items():
        claim = before.claims.get(name.lower())
        if name.lower() in held or claim is None or claim.owner != key:
            continue
        back = group.taken_from
        if back is not None:  # never made its own: the claim goes back to whom it was taken from
            writes.append(ClaimWrite(name, False, back.group_id, claim.version, back.owner))
        else:
            writes.append(ClaimWrite(name, True, None, claim.version))
    return writes


def _keeping_ownership(record: ResourceRecord, stored: ResourceRecord) -> ResourceRecord:
    """``record`` with the ownership claims ``stored`` recorded for the same groups added back."""
    groups = {
        name: replace(g, ownership=g.ownership.merged(stored.groups[name].ownership))
        if name in stored.groups and stored.groups[name].group_id == g.group_id
        else g
        for name, g in record.groups.items()
    }
    return replace(record, groups=groups)


class MemoryRegistry(Registry):
    """Records in a dict: for the pure core's tests and read-only previews; counts requests."""

    def __init__(self) -> None:
        self.items: dict[ResourceKey, tuple[bytes, int]] = {}
        self.claim_items: dict[str, Claim] = {}
        self.reads = 0
        self.writes = 0

    def _read(
        self, key: ResourceKey, names: Iterable[str]
    ) -> tuple[ResourceRecord, int, dict[str, Claim]]:
        self.reads += 1
        claims = {n: self.claim_items[n] for n in names if n in self.claim_items}
        if key not in self.items:
            return ResourceRecord(key), 0, claims
        body, version = self.items[key]
        return decode(key, body), version, claims

    def _read_claims(self, names: Iterable[str]) -> dict[str, Claim]:
        self.reads += 1
        return {n: self.claim_items[n] for n in names if n in self.claim_items}

    def _write(self, record: ResourceRecord, version: int, claims: list[ClaimWrite]) -> None:
        self.writes += 1
        if self.items.get(record.key, (b"", 0))[1] != version:
            raise RegistryConflictError(_conflict(record.key))
        for w in claims:
            current = self.claim_items.get(w.name.lower())
            if (current.version if current else 0) != w.expected:
                raise RegistryConflictError(_conflict(record.key))
        self.items[record.key] = (encode(record), version + 1)
        for w in claims:
            if w.delete:
                self.claim_items.pop(w.name.lower(), None)
            else:
                claim = Claim(w.name, w.owner or record.key, w.group_id, w.expected + 1)
                self.claim_items[w.name.lower()] = claim

    def scan(self) -> Iterator[Stored | Unreadable]:
        for key in list(self.items):
            body, version = self.items[key]
            yield _with_claims(_decoded(key, body, version), self.claim_items)


class DynamoDBRegistry(Registry):
    """The table template.yaml creates (on-demand, encrypted, point-in-time recovery)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def _read(
        self, key: ResourceKey, names: Iterable[str]
    ) -> tuple[ResourceRecord, int, dict[str, Claim]]:
        items = self._batch_get([_key(key), *(_claim_key(n) for n in names)])
        record, version = ResourceRecord(key), 0
        claims: dict[str, Claim] = {}
        for item in items:
            if item[PARTITION_KEY]["S"].startswith(CLAIM_PREFIX):
                claim = _claim_of(item)
                claims[claim.name.lower()] = claim
            else:
                record, version = decode(key, item["body"]["B"]), int(item["version"]["N"])
        return record, version, claims

    def _read_claims(self, names: Iterable[str]) -> dict[str, Claim]:
        claims = [_claim_of(i) for i in self._batch_get([_claim_key(n) for n in names])]
        return {c.name.lower(): c for c in claims}

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        pending: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        try:
            while pending:
                page = self.client.batch_get_item(RequestItems=pending)
                found += page.get("Responses", {}).get(self.table, [])
                pending = dict(page.get("UnprocessedKeys") or {})
        except (ClientError, BotoCoreError) as error:
            raise RegistryError(
                f"the registry table {self.table} cannot be read: {error}"
            ) from error
        return found

    def _write(self, record: ResourceRecord, version: int, claims: list[ClaimWrite]) -> None:
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": self._record_item(record, version),
            # Stored versions start at 1: "version = 0" never matches, so 0 means "new".
            "ConditionExpression": "attribute_not_exists(#pk) OR #version = :version",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#version": "version"},
            "ExpressionAttributeValues": {":version": {"N": str(version)}},
        }
        try:
            if not claims:
                self.client.put_item(**put)
            else:
                actions: list[Any] = [{"Put": put}]
                actions += [self._claim_action(record.key, w) for w in claims]
                self.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise RegistryConflictError(_conflict(record.key)) from error
            raise RegistryError(
                f"the registry table {self.table} cannot be written: {error}"
            ) from error
        except BotoCoreError as error:
            raise RegistryError(
                f"the registry table {self.table} cannot be written: {error}"
            ) from error

    def _record_item(self, record: ResourceRecord, version: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            **_key(record.key),
            "version": {"N": str(version + 1)},
            "body": {"B": encode(record)},
            "group_name": {"S": record.current or "-"},
            "updated_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        if record.deleted:
            item["expires_at"] = {"N": str(int(time.time()) + DELETED_TTL_SECONDS)}
        return item

    def _claim_action(self, owner: ResourceKey, write: ClaimWrite) -> dict[str, Any]:
        condition = (
            {
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
            }
            if write.expected == 0
            else {
                "ConditionExpression": "#version = :version",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":version": {"N": str(write.expected)}},
            }
        )
        if write.delete:
            return {"Delete": {"TableName": self.table, "Key": _claim_key(write.name), **condition}}
        owner = write.owner or owner
        item = {
            **_claim_key(write.name),
            "group_name": {"S": write.name},
            "owner_stack": {"S": owner.stack_id},
            "owner_logical_id": {"S": owner.logical_id},
            "version": {"N": str(write.expected + 1)},
            **({"group_id": {"S": write.group_id}} if write.group_id else {}),
        }
        return {"Put": {"TableName": self.table, "Item": item, **condition}}

    def scan(self) -> Iterator[Stored | Unreadable]:
        records: list[tuple[ResourceKey, dict[str, Any]]] = []
        claims: dict[str, Claim] = {}
        paging: dict[str, Any] = {}
        while True:
            try:
                page = self.client.scan(TableName=self.table, ConsistentRead=True, **paging)
            except (ClientError, BotoCoreError) as error:
                raise RegistryError(
                    f"the registry table {self.table} cannot be read: {error}"
                ) from error
            for item in page.get("Items", []):
                if item[PARTITION_KEY]["S"].startswith(CLAIM_PREFIX):
                    claim = _claim_of(item)
                    claims[claim.name.lower()] = claim
                else:
                    records.append(
                        (ResourceKey(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]), item)
                    )
            if "LastEvaluatedKey" not in page:
                break
            paging = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        for key, item in records:
            try:
                body, version = item["body"]["B"], int(item["version"]["N"])
            except (KeyError, ValueError) as error:
                yield Unreadable(key, f"the registry item of {key.logical_id} lacks {error}")
                continue
            yield _with_claims(_decoded(key, body, version), claims)


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


def _with_claims(found: Stored | Unreadable, claims: Mapping[str, Claim]) -> Stored | Unreadable:
    if isinstance(found, Unreadable):
        return found
    names = {n.lower() for n in found.record.groups}
    return replace(found, claims={n: c for n, c in claims.items() if n in names})


def _key(key: ResourceKey) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": key.stack_id}, SORT_KEY: {"S": key.logical_id}}


def _claim_key(name: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": CLAIM_PREFIX + name.lower()}, SORT_KEY: {"S": CLAIM_SORT}}


def _claim_of(item: Mapping[str, Any]) -> Claim:
    return Claim(
        name=item["group_name"]["S"],
        owner=ResourceKey(item["owner_stack"]["S"], item["owner_logical_id"]["S"]),
        group_id=item["group_id"]["S"] if "group_id" in item else None,
        version=int(item["version"]["N"]),
    )


def _conflict(key: ResourceKey) -> str:
    return (
        f"the registry record of {key.logical_id} changed while this request ran "
        "(a concurrent drift check?): deploy again"
    )
