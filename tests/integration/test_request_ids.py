"""Each request audits its own backend request id, however many run at once (bug: a shared
`last_request_id` on the bot made concurrent commands audit each other's ids)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from bot.core.app import TokenBot
from bot.core.messages import MessageRef, Part
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat
from tests.fakes.conversation import RecordingConversation


class SlowConversation(RecordingConversation):
    """A platform whose posts take 1–20 ms, as Slack's and Discord's do."""

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        await asyncio.sleep(random.uniform(0.001, 0.02))
        return await super().say(parts)


async def test_concurrent_commands_audit_their_own_request_ids(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    users = [Chat(bot, user=f"user{i}", channel=f"c{i}") for i in range(20)]
    for chat in users:
        chat.conv = SlowConversation(chat.conv.destination)
        await chat.give_key(sim.issue_key(10.0))
    handled = await asyncio.gather(*(c.send("/alltoken-search tides today") for c in users))
    assert all(handled)
    seen: set[str] = set()
    for chat in users:
        [usage] = await bot.store.list_usage(chat.owner)
        [row] = [a for a in await bot.store.list_audit(chat.owner) if a.command == "search"]
        assert row.outcome == "ok"
        assert usage.request_id and row.request_id == usage.request_id
        seen.add(row.request_id)
    assert len(seen) == len(users)
