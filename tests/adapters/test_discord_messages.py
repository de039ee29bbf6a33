"""Channel messages end to end: triggers, threads with context, DMs, mentions, leaked keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.core.messages import Inbound
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.discord import (
    BOT_PERMISSIONS,
    MANAGE_MESSAGES,
    MESSAGE_CONTENT_INTENT,
    DiscordWorld,
    FakeDiscord,
    discord_world,
)

THREADS = "/channels/{channel_id}/messages/{message_id}/threads"
DELETE = "/channels/{channel_id}/messages/{message_id}"
LEAKED = "sk-at-" + "Zq9" * 8


async def give_key(w: DiscordWorld, user: dict[str, Any]) -> str:
    key = w.sim.issue_key(10.0)
    owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=user["id"])
    await w.bot.store.put_credential(owner, "alltoken", key)
    return key


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        await give_key(w, w.fake.alice)
        yield w


def bot_messages(w: DiscordWorld, channel_id: int, needle: str = "") -> list[dict[str, Any]]:
    return [
        m
        for m in w.fake.messages_in(channel_id)
        if m["author"]["id"] == w.fake.bot_user["id"]
        and needle in m["content"] + json.dumps(m["embeds"])
    ]


async def test_trigger_answers_in_a_thread_and_a_reply_there_continues_with_context(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    trigger = await fake.user_message("alltoken chat claude-haiku-4-5 remember the word teal")
    thread_id = int(trigger["id"])  # a thread started from a message has the message's id
    await fake.wait_until(lambda: bot_messages(world, thread_id, "completion"), what="the answer")
    (created,) = fake.calls_to("POST", THREADS)
    assert created.params["message_id"] == trigger["id"]
    assert "teal" in created.json["name"] and "sk-" not in created.json["name"]
    assert bot_messages(world, fake.channel_id) == []  # nothing posted in the channel itself
    # The handler records the thread's model just after the answer shows.
    follow_up = Inbound(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        thread=str(thread_id),
        user=fake.alice["id"],
        text="x",
        continues_thread=True,
    )
    await fake.wait_until(
        lambda: getattr(world.bot.parse(follow_up), "model", "") == "claude-haiku-4-5",
        what="the thread's continuation",
    )

    await fake.user_message("what word was it? [[echo-context]]", channel_id=thread_id)
    # The finished answer: its usage line names the model (a first post may hold all of the
    # text already, before that line).
    echo = await fake.wait_until(
        lambda: [
            m for m in bot_messages(world, thread_id, "I received") if "tokens" in m["content"]
        ],
        what="the contextual answer",
    )
    # The starter message, the bot's answer (as assistant) and the new question.
    assert "I received 3 messages" in echo[0]["content"]
    assert "remember the word teal" in echo[0]["content"]
    assert "`claude-haiku-4-5`" in echo[0]["content"]  # the thread keeps its model
    assert fake.calls_to("GET", "/channels/{channel_id}/messages")  # history was read
    assert len(fake.calls_to("POST", THREADS)) == 1


async def test_ordinary_chatter_is_ignored(world: DiscordWorld) -> None:
    await world.fake.user_message("lunch at noon?")
    await world.fake.user_message("alltoken help")  # a marker that all earlier events were read
    await world.fake.wait_until(lambda: world.fake.calls_to("POST", THREADS), what="a thread")
    assert len(world.fake.calls_to("POST", THREADS)) == 1


async def test_direct_message_is_answered_in_the_dm(world: DiscordWorld) -> None:
    fake = world.fake
    message = await fake.user_message("alltoken help", dm=True)
    dm = int(message["channel_id"])
    await fake.wait_until(lambda: bot_messages(world, dm, "/alltoken-chat"), what="help in DM")
    assert fake.calls_to("POST", THREADS) == []
    await fake.user_message("hello there", dm=True)
    await fake.wait_until(lambda: bot_messages(world, dm, "isn't a tokenbot command"), what="hint")


async def test_a_key_pasted_in_public_is_deleted_and_the_user_told_privately(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    message = await fake.user_message(f"alltoken key set {LEAKED}")
    await fake.wait_until(lambda: fake.calls_to("DELETE", DELETE), what="the delete")
    assert int(message["id"]) in fake.deleted
    dm = await fake.wait_until(lambda: fake.dm_channels.get(int(fake.alice["id"])), what="a DM")
    (warning,) = await fake.wait_until(lambda: bot_messages(world, dm, "key_exposed"), what="DM")
    assert "deleted the message" in json.dumps(warning["embeds"])
    assert "Rotate that key" in json.dumps(warning["embeds"])
    owner = Owner(platform="discord", workspace=str(fake.guild_id), user=fake.alice["id"])
    assert await world.bot.store.get_credential(owner, "alltoken") != LEAKED
    assert not any(LEAKED in c.text() for c in fake.calls)  # never echoed back
    assert fake.calls_to("POST", THREADS) == []  # nothing public was posted


async def test_without_manage_messages_the_key_stays_and_the_warning_says_so(
    sim: AllTokenSim, tmp_path: Path
) -> None:
    fake = FakeDiscord(bot_permissions=BOT_PERMISSIONS & ~MANAGE_MESSAGES)
    async with discord_world(sim, tmp_path / "data", fake=fake) as w:
        await fake.user_message(f"my key is {LEAKED}, oops")
        dm = await fake.wait_until(
            lambda: fake.dm_channels.get(int(fake.alice["id"])), what="a DM channel"
        )
        (warning,) = await fake.wait_until(lambda: bot_messages(w, dm, "key_exposed"), what="DM")
        assert "everyone in this channel can read it" in json.dumps(warning["embeds"])
        assert fake.calls_to("DELETE", DELETE) == []


async def test_without_the_content_intent_mentions_still_work(
    sim: AllTokenSim, tmp_path: Path
) -> None:
    fake = FakeDiscord(grant_message_content=False)
    async with discord_world(sim, tmp_path / "data", fake=fake) as w:
        # Refused with 4014 once, the runner reconnected without the privileged intent.
        identifies = [g for g in fake.gateway_log if g["op"] == 2]
        assert len(identifies) == 2
        assert identifies[0]["d"]["intents"] & MESSAGE_CONTENT_INTENT
        assert not identifies[1]["d"]["intents"] & MESSAGE_CONTENT_INTENT
        await fake.user_message("alltoken help")  # content hidden from the bot: ignored
        mention = await fake.user_message("alltoken help", mention_bot=True)
        thread_id = int(mention["id"])
        await fake.wait_until(lambda: bot_messages(w, thread_id, "/alltoken-chat"), what="help")
        assert len(fake.calls_to("POST", THREADS)) == 1
        i = await fake.slash("alltoken-help")  # and slash commands, of course
        await fake.wait_until(
            lambda: "/alltoken-chat" in (fake.original(i) or {}).get("content", ""), what="slash"
        )


async def test_a_typed_key_command_offers_the_private_form_by_button(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    message = await fake.user_message("alltoken key", dm=True)
    dm = int(message["channel_id"])
    (offer,) = await fake.wait_until(lambda: bot_messages(world, dm, "private form"), what="offer")
    button = offer["components"][0]["components"][0]
    assert button["custom_id"].startswith("tb:discord.form:")
    click = await fake.click(button["custom_id"], int(offer["id"]))
    await fake.wait_until(lambda: click.callbacks, what="the modal")
    assert click.response_type == 9
    modal = click.callbacks[0]["data"]
    field_id = modal["components"][0]["component"]["custom_id"]
    key = world.sim.issue_key(3.0)
    submit = await fake.submit_modal(modal["custom_id"], {field_id: key}, dm=True)
    await fake.wait_until(
        lambda: "Stored" in (fake.original(submit) or {}).get("content", ""), what="stored"
    )
    # A DM belongs to no guild: the key is the user's for direct messages.
    owner = Owner(platform="discord", workspace="@me", user=fake.alice["id"])
    assert await world.bot.store.get_credential(owner, "alltoken") == key
