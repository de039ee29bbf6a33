"""Every Discord entry point answers an unexpected exception with "something went wrong (ref …)".

The core never raises to the adapter by contract, and no local server can make it: each test
injects an exception with monkeypatch (the reason is on each patch), then checks through the
fake Discord that the person got the reply, privately where Discord allows, with the same ref
as the logged error line, and that the bot keeps answering afterwards.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import adapters.discord.conversation as conversation_module
from adapters.discord import inbound as inbound_module
from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.service import AllTokenService
from bot.core.app import TokenBot
from bot.core.messages import Failure, Link, Part
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.discord import EPHEMERAL, LOADING, DiscordWorld, FakeInteraction, discord_world

REF = re.compile(r"something went wrong \(ref ([0-9a-f]+)\)", re.IGNORECASE)


class Injected(RuntimeError):
    """The unexpected exception the tests inject."""


def boom(*_args: Any, **_kwargs: Any) -> Any:
    raise Injected("injected for the test")


async def aboom(*_args: Any, **_kwargs: Any) -> Any:
    raise Injected("injected for the test")


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        key = w.sim.issue_key(10.0)
        owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=w.fake.alice["id"])
        await w.bot.store.put_credential(owner, "alltoken", key)
        yield w


def text_of(message: dict[str, Any]) -> str:
    return str(message["content"]) + json.dumps(message["embeds"])


def ref_in(messages: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    for message in messages:
        found = REF.search(text_of(message))
        if found and not int(message["flags"]) & LOADING:
            return found.group(1), message
    return None


def logged(caplog: pytest.LogCaptureFixture, ref: str) -> bool:
    # Logged by the adapter's own guard (the core's guards log under bot.*).
    return any(
        ref in r.getMessage() and r.levelno >= logging.ERROR and r.name.startswith("adapters.")
        for r in caplog.records
    )


async def still_answers(w: DiscordWorld) -> None:
    i = await w.fake.slash("alltoken-help")
    await w.fake.wait_until(
        lambda: any("/alltoken-chat" in text_of(m) for m in w.fake.replies(i)), what="help"
    )


async def test_slash_command(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # TokenBot.handle never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "handle", aboom)
    i = await world.fake.slash("alltoken-help")
    ref, message = await world.fake.wait_until(lambda: ref_in(world.fake.replies(i)), what="ref")
    assert int(message["flags"]) & EPHEMERAL
    assert "Traceback" not in text_of(message) and "injected" not in text_of(message)
    assert logged(caplog, ref)
    monkeypatch.undo()
    await still_answers(world)


async def test_a_command_the_tree_does_not_know(
    world: DiscordWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # A command Discord still lists after the bot dropped it fails before any callback.
    i = await world.fake.slash("alltoken-gone")
    await world.fake.wait_until(lambda: i.callbacks, what="an answer")
    data = i.callbacks[0]["data"]
    found = REF.search(data["content"])
    assert i.response_type == 4 and int(data["flags"]) & EPHEMERAL and found
    assert logged(caplog, found.group(1))


async def test_message_trigger_and_thread_reply(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    first = await fake.user_message("alltoken help")
    thread_id = int(first["id"])
    await fake.wait_until(
        lambda: any("/alltoken-chat" in m["content"] for m in fake.messages_in(thread_id)),
        what="help in the thread",
    )
    # TokenBot.handle never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "handle", aboom)
    await fake.user_message("alltoken help")
    channel_ref = await fake.wait_until(
        lambda: ref_in([m for c in fake.channels if c != thread_id for m in fake.messages_in(c)]),
        what="the trigger's ref",
    )
    await fake.user_message("and again", channel_id=thread_id)
    thread_ref, _ = await fake.wait_until(
        lambda: ref_in(fake.messages_in(thread_id)), what="the thread reply's ref"
    )
    assert logged(caplog, channel_ref[0]) and logged(caplog, thread_ref)
    assert channel_ref[0] != thread_ref


async def test_a_message_failing_before_the_core_is_answered_with_a_reply(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    first = await fake.user_message("alltoken help")
    thread_id = int(first["id"])
    await fake.wait_until(lambda: fake.messages_in(thread_id), what="the thread")
    # Reading a thread's history only fails on Discord's side with HTTP errors (handled);
    # a patch stands in for an unexpected bug in the adapter itself.
    monkeypatch.setattr(inbound_module, "thread_history", aboom)
    reply_to = await fake.user_message("what next?", channel_id=thread_id)
    ref, message = await fake.wait_until(
        lambda: ref_in(fake.messages_in(thread_id)), what="the ref"
    )
    assert str((message.get("message_reference") or {}).get("message_id")) == reply_to["id"]
    assert logged(caplog, ref)


async def test_button_click(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    # TokenBot.handle_action never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "handle_action", aboom)
    carrier = await fake.user_message("lunch at noon?")
    click = await fake.click("tb:alltoken.video.cancel:job1", int(carrier["id"]))
    ref, message = await fake.wait_until(
        lambda: ref_in([fake.messages[f] for f in click.followups]), what="the ref"
    )
    assert click.response_type == 6 and int(message["flags"]) & EPHEMERAL
    assert logged(caplog, ref)


async def test_modal_submit(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    i = await fake.slash("alltoken-key", user=fake.bob)
    await fake.wait_until(lambda: i.callbacks, what="the modal")
    modal = i.callbacks[0]["data"]
    field_id = modal["components"][0]["component"]["custom_id"]
    # TokenBot.submit_form never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "submit_form", aboom)
    secret = "sk-at-" + "Qx7" * 10
    submit = await fake.submit_modal(modal["custom_id"], {field_id: secret}, user=fake.bob)
    ref, message = await fake.wait_until(lambda: ref_in(fake.replies(submit)), what="the ref")
    assert int(message["flags"]) & EPHEMERAL
    assert logged(caplog, ref)
    assert not any(secret in r.getMessage() for r in caplog.records)


async def test_autocomplete(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The model cache is in memory and cannot fail on its own: a patch stands in for a bug.
    monkeypatch.setattr(world.bot.services.get(AllTokenService), "cached_models", boom)
    i = await world.fake.autocomplete("alltoken-chat", "model", model="clau", prompt="x")
    await world.fake.wait_until(lambda: i.callbacks, what="choices")
    (choice,) = i.callbacks[0]["data"]["choices"]
    found = REF.search(choice["name"])
    assert i.response_type == 8 and found and choice["value"] == "clau"
    assert logged(caplog, found.group(1))


async def test_job_delivery(
    world: DiscordWorld,
    sim: AllTokenSim,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = world.fake
    render = conversation_module.render

    def render_breaking(parts: Sequence[Part]) -> Any:
        if any(isinstance(p, Link | Failure) for p in parts):
            raise Injected("injected for the test")
        return render(parts)

    # Rendering is pure and cannot fail on real input: a patch stands in for a bug met while
    # a job delivers its result (the video link), and again while the job reports that failure.
    monkeypatch.setattr(conversation_module, "render", render_breaking)
    i: FakeInteraction = await fake.slash("alltoken-video", prompt="waves")
    ref, message = await fake.wait_until(lambda: ref_in(fake.replies(i)), 10, what="the ref")
    assert int(message["flags"]) & EPHEMERAL
    assert logged(caplog, ref)
    assert await world.bot.jobs.wait_idle(10)
    assert len([m for m in fake.replies(i) if "internal_error" in text_of(m)]) == 1


async def test_a_failed_delivery_the_core_reports_is_not_reported_twice(
    world: DiscordWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = world.fake
    render = conversation_module.render

    def render_breaking_on_links(parts: Sequence[Part]) -> Any:
        if any(isinstance(p, Link) for p in parts):
            raise Injected("injected for the test")
        return render(parts)

    # As above, but only the link fails: the job's own crash report gets through, and that
    # one reply is all the user sees.
    monkeypatch.setattr(conversation_module, "render", render_breaking_on_links)
    i: FakeInteraction = await fake.slash("alltoken-video", prompt="waves")
    await fake.wait_until(
        lambda: any("internal_error" in text_of(m) for m in fake.replies(i)), 10, what="report"
    )
    assert await world.bot.jobs.wait_idle(10)
    assert len([m for m in fake.replies(i) if "internal_error" in text_of(m)]) == 1
