"""Streaming into Slack: native chat streams in threads, their budget, fallbacks and overflow."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.slack.conversation import SlackConversation
from adapters.slack.streams import NativeStream, PostUpdateStream
from bot.core.messages import Destination, Notice
from bot.core.text_split import open_fence
from bot.sim.alltoken.server import AllTokenSim
from tests.fakes.slack import TEAM, SlackHarness

USAGE = Notice(level="info", text="`gpt-5.4-mini` · 12 tokens · $0.0001")


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    try:
        yield harness
    finally:
        await harness.aclose()


def conversation(
    slack: SlackHarness, thread: str | None = "1700000000.000001"
) -> SlackConversation:
    dest = Destination(
        platform="slack",
        workspace=TEAM,
        channel="C1",
        user="U1",
        thread=thread,
        extras={"team": TEAM},
    )
    conv = slack.bot.conversation_for(dest)
    assert isinstance(conv, SlackConversation)
    return conv


async def test_native_stream_appends_at_most_once_a_second(slack: SlackHarness) -> None:
    stream = conversation(slack).stream()
    assert isinstance(stream, NativeStream)
    for i in range(30):
        await stream.append(f"word{i} ")
        await asyncio.sleep(0.05)
    await stream.finish([USAGE])
    fake = slack.fake
    [start] = fake.calls_to("chat.startStream")
    appends = fake.calls_to("chat.appendStream")
    [stop] = fake.calls_to("chat.stopStream")
    # At most one append a second of the stream's life (however long a busy machine made it).
    assert 1 <= len(appends) <= 1 + (stop.at - start.at)
    assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(appends))
    # The rest goes out with the stop itself, not in one more append.
    assert "word29" in json.dumps(stop.args) and "word29" not in json.dumps(appends[-1].args)
    [state] = fake.streams.values()
    assert state.text == "".join(f"word{i} " for i in range(30))
    assert "12 tokens" in json.dumps(state.blocks)
    assert start.args["recipient_user_id"] == "U1"


async def test_no_thread_means_post_and_update(slack: SlackHarness) -> None:
    stream = conversation(slack, thread=None).stream()
    assert isinstance(stream, PostUpdateStream)


async def test_stream_budget_exhausted_falls_back_to_post_and_update(
    slack: SlackHarness,
) -> None:
    conv = conversation(slack)
    kinds = [type(conv.stream()).__name__ for _ in range(5)]
    # Tier 2: a burst of 3 native streams (start + stop each), then post + update.
    assert kinds[:3] == ["NativeStream"] * 3 and kinds[3:] == ["PostUpdateStream"] * 2


async def test_start_stream_failure_falls_back_to_post_and_update(slack: SlackHarness) -> None:
    slack.fake.fail("chat.startStream", "not_allowed_token_type")
    stream = conversation(slack).stream()
    await stream.append("**hello** ")
    await stream.append("world")
    await stream.finish([USAGE])
    fake = slack.fake
    assert not fake.streams
    [message] = fake.bot_messages("C1")
    assert message["thread_ts"] == "1700000000.000001"
    assert "**hello** world" in message["blocks"][0]["text"]
    assert "12 tokens" in message["blocks"][0]["text"]


async def test_overflow_continues_in_a_new_message_without_breaking_the_fence(
    slack: SlackHarness,
) -> None:
    conv = conversation(slack)
    stream = NativeStream(conv, slack.runner.platform.append_budget(TEAM), max_chars=200)
    await stream.append("Here is code:\n\n```python\n")
    for i in range(30):
        await stream.append(f"x{i} = {i}\n")
    await stream.append("```\nDone.")
    await stream.finish([USAGE])
    fake = slack.fake
    [streamed] = fake.streams.values()
    assert streamed.stopped and streamed.text.endswith("```")
    assert open_fence(streamed.text) is None  # closed before the cut
    rest = fake.bot_messages("C1")[-1]
    assert rest["thread_ts"] == "1700000000.000001"
    continued = rest["blocks"][0]["text"]
    assert continued.startswith("```python\n") and "Done." in continued
    assert open_fence(continued) is None and "12 tokens" in continued
    joined = streamed.text + continued
    assert all(f"x{i} = {i}" in joined for i in range(30))


async def test_append_failure_continues_with_post_and_update(slack: SlackHarness) -> None:
    slack.fake.fail("chat.appendStream", "internal_error")
    stream = conversation(slack).stream()
    await stream.append("first part. ")
    await asyncio.sleep(1.05)
    await stream.append("second part.")
    await asyncio.sleep(1.1)
    await stream.finish([USAGE])
    fake = slack.fake
    [streamed] = fake.streams.values()
    assert streamed.stopped and streamed.text == "first part. "
    continued = fake.bot_messages("C1")[-1]["blocks"][0]["text"]
    assert "second part." in continued and "12 tokens" in continued


async def test_big_deltas_are_still_paced_to_one_append_a_second(slack: SlackHarness) -> None:
    # Each delta alone passes the SDK's default 256-character buffer: its buffering would
    # call appendStream for every one of them (20 a second); our clock allows one.
    stream = conversation(slack).stream()
    assert isinstance(stream, NativeStream)
    deltas = [f"part{i} " + "x" * 300 + "\n\n" for i in range(30)]
    for delta in deltas:
        await stream.append(delta)
        await asyncio.sleep(0.05)
    await stream.finish([USAGE])
    fake = slack.fake
    [start] = fake.calls_to("chat.startStream")
    appends = fake.calls_to("chat.appendStream")
    assert 1 <= len(appends) <= 2  # 1.5 s of text
    times = [start.at] + [a.at for a in appends]
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times))
    [state] = fake.streams.values()
    assert state.stopped and state.text == "".join(deltas)


async def test_a_slow_writer_is_shown_without_waiting_for_a_full_buffer(
    slack: SlackHarness,
) -> None:
    # The SDK's buffer would keep these few characters until 256 had piled up.
    stream = conversation(slack).stream()
    assert isinstance(stream, NativeStream)
    await stream.append("Short. ")
    await asyncio.sleep(0.1)
    await stream.append("Still short.")
    fake = slack.fake
    await fake.wait_for(lambda f: bool(f.calls_to("chat.appendStream")), timeout=5)
    [state] = fake.streams.values()
    assert state.text == "Short. Still short." and not state.stopped
    await stream.finish([USAGE])
    assert state.stopped and state.text == "Short. Still short."


async def test_streaming_calls_carry_the_text_as_markdown_chunks(slack: SlackHarness) -> None:
    stream = conversation(slack).stream()
    await stream.append("one ")
    await asyncio.sleep(1.1)
    await stream.append("two")
    await stream.finish([USAGE])
    fake = slack.fake
    calls = [c for c in fake.calls if c.method.endswith("Stream")]
    assert calls[0].method == "chat.startStream"
    assert calls[-1].method == "chat.stopStream"
    sent = [
        chunk["text"]
        for c in calls
        for chunk in c.args.get("chunks") or []
        if chunk.get("type") == "markdown_text"
    ]
    assert "".join(sent) == "one two"
    assert not any(c.args.get("markdown_text") for c in calls)


async def test_a_rate_limited_append_is_retried_without_repeating_text(
    slack: SlackHarness,
) -> None:
    # Refused twice: the client's own retry after Retry-After, then ours a second later.
    slack.fake.fail("chat.appendStream", "ratelimited", status=429, retry_after=1, times=2)
    stream = conversation(slack).stream()
    assert isinstance(stream, NativeStream)
    await stream.append("first. ")
    await asyncio.sleep(1.05)
    await stream.append("second. ")
    fake = slack.fake
    await fake.wait_for(lambda f: any(s.appends for s in f.streams.values()), timeout=10)
    await stream.append("third.")
    await stream.finish([USAGE])
    assert not stream.fell_back
    assert len(fake.calls_to("chat.appendStream")) >= 3  # two refused, then accepted
    [state] = fake.streams.values()
    assert state.stopped and state.text == "first. second. third."
    assert not fake.bot_messages("C1")[1:]  # nothing was posted besides the stream
