"""Tunables of the reconciler, in one immutable object (read from the environment in Lambda).

Clock and sleep are injectable so tests exercise backoff and deadlines without waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jets_deploy_iam.exceptions import ConfigurationError, DeadlineExceededError


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
    page_size: int = 1000
    #: Stop starting IAM work when less than this many seconds of Lambda time are left.
    deadline_margin: float = 30.0
    #: A failure's undo (or an adoption's hand-back) may start IAM calls until this many seconds
    #: are left; what remains after it is for the registry and the response.
    undo_margin: float = 12.0
    #: botocore standard-mode attempts (retries Throttling, not LimitExceeded).
    max_attempts: int = 8
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

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

    def check(self, before: str) -> None:
        if self.remaining() <= 0:
            raise DeadlineExceededError(
                f"stopped before {before}: Lambda time nearly used up; raise the function "
                "timeout or deploy again to finish (every step is idempotent)"
            )
