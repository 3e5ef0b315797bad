"""CloudFormation's protocol as it really behaves, against the controller, the registry (moto's
DynamoDB) and IAM (moto plus the strict layer). Each hostile sequence of issue 9 is here; the
handler-level ones (crhelper, the response PUT, crafted events) are in test_protocol.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from helpers import (
    ENV,
    GENERATED,
    OTHER_STACK,
    S1,
    S2,
    STACK,
    NoSleep,
    Stack,
    controller_sender,
    crash,
    delete_by_hand,
    dies_before,
    event,
    owner,
    snapshot,
)
from jets_deploy_iam import policy
from jets_deploy_iam.changes import Plan
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.reconcile import Controller, Decision
from jets_deploy_iam.registry.store import DynamoDBRegistry
from jets_deploy_iam.request import ResourceKey, parse_request
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

HANDMADE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
}


def handmade_group(iam: IAMClient, world: dict[str, str], name: str = "Jets") -> None:
    """The Jets docs' group made by hand, with a few extras of someone else's."""
    import json

    iam.create_group(GroupName=name)
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName=name, UserName=user)
    iam.put_group_policy(GroupName=name, PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE))
    iam.attach_group_policy(GroupName=name, PolicyArn=world["p1"])


# -- 1. a second stack never co-owns a group ----------------------------------------------------


def test_second_stack_with_the_same_properties_cannot_take_or_delete_the_group(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, strict: StrictIam,
    world: dict[str, str],
) -> None:  # fmt: skip
    props = {"Users": "alice,bob"}
    assert stack.create(props).ok
    before = snapshot(iam, "Jets")
    second = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    strict.reset()
    response = second.create(props)  # followed by CloudFormation's rollback Delete
    assert not response.ok
    assert "AdoptExistingGroup" in response.reason
    assert response.physical_id.startswith("no-group:")
    # Even a Delete that names the group (a crafted event, a copied stack) touches nothing.
    crafted = controller_sender(iam, registry)(event("Delete", props, "Jets", stack=OTHER_STACK))
    assert crafted.ok
    assert strict.writes == []
    assert snapshot(iam, "Jets") == before


# -- 2. a rename is a replacement ---------------------------------------------------------------


def test_rename_then_stack_rollback_keeps_the_old_group_intact(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    old = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]}
    stack.create(old)
    before = snapshot(iam, "Jets")
    response = stack.update({**old, "GroupName": "JetsNew"}, stack_rolls_back=True)
    assert response.ok
    assert response.physical_id == "JetsNew"
    assert snapshot(iam, "Jets") == before  # same GroupId, members, policies
    assert snapshot(iam, "JetsNew") is None  # the rollback's Delete removed the new one
    assert stack.physical_id == "Jets"
    assert stack.delete().ok
    assert snapshot(iam, "Jets") is None


def test_rename_copies_the_whole_group_then_cleanup_deletes_the_old(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    import json

    old = {"Users": "alice", "ManagedPolicyArns": world["p1"], "Exclusive": "false"}
    stack.create(old)
    iam.add_user_to_group(GroupName="Jets", UserName="dave")  # foreign: added by hand
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=json.dumps(HANDMADE)
    )
    old_id = snapshot(iam, "Jets")["id"]  # type: ignore[index]
    response = stack.update({**old, "GroupName": "JetsNew", "Users": "alice,bob"})
    assert response.ok
    assert response.data["GroupId"] != old_id  # a new group, as for AWS::IAM::Group
    assert snapshot(iam, "Jets") is None  # CloudFormation's cleanup Delete
    new = snapshot(iam, "JetsNew")
    assert new is not None
    assert new["members"] == {"alice", "bob", "dave"}
    assert set(new["policies"]) == {"JetsPolicy", "Handmade"}
    assert new["attached"] == {world["p1"]}
    # Foreign content stays foreign in the new group: a later Delete keeps it.
    assert stack.delete().ok
    kept = snapshot(iam, "JetsNew")
    assert kept is not None
    assert kept["members"] == {"dave"}
    assert set(kept["policies"]) == {"Handmade"}
    assert kept["attached"] == frozenset()


def test_cleanup_delete_of_an_old_name_someone_reused_touches_nothing(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    props = {"Users": "alice"}
    assert send(event("Create", props)).ok
    renamed = send(event("Update", {**props, "GroupName": "JetsNew"}, "Jets", props))
    assert renamed.ok
    # Before CloudFormation's cleanup, the old name is freed and reused by someone else.
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    reused = snapshot(iam, "Jets")
    assert send(event("Delete", props, "Jets")).ok
    assert snapshot(iam, "Jets") == reused


def test_case_only_rename_is_refused_with_the_fix(
    stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    stack.create({"Users": "alice"})
    strict.reset()
    response = stack.update({"GroupName": "JETS", "Users": "alice"})
    assert not response.ok
    assert "case-insensitive" in response.reason
    assert "rename through another name" in response.reason
    assert strict.writes == []


# -- 3. non-exclusive rollbacks never remove foreign content ------------------------------------


def test_failed_update_declaring_foreign_items_rolls_back_without_removing_them(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    before = snapshot(iam, "Jets")
    # Declares the foreign bob and p1 (already there) and a user that does not exist.
    failing = {**base, "Users": "alice,bob,ghost", "ManagedPolicyArns": world["p1"]}
    strict.reset()
    response = stack.update(failing)  # followed by the rollback Update
    assert not response.ok
    assert "ghost" in response.reason
    assert strict.writes == []
    assert snapshot(iam, "Jets") == before


def test_no_op_update_declaring_foreign_items_then_stack_rollback_keeps_them(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    before = snapshot(iam, "Jets")
    strict.reset()
    declaring = {**base, "Users": "alice,bob", "ManagedPolicyArns": world["p1"]}
    assert stack.update(declaring, stack_rolls_back=True).ok
    assert strict.writes == []
    assert snapshot(iam, "Jets") == before


def test_a_revocation_is_never_skipped_when_old_properties_do_not_parse(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    created = {"Users": "alice,bob", "Exclusive": "false"}
    assert send(event("Create", created)).ok
    # CloudFormation's copy of the old properties carries something this version rejects
    # (a property of a newer version, say): what bob was given must still be taken back.
    unparseable = {**created, "FutureProperty": "x"}
    response = send(event("Update", {"Users": "alice", "Exclusive": "false"}, "Jets", unparseable))
    assert response.ok
    assert snapshot(iam, "Jets")["members"] == {"alice"}  # type: ignore[index]


# -- 4. switching Exclusive on, then rolling back, restores foreign content ---------------------


def test_exclusive_switch_then_stack_rollback_restores_foreign_content(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(base).ok
    before = snapshot(iam, "Jets")
    exclusive = {**base, "Exclusive": "true"}
    assert stack.update(exclusive, stack_rolls_back=True).ok
    assert snapshot(iam, "Jets") == before  # bob, carol, Handmade (its document), p1 are back


def test_exclusive_switch_removes_foreign_content_when_it_stays(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    stack.create(base)
    assert stack.update({**base, "Exclusive": "true"}).ok
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}
    assert set(group["policies"]) == {"JetsPolicy"}
    assert group["attached"] == frozenset()


# -- 5. a lost CreateGroup response -------------------------------------------------------------


def test_create_group_whose_response_is_lost_counts_as_created(
    iam: IAMClient, stack: Stack, strict: StrictIam, world: dict[str, str]
) -> None:
    strict.lose_answer("CreateGroup", how="connection")
    response = stack.create({"Users": "alice"})
    assert response.ok, response.reason
    assert response.physical_id == "Jets"
    assert strict.actions().count("CreateGroup") == 2  # the retry met EntityAlreadyExists
    assert snapshot(iam, "Jets")["members"] == {"alice"}  # type: ignore[index]


def test_entity_already_exists_for_someone_elses_group_is_not_taken(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The pre-flight saw the name free, then someone else created it (with a member)."""
    strict.before_write("CreateGroup", lambda: _someone_creates(iam))
    response = controller_sender(iam, registry)(event("Create", {"Users": "alice"}))
    assert not response.ok
    assert "EntityAlreadyExists" in response.reason
    assert snapshot(iam, "Jets")["members"] == {"bob"}  # type: ignore[index]


def _someone_creates(iam: IAMClient) -> None:
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="bob")


# -- 6. the deadline, and no second delivery ----------------------------------------------------


def test_a_repeated_delivery_gets_the_recorded_answer_and_writes_nothing(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old, new = {"Users": "alice"}, {"Users": "alice,bob"}
    send(event("Create", old))
    forward = event("Update", new, "Jets", old)
    first = send(forward)
    assert first.ok
    assert send(event("Update", old, "Jets", new)).ok  # the stack rolled back meanwhile
    after_rollback = snapshot(iam, "Jets")
    strict.reset()
    again = send(forward)  # Lambda's asynchronous retry of the forward Update
    assert again == first
    assert strict.writes == []
    assert snapshot(iam, "Jets") == after_rollback


def test_no_iam_call_starts_after_the_deadline_and_the_answer_keeps_the_physical_id(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old = {"Users": "alice"}
    send(event("Create", old))
    strict.reset()
    clock = FakeClock()
    strict.clock = clock
    strict.on_call = lambda _action: clock.advance(0.25)  # every IAM call takes 250 ms
    config = ReconcileConfig(clock=clock, sleep=clock.advance, max_in_flight=1)
    work, undo = Deadline(at=1.8, clock=clock), Deadline(at=5.0, clock=clock)
    controller = Controller(iam, registry, config, work, undo)
    new = {"Users": "alice,bob,carol,dave", "ManagedPolicyArns": world["p1"]}
    response = controller.handle(parse_request(event("Update", new, "Jets", old), _env()))
    assert not response.ok
    assert response.physical_id == "Jets"
    assert "Lambda time nearly used up" in response.reason
    assert "(its changes were undone)" in response.reason
    grants = [c for c in strict.writes if c.action in ("AttachGroupPolicy", "AddUserToGroup")]
    assert grants  # the deadline came mid-update, after some writes
    assert all(c.at < work.at for c in grants)  # no forward write started after the deadline
    assert all(c.at < undo.at for c in strict.calls)  # nor any undo call after its own
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice"}
    assert group["attached"] == frozenset()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _env() -> Any:
    from helpers import ENV

    return ENV


# -- 7. an adoption is handed back on every kind of failure -------------------------------------


def test_an_update_that_takes_over_another_stacks_group_and_fails_gives_the_claim_back(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, strict: StrictIam,
    world: dict[str, str],
) -> None:  # fmt: skip
    """S2's resource still answers to "Jets" (its group was deleted by hand and S1 then made
    and claimed a new "Jets"). S2 deploys AdoptExistingGroup, and the Update fails half way:
    undone, then CloudFormation's rollback Update. S1 must still own its group: its Update
    applies and its Delete removes the group."""
    s2 = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert s2.create({"Users": "bob"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    assert stack.create({"Users": "alice"}).ok  # the stale claim of S2 is taken over
    found = snapshot(iam, "Jets")
    strict.fail_write(2, "LimitExceeded")
    props = {"Users": "bob", "ManagedPolicyArns": world["p1"], "AdoptExistingGroup": "true"}
    s1_key = ResourceKey(STACK, "JetsDeployGroup")
    failed = s2.send(event("Update", props, "Jets", s2.props, stack=OTHER_STACK))
    assert not failed.ok
    assert "undone" in failed.reason
    assert snapshot(iam, "Jets") == found
    assert registry.load(s1_key, ["Jets"]).owns("Jets", found["id"])  # given back at once
    strict.clear_faults()
    back = s2.send(event("Update", s2.props, "Jets", props, stack=OTHER_STACK))  # the rollback
    assert back.ok, back.reason
    assert snapshot(iam, "Jets") == found

    assert stack.update({"Users": "alice,carol"}).ok
    assert snapshot(iam, "Jets")["members"] == {"alice", "carol"}
    assert stack.delete().ok
    assert snapshot(iam, "Jets") is None


@pytest.mark.parametrize("failure", ["ServiceFailure", "connection", "deadline"])
def test_failed_adoption_is_handed_back_exactly_path_included(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str],
    failure: str,
) -> None:  # fmt: skip
    handmade_group(iam, world)
    before = snapshot(iam, "Jets")
    props = {"Users": "alice", "GroupPath": "/deploy/", "AdoptExistingGroup": "true"}
    clock = FakeClock()
    deadline, undo = Deadline.never(), Deadline.never()
    if failure == "deadline":
        strict.on_call = lambda action: clock.advance(1.0 if action != "GetGroup" else 0.0)
        deadline, undo = Deadline(at=4.5, clock=clock), Deadline(at=60.0, clock=clock)
    elif failure == "connection":
        strict.fail_write(3, "connection")
    else:
        strict.fail_write(3, "ServiceFailure")
    config = ReconcileConfig(clock=clock, sleep=clock.advance)
    controller = Controller(iam, registry, config, deadline, undo)
    response = controller.handle(parse_request(event("Create", props), _env()))
    strict.clear_faults()
    assert not response.ok
    assert "(adopted group restored)" in response.reason
    assert response.physical_id.startswith("no-group:")
    assert snapshot(iam, "Jets") == before  # path, members, documents, attachments
    rollback = controller_sender(iam, registry)(event("Delete", props, response.physical_id))
    assert rollback.ok
    assert snapshot(iam, "Jets") == before


def test_a_hand_back_that_fails_is_finished_by_the_rollback_delete(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    before = snapshot(iam, "Jets")
    props = {"Users": "alice", "AdoptExistingGroup": "true"}
    strict.fail_write(3, "ServiceFailure")
    strict.inject("AddUserToGroup", "ServiceFailure", times=1000)  # the hand-back fails too
    response = controller_sender(iam, registry)(event("Create", props))
    assert not response.ok
    assert "the rollback Delete retries it" in response.reason
    strict.clear_faults()
    rollback = controller_sender(iam, registry)(event("Delete", props, response.physical_id))
    assert rollback.ok
    assert snapshot(iam, "Jets") == before


# -- 8. revocations before grants ---------------------------------------------------------------


def test_revocations_run_before_grants_even_when_the_update_fails_half_way(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old = {"Users": "alice,bob", "Services": "s3"}
    send(event("Create", old))
    strict.reset()
    new = {"Users": "alice,carol", "Services": "s3,iam", "ManagedPolicyArns": world["p1"]}
    strict.fail_write(3, "ServiceFailure")  # after the revocation and the policy put
    response = send(event("Update", new, "Jets", old))
    assert not response.ok
    writes = [c.action for c in strict.writes if c not in strict.faulted]
    assert writes[0] == "RemoveUserFromGroup"  # bob never held iam:*
    assert writes.index("RemoveUserFromGroup") < writes.index("PutGroupPolicy")
    assert snapshot(iam, "Jets")["members"] == {"alice", "bob"}  # type: ignore[index]  # undone


# -- 10. a non-exclusive Delete keeps what is not its own ---------------------------------------


def test_non_exclusive_delete_of_an_adopted_group_keeps_its_foreign_content(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    before = snapshot(iam, "Jets")
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p2"], "Exclusive": "false",
             "AdoptExistingGroup": "true"}  # fmt: skip
    assert stack.create(props).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before  # alice, p2 and JetsPolicy gone; the rest as found


def test_non_exclusive_delete_restores_a_foreign_policy_it_overwrote(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    import json

    iam.create_group(GroupName="Jets")
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )
    before = snapshot(iam, "Jets")
    props = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") == before


def test_exclusive_delete_removes_everything(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    assert stack.create({"Users": "alice", "AdoptExistingGroup": "true"}).ok
    assert stack.update({"Users": "alice,carol", "AdoptExistingGroup": "true"}).ok
    assert stack.delete().ok
    assert snapshot(iam, "Jets") is None
    assert {u["UserName"] for u in iam.list_users()["Users"]} == {"alice", "bob", "carol", "dave"}


# -- the registry's cost and its failures -------------------------------------------------------


def test_registry_cost_of_a_no_op_update_is_one_read_and_one_write(
    iam: IAMClient, world: dict[str, str]
) -> None:
    from jets_deploy_iam.registry.store import MemoryRegistry

    registry = MemoryRegistry()
    send = controller_sender(iam, registry)
    props = {"Users": "alice"}
    send(event("Create", props))
    assert (registry.reads, registry.writes) == (1, 2)  # read, write-ahead, outcome
    registry.reads = registry.writes = 0
    assert send(event("Update", props, "Jets", props)).ok
    assert (registry.reads, registry.writes) == (1, 1)


def test_a_registry_that_cannot_be_read_fails_before_any_iam_write(
    iam: IAMClient, strict: StrictIam, world: dict[str, str]
) -> None:
    import boto3

    from jets_deploy_iam.registry.store import DynamoDBRegistry as Table

    missing = Table(boto3.client("dynamodb", region_name="us-east-1"), "no-such-table")
    strict.reset()
    response = controller_sender(iam, missing)(event("Create", {"Users": "alice"}))
    assert not response.ok
    assert "registry table no-such-table cannot be read" in response.reason
    assert strict.calls == []


def test_a_registry_that_cannot_be_written_fails_before_any_iam_write(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from jets_deploy_iam.exceptions import RegistryError

    def refuse(*_args: object) -> int:
        raise RegistryError("the registry table is throttled")

    monkeypatch.setattr(registry, "_write", refuse)
    strict.reset()
    response = controller_sender(iam, registry)(event("Create", {"Users": "alice"}))
    assert not response.ok
    assert "registry" in response.reason
    assert strict.writes == []


# -- between deploys: the drift check the schedule and the command line share ---------------------


def test_drift_is_reported_then_corrected_without_touching_foreign_content(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    import json

    from helpers import ENV, STACK
    from jets_deploy_iam.request import ResourceKey

    handmade_group(iam, world)
    props = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    assert stack.create(props).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")  # drift
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )
    iam.add_user_to_group(GroupName="Jets", UserName="dave")  # foreign, added by hand
    key = ResourceKey(STACK, "JetsDeployGroup")
    report = Controller(iam, registry).check_drift(key, ENV)
    assert [str(c) for c in report.plan] == ["~ policy JetsPolicy (+apigateway:* +cloudformation:* "
        "+dynamodb:* +events:* +iam:* +lambda:* +logs:* +route53:* +s3:* -sqs:SendMessage)",
        "+ add user alice"]  # fmt: skip
    assert report.corrected == 0
    fixed = Controller(iam, registry).check_drift(key, ENV, correct=True)
    assert fixed.corrected == 2
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob", "carol", "dave"}  # foreign members untouched
    assert not Controller(iam, registry).check_drift(key, ENV).plan


def test_a_group_deleted_by_hand_is_reported_and_recreated(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    from helpers import ENV, STACK
    from jets_deploy_iam.request import ResourceKey

    assert stack.create({"Users": "alice"}).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="alice")
    iam.delete_group_policy(GroupName="Jets", PolicyName="JetsPolicy")
    iam.delete_group(GroupName="Jets")
    key = ResourceKey(STACK, "JetsDeployGroup")
    assert Controller(iam, registry).check_drift(key, ENV).plan.changes[0].describe() == (
        "create group Jets (path /)"
    )
    assert Controller(iam, registry).check_drift(key, ENV, correct=True).corrected == 3
    assert snapshot(iam, "Jets")["members"] == {"alice"}  # type: ignore[index]
    assert stack.delete().ok  # the registry knows the new GroupId: the Delete still acts
    assert snapshot(iam, "Jets") is None


# -- decisions, previewed: what each request would do, as data ------------------------------------


def _plan(iam: IAMClient, registry: DynamoDBRegistry, e: dict[str, Any]) -> Decision:
    """What the command line's ``plan`` shows for a request: the decision, nothing written."""
    return Controller(iam, registry).preview(parse_request(e, _env()))


def _changes(decision: Decision) -> list[str]:
    return [c.describe() for c in decision.plan]


def test_plan_shows_what_each_kind_of_request_would_do_and_writes_nothing(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, strict: StrictIam,
    world: dict[str, str],
) -> None:  # fmt: skip
    create = _plan(iam, registry, event("Create", {"Users": "alice"}))
    assert (create.action, create.group, create.before) == ("create", "Jets", None)
    assert _changes(create)[:1] == ["create group Jets (path /)"]
    assert "add user alice" in _changes(create)
    assert registry.load(S1).version == 0
    assert snapshot(iam, "Jets") is None

    assert stack.create({"Users": "alice"}).ok
    made = snapshot(iam, "Jets")
    recorded = registry.load(S1, ["Jets", "JetsNew"])
    strict.reset()
    old = {"Users": "alice"}
    update = _plan(iam, registry, event("Update", {"Users": "alice,carol"}, "Jets", old))
    assert (update.action, update.group, _changes(update)) == ("update", "Jets", ["add user carol"])
    assert update.before is not None
    assert update.before.group_id == made["id"]  # type: ignore[index]
    rename = _plan(iam, registry, event("Update", {"GroupName": "JetsNew", **old}, "Jets", old))
    assert (rename.action, rename.group) == ("replace", "JetsNew")
    assert _changes(rename)[:1] == ["create group JetsNew (path /)"]
    assert rename.takeovers == frozenset()  # a free name: nobody's claim is taken
    delete = _plan(iam, registry, event("Delete", old, "Jets"))
    assert (delete.action, delete.group) == ("delete", "Jets")
    assert "delete group Jets" in _changes(delete)
    assert strict.writes == []
    assert registry.load(S1, ["Jets", "JetsNew"]) == recorded
    assert snapshot(iam, "Jets") == made


def test_plan_of_a_request_already_answered_has_nothing_to_do(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    create = event("Create", {"Users": "alice"})
    assert controller_sender(iam, registry)(create).ok
    again = _plan(iam, registry, create)  # the same RequestId: Lambda's retry gets the answer
    assert (again.action, again.group, again.plan) == ("none", "Jets", Plan())
    assert "already answered" in again.note


# -- renames: the new name's claim, and undoing a rename ------------------------------------------


def test_a_rename_that_fails_half_way_removes_the_new_group_before_it_answers(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]}
    assert send(event("Create", props)).ok
    before = snapshot(iam, "Jets")
    renamed = {**props, "GroupName": "JetsNew"}
    strict.fail_write(3, "LimitExceeded")  # after CreateGroup and the policy's put
    failed = send(event("Update", renamed, "Jets", props))
    assert not failed.ok
    assert "(its changes were undone)" in failed.reason
    # Undone at once, as any failed Update's writes: not left for the rollback Update to find.
    assert snapshot(iam, "JetsNew") is None
    assert owner(registry, "JetsNew") is None
    assert send(event("Update", props, "Jets", renamed)).ok  # CloudFormation's rollback
    assert snapshot(iam, "Jets") == before


def test_a_rename_onto_a_name_whose_group_was_deleted_by_hand_takes_its_stale_claim(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, world: dict[str, str]
) -> None:
    other = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert other.create({"GroupName": "JetsNew", "Users": "bob"}).ok
    delete_by_hand(iam, "JetsNew")  # the other stack's claim now names a group that is gone
    assert stack.create({"Users": "alice"}).ok
    renamed = {"GroupName": "JetsNew", "Users": "alice"}
    assert _plan(iam, registry, event("Update", renamed, "Jets", stack.props)).takeovers == {
        "JetsNew"
    }
    assert stack.update(renamed).ok
    assert owner(registry, "JetsNew") == S1
    assert stack.delete().ok  # the group is this resource's own: its Delete removes it
    assert snapshot(iam, "JetsNew") is None


def _other_stack_dies_creating_jets_new(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam
) -> None:
    """The other stack's Create writes its claim on JetsNew ahead, then dies before CreateGroup:
    the claim is pending, its request never answered."""
    create = event("Create", {"GroupName": "JetsNew", "Users": "bob"}, stack=OTHER_STACK)
    dies_before(strict, "CreateGroup", lambda: controller_sender(iam, registry)(create))


def _rename_to_jets_new_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, before: Any
) -> None:
    """The rename is refused, says why, and leaves both names as they were."""
    response = stack.update({"GroupName": "JetsNew", "Users": "alice"})
    assert not response.ok
    assert "another resource is creating it" in response.reason
    assert snapshot(iam, "JetsNew") is None
    assert owner(registry, "JetsNew") == S2
    assert snapshot(iam, "Jets") == before


def test_a_rename_onto_a_name_another_stack_is_creating_is_refused(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, strict: StrictIam,
    world: dict[str, str],
) -> None:  # fmt: skip
    assert stack.create({"Users": "alice"}).ok
    before = snapshot(iam, "Jets")
    # The other stack's Create has written its claim ahead and is about to create the group.
    _other_stack_dies_creating_jets_new(iam, registry, strict)
    _rename_to_jets_new_is_refused(iam, registry, stack, before)


def test_a_rename_is_refused_when_another_stack_starts_creating_the_name_while_it_decides(
    iam: IAMClient, registry: DynamoDBRegistry, stack: Stack, strict: StrictIam,
    world: dict[str, str],
) -> None:  # fmt: skip
    assert stack.create({"Users": "alice"}).ok
    before = snapshot(iam, "Jets")

    def other_stack_starts_creating() -> None:  # after the rename read the registry
        _other_stack_dies_creating_jets_new(iam, registry, strict)

    strict.before_write("GetGroup", other_stack_starts_creating)
    _rename_to_jets_new_is_refused(iam, registry, stack, before)


def test_a_rename_delivered_again_after_it_died_finishes_the_group_it_made(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]}
    assert send(event("Create", props)).ok
    renamed = {**props, "GroupName": "JetsNew"}
    rename = event("Update", renamed, "Jets", props)
    # JetsNew made, its members not added yet
    dies_before(strict, "AddUserToGroup", lambda: send(rename))
    made = snapshot(iam, "JetsNew")
    assert made is not None
    delete_by_hand(iam, "Jets")  # meanwhile, nothing is left to copy from
    again = send(rename)  # Lambda's retry of the same request
    assert again.ok, again.reason
    assert (again.physical_id, again.data["GroupId"]) == ("JetsNew", made["id"])
    group = snapshot(iam, "JetsNew")
    assert group is not None
    assert group["members"] == {"alice", "bob"}
    assert group["attached"] == {world["p1"]}
    assert send(event("Delete", renamed, "JetsNew")).ok
    assert snapshot(iam, "JetsNew") is None


def test_a_non_exclusive_rename_delivered_again_after_it_died_keeps_owning_what_it_granted(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """As above, on a non-exclusive resource: the retry must own what its first invocation put
    on the new group (the policy, the attachment), or the stack's Delete leaves them behind
    with no owner, the policy granting deploy rights to whoever is added later."""
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"], "Exclusive": "false"}
    assert send(event("Create", props)).ok
    renamed = {**props, "GroupName": "JetsNew"}
    rename = event("Update", renamed, "Jets", props)
    dies_before(strict, "AddUserToGroup", lambda: send(rename))  # JetsNew made, its policies on it
    delete_by_hand(iam, "Jets")
    assert send(rename).ok  # Lambda's retry of the same request
    assert send(event("Delete", renamed, "JetsNew")).ok
    assert snapshot(iam, "JetsNew") is None  # nothing foreign in it: deleted whole


def test_a_rename_of_a_group_deleted_by_hand_delivered_again_after_it_died_finishes(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    """The old group was gone before the rename began (nothing to copy, no pair recorded): the
    retry must still take the group its first invocation made for its own, not refuse it as
    someone else's (CloudFormation's rollback would then delete it)."""
    send = controller_sender(iam, registry)
    props = {"Users": "alice,bob"}
    assert send(event("Create", props)).ok
    delete_by_hand(iam, "Jets")
    renamed = {**props, "GroupName": "JetsNew"}
    rename = event("Update", renamed, "Jets", props)
    # JetsNew made, its members not added yet
    dies_before(strict, "AddUserToGroup", lambda: send(rename))
    made = snapshot(iam, "JetsNew")
    assert made is not None
    again = send(rename)  # Lambda's retry of the same request
    assert again.ok, again.reason
    assert (again.physical_id, again.data["GroupId"]) == ("JetsNew", made["id"])
    assert snapshot(iam, "JetsNew")["members"] == {"alice", "bob"}  # type: ignore[index]


def test_a_rename_of_a_group_deleted_by_hand_makes_a_group_whose_delete_keeps_foreign_content(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    props = {"Users": "alice", "Exclusive": "false"}
    assert stack.create(props).ok
    delete_by_hand(iam, "Jets")
    assert stack.update({**props, "GroupName": "JetsNew"}).ok  # made from the declaration
    assert snapshot(iam, "JetsNew")["members"] == {"alice"}  # type: ignore[index]
    iam.add_user_to_group(GroupName="JetsNew", UserName="dave")  # foreign: added by hand
    assert stack.delete().ok
    kept = snapshot(iam, "JetsNew")
    assert kept is not None
    assert kept["members"] == {"dave"}


# -- CloudFormation's Delete after a Create that never answered -----------------------------------


def test_the_delete_after_a_create_that_died_before_creating_releases_the_name(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    props = {"Users": "alice"}
    # after the write-ahead of its claim
    dies_before(strict, "CreateGroup", lambda: send(event("Create", props)))
    # CloudFormation fails the Create at ServiceTimeout and deletes it under an id of its own.
    rollback = event("Delete", props, GENERATED)
    planned = _plan(iam, registry, rollback)
    assert (planned.action, planned.group, planned.plan) == ("none", "Jets", Plan())
    assert "claim is released" in planned.note
    assert send(rollback).ok
    assert owner(registry) is None
    other = Stack(controller_sender(iam, registry), stack=OTHER_STACK)
    assert other.create({"Users": "bob"}).ok  # the name is free for anyone again
    assert snapshot(iam, "Jets")["members"] == {"bob"}  # type: ignore[index]


def test_the_delete_after_a_create_that_went_on_and_never_answered_removes_its_group(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    from jets_deploy_iam import continuation
    from jets_deploy_iam.continuation import Budget, Continuing

    budget = Budget(continuation.now(), 3600)
    going_on = Continuing(lambda: budget, margin=10, arrange=lambda: None)
    props = {"Users": "alice,bob"}
    strict.fail_write(2, "ServiceFailure")  # IAM struggling after CreateGroup: go on later
    first = Controller(iam, registry, continuing=going_on).handle(
        parse_request(event("Create", props), _env())
    )
    assert first.status == "IN_PROGRESS"
    strict.clear_faults()
    made = snapshot(iam, "Jets")
    assert made is not None
    # No later invocation ever answered: CloudFormation deletes under an id of its own.
    rollback = event("Delete", props, GENERATED)
    planned = _plan(iam, registry, rollback)
    assert (planned.action, planned.group) == ("delete", "Jets")
    assert "delete group Jets" in _changes(planned)
    assert planned.before is not None
    assert planned.before.group_id == made["id"]
    assert "died before answering" in planned.note
    assert controller_sender(iam, registry)(rollback).ok
    assert snapshot(iam, "Jets") is None
    assert owner(registry) is None


def test_plan_of_the_delete_after_a_dead_adoption_hands_the_group_back_as_found(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    found = snapshot(iam, "Jets")
    send = controller_sender(iam, registry)
    props = {"Users": "alice", "AdoptExistingGroup": "true"}  # Exclusive: bob and carol go
    # after the removals, before alice is added
    dies_before(strict, "AddUserToGroup", lambda: send(event("Create", props)))
    half_way = snapshot(iam, "Jets")
    assert half_way is not None
    assert half_way != found
    rollback = event("Delete", props, GENERATED)
    planned = _plan(iam, registry, rollback)
    assert (planned.action, planned.group) == ("restore", "Jets")
    assert {"add user bob", "add user carol"} <= set(_changes(planned))
    assert planned.before is not None
    assert planned.before.members == half_way["members"]
    assert planned.undo == registry.load(S1).record.last_update.undo  # type: ignore[union-attr]
    assert "as it was found" in planned.note
    assert snapshot(iam, "Jets") == half_way  # the plan changed nothing
    assert send(rollback).ok
    assert snapshot(iam, "Jets") == found


def test_a_failed_hand_back_leaves_a_namesake_made_since_untouched_and_lets_go_of_the_name(
    iam: IAMClient, registry: DynamoDBRegistry, strict: StrictIam, world: dict[str, str]
) -> None:
    handmade_group(iam, world)
    props = {"Users": "alice", "AdoptExistingGroup": "true"}
    strict.fail_write(3, "ServiceFailure")
    strict.inject("AddUserToGroup", "ServiceFailure", times=1000)  # the hand-back fails too
    failed = controller_sender(iam, registry)(event("Create", props))
    assert not failed.ok
    strict.clear_faults()
    # Before the rollback Delete, someone replaces the group by hand (a new GroupId).
    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    namesake = snapshot(iam, "Jets")
    rollback = event("Delete", props, failed.physical_id)
    planned = _plan(iam, registry, rollback)
    assert (planned.action, planned.group, planned.plan) == ("none", "Jets", Plan())
    assert "not ours" in planned.note
    assert controller_sender(iam, registry)(rollback).ok
    assert snapshot(iam, "Jets") == namesake
    assert owner(registry) is None


# -- the rollback Update: exactly what the reversed Update found ----------------------------------


def test_a_rollback_puts_back_what_the_update_found_even_where_it_had_drifted(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old = {"Users": "alice,bob"}
    assert send(event("Create", old)).ok
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")  # drift, by hand
    found = snapshot(iam, "Jets")
    new = {"Users": "alice,bob,carol"}
    assert send(event("Update", new, "Jets", old)).ok  # bob back, carol added
    # Another resource fails the deploy: CloudFormation's rollback Update.
    rollback = event("Update", old, "Jets", new)
    planned = _plan(iam, registry, rollback)
    assert (planned.action, planned.group) == ("rollback", "Jets")
    assert sorted(_changes(planned)) == ["remove user bob", "remove user carol"]
    assert planned.before is not None
    assert planned.before.members == {"alice", "bob", "carol"}
    assert send(rollback).ok
    assert snapshot(iam, "Jets") == found
    # continue-update-rollback may send the same rollback again: it changes nothing then
    again = _plan(iam, registry, event("Update", old, "Jets", new))
    assert (again.action, again.plan) == ("rollback", Plan())
    assert "served already" in again.note


def test_a_rollback_creates_a_group_deleted_meanwhile_with_all_it_declares(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old = {"Users": "alice,bob", "ManagedPolicyArns": world["p1"]}
    assert send(event("Create", old)).ok
    new = {"Users": "alice"}
    assert send(event("Update", new, "Jets", old)).ok  # bob and p1 go
    delete_by_hand(iam)
    assert send(event("Update", old, "Jets", new)).ok  # the stack's rollback
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob"}
    assert group["attached"] == {world["p1"]}
    assert set(group["policies"]) == {"JetsPolicy"}


def test_a_rollback_leaves_a_namesake_made_since_untouched_and_never_takes_it(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    send = controller_sender(iam, registry)
    old = {"Users": "alice"}
    assert send(event("Create", old)).ok
    new = {"Users": "alice,carol"}
    assert send(event("Update", new, "Jets", old)).ok
    delete_by_hand(iam)  # then someone makes a group of the same name
    iam.create_group(GroupName="Jets")
    for user in ("carol", "dave"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    namesake = snapshot(iam, "Jets")
    assert send(event("Update", old, "Jets", new)).ok  # the stack's rollback
    assert snapshot(iam, "Jets") == namesake
    assert send(event("Delete", old, "Jets")).ok  # the stack deleted later
    assert snapshot(iam, "Jets") == namesake


def test_the_rollback_of_an_update_that_recreated_a_deleted_group_leaves_it_deleted(
    iam: IAMClient, stack: Stack, world: dict[str, str]
) -> None:
    assert stack.create({"Users": "alice"}).ok
    delete_by_hand(iam)
    assert stack.update({"Users": "alice,bob"}, stack_rolls_back=True).ok
    assert snapshot(iam, "Jets") is None  # as the Update found it


def test_a_rollback_that_overwrites_a_foreign_policy_gives_it_back_on_a_non_exclusive_delete(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    import json

    from helpers import declared

    send = controller_sender(iam, registry)
    base = {"Users": "alice", "Exclusive": "false", "AdoptExistingGroup": "true"}
    # Made by hand with the very policy the resource declares: adopting it writes no policy,
    # so the policy is never the resource's own.
    iam.create_group(GroupName="Jets")
    document = json.dumps(declared(**base).policy_document)
    iam.put_group_policy(GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=document)
    assert send(event("Create", base)).ok
    forward = {**base, "Users": "alice,bob"}
    assert send(event("Update", forward, "Jets", base)).ok
    iam.put_group_policy(
        GroupName="Jets", PolicyName="JetsPolicy", PolicyDocument=json.dumps(HANDMADE)
    )  # someone else's edit
    assert send(event("Update", base, "Jets", forward)).ok  # the rollback puts its policy
    later = {**base, "Users": "alice,carol"}
    assert send(event("Update", later, "Jets", base)).ok
    assert send(event("Delete", later, "Jets")).ok
    kept = snapshot(iam, "Jets")
    assert kept is not None
    assert kept["members"] == frozenset()
    assert kept["policies"] == {"JetsPolicy": policy.canonical(HANDMADE)}


def test_a_revert_deploy_removes_a_member_the_drift_check_added_for_the_reverted_properties(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    from helpers import ENV

    send = controller_sender(iam, registry)
    old = {"Users": "alice", "Exclusive": "false"}
    assert send(event("Create", old)).ok
    iam.add_user_to_group(GroupName="Jets", UserName="bob")  # by hand: foreign
    new = {**old, "Users": "alice,bob"}
    assert send(event("Update", new, "Jets", old)).ok  # bob is there already: nothing to do
    iam.remove_user_from_group(GroupName="Jets", UserName="bob")
    assert Controller(iam, registry).check_drift(S1, ENV, correct=True).corrected == 1
    # bob is now in the group because this resource put him there: deploying the old
    # properties again (it looks like a rollback of the last Update) takes him out.
    assert send(event("Update", old, "Jets", new)).ok
    assert snapshot(iam, "Jets")["members"] == {"alice"}  # type: ignore[index]


def test_plan_of_the_rollback_delete_of_a_create_that_made_no_group_does_nothing(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    props = {"Users": "ghost"}  # no such user: refused before any write
    failed = controller_sender(iam, registry)(event("Create", props))
    assert not failed.ok
    planned = _plan(iam, registry, event("Delete", props, failed.physical_id))
    assert (planned.action, planned.plan) == ("none", Plan())
    assert "names no group" in planned.note


def test_a_delete_delivered_again_after_it_died_having_deleted_the_group_answers_at_once(
    iam: IAMClient, registry: DynamoDBRegistry, config: ReconcileConfig, sleeper: NoSleep,
    world: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    send = controller_sender(iam, registry, config)
    props = {"Users": "alice"}
    assert send(event("Create", props)).ok
    delete = event("Delete", props, "Jets")
    write = registry._write
    writes: list[object] = []

    def dies_before_the_outcome(*args: Any) -> None:  # the write-ahead, then the outcome
        writes.append(args)
        if len(writes) == 2:
            crash()
        write(*args)

    monkeypatch.setattr(registry, "_write", dies_before_the_outcome)
    with pytest.raises(SystemExit):
        send(delete)
    monkeypatch.setattr(registry, "_write", write)
    assert snapshot(iam, "Jets") is None
    # Lambda's retry: the group is missing because this very request deleted it, not because
    # IAM does not show it yet, so it does not wait for it to appear.
    planned = Controller(iam, registry, config).preview(parse_request(delete, _env()))
    assert (planned.action, planned.group, planned.plan) == ("none", "Jets", Plan())
    assert "does not exist" in planned.note
    assert send(delete).ok
    assert sleeper.slept == []
    assert owner(registry) is None


def test_a_rollback_sent_again_after_the_group_was_replaced_by_hand_never_takes_the_namesake(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The rollback was served; the group is then deleted and remade by hand (dave in it), and
    CloudFormation sends the same rollback again (continue-update-rollback). A rollback served
    already changes nothing: it must not record the namesake as the resource's group either, or
    the stack's Delete later deletes it, dave and all."""
    send = controller_sender(iam, registry)
    old = {"Users": "alice"}
    assert send(event("Create", old)).ok
    new = {"Users": "alice,carol"}
    assert send(event("Update", new, "Jets", old)).ok
    rollback = event("Update", old, "Jets", new)
    assert send(rollback).ok
    delete_by_hand(iam)
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="dave")
    namesake = snapshot(iam, "Jets")
    again = {**rollback, "RequestId": "the-same-rollback-sent-again"}
    assert send(again).ok
    assert send(event("Delete", old, "Jets")).ok  # the stack deleted later
    assert snapshot(iam, "Jets") == namesake


def test_a_rollback_sent_again_after_the_drift_check_made_the_group_again_keeps_it_owned(
    iam: IAMClient, registry: DynamoDBRegistry, world: dict[str, str]
) -> None:
    """The Update made a group deleted by hand again; its rollback deleted it; the drift check
    (correcting) made it again. The same rollback sent again changes nothing, the record
    included: the group stays the resource's, and the stack's Delete removes it."""
    send = controller_sender(iam, registry)
    old = {"Users": "alice", "DriftAction": "correct"}
    assert send(event("Create", old)).ok
    delete_by_hand(iam)
    new = {**old, "Users": "alice,carol"}
    assert send(event("Update", new, "Jets", old)).ok  # makes it again
    rollback = event("Update", old, "Jets", new)
    assert send(rollback).ok
    assert snapshot(iam, "Jets") is None  # as the Update found it
    assert Controller(iam, registry).check_drift(S1, ENV).corrected > 0  # made again
    again = {**rollback, "RequestId": "the-same-rollback-sent-again"}
    assert send(again).ok
    assert send(event("Delete", old, "Jets")).ok
    assert snapshot(iam, "Jets") is None
