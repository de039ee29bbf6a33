"""Unit tests of the Discord adapter's pure parts: renderer, autocomplete filter, sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import discord
import pytest

from adapters.discord.commands import filter_choices
from adapters.discord.conversation import DiscordConversation
from adapters.discord.render import (
    FAILURE_COLOUR,
    custom_id,
    discord_timestamp,
    parse_custom_id,
    render,
    render_markdown,
)
from adapters.discord.session import EXPIRY_MARGIN_S, InteractionSession
from adapters.discord.views import build_view
from bot.core.messages import Actions, Button, Failure, Fields, Image, Link, Notice, Text

# --- renderer ---------------------------------------------------------------------------------


def test_text_and_notices_become_content() -> None:
    out = render([Text(markdown="**hi** there"), Notice(level="success", text="done")])
    assert out.content == "**hi** there\n✅ done"
    assert out.embeds == [] and out.buttons == []


def test_fields_become_embed_fields() -> None:
    out = render([Fields(title="AllToken cost", rows=[("model", "gpt-5.4-mini"), ("total", "$1")])])
    (embed,) = out.embeds
    assert embed.title == "AllToken cost"
    assert [(f.name, f.value) for f in embed.fields] == [("model", "gpt-5.4-mini"), ("total", "$1")]
    assert out.content == ""


def test_many_rows_span_embeds_of_25_fields() -> None:
    rows = [(f"r{i}", str(i)) for i in range(60)]
    out = render([Fields(title="big", rows=rows)])
    assert [len(e.fields) for e in out.embeds] == [25, 25, 10]
    assert out.embeds[0].title == "big" and out.embeds[1].title is None


def test_failure_is_a_red_embed_with_code_request_id_and_hint() -> None:
    out = render(
        [
            Failure(
                code="insufficient_balance",
                message="Balance too low.",
                request_id="req_123",
                hint="Top up.",
            )
        ]
    )
    (embed,) = out.embeds
    assert embed.colour is not None and embed.colour.value == FAILURE_COLOUR
    assert "Balance too low." in (embed.title or "")
    fields = {f.name: f.value for f in embed.fields}
    assert fields == {
        "Code": "`insufficient_balance`",
        "Request id": "`req_123`",
        "Next step": "Top up.",
    }


def test_link_expiry_is_a_discord_relative_timestamp() -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = render([Link(url="https://x.test/v.mp4?sig=1", label="Download", expires_at=expires)])
    assert f"<t:{int(expires.timestamp())}:R>" in out.content
    assert "[Download](<https://x.test/v.mp4?sig=1>)" in out.content
    assert discord_timestamp(expires) == f"<t:{int(expires.timestamp())}:R>"


def test_actions_become_buttons_and_image_a_caption() -> None:
    button = Button(action_id="alltoken.video.cancel", label="Cancel", value="job1", style="danger")
    out = render([Image(path=Path("/tmp/x.png"), alt="a cat"), Actions(buttons=[button])])
    assert out.buttons == [button]
    assert out.content == "🖼️ a cat"


def test_markdown_trailer_uses_subtext_for_single_line_notices() -> None:
    trailer = render_markdown([Notice(text="`m` · 3 tokens")], subtext_notices=True)
    assert trailer == "-# ℹ️ `m` · 3 tokens"
    failure = render_markdown([Failure(code="x", message="y", request_id="r", hint="h")])
    assert failure == "❌ **x**: y (request `r`)\n→ h"


def test_custom_id_round_trip_and_limits() -> None:
    cid = custom_id("alltoken.video.cancel", "abc123")
    assert cid == "tb:alltoken.video.cancel:abc123"
    assert parse_custom_id(cid) == ("alltoken.video.cancel", "abc123")
    assert parse_custom_id("someone-elses-button") is None
    with pytest.raises(ValueError):
        custom_id("a", "x" * 100)
    with pytest.raises(ValueError):
        custom_id("a:b", "x")


async def test_view_buttons_route_by_custom_id_and_are_not_kept() -> None:
    view = build_view([Button(action_id="a.b", label="Go", value="1", style="primary")])
    assert view is not None and view.is_finished()  # stopped: not stored by discord.py
    (item,) = view.children
    assert isinstance(item, discord.ui.Button)
    assert item.custom_id == "tb:a.b:1" and item.style is discord.ButtonStyle.primary
    assert build_view([]) is None


def test_long_content_splits_at_fences_with_embeds_on_the_first_message() -> None:
    code = "```python\n" + "\n".join(f"x_{i} = {i}" for i in range(300)) + "\n```"
    rendered = render([Text(markdown="intro\n\n" + code), Failure(code="c", message="m")])
    first, rest = DiscordConversation._split(rendered)
    chunks = [first.content] + [r.content for r in rest]
    assert len(chunks) > 1 and all(len(c) <= 2000 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)  # every chunk has balanced fences
    assert first.embeds and not any(r.embeds for r in rest)


# --- autocomplete -------------------------------------------------------------------------


def test_autocomplete_filter_caps_at_25_and_prefers_prefixes() -> None:
    names = [f"model-{i}" for i in range(40)] + ["claude-x", "my-claude"]
    assert len(filter_choices(names, "")) == 25
    hits = filter_choices(names, "CLAUDE")
    assert [c.value for c in hits] == ["claude-x", "my-claude"]


# --- sessions -----------------------------------------------------------------------------------


def test_session_round_trips_through_destination_extras() -> None:
    session = InteractionSession(
        interaction_id="1",
        application_id=2,
        token="tok",
        expires_at=1000.0,
        original_id="9",
        state="used",
        upload_limit=123,
    )
    restored = InteractionSession.from_extras(session.extras())
    assert restored is not None
    assert (restored.token, restored.expires_at, restored.original_id, restored.upload_limit) == (
        "tok",
        1000.0,
        "9",
        123,
    )
    assert restored.usable(1000.0 - EXPIRY_MARGIN_S - 1)
    assert not restored.usable(1000.0 - EXPIRY_MARGIN_S + 1)
    assert InteractionSession.from_extras({"interaction_id": "1"}) is None
