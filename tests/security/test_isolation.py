"""User B can never use, see or cancel user A's keys, jobs or usage, over real HTTP to the sims."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.openclaw_token.confirm import CONFIRM_ACTION
from bot.backends.openmarlin.family import openmarlin_family
from bot.backends.openmarlin.jobs import OpenMarlinTiming
from bot.backends.openmarlin.render import TOPUP_ACTION
from bot.core.app import TokenBot
from bot.core.messages import Failure
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim, OpenMarlinSimConfig
from bot.store import Owner
from tests.conftest import Chat
from tests.fakes.conversation import RecordingConversation
from tests.integration.openclaw_support import click, running_bot, running_sim, signed_in


def last_whisper(chat: Chat) -> str:
    return chat.conv.of("whisper")[-1].text


def failures(chat: Chat) -> list[Failure]:
    return [p for e in chat.conv.events for p in e.parts if isinstance(p, Failure)]


async def _job_with_task(bot: TokenBot, owner: Owner) -> str:
    for _ in range(300):
        jobs = await bot.store.jobs_for(owner)
        if jobs and jobs[0].state.get("task_id"):
            return jobs[0].id
        await asyncio.sleep(0.02)
    raise AssertionError("the video never got a task id")


# --- AllToken ------------------------------------------------------------------------------


async def test_b_cannot_cancel_as_jobs_or_see_as_usage_or_key(
    bot: TokenBot, sim: AllTokenSim, alice: Chat
) -> None:
    sim.config.video_seconds = 30
    await alice.send("/alltoken-video slow sunrise over the sea")
    job_id = await _job_with_task(bot, alice.owner)
    # Bob, in the same conversation, with and without a key of his own.
    bob = Chat(bot, "bob")
    for has_key in (False, True):
        if has_key:
            await bob.give_key(sim.issue_key(1.0))
        await bot.handle_action(bob.inbound("click"), CANCEL_ACTION, job_id, bob.conv)
        assert "Only the person who started" in last_whisper(bob)
        await bot.handle_action(bob.inbound("click"), CANCEL_ACTION, "no-such-job", bob.conv)
        assert "Only the person who started" in last_whisper(bob)
    job = await bot.store.get_job(job_id)
    assert job is not None and job.status in ("pending", "running")
    assert sim.stats.video_cancellations == 0

    await alice.send("/alltoken-chat hello there")
    await bob.send("/alltoken-cost")
    assert "No AllToken call of yours" in last_whisper(bob)
    # The same user id in another workspace or on another platform is someone else.
    twins = [
        Chat(bot, "alice", platform="slack"),
        Chat(bot, "alice", platform="discord"),
    ]
    other_ws = Chat(bot, "alice")
    other_ws.inbound_proto = other_ws.inbound_proto.model_copy(update={"workspace": "w2"})
    other_ws.conv = RecordingConversation(other_ws.inbound_proto.destination())
    akey = await bot.store.get_credential(alice.owner, "alltoken")
    assert akey is not None
    for twin in [*twins, other_ws]:
        await twin.send("/alltoken-cost")
        assert "No AllToken call of yours" in twin.conv.events[-1].text
        await twin.send("/alltoken-key status")
        assert akey[-4:] not in twin.conv.events[-1].text
        before = sim.stats.chat_completions
        await twin.send("/alltoken-chat use alice's key please")
        assert sim.stats.chat_completions == before  # no key of theirs: nothing was called
        assert "no AllToken key" in twin.conv.events[-1].text
        await bot.handle_action(twin.inbound("click"), CANCEL_ACTION, job_id, twin.conv)
        assert "Only the person who started" in twin.conv.events[-1].text
    assert sim.stats.video_cancellations == 0
    # Alice still can.
    await bot.handle_action(alice.inbound("click"), CANCEL_ACTION, job_id, alice.conv)
    assert sim.stats.video_cancellations == 1


# --- OpenMarlin ----------------------------------------------------------------------------


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    s = OpenMarlinSim(OpenMarlinSimConfig(task_queue_s=0.1, task_run_s=5, tokens_per_second=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def ombot(tmp_path: Path, om: OpenMarlinSim) -> AsyncIterator[TokenBot]:
    settings = Settings(
        openmarlin_server_url=om.base_url,
        alltoken_base_url="http://127.0.0.1:9",
        data_dir=tmp_path / "data",
        http_timeout_s=5.0,
        max_polls_per_second=1000.0,
    )
    timing = OpenMarlinTiming(poll_s=0.05)
    b = await TokenBot.create(settings, families=[alltoken_family(), openmarlin_family(timing)])
    convs: dict[str, RecordingConversation] = {}
    for platform in ("console", "slack", "discord"):
        b.register_platform(
            platform, lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
        )
    b.test_conversations = convs  # type: ignore[attr-defined]
    try:
        yield b
    finally:
        await b.aclose()


async def test_b_cannot_see_as_task_or_top_up_as_account(
    ombot: TokenBot, om: OpenMarlinSim
) -> None:
    alice, bob = Chat(ombot, "alice"), Chat(ombot, "bob", channel="elsewhere")
    await ombot.store.put_credential(alice.owner, "openmarlin", om.issue_key(25))
    await alice.send("use openmarlin to generate a video of a plane landing --duration=4s")
    for _ in range(300):
        jobs = await ombot.store.jobs_for(alice.owner)
        if jobs and jobs[0].state.get("task_id"):
            break
        await asyncio.sleep(0.02)
    task_id = str(jobs[0].state["task_id"])
    # Without a key: told to set one; with a key of his own: A's task does not exist for him.
    await bob.send(f"use openmarlin task status {task_id}")
    assert "no OpenMarlin key" in last_whisper(bob)
    await ombot.store.put_credential(bob.owner, "openmarlin", om.issue_key(0.5))
    await bob.send(f"use openmarlin task status {task_id}")
    assert failures(bob)[-1].code == "not_found"
    assert await ombot.store.jobs_for(bob.owner) == []  # nothing watched on his behalf
    # A top-up button (whoever's it was) always acts for the clicker, on the clicker's account.
    carol = Chat(ombot, "carol", channel="carols")
    await ombot.handle_action(carol.inbound("click"), TOPUP_ACTION, "5", carol.conv)
    assert "no OpenMarlin key" in last_whisper(carol)
    assert await ombot.store.jobs_for(carol.owner) == []
    await ombot.handle_action(bob.inbound("click"), TOPUP_ACTION, "5", bob.conv)
    assert await ombot.jobs.wait_idle(0.5) or True
    assert all(j.owner == bob.owner for j in await ombot.store.jobs_for(bob.owner))
    assert not [j for j in await ombot.store.jobs_for(alice.owner) if "topup" in j.kind]


# --- OpenClaw Token ------------------------------------------------------------------------


async def test_b_cannot_confirm_as_operations_or_use_as_keys(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    async with running_sim() as oc, running_bot(tmp_path / "data", sim, oc) as bot:
        await _openclaw_isolation(bot, oc)


async def _openclaw_isolation(bot: TokenBot, oc: OpenClawTokenSim) -> None:
    alice = await signed_in(bot, "alice")
    await alice.send("/openclaw-token credits buy --amount 20")
    await alice.send("/openclaw-token auth rotate")
    buy_and_rotate = [
        b.value
        for e in alice.conv.events
        for p in e.parts
        for b in getattr(p, "buttons", [])
        if b.action_id == CONFIRM_ACTION
    ]
    assert len(buy_and_rotate) == 2
    mallory = Chat(bot, "mallory")
    twin = Chat(bot, "alice", platform="slack")
    for stranger in (mallory, twin):
        for token in buy_and_rotate:
            # Clicked on the message A sees, by someone who is not A (same id elsewhere).
            await bot.handle_action(stranger.inbound("click"), CONFIRM_ACTION, token, alice.conv)
            assert "Only the person who asked" in alice.conv.events[-1].text
        await stranger.send("/openclaw-token keys list")
        assert "sign" in stranger.conv.events[-1].text.lower()
        await stranger.send("/openclaw-token credits balance")
        assert "$100.00" not in stranger.conv.text()
    # The Slack twin is refused too, even in their own conversation.
    token = buy_and_rotate[0]
    await bot.handle_action(twin.inbound("click"), CONFIRM_ACTION, token, twin.conv)
    assert "Only the person who asked" in twin.conv.events[-1].text
    assert oc.account().remaining == 100 and oc.stats.get("purchases", 0) == 0
    assert oc.account().management_key == DEMO_MGMT_KEY
    assert await bot.store.get_credential(mallory.owner, "openclaw_token") is None
    # The owner still can.
    await click(alice, CONFIRM_ACTION, token)
    assert await bot.jobs.wait_idle(5)
    assert oc.account().remaining == 120
