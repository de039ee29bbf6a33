"""The SQLite backend: one aiosqlite connection, its pragmas, serialised access and migrations.

The embedded default (`make demo`, one process). PostgreSQL is in `bot.store.postgres`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiosqlite

from bot.store.append_queue import DEFAULT_MAX_QUEUED_ROWS, RETRY_INTERVAL_S, QueuedAppends
from bot.store.backend import (
    SQLITE,
    Row,
    StoreCorruptError,
    StoreError,
    StoreHealth,
    newer_schema_message,
)
from bot.store.models import iso, utcnow
from bot.store.wal_check import wal_damage

__all__ = [
    "DEFAULT_MAX_QUEUED_ROWS",
    "MIGRATIONS",
    "RETRY_INTERVAL_S",
    "SCHEMA_VERSION",
    "Database",
    "StoreCorruptError",
    "StoreError",
    "StoreHealth",
    "os_problem",
]

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
    # v3: job claims (which replica runs a job, until when) and a completed image's bytes,
    # kept in the store so whichever replica takes the job over finds them.
    (
        "ALTER TABLE jobs ADD COLUMN claimed_by TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_until REAL",
        "CREATE INDEX jobs_by_claim ON jobs (status, lease_until)",
        """CREATE TABLE job_media (
            job_id     TEXT PRIMARY KEY,
            mime       TEXT NOT NULL,
            data       BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ),
    # v4: deliveries seen by any replica (Slack event ids, retries, replayed signatures).
    # Times are epoch seconds.
    (
        """CREATE TABLE events_seen (
            key        TEXT PRIMARY KEY,
            first_seen TEXT NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX events_seen_by_expiry ON events_seen (expires_at)",
    ),
    # v5: pending Confirm buttons, single-use (state moves from 'open' once).
    (
        """CREATE TABLE confirmations (
            token           TEXT PRIMARY KEY,
            platform        TEXT NOT NULL,
            workspace       TEXT NOT NULL,
            user            TEXT NOT NULL,
            action          TEXT NOT NULL,
            payload         TEXT NOT NULL DEFAULT '{}',
            created_at      REAL NOT NULL,
            expires_at      REAL NOT NULL,
            state           TEXT NOT NULL CHECK (state IN
                ('open', 'taken', 'cancelled', 'expired')),
            expiry_reported INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX confirmations_by_state ON confirmations (state, expires_at)",
    ),
    # v6: per-conversation memory: the family used last, what a thread's replies continue.
    (
        """CREATE TABLE conversations (
            conversation_key TEXT PRIMARY KEY,
            recent_family    TEXT,
            thread_family    TEXT,
            thread_command   TEXT,
            thread_model     TEXT,
            updated_at       REAL NOT NULL
        )""",
        "CREATE INDEX conversations_by_age ON conversations (updated_at)",
    ),
    # v7: teams. The ledger of charged calls (never prompt text), spend reservations held
    # while a call or job runs, and workspace policy (JSON values). `cost_units` and
    # `amount_units` repeat the decimal text in 1e-10 USD so sums are exact integers in SQL.
    (
        """CREATE TABLE ledger (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            platform          TEXT NOT NULL,
            workspace         TEXT NOT NULL,
            user              TEXT NOT NULL,
            channel           TEXT NOT NULL DEFAULT '',
            service           TEXT NOT NULL,
            command           TEXT NOT NULL,
            model             TEXT,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd          TEXT NOT NULL,
            cost_units        INTEGER NOT NULL,
            cost_source       TEXT NOT NULL CHECK (cost_source IN
                ('reported', 'settlement', 'charge', 'estimate')),
            key_source        TEXT NOT NULL CHECK (key_source IN ('own', 'workspace')),
            request_id        TEXT,
            created_at        TEXT NOT NULL,
            created_epoch     REAL NOT NULL
        )""",
        "CREATE INDEX ledger_by_workspace ON ledger (platform, workspace, created_epoch)",
        "CREATE INDEX ledger_by_user ON ledger (platform, workspace, user, created_epoch)",
        """CREATE TABLE spend_holds (
            id            TEXT PRIMARY KEY,
            platform      TEXT NOT NULL,
            workspace     TEXT NOT NULL,
            user          TEXT NOT NULL,
            service       TEXT NOT NULL,
            command       TEXT NOT NULL,
            amount_usd    TEXT NOT NULL,
            amount_units  INTEGER NOT NULL,
            key_source    TEXT NOT NULL CHECK (key_source IN ('own', 'workspace')),
            created_epoch REAL NOT NULL,
            expires_epoch REAL NOT NULL
        )""",
        "CREATE INDEX spend_holds_by_workspace ON spend_holds (platform, workspace, expires_epoch)",
        """CREATE TABLE workspace_policy (
            platform   TEXT NOT NULL,
            workspace  TEXT NOT NULL,
            key        TEXT NOT NULL,
            value      TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            PRIMARY KEY (platform, workspace, key)
        )""",
    ),
    # v8: what a side-panel thread (Slack's assistant thread) looks at: the open channel's
    # ids as JSON, so a restart or another replica still knows it.
    (
        """CREATE TABLE thread_contexts (
            thread_key TEXT PRIMARY KEY,
            context    TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX thread_contexts_by_age ON thread_contexts (updated_at)",
    ),
    # v9: a spend hold keeps its state instead of being deleted, so a settle that loses the
    # race to a release (Cancel during delivery) still records the charge, exactly once.
    (
        "ALTER TABLE spend_holds ADD COLUMN state TEXT NOT NULL DEFAULT 'open'"
        " CHECK (state IN ('open', 'settled', 'released'))",
    ),
    # v10: a message posted again (its original could no longer be edited), by the original's
    # id, so every replica's later edits go to the copy instead of posting one more.
    (
        """CREATE TABLE message_replacements (
            platform    TEXT NOT NULL,
            message_id  TEXT NOT NULL,
            replacement TEXT NOT NULL,
            updated_at  REAL NOT NULL,
            PRIMARY KEY (platform, message_id)
        )""",
        "CREATE INDEX message_replacements_by_age ON message_replacements (updated_at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

# How long a statement waits for another process's write lock before failing (ms).
BUSY_TIMEOUT_MS = 5000


def _commit_batch(
    conn: aiosqlite.Connection, grouped: Mapping[str, Sequence[Sequence[object]]]
) -> None:
    """Run on aiosqlite's thread: every statement's rows in one transaction, or none."""
    raw = conn._conn  # on that thread: the sqlite3 connection itself
    raw.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in grouped.items():
            raw.executemany(sql, rows)
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            raw.execute("ROLLBACK")
        raise


class SqliteTx:
    """`Tx` over the aiosqlite connection (the caller holds the Database's lock)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the rows it changed."""
        async with self._conn.execute(sql, params) as cur:
            return max(cur.rowcount, 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement per parameter row."""
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """The first row, or None."""
        async with self._conn.execute(sql, params) as cur:
            row: Row | None = await cur.fetchone()
        return row

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Every row."""
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def lock_store(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already excludes every other writer."""


class Database(QueuedAppends):
    """A single aiosqlite connection shared by every coroutine, with one lock around each use.

    aiosqlite runs statements one at a time on its own thread, but a multi-statement
    transaction could still interleave with another coroutine's statements on the same
    connection; the lock makes each `read()`/`write()` block atomic within this process.
    `BEGIN IMMEDIATE` (plus busy_timeout) does the same against other processes.
    """

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        super().__init__()
        self._conn: aiosqlite.Connection | None = conn
        self.path = path
        self.location = str(path)
        self.marker_name = path.name
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, migrate: bool = True) -> Database:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        Raises StoreCorruptError for a damaged file or WAL and StoreError when it cannot be
        opened at all, each with the path and what to do, rather than starting on less data.
        With `migrate=False` the schema is left as it is (but a newer one is still refused).
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
            await db._migrate(MIGRATIONS if migrate else ())
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(_sqlite_problem(exc, path)) from exc
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection (a last try for queued rows first); later calls raise StoreError."""
        await self._close_queue()
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await conn.close()

    def _is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> aiosqlite.Connection:
        """The open connection (raises StoreError once closed)."""
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteTx]:
        """Exclusive use of the connection for reads (no transaction)."""
        async with self._lock:
            yield SqliteTx(self.conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[SqliteTx]:
        """A write transaction: committed on success, rolled back on any exception."""
        async with self._lock:
            conn = self.conn
            try:
                # BEGIN is inside the try: if we are cancelled while it is queued, aiosqlite
                # still runs it, and the connection must not be left inside a transaction.
                await conn.execute("BEGIN IMMEDIATE")
                yield SqliteTx(conn)
                await conn.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order, so this follows any queued BEGIN/COMMIT;
                # "no transaction is active" just means there was nothing to undo.
                with contextlib.suppress(sqlite3.OperationalError):
                    await conn.execute("ROLLBACK")
                raise

    async def _write_rows(self, grouped: Mapping[str, Sequence[Sequence[object]]]) -> None:
        # The whole batch in one trip to aiosqlite's thread, not one per statement (BEGIN, an
        # executemany per table, COMMIT): each trip is a future, a cross-thread wake-up and a
        # task step on the event loop, and a chat's rows are five statements.
        async with self._lock:
            conn = self.conn
            await conn._execute(_commit_batch, conn, grouped)

    async def checkpoint(self) -> None:
        """Copy the WAL into the main file, so what is committed does not depend on the WAL."""
        async with self._lock:
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        async with self._lock:
            return await _current_version(self.conn)

    async def migrate(self) -> int:
        """Apply every migration this tokenbot knows and the file lacks; the new version."""
        try:
            await self._migrate(MIGRATIONS)
        except sqlite3.Error as exc:
            raise StoreError(_sqlite_problem(exc, self.path)) from exc
        return await self.schema_version()

    async def _migrate(self, migrations: Sequence[tuple[str, ...]] = MIGRATIONS) -> None:
        conn = self.conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        # Known versions: those of this tokenbot, even when asked to apply fewer (or none).
        known = max(len(migrations), len(MIGRATIONS))
        async with self._lock:
            current = await _current_version(conn)
        if current > known:
            raise StoreError(
                newer_schema_message(self.location, current, known, "TOKENBOT_DATA_DIR")
            )
        for version, statements in enumerate(migrations, start=1):
            async with self.write() as tx:
                # Re-read inside the transaction: another process may have migrated meanwhile.
                current = await _current_version(conn)
                if current > known:
                    raise StoreError(
                        newer_schema_message(self.location, current, known, "TOKENBOT_DATA_DIR")
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
