"""The Slack adapter in Socket Mode: the real AsyncSocketModeHandler against the fake's websocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import APP_TOKEN, TEAM, SlackHarness, mention_event


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    """The adapter in Socket Mode; U1 has a funded AllToken key."""
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url, socket_mode=True)
    owner = Owner(platform="slack", workspace=TEAM, user="U1")
    await harness.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


async def test_connects_with_the_app_token_and_serves_no_http(slack: SlackHarness) -> None:
    [opened] = slack.fake.calls_to("apps.connections.open")
    assert opened.token == APP_TOKEN
    assert slack.runner.mode == "socket" and slack.runner.url is None
    assert len(slack.fake.socket.connections) == 1
    assert await slack.bot.readiness["slack"]()


async def test_slash_command_envelope_is_acked_then_answered(slack: SlackHarness) -> None:
    with slack.work_held():
        # Acked while its work cannot run: the ack waits for nothing but parsing.
        delivery = await slack.command("/alltoken-help")
        ack = json.loads(delivery.body)
        assert set(ack) <= {"envelope_id", "payload"} and ack["envelope_id"]
        assert not slack.fake.calls_to("chat.postMessage")
    await slack.settle()
    [post] = slack.fake.calls_to("chat.postMessage")
    assert "/alltoken-chat" in json.dumps(post.args)


async def test_mention_envelope_streams_in_a_thread_and_retries_are_dropped(
    slack: SlackHarness,
) -> None:
    event = mention_event(slack.fake, "C1", "U1", "alltoken chat hello there")
    await slack.event(event, event_id="EvS1")
    await slack.event(event, event_id="EvS1", retry_num=1)  # acked, not answered again
    await slack.settle()
    assert len(slack.fake.socket.acks) == 2
    [stream] = slack.fake.streams.values()
    assert stream.thread_ts == event["ts"] and stream.stopped
    assert len(slack.fake.calls_to("chat.startStream")) == 1
