"""What bolt does for each request before tokenbot's listener acks it.

bolt tries listeners in registration order and builds each one's arguments before its matchers
run; its assistant middleware tries its own four listeners on every request. A slash command's
ack is the hot path in a burst, so it must reach its listener at the first try.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.listener.async_listener import AsyncListener

from bot.sim.alltoken.server import AllTokenSim
from tests.fakes.slack import SlackHarness


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    yield harness
    await harness.settle()
    await harness.aclose()


@pytest.fixture
def tries(monkeypatch: pytest.MonkeyPatch) -> list[AsyncListener]:
    """Every listener whose matchers bolt tries, in order (the app's and the assistant's)."""
    seen: list[AsyncListener] = []
    original = AsyncListener.async_matches

    async def counted(self: AsyncListener, **kwargs: Any) -> bool:
        seen.append(self)
        return await original(self, **kwargs)

    monkeypatch.setattr(AsyncListener, "async_matches", counted)
    return seen


@pytest.mark.parametrize("command", ["/alltoken-chat", "/tokenbot", "/openmarlin"])
async def test_a_slash_command_reaches_its_listener_at_the_first_try(
    slack: SlackHarness, tries: list[AsyncListener], command: str
) -> None:
    delivery = await slack.command(command, "help")
    assert delivery.status == 200
    assert len(tries) == 1


async def test_an_event_is_still_offered_to_the_assistant_and_the_app(
    slack: SlackHarness, tries: list[AsyncListener]
) -> None:
    # The counter sees the assistant's listeners too: what the command test relies on.
    event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "channel": "C1"}
    event["ts"] = "1700000000.000100"
    assert (await slack.event(event)).status == 200
    assert len(tries) > 4


async def test_a_declared_command_this_build_lacks_gets_a_private_pointer(
    slack: SlackHarness,
) -> None:
    delivery = await slack.command("/alltoken-telepathy", "hello")
    assert delivery.status == 200
    answer = json.loads(delivery.body)
    assert answer["response_type"] == "ephemeral"
    assert "`/alltoken-telepathy` isn't available in this tokenbot" in answer["text"]
    assert "/alltoken-help" in answer["text"]
