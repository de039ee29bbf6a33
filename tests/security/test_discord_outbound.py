"""Hostile text on Discord: never a live @everyone / @here, never a control character, never a
ping (every send, edit and follow-up allows no mentions), on every path a reply can take."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.conversation import STREAM_LIMIT, DiscordSink
from adapters.discord.render import button_label, render, render_markdown
from bot.backends.alltoken.family import alltoken_family
from bot.core.messages import Actions, Button, Failure, Fields, Image, Link, Notice, Part, Text
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.discord import LOADING, Call, DiscordWorld, FakeInteraction, discord_world

# Mass mentions in any case, and every character neutralise_controls must have removed or
# replaced (newline and tab are fine).
RAW_MASS_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE_PIECES = [
    "@everyone",
    "@here",
    "@EveryOne",
    "<@123>",
    "<@&1>",
    "<#123>",
    "<@!42>",
    "\x1b[31m",
    "\x1b]8;;http://evil.test\x07",
    "\x1b]0;title\x1b\\",
    "\x1b",
    "\x00",
    "\x07",
    "\r",
    "\x9b2J",
    "\u202e",
    "\u2066",
    "@",
    "everyone",
    "here",
    "**bold**",
    "`code`",
    "```",
    "[x](http://a)",
    "<",
    ">",
    "\n",
    " ",
    "-# ",
    "||spoiler||",
]
hostile = st.lists(st.sampled_from(HOSTILE_PIECES) | st.text(max_size=8), max_size=12).map("".join)


@st.composite
def hostile_parts(draw: st.DrawFn) -> list[Part]:
    h = lambda: draw(hostile)  # noqa: E731 - a fresh hostile string per field
    return [
        Text(markdown=h()),
        Notice(level="warning", text=h()),
        Failure(code=h(), message=h(), request_id=h() or None, hint=h() or None),
        Fields(title=h(), rows=[(h(), h()), (h(), h())]),
        Link(url="https://x.test/" + h(), label=h()),
        Image(path=Path("/tmp") / (h().replace("/", "") or "x"), alt=h()),
        Actions(buttons=[Button(action_id="a", label=h() or "b", value="v")]),
    ]


def embed_strings(embed: discord.Embed) -> Iterator[str]:
    data = embed.to_dict()
    yield str(data.get("title", ""))
    yield str(data.get("description", ""))
    for f in data.get("fields", []):
        yield str(f["name"])
        yield str(f["value"])


def assert_inert(text: str) -> None:
    assert not RAW_MASS_MENTION.search(text), repr(text)
    assert not CONTROL.search(text), repr(text)


@pytest.mark.slow(8)
@settings(max_examples=300, deadline=None)
@given(hostile_parts())
def test_rendered_messages_have_no_live_mass_mention_and_no_control(parts: list[Part]) -> None:
    for subset in (parts, parts[:2], parts[5:]):  # embeds spill into content past ten
        out = render(subset)
        assert_inert(out.content)
        for embed in out.embeds:
            for text in embed_strings(embed):
                assert_inert(text)
        for button in out.buttons:
            assert_inert(button_label(button))
    assert_inert(render_markdown(parts, subtext_notices=True))


@settings(max_examples=200, deadline=None)
@given(hostile)
def test_streamed_text_is_inert_and_fits_a_message(text: str) -> None:
    sent: list[str] = []

    class Recorder:
        async def post(self, out: Any) -> None:
            sent.append(out.content)

        async def edit_outgoing(self, ref: Any, out: Any) -> None:
            sent.append(out.content)

    sink = DiscordSink(Recorder())  # type: ignore[arg-type]
    # The stream splits below STREAM_LIMIT; the sink's text must still fit in 2,000.
    asyncio.run(sink.post((text * 200)[:STREAM_LIMIT]))
    assert_inert(sent[0])
    assert len(sent[0]) <= 2000


def test_mass_mentions_stay_readable_and_role_mentions_unchanged() -> None:
    out = render([Text(markdown="@everyone <@&1> <@123> hi @here")])
    assert out.content == "@\u200beveryone <@&1> <@123> hi @\u200bhere"
    link = render([Link(url="https://x.test/a b>@everyone", label="@here")]).content
    assert "(<https://x.test/a%20b%3E%40everyone>)" in link and "[@\u200bhere]" in link


# --- every request through the fake Discord --------------------------------------------------

HOSTILE_PROMPT = "@everyone <@&1> hello"
WEBHOOK = "/webhooks/{application_id}/{token}"
WEBHOOK_MESSAGE = "/webhooks/{application_id}/{token}/messages/{message_id}"
CALLBACK = "/interactions/{interaction_id}/{token}/callback"
CHANNEL_POST = "/channels/{channel_id}/messages"
CHANNEL_EDIT = "/channels/{channel_id}/messages/{message_id}"
THREADS = "/channels/{channel_id}/messages/{message_id}/threads"
# Callback types that carry a message (4: reply, 7: update the clicked message).
MESSAGE_CALLBACKS = {4, 7}


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        key = w.sim.issue_key(10.0)
        owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=w.fake.alice["id"])
        await w.bot.store.put_credential(owner, "alltoken", key)
        yield w


def text_of(message: dict[str, Any] | None) -> str:
    return "" if message is None else str(message["content"]) + json.dumps(message["embeds"])


def settled(w: DiscordWorld, i: FakeInteraction, needle: str) -> bool:
    return any(needle in text_of(m) and not int(m["flags"]) & LOADING for m in w.fake.replies(i))


def message_calls(calls: list[Call]) -> dict[str, list[dict[str, Any]]]:
    """The body of every request that sends or edits a message, by kind."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        body = c.json if isinstance(c.json, dict) else None
        if body is None or c.method not in ("POST", "PATCH"):
            continue
        if c.route == CALLBACK:
            if int(body.get("type", 0)) in MESSAGE_CALLBACKS:
                kinds.setdefault("interaction response", []).append(body["data"])
            continue  # a defer (5, 6) or a modal (9) carries no message
        kind = {
            ("POST", WEBHOOK): "webhook follow-up",
            ("PATCH", WEBHOOK_MESSAGE): "webhook edit",
            ("POST", CHANNEL_POST): "channel post",
            ("PATCH", CHANNEL_EDIT): "channel edit",
        }.get((c.method, c.route))
        if kind is not None:
            if c.files:
                kind += " with a file"
            kinds.setdefault(kind, []).append(body)
    return kinds


async def test_every_send_edit_and_follow_up_allows_no_mentions(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    fake = world.fake
    # A slash command: deferred, streamed into the original response, usage line.
    chat = await fake.slash("alltoken-chat", prompt=HOSTILE_PROMPT)
    await fake.wait_until(lambda: settled(world, chat, "completion"), 10, what="the chat answer")
    # An image: progress message, then a follow-up with the file.
    image = await fake.slash("alltoken-image", prompt=HOSTILE_PROMPT)
    await fake.wait_until(lambda: any(c.files for c in fake.calls), 10, what="the image upload")
    await fake.wait_until(lambda: settled(world, image, "Image ready"), 10, what="image done")
    # An ephemeral interaction response.
    status = await fake.slash("alltoken-key", action="status")
    await fake.wait_until(lambda: status.callbacks, what="the key status")
    # A job outliving its 15-minute token posts and edits through the channel.
    sim.config.video_seconds = 0.5
    video = await fake.slash("alltoken-video", prompt=HOSTILE_PROMPT)
    await fake.wait_until(lambda: "Video" in text_of(fake.original(video)), what="progress")
    clock = world.adapter.clock
    world.adapter.clock = lambda: time.time() + 16 * 60
    fake.expire(video)
    await fake.wait_until(lambda: "Video ready" in text_of(fake.original(video)), 10, what="done")
    world.adapter.clock = clock
    # A message trigger answered in a new thread, and a DM answered with a reply.
    trigger = await fake.user_message(f"alltoken chat {HOSTILE_PROMPT}")
    thread_id = int(trigger["id"])
    await fake.wait_until(
        lambda: any("completion" in m["content"] for m in fake.messages_in(thread_id)),
        10,
        what="the thread answer",
    )
    dm = await fake.user_message(f"{HOSTILE_PROMPT} not a command", dm=True)
    await fake.wait_until(
        lambda: any(
            "isn't a tokenbot command" in m["content"]
            for m in fake.messages_in(int(dm["channel_id"]))
        ),
        what="the DM hint",
    )

    kinds = message_calls(fake.calls)
    expected = {
        "interaction response",
        "webhook edit",
        "webhook follow-up with a file",
        "channel post",
        "channel edit",
    }
    assert expected <= set(kinds), sorted(kinds)
    assert fake.calls_to("POST", THREADS)
    for kind, bodies in kinds.items():
        for body in bodies:
            assert body.get("allowed_mentions", {}).get("parse") == [], (kind, body)
    # What people read: the prompt echoed, its @everyone inert, the role mention as typed.
    bot_id = fake.bot_user["id"]
    shown = [m for m in fake.messages.values() if m["author"]["id"] == bot_id]
    echoed = [m for m in shown if "<@&1> hello" in m["content"]]
    assert echoed and all("@\u200beveryone <@&1> hello" in m["content"] for m in echoed)
    for message in shown:
        assert not RAW_MASS_MENTION.search(text_of(message)), message["content"]
