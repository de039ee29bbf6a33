"""One aiosqlite connection: pragmas, serialised access, and versioned schema migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiosqlite

from bot.store.models import iso, utcnow

# Each migration is a tuple of single SQL statements, applied in order inside one transaction
# together with its row in `schema_version`. Statements are listed one by one (not a script)
# because sqlite3's executescript() commits first, which would break the all-or-nothing rule.
# To change the schema, append a new tuple; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: everything.
    (
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value BLOB NOT NULL
        )""",
        """CREATE TABLE credentials (
            platform    TEXT NOT NULL,
            workspace   TEXT NOT NULL,
            user        TEXT NOT NULL,
            service     TEXT NOT NULL,
            ciphertext  BLOB NOT NULL,
            fingerprint TEXT NOT NULL,
            meta        TEXT NOT NULL DEFAULT '{}',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (platform, workspace, user, service)
        )""",
        """CREATE TABLE usage (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            platform          TEXT NOT NULL,
            workspace         TEXT NOT NULL,
            user              TEXT NOT NULL,
            service           TEXT NOT NULL,
            command           TEXT NOT NULL,
            model             TEXT,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd          TEXT,
            request_id        TEXT,
            conversation_key  TEXT,
            created_at        TEXT NOT NULL
        )""",
        "CREATE INDEX usage_by_owner ON usage (platform, workspace, user, created_at DESC)",
        """CREATE TABLE last_calls (
            platform         TEXT NOT NULL,
            workspace        TEXT NOT NULL,
            user             TEXT NOT NULL,
            conversation_key TEXT NOT NULL,
            call             TEXT NOT NULL,
            updated_at       TEXT NOT NULL,
            PRIMARY KEY (platform, workspace, user, conversation_key)
        )""",
        """CREATE TABLE jobs (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            platform    TEXT NOT NULL,
            workspace   TEXT NOT NULL,
            user        TEXT NOT NULL,
            destination TEXT NOT NULL,
            state       TEXT NOT NULL DEFAULT '{}',
            status      TEXT NOT NULL CHECK (status IN
                ('pending', 'running', 'delivering', 'done', 'failed', 'cancelled')),
            attempts    INTEGER NOT NULL DEFAULT 0,
            error       TEXT,
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            next_run_at REAL
        )""",
        "CREATE INDEX jobs_by_status ON jobs (status, kind)",
        "CREATE INDEX jobs_by_owner ON jobs (platform, workspace, user, created_at DESC)",
        """CREATE TABLE audit (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            platform   TEXT NOT NULL,
            workspace  TEXT NOT NULL,
            user       TEXT NOT NULL,
            command    TEXT NOT NULL,
            outcome    TEXT NOT NULL,
            detail     TEXT,
            request_id TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX audit_by_owner ON audit (platform, workspace, user, created_at DESC)",
        "CREATE INDEX audit_by_time ON audit (created_at DESC)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
# How long a statement waits for another process's write lock before failing (ms).
log = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 5000


class StoreError(RuntimeError):
    """The store cannot be opened or used (schema too new, connection closed, ...)."""


class Database:
    """A single aiosqlite connection shared by every coroutine, with one lock around each use.

    aiosqlite runs statements one at a time on its own thread, but a multi-statement
    transaction could still interleave with another coroutine's statements on the same
    connection; the lock makes each `read()`/`write()` block atomic within this process.
    `BEGIN IMMEDIATE` (plus busy_timeout) does the same against other processes.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self.path = path
        self._lock = asyncio.Lock()
        self._pending: list[tuple[str, Sequence[object]]] = []
        self._submitted = 0
        self._committed = 0
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _precreate_private(path)
        # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash or
            # power loss can drop the last commits, which is the usual trade for a chat bot.
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            db = cls(conn, path)
            await db._migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection; later calls raise StoreError."""
        if self._conn is not None and (self._pending or (self._writer and not self._writer.done())):
            await self.flush()
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The open connection (raises StoreError once closed)."""
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection for reads (no transaction)."""
        async with self._lock:
            yield self.conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        async with self._lock:
            conn = self.conn
            try:
                # BEGIN is inside the try: if we are cancelled while it is queued, aiosqlite
                # still runs it, and the connection must not be left inside a transaction.
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order, so this follows any queued BEGIN/COMMIT;
                # "no transaction is active" just means there was nothing to undo.
                with contextlib.suppress(sqlite3.OperationalError):
                    await conn.execute("ROLLBACK")
                raise

    def append(self, sql: str, params: Sequence[object]) -> None:
        """Queue an append or upsert (usage, last call, audit) for the next batch.

        Every command writes three or four such rows; one transaction per batch, with one
        executemany per statement, instead of three round trips to aiosqlite's thread per row
        (with 500 concurrent chats that was a third of the bot's CPU). Reads of those tables
        call `flush()` first, so callers still read their own writes.
        """
        self._pending.append((sql, params))
        self._submitted += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="store-append-writer")

    async def flush(self) -> None:
        """Wait until everything appended so far is committed."""
        target = self._submitted
        async with self._progress:
            await self._progress.wait_for(lambda: self._committed >= target)

    async def _write_batches(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            grouped: dict[str, list[Sequence[object]]] = {}
            for sql, params in batch:
                grouped.setdefault(sql, []).append(params)
            try:
                async with self.write() as conn:
                    for sql, rows in grouped.items():
                        await conn.executemany(sql, rows)
            except Exception:
                # Never leave flush() waiting; the rows are logged as lost (counts only).
                log.exception("could not write %d queued rows", len(batch))
            async with self._progress:
                self._committed += len(batch)
                self._progress.notify_all()

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        async with self.read() as conn:
            return await _current_version(conn)

    async def _migrate(self, migrations: Sequence[tuple[str, ...]] = MIGRATIONS) -> None:
        conn = self.conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for version, statements in enumerate(migrations, start=1):
            async with self.write() as tx:
                # Re-read inside the transaction: another process may have migrated meanwhile.
                current = await _current_version(tx)
                if current > len(migrations):
                    raise StoreError(
                        f"{self.path} has schema version {current}, newer than this tokenbot "
                        f"understands ({len(migrations)}); upgrade tokenbot or use another "
                        "TOKENBOT_DATA_DIR"
                    )
                if current >= version:
                    continue
                for sql in statements:
                    await tx.execute(sql)
                await tx.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, iso(utcnow())),
                )


async def _current_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _precreate_private(path: Path) -> None:
    # The database holds ciphertexts and usage history: create it owner-only so SQLite (and
    # its -wal/-shm files, which copy the main file's mode) never starts out world-readable.
    if str(path) == ":memory:" or path.exists():
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
