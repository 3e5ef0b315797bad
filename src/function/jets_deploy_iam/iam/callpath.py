"""The one path every IAM call takes: the deadline admits it, a pacer spaces it, failures that
heal are retried for as long as the request's time lasts.

It is installed on the client as botocore event hooks (``make_iam_client`` does it), so writes,
reads, paginators' pages and any call written later pass here without anyone remembering to.

What botocore does, and what this takes over:

* botocore signs, sends, times out (``ReconcileConfig.call_timeouts``) and parses, and its
  checkers classify the answer (reused here: ``ThrottlingErrorDetector``,
  ``TransientRetryableChecker``, ``ModeledRetryableChecker``). Its own retries are off
  (``total_max_attempts=1``): standard mode gives up after a fixed number of attempts, and its
  retry quota (500 units, 5 per throttled retry, paid back slowly by successes) stops retrying
  altogether once throttled retries outrun successes by about a hundred; both happen long before
  a Lambda's minutes are spent. It also sleeps with ``time.sleep``, which tests cannot replace.
* here: Throttling, 5xx (IAM's ServiceFailure), RequestTimeout and connection errors are retried
  with jittered exponential backoff. Under a deadline (``bounded_by``) the budget is the time
  left: a retry is made only if its backoff ends before the deadline, and no attempt starts after
  it (``DeadlineExceededError``). Without one (the command line) a call makes at most
  ``max_attempts`` attempts. Everything else (NoSuchEntity, LimitExceeded, ...) is the caller's.
* pacing: at most ``max_in_flight`` calls at once, and a send rate that adapts to IAM's throttle
  (``AdaptivePacing``, the default, reuses botocore's adaptive-mode rate limiter; ``AimdPacing``
  varies the number in flight instead: see their docstrings for what was measured).

Lost responses: an attempt that failed after it may have reached IAM (a 5xx, a timeout, a broken
connection) marks the call's final answer (``ResponseMetadata["JetsEarlierAttemptMayHaveApplied"]``)
so the applier can tell IAM's "already exists" from its own earlier success.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from botocore.exceptions import (
    CapacityNotAvailableError,
    ConnectTimeoutError,
    EndpointConnectionError,
)
from botocore.retries import adaptive, bucket, standard, throttling

from jets_deploy_iam.config import Deadline, ReconcileConfig
from jets_deploy_iam.exceptions import DeadlineExceededError, JetsDeployIamError

if TYPE_CHECKING:
    from botocore.client import BaseClient

logger = logging.getLogger(__name__)

Kind = Literal["read", "write"]
#: The key the final answer of a call carries when an earlier attempt may have been applied.
MAY_HAVE_APPLIED = "JetsEarlierAttemptMayHaveApplied"
#: Errors raised before the request left: they cannot have been applied.
_NOT_SENT = (ConnectTimeoutError, EndpointConnectionError)


def kind_of(operation: str) -> Kind:
    return "read" if operation.startswith(("Get", "List")) else "write"


@dataclass(frozen=True)
class PacingState:
    """A snapshot for progress lines: how fast calls may go now, and how often IAM has said no
    to this client (a warm Lambda container keeps its client: ``since`` gives one batch's)."""

    in_flight_limit: int
    write_rate: float | None  # calls per second the pacer allows, None while unlimited
    throttled: int
    retried: int

    def since(self, earlier: PacingState) -> PacingState:
        return replace(
            self,
            throttled=self.throttled - earlier.throttled,
            retried=self.retried - earlier.retried,
        )

    def describe(self) -> str:
        rate = f"{self.write_rate:.1f} writes/s allowed" if self.write_rate else "rate unlimited"
        return (
            f"{rate}, at most {self.in_flight_limit} in flight, "
            f"{self.throttled} throttled and {self.retried} retried"
        )


class Pacing(Protocol):
    """Decides when a call may be sent and learns from every answer."""

    def limit(self) -> int:
        """How many calls may be in flight now."""

    def wait_to_send(self, kind: Kind, deadline: Deadline | None, before: str) -> None:
        """Block until an attempt of ``kind`` may be sent, or raise DeadlineExceededError
        (``before`` names the call) when that would be after the deadline."""

    def learn(self, kind: Kind, throttled: bool, answer: dict[str, Any]) -> None:
        """One attempt was answered (``answer``: botocore's needs-retry arguments)."""

    def next_send_in(self, kind: Kind) -> float:
        """About how long ``wait_to_send`` would wait now (to decide whether a retry fits)."""

    def write_rate(self) -> float | None: ...


class _BotocoreClock(bucket.Clock):
    """botocore's clock interface on our injectable clock and sleep."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        super().__init__()
        self._now = clock
        self._sleep = sleep

    def sleep(self, amount: float) -> None:
        self._sleep(amount)

    def current_time(self) -> float:
        return self._now()


class AdaptiveRate:
    """botocore's adaptive retry mode's client-side rate limiter, for one kind of call.

    botocore's pieces, as ``botocore.retries.adaptive.register_retry_handler`` wires them, but on
    our clock: ``ClientRateLimiter`` (measures the send rate with ``RateClocker``; on a throttle
    sets the allowed rate to 0.7 of it, then ``CubicCalculator`` grows it back along a cubic
    curve) and the ``TokenBucket`` it refills. Nothing is limited until IAM first throttles.
    botocore's ``TokenBucket.acquire`` blocks on a condition in real time, so waiting is done
    here, with the injectable sleep and never past the deadline.
    """

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = _BotocoreClock(clock, sleep)
        self._sleep = sleep
        self._bucket = bucket.TokenBucket(max_rate=1, clock=self._clock)
        self._limiter = adaptive.ClientRateLimiter(
            rate_adjustor=throttling.CubicCalculator(
                starting_max_rate=0, start_time=self._clock.current_time()
            ),
            rate_clocker=adaptive.RateClocker(self._clock),
            token_bucket=self._bucket,
            throttling_detector=standard.ThrottlingErrorDetector(standard.RetryEventAdapter()),
            clock=self._clock,
        )
        self.enabled = False

    def wait(self, deadline: Deadline | None, before: str) -> None:
        if not self.enabled:
            return
        while True:
            try:
                self._bucket.acquire(block=False)
                return
            except CapacityNotAvailableError:
                pass
            wait = max(0.001, (1 - self._bucket.available_capacity) / self._bucket.max_rate)
            if deadline is not None and deadline.remaining() < wait:
                raise DeadlineExceededError(_stopped(before))
            self._sleep(wait)

    def learn(self, throttled: bool, answer: dict[str, Any]) -> None:
        self._limiter.on_receiving_response(**answer)
        if throttled:
            self.enabled = True

    def next_send_in(self) -> float:
        """Seconds until the next token, as of the bucket's last refill (never less)."""
        if not self.enabled:
            return 0.0
        return max(0.0, (1 - self._bucket.available_capacity) / self._bucket.max_rate)

    @property
    def rate(self) -> float | None:
        return self._bucket.max_rate if self.enabled else None


class AdaptivePacing:
    """A fixed cap of ``max_in_flight`` and botocore's adaptive rate per kind (IAM may well
    throttle reads and writes apart, so a write throttle does not slow reads). The default.

    Why it and not ``AimdPacing`` (bench/run.py: 20 ms a call, IAM's bucket refilling at R/s with
    a one-second burst, through the real reconciler; wall time, then requests IAM refused)::

        Create                  adaptive             AIMD
        1,000 at 10 writes/s    99.7 s,  49 refused  100.4 s, 793 refused   (floor 100 s)
        300 at 2 writes/s       151.4 s, 103         157.5 s, 739           (floor 150 s)
        200 at 10 writes/s      19.4 s,  19          20.1 s,  172           (floor 20 s)

    Both keep IAM's bucket drained, so both reach the floor (a refused request takes no token),
    but AIMD pays for it with 7 to 16 times as many refused requests: at 20 ms a round trip even
    one call in flight sends 50 a second, so it only meets a 10/s bucket by bouncing off it and
    backing off. Those refusals are load on a bucket the whole account shares: every other caller
    there is throttled more. The rate limiter sends at about the rate IAM grants instead.
    """

    def __init__(self, config: ReconcileConfig) -> None:
        self._cap = config.max_in_flight
        self._rates = {k: AdaptiveRate(config.clock, config.sleep) for k in ("read", "write")}

    def limit(self) -> int:
        return self._cap

    def wait_to_send(self, kind: Kind, deadline: Deadline | None, before: str) -> None:
        self._rates[kind].wait(deadline, before)

    def learn(self, kind: Kind, throttled: bool, answer: dict[str, Any]) -> None:
        self._rates[kind].learn(throttled, answer)

    def next_send_in(self, kind: Kind) -> float:
        return self._rates[kind].next_send_in()

    def write_rate(self) -> float | None:
        return self._rates["write"].rate


class AimdWindow:
    """Additive increase, multiplicative decrease of the number of calls in flight (TCP's rule).

    Each success adds 1/size (one more slot per window's worth of successes, up to ``ceiling``);
    a throttle halves it (down to ``floor``), at most once per window: a throttle answered to an
    attempt sent before the last decrease says nothing the decrease did not already act on
    (``ticket`` is the decrease count when the attempt was sent).
    """

    def __init__(self, ceiling: int, floor: int = 1, decrease: float = 0.5) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.decrease = decrease
        self.size = float(self.ceiling)
        self.epoch = 0
        self._lock = threading.Lock()

    def ticket(self) -> int:
        return self.epoch

    def on_success(self) -> None:
        with self._lock:
            self.size = min(float(self.ceiling), self.size + 1 / self.size)

    def on_throttle(self, ticket: int) -> None:
        with self._lock:
            if ticket != self.epoch:
                return
            self.size = max(float(self.floor), self.size * self.decrease)
            self.epoch += 1

    def limit(self) -> int:
        return int(self.size)


class AimdPacing:
    """AIMD on the number of calls in flight, no rate limit: a throttled call keeps its slot
    while it backs off, so fewer slots means fewer attempts a second.

    Not the default (``pacing="aimd"``; kept so ``make bench`` can re-measure the choice): it
    reaches the floor too, with many more refused requests (see ``AdaptivePacing``).
    """

    def __init__(self, config: ReconcileConfig) -> None:
        self.window = AimdWindow(config.max_in_flight)
        self._local = threading.local()

    def limit(self) -> int:
        return self.window.limit()

    def wait_to_send(self, kind: Kind, deadline: Deadline | None, before: str) -> None:  # noqa: ARG002
        self._local.ticket = self.window.ticket()  # never waits: the slots are the limit

    def learn(self, kind: Kind, throttled: bool, answer: dict[str, Any]) -> None:  # noqa: ARG002
        if throttled:
            self.window.on_throttle(getattr(self._local, "ticket", self.window.epoch))
        elif answer.get("caught_exception") is None:
            self.window.on_success()

    def next_send_in(self, kind: Kind) -> float:  # noqa: ARG002
        return 0.0  # a retry keeps its slot

    def write_rate(self) -> float | None:
        return None


def _stopped(before: str) -> str:
    return (
        f"stopped before {before}: Lambda time nearly used up; raise the function timeout or "
        "deploy again to finish (every step is idempotent)"
    )


class _Slots:
    """At most ``limit()`` calls in flight; a release (or a larger limit) wakes a waiter."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._in_flight = 0
        self._changed = threading.Condition()

    def acquire(self, deadline: Deadline | None, before: str) -> None:
        with self._changed:
            while self._in_flight >= max(1, self._limit()):
                if deadline is not None and deadline.remaining() <= 0:
                    raise DeadlineExceededError(_stopped(before))
                self._changed.wait(0.05)  # a release notifies; the timeout re-checks the deadline
            self._in_flight += 1

    def release(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()


@dataclass
class _Counters:
    throttled: int = 0
    retried: int = 0


class CallPath:
    """Installed once per client; ``bounded_by`` gives the calls of a request their deadline."""

    _installed: weakref.WeakKeyDictionary[Any, CallPath] = weakref.WeakKeyDictionary()

    def __init__(self, config: ReconcileConfig) -> None:
        self.config = config
        self.pacing: Pacing = (
            AimdPacing(config) if config.pacing == "aimd" else AdaptivePacing(config)
        )
        self._slots = _Slots(self.pacing.limit)
        self._deadlines: list[Deadline] = []
        self._lock = threading.Lock()
        self._call = threading.local()  # the logical call this thread is making
        self._counters = _Counters()
        self._adapter = standard.RetryEventAdapter()
        self._throttling = standard.ThrottlingErrorDetector(self._adapter)
        self._transient = (standard.TransientRetryableChecker(), standard.ModeledRetryableChecker())
        self._random = random.Random()

    # -- installation ------------------------------------------------------------------------
    @classmethod
    def install(cls, client: BaseClient, config: ReconcileConfig) -> CallPath:
        path = cls(config)
        events = client.meta.events
        events.register("before-send.iam", path._before_send)
        # botocore's stubs type handlers as returning None; needs-retry's return the delay.
        events.register("needs-retry.iam", cast("Callable[..., None]", path._needs_retry))
        events.register("after-call.iam", path._after_call)
        events.register("after-call-error.iam", path._after_call)
        cls._installed[client] = path
        return path

    @classmethod
    def of(cls, client: object) -> CallPath | None:
        return cls._installed.get(client)

    @contextlib.contextmanager
    def bounded_by(self, deadline: Deadline) -> Iterator[None]:
        """Every call of this client, from any thread, made inside the block is bounded by
        ``deadline`` (the earliest one if blocks overlap); ``Deadline.never()`` bounds nothing."""
        if not deadline.bounded:
            yield
            return
        with self._lock:
            self._deadlines.append(deadline)
        try:
            yield
        finally:
            with self._lock:
                self._deadlines.remove(deadline)

    def deadline(self) -> Deadline | None:
        with self._lock:
            return min(self._deadlines, key=Deadline.remaining, default=None)

    def state(self) -> PacingState:
        return PacingState(
            in_flight_limit=self.pacing.limit(),
            write_rate=self.pacing.write_rate(),
            throttled=self._counters.throttled,
            retried=self._counters.retried,
        )

    # -- the hooks ------------------------------------------------------------------------------
    def _before_send(self, event_name: str, **_kwargs: Any) -> None:
        """Per attempt: the deadline admits it, a slot is taken for a new call, the rate paces."""
        operation = event_name.rsplit(".", 1)[-1]
        before = f"IAM {operation}"
        deadline = self.deadline()
        if deadline is not None:
            deadline.check(before)
        if not getattr(self._call, "holding", False):
            self._slots.acquire(deadline, before)
            self._call.holding = True
        self.pacing.wait_to_send(kind_of(operation), deadline, before)
        if deadline is not None:
            deadline.check(before)  # the wait may have used the last of the time

    def _needs_retry(self, **answer: Any) -> float | None:
        """Per answer: teach the pacer, then retry what heals while the budget allows.

        Returns botocore's "sleep this long, then retry" (0: the backoff already slept here,
        with the injectable sleep) or None to let the answer stand.
        """
        error = answer.get("caught_exception")
        if isinstance(error, JetsDeployIamError):
            return None  # our own refusal to start (the deadline): not an answer from IAM
        operation = answer["operation"].name
        context = self._adapter.create_retry_context(**answer)
        throttled = self._throttling.is_throttling_error_from_context(context)
        transient = not throttled and any(c.is_retryable(context) for c in self._transient)
        self.pacing.learn(kind_of(operation), throttled, answer)
        if throttled:
            with self._lock:
                self._counters.throttled += 1
        if transient and not isinstance(error, _NOT_SENT):
            answer["request_dict"]["context"][MAY_HAVE_APPLIED] = True
        if not (throttled or transient) or not self._may_retry(operation, answer["attempts"]):
            self._mark_final(answer)
            return None
        with self._lock:
            self._counters.retried += 1
        return 0

    def _may_retry(self, operation: str, attempts: int) -> bool:
        """Sleep the backoff and say yes, or say no: without a deadline after ``max_attempts``;
        under one when the backoff plus the pacer's wait would reach past it (then the caller
        gets IAM's own answer, Throttling or ServiceFailure, rather than a bare deadline)."""
        delay = self._backoff(attempts)
        deadline = self.deadline()
        if deadline is None:
            if attempts >= self.config.max_attempts:
                return False
        elif deadline.remaining() < delay + self.pacing.next_send_in(kind_of(operation)):
            logger.warning(
                "IAM %s: giving up after %d attempts: the next would start after the deadline",
                operation,
                attempts,
            )
            return False
        if delay > 0:
            self.config.sleep(delay)
        return True

    def _backoff(self, attempts: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2^(attempts-1))] (AWS's recommended
        variant: retries of many threads spread out instead of arriving together)."""
        cap = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (attempts - 1))
        return self._random.uniform(0, cap)

    @staticmethod
    def _mark_final(answer: dict[str, Any]) -> None:
        """Tell the caller that an earlier attempt of this call may have been applied."""
        response = answer.get("response")
        if response is not None and answer["request_dict"]["context"].get(MAY_HAVE_APPLIED):
            response[1].setdefault("ResponseMetadata", {})[MAY_HAVE_APPLIED] = True

    def _after_call(self, **_kwargs: Any) -> None:
        """The call is over (answered, failed or refused): its slot goes back."""
        if getattr(self._call, "holding", False):
            self._call.holding = False
            self._slots.release()


@contextlib.contextmanager
def bounded_by(client: object, deadline: Deadline) -> Iterator[None]:
    """Bound every call ``client`` makes inside the block by ``deadline`` (no-op for a client
    without a call path). The handler should wrap each whole request in this."""
    path = CallPath.of(client)
    if path is None:
        yield
        return
    with path.bounded_by(deadline):
        yield
