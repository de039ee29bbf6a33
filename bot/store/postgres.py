"""The PostgreSQL backend (asyncpg): a connection pool, shared by several tokenbot processes.

Chosen with TOKENBOT_DATABASE_URL=postgresql://…. The tables are those of SQLite, with the
same column names and the same storage forms (ISO-8601 text times, JSON text, exact decimal
text), so a row means the same on both and the repositories share their SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from bot.store.append_queue import QueuedAppends
from bot.store.backend import POSTGRESQL, Row, StoreError, newer_schema_message
from bot.store.location import redact_url, server_name
from bot.store.models import iso, utcnow

_JOB_STATUSES_V1 = "'pending', 'running', 'delivering', 'done', 'failed', 'cancelled'"

# Each migration is a tuple of statements applied in one transaction with its row in
# `schema_version` (PostgreSQL's DDL is transactional). Version N means the same schema as
# SQLite's version N (bot.store.db.MIGRATIONS): append to both lists together, and never
# edit a migration that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: everything.
    (
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value BYTEA NOT NULL
        )""",
        """CREATE TABLE credentials (
            platform    TEXT NOT NULL,
            workspace   TEXT NOT NULL,
            "user"      TEXT NOT NULL,
            service     TEXT NOT NULL,
            ciphertext  BYTEA NOT NULL,
            fingerprint TEXT NOT NULL,
            meta        TEXT NOT NULL DEFAULT '{}',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (platform, workspace, "user", service)
        )""",
        """CREATE TABLE usage (
            id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform          TEXT NOT NULL,
            workspace         TEXT NOT NULL,
            "user"            TEXT NOT NULL,
            service           TEXT NOT NULL,
            command           TEXT NOT NULL,
            model             TEXT,
            prompt_tokens     BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd          TEXT,
            request_id        TEXT,
            conversation_key  TEXT,
            created_at        TEXT NOT NULL
        )""",
        'CREATE INDEX usage_by_owner ON usage (platform, workspace, "user", created_at DESC)',
        """CREATE TABLE last_calls (
            platform         TEXT NOT NULL,
            workspace        TEXT NOT NULL,
            "user"           TEXT NOT NULL,
            conversation_key TEXT NOT NULL,
            call             TEXT NOT NULL,
            updated_at       TEXT NOT NULL,
            PRIMARY KEY (platform, workspace, "user", conversation_key)
        )""",
        # `seq` orders jobs created in the same microsecond, as SQLite's rowid does.
        f"""CREATE TABLE jobs (
            id          TEXT PRIMARY KEY,
            seq         BIGINT GENERATED ALWAYS AS IDENTITY,
            kind        TEXT NOT NULL,
            platform    TEXT NOT NULL,
            workspace   TEXT NOT NULL,
            "user"      TEXT NOT NULL,
            destination TEXT NOT NULL,
            state       TEXT NOT NULL DEFAULT '{{}}',
            status      TEXT NOT NULL CONSTRAINT jobs_status_check CHECK (status IN
                ({_JOB_STATUSES_V1})),
            attempts    BIGINT NOT NULL DEFAULT 0,
            error       TEXT,
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            next_run_at DOUBLE PRECISION
        )""",
        "CREATE INDEX jobs_by_status ON jobs (status, kind)",
        'CREATE INDEX jobs_by_owner ON jobs (platform, workspace, "user", created_at DESC)',
        """CREATE TABLE audit (
            id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform   TEXT NOT NULL,
            workspace  TEXT NOT NULL,
            "user"     TEXT NOT NULL,
            command    TEXT NOT NULL,
            outcome    TEXT NOT NULL,
            detail     TEXT,
            request_id TEXT,
            created_at TEXT NOT NULL
        )""",
        'CREATE INDEX audit_by_owner ON audit (platform, workspace, "user", created_at DESC)',
        "CREATE INDEX audit_by_time ON audit (created_at DESC)",
    ),
    # v2: a 'quarantined' job status (SQLite rebuilds its table; here the check is replaced).
    (
        "ALTER TABLE jobs DROP CONSTRAINT jobs_status_check",
        "ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN"
        f" ({_JOB_STATUSES_V1}, 'quarantined'))",
    ),
    # v3: job claims and a completed image's bytes (as SQLite's v3).
    (
        "ALTER TABLE jobs ADD COLUMN claimed_by TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION",
        "CREATE INDEX jobs_by_claim ON jobs (status, lease_until)",
        """CREATE TABLE job_media (
            job_id     TEXT PRIMARY KEY,
            mime       TEXT NOT NULL,
            data       BYTEA NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ),
    # v4: deliveries seen by any replica (as SQLite's v4).
    (
        """CREATE TABLE events_seen (
            key        TEXT PRIMARY KEY,
            first_seen TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX events_seen_by_expiry ON events_seen (expires_at)",
    ),
    # v5: pending Confirm buttons (as SQLite's v5).
    (
        """CREATE TABLE confirmations (
            token           TEXT PRIMARY KEY,
            platform        TEXT NOT NULL,
            workspace       TEXT NOT NULL,
            "user"          TEXT NOT NULL,
            action          TEXT NOT NULL,
            payload         TEXT NOT NULL DEFAULT '{}',
            created_at      DOUBLE PRECISION NOT NULL,
            expires_at      DOUBLE PRECISION NOT NULL,
            state           TEXT NOT NULL CHECK (state IN
                ('open', 'taken', 'cancelled', 'expired')),
            expiry_reported INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX confirmations_by_state ON confirmations (state, expires_at)",
    ),
    # v6: per-conversation memory (as SQLite's v6).
    (
        """CREATE TABLE conversations (
            conversation_key TEXT PRIMARY KEY,
            recent_family    TEXT,
            thread_family    TEXT,
            thread_command   TEXT,
            thread_model     TEXT,
            updated_at       DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX conversations_by_age ON conversations (updated_at)",
    ),
    # v7: teams: the ledger, spend reservations and workspace policy (as SQLite's v7).
    (
        """CREATE TABLE ledger (
            id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform          TEXT NOT NULL,
            workspace         TEXT NOT NULL,
            "user"            TEXT NOT NULL,
            channel           TEXT NOT NULL DEFAULT '',
            service           TEXT NOT NULL,
            command           TEXT NOT NULL,
            model             TEXT,
            prompt_tokens     BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd          TEXT NOT NULL,
            cost_units        BIGINT NOT NULL,
            cost_source       TEXT NOT NULL CHECK (cost_source IN
                ('reported', 'settlement', 'charge', 'estimate')),
            key_source        TEXT NOT NULL CHECK (key_source IN ('own', 'workspace')),
            request_id        TEXT,
            created_at        TEXT NOT NULL,
            created_epoch     DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX ledger_by_workspace ON ledger (platform, workspace, created_epoch)",
        'CREATE INDEX ledger_by_user ON ledger (platform, workspace, "user", created_epoch)',
        """CREATE TABLE spend_holds (
            id            TEXT PRIMARY KEY,
            platform      TEXT NOT NULL,
            workspace     TEXT NOT NULL,
            "user"        TEXT NOT NULL,
            service       TEXT NOT NULL,
            command       TEXT NOT NULL,
            amount_usd    TEXT NOT NULL,
            amount_units  BIGINT NOT NULL,
            key_source    TEXT NOT NULL CHECK (key_source IN ('own', 'workspace')),
            created_epoch DOUBLE PRECISION NOT NULL,
            expires_epoch DOUBLE PRECISION NOT NULL
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
    # v8: side-panel thread contexts (as SQLite's v8).
    (
        """CREATE TABLE thread_contexts (
            thread_key TEXT PRIMARY KEY,
            context    TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX thread_contexts_by_age ON thread_contexts (updated_at)",
    ),
    # v9: spend holds keep their state (as SQLite's v9).
    (
        "ALTER TABLE spend_holds ADD COLUMN state TEXT NOT NULL DEFAULT 'open'"
        " CHECK (state IN ('open', 'settled', 'released'))",
    ),
    # v10: messages posted again (as SQLite's v10).
    (
        """CREATE TABLE message_replacements (
            platform    TEXT NOT NULL,
            message_id  TEXT NOT NULL,
            replacement TEXT NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (platform, message_id)
        )""",
        "CREATE INDEX message_replacements_by_age ON message_replacements (updated_at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
# Taken (for the transaction) by migrations and start-up checks, so that replicas starting
# together migrate once and agree on one store identity. Any constant unlikely to clash.
_STORE_LOCK_ID = 0x70CB07
CONNECT_TIMEOUT_S = 10.0
POOL_MAX_SIZE = 10
CLOSE_TIMEOUT_S = 10.0
_PLACEHOLDER = re.compile(r"'[^']*'|\?")


@functools.lru_cache(maxsize=256)
def to_numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …` (a `?` inside a quoted literal stays)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "UPDATE 3", "INSERT 0 1", "DELETE 0", "CREATE TABLE".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresTx:
    """`Tx` over one pooled asyncpg connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the rows it changed."""
        return _rowcount(await self._conn.execute(to_numbered(sql), *params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement per parameter row (one round trip)."""
        await self._conn.executemany(to_numbered(sql), rows)

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """The first row, or None."""
        row: Row | None = await self._conn.fetchrow(to_numbered(sql), *params)
        return row

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Every row."""
        return list(await self._conn.fetch(to_numbered(sql), *params))

    async def lock_store(self) -> None:
        """Wait for other processes' migrations and start-up checks (until this commits)."""
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _STORE_LOCK_ID)


class PostgresDatabase(QueuedAppends):
    """An asyncpg pool: statements from different coroutines run on different connections.

    Read-modify-write transactions lock the rows they change (`Dialect.lock_rows`), so a
    compare-and-set has one winner across coroutines and processes alike.
    """

    dialect = POSTGRESQL

    def __init__(self, pool: Any, url: str) -> None:
        super().__init__()
        self._pool: Any | None = pool
        self.location = redact_url(url)
        self.marker_name = server_name(url)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> PostgresDatabase:
        """Connect to the server at `url` and bring the schema up to date (unless `migrate=False`).

        Raises StoreError, naming the server (never the password) and what to check, when
        the server cannot be reached or refuses the connection, and for a newer schema.
        """
        shown = redact_url(url)
        try:
            pool = await asyncpg.create_pool(
                dsn=url, min_size=1, max_size=POOL_MAX_SIZE, timeout=CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(_connect_problem(exc, shown)) from None
        db = cls(pool, url)
        try:
            await db._migrate(MIGRATIONS if migrate else ())
        except asyncpg.PostgresError as exc:
            await db.close()
            raise StoreError(
                f"cannot prepare the tokenbot tables in {shown} ({type(exc).__name__}: {exc}); "
                "the database user needs the right to create tables there"
            ) from None
        except BaseException:
            await db.close()
            raise
        return db

    def _is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> Any:
        """The open pool (raises StoreError once closed)."""
        if self._pool is None:
            raise StoreError("the store is closed")
        return self._pool

    async def close(self) -> None:
        """Write what is queued (a last try), then close the pool; later calls raise StoreError."""
        await self._close_queue()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresTx]:
        """A pooled connection for reads (each statement its own transaction)."""
        async with self.pool.acquire() as conn:
            yield PostgresTx(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[PostgresTx]:
        """A transaction on a pooled connection: committed on success, else rolled back."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresTx(conn)

    async def checkpoint(self) -> None:
        """Nothing to do: a commit is durable once PostgreSQL has acknowledged it."""

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        async with self.read() as tx:
            return await _current_version(tx)

    async def migrate(self) -> int:
        """Apply every migration this tokenbot knows and the database lacks; the new version."""
        await self._migrate(MIGRATIONS)
        return await self.schema_version()

    async def _migrate(self, migrations: Sequence[tuple[str, ...]] = MIGRATIONS) -> None:
        known = max(len(migrations), len(MIGRATIONS))
        async with self.write() as tx:
            await tx.lock_store()
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            self._refuse_newer(await _current_version(tx), known)
        for version, statements in enumerate(migrations, start=1):
            async with self.write() as tx:
                # The lock makes a second replica wait here, then find the version applied.
                await tx.lock_store()
                current = await _current_version(tx)
                self._refuse_newer(current, known)
                if current >= version:
                    continue
                for sql in statements:
                    await tx.execute(sql)
                await tx.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, iso(utcnow())),
                )

    def _refuse_newer(self, current: int, known: int) -> None:
        if current > known:
            raise StoreError(
                newer_schema_message(self.location, current, known, "TOKENBOT_DATABASE_URL")
            )


async def _current_version(tx: PostgresTx) -> int:
    row = await tx.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(row[0]) if row is not None else 0


def _connect_problem(exc: BaseException, shown: str) -> str:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        hint = "check the user and password in TOKENBOT_DATABASE_URL"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        hint = "create that database first (createdb), or name an existing one"
    else:
        hint = "check TOKENBOT_DATABASE_URL and that the server is running and reachable"
    return f"cannot connect to PostgreSQL at {shown} ({' '.join(detail.split())[:300]}); {hint}"
