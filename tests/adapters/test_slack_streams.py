"""Streaming into Slack: native chat streams in threads, their budget, fallbacks and overflow."""

from __future__ import annotations

import asyncio
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
    assert 1 <= len(appends) <= 2  # 1.5 s of text
    [stop] = fake.calls_to("chat.stopStream")
    assert stop.at - appends[-1].at < 1.0  # the rest goes out at once with the stop
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
