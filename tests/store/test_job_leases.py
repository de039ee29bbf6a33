"""Jobs claimed, leased and taken over by replicas sharing one store (both backends).

Each "replica" is a JobRunner on its own Store (its own SQLite connection, or its own
PostgreSQL pool) over the same database. Leases are measured with clocks the tests move, so a
lease runs out without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from bot.core.job_leases import LeasePolicy
from bot.core.job_state import JobState
from bot.core.jobs import JobContext, JobRunner
from bot.core.messages import Destination, Failure, Notice
from bot.store import JobNotHeldError, JobRecord, Owner, SecretBox, Store
from tests.fakes.conversation import RecordingConversation
from tests.store.conftest import BackendUnderTest

OWNER = Owner(platform="console", workspace="w1", user="alice")
DEST = Destination(platform="console", workspace="w1", channel="general", user="alice")
LEASE_S = 30.0
RENEW_S = LEASE_S / 3
# Another replica takes a job over one renewal interval after its lease ran out.
PAST_GRACE_S = LEASE_S + RENEW_S + 1


class StepState(JobState):
    version: int = 1
    step: int = 0


class StepJob:
    """Saves step 1, optionally waits at `gate`, then claims delivery and posts once."""

    kind = "step"
    command = None
    state_model = StepState

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.reached_gate = asyncio.Event()
        # (replica, job id, the step it started from)
        self.runs: list[tuple[str, str, int]] = []

    async def run(self, ctx: JobContext[StepState]) -> None:
        self.runs.append((ctx.runner.replica_id, ctx.job.id, ctx.state.step))
        if ctx.state.step == 0:
            await ctx.save(step=1)
            if self.gate is not None:
                self.reached_gate.set()
                await self.gate.wait()
        await asyncio.sleep(0)  # let the other replica interleave
        # Resumed in "delivering" (its last holder stopped between the claim and the post).
        if ctx.job.status == "delivering" or await ctx.claim_delivery():
            await ctx.conversation.say([Notice(text=f"delivered {ctx.job.id}")])
            await ctx.set_status("done")

    async def report_failure(self, ctx: JobContext[StepState], failure: Failure) -> None:
        await ctx.conversation.say([failure])


class Clock:
    """Epoch seconds that a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Replica:
    """One replica: its store, runner, clock and job kind."""

    def __init__(self, store: Store, name: str, conv: RecordingConversation, kind: StepJob):
        self.store = store
        self.conv = conv
        self.clock = Clock()
        self.kind = kind
        self.runner = JobRunner(
            store,
            lambda _dest: conv,
            leases=LeasePolicy(replica_id=name, lease_s=LEASE_S, renew_every_s=RENEW_S),
            clock=self.clock,
        )
        self.runner.register(kind)

    def crash(self) -> None:
        """Stop everything as a SIGKILL would: no release, no more renewals."""
        keeper = self.runner.lease_keeper._task
        if keeper is not None:
            keeper.cancel()
        self.runner.stop_all_local()


@pytest.fixture
async def replicas(
    backend: BackendUnderTest, box: SecretBox
) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    """Open replicas on the test's database; all closed after the test."""
    opened: list[Replica] = []
    conv = RecordingConversation(DEST)

    async def open_replica(name: str, kind: StepJob | None = None) -> Replica:
        store = await backend.open(box)
        replica = Replica(store, name, conv, kind or StepJob())
        opened.append(replica)
        return replica

    try:
        yield open_replica
    finally:
        for replica in opened:
            replica.crash()
            await asyncio.gather(*replica.runner._tasks.values(), return_exceptions=True)
            await replica.store.close()


def _row(**fields: object) -> JobRecord:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4().hex[:16],
        "kind": "step",
        "owner": OWNER,
        "destination": DEST,
        "state": {"version": 1, "step": 0},
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return JobRecord.model_validate(values)


def _delivered(conv: RecordingConversation) -> list[str]:
    return [
        p.text
        for e in conv.of("say")
        for p in e.parts
        if isinstance(p, Notice) and p.text.startswith("delivered")
    ]


async def _a_holds_a_job_at_its_gate(
    replicas: Callable[..., Awaitable[Replica]],
) -> tuple[Replica, Replica, JobRecord]:
    """Replica a runs a job that saved step 1 and waits at its kind's gate; b is another."""
    a = await replicas("a", StepJob(gate=asyncio.Event()))
    b = await replicas("b")
    job = await a.runner.start("step", OWNER, DEST, StepState())
    await asyncio.wait_for(a.kind.reached_gate.wait(), 10)
    return a, b, job


# -- the store's claims --------------------------------------------------------------------------


async def test_concurrent_claims_give_each_job_to_one_replica(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b = await replicas("a"), await replicas("b")
    rows = [_row() for _ in range(20)]
    for row in rows:
        await a.store.create_job(row)
    ids = [r.id for r in rows]
    now = time.time()
    won_a, won_b = await asyncio.gather(
        a.store.claim_jobs(ids, "a", now, now + LEASE_S),
        b.store.claim_jobs(ids, "b", now, now + LEASE_S),
    )
    got_a, got_b = {j.id for j in won_a}, {j.id for j in won_b}
    assert not got_a & got_b and got_a | got_b == set(ids)
    assert all(j.claimed_by == "a" for j in won_a) and all(j.claimed_by == "b" for j in won_b)
    # A live lease is not claimable by the other replica; an expired one is.
    assert await b.store.claim_jobs(got_a, "b", now, now + LEASE_S) == []
    later = now + LEASE_S + 1
    taken = await b.store.claim_jobs(got_a, "b", later, later + LEASE_S)
    assert {j.id for j in taken} == got_a


async def test_renewal_reports_lost_jobs_and_writes_for_a_lost_holder_are_refused(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b = await replicas("a"), await replicas("b")
    now = time.time()
    row = _row(claimed_by="a", lease_until=now + LEASE_S)
    await a.store.create_job(row)
    assert await a.store.renew_job_leases("a", [row.id], now + 2 * LEASE_S) == {row.id}
    # Renewed: still a's at a time the first lease would have run out.
    assert await b.store.claim_jobs([row.id], "b", now + LEASE_S + 1, now + 3 * LEASE_S) == []
    later = now + 2 * LEASE_S + 1
    [taken] = await b.store.claim_jobs([row.id], "b", later, later + LEASE_S)
    assert taken.claimed_by == "b"
    assert await a.store.renew_job_leases("a", [row.id], later + LEASE_S) == set()
    with pytest.raises(JobNotHeldError):
        await a.store.update_job(row.id, state={"step": 1}, holder="a")
    with pytest.raises(JobNotHeldError):
        await a.store.transition_job(row.id, {"pending"}, "running", holder="a")
    assert await b.store.transition_job(row.id, {"pending"}, "running", holder="b")
    # Writes that name no holder (a Cancel button on any replica) are not refused.
    await a.store.update_job(row.id, state={"cancel_requested": True})


# -- runners -------------------------------------------------------------------------------------


async def test_two_runners_never_run_the_same_job(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b = await replicas("a"), await replicas("b")
    rows = [_row() for _ in range(12)]
    for row in rows:
        await a.store.create_job(row)
    counts = await asyncio.gather(a.runner.resume(), b.runner.resume())
    assert sum(counts) == len(rows)
    # More rounds while they run: nobody claims what the other holds.
    await asyncio.gather(a.runner.renew_and_take_over(), b.runner.renew_and_take_over())
    assert await a.runner.wait_idle(10) and await b.runner.wait_idle(10)
    runs = a.kind.runs + b.kind.runs
    assert sorted(job_id for _, job_id, _ in runs) == sorted(r.id for r in rows)
    assert sorted(_delivered(a.conv)) == sorted(f"delivered {r.id}" for r in rows)
    for row in rows:
        job = await a.store.get_job(row.id)
        assert job is not None and job.status == "done"


async def test_a_job_whose_owner_died_is_taken_over_from_its_saved_state_once(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    a.crash()  # killed while holding the job, after saving step 1
    assert await b.runner.renew_and_take_over() == 0  # a's lease still runs
    b.clock.offset = PAST_GRACE_S
    assert await b.runner.renew_and_take_over() == 1
    assert await b.runner.wait_idle(10)
    assert b.kind.runs == [("b", job.id, 1)]  # resumed from the saved step, not from 0
    assert _delivered(b.conv) == [f"delivered {job.id}"]
    done = await b.store.get_job(job.id)
    assert done is not None and done.status == "done" and done.claimed_by == "b"


async def test_a_replica_that_stopped_renewing_loses_the_job_and_stops_at_its_next_write(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    gate = a.kind.gate
    assert gate is not None
    # a is alive but stalled (no renewals); b finds the lease run out and finishes the job.
    b.clock.offset = PAST_GRACE_S
    assert await b.runner.renew_and_take_over() == 1
    assert await b.runner.wait_idle(10)
    gate.set()  # a wakes up and tries to deliver
    assert await a.runner.wait_idle(10)
    assert _delivered(a.conv) == [f"delivered {job.id}"]
    assert [r[0] for r in a.kind.runs + b.kind.runs] == ["a", "b"]


async def test_a_lease_is_taken_over_only_a_renewal_interval_after_it_ran_out(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    a.crash()
    # Run out, but a's last failed round may still be ending: a stops writing only then.
    b.clock.offset = LEASE_S + RENEW_S - 1
    assert await b.runner.renew_and_take_over() == 0
    held = await b.store.get_job(job.id)
    assert held is not None and held.claimed_by == "a"
    b.clock.offset = PAST_GRACE_S
    assert await b.runner.renew_and_take_over() == 1


async def test_a_replica_that_could_not_renew_posts_nothing_once_its_lease_may_have_run_out(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    gate = a.kind.gate
    assert gate is not None
    # By a's own clock its last renewal was a whole lease ago (its rounds failed, or it
    # stalled): its job stops before posting, though nobody has taken the row over yet.
    a.clock.offset = LEASE_S + 0.5
    gate.set()
    assert await a.runner.wait_idle(10)
    assert _delivered(a.conv) == []
    stopped = await a.store.get_job(job.id)
    assert stopped is not None and stopped.claimed_by == "a"
    assert stopped.status == "delivering"
    # b takes it over past the grace and delivers it, once.
    b.clock.offset = PAST_GRACE_S
    assert await b.runner.renew_and_take_over() == 1
    assert await b.runner.wait_idle(10)
    assert _delivered(a.conv) == [f"delivered {job.id}"]
    done = await b.store.get_job(job.id)
    assert done is not None and done.status == "done" and done.claimed_by == "b"


async def test_a_replica_whose_job_was_taken_stops_it_when_renewing(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    b.clock.offset = PAST_GRACE_S
    assert await b.runner.renew_and_take_over() == 1
    assert await b.runner.wait_idle(10)
    assert a.runner.is_running(job.id)
    await a.runner.renew_and_take_over()
    assert not a.runner.is_running(job.id)
    assert _delivered(a.conv) == [f"delivered {job.id}"]


async def test_start_up_claims_only_unheld_expired_or_own_jobs(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    now = time.time()
    free = _row()
    held = _row(claimed_by="other", lease_until=now + LEASE_S)
    expired = _row(claimed_by="other", lease_until=now - RENEW_S - 1)
    own = _row(claimed_by="me", lease_until=now + LEASE_S)  # this replica, before a restart
    me = await replicas("me")
    for row in (free, held, expired, own):
        await me.store.create_job(row)
    assert await me.runner.resume() == 3
    assert await me.runner.wait_idle(10)
    assert sorted(job_id for _, job_id, _ in me.kind.runs) == sorted([free.id, expired.id, own.id])
    untouched = await me.store.get_job(held.id)
    assert untouched is not None and untouched.status == "pending"
    assert untouched.claimed_by == "other"


async def test_a_graceful_stop_hands_its_jobs_to_another_replica_at_once(
    replicas: Callable[..., Awaitable[Replica]],
) -> None:
    a, b, job = await _a_holds_a_job_at_its_gate(replicas)
    await a.runner.aclose()  # a rolling deploy stops a
    released = await b.store.get_job(job.id)
    assert released is not None and released.claimed_by is None
    assert await b.runner.renew_and_take_over() == 1  # no lease to wait for
    assert await b.runner.wait_idle(10)
    assert _delivered(b.conv) == [f"delivered {job.id}"]
