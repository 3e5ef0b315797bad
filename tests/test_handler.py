"""The CloudFormation edge, in process: every lifecycle rule of the contract, with responses
captured from a local HTTPS receiver and IAM served by moto plus the strict layer."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from helpers import (
    ACCOUNT,
    create_props,
    event,
    forward_props,
    make_policy,
    make_users,
    snapshot,
)
from jets_deploy_iam import handler
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam_cli.local.invoke import invoke
from jets_deploy_iam_cli.local.receiver import SIGNATURE, ResponseReceiver
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def test_crhelper_builds_no_unused_clients_and_leaves_the_environment_alone() -> None:
    """Its polling-mode clients cost ~110 ms of cold start (built on first use, which a request
    that finishes in one invocation never makes); the SAM-local switch must not leak."""
    assert handler.protocol.polling_clients == {}
    assert "_logs_client" not in vars(handler.protocol)
    assert "AWS_SAM_LOCAL" not in os.environ
    assert not handler.protocol._sam_local  # only the constructor saw the switch
    assert handler.protocol._sleep_on_delete == 0


def test_create_reports_the_group_and_its_attributes(
    iam: IAMClient, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "Jets"
    data = response["Data"]
    assert data["GroupName"] == "Jets"
    assert data["PolicyName"] == "JetsPolicy"
    assert data["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/Jets"
    group = read_group(iam, "Jets")
    assert group is not None
    assert data["GroupId"] == group.group_id
    assert group.members == {"alice", "bob"}


def test_invalid_create_fails_with_a_named_cause_and_no_writes(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver
) -> None:
    response = invoke(event("Create", {"GroupName": "bad name", "Userz": "x"}), receiver)
    assert response["Status"] == "FAILED"
    assert "unknown property 'Userz'" in response["Reason"]
    assert "GroupName 'bad name'" in response["Reason"]
    assert strict.writes == []
    placeholder = response["PhysicalResourceId"]
    assert placeholder.startswith("no-group:")
    rollback = invoke(event("Delete", {"GroupName": "bad name"}, placeholder), receiver)
    assert rollback["Status"] == "SUCCESS"
    assert strict.writes == []


def test_failed_create_never_claims_a_group_it_did_not_create(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="carol")
    before = snapshot(iam, "Jets")
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "FAILED"
    assert "does not own it; set AdoptExistingGroup true" in response["Reason"]
    assert response["PhysicalResourceId"] != "Jets"
    rollback = invoke(
        event("Delete", create_props(world), response["PhysicalResourceId"]), receiver
    )
    assert rollback["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") == before


@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_create_failing_at_any_write_is_cleaned_up_by_the_rollback_delete(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int,
) -> None:  # fmt: skip
    strict.fail_write(position, "AccessDenied")  # not retried (ServiceFailure heals: robustness)
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "FAILED"
    assert "AccessDenied" in response["Reason"]
    rollback = invoke(
        event("Delete", create_props(world), response["PhysicalResourceId"]), receiver
    )
    assert rollback["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None
    assert {u["UserName"] for u in iam.list_users()["Users"]} == {"alice", "bob", "carol", "dave"}
    assert iam.get_policy(PolicyArn=world["p1"])["Policy"]["Arn"] == world["p1"]


@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])  # the rename's copy makes 5 writes
def test_update_failing_at_any_write_is_undone_by_the_rollback_update(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    position: int,
) -> None:  # fmt: skip
    old, new = create_props(world), forward_props(world)
    assert invoke(event("Create", old), receiver)["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    strict.fail_write(position, "AccessDenied")
    response = invoke(event("Update", new, "Jets", old), receiver)
    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == "Jets"
    rollback = invoke(event("Update", old, "Jets", new), receiver)
    assert rollback["Status"] == "SUCCESS", rollback["Reason"]
    assert snapshot(iam, "Jets") == before
    assert snapshot(iam, "JetsDeployers") is None


def test_no_op_update_makes_no_write(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    props = create_props(world)
    invoke(event("Create", props), receiver)
    strict.reset()
    response = invoke(event("Update", props, "Jets", props), receiver)
    assert response["Status"] == "SUCCESS"
    assert strict.writes == []


def test_rename_is_a_replacement_and_the_cleanup_delete_removes_the_old_group(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    old, new = create_props(world), forward_props(world)
    created = invoke(event("Create", old), receiver)
    before = snapshot(iam, "Jets")
    response = invoke(event("Update", new, "Jets", old), receiver)
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "JetsDeployers"
    assert response["Data"]["GroupId"] != created["Data"]["GroupId"]
    assert response["Data"]["Arn"].endswith(":group/JetsDeployers")
    assert snapshot(iam, "Jets") == before  # untouched until CloudFormation's cleanup
    cleanup = invoke(event("Delete", old, "Jets"), receiver)
    assert cleanup["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None
    group = read_group(iam, "JetsDeployers")
    assert group is not None
    assert group.members == {"alice", "carol"}


def test_delete_is_idempotent_and_spares_users_and_policies(
    iam: IAMClient, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    props = create_props(world)
    invoke(event("Create", props), receiver)
    for _ in range(2):
        assert invoke(event("Delete", props, "Jets"), receiver)["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None
    assert len(iam.list_users()["Users"]) == 4  # the world's users, all still there
    assert iam.get_policy(PolicyArn=world["p1"])["Policy"]["Arn"] == world["p1"]


def test_delete_acts_only_on_the_physical_id(
    iam: IAMClient, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    props = create_props(world)
    invoke(event("Create", props), receiver)
    before = snapshot(iam, "Jets")
    response = invoke(event("Delete", props, "SomethingElse"), receiver)
    assert response["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") == before


def test_invalid_update_keeps_the_old_physical_id_and_writes_nothing(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    props = create_props(world)
    invoke(event("Create", props), receiver)
    strict.reset()
    response = invoke(event("Update", {**props, "Exclusive": "maybe"}, "Jets", props), receiver)
    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == "Jets"
    assert "Exclusive must be true or false" in response["Reason"]
    assert strict.writes == []


def test_missing_user_fails_with_a_reason_naming_it(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    props = create_props(world)
    invoke(event("Create", props), receiver)
    strict.reset()
    response = invoke(event("Update", {**props, "Users": "alice,ghost"}, "Jets", props), receiver)
    assert response["Status"] == "FAILED"
    assert "no such IAM user ghost" in response["Reason"]
    assert strict.writes == []


def test_an_iam_refusal_names_the_operation(
    strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    strict.inject("GetGroup", "AccessDenied", times=10)
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("IAM refused GetGroup: AccessDenied: injected")
    assert strict.writes == []


def test_a_broken_environment_fails_cleanly_without_claiming_a_group(
    strict: StrictIam,
    receiver: ResponseReceiver,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JETS_MAX_IN_FLIGHT", "eight")
    strict.reset()
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "FAILED"
    assert response["Reason"] == "JETS_MAX_IN_FLIGHT must be a number, got 'eight'"
    assert response["PhysicalResourceId"].startswith("no-group:")
    assert strict.calls == []


def test_every_reason_fits_in_256_characters(strict: StrictIam, receiver: ResponseReceiver) -> None:
    props = {f"Bogus{i}": "x" for i in range(40)} | {"Users": ",".join(["bad user"] * 3)}
    response = invoke(event("Create", props), receiver)
    assert response["Status"] == "FAILED"
    assert len(response["Reason"]) <= 256
    assert response["Reason"].startswith("unknown properties")


def test_largest_possible_response_stays_under_4096_bytes(
    iam: IAMClient, receiver: ResponseReceiver
) -> None:
    path = "/" + "p" * 510 + "/"
    props = {"GroupName": "g" * 128, "GroupPath": path, "PolicyName": "n" * 128}
    response = invoke(event("Create", props), receiver)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["Data"]["Arn"].endswith(path + "g" * 128)
    assert len(json.dumps(response)) < 4096


def test_short_remaining_time_fails_cleanly_before_any_call(
    strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    strict.reset()
    response = invoke(event("Create", create_props(world)), receiver, timeout_seconds=5)
    assert response["Status"] == "FAILED"
    assert "Lambda time nearly used up" in response["Reason"]
    assert response["PhysicalResourceId"].startswith("no-group:")
    assert strict.calls == []


def test_short_remaining_time_on_update_keeps_the_old_physical_id(
    strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    old, new = create_props(world), forward_props(world)
    invoke(event("Create", old), receiver)
    strict.reset()
    response = invoke(event("Update", new, "Jets", old), receiver, timeout_seconds=5)
    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == "Jets"
    assert "Lambda time nearly used up" in response["Reason"]
    assert strict.writes == []


def test_running_out_of_time_mid_create_is_still_cleaned_up(
    iam: IAMClient, strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, handler_clock: VirtualClock,
) -> None:  # fmt: skip
    monkeypatch.setenv("JETS_DEADLINE_MARGIN", "1")
    strict.on_call = lambda _action: handler_clock.sleep(0.2)  # each IAM call takes 0.2 s
    response = invoke(event("Create", create_props(world)), receiver, timeout_seconds=1.7)
    assert response["Status"] == "FAILED"
    assert "time" in response["Reason"]
    invoke(event("Delete", create_props(world), response["PhysicalResourceId"]), receiver)
    assert snapshot(iam, "Jets") is None


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the function's loggers emit, formatted as in Lambda (JSON lines)."""
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(handler.logger.registered_formatter)
    targets = [logging.getLogger(n) for n in ("jets-deploy-iam", "crhelper", "")]
    for target in targets:
        target.addHandler(sink)
    try:
        yield stream
    finally:
        for target in targets:
            target.removeHandler(sink)


def test_logs_never_contain_the_presigned_url_even_at_debug(
    receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    handler.logger.setLevel("DEBUG")
    logging.getLogger("crhelper").setLevel("DEBUG")  # even if someone lowers crhelper's level
    try:
        with captured_logs() as logs:
            props = create_props(world)
            invoke(event("Create", props), receiver)
            invoke(event("Update", {**props, "Users": "carol"}, "Jets", props), receiver)
            invoke(event("Update", {**props, "Users": "ghost"}, "Jets", props), receiver)
            invoke(event("Delete", props, "Jets"), receiver)
    finally:
        handler.logger.setLevel("INFO")
        logging.getLogger("crhelper").setLevel("INFO")
    text = logs.getvalue()
    assert "request finished" in text
    assert "'ResponseURL': 'https://localhost" in text  # crhelper's DEBUG event line ran...
    assert SIGNATURE not in text  # ...but without the signature
    assert "X-Amz-Signature=" not in text


def test_one_log_line_per_change_and_one_summary(
    receiver: ResponseReceiver, world: dict[str, str]
) -> None:
    with captured_logs() as logs:
        invoke(event("Create", create_props(world)), receiver)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    applied = [line for line in lines if line["message"] == "change applied"]
    summaries = [line for line in lines if line["message"] == "request finished"]
    assert len(applied) == 5
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["status"] == "SUCCESS"
    assert summary["changes_applied"] == 5
    assert summary["correlation_id"] == lines[0]["correlation_id"]


def test_fixture_events_run_through_the_handler(iam: IAMClient, receiver: ResponseReceiver) -> None:
    """events/*.json as shipped, against moto with AWS_ConfigRole stubbed as a local policy."""
    from pathlib import Path

    events = Path(__file__).parent.parent / "events"
    make_users(iam, ["alice", "bob", "carol"])
    load = lambda name: json.loads((events / name).read_text())  # noqa: E731
    invalid = invoke(load("create-invalid.json"), receiver)
    assert invalid["Status"] == "FAILED"
    assert "AWS_ConfigRole" in invalid["Reason"]
    created = load("create.json")
    created = copy.deepcopy(created)
    created["ResourceProperties"]["ManagedPolicyArns"] = [make_policy(iam, "AWS_ConfigRole")]
    assert invoke(created, receiver)["Status"] == "SUCCESS"


def test_a_new_group_not_yet_visible_is_retried_on_the_injected_clock(
    strict: StrictIam, receiver: ResponseReceiver, world: dict[str, str],
    handler_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """IAM answers NoSuchEntity for a group it just created: the handler's consistency retries
    back off on the clock its config was given (ReconcileConfig.from_env), never time.sleep."""
    import time

    def real_sleep(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) in a handler test")

    monkeypatch.setattr(time, "sleep", real_sleep)
    strict.settle_after_create = 3  # the next 3 calls naming the new group: NoSuchEntity
    response = invoke(event("Create", create_props(world)), receiver)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert strict.actions().count("PutGroupPolicy") == 4  # the first call naming it, 3 retries
    assert sum(handler_clock.slept) >= 0.25 + 0.5 + 1.0  # the backoff, waited in virtual time
