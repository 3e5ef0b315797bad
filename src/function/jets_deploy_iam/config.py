"""Tunables of the reconciler, in one immutable object (read from the environment in Lambda).

Clock and sleep are injectable so tests exercise backoff, pacing and deadlines without waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from jets_deploy_iam.exceptions import ConfigurationError, DeadlineExceededError
from jets_deploy_iam.limits import MAX_PAGE_ITEMS


@dataclass(frozen=True)
class ReconcileConfig:
    #: IAM rate limits are low: never more writes in flight than this.
    max_in_flight: int = 8
    #: How long a call naming a just-created group may keep answering NoSuchEntity.
    consistency_timeout: float = 30.0
    #: wall-clock seconds (epoch): how long a drift correction holds a registry record is
    #: shared between invocations, so it cannot be measured on one process's monotonic clock
    now: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    backoff_initial: float = 0.25
    backoff_max: float = 4.0
    #: MaxItems for paged reads (IAM's maximum; it may still return fewer).
    page_size: int = MAX_PAGE_ITEMS
    #: Stop starting IAM work when less than this many seconds of Lambda time are left.
    deadline_margin: float = 40.0
    #: A failure's undo (or an adoption's hand-back) may start IAM calls until this many seconds
    #: are left; what remains after it is for the registry and the response.
    undo_margin: float = 20.0
    #: Attempts per IAM call when no deadline bounds it (the command line, tests); under a
    #: deadline the retry budget of a throttled or transient call is the time left instead.
    max_attempts: int = 8
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    #: How the rate of IAM calls adapts to IAM's throttle (see ``iam/callpath.py``):
    #: ``adaptive`` is botocore's adaptive-mode client rate limiter (CUBIC) under a fixed cap of
    #: ``max_in_flight``; ``aimd`` varies the number in flight instead (as fast, measured with
    #: many times more refused requests).
    pacing: Literal["adaptive", "aimd"] = "adaptive"
    #: Socket timeouts of one IAM attempt, before ``call_timeouts`` fits them in the margin.
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    #: A progress line per this many member changes, or per this many seconds, whichever first.
    progress_every: int = 100
    progress_interval: float = 10.0

    def consistency_waits(self) -> Iterator[float]:
        """The waits before asking IAM again about a group it may not show yet (eventual
        consistency): doubling from ``backoff_initial`` up to ``backoff_max``, together no
        longer than ``consistency_timeout``."""
        waited, delay = 0.0, self.backoff_initial
        while waited < self.consistency_timeout:
            step = min(delay, self.consistency_timeout - waited)
            yield step
            waited += step
            delay = min(step * 2, self.backoff_max)

    def call_timeouts(self) -> tuple[float, float]:
        """(connect, read) timeouts of one IAM attempt, small enough that an attempt started
        before the deadline ends before the function does.

        An attempt starts only before a deadline (the work's: the function's end minus
        ``deadline_margin``; an undo's: minus ``undo_margin``), and botocore retries nothing
        itself, so one attempt lasts at most connect + read. Capping connect at a quarter and
        read at half of the smaller margin leaves at least a quarter of it (defaults: 2 s + 10 s
        of 20 s leave 8 s) to record the outcome and answer CloudFormation after the last
        attempt, whatever margins are configured.
        """
        margin = max(self.undo_reserve(), 0.1)
        return min(self.connect_timeout, margin / 4), min(self.read_timeout, margin / 2)

    def undo_reserve(self) -> float:
        """Seconds before the end after which not even an undo starts an IAM call: always less
        than ``deadline_margin``, so a failure's undo has time the work did not take."""
        return min(self.undo_margin, self.deadline_margin / 2)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReconcileConfig:
        def num(key: str, default: float) -> float:
            raw = environ.get(key)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"{key} must be a number, got {raw!r}") from None
            if value < 0:
                raise ConfigurationError(f"{key} must not be negative, got {raw!r}")
            return value

        base = cls()
        return cls(
            max_in_flight=max(1, int(num("JETS_MAX_IN_FLIGHT", base.max_in_flight))),
            consistency_timeout=num("JETS_CONSISTENCY_TIMEOUT", base.consistency_timeout),
            deadline_margin=num("JETS_DEADLINE_MARGIN", base.deadline_margin),
            undo_margin=num("JETS_UNDO_MARGIN", base.undo_margin),
            max_attempts=int(num("JETS_MAX_ATTEMPTS", base.max_attempts)),
        )


@dataclass(frozen=True)
class Deadline:
    """The moment after which no new IAM call may start."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def never(cls) -> Deadline:
        return cls(at=float("inf"))

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(at=clock() + seconds, clock=clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    @property
    def bounded(self) -> bool:
        """False for ``Deadline.never()``: nothing to budget retries by."""
        return self.at != float("inf")

    def check(self, before: str) -> None:
        if self.remaining() <= 0:
            raise DeadlineExceededError(
                f"stopped before {before}: Lambda time nearly used up; raise the function "
                "timeout or deploy again to finish (every step is idempotent)"
            )
