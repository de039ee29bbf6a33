"""Slack's assistant thread against the fake Slack: greeting and suggested prompts, status while
work runs, the title, and the thread context kept in the store across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.assistant import (
    DRAWING,
    SUGGESTIONS,
    THINKING,
    TITLE_CHARS,
    AssistantThreads,
    asks_about_channel,
    thread_key,
    thread_title,
)
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import BOT_ID, BOT_USER, TEAM, FakeSlack, SlackHarness
from tests.restart.replicas import SharedDatabase, shared_db, slack_replicas

__all__ = ["shared_db"]  # the fixture, used below

DM = "DU1"  # the fake's conversations.open answers D + user id


def owner(user: str = "U1") -> Owner:
    return Owner(platform="slack", workspace=TEAM, user=user)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    """The adapter in HTTP mode; U1 has a funded AllToken key."""
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    await harness.bot.store.put_credential(owner(), "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


def thread_started(
    fake: FakeSlack, context_channel: str = "C9", user: str = "U1"
) -> dict[str, Any]:
    """Slack opens an assistant thread: its root message, then the event."""
    ts = fake.next_ts()
    root = {
        "type": "message",
        "subtype": "assistant_app_thread",
        "user": BOT_USER,
        "bot_id": BOT_ID,
        "text": "",
        "ts": ts,
    }
    fake.messages.setdefault(DM, []).append(root)
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "channel_id": DM,
            "thread_ts": ts,
            "context": {"channel_id": context_channel, "team_id": TEAM, "enterprise_id": None},
        },
        "event_ts": ts,
    }


def context_changed(thread_ts: str, channel: str) -> dict[str, Any]:
    return {
        "type": "assistant_thread_context_changed",
        "assistant_thread": {
            "user_id": "U1",
            "channel_id": DM,
            "thread_ts": thread_ts,
            "context": {"channel_id": channel, "team_id": TEAM},
        },
        "event_ts": thread_ts,
    }


def statuses(fake: FakeSlack) -> list[str]:
    return [str(c.args["status"]) for c in fake.calls_to("assistant.threads.setStatus")]


async def open_thread(slack: SlackHarness, context_channel: str = "C9") -> str:
    event = thread_started(slack.fake, context_channel)
    await slack.event(event)
    await slack.settle()
    return str(event["assistant_thread"]["thread_ts"])


async def test_thread_started_greets_and_suggests_one_prompt_per_backend(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    ts = await open_thread(slack)
    [greeting] = fake.bot_messages(DM)[1:]  # after the thread's root
    assert greeting["thread_ts"] == ts and "tokenbot" in greeting["text"]
    [call] = fake.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args["channel_id"] == DM and call.args["thread_ts"] == ts
    prompts = {p["title"]: p["message"] for p in call.args["prompts"]}
    assert prompts["Ask a question"].startswith("Explain how tides work")
    assert prompts["Draw an image"].startswith("draw with alltoken")
    assert prompts["Run an OpenMarlin task"].startswith("use openmarlin to")
    # The spend prompt only where this build has the command it is mapped to.
    has_usage = "/tokenbot" in slack.bot.slash_commands
    assert ("How much did I spend this week?" in prompts) is has_usage
    assert len(prompts) == len(SUGGESTIONS) - (not has_usage)
    # The context (the channel U1 has open) is in the store, ids only.
    stored = await slack.bot.store.thread_contexts.get(thread_key(DM, ts))
    assert stored == {"channel_id": "C9", "team_id": TEAM}


async def test_a_prompt_sets_the_status_streams_the_answer_then_clears_it(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    ts = await open_thread(slack)
    await slack.event(fake.user_message(DM, "U1", "explain **tides** please", thread_ts=ts))
    await slack.settle()
    assert statuses(fake) == [THINKING, ""]
    [thinking, cleared] = fake.calls_to("assistant.threads.setStatus")
    assert thinking.args["thread_ts"] == ts and thinking.args["channel_id"] == DM
    # Plain text is a chat with the default model, streamed natively in the thread.
    [start] = fake.calls_to("chat.startStream")
    assert start.args["thread_ts"] == ts
    [stream] = fake.streams.values()
    assert stream.stopped and "tides" in stream.text.lower()
    assert "gpt-5.4-mini" in json.dumps(stream.blocks)
    stop = fake.calls_to("chat.stopStream")[-1]
    assert thinking.at < start.at and stop.at < cleared.at
    # The first prompt names the thread; later ones don't rename it.
    [title] = fake.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "explain **tides** please"
    await slack.event(fake.user_message(DM, "U1", "and the moon? [[echo-context]]", thread_ts=ts))
    await slack.settle()
    assert len(fake.calls_to("assistant.threads.setTitle")) == 1
    assert statuses(fake) == [THINKING, "", THINKING, ""]
    second = [s for s in fake.streams.values() if s.thread_ts == ts][-1]
    assert "The first user message was: “explain **tides** please”" in second.text


async def test_an_image_prompt_says_drawing_and_uploads_into_the_thread(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    ts = await open_thread(slack)
    await slack.event(
        fake.user_message(DM, "U1", "draw with alltoken a lighthouse at dusk", thread_ts=ts)
    )
    await slack.settle()
    assert statuses(fake)[0] == DRAWING and statuses(fake)[-1] == ""
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == DM and complete.args["thread_ts"] == ts


async def test_the_title_is_clipped_inert_and_keyless() -> None:
    key = "sk-at-abcdef0123456789abcdef"
    title = thread_title(f"<!channel>  look\nat {key} " + "x" * 200)
    assert key not in title and "<!channel" not in title and "\n" not in title
    assert len(title) <= TITLE_CHARS + 1 and title.endswith("…")
    assert asks_about_channel("Summarize this channel please")
    assert not asks_about_channel("what is a channel?")


async def test_the_context_survives_a_restart_and_feeds_summarize_this_channel(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    first = await SlackHarness.start(tmp_path / "data", sim.base_url)
    fake = first.fake
    await first.bot.store.put_credential(owner(), "alltoken", sim.issue_key(5.0))
    ts = await open_thread(first, "C9")
    await first.event(context_changed(ts, "C7"))
    await first.settle()
    await first.aclose(stop_fake=False)  # the process stops; a new one opens the same db file

    fake.user_message("C7", "U2", "the deploy moved to friday")
    fake.user_message("C7", "U3", "ok, I'll tell the customer")
    second = await SlackHarness.start(tmp_path / "data", sim.base_url, fake=fake)
    try:
        stored = await second.bot.store.thread_contexts.get(thread_key(DM, ts))
        assert stored == {"channel_id": "C7", "team_id": TEAM}
        prompt = "summarize this channel [[echo-context]]"
        await second.event(fake.user_message(DM, "U1", prompt, thread_ts=ts))
        await second.settle()
        [history] = fake.calls_to("conversations.history")
        assert history.args["channel"] == "C7"  # the channel from the stored context
        [answer] = [s for s in fake.streams.values() if s.thread_ts == ts]
        assert "U2: the deploy moved to friday" in answer.text
    finally:
        await second.aclose()


async def test_an_unreadable_open_channel_is_said_and_the_answer_still_comes(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    ts = await open_thread(slack, "C4")
    fake.not_in_channel.add("C4")
    await slack.event(fake.user_message(DM, "U1", "catch me up on this channel", thread_ts=ts))
    await slack.settle()
    [notice] = fake.calls_to("chat.postEphemeral")
    assert "can't read the channel you have open" in json.dumps(notice.args)
    assert [s for s in fake.streams.values() if s.thread_ts == ts]
    assert statuses(fake)[-1] == ""


async def test_a_context_change_at_one_replica_is_what_the_other_one_reads(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with slack_replicas(shared_db, sim) as (a, b):
        fake = a.fake
        await a.bot.store.put_credential(owner(), "alltoken", sim.issue_key(5.0))
        ts = await open_thread(a, "C9")
        await b.event(context_changed(ts, "C8"))
        await b.settle()
        fake.user_message("C8", "U2", "standup is cancelled today")
        prompt = "what happened in this channel? [[echo-context]]"
        await a.event(fake.user_message(DM, "U1", prompt, thread_ts=ts))
        await a.settle()
        [history] = fake.calls_to("conversations.history")
        assert history.args["channel"] == "C8"
        [answer] = [s for s in fake.streams.values() if s.thread_ts == ts]
        assert "U2: standup is cancelled today" in answer.text


async def test_the_spend_prompt_is_answered_in_the_thread(slack: SlackHarness) -> None:
    if "/tokenbot" not in slack.bot.slash_commands:
        pytest.skip("this build has no /tokenbot usage")
    fake = slack.fake
    ts = await open_thread(slack)
    [spend] = [s for s in SUGGESTIONS if s.title == "How much did I spend this week?"]
    await slack.event(fake.user_message(DM, "U1", spend.message, thread_ts=ts))
    await slack.settle()
    assert "Your spend" in fake.all_text()  # /tokenbot usage answered
    assert "isn't a tokenbot command" not in fake.all_text()
    assert statuses(fake)[-1] == ""


async def test_a_thread_start_that_blows_up_is_answered_privately_in_that_thread(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The assistant events keep the channel, user and thread inside "assistant_thread": the
    # guard must find them there, or the person is never told something went wrong.
    async def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("an unexpected bug")

    monkeypatch.setattr(AssistantThreads, "started", explode)
    event = thread_started(slack.fake, "C9")
    await slack.event(event)
    await slack.settle()
    told = [
        c
        for c in slack.fake.calls_to("chat.postEphemeral")
        if "something went wrong" in json.dumps(c.args).lower()
    ]
    assert len(told) == 1, slack.fake.calls_to("chat.postEphemeral")
    assert told[0].args["channel"] == DM and told[0].args["user"] == "U1"
    assert "an unexpected bug" not in json.dumps(told[0].args)
