"""Virtual time for tests: waiting moves the clock instead of taking real time."""

from __future__ import annotations

import threading


class VirtualClock:
    """Time passes only when someone waits: ``sleep(s)`` moves the clock ``s`` forward at once.

    Threads that wait at the same time each move it by their own wait, so virtual time runs at
    least as fast as real time would: a deadline on this clock comes no later than it would in
    real time, and IAM's bucket (on the same clock) refills no slower.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept.append(seconds)
