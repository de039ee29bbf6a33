"""What a store backend offers the repositories: transactions, queued appends, migrations.

The repositories (credentials, usage, jobs, audit, identity) write one SQL text for every
backend, with `?` placeholders and the `"user"` column quoted (a reserved word in
PostgreSQL); a backend translates what it must and names its few differences in `Dialect`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class StoreError(RuntimeError):
    """The store cannot be used as asked (cannot open, schema too new, connection closed, ...)."""


class StoreCorruptError(StoreError):
    """The database or its write-ahead log is damaged; tokenbot refuses to paper over it."""


@dataclass(frozen=True)
class StoreHealth:
    """Whether queued appends (usage, audit, last calls) are reaching the disk."""

    degraded: bool
    queued_rows: int
    dropped_rows: int
    error: str | None = None


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between backends, as fragments the repositories splice in."""

    name: str
    # Appended to a SELECT inside a write transaction that reads a row it is about to change:
    # SQLite's BEGIN IMMEDIATE already excludes every other writer, PostgreSQL needs the lock.
    lock_rows: str
    # A column that orders jobs by insertion (ties in created_at): SQLite's rowid, else `seq`.
    job_order: str


SQLITE = Dialect(name="sqlite", lock_rows="", job_order="rowid")
POSTGRESQL = Dialect(name="postgresql", lock_rows=" FOR UPDATE", job_order="seq")


class Row(Protocol):
    """One result row, by column name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: Any, /) -> Any: ...


class Tx(Protocol):
    """A connection in use by one coroutine: inside a transaction for `write()`, not for `read()`."""

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed (0 for DDL)."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement once per parameter row."""
        ...

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Every row of a query."""
        ...

    async def lock_store(self) -> None:
        """Serialise this transaction against other processes' start-up writes (identity, keys)."""
        ...


class StoreBackend(Protocol):
    """One database, shared by every coroutine of the process: what `Store` is built on."""

    dialect: Dialect
    # How the database is named in messages (a file path, or a URL without its password).
    location: str
    # The name the data dir's `store.id` marker records for this database.
    marker_name: str
    max_queued_rows: int
    retry_interval_s: float

    def read(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A connection for reads (no transaction)."""
        ...

    def write(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A write transaction: committed on success, rolled back on any exception."""
        ...

    def append(self, sql: str, params: Sequence[object]) -> None:
        """Queue an append or upsert (usage, last call, audit) for the next batch."""
        ...

    def append_unit(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """Queue statements written in the same transaction, or kept or dropped together."""
        ...

    async def flush(self) -> None:
        """Try to write everything queued so far; returns once that attempt has ended."""
        ...

    def health(self) -> StoreHealth:
        """Queued and dropped appends, and the error while writes are failing."""
        ...

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        ...

    async def migrate(self) -> int:
        """Apply every migration this tokenbot knows and the database lacks; the new version."""
        ...

    async def checkpoint(self) -> None:
        """Make what is committed so far durable in the main database (SQLite's WAL)."""
        ...

    async def close(self) -> None:
        """Write what is queued (a last try), then close; later use raises StoreError."""
        ...


def newer_schema_message(location: str, current: int, known: int, setting: str) -> str:
    """The refusal for a database migrated by a newer tokenbot than this one."""
    return (
        f"{location} has schema version {current}, newer than this tokenbot understands "
        f"({known}); upgrade tokenbot or use another {setting}"
    )
