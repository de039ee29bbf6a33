"""Fair work: one user's flood of messages must not delay anyone else's replies.

Adapters acknowledge a message at once and then hand it to `TokenBot.handle`; this queue
decides when that work runs. At most `per_key` items of one key (a user) run at once: later
ones wait in that key's own FIFO queue, so one user's messages start in the order they
arrived and none is dropped. With `total`, at most that many run at all, and a freed slot goes
to the waiting keys in turn (round-robin), so a user with one message waits behind at most
one message of each other user, never behind a flood. An item that fails or is cancelled
frees its slot like one that succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

from bot.core.messages import Inbound
from bot.core.settings import Settings
from bot.store import Owner

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


class FairWork(Generic[S]):
    """Per-key FIFO queues served round-robin under per-key and total limits (0: no limit).

    `key` names the queue an item's source belongs to (for messages: its owner).
    """

    def __init__(self, key: Callable[[S], Hashable], per_key: int = 0, total: int = 0) -> None:
        self._key = key
        self.per_key = per_key
        self.total = total
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._running: dict[Hashable, int] = {}
        # Keys with a waiting item that may start once the total allows: served in turn.
        self._turns: deque[Hashable] = deque()
        self._running_total = 0

    @property
    def running(self) -> int:
        """Items running now."""
        return self._running_total

    @property
    def waiting(self) -> int:
        """Items waiting for a slot."""
        return sum(len(q) for q in self._waiting.values())

    def _may_start(self, key: Hashable) -> bool:
        return (not self.per_key or self._running.get(key, 0) < self.per_key) and (
            not self.total or self._running_total < self.total
        )

    def _take(self, key: Hashable) -> None:
        self._running[key] = self._running.get(key, 0) + 1
        self._running_total += 1

    async def run(
        self, source: S, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(*args, **kwargs)` when `source`'s turn comes; its result or exception."""
        if not self.per_key and not self.total:
            return await fn(*args, **kwargs)
        key = self._key(source)
        # Nothing of this key may be waiting: a newcomer never overtakes its own queue.
        if key not in self._waiting and self._may_start(key):
            self._take(key)
        else:
            await self._wait_for_turn(key)
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release(key)

    async def _wait_for_turn(self, key: Hashable) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(turn)
        self._offer(key)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(key)  # granted, then cancelled before it ran: pass it on
            else:
                self._withdraw(key, turn)
            raise

    def _offer(self, key: Hashable) -> None:
        """Put `key` in the round if it has a waiting item and room of its own."""
        if (
            key in self._waiting
            and key not in self._turns
            and (not self.per_key or self._running.get(key, 0) < self.per_key)
        ):
            self._turns.append(key)
        self._dispatch()

    def _withdraw(self, key: Hashable, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(turn)
            if not queue:
                del self._waiting[key]

    def _release(self, key: Hashable) -> None:
        left = self._running[key] - 1
        if left:
            self._running[key] = left
        else:
            del self._running[key]
        self._running_total -= 1
        self._offer(key)

    def _dispatch(self) -> None:
        """Start waiting items, one per key in turn, while the total allows."""
        while self._turns and (not self.total or self._running_total < self.total):
            key = self._turns.popleft()
            queue = self._waiting.get(key)
            while queue and queue[0].done():  # withdrawn (cancelled) waiters
                queue.popleft()
            if not queue:
                self._waiting.pop(key, None)
                continue
            queue.popleft().set_result(None)
            self._take(key)
            if not queue:
                del self._waiting[key]
            elif not self.per_key or self._running[key] < self.per_key:
                self._turns.append(key)  # its next item waits for its next turn


def owner_key(inbound: Inbound) -> Owner:
    """Whose queue a message waits in: its sender's (in one workspace of one platform)."""
    return Owner.of(inbound)


def message_queue(settings: Settings) -> FairWork[Inbound]:
    """The queue `TokenBot.handle` runs messages through, with the settings' limits."""
    return FairWork(owner_key, settings.max_handlers_per_user, settings.max_handlers)
