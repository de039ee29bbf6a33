"""The throttled stream (bot.core.streaming) against an in-memory sink.

Timing: intervals are small and bounds generous; assertions count calls rather than measure
latency, so a loaded machine can only make them pass more easily.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.messages import Limits, MessageRef, Notice, Part, TextStream
from bot.core.streaming import NO_TEXT, ThrottledStream, collect
from tests.unit.test_text_split import TEXTS, rejoins, unclosed_fence

INTERVAL = 0.05


class RateLimited(Exception):
    """Like slack_sdk / discord.py rate-limit errors: carries `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after}")
        self.retry_after = retry_after


@dataclass
class Call:
    at: float
    op: str  # post | update
    id: str
    text: str
    ok: bool = True


@dataclass
class FakeSink:
    """Records posts and updates; `fail` holds exceptions to raise on the next calls."""

    calls: list[Call] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)  # id -> current text, post order
    fail: list[Exception] = field(default_factory=list)
    fail_updates_forever: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post(self, text: str) -> MessageRef:
        now = time.monotonic()
        await asyncio.sleep(0)  # a real sink yields to the loop
        mid = f"m{next(self._ids)}"
        if self.fail:
            self.calls.append(Call(now, "post", mid, text, ok=False))
            raise self.fail.pop(0)
        self.calls.append(Call(now, "post", mid, text))
        self.messages[mid] = text
        return MessageRef(platform="console", channel="c", id=mid)

    async def update(self, ref: MessageRef, text: str) -> None:
        now = time.monotonic()
        await asyncio.sleep(0)
        if self.fail or self.fail_updates_forever:
            self.calls.append(Call(now, "update", ref.id, text, ok=False))
            raise self.fail.pop(0) if self.fail else ConnectionError("update refused")
        self.calls.append(Call(now, "update", ref.id, text))
        self.messages[ref.id] = text

    def render_trailer(self, trailer: Sequence[Part]) -> str:
        return " · ".join(p.text for p in trailer if isinstance(p, Notice))

    def ok_calls(self, mid: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.ok and (mid is None or c.id == mid)]

    @property
    def texts(self) -> list[str]:
        return list(self.messages.values())


TRAILER = [Notice(text="12 tokens · $0.0001")]


def make(
    sink: FakeSink, limit: int = 4000, interval: float = INTERVAL, **kw: object
) -> ThrottledStream:
    return ThrottledStream(sink, Limits(max_message_chars=limit, edit_interval_s=interval), **kw)  # type: ignore[arg-type]


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_is_a_text_stream() -> None:
    assert isinstance(make(FakeSink()), TextStream)


async def test_first_text_is_posted_at_once() -> None:
    sink = FakeSink()
    stream = make(sink, interval=10.0)  # a long interval: only the first post can be immediate
    await stream.append("Hello")
    assert [c.op for c in sink.calls] == ["post"]
    assert sink.texts == ["Hello …"]
    assert stream.posts == 1 and stream.edits == 1 and stream.last_flush_at is not None
    await stream.aclose()


async def test_whitespace_alone_is_not_posted() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("\n\n")
    assert sink.calls == []
    await stream.append("Hi")
    assert sink.texts == ["Hi …"]
    await stream.aclose()


async def test_burst_is_coalesced_and_edits_are_paced() -> None:
    sink = FakeSink()
    stream = make(sink)
    tokens = [f"tok{i} " for i in range(300)]
    started = time.monotonic()
    for i, token in enumerate(tokens):
        await stream.append(token)
        if i % 10 == 0:
            await asyncio.sleep(0.002)
    await stream.finish(TRAILER)
    elapsed = time.monotonic() - started

    assert stream.edits == len(sink.ok_calls())
    assert stream.edits <= elapsed / INTERVAL + 3  # one per interval, plus first post and finish
    assert stream.edits < len(tokens) / 3  # coalesced
    (mid,) = sink.messages
    times = [c.at for c in sink.ok_calls(mid)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= INTERVAL * 0.8 for gap in gaps), gaps
    assert sink.texts == ["".join(tokens).rstrip() + "\n\n12 tokens · $0.0001"]


async def test_text_held_by_throttle_shows_without_more_appends() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("a")
    await stream.append("b")  # inside the interval: held back
    assert sink.texts == ["a …"]
    for _ in range(200):  # the timer shows it after the interval; wait up to ~2 s
        if sink.texts == ["ab …"]:
            break
        await asyncio.sleep(0.01)
    assert sink.texts == ["ab …"]
    # Once everything is shown the timer ends by itself.
    for _ in range(100):
        if not other_tasks():
            break
        await asyncio.sleep(0.01)
    assert not other_tasks()
    await stream.finish()
    assert sink.texts == ["ab"]


async def test_finish_waits_only_the_rest_of_the_interval() -> None:
    sink = FakeSink()
    stream = make(sink, interval=0.3)
    await stream.append("x")
    await stream.finish()
    post, update = sink.ok_calls()
    assert update.text == "x"
    assert update.at - post.at >= 0.3 * 0.8  # never two edits within an interval

    # The last edit was long ago (by the stream's clock): no wait at all. Were it to wait out
    # the interval, the 30 s guard would expire: a clear fault, not a slow machine.
    now = [1000.0]
    sink = FakeSink()
    stream = make(sink, interval=60.0, clock=lambda: now[0])
    await stream.append("x")
    now[0] += 61.0
    await asyncio.wait_for(stream.finish(TRAILER), 30)
    assert sink.texts == ["x\n\n12 tokens · $0.0001"]


async def test_finish_without_text_posts_placeholder() -> None:
    sink = FakeSink()
    stream = make(sink, interval=10.0)
    await stream.finish()
    assert sink.texts == [NO_TEXT]

    sink = FakeSink()
    stream = make(sink, interval=10.0)
    await stream.append("  ")
    await stream.finish(TRAILER)
    assert sink.texts == [f"{NO_TEXT}\n\n12 tokens · $0.0001"]


async def test_finish_is_idempotent_and_append_after_finish_fails() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("done")
    await stream.finish(TRAILER)
    calls = len(sink.calls)
    await stream.finish(TRAILER)
    assert len(sink.calls) == calls
    with pytest.raises(RuntimeError):
        await stream.append("more")


def fenced_answer() -> str:
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(40))
    prose = " ".join(f"word{i}" for i in range(120))
    return f"Intro paragraph.\n\n```python\ndef f():\n{code}\n```\n\n{prose}\n\nThe end."


async def test_overflow_continues_in_new_messages() -> None:
    sink = FakeSink()
    stream = make(sink, limit=300)
    text = fenced_answer()
    for i in range(0, len(text), 7):
        await stream.append(text[i : i + 7])
    await stream.finish(TRAILER)

    texts = sink.texts
    assert len(texts) >= len(text) // 300 + 1
    assert stream.posts == len(texts)
    for t in texts:
        assert len(t) <= 300
        assert unclosed_fence(t) is None
        assert not t.endswith("…")
    # Code continues in the next message with its fence reopened.
    assert sum(t.startswith("```python\n") for t in texts) >= 2
    assert texts[-1].endswith("\n\n12 tokens · $0.0001")
    body = [*texts[:-1], texts[-1].removesuffix("\n\n12 tokens · $0.0001")]
    assert rejoins(body, text)
    # Every message was posted once and then only edited; posts happen in order.
    posts = [c.id for c in sink.ok_calls() if c.op == "post"]
    assert posts == sorted(posts, key=lambda mid: int(mid[1:]))
    assert [c.id for c in sink.calls if c.op == "post"] == list(sink.messages)


async def test_huge_single_append_is_split() -> None:
    sink = FakeSink()
    stream = make(sink, limit=100)
    text = "\n\n".join(f"Paragraph {i} " + "x" * 60 for i in range(10))
    await stream.append(text)
    assert stream.posts >= 6  # the settled chunks are posted at once, in order
    await stream.finish()
    assert len(sink.texts) >= 7
    assert all(len(t) <= 100 for t in sink.texts)
    assert rejoins(sink.texts, text)


async def test_trailer_that_does_not_fit_gets_its_own_message() -> None:
    sink = FakeSink()
    stream = make(sink, limit=60)
    await stream.append("y" * 50)
    await stream.finish(TRAILER)
    assert sink.texts == ["y" * 50, "12 tokens · $0.0001"]


async def test_retry_after_is_honoured() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("one")
    await asyncio.sleep(INTERVAL * 1.5)
    sink.fail.append(RateLimited(0.3))
    await stream.append(" two")  # due: the update is tried and rate limited
    failed = sink.calls[-1]
    assert not failed.ok
    for i in range(20):
        await stream.append(f" t{i}")  # coalesced while blocked
        await asyncio.sleep(0.01)
    await stream.finish()
    later = [c for c in sink.calls if c.at > failed.at]
    assert later and all(c.at - failed.at >= 0.3 * 0.9 for c in later)
    assert sink.texts == ["one two" + "".join(f" t{i}" for i in range(20))]
    assert stream.failures == 1


async def test_failed_update_is_retried_and_text_kept() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("alpha")
    await asyncio.sleep(INTERVAL * 1.5)
    sink.fail.append(ConnectionError("boom"))
    await stream.append(" beta")
    assert not sink.calls[-1].ok
    await stream.append(" gamma")
    await stream.finish(TRAILER)
    assert sink.texts == ["alpha beta gamma\n\n12 tokens · $0.0001"]


async def test_failed_first_post_is_retried_in_order() -> None:
    sink = FakeSink()
    stream = make(sink)
    sink.fail.append(ConnectionError("boom"))
    await stream.append("first")
    assert sink.messages == {}
    await stream.finish()
    assert sink.texts == ["first"]


async def test_finish_raises_after_one_retry() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("hello")
    sink.fail_updates_forever = True
    with pytest.raises(ConnectionError):
        await stream.finish(TRAILER)
    finish_attempts = [c for c in sink.calls if not c.ok]
    assert len(finish_attempts) >= 2
    assert not other_tasks()
    # The caller may try again once the platform recovers.
    sink.fail_updates_forever = False
    await stream.finish(TRAILER)
    assert sink.texts == ["hello\n\n12 tokens · $0.0001"]


async def test_no_tasks_left_after_finish_or_aclose() -> None:
    before = other_tasks()
    sink = FakeSink()
    stream = make(sink, interval=5.0)
    await stream.append("a")
    await stream.append("b")  # held back: a timer task now waits for the interval
    assert other_tasks() - before
    await stream.aclose()
    assert other_tasks() == before

    sink = FakeSink()
    stream = make(sink, interval=0.2)
    await stream.append("a")
    await stream.append("b")
    await stream.finish()
    assert other_tasks() == before
    assert sink.texts == ["ab"]


async def test_context_manager_closes() -> None:
    before = other_tasks()
    async with make(FakeSink(), interval=5.0) as stream:
        await stream.append("a")
        await stream.append("b")
    assert other_tasks() == before


async def test_timer_gives_up_on_a_dead_sink() -> None:
    sink = FakeSink()
    stream = make(sink, interval=0.02)
    await stream.append("a")
    sink.fail_updates_forever = True
    await stream.append("b")
    for _ in range(300):
        if not other_tasks():
            break
        await asyncio.sleep(0.01)
    assert not other_tasks()
    assert 1 <= stream.failures <= 4
    await stream.aclose()


async def test_collect_pipes_and_returns_text() -> None:
    async def gen() -> AsyncIterator[str]:
        for piece in ["Hel", "", "lo", " world"]:
            yield piece

    sink = FakeSink()
    stream = make(sink)
    assert await collect(gen(), stream) == "Hello world"
    await stream.finish()
    assert sink.texts == ["Hello world"]


async def test_no_typing_marker() -> None:
    sink = FakeSink()
    stream = make(sink, typing_marker="")
    await stream.append("plain")
    assert sink.texts == ["plain"]
    await stream.finish()
    assert sink.ok_calls()[-1].op == "post"  # nothing changed, so no extra edit


async def test_marker_goes_below_a_closing_fence() -> None:
    sink = FakeSink()
    stream = make(sink)
    await stream.append("```py\nx = 1")
    (shown,) = sink.texts
    assert shown == "```py\nx = 1\n```\n…"
    assert unclosed_fence(shown) is None
    await stream.finish()


@settings(max_examples=60, deadline=None)
@given(
    text=TEXTS,
    limit=st.integers(min_value=30, max_value=120),
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
)
def test_any_stream_gives_valid_messages(text: str, limit: int, sizes: list[int]) -> None:
    async def run() -> FakeSink:
        sink = FakeSink()
        stream = make(sink, limit=limit, interval=0.0)
        pos, cycle = 0, itertools.cycle(sizes)
        while pos < len(text):
            size = next(cycle)
            await stream.append(text[pos : pos + size])
            pos += size
        await stream.finish(TRAILER)
        assert not other_tasks()
        return sink

    sink = asyncio.run(run())
    texts = sink.texts
    trailer = "12 tokens · $0.0001"
    assert texts and all(0 < len(t) <= limit for t in texts)
    assert all(unclosed_fence(t) is None for t in texts)
    if texts[-1] == trailer:
        body = texts[:-1]
    else:
        assert texts[-1].endswith("\n\n" + trailer)
        body = [*texts[:-1], texts[-1].removesuffix("\n\n" + trailer)]
    if not re.search(r"[^ \t\r\n]", text):
        assert body == [NO_TEXT]
    else:
        assert rejoins(body, text)


async def test_trailer_renderer_error_leaves_stream_retryable() -> None:
    class Flaky(FakeSink):
        broken = True

        def render_trailer(self, trailer: Sequence[Part]) -> str:
            if self.broken:
                raise ValueError("bad trailer")
            return super().render_trailer(trailer)

    sink = Flaky()
    stream = make(sink)
    await stream.append("text")
    with pytest.raises(ValueError):
        await stream.finish(TRAILER)
    sink.broken = False
    await stream.finish(TRAILER)
    assert sink.texts == ["text\n\n12 tokens · $0.0001"]


async def test_finish_after_aclose_fails() -> None:
    stream = make(FakeSink())
    await stream.aclose()
    with pytest.raises(RuntimeError):
        await stream.finish()
