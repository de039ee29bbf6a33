"""One aiosqlite connection: pragmas, serialised access, and versioned schema migrations."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.store.models import iso, utcnow
from bot.store.wal_check import wal_damage

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
    # v2: a 'quarantined' job status, for rows that cannot be resumed (kept, never deleted).
    # SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
    (
        """CREATE TABLE jobs_v2 (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            platform    TEXT NOT NULL,
            workspace   TEXT NOT NULL,
            user        TEXT NOT NULL,
            destination TEXT NOT NULL,
            state       TEXT NOT NULL DEFAULT '{}',
            status      TEXT NOT NULL CHECK (status IN
                ('pending', 'running', 'delivering', 'done', 'failed', 'cancelled',
                 'quarantined')),
            attempts    INTEGER NOT NULL DEFAULT 0,
            error       TEXT,
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            next_run_at REAL
        )""",
        "INSERT INTO jobs_v2 SELECT id, kind, platform, workspace, user, destination, state,"
        " status, attempts, error, created_at, updated_at, next_run_at FROM jobs",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v2 RENAME TO jobs",
        "CREATE INDEX jobs_by_status ON jobs (status, kind)",
        "CREATE INDEX jobs_by_owner ON jobs (platform, workspace, user, created_at DESC)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
log = logging.getLogger(__name__)
# How long a statement waits for another process's write lock before failing (ms).
BUSY_TIMEOUT_MS = 5000
# Usage, audit and last-call rows kept in memory while the store cannot write them (disk
# full, read-only file system); beyond this the oldest are dropped, and counted.
DEFAULT_MAX_QUEUED_ROWS = 10_000
# How long a failing store waits before it tries the queued rows again on its own.
RETRY_INTERVAL_S = 5.0


class StoreError(RuntimeError):
    """The store cannot be opened or used (schema too new, connection closed, ...)."""


class StoreCorruptError(StoreError):
    """The database or its write-ahead log is damaged; tokenbot refuses to paper over it."""


@dataclass(frozen=True)
class StoreHealth:
    """Whether queued appends (usage, audit, last calls) are reaching the disk."""

    degraded: bool
    queued_rows: int
    dropped_rows: int
    error: str | None = None


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
        # Every row submitted before this index is written (or was dropped, and counted).
        self._committed = 0
        # Failed batch attempts so far: a flush() waiting on one is released by its failure.
        self._failures = 0
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self.max_queued_rows = DEFAULT_MAX_QUEUED_ROWS
        self.retry_interval_s = RETRY_INTERVAL_S
        self.dropped_rows = 0
        self._write_error: str | None = None
        self._episode_dropped = 0

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        Raises StoreCorruptError for a damaged file or WAL and StoreError when it cannot be
        opened at all, each with the path and what to do, rather than starting on less data.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _precreate_private(path)
        except OSError as exc:
            raise StoreError(os_problem(exc, path)) from exc
        damage = await asyncio.to_thread(wal_damage, Path(f"{path}-wal"))
        if damage:
            raise StoreCorruptError(
                f"the write-ahead log {path}-wal is damaged ({damage}). Stop tokenbot, copy "
                f"{path.parent} somewhere safe, then restore it from a backup or move "
                f"{path.name}-wal aside to continue without those transactions"
            )
        try:
            # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT ourselves.
            conn = await aiosqlite.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(_sqlite_problem(exc, path)) from exc
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash or
            # power loss can drop the last commits, which is the usual trade for a chat bot.
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await _quick_check(conn, path)
            db = cls(conn, path)
            await db._migrate()
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(_sqlite_problem(exc, path)) from exc
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection (a last try for queued rows first); later calls raise StoreError."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._conn is not None and (self._pending or (self._writer and not self._writer.done())):
            await self.flush()
        if self._pending:
            lost = len(self._pending)
            self.dropped_rows += lost
            self._pending = []
            log.error(
                "closing the store with %d usage/audit rows it could not write (%s); they are lost",
                lost,
                self._write_error,
            )
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

    def health(self) -> StoreHealth:
        """Queued and dropped appends, and the error while writes are failing."""
        return StoreHealth(
            degraded=self._write_error is not None,
            queued_rows=len(self._pending),
            dropped_rows=self.dropped_rows,
            error=self._write_error,
        )

    def append(self, sql: str, params: Sequence[object]) -> None:
        """Queue an append or upsert (usage, last call, audit) for the next batch.

        Every command writes three or four such rows; one transaction per batch, with one
        executemany per statement, instead of three round trips to aiosqlite's thread per row
        (with 500 concurrent chats that was a third of the bot's CPU). Reads of those tables
        call `flush()` first, so callers still read their own writes. While the store cannot
        write, rows stay queued (at most `max_queued_rows`) and are retried.
        """
        if self._conn is None:
            raise StoreError("the store is closed")
        self._pending.append((sql, params))
        self._submitted += 1
        if self._write_error is None:
            self._kick()
        else:
            self._trim()  # a retry is scheduled; keep memory bounded meanwhile

    async def flush(self) -> None:
        """Try to write everything queued so far; returns once that attempt has ended.

        When the store is failing, the rows stay queued (see `health()`) instead of being lost.
        """
        if self._conn is None:
            return
        target, failures = self._submitted, self._failures
        if self._committed >= target:
            return
        self._kick()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._committed >= target or self._failures > failures
            )

    def _kick(self) -> None:
        if self._conn is not None and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_batches(), name="store-append-writer")

    def _trim(self) -> None:
        excess = len(self._pending) - max(self.max_queued_rows, 0)
        if excess > 0:
            # The oldest go first: the newest rows describe what users are doing now.
            del self._pending[:excess]
            self.dropped_rows += excess
            self._episode_dropped += excess

    async def _write_batches(self) -> None:
        while self._pending and self._conn is not None:
            batch, self._pending = self._pending, []
            upto = self._submitted
            grouped: dict[str, list[Sequence[object]]] = {}
            for sql, params in batch:
                grouped.setdefault(sql, []).append(params)
            try:
                async with self.write() as conn:
                    for sql, rows in grouped.items():
                        await conn.executemany(sql, rows)
            except Exception as exc:
                self._pending = batch + self._pending
                self._trim()
                self._failed(exc)
                async with self._progress:
                    self._failures += 1
                    self._progress.notify_all()
                return
            self._recovered(len(batch))
            async with self._progress:
                self._committed = max(self._committed, upto)
                self._progress.notify_all()

    def _failed(self, exc: Exception) -> None:
        if self._write_error is None:
            # Once per episode, not once per row or retry.
            log.error(
                "store writes to %s are failing (%s): keeping usage/audit rows in memory "
                "(up to %d) and retrying every %g s",
                self.path,
                exc,
                self.max_queued_rows,
                self.retry_interval_s,
            )
        self._write_error = f"{type(exc).__name__}: {exc}"
        if self._retry is None and self._conn is not None:
            self._retry = asyncio.get_running_loop().call_later(
                self.retry_interval_s, self._retry_now
            )

    def _retry_now(self) -> None:
        self._retry = None
        self._kick()

    def _recovered(self, written: int) -> None:
        if self._write_error is None:
            return
        log.warning(
            "store writes to %s work again: %d queued rows written, %d dropped meanwhile",
            self.path,
            written,
            self._episode_dropped,
        )
        self._write_error = None
        self._episode_dropped = 0

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


async def _quick_check(conn: aiosqlite.Connection, path: Path) -> None:
    async with conn.execute("PRAGMA quick_check") as cur:
        rows = await cur.fetchall()
    problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
    if problems:
        raise StoreCorruptError(
            f"{path} is damaged (integrity check: {problems[0][:200]}). Stop tokenbot, keep a "
            "copy of the file, and restore it from a backup (`sqlite3 tokenbot.db .recover` "
            "may save what is left)"
        )


def _sqlite_problem(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return (
            f"{path} is not a readable tokenbot database ({text}). Stop tokenbot, keep a copy "
            "of it, and restore it from a backup; tokenbot will not replace it with an empty one"
        )
    if "disk is full" in lowered or "disk full" in lowered:
        return (
            f"cannot write {path}: the disk is full. Free space on that file system and start again"
        )
    if "disk i/o error" in lowered:
        return (
            f"cannot write {path} (disk I/O error): the disk may be full or failing. Free space "
            "or check the disk, then start again"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return (
            f"cannot open {path} for writing ({text}). Make {path.parent} writable by this user "
            "or point TOKENBOT_DATA_DIR at a writable directory"
        )
    return f"cannot open {path} ({text}); check the file and its directory, or restore a backup"


def os_problem(exc: OSError, path: Path) -> str:
    """A one-line explanation of a failed file operation at `path`, with what to do."""
    where = exc.filename or path
    if exc.errno == errno.ENOSPC:
        return f"cannot write {where}: the disk is full. Free space on that file system and start again"
    return (
        f"cannot write {where} ({exc.strerror or exc}). Make {path.parent} writable by this "
        "user or point TOKENBOT_DATA_DIR at a writable directory"
    )


def _precreate_private(path: Path) -> None:
    # The database holds ciphertexts and usage history: create it owner-only so SQLite (and
    # its -wal/-shm files, which copy the main file's mode) never starts out world-readable.
    if str(path) == ":memory:" or path.exists():
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
