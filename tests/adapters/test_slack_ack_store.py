"""A Slack ack never waits for the store; the work it spawns does (adapters/slack/claims.py).

Against a real PostgreSQL store: while another connection holds `events_seen` locked (a slow
or busy database), a slash command and an event are still acked at once, and nothing reaches
the backend until the store has said "first time"; two replicas on one store sharing a
delivery process it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import TEAM, FakeSlack, SlackHarness, mention_event

MASTER_KEY = Fernet.generate_key().decode()  # replicas on one store share their master key


async def _harness(
    data_dir: Path, sim: AllTokenSim, url: str, fake: FakeSlack | None = None
) -> SlackHarness:
    harness = await SlackHarness.start(
        data_dir, sim.base_url, fake=fake, database_url=url, master_key=MASTER_KEY
    )
    owner = Owner(platform="slack", workspace=TEAM, user="U1")
    await harness.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    return harness


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim, postgres_url: str) -> AsyncIterator[SlackHarness]:
    harness = await _harness(tmp_path / "data", sim, postgres_url)
    try:
        yield harness
    finally:
        await harness.aclose()


async def _until(check: object, what: str, timeout: float = 15.0) -> None:
    """Wait for `check()` (a bound on waiting, not a claim about speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_acks_go_out_while_the_store_is_locked_and_work_waits_for_it(
    slack: SlackHarness, sim: AllTokenSim, postgres_url: str
) -> None:
    locker = await asyncpg.connect(postgres_url)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE events_seen IN ACCESS EXCLUSIVE MODE")
        command = await slack.command("/alltoken-chat", "one line on tides", user="U1")
        event = await slack.event(
            mention_event(slack.fake, "C1", "U1", "<@UBOT> alltoken chat hello"),
            event_id="EvLocked",
        )
        # Both acked while every dedupe write is blocked behind the lock …
        assert (command.status, event.status) == (200, 200)
        await asyncio.sleep(0.3)  # … and the work they spawned is still waiting for the store.
        assert sim.stats.chat_completions == 0
        assert [c.method for c in slack.fake.calls] == ["auth.test"] and not slack.fake.responses
        await lock.rollback()
    finally:
        await locker.close()
    await slack.settle()
    assert sim.stats.chat_completions == 2
    assert slack.fake.calls_to("chat.postMessage")  # the slash command's answer, in its channel
    assert slack.fake.calls_to("chat.startStream")  # the mention's, streamed in its thread


async def test_a_delivery_reaching_two_replicas_is_processed_by_one(
    tmp_path: Path, sim: AllTokenSim, postgres_url: str
) -> None:
    a = await _harness(tmp_path / "a", sim, postgres_url)
    b = await _harness(tmp_path / "b", sim, postgres_url, fake=a.fake)
    try:
        event = mention_event(a.fake, "C1", "U1", "<@UBOT> alltoken chat hello")
        # Slack's retry of the same delivery lands on the other replica.
        first = await a.event(event, event_id="EvTwice")
        again = await b.event(event, event_id="EvTwice", retry_num=1)
        assert (first.status, again.status) == (200, 200)  # both acked at once
        await a.settle()
        await b.settle()
        assert sim.stats.chat_completions == 1
        # One answer, streamed once (a thread reply uses Slack's native stream).
        assert len(a.fake.calls_to("chat.startStream")) == 1
    finally:
        await b.aclose(stop_fake=False)
        await a.aclose()
