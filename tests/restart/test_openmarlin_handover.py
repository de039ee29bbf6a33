"""An OpenMarlin task taken over while its replica is still inside the (paid, not resendable)
submit: the old holder hands the task's id over, and the new holder adopts it instead of
ending the task as "submit interrupted" or submitting it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.backends.openmarlin.jobs import TASK_KIND, OpenMarlinTiming
from bot.core.app import TokenBot
from bot.core.messages import Failure
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim, OpenMarlinSimConfig
from tests.conftest import Chat
from tests.restart.replicas import SharedDatabase, replica, shared_db

__all__ = ["shared_db"]  # the fixture, imported for pytest

FAST = OpenMarlinTiming(poll_s=0.05, submit_handover_s=20)


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    sim = OpenMarlinSim(OpenMarlinSimConfig(task_queue_s=0.1, task_run_s=0.2, tokens_per_second=0))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def _fast(bot: TokenBot) -> TokenBot:
    bot.jobs._kinds[TASK_KIND].timing = FAST  # type: ignore[attr-defined]
    return bot


async def test_a_task_taken_over_mid_submit_is_handed_over_and_delivered_once(
    shared_db: SharedDatabase, sim: AllTokenSim, om: OpenMarlinSim
) -> None:
    async with (
        replica(shared_db, "a", sim, openmarlin_server_url=om.base_url) as a,
        replica(shared_db, "b", sim, openmarlin_server_url=om.base_url) as b,
    ):
        _fast(a), _fast(b)
        on_a, on_b = Chat(a, "alice"), Chat(b, "alice")
        await a.store.put_credential(on_a.owner, "openmarlin", om.issue_key(25))
        om.config.latency_ms = 1500  # a's submit is on the wire while b takes the job over
        await on_a.send("use openmarlin to generate a video of a harbour")
        [job] = await a.store.jobs_for(on_a.owner)
        async with asyncio.timeout(10):
            while not (await a.store.get_job(job.id)).state.get("submit_started"):  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
        # As if a's leases had lapsed (its loop stalled, its store unreachable): b claims it.
        past = time.time() + a.jobs.leases.lease_s + 2 * a.jobs.leases.renew_every_s
        assert await b.jobs.claim_available(past) == (1, 0)
        om.config.latency_ms = 0
        assert await b.jobs.wait_idle(20)
        await asyncio.gather(*a.jobs._tasks.values(), return_exceptions=True)
        row = await b.store.get_job(job.id)
        assert row is not None and row.status == "done" and row.claimed_by == "b", row
        assert om.requests["POST /v1/tasks"] == 1  # adopted, never sent again
        assert "succeeded" in on_b.conv.text()
        assert "succeeded" not in on_a.conv.text()
        every = [*on_a.conv.events, *on_b.conv.events]
        assert not [p for e in every for p in e.parts if isinstance(p, Failure)]
