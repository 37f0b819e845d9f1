"""Time as a seam: `now()` (monotonic seconds), `time()` (wall clock) and `sleep()`.

Timeouts, retries, health-check intervals and analysis windows ask a `Clock`, so their logic
is testable without waiting: `FakeClock` advances time at once when slept on.
"""

from __future__ import annotations

import time as _time
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds, for measuring intervals."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for records."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Monotonic time, the wall clock and real sleeping."""

    def now(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class FakeClock:
    """A clock whose sleep advances time at once (for logic tests); `slept` records the sleeps."""

    def __init__(self, start: float = 0.0, *, wall: float = 1_700_000_000.0) -> None:
        self.t = start
        self._wall0 = wall - start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def time(self) -> float:
        return self._wall0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()
