"""Replaceable clocks: the real monotonic clock and a fake one for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float: ...


class MonotonicClock:
    """Wall time from ``time.perf_counter`` (seconds)."""

    def now_s(self) -> float:
        return time.perf_counter()


class FakeClock:
    """A clock that only moves when told to; deterministic runs and tests."""

    def __init__(self, start_s: float = 0.0, step_s: float = 0.0) -> None:
        self._t = float(start_s)
        self.step_s = float(step_s)

    def now_s(self) -> float:
        t = self._t
        self._t += self.step_s
        return t

    def advance(self, dt_s: float) -> None:
        self._t += float(dt_s)
