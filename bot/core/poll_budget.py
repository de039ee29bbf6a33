"""A process-wide budget for backend status polls (TOKENBOT_MAX_POLLS_PER_SECOND)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable


class PollBudget:
    """At most `rate` polls start in any second, spaced one interval apart when the loop keeps up.

    Each caller reserves the next free slot and sleeps until it; with 1,000 pending videos the
    backend sees a steady `rate` polls/s instead of bursts, and every job still gets its turn.
    A busy event loop wakes sleepers late, and then every caller whose slot has passed would
    start at once (the backend saw 110 polls/s under a budget of 100 while 1,000 videos were
    being submitted): a woken caller also waits while `rate` polls already started in the last
    second (in the last `1 / rate` seconds, below one poll a second).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        # The sliding window: its length, how many polls may start in it, and when they did.
        self._window = max(1.0, self.interval)
        self._per_window = max(1, math.ceil(rate * self._window - 1e-9)) if rate > 0 else 0
        self._started: deque[float] = deque()
        self.granted = 0

    async def acquire(self) -> None:
        """Wait for this caller's slot (and for room in the last second's window)."""
        self.granted += 1
        if self.interval <= 0:
            return
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
        started = self._started
        while True:
            now = self._clock()
            # A clock tick of tolerance: in floats a sleep can end just short of its end.
            while started and started[0] + self._window <= now + 1e-9:
                started.popleft()
            if len(started) < self._per_window:
                break
            await self._sleep(started[0] + self._window - now)
        started.append(now)
