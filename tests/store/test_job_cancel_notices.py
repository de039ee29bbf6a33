"""A job cancelled on one replica is stopped by the replica that holds it, writing nothing more.

Two stores on one database stand for two replicas. PostgreSQL tells the holder at once (NOTIFY
on `tokenbot_jobs`, at commit); on every backend the holder's lease renewal also reports the
rows it holds that were cancelled, and a holder's write to a cancelled row is refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.core.job_errors import JobCancelled
from bot.core.job_leases import LeasePolicy
from bot.core.job_state import JobState
from bot.core.jobs import JobContext, JobEnd, JobKind, JobRunner
from bot.core.messages import Destination, Failure, Notice
from bot.store import JobCancelledError, JobRecord, Owner, SecretBox, Store
from tests.fakes.conversation import RecordingConversation
from tests.store.conftest import BackendUnderTest

OWNER = Owner(platform="console", workspace="w1", user="alice")
DEST = Destination(platform="console", workspace="w1", channel="general", user="alice")
LEASE_S = 30.0


def _row(**fields: object) -> JobRecord:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4().hex[:16],
        "kind": "wait",
        "owner": OWNER,
        "destination": DEST,
        "state": {"version": 1},
        "status": "running",
        "claimed_by": "a",
        "lease_until": time.time() + LEASE_S,
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return JobRecord.model_validate(values)


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# -- the store -----------------------------------------------------------------------------------


async def test_a_holder_cannot_write_to_a_row_cancelled_elsewhere(two: tuple[Store, Store]) -> None:
    a, b = two
    row = _row()
    await a.create_job(row)
    assert await b.transition_job(row.id, {"pending", "running"}, "cancelled")
    before = await a.get_job(row.id)
    with pytest.raises(JobCancelledError):
        await a.update_job(row.id, status="done", holder="a")  # a late end by the holder
    with pytest.raises(JobCancelledError):
        await a.update_job(row.id, state={"progress_ref": {"id": "1"}}, holder="a")
    with pytest.raises(JobCancelledError):
        await a.transition_job(row.id, {"running"}, "delivering", holder="a")
    after = await a.get_job(row.id)
    assert after == before and after is not None and after.status == "cancelled"


async def test_the_renewal_reports_which_held_rows_were_cancelled(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    kept, cancelled, taken = _row(), _row(), _row(claimed_by="b")
    for row in (kept, cancelled, taken):
        await a.create_job(row)
    assert await b.transition_job(cancelled.id, {"running"}, "cancelled")
    ids = [kept.id, cancelled.id, taken.id]
    renewal = await a.renew_and_check_jobs("a", ids, time.time() + 2 * LEASE_S)
    assert renewal.held == {kept.id, cancelled.id}
    assert renewal.cancelled == {cancelled.id}
    assert await a.renew_job_leases("a", ids, time.time() + 2 * LEASE_S) == {kept.id, cancelled.id}
    assert (await a.renew_and_check_jobs("a", [], time.time())).held == frozenset()


async def test_cancelling_on_one_replica_notifies_the_others_once(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    b = await pg_backend.open(box)
    heard_a: list[str] = []
    heard_b: list[str] = []
    a.job_notices.subscribe(heard_a.append)
    a.job_notices.subscribe(heard_a.append)  # subscribing twice changes nothing
    b.job_notices.subscribe(heard_b.append)
    try:
        assert a.job_notices.listening and b.job_notices.listening
        first, second, done = _row(), _row(), _row()
        for row in (first, second, done):
            await a.create_job(row)
        assert await b.transition_job(first.id, {"running"}, "cancelled")
        await b.update_job(second.id, status="cancelled")
        assert not await b.transition_job(first.id, {"running"}, "cancelled")  # lost: no notice
        await b.update_job(first.id, status="cancelled")  # already cancelled: no notice
        await b.update_job(done.id, status="done")  # not a cancel
        await _until(lambda: len(heard_a) >= 2)
        await asyncio.sleep(0.2)  # room for any notice that should not come
        assert heard_a == [first.id, second.id]
        assert heard_b == []  # b cancelled them: b's own notices are not for b
    finally:
        await b.close()
        await a.close()


async def test_a_lost_notice_listener_comes_back(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    b = await pg_backend.open(box)
    heard: list[str] = []
    a.job_notices.subscribe(heard.append)
    try:
        await pg_backend.raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            # The store's one listening connection (shared by every notice channel).
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        await _until(lambda: not a.job_notices.listening)
        await _until(lambda: a.job_notices.listening)
        row = _row()
        await a.create_job(row)
        assert await b.transition_job(row.id, {"running"}, "cancelled")
        await _until(lambda: heard == [row.id])
    finally:
        await b.close()
        await a.close()


async def test_sqlite_sends_and_hears_no_notices(tmp_path: Path, box: SecretBox) -> None:
    data = tmp_path / "data"
    store = await BackendUnderTest("sqlite", data / "tokenbot.db", data).open(box)
    try:
        assert not store.job_notices.listening
        row = _row()
        await store.create_job(row)
        assert await store.transition_job(row.id, {"running"}, "cancelled")
    finally:
        await store.close()


# -- the runner ----------------------------------------------------------------------------------


class WaitState(JobState):
    version: int = 1


class WaitJob:
    """Posts one message, then waits for `release`; raises JobCancelled if `cancel_itself`."""

    kind = "wait"
    command = "wait"
    state_model = WaitState

    def __init__(self, *, cancel_itself: bool = False) -> None:
        self.cancel_itself = cancel_itself
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, ctx: JobContext[WaitState]) -> None:
        await ctx.conversation.say([Notice(text=f"waiting {ctx.job.id}")])
        if self.cancel_itself:
            raise JobCancelled()
        self.started.set()
        await self.release.wait()
        await ctx.conversation.say([Notice(text="released")])
        await ctx.set_status("done")

    async def report_failure(self, ctx: JobContext[WaitState], failure: Failure) -> None:
        await ctx.conversation.say([failure])


class GatedRunner(JobRunner):
    """Holds every end's audit until `gate` opens (to look inside that window)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.at_gate = asyncio.Event()

    async def _audit_end(self, kind: JobKind, job: JobRecord, end: JobEnd) -> None:
        self.at_gate.set()
        await self.gate.wait()
        await super()._audit_end(kind, job, end)


def _runner(store: Store, kind: WaitJob, conv: RecordingConversation) -> GatedRunner:
    runner = GatedRunner(
        store,
        lambda _dest: conv,
        # Renewals every ten minutes: only a notice (or a round the test runs) stops a job.
        leases=LeasePolicy(replica_id="a", lease_s=1800.0, renew_every_s=600.0),
    )
    runner.register(kind)
    runner.gate.set()
    return runner


async def _ends(store: Store) -> list[str]:
    return [e.outcome for e in await store.list_audit(OWNER) if e.command == "wait"]


async def test_the_holder_stops_a_job_cancelled_elsewhere_without_writing(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    kind, conv = WaitJob(), RecordingConversation(DEST)
    runner = _runner(a, kind, conv)
    try:
        job = await runner.start("wait", OWNER, DEST, {})
        await kind.started.wait()
        assert await b.transition_job(job.id, {"running"}, "cancelled")
        if backend.is_sqlite:
            assert runner.is_running(job.id)  # no notices: the next round finds it
            await runner.renew_and_take_over()
        await _until(lambda: not runner.is_running(job.id))
        kind.release.set()
        row = await b.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        assert await _ends(b) == []  # the replica that cancelled audits it, not the holder
        assert [e.text.split()[-1] for e in conv.events] == [job.id]  # nothing said after
    finally:
        await runner.aclose()


async def test_a_job_that_has_not_heard_yet_says_nothing_more(two: tuple[Store, Store]) -> None:
    a, b = two
    kind, conv = WaitJob(), RecordingConversation(DEST)
    runner = _runner(a, kind, conv)
    try:
        job = await runner.start("wait", OWNER, DEST, {})
        await kind.started.wait()
        await a.job_notices.stop_listening()  # PostgreSQL: as if the notice were lost
        assert await b.transition_job(job.id, {"running"}, "cancelled")
        kind.release.set()  # its next message finds the row cancelled: the task stops there
        await _until(lambda: not runner.is_running(job.id))
        assert len(conv.events) == 1
        row = await b.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        assert await _ends(b) == []
    finally:
        await runner.aclose()


async def test_a_lost_notice_is_made_up_for_by_the_next_round(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    b = await pg_backend.open(box)
    kind, conv = WaitJob(), RecordingConversation(DEST)
    runner = _runner(a, kind, conv)
    try:
        job = await runner.start("wait", OWNER, DEST, {})
        await kind.started.wait()
        await a.job_notices.stop_listening()  # as if the listener were away
        assert await b.transition_job(job.id, {"running"}, "cancelled")
        await asyncio.sleep(0.2)
        assert runner.is_running(job.id)
        await runner.renew_and_take_over()
        await _until(lambda: not runner.is_running(job.id))
        row = await a.get_job(job.id)
        assert row is not None and row.status == "cancelled"
    finally:
        await runner.aclose()
        await b.close()
        await a.close()


async def test_a_job_that_cancelled_itself_is_not_stopped_before_it_audits(
    two: tuple[Store, Store],
) -> None:
    a, _b = two
    kind, conv = WaitJob(cancel_itself=True), RecordingConversation(DEST)
    runner = _runner(a, kind, conv)
    runner.gate.clear()
    try:
        job = await runner.start("wait", OWNER, DEST, {})
        await runner.at_gate.wait()  # its row says cancelled; its audit is not written yet
        row = await a.get_job(job.id)
        assert row is not None and row.status == "cancelled"
        await runner.renew_and_take_over()
        assert not runner.stop_cancelled_local(job.id)
        assert runner.is_running(job.id)
        runner.gate.set()
        assert await runner.wait_idle(5)
        assert await _ends(a) == ["cancelled"]
    finally:
        await runner.aclose()


async def test_every_notice_channel_shares_one_listening_connection(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    # Credentials, policy and job notices each listen; one connection each would take three
    # of the pool's ten from the work.
    store = await pg_backend.open(box, allow_new_store=True)
    try:
        assert store.job_notices.listening
        assert store._credentials.caching and store._policy.caching
        [(listeners,)] = await pg_backend.raw(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        assert listeners == 1
    finally:
        await store.close()
    [(left,)] = await pg_backend.raw(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    )
    assert left == 0
