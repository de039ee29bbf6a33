"""When a replica that cannot reach its store stops its jobs and stops posting (no server).

The runner here is a stand-in built on LeasedRunner, the lease keeper's whole view of a job
runner: a store whose renewal rounds fail after taking a set time, and a clock the test moves.
"""

from __future__ import annotations

import pytest

from bot.core.job_leases import LeaseKeeper, LeaseLost, LeasePolicy
from bot.store.jobs import LeaseRenewal

LEASE_S, RENEW_S = 3.0, 1.0


class Clock:
    """Seconds that only the test (and the slow store) move."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class SlowStore:
    """Renewal rounds that take `round_s` by the clock and then fail, as a timed-out round."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.round_s = 0.0
        self.failing = False

    async def renew_and_check_jobs(
        self, replica: str, ids: list[str], lease_until: float
    ) -> LeaseRenewal:
        self.clock.now += self.round_s
        if self.failing:
            raise TimeoutError
        return LeaseRenewal(frozenset(ids), frozenset())


class Runner:
    """Holds two jobs; records whether the keeper stopped them."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.store = SlowStore(self.clock)
        self.leases = LeasePolicy(replica_id="r0", lease_s=LEASE_S, renew_every_s=RENEW_S)
        self.jobs = ["j1", "j2"]

    @property
    def replica_id(self) -> str:
        return self.leases.replica_id

    def running_ids(self) -> list[str]:
        return list(self.jobs)

    async def claim_available(self, now: float) -> tuple[int, int]:
        return 0, len(self.jobs)

    async def stop_local(self, job_id: str) -> None:
        self.jobs.remove(job_id)

    def stop_cancelled_local(self, job_id: str) -> bool:
        return False

    def stop_all_local(self) -> None:
        self.jobs.clear()


async def test_a_round_that_fails_past_the_lease_stops_the_jobs_even_if_it_started_before() -> None:
    runner = Runner()
    keeper = LeaseKeeper(runner)  # type: ignore[arg-type]
    assert await keeper.renew_and_take_over() == 0 and runner.jobs  # renewed at 1000
    runner.store.failing = True
    runner.clock.now += 2.5  # the next round starts inside the lease ...
    runner.store.round_s = RENEW_S  # ... and times out after it ended
    await keeper.renew_and_take_over()
    assert runner.jobs == []


async def test_a_round_that_fails_inside_the_lease_keeps_the_jobs() -> None:
    runner = Runner()
    keeper = LeaseKeeper(runner)  # type: ignore[arg-type]
    await keeper.renew_and_take_over()
    runner.store.failing, runner.store.round_s = True, RENEW_S
    runner.clock.now += 1.0
    await keeper.renew_and_take_over()  # failed at 1002: one more chance to renew
    assert runner.jobs == ["j1", "j2"] and not keeper.claiming


@pytest.mark.parametrize("unrenewed_s", [LEASE_S - 0.01, LEASE_S, LEASE_S + 5])
async def test_no_message_once_the_lease_may_have_run_out(unrenewed_s: float) -> None:
    runner = Runner()
    keeper = LeaseKeeper(runner)  # type: ignore[arg-type]
    await keeper.renew_and_take_over()
    runner.clock.now += unrenewed_s
    lapsed = keeper.lapsed("j1")
    if unrenewed_s < LEASE_S:
        assert lapsed is None
    else:
        assert isinstance(lapsed, LeaseLost) and "r0" in str(lapsed)
