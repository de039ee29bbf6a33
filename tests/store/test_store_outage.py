"""PostgreSQL going away and coming back: /readyz, and a replica's job claims.

The database is reached through a relay (tests/store/pg_proxy.py) that the tests stop, stall
and start again; the session's server keeps running for the other tests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from bot.core.http_server import HttpServer
from bot.core.job_leases import LeasePolicy
from bot.core.jobs import JobRunner
from bot.core.metrics import Metrics
from bot.store import SecretBox, Store
from tests.fakes.conversation import RecordingConversation
from tests.store.conftest import BackendUnderTest
from tests.store.pg_proxy import PostgresRelay
from tests.store.test_job_leases import DEST, StepJob, _delivered, _row


@dataclass
class ServedStore:
    """The part of a TokenBot that the HTTP server reads."""

    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    readiness: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)


@pytest.fixture
async def relay(pg_backend: BackendUnderTest) -> AsyncIterator[PostgresRelay]:
    r = PostgresRelay(str(pg_backend.where))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def relayed_store(
    relay: PostgresRelay, pg_backend: BackendUnderTest, box: SecretBox
) -> AsyncIterator[Store]:
    store = await Store.open(relay.url, box, data_dir=pg_backend.data_dir)
    try:
        yield store
    finally:
        await store.close()


async def _ready(client: httpx.AsyncClient, base: str) -> tuple[int, bool]:
    r = await client.get(f"{base}/readyz")
    return r.status_code, r.json()["checks"]["store"]


async def test_readyz_fails_while_postgresql_is_down_or_hangs_and_recovers(
    relay: PostgresRelay, relayed_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    server = HttpServer(ServedStore(relayed_store))
    port = await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        # A probe that hung on the database would hit this client's timeout and fail the test.
        async with httpx.AsyncClient(timeout=15) as client:
            assert await _ready(client, base) == (200, True)
            await relay.stop()  # the server is down: connections refused
            assert await _ready(client, base) == (503, False)
            assert await _ready(client, base) == (503, False)
            await relay.start(stall=True)  # it accepts connections and never answers
            assert await _ready(client, base) == (503, False)
            await relay.stop()
            await relay.start()
            assert await _ready(client, base) == (200, True)
    finally:
        await server.aclose()
    down = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(down) == 1  # once per outage, not once per probe
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_a_replica_that_loses_the_database_stops_claiming_and_recovers(
    relay: PostgresRelay,
    relayed_store: Store,
    pg_backend: BackendUnderTest,
    box: SecretBox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conv = RecordingConversation(DEST)
    runner = JobRunner(
        relayed_store,
        lambda _dest: conv,
        leases=LeasePolicy(replica_id="cut-off", lease_s=30, renew_every_s=5),
    )
    kind = StepJob()
    runner.register(kind)
    direct = await pg_backend.open(box)  # another replica, still connected
    try:
        await relay.stop()
        row = _row()
        await direct.create_job(row)  # a job waiting while this replica is cut off
        caplog.set_level(logging.INFO, logger="bot.core.job_leases")
        assert await runner.renew_and_take_over() == 0
        assert await runner.renew_and_take_over() == 0
        assert not runner.claiming
        lost = [r for r in caplog.records if "store is unreachable" in r.getMessage()]
        assert len(lost) == 1
        waiting = await direct.get_job(row.id)
        assert waiting is not None and waiting.claimed_by is None
        await relay.start()
        assert await runner.renew_and_take_over() == 1
        assert runner.claiming
        assert await runner.wait_idle(10)
        assert _delivered(conv) == [f"delivered {row.id}"]
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        await runner.aclose()
        await direct.close()
