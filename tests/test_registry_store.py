"""The registry's store, both backends (moto's DynamoDB as the template creates it, and the
in-memory one) held to the same contract: records and claims written together and conditionally,
a lost race re-read without losing ownership, claims taken over only when allowed, scans that
report what they cannot decode, and DynamoDB's own limits (item size, unprocessed keys, TTL)."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from jets_deploy_iam.exceptions import RegistryConflictError, RegistryError
from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.registry.model import GroupRecord, ResourceRecord
from jets_deploy_iam.registry.store import (
    CLAIM_PREFIX,
    CLAIM_SORT,
    DELETED_TTL_SECONDS,
    MAX_BODY_BYTES,
    PARTITION_KEY,
    SORT_KEY,
    DynamoDBRegistry,
    MemoryRegistry,
    Registry,
    Stored,
    Unreadable,
    create_table,
    decode,
    encode,
)
from jets_deploy_iam.request import ResourceKey

TABLE = "registry-under-test"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/jets/uuid"
KEY = ResourceKey(STACK, "Group")
OTHER = ResourceKey(STACK, "OtherGroup")


def group(name: str, group_id: str | None = "AGPA1", **fields: Any) -> GroupRecord:
    return GroupRecord(name=name, group_id=group_id, properties={}, document={}, **fields)


def holding(*groups: GroupRecord, key: ResourceKey = KEY) -> Any:
    """An edit: the record holds exactly these groups, the first one current."""

    def edit(record: ResourceRecord) -> ResourceRecord:
        return replace(
            record,
            groups={g.name: g for g in groups},
            current=groups[0].name if groups else None,
        )

    return edit


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> Registry:
    if request.param == "memory":
        return MemoryRegistry()
    return DynamoDBRegistry(request.getfixturevalue("dynamodb"), TABLE)


# -- records and claims ---------------------------------------------------------------------------


def test_a_new_resource_reads_as_an_empty_record_at_version_zero(store: Registry) -> None:
    stored = store.load(KEY, ["Jets"])
    assert stored == Stored(ResourceRecord(KEY), 0, {})


def test_a_change_stores_the_record_and_claims_its_groups(store: Registry) -> None:
    stored = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    assert stored.version == 1
    again = store.load(KEY)
    assert again.record == stored.record
    assert again.version == 1
    claim = again.claim("JETS")  # names are unique case-insensitively
    assert claim is not None
    assert (claim.name, claim.owner, claim.group_id) == ("Jets", KEY, "AGPA1")
    assert again.owns("jets", "AGPA1")
    assert again.claims == stored.claims


def test_a_resource_owns_a_group_only_through_its_own_claim(store: Registry) -> None:
    mine = store.change(store.load(KEY, ["Jets"]), holding(group("Jets", "AGPA1")))
    assert mine.owns("Jets")
    assert not mine.owns("Jets", "AGPA2")  # another group of that name (made since)
    assert not mine.owns("Other")
    theirs = store.load(OTHER, ["Jets"])
    assert not theirs.owns("Jets")


def test_a_claim_written_before_create_group_owns_whatever_id_comes(store: Registry) -> None:
    ahead = store.change(store.load(KEY, ["Jets"]), holding(group("Jets", None)))
    assert ahead.owns("Jets", "AGPA9")
    confirmed = store.change(ahead, holding(group("Jets", "AGPA9")))
    assert store.load(KEY).claim("Jets").group_id == "AGPA9"  # type: ignore[union-attr]
    assert confirmed.version == 2


def test_a_group_no_longer_held_gives_its_claim_up(store: Registry) -> None:
    both = store.change(store.load(KEY, ["Old", "New"]), holding(group("New"), group("Old")))
    left = store.change(both, holding(group("New")))
    assert left.claim("Old") is None
    reread = store.load(KEY, ["Old"])
    assert reread.claim("Old") is None
    assert reread.claim("New") is not None


def test_a_claim_someone_else_holds_is_left_alone_unless_taken_over(store: Registry) -> None:
    store.change(store.load(OTHER, ["Jets"]), holding(group("Jets", "AGPA1"), key=OTHER))
    mine = store.change(store.load(KEY, ["Jets"]), holding(group("Jets", "AGPA2")))
    assert not mine.owns("Jets")
    assert store.load(OTHER).owns("Jets", "AGPA1")
    adopted = store.change(
        store.load(KEY, ["Jets"]), holding(group("Jets", "AGPA2")), takeovers=frozenset({"JETS"})
    )
    assert adopted.owns("Jets", "AGPA2")
    assert not store.load(OTHER).owns("Jets")
    # Giving up a group it no longer owns does not delete the new owner's claim.
    store.change(store.load(OTHER), holding(key=OTHER))
    assert store.load(KEY).owns("Jets")


def test_an_unchanged_claim_is_not_written_again(store: Registry) -> None:
    first = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    second = store.change(first, holding(group("Jets")))
    assert second.claim("Jets").version == first.claim("Jets").version  # type: ignore[union-attr]
    assert store.load(KEY).claim("Jets").version == 1  # type: ignore[union-attr]


def test_save_stores_the_record_and_leaves_claims_alone(store: Registry) -> None:
    stored = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    record = replace(stored.record, in_progress="r1", groups={})
    assert store.save(record, stored.version) == stored.version + 1
    again = store.load(KEY, ["Jets"])
    assert again.record.in_progress == "r1"
    assert again.owns("Jets")  # the claim is still there
    with pytest.raises(RegistryConflictError, match="changed while this request ran"):
        store.save(record, stored.version)


# -- races ----------------------------------------------------------------------------------------


def test_a_writer_that_lost_a_race_rereads_and_keeps_the_others_ownership(
    store: Registry,
) -> None:
    start = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    # Another invocation records that it added alice.
    theirs = group("Jets", ownership=Ownership(members=frozenset({"alice"})))
    store.change(start, holding(theirs))
    # This one, from the stale read, records bob.
    ours = group("Jets", ownership=Ownership(members=frozenset({"bob"})))
    stored = store.change(start, holding(ours))
    assert stored.version == 3
    assert store.load(KEY).record.groups["Jets"].ownership.members == {"alice", "bob"}


def test_a_race_lost_without_reapply_is_an_error(store: Registry) -> None:
    start = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    store.change(start, holding(group("Jets", "AGPA2")))
    with pytest.raises(RegistryConflictError):
        store.change(start, holding(group("Jets", "AGPA3")), reapply=False)


def test_a_race_lost_on_a_claim_is_detected(store: Registry) -> None:
    mine = store.load(KEY, ["Jets"])
    store.change(store.load(OTHER, ["Jets"]), holding(group("Jets", "AGPA1"), key=OTHER))
    with pytest.raises(RegistryConflictError):
        store.change(mine, holding(group("Jets", "AGPA2")), frozenset({"jets"}), reapply=False)


def test_a_race_lost_every_time_gives_up(store: Registry) -> None:
    class Losing:
        calls = 0

        def __call__(self, record: ResourceRecord) -> ResourceRecord:
            self.calls += 1
            store.save(replace(record, in_progress=f"r{self.calls}"), store.load(KEY).version)
            return replace(record, in_progress="mine")

    edit = Losing()
    with pytest.raises(RegistryConflictError):
        store.change(store.load(KEY), edit)
    assert edit.calls == 4  # the first try and three re-reads


# -- scanning -------------------------------------------------------------------------------------


def test_a_scan_yields_every_record_with_the_claims_of_its_own_groups(store: Registry) -> None:
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    store.change(store.load(OTHER, ["Ops"]), holding(group("Ops", "AGPA2"), key=OTHER))
    found = {s.record.key: s for s in store.scan() if isinstance(s, Stored)}
    assert set(found) == {KEY, OTHER}
    assert set(found[KEY].claims) == {"jets"}
    assert set(found[OTHER].claims) == {"ops"}
    assert found[KEY].version == 1


def test_a_scan_reports_a_record_it_cannot_decode_and_goes_on(dynamodb: Any) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    bad = {PARTITION_KEY: {"S": STACK}, SORT_KEY: {"S": "Broken"}}
    dynamodb.put_item(TableName=TABLE, Item={**bad, "version": {"N": "1"}, "body": {"B": b"x"}})
    dynamodb.put_item(TableName=TABLE, Item={**bad, SORT_KEY: {"S": "Bodiless"}})
    found = list(store.scan())
    unreadable = {u.key.logical_id: u.reason for u in found if isinstance(u, Unreadable)}
    assert set(unreadable) == {"Broken", "Bodiless"}
    assert "unreadable" in unreadable["Broken"]
    assert "lacks 'body'" in unreadable["Bodiless"]
    assert [s.record.key for s in found if isinstance(s, Stored)] == [KEY]


def test_a_scan_follows_every_page(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    for i in range(5):
        key = ResourceKey(STACK, f"G{i}")
        store.change(store.load(key, [f"g{i}"]), holding(group(f"g{i}"), key=key))
    scan = dynamodb.scan
    monkeypatch.setattr(dynamodb, "scan", lambda **kw: scan(**kw, Limit=2))
    found = [s for s in store.scan() if isinstance(s, Stored)]
    assert len(found) == 5
    assert all(len(s.claims) == 1 for s in found)


def test_a_memory_scan_reports_an_undecodable_record() -> None:
    store = MemoryRegistry()
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    store.items[OTHER] = (b"not zlib", 1)
    found = list(store.scan())
    assert [type(f) for f in found] == [Stored, Unreadable]


# -- DynamoDB's side ------------------------------------------------------------------------------


def test_a_record_and_its_claim_are_items_of_the_templates_table(dynamodb: Any) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets", "AGPA1")))
    record = dynamodb.get_item(
        TableName=TABLE, Key={PARTITION_KEY: {"S": STACK}, SORT_KEY: {"S": "Group"}}
    )["Item"]
    assert record["version"] == {"N": "1"}
    assert record["group_name"] == {"S": "Jets"}
    assert "expires_at" not in record
    assert decode(KEY, record["body"]["B"]).groups["Jets"].group_id == "AGPA1"
    claim = dynamodb.get_item(
        TableName=TABLE,
        Key={PARTITION_KEY: {"S": CLAIM_PREFIX + "jets"}, SORT_KEY: {"S": CLAIM_SORT}},
    )["Item"]
    assert claim["group_name"] == {"S": "Jets"}
    assert claim["owner_stack"] == {"S": STACK}
    assert claim["owner_logical_id"] == {"S": "Group"}
    assert claim["group_id"] == {"S": "AGPA1"}
    assert claim["version"] == {"N": "1"}


def test_a_claim_without_a_group_id_yet_has_no_such_attribute(dynamodb: Any) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets", None)))
    claim = dynamodb.get_item(
        TableName=TABLE,
        Key={PARTITION_KEY: {"S": CLAIM_PREFIX + "jets"}, SORT_KEY: {"S": CLAIM_SORT}},
    )["Item"]
    assert "group_id" not in claim
    assert store.load(KEY).claim("Jets").group_id is None  # type: ignore[union-attr]


def test_a_deleted_resources_record_expires_a_month_later(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jets_deploy_iam.registry.store as store_module

    monkeypatch.setattr(store_module.time, "time", lambda: 1_000_000.0)
    store = DynamoDBRegistry(dynamodb, TABLE)
    stored = store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    store.change(stored, holding())
    item = dynamodb.get_item(
        TableName=TABLE, Key={PARTITION_KEY: {"S": STACK}, SORT_KEY: {"S": "Group"}}
    )["Item"]
    assert item["expires_at"] == {"N": str(1_000_000 + DELETED_TTL_SECONDS)}
    assert item["group_name"] == {"S": "-"}


def test_keys_dynamodb_leaves_unprocessed_are_asked_again(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    batch_get = dynamodb.batch_get_item
    asked: list[int] = []

    def one_at_a_time(RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        keys = RequestItems[TABLE]["Keys"]
        asked.append(len(keys))
        page = batch_get(RequestItems={TABLE: {**RequestItems[TABLE], "Keys": keys[:1]}})
        if len(keys) > 1:
            page["UnprocessedKeys"] = {TABLE: {**RequestItems[TABLE], "Keys": keys[1:]}}
        return dict(page)

    monkeypatch.setattr(dynamodb, "batch_get_item", one_at_a_time)
    stored = store.load(KEY, ["Jets", "Other"])
    assert asked == [3, 2, 1]
    assert stored.version == 1
    assert stored.owns("Jets")


@pytest.mark.parametrize(
    ("operation", "use"),
    [
        ("batch_get_item", lambda store: store.load(KEY)),
        ("scan", lambda store: list(store.scan())),
        ("put_item", lambda store: store.save(ResourceRecord(KEY), 0)),
    ],
)
def test_a_table_that_cannot_be_reached_is_a_registry_error(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, operation: str, use: Any
) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)

    def unreachable(**_kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    monkeypatch.setattr(dynamodb, operation, unreachable)
    with pytest.raises(RegistryError, match=f"registry table {TABLE} cannot be"):
        use(store)


@pytest.mark.parametrize("code", ["AccessDeniedException", "ValidationException"])
def test_a_refused_write_is_a_registry_error_not_a_conflict(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    store = DynamoDBRegistry(dynamodb, TABLE)
    error = ClientError({"Error": {"Code": code, "Message": "no"}}, "TransactWriteItems")

    def refused(**_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(dynamodb, "transact_write_items", refused)
    with pytest.raises(RegistryError, match="cannot be written") as caught:
        store.change(store.load(KEY, ["Jets"]), holding(group("Jets")))
    assert not isinstance(caught.value, RegistryConflictError)


def test_a_record_too_big_for_an_item_is_refused_naming_the_resource() -> None:
    members = frozenset(hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000))
    big = ResourceRecord(KEY, groups={"Jets": group("Jets", ownership=Ownership(members=members))})
    with pytest.raises(RegistryError, match=r"record of Group would be \d+ bytes compressed, over"):
        encode(big)
    small = ResourceRecord(KEY, groups={"Jets": group("Jets")})
    assert len(encode(small)) < MAX_BODY_BYTES
    assert decode(KEY, encode(small)) == small


def test_a_body_that_is_not_a_record_is_unreadable_not_a_crash() -> None:
    for body in (
        b"garbage",
        zlib.compress(b"[1]"),
        zlib.compress(json.dumps({"groups": 1}).encode()),
    ):
        with pytest.raises(RegistryError, match="record of Group is unreadable"):
            decode(KEY, body)
