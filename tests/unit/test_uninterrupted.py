"""A job step that a stop waits for (a one-shot read, a paid submit), in plain asyncio."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bot.core.job_context import uninterrupted


class Step:
    """A step that waits at a gate, then records that it finished (or fails)."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = False
        self.fail = fail

    async def __call__(self) -> str:
        self.started.set()
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("the backend said no")
        self.finished = True
        return "task_1"


async def test_without_a_stop_it_is_the_step() -> None:
    step = Step()
    step.gate.set()
    assert await uninterrupted(step()) == "task_1"
    failing = Step(fail=True)
    failing.gate.set()
    with pytest.raises(RuntimeError, match="said no"):
        await uninterrupted(failing())


@pytest.mark.parametrize("stops", [1, 3])
async def test_a_stop_waits_for_the_step_then_stops(stops: int) -> None:
    step = Step()
    job = asyncio.create_task(uninterrupted(step()))
    await step.started.wait()
    for _ in range(stops):
        job.cancel()
        await asyncio.sleep(0)
    assert not job.done()  # still waiting for the step
    step.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert step.finished


async def test_a_step_failing_after_a_stop_ends_as_the_stop_and_is_not_left_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    step = Step(fail=True)
    job = asyncio.create_task(uninterrupted(step()))
    await step.started.wait()
    job.cancel()
    await asyncio.sleep(0)
    step.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    gc.collect()  # an unread task exception is reported when the task is collected
    await asyncio.sleep(0)
    assert "exception was never retrieved" not in caplog.text
