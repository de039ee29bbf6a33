"""In-flight job limits over real HTTP to the AllToken simulator: a start over the limit is
refused privately before any backend request (the simulator's request log shows nothing
sent), with no job row, no spend hold and no progress message; 20 concurrent submits on two
replicas sharing SQLite or PostgreSQL start exactly the limit's worth; a finished job frees
its slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypedDict

import pytest

from bot.core.app import TokenBot
from bot.core.messages import Failure
from bot.sim.alltoken.server import AllTokenSim
from bot.store import UNFINISHED_STATUSES, JobRecord, Owner, Store
from tests.conftest import make_settings
from tests.integration.test_teams_budgets import BOSS, WS, Member, counted, set_caps, wire
from tests.restart.replicas import SharedDatabase, replica, shared_db

__all__ = ["shared_db"]  # the fixture, used by the replica tests below

SLOW_S = 120.0  # images and videos stay unfinished for the whole test unless one is finished


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait for `check` (a bound on waiting, not a claim about speed)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def requests_sent(sim: AllTokenSim) -> int:
    """Every request but the running jobs' status polls (those go on at their own pace)."""
    polls = {"/v1/images/generations/{id}", "/v1/videos/generations/{id}"}
    return sum(
        n
        for (method, template), n in sim.stats.requests.items()
        if not (method == "GET" and template in polls)
    )


def limit_refusals(member: Member) -> list[Failure]:
    return [
        p
        for e in member.conv.of("whisper")
        for p in e.parts
        if isinstance(p, Failure) and p.code == "job_limit"
    ]


async def unfinished(store: Store, owner: Owner) -> list[JobRecord]:
    return [j for j in await store.jobs_for(owner, limit=100) if j.status in UNFINISHED_STATUSES]


@pytest.fixture
async def capped_bot(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[TokenBot]:
    """A bot whose members use the workspace key under a cap: every media start holds its
    priced estimate first (so an unrefused start would ask the simulator for prices)."""
    sim.config.image_seconds = SLOW_S
    sim.config.video_seconds = SLOW_S
    bot = await TokenBot.create(
        make_settings(
            tmp_path / "data",
            sim,
            admins=f"slack:{BOSS}",
            max_jobs_per_user=5,
            max_jobs_per_workspace=50,
        )
    )
    wire(bot)
    await bot.store.put_workspace_key("slack", WS, "alltoken", sim.issue_key(10.0), by_user=BOSS)
    await set_caps(bot.store, workspace_monthly_usd="9.00")
    try:
        yield bot
    finally:
        await bot.aclose()


async def test_a_start_over_the_limit_is_refused_before_any_backend_request(
    capped_bot: TokenBot, sim: AllTokenSim
) -> None:
    bob = Member(capped_bot, "bob")
    for i in range(3):
        await bob.send(f"/alltoken-image a lighthouse, take {i}")
    for i in range(2):
        await bob.send(f"/alltoken-video waves, take {i}")

    async def all_submitted() -> bool:
        return sim.stats.image_submissions == 3 and sim.stats.video_submissions == 2

    await until(all_submitted, "five submissions")
    held = (await counted(capped_bot.store, "bob")).workspace_month_usd
    assert held > 0  # the five jobs' estimates are held
    before_requests, before_events = requests_sent(sim), len(bob.conv.events)

    await bob.send("/alltoken-image one too many")

    assert requests_sent(sim) == before_requests  # not even a price lookup
    [refused] = limit_refusals(bob)
    assert refused.message.startswith("You have 5 running (3 images, 2 videos)")
    assert "wait for one to finish or cancel one" in refused.message
    assert refused.hint is not None and "Cancel button" in refused.hint and "video" in refused.hint
    # The refusal is the only new message: no progress message, no job row, no hold.
    said = [e.kind for e in bob.conv.events[before_events:] if e.kind != "edit"]
    assert said == ["whisper"]
    assert len(await capped_bot.store.jobs_for(bob.owner, limit=100)) == 5
    assert (await counted(capped_bot.store, "bob")).workspace_month_usd == held
    [audit] = await capped_bot.store.list_audit(bob.owner, 1)
    assert (audit.command, audit.outcome, audit.detail) == ("image", "denied", "job_limit")
    # Someone else in the workspace is not held back by bob's limit.
    carol = Member(capped_bot, "carol")  # (in the same channel: the same conversation)
    await carol.send("/alltoken-image a boat")
    assert len(limit_refusals(carol)) == 1  # still only bob's
    assert len(await unfinished(capped_bot.store, carol.owner)) == 1


async def test_a_finished_job_frees_a_slot(capped_bot: TokenBot, sim: AllTokenSim) -> None:
    bob = Member(capped_bot, "bob")
    for i in range(5):
        await bob.send(f"/alltoken-image a lighthouse, take {i}")

    async def submitted() -> bool:
        return sim.stats.image_submissions == 5

    await until(submitted, "five submissions")
    await bob.send("/alltoken-image refused")
    assert len(limit_refusals(bob)) == 1
    assert "(5 images)" in limit_refusals(bob)[0].message
    assert "Cancel" not in (limit_refusals(bob)[0].hint or "")  # images have no Cancel button

    # One image finishes at the simulator; its job delivers it and ends.
    task = next(iter(sim._images.values()))
    task.ready_at = time.time()

    async def one_done() -> bool:
        jobs = await capped_bot.store.jobs_for(bob.owner, limit=100)
        return sum(j.status == "done" for j in jobs) == 1

    await until(one_done, "one image delivered")
    await bob.send("/alltoken-image now there is room")
    assert len(limit_refusals(bob)) == 1  # no new refusal
    assert len(await unfinished(capped_bot.store, bob.owner)) == 5
    await until(lambda: _submissions_are(sim, 6), "the sixth submission")


async def _submissions_are(sim: AllTokenSim, n: int) -> bool:
    return sim.stats.image_submissions == n


class JobLimits(TypedDict):
    """Job-limit settings for `replica` (a TypedDict: its keys cannot be taken for `openclaw`)."""

    max_jobs_per_user: int
    max_jobs_per_workspace: int


@pytest.mark.parametrize("scope", ["user", "workspace"])
async def test_twenty_concurrent_submits_on_two_replicas_start_exactly_the_limit(
    shared_db: SharedDatabase, sim: AllTokenSim, scope: str
) -> None:
    sim.config.image_seconds = SLOW_S
    limits: JobLimits = (
        {"max_jobs_per_user": 5, "max_jobs_per_workspace": 0}
        if scope == "user"
        else {"max_jobs_per_user": 0, "max_jobs_per_workspace": 5}
    )
    # Every submit runs at once (no fair-work queueing), so only the store can keep count.
    async with (
        replica(shared_db, "a", sim, max_handlers_per_user=0, **limits) as first,
        replica(shared_db, "b", sim, max_handlers_per_user=0, **limits) as second,
    ):
        bots = (first, second)
        for bot in bots:
            wire(bot)
        users = ["bob"] * 20 if scope == "user" else [f"u{i}" for i in range(20)]
        members = [Member(bots[i % 2], user) for i, user in enumerate(users)]
        for user in set(users):
            owner = Owner(platform="slack", workspace=WS, user=user)
            await first.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
        await asyncio.gather(
            *(m.send(f"/alltoken-image a lighthouse, take {i}") for i, m in enumerate(members))
        )
        owners = {m.owner for m in members}
        started = [j for o in owners for j in await unfinished(first.store, o)]
        assert len(started) == 5
        # (The members of one replica share its channel's conversation.)
        assert sum(len(limit_refusals(m)) for m in members[:2]) == 15

        async def submitted() -> bool:
            return sim.stats.image_submissions == 5

        await until(submitted, "five submissions")
        assert sim.stats.image_submissions == 5
