"""A process-wide budget for backend status polls (TOKENBOT_MAX_POLLS_PER_SECOND)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class PollBudget:
    """Spaces polls so that, across every job, at most `rate` start per second.

    Each caller reserves the next free slot and sleeps until it; with 1,000 pending videos the
    backend sees a steady `rate` polls/s instead of bursts, and every job still gets its turn.
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
        self.granted = 0

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        self.granted += 1
        if self.interval <= 0:
            return
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
