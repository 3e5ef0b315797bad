"""The registry's record, without DynamoDB: what it stores survives the round trip through its
JSON form field by field, records written by older versions read with safe defaults, and the
questions the controller asks a record (is this our group, is this CloudFormation's rollback,
is a correction or a request under way) are answered right."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.registry.model import (
    ANSWERS_KEPT,
    CORRECTION_PREFIX,
    HOLD_SECONDS,
    Continuation,
    GroupRecord,
    LastUpdate,
    PreviousOwner,
    ResourceRecord,
    record_json,
    record_of,
)
from jets_deploy_iam.request import Request, ResourceKey
from jets_deploy_iam.response import Response
from jets_deploy_iam.spec import Environment
from jets_deploy_iam.state import ActualGroup
from jets_deploy_iam.undo import Undo

KEY = ResourceKey("arn:aws:cloudformation:us-east-1:111122223333:stack/jets/uuid", "Group")
DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}
OLD_DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*"}]}
P1 = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def full_undo(group: str) -> Undo:
    """An undo record with every field set to something other than its default."""
    return Undo(
        group=group,
        created=True,
        path="/old/",
        members={"alice": True, "bob": False},
        attached={P1: False},
        inline={"JetsPolicy": OLD_DOC, "Extra": None},
        ownership=Ownership(
            members=frozenset({"alice"}),
            attached=frozenset({P1}),
            inline=frozenset({"JetsPolicy"}),
            originals={"JetsPolicy": OLD_DOC},
        ),
    )


OTHER_OWNER = ResourceKey("arn:aws:cloudformation:eu-west-1:123456789012:stack/other/1", "Group")


def full_record() -> ResourceRecord:
    """A record with every field of every part set to something other than its default."""
    group = GroupRecord(
        name="New",
        group_id="AGPANEW",
        properties={"GroupName": "New", "Users": ["alice"]},
        document=DOC,
        exclusive=False,
        ownership=Ownership(
            members=frozenset({"alice", "bob"}),
            attached=frozenset({P1}),
            inline=frozenset({"JetsPolicy"}),
            originals={"JetsPolicy": OLD_DOC},
        ),
        pair="Old",
        adopted=full_undo("New"),
        taken_from=PreviousOwner(OTHER_OWNER, "AGPAFOUND"),
    )
    old = GroupRecord(name="Old", group_id=None, properties={}, document={}, pair="New")
    return ResourceRecord(
        key=KEY,
        groups={"New": group, "Old": old},
        current="New",
        last_update=LastUpdate(
            request_id="r2",
            physical_id="Old",
            properties={"GroupName": "New"},
            old_properties={"GroupName": "Old"},
            undo=full_undo("Old"),
            adopted=full_undo("Old"),
            taken_from=PreviousOwner(OTHER_OWNER, None),
            took_over=True,
            rolled_back=True,
            refused=True,
        ),
        answers=(
            ("r1", Response("SUCCESS", "Old", "", {"Arn": "arn:old"})),
            ("r2", Response("FAILED", "Old", "why it failed", {})),
        ),
        in_progress="r3",
        held_until=1234.5,
        continuation=Continuation(
            request_id="r3",
            kind="Update",
            group="New",
            undo=full_undo("New"),
            started_at=100.0,
            event={"RequestType": "Update", "RequestId": "r3"},
            answer_id="Old",
            invocations=3,
            holder="lambda-request-7",
            lease_until=200.5,
            cancelled_by="r4",
        ),
        legacy=True,
    )


def round_trip(record: ResourceRecord) -> ResourceRecord:
    """Through the JSON text the store keeps (compressed, but JSON all the same)."""
    return record_of(record.key, json.loads(json.dumps(record_json(record))))


def test_every_field_of_a_record_survives_the_round_trip() -> None:
    record = full_record()
    assert round_trip(record) == record


def test_a_record_with_nothing_optional_survives_the_round_trip() -> None:
    record = ResourceRecord(
        key=KEY,
        groups={"Jets": GroupRecord(name="Jets", group_id="AGPA", properties={}, document={})},
        current="Jets",
    )
    assert round_trip(record) == record
    assert round_trip(ResourceRecord(key=KEY)) == ResourceRecord(key=KEY)


def test_an_older_record_without_the_newer_fields_reads_with_safe_defaults() -> None:
    """Fields added by later versions are optional: what they say is 'nothing'."""
    data: dict[str, Any] = {
        "groups": {"Jets": {"group_id": "AGPA"}},
        "current": "Jets",
        "last_update": {"request_id": "r1", "physical_id": "Jets", "undo": {"group": "Jets"}},
        "answers": [{"request_id": "r1", "status": "SUCCESS", "physical_id": "Jets"}],
        "continuation": {"request_id": "r2", "kind": "Create", "group": "Jets"},
    }
    record = record_of(KEY, data)
    group = record.groups["Jets"]
    assert group == GroupRecord(name="Jets", group_id="AGPA", properties={}, document={})
    assert (group.properties, group.document, group.ownership.originals) == ({}, {}, {})
    assert record.last_update == LastUpdate("r1", "Jets", None, None, Undo(group="Jets"))
    assert record.answers == (("r1", Response("SUCCESS", "Jets")),)
    assert record.continuation == Continuation(request_id="r2", kind="Create", group="Jets")
    assert record.continuation.event == {}
    assert (record.in_progress, record.held_until, record.legacy) == (None, None, False)


# -- is this our group? -------------------------------------------------------------------------


def test_a_record_matches_only_its_own_group_not_a_namesake_made_since() -> None:
    record = GroupRecord(name="Jets", group_id="AGPA1", properties={}, document={})
    mine = ActualGroup(name="Jets", path="/", arn="", group_id="AGPA1")
    assert record.matches(mine)
    assert not record.matches(replace(mine, group_id="AGPA2"))
    assert not record.matches(replace(mine, name="Other"))
    # A write-ahead record of a Create (no GroupId yet) matches the group of that name.
    assert replace(record, group_id=None).matches(replace(mine, group_id="AGPA2"))


# -- CloudFormation's rollback Update ---------------------------------------------------------


def update(request_id: str, physical: str, props: Any, old: Any) -> Request:
    return Request(
        kind="Update",
        key=KEY,
        request_id=request_id,
        physical_id=physical,
        properties=props,
        old_properties=old,
        env=Environment(),
    )


LAST = LastUpdate("r1", "Jets", {"Users": ["bob"]}, {"Users": ["alice"]}, Undo(group="Jets"))


def test_the_rollback_is_the_same_group_with_the_properties_swapped() -> None:
    assert LAST.reversed_by(update("r2", "Jets", {"Users": ["alice"]}, {"Users": ["bob"]}))


@pytest.mark.parametrize(
    "request_",
    [
        update("r1", "Jets", {"Users": ["alice"]}, {"Users": ["bob"]}),  # the same request again
        update("r2", "Other", {"Users": ["alice"]}, {"Users": ["bob"]}),  # another group
        update("r2", "Jets", {"Users": ["carol"]}, {"Users": ["bob"]}),  # new properties
        update("r2", "Jets", {"Users": ["alice"]}, {"Users": ["carol"]}),  # other old ones
        replace(update("r2", "Jets", {"Users": ["alice"]}, {"Users": ["bob"]}), kind="Delete"),
    ],
)
def test_anything_else_is_not_the_rollback(request_: Request) -> None:
    assert not LAST.reversed_by(request_)


def test_an_update_that_changed_nothing_has_no_rollback_to_recognise() -> None:
    same = LastUpdate("r1", "Jets", {"Users": ["bob"]}, {"Users": ["bob"]}, Undo(group="Jets"))
    assert not same.reversed_by(update("r2", "Jets", {"Users": ["bob"]}, {"Users": ["bob"]}))


def test_properties_are_compared_by_content_not_key_order() -> None:
    last = LastUpdate("r1", "Jets", {"A": 1, "B": 2}, {"A": 0, "B": 0}, Undo(group="Jets"))
    assert last.reversed_by(update("r2", "Jets", {"B": 0, "A": 0}, {"B": 2, "A": 1}))


# -- answers, holds and requests under way ----------------------------------------------------


def test_an_answer_is_kept_for_a_repeated_delivery_and_ends_the_request() -> None:
    record = replace(full_record(), answers=())
    answered = record.with_answer("r3", Response("SUCCESS", "New"))
    assert answered.answer_for("r3") == Response("SUCCESS", "New")
    assert answered.answer_for("r9") is None
    assert (answered.in_progress, answered.held_until, answered.continuation) == (None, None, None)
    # Another request's continuation goes on.
    other = record.with_answer("r5", Response("SUCCESS", "New"))
    assert other.continuation == record.continuation


def test_a_request_answered_again_keeps_one_answer_the_latest() -> None:
    record = ResourceRecord(key=KEY).with_answer("r1", Response("FAILED", "Jets", "first"))
    record = record.with_answer("r1", Response("SUCCESS", "Jets"))
    assert record.answers == (("r1", Response("SUCCESS", "Jets")),)


def test_only_the_latest_answers_are_kept() -> None:
    record = ResourceRecord(key=KEY)
    for i in range(ANSWERS_KEPT + 2):
        record = record.with_answer(f"r{i}", Response("SUCCESS", "Jets"))
    assert len(record.answers) == ANSWERS_KEPT
    assert record.answer_for("r1") is None
    assert record.answer_for(f"r{ANSWERS_KEPT + 1}") is not None


def test_a_hold_lasts_until_its_end_and_a_hold_too_far_ahead_is_ignored() -> None:
    now = 1000.0
    record = ResourceRecord(key=KEY)
    assert not record.held(now)
    assert replace(record, held_until=now + 1).held(now)
    assert replace(record, held_until=now + HOLD_SECONDS).held(now)
    assert not replace(record, held_until=now).held(now)
    assert not replace(record, held_until=now + HOLD_SECONDS + 1).held(now)  # a wrong clock


def test_a_request_stays_under_way_a_correction_only_while_it_holds() -> None:
    now = 1000.0
    record = ResourceRecord(key=KEY)
    assert not record.under_way(now)
    assert replace(record, in_progress="r1").under_way(now)
    correction = replace(record, in_progress=CORRECTION_PREFIX + "1")
    assert not correction.under_way(now)
    assert replace(correction, held_until=now + 10).under_way(now)


def test_a_continuation_is_held_by_another_invocation_until_its_lease_ends() -> None:
    going = Continuation(request_id="r1", kind="Create", group="Jets", holder="a", lease_until=10)
    assert going.held(5.0, by="b")
    assert not going.held(5.0, by="a")  # its own lease
    assert not going.held(10.0, by="b")
    assert not replace(going, holder=None).held(5.0, by="b")


# -- the groups of a resource -------------------------------------------------------------------


def test_deleting_one_side_of_a_rename_leaves_the_other_as_the_resources_group() -> None:
    record = full_record()
    left = record.without_group("New")
    assert set(left.groups) == {"Old"}
    assert left.groups["Old"].pair is None  # the rename is over
    assert left.current == "Old"
    assert not left.deleted
    gone = left.without_group("Old")
    assert gone.groups == {}
    assert gone.current is None
    assert gone.deleted


def test_deleting_a_group_that_is_not_current_keeps_the_current_one() -> None:
    record = full_record()
    kept = record.without_group("Old")
    assert kept.current == "New"
    assert kept.groups["New"].pair is None
    assert record.without_group("Unknown").current == "New"


def test_a_group_is_added_or_replaced_by_name() -> None:
    record = ResourceRecord(key=KEY)
    first = GroupRecord(name="Jets", group_id=None, properties={}, document={})
    confirmed = replace(first, group_id="AGPA")
    record = record.with_group(first).with_group(confirmed)
    assert record.groups == {"Jets": confirmed}
    assert not record.deleted


def test_recording_a_group_ends_the_legacy_rule() -> None:
    """A resource the previous version made is legacy only until this version records its
    group: from then on the registry, not the physical id, says what it owns."""
    refused_so_far = ResourceRecord(key=KEY, legacy=True)
    group = GroupRecord(name="Jets", group_id="AGPA", properties={}, document={})
    assert not refused_so_far.with_group(group).legacy
