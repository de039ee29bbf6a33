"""What Ctrl-C means in the console: once stops the answer in progress, twice quits.

On a terminal the line editor sees Ctrl-C at the prompt as a key (an empty prompt quits);
while an answer runs, and always with piped input, it arrives as SIGINT, which asyncio hands
to `InterruptGate.press` instead of raising KeyboardInterrupt somewhere in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from bot.core.outbound_text import neutralise_controls
from bot.store import JobRecord

T = TypeVar("T")
TWICE_WITHIN_S = 2.0


class QuitRequested(Exception):
    """Ctrl-C asked the console to quit."""


class InterruptGate:
    """Ctrl-C presses: cancel the running step, or quit when nothing runs or pressed twice."""

    def __init__(
        self, window_s: float = TWICE_WITHIN_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self.quit = asyncio.Event()
        self._current: asyncio.Task[object] | None = None
        self._last_press: float | None = None

    def press(self) -> None:
        """One Ctrl-C."""
        now = self.clock()
        twice = self._last_press is not None and now - self._last_press <= self.window_s
        self._last_press = now
        current = self._current
        if current is not None and not current.done() and not twice:
            current.cancel()
            return
        self.quit.set()

    async def cancellable(self, step: Awaitable[T]) -> tuple[bool, T | None]:
        """Run `step` so one Ctrl-C cancels it: (finished, result). QuitRequested on quit."""
        task: asyncio.Task[T] = asyncio.ensure_future(step)
        self._current = task
        try:
            await self._race(task)
        finally:
            self._current = None
        if task.cancelled():
            return False, None
        return True, task.result()

    async def until_quit(self, step: Awaitable[T]) -> T:
        """Await `step` unless Ctrl-C asks to quit first (then QuitRequested)."""
        task: asyncio.Task[T] = asyncio.ensure_future(step)
        await self._race(task)
        return task.result()

    async def _race(self, task: asyncio.Task[T]) -> None:
        if self.quit.is_set():
            await _stop(task)
            raise QuitRequested
        quitting = asyncio.ensure_future(self.quit.wait())
        try:
            await asyncio.wait({task, quitting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            quitting.cancel()
        if not task.done():
            await _stop(task)
            raise QuitRequested

    @contextlib.contextmanager
    def handling_sigint(self) -> Iterator[None]:
        """Route SIGINT to `press` while the console runs (where the platform allows it)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.press)
        except (NotImplementedError, RuntimeError, ValueError):
            yield  # not the main thread, or Windows: KeyboardInterrupt as before
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)


async def _stop(task: asyncio.Task[T]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def describe_pending(jobs: list[JobRecord]) -> list[str]:
    """One line per pending job: `video “waves on a pier” (running, ref 1a2b3c4d)`."""
    lines = []
    for job in jobs:
        what = neutralise_controls(job.kind.replace("_", " ").replace(".", " "))
        prompt = job.state.get("prompt") if isinstance(job.state, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            short = " ".join(prompt.split())
            short = short if len(short) <= 60 else short[:59] + "…"
            what += f" “{neutralise_controls(short)}”"
        lines.append(f"  • {what} ({neutralise_controls(job.status)}, ref {job.id[:8]})")
    return lines
