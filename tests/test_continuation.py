"""Continuation across invocations, end to end through the real handler and crhelper's polling.

The function's timeout is 60 s of virtual time (``continuation_sim.VirtualContext``), IAM grants
writes from a token bucket on the same clock, and EventBridge and Lambda are moto's: the first
invocation runs out of time mid-change, answers nothing and makes the polling rule; the handler
is then invoked with exactly the rule target's Input, every minute, until the request is
answered. Assertions are on counts and states, never on wall-clock time.
"""

from __future__ import annotations

import collections
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from continuation_sim import FUNCTION, PREFIX, Cloud, RefusingTargets
from helpers import ENV, STACK, event, make_users, snapshot
from jets_deploy_iam import continuation, handler
from jets_deploy_iam.continuation import Budget, Continuing, service_timeout, stopped_by_deadline
from jets_deploy_iam.exceptions import DeadlineExceededError, IamApplyError
from jets_deploy_iam.ownership import Ownership
from jets_deploy_iam.protocol import Invocation, rule_name
from jets_deploy_iam.registry.store import DynamoDBRegistry
from jets_deploy_iam.request import ResourceKey, parse_request
from jets_deploy_iam.response import Response
from jets_deploy_iam.undo import Undo
from jets_deploy_iam_cli.local.context import FakeLambdaContext
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_iam import IAMClient

KEY = ResourceKey(STACK, "JetsDeployGroup")


def users(n: int, start: int = 0) -> list[str]:
    return [f"user{i:04d}" for i in range(start, start + n)]


def added(strict: StrictIam) -> collections.Counter[str]:
    """How many times IAM accepted an AddUserToGroup for each user."""
    return collections.Counter(
        c.params["UserName"] for c in strict.accepted_writes if c.action == "AddUserToGroup"
    )


@pytest.fixture
def record(registry: DynamoDBRegistry) -> Any:
    return lambda: registry.load(KEY).record


# -- the whole path ---------------------------------------------------------------------------


def test_a_create_too_long_for_one_invocation_goes_on_until_done(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(60))
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])

    assert not cloud.send(create)  # out of time mid-Create: no answer
    assert cloud.rules() == [rule]
    pointer = cloud.target_input(rule)
    assert pointer["CrHelperPoll"] is True
    assert pointer["RequestId"] == create["RequestId"]
    assert "ResponseURL" not in pointer  # the registry keeps the request, not the rule
    assert "ResourceProperties" not in pointer
    [permission] = cloud.permissions()
    assert permission["Sid"] == rule
    assert permission["Principal"] == {"Service": "events.amazonaws.com"}
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":rule/{rule}")
    going_on = record().continuation
    assert going_on.request_id == create["RequestId"]
    assert going_on.group == "Jets"
    assert record().in_progress == create["RequestId"]
    done_first = added(strict).total()
    assert 0 < done_first < 60

    while not cloud.fire(rule):
        assert len(cloud.invocations) < 10
    answer = cloud.receiver.take(create["RequestId"], 1)

    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == "Jets"  # the final poll answers the group's name
    assert answer["Data"]["GroupName"] == "Jets"
    assert cloud.receiver.pending == 0  # exactly one answer
    assert sum(i.answered for i in cloud.invocations) == 1
    assert len(cloud.invocations) >= 3
    assert added(strict) == dict.fromkeys(users(60), 1)  # every member added exactly once
    group = snapshot(iam, "Jets")
    assert group is not None
    assert group["members"] == frozenset(users(60))
    assert cloud.rules() == []  # rule, target and permission removed
    assert cloud.permissions() == []
    assert record().continuation is None
    assert record().in_progress is None
    assert record().current == "Jets"


def test_a_quick_request_builds_no_polling_client_and_makes_no_rule(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, record: Any
) -> None:
    handler.protocol.polling_clients.clear()
    make_users(iam, users(5))
    answer = cloud.until_answered(event("Create", {"Users": users(5)}))
    assert answer["Status"] == "SUCCESS"
    assert len(cloud.invocations) == 1
    assert handler.protocol.polling_clients == {}  # the cold-start path stays client-free
    assert cloud.rules() == []
    assert record().continuation is None


def test_the_gate_costs_a_quick_request_no_registry_call(
    cloud: Cloud, iam: IAMClient, record: Any
) -> None:
    """The gate's read is the controller's read: 1 read and 2 writes for a Create, 1 and 1 for
    a no-op Update, as without continuation."""
    make_users(iam, users(3))
    calls: list[str] = []
    table = handler._clients()[1]
    assert isinstance(table, DynamoDBRegistry)
    table.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_kw: calls.append(model.name)
    )

    def reads_and_writes() -> tuple[int, int]:
        writes = calls.count("PutItem") + calls.count("TransactWriteItems")  # (with claims)
        return calls.count("BatchGetItem"), writes

    props = {"Users": users(3)}
    assert cloud.until_answered(event("Create", props))["Status"] == "SUCCESS"
    assert reads_and_writes() == (1, 2)
    calls.clear()
    assert cloud.until_answered(event("Update", props, "Jets", props))["Status"] == "SUCCESS"
    assert reads_and_writes() == (1, 1)


def test_a_continued_update_keeps_the_first_undo_and_the_rollback_restores_exactly(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(70))
    old = {"Users": users(10)}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    new = {"Users": users(60, 10), "Services": "s3,lambda"}  # revoke 10, grant 60, new policy
    strict.reset()
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    update = event("Update", new, "Jets", old)
    answer = cloud.until_answered(update)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(cloud.invocations) >= 4  # the Create, then the Update's three or more
    last = record().last_update
    assert last.request_id == update["RequestId"]
    # the first invocation's undo record, not the undo of the remaining plan
    assert last.undo.members == {
        **dict.fromkeys(users(10), True),
        **dict.fromkeys(users(60, 10), False),
    }
    assert "JetsPolicy" in last.undo.inline
    assert snapshot(iam, "Jets")["members"] == frozenset(users(60, 10))

    strict.throttle(rate=100, clock=handler_clock.now)  # the stack rolls back (another resource)
    back = cloud.until_answered(event("Update", old, "Jets", new))
    assert back["Status"] == "SUCCESS", back["Reason"]
    assert snapshot(iam, "Jets") == before
    assert cloud.rules() == []


def test_a_delete_too_long_for_one_invocation_goes_on_emptying_the_group(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(60))
    props = {"Users": users(60)}
    assert cloud.until_answered(event("Create", props))["Status"] == "SUCCESS"
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    answer = cloud.until_answered(event("Delete", props, "Jets"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == "Jets"
    assert len(cloud.invocations) >= 3  # the Create, then the Delete's two or more
    assert snapshot(iam, "Jets") is None
    assert cloud.rules() == []
    assert record().continuation is None


def test_a_continued_adoption_stays_an_adoption(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """Its later invocations keep the hand-back record of the first (a failure must give the
    group back as it was found), and the answer claims the group only once it succeeded."""
    make_users(iam, users(60))
    iam.create_group(GroupName="Jets")
    iam.add_user_to_group(GroupName="Jets", UserName="user0000")
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60), "AdoptExistingGroup": "true"})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)
    first = record().last_update
    assert first.physical_id.startswith("no-group:")  # the hand-back record
    assert not cloud.fire(rule)
    assert record().last_update == first  # kept, not the undo of the remaining plan
    while not cloud.fire(rule):
        assert len(cloud.invocations) < 10
    answer = cloud.receiver.take(create["RequestId"], 1)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == "Jets"
    assert snapshot(iam, "Jets")["members"] == frozenset(users(60))
    assert record().last_update is None


def test_a_request_that_makes_no_progress_fails_instead_of_polling_forever(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(40)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)
    strict.throttle(rate=0.0001, burst=0, clock=handler_clock.now)  # IAM grants nothing now
    assert cloud.fire(rule)  # nothing applied in that invocation: it fails
    answer = cloud.receiver.take(create["RequestId"], 1)
    assert answer["Status"] == "FAILED"
    assert "Throttling" in answer["Reason"] or "Lambda time" in answer["Reason"]
    assert answer["PhysicalResourceId"] == "Jets"  # the rollback Delete removes it
    assert cloud.rules() == []
    assert cloud.permissions() == []
    assert record().continuation is None
    strict.throttle(rate=100, clock=handler_clock.now)
    gone = cloud.until_answered(event("Delete", {"Users": users(40)}, "Jets"))
    assert gone["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") is None


def test_an_update_past_the_service_timeout_fails_cleanly_and_the_rollback_restores(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(200))
    old = {"Users": users(5), "ServiceTimeout": "600"}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    new = {"Users": users(200), "ServiceTimeout": "600"}  # 195 adds at 0.5/s: 390 s at best
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    update = event("Update", new, "Jets", old)
    started = handler_clock.now()
    answer = cloud.until_answered(update)
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == "Jets"
    assert "ServiceTimeout (600 s after the request)" in answer["Reason"]
    assert handler_clock.now() - started < 600 - continuation.ANSWER_RESERVE + 1  # in time
    assert cloud.rules() == []
    assert cloud.permissions() == []

    strict.throttle(rate=100, clock=handler_clock.now)  # CloudFormation's rollback Update
    back = cloud.until_answered(event("Update", old, "Jets", new))
    assert back["Status"] == "SUCCESS", back["Reason"]
    assert snapshot(iam, "Jets") == before


# -- attacks ---------------------------------------------------------------------------------


def test_a_firing_while_another_invocation_holds_the_lease_goes_away(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock,
    registry: DynamoDBRegistry, record: Any,
) -> None:  # fmt: skip
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(40)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)
    # Another container's invocation took the lease (EventBridge delivered twice, or the rule
    # fired again while it works): until the lease ends, a firing does nothing at all.
    stored = registry.load(KEY)
    held = replace(
        stored.record.continuation, holder="other", lease_until=handler_clock.now() + 300
    )
    registry.save(replace(stored.record, continuation=held), stored.version)
    strict.reset()
    assert not cloud.fire(rule)
    assert strict.calls == []
    assert record().continuation.holder == "other"
    assert cloud.rules() == [rule]
    handler_clock.sleep(300)  # that invocation is surely over (its Lambda time is)
    while not cloud.fire(rule):
        assert len(cloud.invocations) < 10
    answer = cloud.receiver.take(create["RequestId"], 1)
    assert answer["Status"] == "SUCCESS"
    assert added(strict).total() <= 40
    assert snapshot(iam, "Jets")["members"] == frozenset(users(40))


def test_an_invocation_that_dies_holding_the_lease_is_taken_over_after_it(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(60))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)

    def crash() -> None:
        raise SystemExit("the Lambda runtime killed the invocation")

    strict.before_write("AddUserToGroup", crash)
    with pytest.raises(SystemExit):
        cloud.fire(rule)
    assert record().continuation.holder is not None  # the dead invocation's lease
    assert not cloud.fire(rule)  # within its Lambda time: goes away
    while not cloud.fire(rule):  # after it: taken over, finished
        assert len(cloud.invocations) < 12
    answer = cloud.receiver.take(create["RequestId"], 1)
    assert answer["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets")["members"] == frozenset(users(60))
    assert cloud.receiver.pending == 0
    assert cloud.rules() == []


def test_a_late_firing_after_the_answer_does_nothing_but_remove_the_rule(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(40)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)
    pointer = cloud.target_input(rule)
    assert cloud.until_answered is not None
    while not cloud.fire(rule):
        pass
    cloud.receiver.take(create["RequestId"], 1)
    kept = record()
    strict.reset()
    assert not cloud.invoke(pointer)  # EventBridge's duplicate, after the answer
    assert strict.calls == []
    assert cloud.receiver.pending == 0
    assert record() == kept


def test_a_delete_while_the_create_is_polling_removes_what_the_create_made(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    """CloudFormation cancels a Create in flight when another resource fails, then deletes it
    with an id of its own invention: the group the Create made must not be orphaned."""
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    props = {"Users": users(40)}
    create = event("Create", props)
    create_rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)
    assert snapshot(iam, "Jets") is not None
    strict.throttle(rate=100, clock=handler_clock.now)
    generated = "jets-JetsDeployGroup-1A2B3C4D5E6F"
    answer = cloud.until_answered(event("Delete", props, generated))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == generated
    assert snapshot(iam, "Jets") is None
    assert cloud.rules() == []  # the Create's rule went with it
    assert cloud.permissions() == []
    assert record().continuation is None
    assert not cloud.rule_exists(create_rule)


def test_a_delete_waits_for_the_create_invocation_that_holds_the_lease(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock,
    registry: DynamoDBRegistry, record: Any,
) -> None:  # fmt: skip
    make_users(iam, users(40))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    props = {"Users": users(40)}
    create = event("Create", props)
    assert not cloud.send(create)
    stored = registry.load(KEY)
    until = handler_clock.now() + 30
    held = replace(stored.record.continuation, holder="other", lease_until=until)
    registry.save(replace(stored.record, continuation=held), stored.version)
    strict.throttle(rate=100, clock=handler_clock.now)
    answer = cloud.until_answered(event("Delete", props, "Jets"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert handler_clock.now() >= until  # it waited for the lease to end
    assert snapshot(iam, "Jets") is None
    assert record().continuation is None


def test_a_continued_invocation_stops_when_another_request_supersedes_it(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock,
    registry: DynamoDBRegistry, record: Any,
) -> None:  # fmt: skip
    make_users(iam, users(60))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    create = event("Create", {"Users": users(60)})
    rule = rule_name(PREFIX, KEY, create["RequestId"])
    assert not cloud.send(create)

    def cancel() -> None:  # a Delete arrives in another container meanwhile
        stored = registry.load(KEY)
        cancelled = replace(stored.record.continuation, cancelled_by="the-delete")
        registry.save(replace(stored.record, continuation=cancelled), stored.version)

    strict.before_write("AddUserToGroup", cancel)
    before = added(strict).total()
    assert not cloud.fire(rule)  # stops within CHECK_EVERY (virtual) seconds, answers nothing
    assert 0 < added(strict).total() - before < 60 - before  # well before the end
    assert record().continuation.cancelled_by == "the-delete"
    assert record().continuation.holder is None  # the lease is released for the Delete
    assert cloud.rules() == []  # its rule is gone: CloudFormation gave up on it
    assert cloud.receiver.pending == 0


def test_when_the_next_invocation_cannot_be_arranged_the_update_fails_now_and_is_undone(
    cloud: Cloud, strict: StrictIam, iam: IAMClient, handler_clock: VirtualClock, record: Any
) -> None:
    make_users(iam, users(60))
    old = {"Users": users(5)}
    assert cloud.until_answered(event("Create", old))["Status"] == "SUCCESS"
    before = snapshot(iam, "Jets")
    handler.protocol.polling_clients["events"] = RefusingTargets(boto3.client("events"))
    strict.throttle(rate=0.5, burst=1, clock=handler_clock.now)
    update = event("Update", {"Users": users(60)}, "Jets", old)
    assert cloud.send(update)  # answered at once: no invocation would come
    answer = cloud.receiver.take(update["RequestId"], 1)
    assert answer["Status"] == "FAILED"
    reason = answer["Reason"]
    assert reason.startswith("the work outlasted the invocation, and going on in another failed")
    assert "AccessDeniedException" in reason
    assert answer["PhysicalResourceId"] == "Jets"
    assert cloud.rules() == []  # what was made of its polling went again
    assert cloud.permissions() == []
    assert record().continuation is None
    # Undone in the 5 s the undo keeps, or (at 0.5 writes/s, not all) left to the rollback:
    assert "(its changes were undone)" in reason or "undoing its changes failed too" in reason
    strict.throttle(rate=100, clock=handler_clock.now)
    back = cloud.until_answered(event("Update", old, "Jets", {"Users": users(60)}))
    assert back["Status"] == "SUCCESS"
    assert snapshot(iam, "Jets") == before


@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_a_pending_response_is_never_sent(
    receiver: ResponseReceiver, monkeypatch: pytest.MonkeyPatch, prefix: str | None
) -> None:
    """Whether polling is configured or not (``sam local``), no answer leaves for work that goes
    on, and nothing of polling is built for it here (the controller arranges it)."""
    if prefix is None:
        monkeypatch.delenv("JETS_POLL_RULE_PREFIX", raising=False)
    else:
        monkeypatch.setenv("JETS_POLL_RULE_PREFIX", prefix)
    monkeypatch.setenv("SSL_CERT_FILE", str(receiver.cafile))
    handler.protocol.polling_clients.clear()
    sent = {**event("Create", {}), "ResponseURL": receiver.url("pending")}
    context = cast("LambdaContext", FakeLambdaContext())
    run = lambda _invocation: Response.in_progress("Jets")  # noqa: E731
    handler.protocol.serve(Invocation(parse_request(sent, ENV), context, run), sent)
    assert receiver.pending == 0
    assert handler.protocol.polling_clients == {}


# -- the pieces ------------------------------------------------------------------------------


def test_the_undo_of_a_continued_plan_keeps_what_the_first_one_found() -> None:
    first = Undo(
        "Jets", members={"a": True, "b": False}, ownership=Ownership(members=frozenset("a"))
    )
    later = Undo(
        "Jets", members={"b": True, "c": False}, ownership=Ownership(members=frozenset("bc"))
    )
    merged = first.then(later)
    assert merged.members == {"a": True, "b": False, "c": False}
    assert merged.ownership.members == {"a", "c"}
    created = Undo("Jets", created=True)
    assert created.then(later) == created


def test_what_stops_work_for_the_deadline_and_what_does_not() -> None:
    assert stopped_by_deadline(DeadlineExceededError("x"))
    assert stopped_by_deadline(IamApplyError("add user a", "Throttling", "Rate exceeded"))
    assert stopped_by_deadline(IamApplyError("add user a", "ServiceFailure", "x"))
    assert not stopped_by_deadline(IamApplyError("add user a", "LimitExceeded", "x"))
    assert not stopped_by_deadline(IamApplyError("add user a", "NoSuchEntity", "x"))


def test_service_timeout_is_read_from_the_properties() -> None:
    assert service_timeout({"ServiceTimeout": "900"}) == 900
    assert service_timeout({}) == 3600
    assert service_timeout({"ServiceTimeout": "nonsense"}) == 3600
    assert service_timeout({"ServiceTimeout": "7200"}) == 3600  # CloudFormation's maximum
    assert service_timeout("not a mapping") == 3600


def test_work_goes_on_only_while_another_invocation_would_have_time(
    monkeypatch: pytest.MonkeyPatch, vclock: VirtualClock
) -> None:
    monkeypatch.setattr(continuation, "now", vclock.now)
    budget = Budget(vclock.now(), 3600)
    policy = Continuing(lambda: budget, margin=40, arrange=lambda: None)
    assert policy.refusal() is None
    vclock.sleep(3600 - continuation.ANSWER_RESERVE - continuation.NEXT_INVOCATION_WITHIN - 40 - 59)
    assert "ServiceTimeout (3600 s" in str(policy.refusal())


def test_rule_names_fit_eventbridge_and_differ_per_request() -> None:
    prefix = "jdi-" + "0" * 36 + "-"  # the template's: a stack's UUID
    a = rule_name(prefix, KEY, "request-a")
    assert len(a) <= 64
    assert a.startswith(prefix)
    assert a != rule_name(prefix, KEY, "request-b")
    assert a == rule_name(prefix, KEY, "request-a")  # any invocation can find it again
    assert FUNCTION
