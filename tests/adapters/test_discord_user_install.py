"""tokenbot installed to a person's account: the tree declares it, and replies where the bot is no
member go only through the interaction, within Discord's 5 follow-ups (tests/fakes/discord.py
refuses a sixth, and any channel call there, as Discord does)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.discord.conversation import DiscordConversation
from adapters.discord.outgoing import Outgoing
from adapters.discord.sync import run_sync, sync_commands
from adapters.discord.user_install import FOLD_FILE, fold_chunks
from bot.core.messages import Destination, Text
from bot.sim.alltoken.answers import compose_answer
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.adapters.test_discord_lifecycle import stand_in_family
from tests.fakes.discord import EPHEMERAL, LOADING, DiscordWorld, FakeInteraction, discord_world

WEBHOOK = "/webhooks/{application_id}/{token}"
GLOBAL_COMMANDS = "/applications/{application_id}/commands"


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    """Discord with every installed family."""
    async with discord_world(sim, tmp_path / "data") as w:
        yield w


async def give_key(w: DiscordWorld, workspace: str) -> None:
    owner = Owner(platform="discord", workspace=workspace, user=w.fake.alice["id"])
    await w.bot.store.put_credential(owner, "alltoken", w.sim.issue_key(10.0))


def channel_calls(w: DiscordWorld) -> list[str]:
    """Every call to a channel endpoint (reads, posts, edits, threads, DMs)."""
    return [
        f"{c.method} {c.path}"
        for c in w.fake.calls
        if c.route.startswith("/channels/") or c.route == "/users/@me/channels"
    ]


def within_limit(w: DiscordWorld, i: FakeInteraction) -> None:
    """No follow-up was refused and no more than 5 were sent."""
    sends = [c for c in w.fake.calls_to("POST", WEBHOOK) if c.params["token"] == i.token]
    assert len(i.followups) <= 5 and len(sends) == len(i.followups)
    assert all(c.status == 200 for c in sends)


def attached(w: DiscordWorld, i: FakeInteraction, name: str) -> str | None:
    """The text of a file called `name` the bot attached to this interaction's replies."""
    for call in w.fake.calls:
        if call.params.get("token") == i.token:
            for f in call.files:
                if f.filename == name:
                    return f.data.decode("utf-8")
    return None


def words(text: str) -> list[str]:
    # Fences are closed and reopened where a code block is split across messages.
    return [w for w in text.split() if not w.startswith("```")]


def settled_with(w: DiscordWorld, i: FakeInteraction, needle: str) -> dict[str, Any] | None:
    for m in w.fake.replies(i):
        if not int(m["flags"]) & LOADING and needle in m["content"] + json.dumps(m["embeds"]):
            return m
    return None


async def test_sync_declares_both_install_types_and_each_commands_contexts(
    world: DiscordWorld,
) -> None:
    result = await sync_commands(world.bot, world.bot.settings)
    assert result.synced and result.user_install
    (put,) = world.fake.calls_to("PUT", GLOBAL_COMMANDS)
    sent = {c["name"]: c for c in put.json}
    assert all(c["integration_types"] == [0, 1] for c in sent.values())
    for name, command in sent.items():
        specs = [s for s in world.bot.specs if s.path[0] == name]
        everywhere = not specs or any(not s.private for s in specs)
        assert command["contexts"] == ([0, 1, 2] if everywhere else [0, 1]), name
    assert sent["alltoken-chat"]["contexts"] == [0, 1, 2]
    assert sent["alltoken-video"]["contexts"] == [0, 1, 2]
    assert sent["openmarlin"]["contexts"] == [0, 1, 2]
    # Keys, accounts, billing and the admin audit: servers and the bot's DM only.
    assert sent["alltoken-key"]["contexts"] == [0, 1]
    assert sent["openclaw-token"]["contexts"] == [0, 1]


async def test_sync_says_when_the_application_offers_no_user_install(
    world: DiscordWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world.fake.offers_user_install = False
    assert await run_sync(world.bot.settings, guild_id=None, force=True) == 0
    out = capsys.readouterr().out
    assert "installable to servers and users" in out and "enable User Install" in out


async def test_a_long_chat_in_a_server_without_the_bot_is_answered_in_full_within_5_followups(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    world.sim.config.tokens_per_second = 0
    guild = fake.snowflake()
    await give_key(world, str(guild))
    prompt = "[[tokens=4000]] explain tides at length"
    i = await fake.user_install_slash("alltoken-chat", guild_id=guild, prompt=prompt)
    await fake.wait_until(lambda: attached(world, i, FOLD_FILE), 20, what="the folded rest")
    last = await fake.wait_until(lambda: settled_with(world, i, "tokens"), 10, what="usage line")
    assert last["attachments"] and "attached file" in last["content"]
    within_limit(world, i)
    assert len(i.followups) <= 4  # one follow-up is left for whatever may still come
    assert channel_calls(world) == []
    # Every word of the answer arrived: the pages in order, then the attached rest.
    pages = [m["content"] for m in fake.replies(i) if not m["attachments"]]
    received = words("\n".join([*pages, attached(world, i, FOLD_FILE) or ""]))
    expected = words(compose_answer([{"role": "user", "content": prompt}], "gpt-5.4-mini"))
    assert " ".join(expected) in " ".join(received)
    assert len(pages) >= 2  # it streamed into the original response, then paged


async def test_a_medium_answer_uses_pages_and_no_file(world: DiscordWorld) -> None:
    fake = world.fake
    world.sim.config.tokens_per_second = 0
    guild = fake.snowflake()
    await give_key(world, str(guild))
    i = await fake.user_install_slash("alltoken-chat", guild_id=guild, prompt="[[tokens=700]] hi")
    await fake.wait_until(lambda: settled_with(world, i, "tokens"), 20, what="usage line")
    assert len(fake.replies(i)) >= 2 and attached(world, i, FOLD_FILE) is None
    within_limit(world, i)
    assert channel_calls(world) == []


async def test_an_image_in_a_server_without_the_bot_is_attached_through_the_interaction(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    guild = fake.snowflake()
    await give_key(world, str(guild))
    i = await fake.user_install_slash(
        "alltoken-image", guild_id=guild, prompt="a lighthouse", quality="low"
    )
    await fake.wait_until(lambda: settled_with(world, i, "Image ready"), 20, what="the image")
    uploads = [f for c in fake.calls if c.params.get("token") == i.token for f in c.files]
    assert len(uploads) == 1 and uploads[0].filename.endswith(".png")
    within_limit(world, i)
    assert channel_calls(world) == []


async def test_a_video_in_a_private_channel_arrives_later_through_the_interaction(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    world.sim.config.video_seconds = 1.5
    await give_key(world, "@me")  # a private channel is no server: the DM keys apply
    i = await fake.user_install_slash(
        "alltoken-video", place="private_channel", prompt="waves on a pier", duration=5
    )
    await fake.wait_until(lambda: settled_with(world, i, "Video ready"), 20, what="the video")
    within_limit(world, i)
    assert channel_calls(world) == []


async def test_a_cancel_click_in_a_server_without_the_bot_is_answered_through_its_interaction(
    world: DiscordWorld,
) -> None:
    """A click there is an interaction of the user install too: the bot may not touch the
    channel, so the cancel is acknowledged and shown through the interactions alone."""
    fake, sim = world.fake, world.sim
    sim.config.video_seconds = 30
    guild = fake.snowflake()
    await give_key(world, str(guild))
    i = await fake.user_install_slash("alltoken-video", guild_id=guild, prompt="waves", duration=5)
    progress = await fake.wait_until(lambda: settled_with(world, i, "Video"), what="progress")
    (button,) = progress["components"][0]["components"]
    assert button["label"] == "Cancel"
    # Click once the task exists at AllToken (a click before that cancels only locally).
    await fake.wait_until(
        lambda: sim.stats.requests_to("GET", "/v1/videos/generations/{id}"), what="a poll"
    )
    click = await fake.user_install_click(button["custom_id"], int(progress["id"]), i)
    await fake.wait_until(
        lambda: "cancelled" in (fake.original(i) or {}).get("content", ""), what="cancelled"
    )
    assert click.response_type == 6  # deferred update of the message, no "thinking…"
    assert sim.stats.video_cancellations == 1
    assert (fake.original(i) or {}).get("components") == []  # the button is gone
    within_limit(world, i)
    within_limit(world, click)
    assert channel_calls(world) == []  # nothing went to the channel the bot is not in


async def test_after_the_token_expires_a_late_result_goes_by_dm_never_to_that_channel(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    world.sim.config.video_seconds = 2
    guild = fake.snowflake()
    await give_key(world, str(guild))
    i = await fake.user_install_slash("alltoken-video", guild_id=guild, prompt="waves", duration=5)
    await fake.wait_until(lambda: settled_with(world, i, "Video"), what="the progress message")
    fake.expire(i)  # as after 15 minutes

    def in_dm() -> bool:
        dm = fake.dm_channels.get(int(fake.alice["id"]), 0)
        return any(
            "Video ready" in m["content"] + json.dumps(m["embeds"]) for m in fake.messages_in(dm)
        )

    await fake.wait_until(in_dm, 20, what="the result by DM")
    assert not [c for c in fake.calls if c.params.get("channel_id") == str(i.channel_id)]


async def test_a_direct_message_becomes_an_ephemeral_reply_where_only_the_interaction_works(
    sim: AllTokenSim, tmp_path: Path
) -> None:
    async with discord_world(sim, tmp_path / "data", families=[stand_in_family("/echo")]) as w:
        i = await w.fake.user_install_slash("echo", place="private_channel", text="dm")
        reply = await w.fake.wait_until(lambda: settled_with(w, i, "a private link"), what="it")
        assert int(reply["flags"]) & EPHEMERAL
        assert channel_calls(w) == []  # no DM channel opened, nothing posted in the channel


async def test_the_fake_refuses_a_sixth_followup_and_channel_calls_like_discord(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    i = await fake.user_install_slash("alltoken-help")
    await fake.wait_until(lambda: settled_with(world, i, "/alltoken-chat"), what="help")
    url = f"{fake.api_url}/webhooks/{fake.app_id}/{i.token}?wait=true"
    async with httpx.AsyncClient() as http:
        statuses = [
            (await http.post(url, json={"content": f"#{n}"})).status_code
            for n in range(6 - len(i.followups))
        ]
        refused = await http.post(url, json={"content": "one more"})
        post = await http.post(
            f"{fake.api_url}/channels/{i.channel_id}/messages",
            json={"content": "x"},
            headers={"Authorization": "Bot fake-bot-token"},
        )
    assert statuses[:-1] == [200] * (len(statuses) - 1) and statuses[-1] == 400
    assert refused.status_code == 400 and refused.json()["code"] == 40094
    assert len(i.followups) == 5
    assert post.status_code == 403 and post.json()["code"] == 50001


async def test_when_discord_counted_more_the_reply_goes_into_the_original_response(
    world: DiscordWorld,
) -> None:
    """After a restart the count is lost: a refused follow-up falls back to an edit."""
    fake = world.fake
    i = await fake.user_install_slash("alltoken-help")
    await fake.wait_until(lambda: settled_with(world, i, "/alltoken-chat"), what="help")
    url = f"{fake.api_url}/webhooks/{fake.app_id}/{i.token}?wait=true"
    async with httpx.AsyncClient() as http:
        while len(i.followups) < 5:
            await http.post(url, json={"content": "used elsewhere"})
    session = world.adapter.sessions.get(str(i.id))
    destination = Destination(
        platform="discord",
        workspace="x",
        channel=str(i.channel_id),
        user=fake.alice["id"],
        extras=session.extras(),
    )
    conversation = DiscordConversation(world.adapter, destination, session=session)
    await conversation.say([Text(markdown="the late result")])
    assert (fake.original(i) or {})["content"] == "the late result"
    assert channel_calls(world) == []
    assert conversation.destination.extras["interaction_only"] == "1"


@given(
    st.lists(st.text(alphabet="ab \n", min_size=1, max_size=30), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=6),
)
def test_folding_keeps_every_chunk_within_the_slots(texts: list[str], slots: int) -> None:
    chunks = [Outgoing(content=t) for t in texts]
    folded = fold_chunks(chunks, slots)
    assert len(folded) == min(len(chunks), slots)
    if len(chunks) > slots:
        *kept, carrier = folded
        assert [c.content for c in kept] == texts[: len(kept)]
        assert carrier.file is not None
        rest = carrier.file[0].decode("utf-8")
        assert words(rest) == words(" ".join(texts[len(kept) :]))
    else:
        assert folded == chunks
