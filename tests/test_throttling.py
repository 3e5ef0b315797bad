"""IAM's throttle: the token-bucket strict layer, the call path's retries under a deadline, the
cap on calls in flight, the pacing controllers, lost answers and progress lines.

Everything runs in virtual time (``VirtualClock``): IAM's bucket and the client's waits share
one clock that moves only when someone waits. Assertions are on counts and behaviour, never on
wall-clock time.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ReadTimeoutError

from helpers import ENV, event, make_users
from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import DeadlineExceededError
from jets_deploy_iam.iam.applier import _Progress
from jets_deploy_iam.iam.callpath import (
    AdaptiveRate,
    AimdPacing,
    AimdWindow,
    CallPath,
    PacingState,
    bounded_by,
    kind_of,
)
from jets_deploy_iam.iam.client import make_iam_client
from jets_deploy_iam.iam.reader import read_group
from jets_deploy_iam.reconcile import Controller
from jets_deploy_iam.registry.store import MemoryRegistry
from jets_deploy_iam.request import parse_request
from jets_deploy_iam.response import Response
from jets_deploy_iam_cli.local.invoke import invoke
from jets_deploy_iam_cli.local.receiver import ResponseReceiver
from strict_iam import StrictIam
from virtual_time import VirtualClock

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def users(n: int) -> list[str]:
    return [f"user{i:04d}" for i in range(n)]


def virtual_config(clock: VirtualClock, **overrides: Any) -> ReconcileConfig:
    return ReconcileConfig(sleep=clock.sleep, clock=clock.now, **overrides)


def added(strict: StrictIam) -> collections.Counter[str]:
    """How many times IAM accepted an AddUserToGroup for each user."""
    return collections.Counter(
        c.params["UserName"] for c in strict.accepted_writes if c.action == "AddUserToGroup"
    )


# -- the strict layer's bucket ---------------------------------------------------------------


def test_the_bucket_grants_its_burst_then_its_rate_and_answers_like_iam(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    client = make_iam_client(ReconcileConfig(max_attempts=1))
    strict.throttle(rate=2, burst=3, clock=vclock.now)
    for i in range(3):
        client.create_group(GroupName=f"g{i}")
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.create_group(GroupName="g3")
    assert refused.value.response["Error"] == {
        "Type": "Sender",
        "Code": "Throttling",
        "Message": "Rate exceeded",
    }
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    vclock.sleep(1.0)  # two tokens
    client.create_group(GroupName="g3")
    client.create_group(GroupName="g4")
    with pytest.raises(client.exceptions.ClientError):
        client.create_group(GroupName="g5")
    assert len(strict.throttled) == 2
    assert client.list_groups()["Groups"]  # reads have no bucket unless asked for


def create(
    client: IAMClient, config: ReconcileConfig, deadline: Deadline | None = None, **props: Any
) -> Response:
    """A CloudFormation Create of ``props`` through the controller, with its deadline."""
    request = parse_request(event("Create", props), ENV)
    return Controller(client, MemoryRegistry(), config, deadline).handle(request)


# -- retries under the deadline ---------------------------------------------------------------


@pytest.mark.parametrize("pacing", ["adaptive", "aimd"])
def test_throttled_writes_are_retried_until_every_member_is_added_exactly_once(
    strict: StrictIam, vclock: VirtualClock, pacing: str
) -> None:
    config = virtual_config(vclock, pacing=pacing)
    client = make_iam_client(config)
    make_users(client, users(60))
    strict.throttle(rate=5, burst=5, clock=vclock.now)
    started = vclock.now()
    deadline = Deadline.after(600, clock=vclock.now)
    create(client, config, deadline, Users=users(60))
    group = read_group(client, "Jets")
    assert group is not None
    assert group.members == frozenset(users(60))
    assert added(strict) == dict.fromkeys(users(60), 1)
    assert strict.throttled  # IAM did refuse, and the refusals were retried
    assert len(strict.accepted_writes) == 62
    assert vclock.now() - started >= (62 - 5) / 5  # nobody beats the bucket (virtual time)
    path = CallPath.of(client)
    assert path is not None
    assert path.state().throttled == len(strict.throttled)


def test_the_retry_budget_is_time_not_attempts(strict: StrictIam, vclock: VirtualClock) -> None:
    """Far more attempts than max_attempts, because the deadline still allowed them."""
    config = virtual_config(vclock, max_attempts=3)
    client = make_iam_client(config)
    strict.inject("PutGroupPolicy", "Throttling", times=40)
    create(client, config, Deadline.after(600, clock=vclock.now))
    assert strict.actions().count("PutGroupPolicy") == 41


def test_without_a_deadline_a_call_makes_max_attempts(strict: StrictIam) -> None:
    config = ReconcileConfig(max_attempts=3, sleep=lambda _s: None)
    client = make_iam_client(config)
    strict.inject("CreateGroup", "ServiceFailure", times=10)
    response = create(client, config)
    assert not response.ok
    assert "create group Jets (path /) failed: ServiceFailure" in response.reason
    assert strict.actions().count("CreateGroup") == 3


def test_the_deadline_stops_retries_cleanly_and_no_call_starts_after_it(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    """One call at a time, so virtual time moves only by this call's own waits and a call's
    arrival at IAM is exactly when it started."""
    config = virtual_config(vclock, max_in_flight=1)
    client = make_iam_client(config)
    make_users(client, users(20))
    strict.reset()
    strict.throttle(rate=0.001, burst=4, clock=vclock.now)  # group, policy, 2 members, then no
    deadline = Deadline.after(600, clock=vclock.now)
    response = create(client, config, deadline, Users=users(20))
    assert not response.ok
    assert "add user user0002 failed: Throttling: Rate exceeded" in response.reason
    assert "for as long as this request could wait" in response.reason
    assert strict.calls
    assert all(call.at <= deadline.at for call in strict.calls)
    assert len(strict.throttled) > config.max_attempts  # retried on time, not attempts
    assert added(strict).total() == 2


def test_the_deadline_stops_eight_throttled_threads_cleanly(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    make_users(client, users(20))
    strict.throttle(rate=0.001, burst=4, clock=vclock.now)
    deadline = Deadline.after(600, clock=vclock.now)
    response = create(client, config, deadline, Users=users(20))
    assert not response.ok
    # Eight threads: whichever stopped first names its reason, IAM's throttle or the deadline.
    assert "Throttling" in response.reason or "Lambda time nearly used up" in response.reason
    calls = len(strict.calls)
    assert strict.in_flight == 0  # every thread has stopped: nothing is still calling IAM
    assert len(strict.calls) == calls
    attempts = collections.Counter(c.params["UserName"] for c in strict.throttled)
    assert max(attempts.values()) > config.max_attempts
    assert added(strict).total() == 2


def test_a_deadline_already_past_starts_no_call(strict: StrictIam, vclock: VirtualClock) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    deadline = Deadline.after(-1, clock=vclock.now)
    with bounded_by(client, deadline), pytest.raises(DeadlineExceededError, match="GetUser"):
        client.get_user(UserName="nobody")
    assert strict.calls == []


def test_a_transient_failure_is_retried_under_the_deadline(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    config = virtual_config(vclock, max_attempts=2)
    client = make_iam_client(config)
    make_users(client, ["alice"])
    strict.inject("AddUserToGroup", "ServiceFailure", times=12)
    create(client, config, Deadline.after(600, clock=vclock.now), Users="alice")
    assert strict.actions().count("AddUserToGroup") == 13


def test_the_call_path_counts_its_retries_and_refusals(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    """What progress lines report: each retry once, each Throttling once among them."""
    config = virtual_config(vclock)
    client = make_iam_client(config)
    make_users(client, ["alice", "bob"])
    path = CallPath.of(client)
    assert path is not None
    before = path.state()
    strict.inject("AddUserToGroup", "ServiceFailure", times=3)
    create(client, config, Deadline.after(600, clock=vclock.now), Users="alice")
    strict.inject("AddUserToGroup", "Throttling", times=2)
    client.add_user_to_group(GroupName="Jets", UserName="bob")
    after = path.state().since(before)
    assert (after.retried, after.throttled) == (5, 2)


def test_a_connection_error_is_retried_under_the_deadline(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    config = virtual_config(vclock, max_attempts=1)
    client = make_iam_client(config)
    make_users(client, ["alice"])
    timeouts = iter(range(5))

    def time_out(event_name: str, **_kwargs: Any) -> None:
        if event_name.endswith(".AddUserToGroup") and next(timeouts, None) is not None:
            raise ReadTimeoutError(endpoint_url="https://iam.amazonaws.com/")

    # Same event as the call path's hook, registered after it: runs once the attempt is admitted.
    client.meta.events.register("before-send.iam", time_out)
    create(client, config, Deadline.after(600, clock=vclock.now), Users="alice")
    assert strict.actions().count("AddUserToGroup") == 1  # the five timed out before IAM
    group = read_group(client, "Jets")
    assert group is not None
    assert group.members == {"alice"}


def test_errors_that_do_not_heal_are_not_retried(strict: StrictIam, vclock: VirtualClock) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    strict.inject("PutGroupPolicy", "MalformedPolicyDocument")
    response = create(client, config, Deadline.after(600, clock=vclock.now))
    assert "MalformedPolicyDocument" in response.reason
    assert strict.actions().count("PutGroupPolicy") == 1


def test_throttled_reads_are_retried_too(strict: StrictIam, vclock: VirtualClock) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    make_users(client, users(5))
    strict.throttle(rate=100, clock=vclock.now, read_rate=1, read_burst=1)
    create(client, config, Deadline.after(600, clock=vclock.now), Users=users(5))
    assert {c.action for c in strict.throttled} <= {
        "GetGroup",
        "GetAccountAuthorizationDetails",
        "ListGroupPolicies",
        "ListAttachedGroupPolicies",
    }
    assert strict.throttled
    assert added(strict) == dict.fromkeys(users(5), 1)


# -- concurrency ---------------------------------------------------------------------------


def test_calls_in_flight_never_exceed_the_cap_whoever_makes_them(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    """Twelve threads of our own (not the applier's pool) share one client capped at 3."""
    config = virtual_config(vclock, max_in_flight=3)
    client = make_iam_client(config)
    make_users(client, users(12))
    strict.latency = 0.01
    threads = [
        threading.Thread(target=client.get_user, kwargs={"UserName": name}) for name in users(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= strict.max_in_flight <= 3


def test_ten_threads_all_throttled_at_once_each_member_added_once(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    config = virtual_config(vclock, max_in_flight=10)
    client = make_iam_client(config)
    make_users(client, users(40))
    strict.latency = 0.002  # real, so the ten overlap
    strict.throttle(rate=2, burst=1, clock=vclock.now)
    create(client, config, Deadline.after(900, clock=vclock.now), Users=users(40))
    assert added(strict) == dict.fromkeys(users(40), 1)
    assert strict.max_in_flight <= 10


# -- the controllers alone -------------------------------------------------------------------


def test_aimd_halves_on_a_throttle_once_per_window_and_grows_back_by_one_per_window() -> None:
    window = AimdWindow(ceiling=8)
    assert window.limit() == 8
    sent_before = window.ticket()
    window.on_throttle(sent_before)
    assert window.limit() == 4
    window.on_throttle(sent_before)  # the same burst of throttles: no second halving
    assert window.limit() == 4
    window.on_throttle(window.ticket())
    assert window.limit() == 2
    for _ in range(3):
        window.on_success()  # about a window's worth of successes: one more slot
    assert window.limit() == 3
    for _ in range(100):
        window.on_success()
    assert window.limit() == 8  # never above the ceiling
    for _ in range(10):
        window.on_throttle(window.ticket())
    assert window.limit() == 1  # never below one


def answer(client: IAMClient, code: str | None) -> dict[str, Any]:
    """What botocore's needs-retry event carries for one answer of AddUserToGroup."""
    parsed: dict[str, Any] = {"Error": {"Code": code, "Message": "x"}} if code else {}
    return {
        "response": (None, parsed),
        "attempts": 1,
        "operation": client.meta.service_model.operation_model("AddUserToGroup"),
        "caught_exception": None,
        "request_dict": {"context": {}},
    }


def test_botocore_adaptive_rate_slows_on_throttling_and_speeds_up_on_success(
    iam: IAMClient, vclock: VirtualClock
) -> None:
    rate = AdaptiveRate(vclock.now, vclock.sleep)
    for _ in range(40):  # 20 calls a second, unthrottled: nothing is limited
        rate.learn(False, answer(iam, None))
        vclock.sleep(0.05)
    assert rate.rate is None
    rate.learn(True, answer(iam, "Throttling"))
    slowed = rate.rate
    assert slowed is not None
    assert slowed < 20
    for _ in range(40):
        rate.wait(None, "test")  # paced by its own bucket now
        rate.learn(False, answer(iam, None))
    faster = rate.rate
    assert faster is not None
    assert faster > slowed
    rate.learn(True, answer(iam, "Throttling"))
    slower = rate.rate
    assert slower is not None
    assert slower < faster


def test_the_pacer_wait_never_runs_past_the_deadline(iam: IAMClient, vclock: VirtualClock) -> None:
    rate = AdaptiveRate(vclock.now, vclock.sleep)
    rate.learn(True, answer(iam, "Throttling"))  # limited to botocore's minimum: 0.5/s
    rate.wait(None, "first")
    deadline = Deadline.after(0.5, clock=vclock.now)
    with pytest.raises(DeadlineExceededError, match="stopped before next"):
        rate.wait(deadline, "next")
    assert deadline.remaining() > 0  # it refused instead of sleeping through the deadline


def test_reads_and_writes_are_paced_apart() -> None:
    """IAM may throttle reads and writes apart: Get* and List* calls are reads, the rest writes."""
    assert [
        kind_of(op) for op in ("GetGroup", "ListGroupPolicies", "GetAccountAuthorizationDetails")
    ] == ["read"] * 3
    assert [kind_of(op) for op in ("AddUserToGroup", "CreateGroup", "DeleteGroupPolicy")] == [
        "write"
    ] * 3


def test_a_pacing_snapshot_counts_one_batch_and_says_what_is_allowed() -> None:
    before = PacingState(in_flight_limit=8, write_rate=None, throttled=5, retried=7)
    now = PacingState(in_flight_limit=4, write_rate=2.5, throttled=8, retried=12)
    batch = now.since(before)
    assert batch == PacingState(in_flight_limit=4, write_rate=2.5, throttled=3, retried=5)
    text = batch.describe()
    assert text.startswith("2.5 writes/s allowed")
    assert "at most 4 in flight" in text
    assert "3 throttled and 5 retried" in text
    assert before.describe().startswith("rate unlimited")


def test_the_adaptive_rate_says_how_long_the_next_send_waits(
    iam: IAMClient, vclock: VirtualClock
) -> None:
    rate = AdaptiveRate(vclock.now, vclock.sleep)
    assert rate.next_send_in() == 0.0  # nothing is limited before IAM first throttles
    for _ in range(40):  # 20 calls a second
        rate.learn(False, answer(iam, None))
        vclock.sleep(0.05)
    rate.learn(True, answer(iam, "Throttling"))
    allowed = rate.rate
    assert allowed is not None
    rate.wait(None, "first")
    waited = len(vclock.slept)
    expected = rate.next_send_in()
    assert 0 < expected <= 1 / allowed + 1e-9
    rate.wait(None, "second")  # sleeps what was announced (and a last millisecond at most)
    assert sum(vclock.slept[waited:]) == pytest.approx(expected, abs=0.0015)
    assert all(s < 1 for s in vclock.slept[waited:])  # at the allowed rate, not a second a call


def test_a_pacer_wait_that_ends_before_the_deadline_is_made(
    iam: IAMClient, vclock: VirtualClock
) -> None:
    rate = AdaptiveRate(vclock.now, vclock.sleep)
    rate.learn(True, answer(iam, "Throttling"))  # 0.5/s: a token every 2 s
    rate.wait(None, "first")
    waited = len(vclock.slept)
    rate.wait(Deadline.after(2.5, clock=vclock.now), "next")  # 2 s fit in 2.5
    assert sum(vclock.slept[waited:]) == pytest.approx(2.0, abs=0.01)


def test_aimd_pacing_halves_once_per_window_of_sends_and_grows_on_successes_only(
    iam: IAMClient,
) -> None:
    pacing = AimdPacing(ReconcileConfig(max_in_flight=8))
    pacing.wait_to_send("write", None, "a")  # sent before any decrease
    pacing.learn("write", True, answer(iam, "Throttling"))
    assert pacing.limit() == 4
    pacing.learn("write", True, answer(iam, "Throttling"))  # the same window: no more
    assert pacing.limit() == 4
    pacing.wait_to_send("write", None, "b")  # sent after the decrease: counts
    pacing.learn("write", True, answer(iam, "Throttling"))
    assert pacing.limit() == 2
    failed = {**answer(iam, None), "caught_exception": ReadTimeoutError(endpoint_url="x")}
    for _ in range(10):
        pacing.learn("write", False, failed)  # a failure is no success: no growth
    assert pacing.limit() == 2
    for _ in range(3):
        pacing.learn("write", False, answer(iam, None))
    assert pacing.limit() == 3
    assert pacing.next_send_in("write") == 0.0  # a retry keeps its slot, never waits
    assert pacing.write_rate() is None


def test_aimd_pacing_on_a_thread_that_never_sent_counts_the_throttle(iam: IAMClient) -> None:
    pacing = AimdPacing(ReconcileConfig(max_in_flight=8))
    done = threading.Thread(target=pacing.learn, args=("write", True, answer(iam, "Throttling")))
    done.start()
    done.join()
    assert pacing.limit() == 4


def test_a_stale_ticket_never_halves_again() -> None:
    window = AimdWindow(ceiling=16)
    first = window.ticket()
    window.on_throttle(first)
    second = window.ticket()
    window.on_throttle(second)
    assert window.limit() == 4
    for stale in (first, second):
        window.on_throttle(stale)
    assert window.limit() == 4
    window.on_throttle(window.ticket())
    assert window.limit() == 2


def test_backoff_is_full_jitter_up_to_the_doubling_cap() -> None:
    path = CallPath(ReconcileConfig(backoff_initial=0.25, backoff_max=4.0))
    for attempts, cap in ((1, 0.25), (2, 0.5), (3, 1.0), (5, 4.0), (9, 4.0)):
        delays = [path._backoff(attempts) for _ in range(400)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > 0.9 * cap  # reaches the cap
        assert min(delays) < 0.1 * cap  # and near zero: the full range


def test_the_deadline_message_says_what_stopped_and_how_to_finish(
    iam: IAMClient, vclock: VirtualClock
) -> None:
    rate = AdaptiveRate(vclock.now, vclock.sleep)
    rate.learn(True, answer(iam, "Throttling"))
    with pytest.raises(DeadlineExceededError) as caught:
        rate.wait(Deadline.after(0.1, clock=vclock.now), "IAM AddUserToGroup")
    assert str(caught.value).startswith("stopped before IAM AddUserToGroup: Lambda time")
    assert str(caught.value).endswith("deploy again to finish (every step is idempotent)")


# -- lost answers -------------------------------------------------------------------------------


def test_a_lost_answer_to_create_group_counts_as_created(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    strict.lose_answer("CreateGroup")  # applied, then answered 500
    response = create(client, config, Deadline.after(600, clock=vclock.now))
    group = read_group(client, "Jets")
    assert group is not None
    assert response.data["GroupId"] == group.group_id
    assert strict.actions().count("CreateGroup") == 2


def test_a_lost_answer_to_add_user_is_harmless(strict: StrictIam, vclock: VirtualClock) -> None:
    config = virtual_config(vclock)
    client = make_iam_client(config)
    make_users(client, ["alice", "bob"])
    strict.lose_answer("AddUserToGroup", times=2)
    strict.throttle(rate=1, burst=1, clock=vclock.now)
    create(client, config, Deadline.after(600, clock=vclock.now), Users="alice,bob")
    group = read_group(client, "Jets")
    assert group is not None
    assert group.members == {"alice", "bob"}


def test_a_create_group_refused_without_a_lost_answer_still_fails(
    strict: StrictIam, vclock: VirtualClock
) -> None:
    """EntityAlreadyExists is ours only if an earlier attempt may have been applied."""
    config = virtual_config(vclock)
    client = make_iam_client(config)
    strict.inject("CreateGroup", "EntityAlreadyExists")
    response = create(client, config, Deadline.after(600, clock=vclock.now))
    assert "EntityAlreadyExists" in response.reason


# -- through the handler ---------------------------------------------------------------------


def test_a_throttled_create_through_the_handler_succeeds_with_each_member_added_once(
    strict: StrictIam, receiver: ResponseReceiver, handler_clock: VirtualClock, iam: IAMClient
) -> None:
    make_users(iam, users(60))
    strict.throttle(rate=5, burst=5, clock=handler_clock.now)
    response = invoke(event("Create", {"Users": users(60)}), receiver)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert added(strict) == dict.fromkeys(users(60), 1)
    assert strict.throttled


# -- progress ---------------------------------------------------------------------------------


def test_progress_lines_say_done_to_do_and_the_rate(
    strict: StrictIam, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = virtual_config(vclock, progress_every=20, progress_interval=3600)
    client = make_iam_client(config)
    make_users(client, users(60))
    strict.throttle(rate=5, burst=5, clock=vclock.now)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.iam.applier"):
        create(client, config, Deadline.after(600, clock=vclock.now), Users=users(60))
    lines = [r for r in caplog.records if r.getMessage().startswith("member changes:")]
    assert [r.members_done for r in lines] == [20, 40, 60]  # type: ignore[attr-defined]
    assert [r.members_to_do for r in lines] == [40, 20, 0]  # type: ignore[attr-defined]
    last = lines[-1].getMessage()
    assert "60 of 60 done, 0 to do" in last
    assert "writes/s allowed" in last
    assert "throttled" in last


class _PacingNow:
    """What the call path says of its pacing when a progress line is written."""

    def __init__(self, state: PacingState) -> None:
        self.now = state

    def state(self) -> PacingState:
        return self.now


FIELDS = (
    "members_done",
    "members_to_do",
    "changes_per_second",
    "allowed_writes_per_second",
    "in_flight_limit",
    "throttled",
)


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("member changes:")]


def test_a_progress_line_states_the_batch_since_the_last_line_exactly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rate is this batch's since the last line (not since the start), IAM's refusals are
    this batch's (a warm container's client counted earlier ones), and a batch the deadline
    stops says what stopped it."""
    now = [100.0]
    config = ReconcileConfig(clock=lambda: now[0], progress_every=2, progress_interval=3600)
    path = _PacingNow(PacingState(in_flight_limit=8, write_rate=None, throttled=3, retried=1))
    progress = _Progress(5, config, path)  # type: ignore[arg-type]
    path.now = PacingState(in_flight_limit=4, write_rate=7.5, throttled=5, retried=4)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.iam.applier"):
        now[0] += 3.0
        progress.one_done()
        progress.one_done()  # 2 in 3 s: a line
        progress.one_done()  # not due
        progress.stopped(DeadlineExceededError("the deadline"))  # no time since the last line
    lines = progress_lines(caplog)
    pacing = "7.5 writes/s allowed, at most 4 in flight, 2 throttled and 3 retried"
    assert [r.getMessage() for r in lines] == [
        f"member changes: 2 of 5 done, 3 to do, 0.7/s over the last 3 s; {pacing}",
        f"member changes: 3 of 5 done, 2 to do, at once; {pacing}; stopped by "
        "DeadlineExceededError",
    ]
    assert [tuple(getattr(r, f) for f in FIELDS) for r in lines] == [
        (2, 3, 0.67, 7.5, 4, 2),
        (3, 2, None, 7.5, 4, 2),
    ]


def test_a_batch_logs_its_last_change_and_a_single_change_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    config = ReconcileConfig(clock=lambda: now[0], progress_every=100, progress_interval=3600)
    with caplog.at_level(logging.INFO, logger="jets_deploy_iam.iam.applier"):
        single = _Progress(1, config, None)
        single.one_done()
        assert progress_lines(caplog) == []
        batch = _Progress(3, config, None)
        for _ in range(3):
            now[0] += 1.0
            batch.one_done()
    lines = progress_lines(caplog)
    assert [r.getMessage() for r in lines] == [
        "member changes: 3 of 3 done, 0 to do, 1.0/s over the last 3 s"
    ]
    assert [tuple(getattr(r, f) for f in FIELDS) for r in lines] == [(3, 0, 1.0, None, None, None)]
