"""Polls stay within TOKENBOT_MAX_POLLS_PER_SECOND, and every pending video is still delivered.

Behaviour only: the budget's schedule is checked on a fake clock (exact, whatever the machine
is doing), and the end-to-end run asserts that every poll the simulator saw took a slot and
that every video arrived. The rate as seen over the wire is measured by `make bench`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.app import TokenBot
from bot.core.messages import Destination, Link
from bot.core.poll_budget import PollBudget
from bot.sim.alltoken.server import AllTokenSim, AllTokenSimConfig
from tests import leaks
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

VIDEO_GET = ("GET", "/v1/videos/generations/{id}")


class FakeTime:
    """A clock that only moves when a caller sleeps: slots are exact, not sampled."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=500),
    arrivals=st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=300),
)
async def test_no_window_gets_more_slots_than_the_rate(rate: float, arrivals: list[float]) -> None:
    time = FakeTime()
    budget = PollBudget(rate, clock=time.clock, sleep=time.sleep)
    granted: list[float] = []
    for at in sorted(arrivals):
        time.now = max(time.now, at)
        await budget.acquire()
        granted.append(time.now)
    assert budget.granted == len(arrivals)
    # Consecutive slots are at least one interval apart, so any window of w seconds holds at
    # most w * rate + 1 of them.
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert all(g >= budget.interval * (1 - 1e-9) for g in gaps), gaps


class VirtualTime:
    """Time that moves only when the test says, with real concurrent sleepers; after the first
    wake-up the loop is held up for `stall` seconds (a busy event loop), so every sleeper due
    meanwhile is woken late, one after another at the same moment."""

    def __init__(self, stall: float) -> None:
        self.now = 0.0
        self.stall = stall
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def run(self, waiters: int) -> None:
        """Let the callers run, waking the sleepers in time order."""
        for wake in range(waiters * 8):
            for _ in range(20):
                await asyncio.sleep(0)
            if not self._sleepers:
                continue
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            future.set_result(None)
            if wake == 0:
                self.now += self.stall


@pytest.mark.parametrize("stall", [0.0, 0.5, 3.0])
async def test_late_wake_ups_do_not_let_the_overdue_polls_through_at_once(stall: float) -> None:
    time = VirtualTime(stall)
    budget = PollBudget(10.0, clock=time.clock, sleep=time.sleep)
    released: list[float] = []

    async def poll() -> None:
        await budget.acquire()
        released.append(time.now)

    waiters = 60
    tasks = [asyncio.create_task(poll()) for _ in range(waiters)]
    await time.run(waiters)
    await asyncio.gather(*tasks)
    assert len(released) == waiters
    # However late the loop woke them, no second of the clock's time holds more than the rate
    # (slots reserved in advance alone let every poll whose slot had passed through at once).
    for i, start in enumerate(released):
        assert sum(1 for t in released[i:] if t < start + 1.0 - 1e-6) <= 10, released


async def test_sixty_pending_videos_all_polled_through_the_budget_and_delivered(
    tmp_path: Path,
) -> None:
    sim = AllTokenSim(AllTokenSimConfig(video_seconds=2.0, poll_after_ms=100, tokens_per_second=0))
    await sim.start()
    settings = make_settings(tmp_path / "data", sim).model_copy(
        # Sixty videos in one workspace at once: over the in-flight limit of 50 on purpose.
        update={"max_polls_per_second": 20.0, "max_jobs_per_user": 0, "max_jobs_per_workspace": 0}
    )
    bot = await TokenBot.create(settings)
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    bot.register_platform("console", factory)
    bot.test_conversations = conversations  # type: ignore[attr-defined]
    try:
        users = [Chat(bot, f"u{k}", channel=f"V{k:02d}") for k in range(60)]
        key = sim.issue_key(1e6)
        leaks.secret(key)
        for chat in users:
            await chat.give_key(key)
        for k, chat in enumerate(users):
            await chat.send(f"/alltoken-video waves {k} --duration=4")
        # Generous: 60 videos of 2 s at 20 polls/s need a few seconds; a busy machine more.
        assert await bot.jobs.wait_idle(300)
        for chat in users:
            links = [p for e in chat.conv.events for p in e.parts if isinstance(p, Link)]
            assert links, chat.conv.events
        polls = sim.stats.requests[VIDEO_GET]
        assert polls >= 60
        # Every status poll waited for a slot of the process-wide budget.
        assert polls <= bot.jobs.budget.granted
    finally:
        await bot.aclose()
        await sim.stop()
