"""Background work started after an ack: kept referenced, logged when it fails, awaited on close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class AckFirst:
    """Lets acks go before work: work started after an ack waits while other requests are
    still being acked, for at most `max_wait_s`.

    Slack wants every request acked within 3 s; in a burst of slash commands, each command's
    work (store, backend call) would otherwise run between the later requests' acks.
    """

    def __init__(self, max_wait_s: float = 0.25) -> None:
        self.max_wait_s = max_wait_s
        self.inflight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def enter(self) -> None:
        """A request is being handled."""
        self.inflight += 1
        self._quiet.clear()

    def leave(self) -> None:
        """A request has been answered."""
        self.inflight -= 1
        if self.inflight <= 0:
            self.inflight = 0
            self._quiet.set()

    async def wait(self) -> None:
        """Until no request is in flight, or `max_wait_s` (work must never starve)."""
        if self.inflight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self.max_wait_s)


class Supervisor:
    """Runs coroutines as tasks; none can be garbage-collected or die without a log line."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        self.closed = False
        self.gate = AckFirst()

    @property
    def active(self) -> int:
        """Tasks still running."""
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Start `coro` in the background (dropped with a warning once closed)."""
        if self.closed:
            coro.close()
            log.warning("not starting %s: the Slack adapter is shutting down", name)
            return None
        task = asyncio.get_running_loop().create_task(self._after_acks(coro), name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    async def _after_acks(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            await self.gate.wait()
        except BaseException:
            coro.close()
            raise
        return await coro

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failures += 1
            log.error("%s failed", task.get_name(), exc_info=exc)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no task runs; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Let running work finish for up to `grace_s`, then cancel what is left."""
        self.closed = True
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
