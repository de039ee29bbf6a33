"""The fair work queue: per-key FIFO, round-robin between keys, limits kept, nothing lost,
errors and cancellations free their slot; and through the bot, queued messages still answered."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.app import TokenBot
from bot.core.fair_work import FairWork
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat


def _same(key: str) -> str:
    return key


class Recorder:
    """Work items that note when they start and end, optionally held by a gate."""

    def __init__(self, queue: FairWork[str]) -> None:
        self.queue = queue
        self.started: list[tuple[str, int]] = []
        self.running: dict[str, int] = defaultdict(int)
        self.peak_total = 0
        self.peak_per_key: dict[str, int] = defaultdict(int)

    async def item(self, key: str, n: int, steps: int = 0, fail: bool = False) -> int:
        self.started.append((key, n))
        self.running[key] += 1
        self.peak_per_key[key] = max(self.peak_per_key[key], self.running[key])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        try:
            for _ in range(steps):
                await asyncio.sleep(0)
            if fail:
                raise ValueError(f"{key}{n} failed")
            return n
        finally:
            self.running[key] -= 1


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _queued_behind_a_blocker(
    queue: FairWork[str], arrivals: list[str]
) -> tuple[Recorder, list[asyncio.Task[int]], asyncio.Event]:
    """Start a blocker holding the only slot, then queue `arrivals` (in that order)."""
    rec = Recorder(queue)
    gate = asyncio.Event()

    async def blocker() -> int:
        await gate.wait()
        return -1

    tasks = [asyncio.create_task(queue.run("blocker", blocker))]
    await _settle()
    counts: dict[str, int] = defaultdict(int)
    for key in arrivals:
        tasks.append(asyncio.create_task(queue.run(key, rec.item, key, counts[key])))
        counts[key] += 1
    await _settle()
    return rec, tasks, gate


def _round_robin(arrivals: list[str]) -> list[tuple[str, int]]:
    """The expected start order: keys in order of first arrival, one item each per round."""
    queues: dict[str, list[int]] = {}
    for key in arrivals:
        queues.setdefault(key, []).append(len(queues.get(key, [])))
    order: list[tuple[str, int]] = []
    while any(queues.values()):
        for key, items in queues.items():
            if items:
                order.append((key, items.pop(0)))
    return order


async def test_waiting_users_are_served_in_turn() -> None:
    queue = FairWork(_same, per_key=1, total=1)
    rec, tasks, gate = await _queued_behind_a_blocker(queue, ["a", "a", "a", "b", "b", "c"])
    assert rec.started == [] and queue.waiting == 6
    gate.set()
    await asyncio.gather(*tasks)
    assert rec.started == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert queue.running == 0 and queue.waiting == 0


async def test_a_flood_from_one_user_does_not_hold_back_another() -> None:
    queue = FairWork(_same, per_key=2)
    gate = asyncio.Event()

    async def flood_item() -> None:
        await gate.wait()

    flood = [asyncio.create_task(queue.run("flood", flood_item)) for _ in range(50)]
    await _settle()
    assert queue.running == 2 and queue.waiting == 48
    # Another user's message runs at once, while the flood waits in its own queue.
    assert await asyncio.wait_for(queue.run("other", asyncio.sleep, 0, "done"), 1) == "done"
    gate.set()
    await asyncio.gather(*flood)
    assert queue.running == 0 and queue.waiting == 0


async def test_errors_do_not_stall_the_queue() -> None:
    queue = FairWork(_same, per_key=1, total=1)
    rec = Recorder(queue)
    results = await asyncio.gather(
        *(queue.run("a", rec.item, "a", n, 1, n % 2 == 0) for n in range(6)),
        return_exceptions=True,
    )
    assert [isinstance(r, ValueError) for r in results] == [True, False] * 3
    assert rec.started == [("a", n) for n in range(6)]
    assert queue.running == 0 and queue.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_the_rest_still_run() -> None:
    queue = FairWork(_same, per_key=1)
    rec, tasks, gate = await _queued_behind_a_blocker(queue, [])
    waiting = [asyncio.create_task(queue.run("blocker", rec.item, "blocker", n)) for n in range(3)]
    await _settle()
    waiting[1].cancel()
    await _settle()
    assert queue.waiting == 2
    gate.set()
    done = await asyncio.gather(*tasks, *waiting, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert rec.started == [("blocker", 0), ("blocker", 2)]
    assert queue.running == 0 and queue.waiting == 0


async def test_a_waiter_cancelled_after_its_turn_came_passes_the_slot_on() -> None:
    queue = FairWork(_same, per_key=1)
    rec = Recorder(queue)
    waiters: list[asyncio.Task[int]] = []

    async def hold_the_slot() -> None:
        waiters.extend(asyncio.create_task(queue.run("k", rec.item, "k", n)) for n in range(2))
        await _settle()

    # This task holds the slot; when it returns, `first` is granted its turn but (this task
    # still running) has not resumed yet, and is cancelled then.
    await queue.run("k", hold_the_slot)
    first, second = waiters
    first.cancel()
    assert await asyncio.wait_for(second, 5) == 1  # (a lost slot would hang it)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert rec.started == [("k", 1)]
    assert queue.running == 0 and queue.waiting == 0


async def test_without_limits_work_runs_directly() -> None:
    queue = FairWork(_same)
    rec = Recorder(queue)
    await asyncio.gather(*(queue.run("a", rec.item, "a", n, 2) for n in range(10)))
    assert rec.peak_per_key["a"] == 10


@settings(max_examples=150, deadline=None)
@given(arrivals=st.lists(st.sampled_from("abcd"), max_size=25), per_key=st.integers(0, 2))
def test_round_robin_order_for_any_arrival_order(arrivals: list[str], per_key: int) -> None:
    async def scenario() -> list[tuple[str, int]]:
        queue = FairWork(_same, per_key=per_key, total=1)
        rec, tasks, gate = await _queued_behind_a_blocker(queue, arrivals)
        gate.set()
        await asyncio.gather(*tasks)
        return rec.started

    assert asyncio.run(scenario()) == _round_robin(arrivals)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 4), st.booleans()), max_size=30
    ),
    per_key=st.integers(0, 3),
    total=st.integers(0, 4),
)
def test_limits_fifo_and_completeness_for_any_arrivals(
    items: list[tuple[str, int, bool]], per_key: int, total: int
) -> None:
    async def scenario() -> tuple[Recorder, list[int | BaseException], FairWork[str]]:
        queue = FairWork(_same, per_key=per_key, total=total)
        rec = Recorder(queue)
        counts: dict[str, int] = defaultdict(int)
        calls = []
        for key, steps, fail in items:
            calls.append(queue.run(key, rec.item, key, counts[key], steps, fail))
            counts[key] += 1
        results = await asyncio.gather(*calls, return_exceptions=True)
        return rec, results, queue

    rec, results, queue = asyncio.run(scenario())
    # Nothing lost: every item ran once, and its own result (or error) came back to it.
    assert sorted(rec.started) == sorted(
        (key, n) for key in "abc" for n in range(sum(k == key for k, _, _ in items))
    )
    for (_key, _steps, fail), result in zip(items, results, strict=True):
        assert isinstance(result, ValueError) if fail else isinstance(result, int)
    # Each key's items started in the order they arrived.
    for key in "abc":
        mine = [n for k, n in rec.started if k == key]
        assert mine == sorted(mine)
    # The limits held throughout.
    if per_key:
        assert all(peak <= per_key for peak in rec.peak_per_key.values())
    if total:
        assert rec.peak_total <= total
    assert queue.running == 0 and queue.waiting == 0


async def test_queued_messages_of_one_user_all_get_their_replies(
    bot: TokenBot, alice: Chat, sim: AllTokenSim
) -> None:
    bot.fair_work.per_key = 1  # one of alice's messages at a time: the rest wait their turn
    outcomes = await asyncio.gather(*(alice.send(f"/alltoken-chat question {i}") for i in range(4)))
    assert all(outcomes)
    streams = alice.conv.of("stream")
    assert len(streams) == 4 and all(s.text for s in streams)
    assert sim.stats.requests_to("POST", "/v1/chat/completions") == 4
    assert bot.fair_work.running == 0 and bot.fair_work.waiting == 0
