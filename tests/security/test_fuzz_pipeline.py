"""Fuzz every entry point of the core with what a hostile user types, through every renderer.

Lines go through `TokenBot` (router → handler → services → the three simulators → jobs), as
slash commands, channel messages, DMs and thread replies on each platform, plus button clicks and
form submissions with hostile values. Every reply is rendered by the Slack, Discord and console
renderers. Asserted for every line: nothing escapes, no unexpected error (no `internal_error`
reply, no logged traceback), a command always gets a reply, no reply can ping or steer a
terminal, and no typed key appears in any reply, rendering, log or the database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.app import TokenBot
from bot.core.messages import Failure, Inbound
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY
from bot.store import Owner
from tests import leaks
from tests.fakes.conversation import RecordingConversation
from tests.faults.support import Rig, rig
from tests.security.hostile import (
    KEYS,
    hostile_line,
    leaked,
    rendered_problems,
    whole_bot_settings,
)

# 200 examples of 30 lines: 6,000 lines through the core per run, plus clicks and forms.
BATCHES = int(os.environ.get("TOKENBOT_FUZZ_BATCHES", "200"))
LINES = 30
_ENTRY = ["slash", "direct", "channel", "thread"]
_PLATFORMS = ["slack", "discord", "console"]


@pytest.fixture
async def fuzz_rig(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[Rig]:
    async with rig(tmp_path / "data", sim) as r:
        yield r


def _inbound(platform: str, entry: str, user: str, prefix: str, rest: str) -> Inbound:
    command = None
    text = f"{prefix} {rest}".strip()
    if entry == "slash" and prefix.startswith("/"):
        name, _, sub = prefix.partition(" ")
        command, text = name, f"{sub} {rest}".strip()
    return Inbound(
        platform=platform,
        workspace="w1",
        channel="D1" if entry == "direct" else "C1",
        thread="T1" if entry == "thread" else None,
        user=user,
        text=text,
        is_direct=entry == "direct",
        command=command,
        continues_thread=entry == "thread",
    )


class Recorder:
    """Everything the bot did since the last look, over every conversation of the rig."""

    def __init__(self, bot: TokenBot) -> None:
        self.convs: dict[str, RecordingConversation] = bot.test_conversations  # type: ignore[attr-defined]
        self.seen: dict[str, int] = {}

    def conversation(self, inbound: Inbound) -> RecordingConversation:
        dest = inbound.destination()
        return self.convs.setdefault(dest.conversation_key, RecordingConversation(dest))

    def new_events(self) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = []
        for key, conv in self.convs.items():
            start = self.seen.get(key, 0)
            out.extend((e.kind, e) for e in conv.events[start:])
            self.seen[key] = len(conv.events)
        return out


def _check_events(events: list[tuple[str, object]], keys: set[str], line: str) -> None:
    for _, event in events:
        parts = event.parts  # type: ignore[attr-defined]
        streamed = event.text if event.kind == "stream" else ""  # type: ignore[attr-defined]
        problems = rendered_problems(parts, streamed)
        assert not problems, (line, problems)
        unexpected = [
            p
            for p in parts
            if isinstance(p, Failure)
            and p.code == "internal_error"
            and "Something went wrong" in p.message
        ]
        assert not unexpected, (line, unexpected)
        dumped = json.dumps([p.model_dump(mode="json") for p in parts]) + event.text  # type: ignore[attr-defined]
        assert not leaked(keys, [dumped]), (line, dumped)


def _tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR
        and r.exc_info
        and (r.name.startswith("bot") or r.name.startswith("adapters"))
    ]


_SECRET_VALUES = st.one_of(
    KEYS,
    st.text("abcdefghijklmnopqrstuvwxyz0123456789!", min_size=12, max_size=30).map("Pw-".__add__),
    st.just("Demo1234!"),
)
_users = itertools.count()
# Users given keys of every family, per bot (a new user every 20 examples keeps balances alive).
_provisioned: dict[int, set[str]] = {}


@pytest.mark.slow(40)
@whole_bot_settings(BATCHES)
@given(
    lines=st.lists(
        st.tuples(hostile_line(), st.sampled_from(_ENTRY), st.sampled_from(_PLATFORMS)),
        min_size=LINES,
        max_size=LINES,
    ),
)
async def test_hostile_lines_through_every_entry_point(
    fuzz_rig: Rig, caplog: pytest.LogCaptureFixture, lines: list
) -> None:
    bot = fuzz_rig.bot
    recorder = Recorder(bot)
    recorder.new_events()
    keys: set[str] = set()
    caplog.clear()
    user = f"fuzz{next(_users) // 20}"
    provisioned = _provisioned.setdefault(id(bot), set())
    for platform in [] if user in provisioned else _PLATFORMS:
        provisioned.add(user)
        # Every family has a key for this user, so lines reach the backends.
        owner = Inbound(
            platform=platform,
            workspace="w1",
            channel="C1",
            user=user,
            text="",
        )
        who = Owner.of(owner)
        await bot.store.put_credential(who, "alltoken", fuzz_rig.alltoken.issue_key(50.0))
        await bot.store.put_credential(who, "openmarlin", fuzz_rig.openmarlin.issue_key(5))
        await bot.store.put_credential(who, "openclaw_token", DEMO_MGMT_KEY)
    for (prefix, rest), entry, platform in lines:
        line = f"{entry}/{platform}: {prefix} {rest}"
        typed = {k for k in _key_tokens(f"{prefix} {rest}")}
        for k in typed:
            leaks.secret(k)
        keys |= typed
        inbound = _inbound(platform, entry, user, prefix, rest)
        conv = recorder.conversation(inbound)
        before = len(conv.forms)
        handled = await bot.handle(inbound, conv)
        events = recorder.new_events()
        _check_events(events, keys, line)
        if inbound.command is not None:
            # A slash command is never met with silence (other text may be conversation: the
            # adapters answer "not a command" where the bot was addressed).
            assert handled, line
        if handled and not (events or len(conv.forms) > before or bot.jobs.active):
            # Some answers come from a background task (a `--watch`): give them a moment.
            for _ in range(50):
                await asyncio.sleep(0.1)
                events = recorder.new_events()
                if events:
                    break
            _check_events(events, keys, line)
            assert events, line
    assert await bot.jobs.wait_idle(60)
    _check_events(recorder.new_events(), keys, "job deliveries")
    assert not _tracebacks(caplog.records), _tracebacks(caplog.records)
    logs = [r.getMessage() for r in caplog.records]
    assert not leaked(keys, logs)


def _key_tokens(text: str) -> set[str]:
    from bot.core.key_shapes import find_keys

    return set(find_keys(text))


@whole_bot_settings(10)
@given(
    clicks=st.lists(
        st.tuples(st.text(max_size=40), st.sampled_from(_PLATFORMS)), min_size=40, max_size=40
    ),
    forms=st.lists(
        st.fixed_dictionaries(
            {},
            # Secret fields get secret-looking values: the suite-end scan treats whatever is
            # typed into them as a secret, so an ordinary word there would be a false alarm.
            optional={
                "key": _SECRET_VALUES,
                "password": _SECRET_VALUES,
                "confirm": _SECRET_VALUES,
                "email": st.one_of(st.text(max_size=40), KEYS, st.just("a@b.c")),
                "name": st.one_of(st.text(max_size=40), KEYS),
            },
        ),
        min_size=20,
        max_size=20,
    ),
)
async def test_hostile_button_values_and_form_fields(
    fuzz_rig: Rig, caplog: pytest.LogCaptureFixture, clicks: list, forms: list
) -> None:
    bot = fuzz_rig.bot
    recorder = Recorder(bot)
    recorder.new_events()
    caplog.clear()
    keys: set[str] = set()
    for (value, platform), action in zip(
        clicks, itertools.cycle(sorted(bot.actions)), strict=False
    ):
        inbound = _inbound(platform, "channel", "clicker", "", "")
        await bot.handle_action(inbound, action, value, recorder.conversation(inbound))
        _check_events(recorder.new_events(), keys, f"click {action} {value!r}")
    for values, form_id in zip(forms, itertools.cycle(sorted(bot.forms)), strict=False):
        for v in values.values():
            keys |= _key_tokens(v)
            for k in _key_tokens(v):
                leaks.secret(k)
        inbound = _inbound("slack", "direct", "former", "", "")
        conv = recorder.conversation(inbound)
        await bot.submit_form(inbound, form_id, values, conv)
        events = recorder.new_events()
        _check_events(events, keys, f"form {form_id}")
        assert events or conv.forms, (form_id, values)
    assert await bot.jobs.wait_idle(60)
    _check_events(recorder.new_events(), keys, "job deliveries")
    assert not _tracebacks(caplog.records), _tracebacks(caplog.records)
