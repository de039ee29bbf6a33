"""Helpers for the OpenClaw Token tests: a fast simulator, a bot wired to it, and finders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from bot.backends.openclaw_token.service import CLI_RETRY, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.messages import Actions, Button, Destination, Failure, Fields, Text
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawSimConfig, OpenClawTokenSim
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

FAST = OpenClawSimConfig(device_interval_s=0.05, slow_down_increment_s=0.1, device_expires_s=60)
ADMIN = "root"
P = TypeVar("P")


@asynccontextmanager
async def running_sim(
    config: OpenClawSimConfig | None = None, **kw: Any
) -> AsyncIterator[OpenClawTokenSim]:
    """An OpenClaw Token simulator on a free loopback port."""
    sim = OpenClawTokenSim((config or FAST).model_copy(), **kw)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def running_bot(
    data_dir: Path, alltoken: AllTokenSim, openclaw: OpenClawTokenSim
) -> AsyncIterator[TokenBot]:
    """A TokenBot on both simulators with recording conversations (admin: "root")."""
    settings = make_settings(
        data_dir, alltoken, openclaw_token_api_base=openclaw.base_url, admins=ADMIN
    )
    bot = await TokenBot.create(settings)
    bot.services.get(OpenClawTokenService).retry = replace(CLI_RETRY, backoff_s=0.01)
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    for platform in ("console", "slack", "discord"):
        bot.register_platform(platform, factory)
    bot.test_conversations = conversations  # type: ignore[attr-defined]
    try:
        yield bot
    finally:
        await bot.aclose()


async def signed_in(bot: TokenBot, user: str = "alice", key: str = DEMO_MGMT_KEY) -> Chat:
    """A console user holding a management key (the demo account's by default)."""
    chat = Chat(bot, user)
    await bot.store.put_credential(chat.owner, "openclaw_token", key)
    return chat


def parts_of(chat: Chat, kind: type[P], *events: str) -> list[P]:
    """Every part of `kind` the bot sent (optionally only in these event kinds)."""
    return [
        p
        for e in chat.conv.events
        if not events or e.kind in events
        for p in e.parts
        if isinstance(p, kind)
    ]


def failures(chat: Chat) -> list[Failure]:
    """Every Failure part sent."""
    return parts_of(chat, Failure)


def rows(chat: Chat, title_part: str) -> list[tuple[str, str]]:
    """The rows of the last table whose title contains `title_part`."""
    found = [f for f in parts_of(chat, Fields) if title_part in f.title]
    assert found, f"no table titled *{title_part}* in:\n{chat.conv.text()}"
    return list(found[-1].rows)


def table(chat: Chat, title_part: str) -> dict[str, str]:
    """The same rows as a dict (labels must be unique)."""
    return dict(rows(chat, title_part))


def button(chat: Chat, action_id: str) -> Button:
    """The last button with this action id."""
    found = [b for a in parts_of(chat, Actions) for b in a.buttons if b.action_id == action_id]
    assert found, f"no {action_id} button in:\n{chat.conv.text()}"
    return found[-1]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds (for state outside the conversation, e.g. the sim's)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def texts(chat: Chat) -> list[str]:
    """Markdown of every Text part."""
    return [t.markdown for t in parts_of(chat, Text)]


async def click(
    chat: Chat, action_id: str, value: str | None = None, user: str | None = None
) -> None:
    """Click a button as `user` (the chat's own user by default)."""
    inbound = chat.inbound(f"/action {action_id}")
    if user is not None:
        inbound = inbound.model_copy(update={"user": user})
    value = value if value is not None else button(chat, action_id).value
    await chat.bot.handle_action(inbound, action_id, value, chat.conv)
