"""Slash commands end to end: real discord.py against tests/fakes/discord.py, the real simulator."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.service import AllTokenService
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.discord import EPHEMERAL, LOADING, DiscordWorld, FakeInteraction, discord_world

WEBHOOK_MESSAGE = "/webhooks/{application_id}/{token}/messages/{message_id}"
WEBHOOK = "/webhooks/{application_id}/{token}"
CALLBACK = "/interactions/{interaction_id}/{token}/callback"


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    """Discord with the AllToken family only (other families are tested via the tree)."""
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        await give_key(w, w.fake.alice)
        yield w


async def give_key(w: DiscordWorld, user: dict[str, Any]) -> str:
    key = w.sim.issue_key(10.0)
    owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=user["id"])
    await w.bot.store.put_credential(owner, "alltoken", key)
    return key


def settled(w: DiscordWorld, i: FakeInteraction, needle: str) -> dict[str, Any] | None:
    """The original response once it contains `needle` and is no longer loading."""
    message = w.fake.original(i)
    if message is None or int(message["flags"]) & LOADING:
        return None
    text = message["content"] + json.dumps(message["embeds"])
    return message if needle in text else None


async def reply_with(w: DiscordWorld, i: FakeInteraction, needle: str) -> dict[str, Any]:
    """The first settled reply (original or follow-up) containing `needle`."""

    def find() -> dict[str, Any] | None:
        for m in w.fake.replies(i):
            text = m["content"] + json.dumps(m["embeds"])
            if not int(m["flags"]) & LOADING and needle in text:
                return m
        return None

    return await w.fake.wait_until(find, what=repr(needle))


async def answer(w: DiscordWorld, i: FakeInteraction, needle: str, timeout: float = 8.0) -> dict:
    return await w.fake.wait_until(lambda: settled(w, i, needle), timeout, what=repr(needle))


def no_pings(w: DiscordWorld) -> bool:
    """Every message the bot sent or edited allowed no mentions."""
    bodies = [
        c.json
        for c in w.fake.calls
        if c.method in ("POST", "PATCH") and isinstance(c.json, dict) and "content" in c.json
    ]
    return bool(bodies) and all(b.get("allowed_mentions", {}).get("parse") == [] for b in bodies)


async def test_help_defers_with_thinking_then_replaces_it(world: DiscordWorld) -> None:
    i = await world.fake.slash("alltoken-help")
    message = await answer(world, i, "/alltoken-chat")
    assert i.response_type == 5  # deferred with "thinking…"
    assert i.callback_at is not None and i.callback_at - i.dispatched_at < 1.0
    assert "**tokenbot**" in message["content"]
    assert no_pings(world)


async def test_chat_streams_by_editing_at_most_once_a_second(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    sim.config.tokens_per_second = 400  # ~1.5 s of streaming
    i = await world.fake.slash(
        "alltoken-chat", prompt="[[tokens=600]] hello @everyone", model="claude-haiku-4-5"
    )
    await world.fake.wait_until(
        lambda: any("completion" in m["content"] for m in world.fake.replies(i)),
        15,
        what="the usage line",
    )
    replies = world.fake.replies(i)
    assert len(replies) >= 2  # ~3,500 characters overflow into follow-ups
    assert all(len(m["content"]) <= 2000 for m in replies)
    assert all(m["content"].count("```") % 2 == 0 for m in replies)  # fences stay balanced
    assert "`claude-haiku-4-5`" in replies[-1]["content"]
    assert replies[-1]["content"].splitlines()[-1].startswith("-# ")  # small usage line
    # Edits of any one message are at least ~1 s apart.
    edits: dict[str, list[float]] = {}
    for c in world.fake.calls_to("PATCH", WEBHOOK_MESSAGE):
        edits.setdefault(c.params["message_id"], []).append(c.at)
    for times in edits.values():
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))
    assert no_pings(world)


async def test_autocomplete_answers_from_the_cache_without_the_network(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    before = sum(sim.stats.requests.values())
    i = await world.fake.autocomplete("alltoken-chat", "model", model="claude", prompt="x")
    await world.fake.wait_until(lambda: i.callbacks, what="choices")
    assert i.response_type == 8
    choices = [c["value"] for c in i.callbacks[0]["data"]["choices"]]
    assert choices and all("claude" in c for c in choices)
    # Once the live list is cached, autocomplete offers it.
    key = await give_key(world, world.fake.bob)
    await world.bot.services.get(AllTokenService).list_models(key, "video")
    after_cache = sum(sim.stats.requests.values())
    v = await world.fake.autocomplete("alltoken-video", "model", model="", prompt="x")
    await world.fake.wait_until(lambda: v.callbacks, what="video choices")
    live = [m.id for m in world.bot.services.get(AllTokenService).cached_models("video") or []]
    assert [c["value"] for c in v.callbacks[0]["data"]["choices"]] == sorted(live)[:25] or set(
        c["value"] for c in v.callbacks[0]["data"]["choices"]
    ) <= set(live)
    assert sum(sim.stats.requests.values()) == after_cache  # autocomplete never called AllToken
    assert after_cache - before == 1


async def test_search_models_and_cost(world: DiscordWorld) -> None:
    s = await world.fake.slash("alltoken-search", query="tide tables", model="qwen3.6-flash")
    await answer(world, s, "`qwen3.6-flash`")
    m = await world.fake.slash("alltoken-models", type="image", filter="wan")
    models = await answer(world, m, "wan2.7-image")
    assert "gpt-image-2" not in models["content"]
    c = await world.fake.slash("alltoken-cost")  # the search above, in this channel
    cost = await answer(world, c, "AllToken cost")
    fields = {f["name"]: f["value"] for f in cost["embeds"][0]["fields"]}
    assert fields["model"] == "qwen3.6-flash"
    e = await world.fake.slash(
        "alltoken-cost", model="gpt-5.4-mini", prompt_tokens=1000, completion_tokens=500
    )
    explicit = await answer(world, e, "total cost")
    assert {f["name"] for f in explicit["embeds"][0]["fields"]} >= {"prompt tokens", "total cost"}


async def test_bad_options_are_rejected_privately_by_the_router(world: DiscordWorld) -> None:
    i = await world.fake.slash(
        "alltoken-video", prompt="waves", model="seedance-1.5-pro", duration=30
    )
    private = await world.fake.wait_until(
        lambda: [m for m in world.fake.replies(i) if int(m["flags"]) & EPHEMERAL],
        what="an ephemeral usage error",
    )
    embed = private[0]["embeds"][0]
    assert "duration" in embed["title"] and "/alltoken-video" in json.dumps(embed)
    # The public "thinking…" message was settled, then removed: nothing public remains.
    await world.fake.wait_until(lambda: i.original_id in world.fake.deleted, what="the delete")
    assert [m for m in world.fake.replies(i) if not int(m["flags"]) & EPHEMERAL] == []


async def test_missing_key_is_answered_privately(world: DiscordWorld) -> None:
    i = await world.fake.slash("alltoken-chat", prompt="hi", user=world.fake.bob)
    private = await world.fake.wait_until(
        lambda: [m for m in world.fake.replies(i) if int(m["flags"]) & EPHEMERAL],
        what="the missing-key notice",
    )
    assert "no AllToken key" in private[0]["content"]


async def test_image_is_uploaded_as_a_valid_png(world: DiscordWorld, sim: AllTokenSim) -> None:
    i = await world.fake.slash(
        "alltoken-image", prompt="a lighthouse", size="1024x1024", quality="low"
    )
    await answer(world, i, "Image ready")
    uploads = [f for c in world.fake.calls_to("POST", WEBHOOK) for f in c.files]
    assert len(uploads) == 1
    png = uploads[0].data
    assert_valid_png(png)
    assert uploads[0].filename.endswith(".png")
    assert sim.stats.image_submissions == 1


async def test_typed_options_reach_the_backend_as_values_not_re_parsed_text(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    """Bug 3: a prompt that reads like a flag is the prompt; it was cut at `--size=` before."""
    sent: list[dict[str, Any]] = []

    async def record(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.startswith("/v1/images/generations"):
            sent.append(json.loads(request.content))

    world.bot.http.event_hooks["request"].append(record)
    i = await world.fake.slash(
        "alltoken-image", prompt="a poster reading --size=huge", quality="low"
    )
    await answer(world, i, "Image ready")
    (body,) = sent
    assert body["prompt"] == "a poster reading --size=huge"
    assert body["size"] != "huge" and body["quality"] == "low"
    assert sim.stats.image_submissions == 1


async def test_image_over_the_upload_limit_is_linked(world: DiscordWorld, sim: AllTokenSim) -> None:
    sim.config.r2_copy = True  # the link is the R2 copy's (the simulator's switch, off by default)
    i = await world.fake.slash("alltoken-image", prompt="a lighthouse", attachment_size_limit=50)
    await answer(world, i, "Image ready")
    posted = " ".join(m["content"] for m in world.fake.replies(i))
    assert "more than the 0.0 MB Discord accepts here" in posted
    assert "Open the image" in posted and "/_r2/" in posted
    assert not [f for c in world.fake.calls for f in c.files]  # nothing was uploaded


async def test_video_shows_cancel_and_cancelling_stops_it(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    sim.config.video_seconds = 10
    i = await world.fake.slash("alltoken-video", prompt="waves on a pier", duration=5)
    progress = await answer(world, i, "Video")
    (row,) = progress["components"]
    (button,) = row["components"]
    assert button["label"] == "Cancel" and button["custom_id"].startswith(
        "tb:alltoken.video.cancel:"
    )
    # Click once the task exists at AllToken (a click before that cancels only locally).
    await world.fake.wait_until(
        lambda: sim.stats.requests_to("GET", "/v1/videos/generations/{id}"), what="a poll"
    )
    click = await world.fake.click(button["custom_id"], int(progress["id"]), user=world.fake.alice)
    await world.fake.wait_until(
        lambda: "cancelled" in (world.fake.original(i) or {}).get("content", ""), what="cancelled"
    )
    assert click.response_type == 6  # deferred update, no "thinking…"
    assert sim.stats.video_cancellations == 1
    assert (world.fake.original(i) or {}).get("components") == []  # the button is gone


async def test_someone_else_cannot_cancel(world: DiscordWorld, sim: AllTokenSim) -> None:
    sim.config.video_seconds = 10
    i = await world.fake.slash("alltoken-video", prompt="waves")
    progress = await answer(world, i, "Video")
    cid = progress["components"][0]["components"][0]["custom_id"]
    click = await world.fake.click(cid, int(progress["id"]), user=world.fake.bob)
    denied = await world.fake.wait_until(
        lambda: [world.fake.messages[f] for f in click.followups], what="a denial"
    )
    assert int(denied[0]["flags"]) & EPHEMERAL and "Only the person" in denied[0]["content"]
    assert sim.stats.video_cancellations == 0


async def test_video_link_carries_a_relative_expiry(world: DiscordWorld) -> None:
    i = await world.fake.slash("alltoken-video", prompt="waves", ratio="9:16", resolution="720p")
    done = await answer(world, i, "Video ready")
    assert "<t:" in done["content"] and ":R>" in done["content"]
    assert "Download the video" in done["content"]
    assert done["components"] == []


async def test_key_modal_is_the_first_response_and_stores_the_key_encrypted(
    world: DiscordWorld, sim: AllTokenSim, tmp_path: Path
) -> None:
    i = await world.fake.slash("alltoken-key", user=world.fake.bob)
    await world.fake.wait_until(lambda: i.callbacks, what="the modal")
    assert i.response_type == 9  # a modal, not a defer
    modal = i.callbacks[0]["data"]
    label = modal["components"][0]
    assert label["type"] == 18 and label["component"]["type"] == 4
    field_id = label["component"]["custom_id"]
    secret = sim.issue_key(5.0)
    submit = await world.fake.submit_modal(
        modal["custom_id"], {field_id: secret}, user=world.fake.bob
    )
    stored = await reply_with(world, submit, "Stored your AllToken key")
    assert int(stored["flags"]) & EPHEMERAL
    owner = Owner(platform="discord", workspace=str(world.fake.guild_id), user=world.fake.bob["id"])
    assert await world.bot.store.get_credential(owner, "alltoken") == secret
    assert secret.encode() not in (tmp_path / "data" / "tokenbot.db").read_bytes()
    # The key never travelled back to Discord.
    assert not any(secret in c.text() for c in world.fake.calls)


async def test_key_status_is_ephemeral_without_a_defer(world: DiscordWorld) -> None:
    i = await world.fake.slash("alltoken-key", action="status")
    await world.fake.wait_until(lambda: i.callbacks, what="the status")
    assert i.response_type == 4
    assert int(i.callbacks[0]["data"]["flags"]) & EPHEMERAL
    assert "is stored (encrypted)" in i.callbacks[0]["data"]["content"]


async def test_a_429_on_an_edit_is_retried_after_retry_after(world: DiscordWorld) -> None:
    world.fake.fail_next("PATCH", WEBHOOK_MESSAGE, 429, retry_after=0.4)
    i = await world.fake.slash("alltoken-help")
    await answer(world, i, "/alltoken-chat")
    first, second = world.fake.calls_to("PATCH", WEBHOOK_MESSAGE)[:2]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.38
    assert len(world.fake.calls_to("POST", CALLBACK)) == 1


def assert_valid_png(data: bytes) -> None:
    """Signature, then every chunk's length and CRC, ending with IEND."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
