"""SQLite writes a batch of queued rows in one trip to aiosqlite's thread, whole or not at all.

A trip is a future, a cross-thread wake-up and a task step on the event loop; a chat queues
five statements, and with one trip per statement the writer's trips were a fifth of a chat's
own CPU. The count is read from aiosqlite's own entry point, wrapped (not mocked) for the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.store.db import Database

pytestmark = pytest.mark.asyncio

INSERT_A = "INSERT INTO t_a (n) VALUES (?)"
INSERT_B = "INSERT INTO t_b (n) VALUES (?)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "batches.db")
    await database.conn.execute("CREATE TABLE t_a (n INTEGER NOT NULL)")
    await database.conn.execute("CREATE TABLE t_b (n INTEGER NOT NULL CHECK (n < 100))")
    try:
        yield database
    finally:
        await database.close()


def _count_trips(db: Database) -> list[str]:
    trips: list[str] = []
    conn = db.conn
    execute: Callable[..., Any] = conn._execute

    async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await execute(fn, *args, **kwargs)

    conn._execute = counted  # type: ignore[method-assign]
    return trips


async def _count(db: Database, table: str) -> int:
    async with db.conn.execute(f"SELECT COUNT(*) FROM {table}") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_batch_of_units_is_one_trip(db: Database) -> None:
    trips = _count_trips(db)
    for n in range(3):
        db.append_unit(((INSERT_A, (n,)), (INSERT_B, (n,))))
    await db.flush()
    assert trips == ["_commit_batch"]
    assert await _count(db, "t_a") == 3 and await _count(db, "t_b") == 3


async def test_a_failing_statement_leaves_nothing_of_its_batch(db: Database) -> None:
    db.retry_interval_s = 3600  # only this test's flushes try again
    db.append_unit(((INSERT_A, (1,)), (INSERT_B, (1,))))
    db.append_unit(((INSERT_A, (2,)), (INSERT_B, (500,))))  # t_b refuses 500
    await db.flush()
    assert db.health().degraded and db.health().queued_rows == 2
    assert await _count(db, "t_a") == 0 and await _count(db, "t_b") == 0
    # The connection is not left inside the failed transaction: a plain write still works.
    async with db.write() as tx:
        await tx.execute(INSERT_A, (7,))
    assert await _count(db, "t_a") == 1
