"""The one throttled text stream every adapter uses to show a streamed model answer.

The first text is posted at once; later text is coalesced into at most one edit per `interval`
per message. Text beyond the platform's message limit is finalised in the current message and
continues in a new one, split on paragraph / line / code-fence boundaries (bot.core.text_split).
Updates are driven by `append()`; a short-lived timer task shows text that arrived during the
throttle window if no further text comes. It ends when everything is shown and is always
cancelled by `finish()` / `aclose()`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from bot.core.messages import Limits, MessageRef, Part, TextStream
from bot.core.text_split import Fence, split_markdown, stable_prefix

__all__ = ["NO_TEXT", "StreamSink", "ThrottledStream", "collect"]

log = logging.getLogger(__name__)

NO_TEXT = "_(no text returned)_"
# The timer stops retrying a failing sink after this many failures in a row; the next append()
# or finish() tries again, so a dead sink can't keep a task alive forever.
_MAX_TIMER_FAILURES = 3
# Floor for the timer's sleep, so a deadline that is already due can never spin the loop.
_MIN_SLEEP_S = 0.005


class StreamSink(Protocol):
    """The few platform calls a ThrottledStream needs; each adapter implements it."""

    async def post(self, text: str) -> MessageRef:
        """Post a new message with this text."""
        ...

    async def update(self, ref: MessageRef, text: str) -> None:
        """Replace the text of a message posted earlier."""
        ...

    def render_trailer(self, trailer: Sequence[Part]) -> str:
        """Render the usage/cost line as a Markdown string."""
        ...


@dataclass(eq=False)
class _Message:
    text: str = ""  # final text; empty while this is the live (still growing) message
    ref: MessageRef | None = None
    shown: str | None = None  # what the platform last accepted
    last_at: float = -math.inf  # last post/update attempt, for the per-message pace


class ThrottledStream:
    """A `TextStream` over a `StreamSink`: posts at once, then edits at most once per interval."""

    def __init__(
        self,
        sink: StreamSink,
        limits: Limits | None = None,
        *,
        limit: int | None = None,
        interval: float | None = None,
        typing_marker: str = "…",
        empty_text: str = NO_TEXT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limits = limits or Limits()
        self._sink = sink
        self._limit = limit if limit is not None else limits.max_message_chars
        self._interval = interval if interval is not None else limits.edit_interval_s
        self._marker = typing_marker
        # Room for " …" on the live message, so adding the marker never pushes it over.
        self._chunk_limit = self._limit - (len(typing_marker) + 1 if typing_marker else 0)
        if self._chunk_limit < 1:
            raise ValueError("message limit too small")
        self._empty_text = empty_text
        self._clock = clock

        self._raw = ""  # text of the live message not yet finalised
        self._fence: Fence | None = None  # code fence `_raw` continues
        self._messages: list[_Message] = [_Message()]  # last one is live until sealed
        self._sealed = False  # finish() has fixed every message's final text
        self._closing = False  # no more append()
        self._closed = False  # aclose() was called: finish() is no longer possible
        self._finished = False
        self._blocked_until = -math.inf  # rate limit (retry_after) from the sink
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

        self.edits = 0  # successful posts + updates
        self.posts = 0
        self.updates = 0
        self.failures = 0
        self.last_flush_at: float | None = None

    # --- public API -----------------------------------------------------------------------

    @property
    def refs(self) -> list[MessageRef]:
        """The messages posted so far, in order."""
        return [m.ref for m in self._messages if m.ref is not None]

    async def append(self, text: str) -> None:
        """Add text; posts immediately the first time, later coalesces into throttled edits."""
        if self._closing:
            raise RuntimeError("stream already finished")
        if not text:
            return
        self._raw += text
        self._roll_over()
        if not self._lock.locked():  # else a flush is in flight; the timer shows this text
            async with self._lock:
                await self._pump(None)
        self._arm()

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """Show all text now (waiting only the rest of an interval) with `trailer` after it.

        A sink error is retried once, then raised. Calling finish() again retries delivery.
        """
        if self._finished:
            return
        if self._closed and not self._sealed:
            raise RuntimeError("stream was closed")
        self._closing = True
        async with self._lock:
            # Under the lock the timer is asleep or waiting for it, never mid-request.
            await self._stop_timer()
            if not self._sealed:
                self._seal(trailer)
            failures: dict[int, int] = {}
            while True:
                await self._pump(failures)
                due = self._next_due()
                if due is None:
                    break
                await asyncio.sleep(max(due - self._clock(), 0))
        self._finished = True

    async def aclose(self) -> None:
        """Stop without flushing: cancel the timer. Safe to call at any time, more than once."""
        self._closing = self._closed = True
        await self._stop_timer()

    async def __aenter__(self) -> ThrottledStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- splitting ---------------------------------------------------------------------------

    def _roll_over(self) -> None:
        """Finalise the chunks of the live message that can no longer change."""
        if len(self._raw) <= self._chunk_limit:
            return  # cheap exit for the common case: it all still fits
        stable = stable_prefix(self._raw, self._chunk_limit, fence=self._fence)
        if not stable.final:
            return
        self._messages[-1].text = stable.final[0]
        self._messages.extend(_Message(text=t) for t in stable.final[1:])
        self._messages.append(_Message())
        self._raw, self._fence = stable.rest, stable.fence

    def _live_text(self) -> str:
        chunks = split_markdown(self._raw, self._chunk_limit, fence=self._fence)
        if not chunks:
            return ""
        text = chunks[0]
        if not self._marker:
            return text
        last_line = text.rsplit("\n", 1)[-1]
        # The marker can't share a line with a closing fence (that would un-close it).
        sep = "\n" if last_line.lstrip().startswith(("```", "~~~")) else " "
        return text + sep + self._marker

    def _seal(self, trailer: Sequence[Part]) -> None:
        """Fix every message's final text: the remaining chunks, then the trailer."""
        # Render first: if the adapter's renderer raises, nothing has been changed yet.
        rendered = self._sink.render_trailer(trailer).strip() if trailer else ""
        live = self._messages.pop()
        chunks = split_markdown(self._raw, self._chunk_limit, fence=self._fence)
        # A posted live message always has text, so an empty one was never posted: drop it.
        if chunks:
            live.text = chunks[0]
            self._messages.append(live)
            self._messages.extend(_Message(text=t) for t in chunks[1:])
        self._raw = ""
        if not self._messages:
            self._messages.append(_Message(text=self._empty_text))
        if rendered:
            last = self._messages[-1]
            joined = f"{last.text}\n\n{rendered}"
            if len(joined) <= self._limit:
                last.text = joined
            else:
                self._messages.extend(
                    _Message(text=t) for t in split_markdown(rendered, self._limit)
                )
        self._sealed = True

    # --- sending -------------------------------------------------------------------------------

    def _want(self, msg: _Message) -> str:
        if not self._sealed and msg is self._messages[-1]:
            return self._live_text()
        return msg.text

    def _due(self, msg: _Message) -> float:
        """When `msg` may next be sent: one call per interval per message, after any rate limit."""
        return max(self._blocked_until, msg.last_at + self._interval)

    def _next_due(self) -> float | None:
        """The earliest time something unsent may be sent, or None if all is shown."""
        best: float | None = None
        for msg in self._messages:
            want = self._want(msg)
            if want and want != msg.shown:
                due = self._due(msg)
                best = due if best is None else min(best, due)
            if msg.ref is None:
                break  # later messages are posted after this one
        return best

    async def _pump(self, failures: dict[int, int] | None) -> bool:
        """Send every message that is due. Called with the lock held.

        `failures` is None while streaming: errors are logged and retried on a later tick.
        From finish() it counts failures per message; the second one is raised.
        """
        now = self._clock()
        for msg in self._messages:
            if now < self._due(msg):
                if msg.ref is None:
                    return True  # posts keep their order
                continue
            want = self._want(msg)
            if not want or want == msg.shown:
                if msg.ref is None:
                    return True
                continue
            try:
                await self._send(msg, want)
            except Exception as exc:
                self._note_failure(exc)
                if failures is None:
                    return False
                failures[id(msg)] = failures.get(id(msg), 0) + 1
                if failures[id(msg)] > 1:
                    raise
                return False
            now = self._clock()
        return True

    async def _send(self, msg: _Message, text: str) -> None:
        msg.last_at = self._clock()
        if msg.ref is None:
            msg.ref = await self._sink.post(text)
            self.posts += 1
        else:
            await self._sink.update(msg.ref, text)
            self.updates += 1
        msg.shown = text
        self.edits += 1
        self.last_flush_at = self._clock()

    def _note_failure(self, exc: Exception) -> None:
        self.failures += 1
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + float(retry_after))
        log.warning("stream flush failed (%s: %s); will retry", type(exc).__name__, exc)

    # --- the timer -----------------------------------------------------------------------------

    def _arm(self) -> None:
        """Make sure text held back by the throttle gets shown even if no more text arrives."""
        if self._closing or (self._timer is not None and not self._timer.done()):
            return
        if self._next_due() is None:
            return
        self._timer = asyncio.get_running_loop().create_task(
            self._run_timer(), name="tokenbot-stream-flush"
        )

    async def _run_timer(self) -> None:
        failures = 0
        while not self._closing:
            due = self._next_due()
            if due is None:
                return
            await asyncio.sleep(max(due - self._clock(), _MIN_SLEEP_S))
            async with self._lock:
                if self._closing:
                    return
                ok = await self._pump(None)
            failures = 0 if ok else failures + 1
            if failures >= _MAX_TIMER_FAILURES:
                return

    async def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is None or timer.done():
            return
        timer.cancel()
        try:
            await timer
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the timer


async def collect(chunks: AsyncIterable[str], stream: TextStream) -> str:
    """Pipe streamed text into `stream` and return all of it. Does not call finish()."""
    parts: list[str] = []
    async for chunk in chunks:
        if chunk:
            parts.append(chunk)
            await stream.append(chunk)
    return "".join(parts)
