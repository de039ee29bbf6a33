"""AckFirst: work started after an ack waits for the other acks, but never longer than its cap."""

from __future__ import annotations

import asyncio
import time

from adapters.slack.supervisor import AckFirst, Supervisor


async def test_work_waits_for_in_flight_requests_then_runs() -> None:
    gate = AckFirst(max_wait_s=5)
    gate.enter()
    started = asyncio.Event()

    async def work() -> None:
        await gate.wait()
        started.set()

    task = asyncio.create_task(work())
    await asyncio.sleep(0.05)
    assert not started.is_set()  # a request is still being acked
    gate.leave()
    await asyncio.wait_for(started.wait(), 30)  # a guard against a hang, not a speed check
    await task


async def test_work_never_starves_under_continuous_requests() -> None:
    gate = AckFirst(max_wait_s=0.1)
    gate.enter()  # never leaves
    t0 = time.monotonic()
    await asyncio.wait_for(gate.wait(), 30)  # returns at its cap (30 s: a hang guard only)
    assert time.monotonic() - t0 >= 0.1 * 0.9  # and not before it (timer granularity aside)


async def test_supervisor_runs_spawned_work_after_the_gate() -> None:
    sup = Supervisor()
    sup.gate.enter()
    done: list[str] = []

    async def job() -> None:
        done.append("ran")

    sup.spawn(job(), "job")
    await asyncio.sleep(0.02)
    assert done == []
    sup.gate.leave()
    assert await sup.wait_idle(2)
    assert done == ["ran"]
