"""Every command × every backend fault: a clear reply, jobs ended, no task left, nothing unlogged.

Faults are single-shot (one blip on the command's request), injected through each simulator's
own fault controls. The outcome of every case goes into the table printed at the end.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.backends.alltoken import jobs as alltoken_jobs
from bot.sim.alltoken.server import AllTokenSim
from tests.faults.support import (
    CLIENT_TIMEOUT_S,
    FAULTS,
    OUTCOMES,
    SLOW_MS,
    TARGETS,
    FaultKind,
    Target,
    assert_clear_reply,
    assert_no_unannounced_work,
    eventually,
    inject,
    leftover_tasks,
    outcome,
    rig,
    unhandled_errors,
)

# Only the pairs where the fault can happen are cases (nothing is skipped); the others are
# n/a cells of the printed matrix (Target.applies says why).
_PAIRS = [(t, f, t.applies(f) is None) for t in TARGETS for f in FAULTS]
CASES = [pytest.param(t, f, id=f"{t.name}|{f.name}") for t, f, can in _PAIRS if can]
OUTCOMES.update({(t.name, f.name): "n/a" for t, f, can in _PAIRS if not can})


@pytest.mark.parametrize(("target", "fault"), CASES)
async def test_backend_fault(
    target: Target,
    fault: FaultKind,
    sim: AllTokenSim,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One command meets one fault and ends with a clear reply, and nothing is left behind."""
    OUTCOMES[(target.name, fault.name)] = "?"
    # Image/video jobs back off DEFAULT_POLL_S × n after a transient poll error: keep it tiny.
    monkeypatch.setattr(alltoken_jobs, "DEFAULT_POLL_S", 0.05)
    caplog.set_level(logging.WARNING)
    timeout = CLIENT_TIMEOUT_S if fault.slow else 5.0
    async with rig(tmp_path / "data", sim, timeout_s=timeout) as r:
        chat = await r.user(target)
        before = set(asyncio.all_tasks())
        triggered = inject(r, target, fault)

        assert await chat.send(target.text)
        assert await r.bot.jobs.wait_idle(15), "a job is still running"

        OUTCOMES[(target.name, fault.name)] = outcome(chat.conv)
        # A slow fault counts its hit only after its delay: give it that long.
        assert await eventually(triggered, SLOW_MS / 1000 + 1), "the fault was never hit"
        assert_clear_reply(chat.conv)
        if target.job:
            jobs = await r.bot.store.jobs_for(chat.owner)
            assert jobs and all(j.status in ("done", "failed") for j in jobs), jobs
        if target.job and target.backend == "alltoken":
            await assert_no_unannounced_work(r, chat, fault)
        assert not await leftover_tasks(before)
        assert not unhandled_errors(caplog.records)
        if fault.retry_after is not None and target.name != "fallback chat":
            # One 429 with Retry-After is retried once and succeeds (the proxy's 429s are
            # spend limits, final by design).
            assert OUTCOMES[(target.name, fault.name)] == "↻ok", chat.conv.text()
