"""Hardening: fuzzed properties through the handler, a fault of every IAM error class at every
write position followed by CloudFormation's rollback, duplicate deliveries, two resources."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import BIG_POLICY, ENV, create_props, event, forward_props, snapshot
from jets_deploy_iam import spec
from jets_deploy_iam.exceptions import InvalidPropertiesError
from jets_deploy_iam_cli.local.invoke import invoke
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from processes import run_handler
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ERROR_CLASSES = ["Throttling", "ServiceFailure", "LimitExceeded", "NoSuchEntity", "DeleteConflict"]
#: IAM recovers from these: they are retried for as long as the request's time lasts, so one
#: fails a request only when it outlasts the deadline.
HEALING = {"Throttling", "ServiceFailure"}


@pytest.fixture(autouse=True)
def _injected_absence_never_heals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETS_CONSISTENCY_TIMEOUT", "0.5")  # an injected NoSuchEntity never heals


def assert_nothing_of_theirs_deleted(iam: IAMClient, world: dict[str, str]) -> None:
    assert {u["UserName"] for u in iam.list_users()["Users"]} == {"alice", "bob", "carol", "dave"}
    for arn in world.values():
        assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


# -- property-based: any properties, one answer, a short reason, no write when invalid ----------

text = st.text(max_size=30) | st.text(min_size=1000, max_size=12000)
scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(sorted(spec.KNOWN_PROPERTIES - {"ServiceToken"}))
plausible = {
    "GroupName": st.sampled_from(["Jets", "Fuzz", "a" * 128, "bad name", ""]),
    "Users": st.lists(st.sampled_from(["alice", "bob", "ghost", "bad user", " "]), max_size=4),
    "Exclusive": st.sampled_from(["true", "FALSE", "yes", True]),
    "PolicyProfile": st.sampled_from(["baseline", "scoped", "admin"]),
    "ResourcePrefix": st.sampled_from(["", "shop", "Shop!"]),
}
random_properties = st.dictionaries(known_keys | st.text(max_size=12), value, max_size=6)
properties = random_properties | st.fixed_dictionaries({}, optional=plausible)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # CI must be reproducible; run with --hypothesis-seed to explore more
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(props=properties, kind=st.sampled_from(["Create", "Update", "Delete"]), old=properties)
def test_any_properties_get_exactly_one_bounded_answer(
    strict: StrictIam,
    receiver: ResponseReceiver,
    world: dict[str, str],
    props: dict[str, Any],
    kind: str,
    old: dict[str, Any],
) -> None:
    physical = None if kind == "Create" else "Jets"
    request = event(kind, props, physical, old if kind == "Update" else None)
    writes_before = len(strict.writes)
    response = invoke(request, receiver)  # raises if the handler raised to the runtime
    assert receiver.pending == 0  # exactly one response
    assert response["Status"] in ("SUCCESS", "FAILED")
    assert len(response["Reason"]) <= 256
    assert (response["Status"] == "FAILED") == bool(response["Reason"])  # a failure says why
    if kind != "Delete":
        try:
            spec.parse_properties(request["ResourceProperties"], ENV)
        except InvalidPropertiesError:
            assert response["Status"] == "FAILED"
            assert len(strict.writes) == writes_before


# -- faults of every class at every write position ----------------------------------------------


def fail_write(
    strict: StrictIam, monkeypatch: pytest.MonkeyPatch, position: int, code: str
) -> float:
    """A fault at the position-th write that reaches the caller; returns the Lambda timeout for
    the request. A healing code IAM keeps answering outlasts the deadline: the work may run 5 s
    and the undo keeps its own window (half the margin: 12.5 s) to restore. The retries wait on
    the handler's virtual clock (conftest), and so does the deadline: no real time passes."""
    if code not in HEALING:
        strict.fail_write(position, code)
        return 300.0
    monkeypatch.setenv("JETS_DEADLINE_MARGIN", "25")
    # One write at a time: the faulted call is the one the deadline stops, so the Reason names
    # IAM's error (concurrently, a sibling member change could be the one stopped instead).
    monkeypatch.setenv("JETS_MAX_IN_FLIGHT", "1")
    strict.fail_write(position, code, attempts=10**9)
    return 30.0


@pytest.mark.parametrize("code", ERROR_CLASSES)
@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_create_fault_then_rollback_leaves_nothing(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    timeout = fail_write(strict, monkeypatch, position, code)
    response = invoke(event("Create", create_props(world)), receiver, timeout)
    assert response["Status"] == "FAILED"
    assert code in response["Reason"]
    strict.clear_faults()
    rollback = invoke(
        event("Delete", create_props(world), response["PhysicalResourceId"]), receiver
    )
    assert rollback["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None
    assert_nothing_of_theirs_deleted(iam, world)


@pytest.mark.parametrize("code", ERROR_CLASSES)
@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])  # the rename's copy makes 5 writes
def test_update_with_rename_fault_then_rollback_restores_exactly(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    old, new = create_props(world), forward_props(world)
    invoke(event("Create", old), receiver)
    before = snapshot(iam, "Jets")
    timeout = fail_write(strict, monkeypatch, position, code)
    response = invoke(event("Update", new, "Jets", old), receiver, timeout)
    strict.clear_faults()
    assert response["Status"] == "FAILED"
    assert code in response["Reason"]
    assert response["PhysicalResourceId"] == "Jets"
    assert snapshot(iam, "JetsDeployers") is None  # the failed Update undid its own writes
    rollback = invoke(event("Update", old, "Jets", new), receiver)
    assert rollback["Status"] == "SUCCESS", rollback["Reason"]
    assert snapshot(iam, "Jets") == before
    assert snapshot(iam, "JetsDeployers") is None
    assert_nothing_of_theirs_deleted(iam, world)


@pytest.mark.parametrize("code", ERROR_CLASSES)
@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_in_place_update_fault_is_undone_then_the_rollback_changes_nothing(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    old = create_props(world)
    new = {**forward_props(world), "GroupName": "Jets", "GroupPath": "/moved/"}
    invoke(event("Create", old), receiver)
    before = snapshot(iam, "Jets")
    timeout = fail_write(strict, monkeypatch, position, code)
    response = invoke(event("Update", new, "Jets", old), receiver, timeout)
    strict.clear_faults()
    assert response["Status"] == "FAILED"
    assert snapshot(iam, "Jets") == before  # undone before answering
    strict.reset()
    rollback = invoke(event("Update", old, "Jets", new), receiver)
    assert rollback["Status"] == "SUCCESS", rollback["Reason"]
    assert strict.writes == []
    assert snapshot(iam, "Jets") == before
    assert_nothing_of_theirs_deleted(iam, world)


@pytest.mark.parametrize("code", ERROR_CLASSES)
@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_delete_fault_then_retry_removes_the_group(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    props = create_props(world)
    invoke(event("Create", props), receiver)
    timeout = fail_write(strict, monkeypatch, position, code)
    response = invoke(event("Delete", props, "Jets"), receiver, timeout)
    strict.clear_faults()
    # Every fault outlasts the retries; NoSuchEntity on a removal is believed only if a read
    # agrees, and here the member, policy or attachment is still there.
    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == "Jets"
    assert code in response["Reason"]
    retry = invoke(event("Delete", props, "Jets"), receiver)  # CloudFormation's next try
    assert retry["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None
    assert_nothing_of_theirs_deleted(iam, world)


@pytest.mark.parametrize("position", [1, 2, 3, 4, 5, 6])
def test_failed_adoption_hands_the_group_back_as_it_was(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int,
) -> None:  # fmt: skip
    iam.create_group(GroupName="Jets")
    for user in ("bob", "carol"):
        iam.add_user_to_group(GroupName="Jets", UserName=user)
    iam.put_group_policy(
        GroupName="Jets", PolicyName="Handmade", PolicyDocument=BIG_POLICY % "handmade"
    )
    iam.attach_group_policy(GroupName="Jets", PolicyArn=world["p1"])
    before = snapshot(iam, "Jets")
    props = {"Users": "alice", "AdoptExistingGroup": "true"}  # exclusive: 6 writes to adopt
    strict.fail_write(position, "AccessDenied")  # a healing fault is retried: see above
    response = invoke(event("Create", props), receiver)
    strict.clear_faults()
    assert response["Status"] == "FAILED"
    assert "(adopted group restored)" in response["Reason"]
    assert response["PhysicalResourceId"].startswith("no-group:")
    assert snapshot(iam, "Jets") == before
    rollback = invoke(event("Delete", props, response["PhysicalResourceId"]), receiver)
    assert rollback["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") == before


@pytest.mark.parametrize("code", sorted(HEALING))
@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_a_fault_iam_recovers_from_is_retried_through_while_time_remains(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int, code: str,
) -> None:  # fmt: skip
    strict.fail_write(position, code, attempts=100)
    # 100 backoffs of up to 4 s (virtual, counted by the deadline) fit the template's 900 s
    response = invoke(event("Create", create_props(world)), receiver, timeout_seconds=900)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert len(strict.faulted) == 100
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == {"alice", "bob"}
    assert group["attached"] == {world["p1"]}


# -- repeated deliveries and several resources ---------------------------------------------------


def test_duplicate_create_is_harmless(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    request = event("Create", create_props(world))
    first = invoke(request, receiver)
    strict.reset()
    second = invoke(request, receiver)
    assert first["Status"] == second["Status"] == "SUCCESS"
    assert second["PhysicalResourceId"] == "Jets"
    assert second["Data"] == first["Data"]
    assert strict.writes == []


def test_create_over_a_different_existing_group_still_fails(
    iam: IAMClient, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    invoke(event("Create", create_props(world)), receiver)
    other = invoke(event("Create", {**create_props(world), "Users": "carol"}), receiver)
    assert other["Status"] == "FAILED"
    assert "already exists" in other["Reason"]


def test_duplicate_update_and_delete_are_harmless(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    old, new = create_props(world), forward_props(world)
    invoke(event("Create", old), receiver)
    update = event("Update", new, "Jets", old)
    assert invoke(update, receiver)["Status"] == "SUCCESS"
    strict.reset()
    repeated = invoke(update, receiver)  # old physical id again; the group is already renamed
    assert repeated["Status"] == "SUCCESS"
    assert repeated["PhysicalResourceId"] == "JetsDeployers"
    assert strict.writes == []
    delete = event("Delete", new, "JetsDeployers")
    assert invoke(delete, receiver)["Status"] == "SUCCESS"
    assert invoke(delete, receiver)["Status"] == "SUCCESS"
    assert snapshot(iam, "JetsDeployers") is None


def test_one_warm_function_serves_two_resources_without_mixing_them(
    iam: IAMClient, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    a = {"GroupName": "TeamA", "Users": "alice"}
    b = {"GroupName": "TeamB", "Users": "bob,carol", "ManagedPolicyArns": world["p1"]}
    ra = invoke(event("Create", a), receiver)
    rb = invoke(event("Create", b), receiver)
    failed = invoke(event("Update", {**a, "Users": "ghost"}, "TeamA", a), receiver)
    ok = invoke(event("Update", {**b, "Users": "bob"}, "TeamB", b), receiver)
    assert (ra["PhysicalResourceId"], rb["PhysicalResourceId"]) == ("TeamA", "TeamB")
    assert ra["Data"]["GroupName"] == "TeamA"
    assert failed["Status"] == "FAILED"
    assert failed["Data"] == {}  # nothing left over from the previous request
    assert ok["Status"] == "SUCCESS"
    assert ok["Data"]["GroupName"] == "TeamB"
    group_a, group_b = snapshot(iam, "TeamA"), snapshot(iam, "TeamB")
    assert group_a is not None
    assert group_b is not None
    assert group_a["members"] == {"alice"}
    assert group_b["members"] == {"bob"}


def test_two_resources_reconciled_concurrently_by_the_same_function(
    moto_server: str, tmp_path: Path
) -> None:
    """Two invocations at once, each in its own process as Lambda runs them."""
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1")
    users = [f"user{i:03d}" for i in range(60)]
    for name in users:
        iam.create_user(UserName=name)
    results: dict[str, dict[str, Any]] = {}
    with ResponseReceiver(tmp_path) as receiver:

        def create(name: str, members: list[str]) -> None:
            request = event("Create", {"GroupName": name, "Users": members})
            request["RequestId"] = f"concurrent-{name}"
            results[name], _ = run_handler(request, receiver, moto_server, tmp_path)

        threads = [
            threading.Thread(target=create, args=("Alpha", users[:30])),
            threading.Thread(target=create, args=("Beta", users[30:])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results["Alpha"]["Status"] == results["Beta"]["Status"] == "SUCCESS"
    assert {u["UserName"] for u in iam.get_group(GroupName="Alpha")["Users"]} == set(users[:30])
    assert {u["UserName"] for u in iam.get_group(GroupName="Beta")["Users"]} == set(users[30:])
