"""Hostile lines through the real Slack and Discord adapters, checked on the fake platforms' wire.

The core fuzzing (test_fuzz_pipeline.py) checks every reply through the renderers; this checks
what actually leaves the process: every Web API call the fake Slack received and every REST
request the fake Discord received, for slash commands, mentions, DMs and typed triggers of all
three families. Nothing may carry a live mention, a typed key, or (Discord) lack
`allowed_mentions` with nothing allowed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.key_shapes import find_keys
from bot.core.outbound_text import scrub_surrogates
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim
from bot.store import Owner
from tests import leaks
from tests.fakes.discord import discord_world, typed_slash
from tests.fakes.slack import TEAM, SlackHarness
from tests.faults.support import OC_CONFIG, OM_CONFIG
from tests.security.hostile import hostile_line, leaked, whole_bot_settings

EXAMPLES = 5
LINES = 25
_SETTINGS = whole_bot_settings(EXAMPLES)
# Lines as a person sends them to a platform: a slash command, a DM or a mention.
_LINES = st.lists(
    st.tuples(hostile_line(), st.sampled_from(["slash", "dm", "mention"])),
    min_size=LINES,
    max_size=LINES,
)
# The bot's own Slack date markup is the only entity it may send; mentions of users only as
# an explicit part (none of today's replies has one).
_SLACK_ENTITY = re.compile(r"<(?!!date\^)[!@#]")
_MASS = re.compile(r"@(everyone|here)")


@pytest.fixture
async def other_sims() -> AsyncIterator[tuple[OpenMarlinSim, OpenClawTokenSim]]:
    om, oc = OpenMarlinSim(OM_CONFIG.model_copy()), OpenClawTokenSim(OC_CONFIG.model_copy())
    await om.start()
    await oc.start()
    try:
        yield om, oc
    finally:
        await oc.stop()
        await om.stop()


def _typed_keys(lines: list[tuple[str, str]]) -> set[str]:
    keys = {k for prefix, rest in lines for k in find_keys(f"{prefix} {rest}")}
    for key in keys:
        leaks.secret(key)
    return keys


# Image alt text and file titles are plain text: Slack never parses entities in them.
_PLAIN_FIELDS = frozenset({"alt_txt", "alt_text", "filename", "title"})


def _slack_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in _PLAIN_FIELDS for s in _slack_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _slack_strings(v)]
    return []


@pytest.fixture
async def slack(
    tmp_path: Path, sim: AllTokenSim, other_sims: tuple[OpenMarlinSim, OpenClawTokenSim]
) -> AsyncIterator[SlackHarness]:
    om, oc = other_sims
    h = await SlackHarness.start(
        tmp_path / "slack",
        sim.base_url,
        openmarlin_server_url=om.base_url,
        openclaw_token_api_base=oc.base_url,
    )
    owner = Owner(platform="slack", workspace=TEAM, user="UFUZZ")
    await h.bot.store.put_credential(owner, "alltoken", sim.issue_key(100.0))
    await h.bot.store.put_credential(owner, "openmarlin", om.issue_key(5))
    await h.bot.store.put_credential(owner, "openclaw_token", DEMO_MGMT_KEY)
    try:
        yield h
    finally:
        await h.aclose()


@pytest.mark.slow(8)
@_SETTINGS
@given(lines=_LINES)
async def test_hostile_lines_through_the_slack_adapter(
    slack: SlackHarness, lines: list[tuple[tuple[str, str], str]]
) -> None:
    fake = slack.fake
    start = len(fake.calls)
    responses = len(fake.responses)
    keys = _typed_keys([line for line, _ in lines])
    for (prefix, raw), entry in lines:
        # Slack delivers valid UTF-8 only: a lone surrogate cannot arrive from it.
        rest = scrub_surrogates(raw)
        text = f"{prefix} {rest}".strip()
        if entry == "slash" and prefix.startswith("/"):
            name, _, sub = prefix.partition(" ")
            delivery = await slack.command(name, f"{sub} {rest}".strip(), user="UFUZZ")
        elif entry == "dm":
            event = fake.user_message("DFUZZ", "UFUZZ", text)
            delivery = await slack.event(event)
        else:
            event = fake.user_message("CFUZZ", "UFUZZ", f"<@{_bot_user()}> {text}")
            event.pop("channel_type", None)
            delivery = await slack.event({**event, "type": "app_mention"})
        assert delivery.status == 200, (text, delivery)
    await slack.settle(60)
    sent = [c.args for c in fake.calls[start:]] + [r.payload for r in fake.responses[responses:]]
    for call_args in sent:
        for s in _slack_strings(call_args):
            assert not _SLACK_ENTITY.search(s), (s, call_args)
    assert len(sent) >= LINES, sent  # a scan of nothing proves nothing
    blob = json.dumps(sent, default=str)
    assert not leaked(keys, [blob])


def _bot_user() -> str:
    from tests.fakes.slack import BOT_USER

    return BOT_USER


@pytest.fixture
async def discord(
    tmp_path: Path, sim: AllTokenSim, other_sims: tuple[OpenMarlinSim, OpenClawTokenSim]
) -> AsyncIterator[Any]:
    om, oc = other_sims
    async with discord_world(
        sim,
        tmp_path / "discord",
        openmarlin_server_url=om.base_url,
        openclaw_token_api_base=oc.base_url,
    ) as world:
        fake = world.fake
        owner = Owner(platform="discord", workspace=str(fake.guild_id), user=fake.alice["id"])
        dm_owner = owner.model_copy(update={"workspace": "dm"})
        for who in (owner, dm_owner):
            await world.bot.store.put_credential(who, "alltoken", sim.issue_key(100.0))
            await world.bot.store.put_credential(who, "openmarlin", om.issue_key(5))
            await world.bot.store.put_credential(who, "openclaw_token", DEMO_MGMT_KEY)
        yield world


async def _quiet(fake: Any, settle_s: float = 1.5, timeout: float = 60) -> None:
    """Wait until the fake has received no request for `settle_s` (replies arrive async)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count, still_since = len(fake.calls), loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        if len(fake.calls) != count:
            count, still_since = len(fake.calls), loop.time()
        elif loop.time() - still_since >= settle_s:
            return


_TEXT_COMMANDS = {"/openmarlin": "openmarlin", "/openclaw-token": "openclaw-token"}
_PROMPT_COMMANDS = {
    "/alltoken-chat": ("alltoken-chat", "prompt"),
    "/alltoken-image": ("alltoken-image", "prompt"),
    "/alltoken-video": ("alltoken-video", "prompt"),
    "/alltoken-search": ("alltoken-search", "query"),
}


@pytest.mark.slow(14)
@_SETTINGS
@given(lines=_LINES)
async def test_hostile_lines_through_the_discord_adapter(
    discord: Any, lines: list[tuple[tuple[str, str], str]]
) -> None:
    fake = discord.fake
    start = len(fake.calls)
    keys = _typed_keys([line for line, _ in lines])
    for (prefix, raw), entry in lines:
        rest = scrub_surrogates(raw)  # Discord's gateway sends valid UTF-8 only
        text = f"{prefix} {rest}".strip()
        name, _, sub = prefix.partition(" ")
        interaction = None
        typed = typed_slash(discord.bot.specs, f"{prefix} {rest}")
        if entry == "slash" and name in _TEXT_COMMANDS and typed is not None:
            # Subcommands with typed options, as the Discord tree has them (no free text).
            options = {k: v[:6000] for k, v in typed.options.items()}
            interaction = await fake.slash(typed.name, subcommand=typed.subcommand, **options)
        elif entry == "slash" and name in _PROMPT_COMMANDS and (f"{sub} {rest}".strip()):
            command, option = _PROMPT_COMMANDS[name]
            interaction = await fake.slash(command, **{option: f"{sub} {rest}".strip()[:6000]})
        elif entry == "dm":
            await fake.user_message(text.lstrip("/") or "hi", dm=True)
        else:
            await fake.user_message(text.lstrip("/") or "hi", mention_bot=True)
        if interaction is not None:
            # Every interaction is answered (deferred or replied) before the next line.
            await fake.wait_until(lambda i=interaction: i.callbacks, 15, what=text)
    assert await discord.bot.jobs.wait_idle(60)
    await _quiet(fake)
    sent = fake.calls[start:]
    replies = [c for c in sent if c.method in ("POST", "PATCH") and c.json is not None]
    assert len(replies) >= LINES // 2, [c.route for c in sent]  # a scan of nothing proves nothing
    for call in sent:
        if call.method not in ("POST", "PATCH") or call.json is None:
            continue
        body = call.json if isinstance(call.json, dict) else {}
        payload = body.get("data", body) if isinstance(body.get("data"), dict) else body
        if "content" in payload or "embeds" in payload:
            mentions = payload.get("allowed_mentions")
            assert mentions is not None and mentions.get("parse") == [], (call.route, payload)
        assert not _MASS.search(call.text()), (call.route, call.text())
    assert not leaked(keys, [c.text() for c in sent])
