"""A workspace key is lent only for charged calls, over real HTTP to the simulators: a member
without an OpenMarlin key of their own runs on the workspace key, but is told to set their own
key for the account's balance, activity and top-ups (nothing is sent to the server for them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.backends.openmarlin.family import openmarlin_family
from bot.backends.openmarlin.jobs import OpenMarlinTiming
from bot.core.app import TokenBot
from bot.core.messages import Destination, Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim, OpenMarlinSimConfig
from bot.teams.family import tokenbot_family
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

WS = "w1"
BOSS = "UBOSS"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    s = OpenMarlinSim(OpenMarlinSimConfig(task_queue_s=0.1, task_run_s=0.2, tokens_per_second=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def bot(tmp_path: Path, sim: AllTokenSim, om: OpenMarlinSim) -> AsyncIterator[TokenBot]:
    settings = make_settings(
        tmp_path / "data", sim, openmarlin_server_url=om.base_url, admins=f"slack:{BOSS}"
    )
    families = [openmarlin_family(OpenMarlinTiming(poll_s=0.05)), tokenbot_family()]
    b = await TokenBot.create(settings, families=families)
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    b.register_platform("slack", factory)
    b.test_conversations = conversations  # type: ignore[attr-defined]
    await b.store.put_workspace_key("slack", WS, "openmarlin", om.issue_key(100), by_user=BOSS)
    try:
        yield b
    finally:
        await b.aclose()


def member(bot: TokenBot, user: str) -> Chat:
    chat = Chat(bot, user, channel="C1", platform="slack")
    chat.inbound_proto = chat.inbound_proto.model_copy(update={"is_direct": False})
    return chat


def told_to_set_a_key(chat: Chat) -> bool:
    last = chat.conv.of("whisper")[-1]
    return any(isinstance(p, Notice) and "no OpenMarlin key stored" in p.text for p in last.parts)


@pytest.mark.parametrize(
    "text",
    [
        "/openmarlin balance",
        "/openmarlin activity",
        "/openmarlin top up 10",
        "/openmarlin referral link",
    ],
)
async def test_account_commands_never_use_the_workspace_key(
    bot: TokenBot, om: OpenMarlinSim, text: str
) -> None:
    bob = member(bot, "UBOB")
    before = dict(om.requests)
    await bob.send(text)
    assert told_to_set_a_key(bob)
    assert dict(om.requests) == before  # nothing reached the workspace's account
    assert not await bot.store.jobs_for(bob.owner)  # no top-up is watched either
    [row] = await bot.store.list_audit(bob.owner, 5)
    assert row.outcome == "denied"


async def test_a_run_works_on_the_workspace_key(bot: TokenBot, om: OpenMarlinSim) -> None:
    bob = member(bot, "UBOB")
    await bob.send("use openmarlin to say hello")
    assert not bob.conv.of("whisper") or not told_to_set_a_key(bob)
    assert om.execution_count == 1
    [entry] = await bot.store.ledger_rows("slack", WS, user="UBOB", since=LONG_AGO)
    assert entry.key_source == "workspace" and entry.service == "openmarlin"


async def test_a_member_with_their_own_key_sees_their_own_balance(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    carol = member(bot, "UCAROL")
    await bot.store.put_credential(carol.owner, "openmarlin", om.issue_key(7))
    await carol.send("/openmarlin balance")
    assert not told_to_set_a_key(carol)
    assert "7" in carol.conv.events[-1].text
