"""A Cancel/Stop clicked on replica B stops the job replica A runs, promptly and only once.

Two TokenBots share one store. A runs the job; B receives the click, moves the row to
'cancelled', audits the end and updates the live message. A must stop its task without
writing anything more: on PostgreSQL at once (a NOTIFY on `tokenbot_jobs`; A's lease renewal
is made far too slow to explain it), on SQLite at A's next lease round (which reads whether
its rows were cancelled). Without that A went on: a second "cancelled" end audited, the
message edited over, a late "done" written over the cancelled row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import httpx
import pytest

from adapters.discord.session import SessionRegistry
from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.alltoken.service import AllTokenService
from bot.backends.openclaw_token.keys import STOP_ACTION, UsageWatchJob
from bot.backends.openclaw_token.service import NewKey, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.messages import Actions
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from bot.store import JobRecord, Owner
from tests.conftest import Chat
from tests.fakes.discord import discord_world
from tests.integration.openclaw_support import running_sim
from tests.restart.replicas import SharedDatabase, replica, shared_db

__all__ = ["shared_db"]  # the fixture, imported for pytest


class Leases(TypedDict):
    """Lease settings for `replica` (a TypedDict: its keys cannot be taken for `openclaw`)."""

    job_lease_s: float
    job_lease_renew_s: float


# A's leases: renewed every five minutes, so only a notice can stop its task within the test.
SLOW_LEASES: Leases = {"job_lease_s": 900.0, "job_lease_renew_s": 300.0}
LEASE_LOG = "bot.core.job_leases"
WEBHOOK_EDIT = "/webhooks/{application_id}/{token}/messages/{message_id}"


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


async def _wait_for_job(bot: TokenBot, chat: Chat, ready: str) -> JobRecord:
    """The chat's one job, once its state has `ready` set."""
    async with asyncio.timeout(10):
        while True:
            jobs = await bot.store.jobs_for(chat.owner)
            if jobs and jobs[0].state.get(ready):
                return jobs[0]
            await asyncio.sleep(0.02)


async def _stopped_on_a(a: TokenBot, db: SharedDatabase, job_id: str) -> None:
    """PostgreSQL: A stops by itself (the notice). SQLite: at A's next lease round."""
    if db.name == "sqlite":
        await a.jobs.renew_and_take_over()
    async with asyncio.timeout(5):
        while a.jobs.is_running(job_id):
            await asyncio.sleep(0.01)


def _stopped_by(caplog: pytest.LogCaptureFixture, job_id: str) -> list[str]:
    """How A stopped the job, from its log: "notice" or "round" (once each at most)."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if f"job {job_id} was cancelled on another replica; replica a stopped it" in message:
            found.append("notice")
        elif f"job {job_id} was cancelled; replica a stopped it" in message:
            found.append("round")
    return found


def _expected_stop(db: SharedDatabase) -> list[str]:
    return ["notice"] if db.name == "postgresql" else ["round"]


async def _new_key(oc: OpenClawTokenSim, name: str) -> str:
    """A provisioned key made straight on the simulator's demo account; its hash."""
    async with httpx.AsyncClient() as http:
        made = await OpenClawTokenService(http, oc.base_url).create_key(
            DEMO_MGMT_KEY, NewKey(name=name)
        )
    return made.hash


def _said(*chats: Chat, text: str) -> int:
    return sum(text in event.text for chat in chats for event in chat.conv.events)


async def test_a_usage_watch_on_a_stops_when_b_gets_the_stop_click(
    shared_db: SharedDatabase,
    sim: AllTokenSim,
    oc: OpenClawTokenSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LEASE_LOG)
    async with (
        replica(shared_db, "a", sim, oc, **SLOW_LEASES) as a,
        replica(shared_db, "b", sim, oc) as b,
    ):
        # Left running, A's watch would end by itself 3 s in, writing "done" over the row.
        a.jobs.register(UsageWatchJob(a.services.get(OpenClawTokenService), max_duration_s=3))
        on_a, on_b = Chat(a, "alice"), Chat(b, "alice")
        await a.store.put_credential(on_a.owner, "openclaw_token", DEMO_MGMT_KEY)
        key_hash = await _new_key(oc, "watched")
        await on_a.send(f"/openclaw-token keys usage {key_hash} --watch --interval 60")
        job = await _wait_for_job(a, on_a, "progress_ref")
        assert a.jobs.is_running(job.id) and not b.jobs.is_running(job.id)
        seen_on_a = len(on_a.conv.events)

        await b.handle_action(on_b.inbound("/action stop"), STOP_ACTION, job.id, on_b.conv)
        await _stopped_on_a(a, shared_db, job.id)

        assert _stopped_by(caplog, job.id) == _expected_stop(shared_db)
        await asyncio.sleep(3.2)  # past the watch's own end: nothing may come of it now
        row = await b.store.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        ends = [
            e for e in await b.store.list_audit(on_a.owner) if e.command == "openclaw.keys.usage"
        ]
        assert [e.outcome for e in ends if e.outcome != "started"] == ["cancelled"]
        assert len(on_a.conv.events) == seen_on_a  # A said nothing more
        [stopped] = [e for e in on_b.conv.events if "Stopped watching key" in e.text]
        assert stopped.kind == "edit" and stopped.ref == row.state["progress_ref"]["id"]
        assert _said(on_a, on_b, text="Stopped watching") == 1


async def test_a_usage_watch_taken_over_keeps_its_message_and_stop_button(
    shared_db: SharedDatabase, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    """The watch's live message and its Stop button live in the job row: a replica taking the
    watch over edits the same message, and the Stop button (the job id) works there."""
    async with replica(shared_db, "a", sim, oc) as a, replica(shared_db, "b", sim, oc) as b:
        on_a, on_b = Chat(a, "alice"), Chat(b, "alice")
        await a.store.put_credential(on_a.owner, "openclaw_token", DEMO_MGMT_KEY)
        key_hash = await _new_key(oc, "watched")
        await on_a.send(f"/openclaw-token keys usage {key_hash} --watch --interval 1")
        job = await _wait_for_job(a, on_a, "progress_ref")
        [posted] = on_a.conv.of("say")
        # A dies (no release, no more renewals); B takes the watch over once the lease ran out.
        keeper = a.jobs.lease_keeper._task
        assert keeper is not None
        keeper.cancel()
        a.jobs.stop_all_local()
        await asyncio.gather(*a.jobs._tasks.values(), return_exceptions=True)
        past_grace = b.jobs.leases.lease_s + b.jobs.leases.takeover_grace_s + 1
        b.jobs.clock = lambda: time.time() + past_grace
        assert await b.jobs.renew_and_take_over() == 1
        await on_b.conv.wait_for(lambda c: bool(c.of("edit")), 5)
        edit = on_b.conv.of("edit")[0]
        assert edit.ref == posted.ref and not on_b.conv.of("say")
        [stop] = [btn for p in edit.parts if isinstance(p, Actions) for btn in p.buttons]
        assert (stop.action_id, stop.value) == (STOP_ACTION, job.id)
        await b.handle_action(on_b.inbound("/action stop"), STOP_ACTION, stop.value, on_b.conv)
        assert await b.jobs.wait_idle(5)
        row = await b.store.get_job(job.id)
        assert row is not None and row.status == "cancelled" and row.claimed_by == "b"
        assert "Stopped watching key" in on_b.conv.events[-1].text


async def test_a_video_on_a_stops_when_b_gets_the_cancel_click(
    shared_db: SharedDatabase, sim: AllTokenSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LEASE_LOG)
    sim.config.video_seconds = 60
    async with (
        replica(shared_db, "a", sim, **SLOW_LEASES) as a,
        replica(shared_db, "b", sim) as b,
    ):
        on_a, on_b = Chat(a, "erin"), Chat(b, "erin")
        await on_a.give_key(sim.issue_key(5))
        await on_a.send("/alltoken-video a slow sunrise")
        job = await _wait_for_job(a, on_a, "task_id")  # its message is posted before
        seen_on_a = len(on_a.conv.events)

        await b.handle_action(on_b.inbound("/action cancel"), CANCEL_ACTION, job.id, on_b.conv)
        row = await b.store.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        await _stopped_on_a(a, shared_db, job.id)

        assert _stopped_by(caplog, job.id) == _expected_stop(shared_db)
        # A would have polled again within a few seconds and seen the task cancelled.
        await asyncio.sleep(2.5)
        row = await a.store.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        audit = await b.store.list_audit(on_a.owner)
        assert [e.outcome for e in audit if e.command == "video" and e.outcome != "started"] == [
            "cancelled"
        ]
        assert [e.outcome for e in audit if e.command == "video.cancel"] == ["ok"]
        assert len(on_a.conv.events) == seen_on_a
        [cancelled] = [e for e in on_b.conv.events if "Video cancelled" in e.text]
        assert cancelled.kind == "edit" and cancelled.ref == row.state["progress_ref"]["id"]
        assert _said(on_a, on_b, text="cancelled") == 1


async def test_a_cancel_on_b_while_a_submits_the_video_cancels_it_at_alltoken(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    """B cannot see A's task, but A's live lease says the job is being run: B asks A to cancel
    as soon as AllToken names the task, rather than leaving a paid video running there."""
    sim.config.video_seconds = 30
    async with httpx.AsyncClient() as http:
        fault = {"method": "POST", "path": "/v1/videos/generations", "latency_ms": 800, "times": 1}
        assert (await http.post(f"{sim.base_url}/_sim/faults", json=fault)).status_code == 201
    async with replica(shared_db, "a", sim) as a, replica(shared_db, "b", sim) as b:
        on_a, on_b = Chat(a, "erin"), Chat(b, "erin")
        await on_a.give_key(sim.issue_key(5))
        await on_a.send("/alltoken-video a slow start")
        job = await _wait_for_job(a, on_a, "submit_started")
        assert not job.state.get("task_id")
        await b.handle_action(on_b.inbound("/action cancel"), CANCEL_ACTION, job.id, on_b.conv)
        assert "as soon as" in on_b.conv.of("whisper")[-1].text
        assert await a.jobs.wait_idle(10)
        row = await a.store.get_job(job.id)
        assert row is not None and row.status == "cancelled" and row.state["task_id"]
        key = await a.store.get_credential(on_a.owner, "alltoken")
        status = await a.services.get(AllTokenService).poll_video(key or "", row.state["task_id"])
        assert status.status == "cancelled"
        audit = await b.store.list_audit(on_a.owner)
        assert [e.outcome for e in audit if e.command == "video" and e.outcome != "started"] == [
            "cancelled"
        ]


# -- a Discord job resumed where its interaction was never seen -----------------------------


async def test_a_discord_job_taken_over_uses_the_interaction_token_from_its_row(
    sim: AllTokenSim, tmp_path: Path
) -> None:
    """The webhook token comes from the job row, not from the adapter's memory of it."""
    sim.config.video_seconds = 1.5
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        fake, bot = w.fake, w.bot
        owner = Owner(platform="discord", workspace=str(fake.guild_id), user=fake.alice["id"])
        await bot.store.put_credential(owner, "alltoken", sim.issue_key(5))
        i = await fake.slash("alltoken-video", prompt="waves")
        await fake.wait_until(lambda: "Video" in _content(fake.original(i)), what="progress")
        [job] = await bot.store.jobs_for(owner)
        assert job.destination["extras"]["interaction_token"] == i.token  # in the row
        # The replica that received the interaction dies; one that never saw it takes over.
        keeper = bot.jobs.lease_keeper._task
        assert keeper is not None
        keeper.cancel()
        bot.jobs.stop_all_local()
        await asyncio.gather(*bot.jobs._tasks.values(), return_exceptions=True)
        w.adapter.sessions = SessionRegistry()
        past_grace = bot.jobs.leases.lease_s + bot.jobs.leases.takeover_grace_s + 1
        bot.jobs.clock = lambda: time.time() + past_grace
        webhook_edits = len(fake.calls_to("PATCH", WEBHOOK_EDIT))
        assert await bot.jobs.renew_and_take_over() == 1
        await fake.wait_until(lambda: "Video ready" in _content(fake.original(i)), 10, what="done")
        edits = fake.calls_to("PATCH", WEBHOOK_EDIT)[webhook_edits:]
        assert edits and {c.params["token"] for c in edits} == {i.token}
        assert {c.params["message_id"] for c in edits} == {str(i.original_id)}
        assert fake.calls_to("POST", "/channels/{channel_id}/messages") == []


def _content(message: dict[str, object] | None) -> str:
    return "" if message is None else str(message["content"])
