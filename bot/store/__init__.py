"""The store: credentials (encrypted), usage, last calls, jobs and audit.

`Store` is the only entry point the rest of tokenbot needs. It delegates to one small
repository per table family, and those to a `StoreBackend`: SQLite (one file, the embedded
default) or PostgreSQL (shared by several processes), chosen by TOKENBOT_DATABASE_URL.
Secrets are encrypted (Fernet) before either backend sees them.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from bot.store.audit import Audit, redact
from bot.store.backend import StoreBackend, StoreCorruptError, StoreError, StoreHealth
from bot.store.credentials import Credentials, CredentialUnreadableError, fingerprint
from bot.store.db import SCHEMA_VERSION, Database
from bot.store.identity import (
    MARKER_NAME,
    Marker,
    StoreMismatchError,
    StoreMissingError,
    ensure_identity,
    read_marker,
    refuse_if_missing,
    write_marker,
)
from bot.store.jobs import UNSET, JobNotFoundError, Jobs, UnreadableJob, Unset
from bot.store.location import StoreLocation, parse_location
from bot.store.models import (
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    AuditEntry,
    CredentialInfo,
    JobRecord,
    JobStatus,
    LastCall,
    Owner,
    UsageRecord,
    utcnow,
)
from bot.store.secret_box import SecretBox, SecretBoxError
from bot.store.usage import Usage

__all__ = [
    "JOB_STATUSES",
    "MARKER_NAME",
    "SCHEMA_VERSION",
    "UNFINISHED_STATUSES",
    "UNSET",
    "AuditEntry",
    "CredentialInfo",
    "CredentialUnreadableError",
    "JobNotFoundError",
    "JobRecord",
    "JobStatus",
    "LastCall",
    "Owner",
    "SecretBox",
    "SecretBoxError",
    "Store",
    "StoreBackend",
    "StoreCorruptError",
    "StoreError",
    "StoreHealth",
    "StoreMismatchError",
    "StoreMissingError",
    "UnreadableJob",
    "UsageRecord",
    "fingerprint",
    "migrate_store",
    "parse_location",
    "redact",
    "utcnow",
]


class Store:
    """Async facade over the database; one instance per process, safe for concurrent use."""

    def __init__(self, db: StoreBackend, box: SecretBox, store_id: str = "") -> None:
        self._db = db
        self.store_id = store_id
        self._credentials = Credentials(db, box)
        self._usage = Usage(db)
        self._jobs = Jobs(db)
        self._audit = Audit(db)

    @classmethod
    async def open(
        cls,
        where: Path | str,
        box: SecretBox,
        *,
        allow_new_store: bool = False,
        data_dir: Path | None = None,
    ) -> Store:
        """Open the database (a path, `sqlite:///…` or `postgresql://…`), migrate it, check the key.

        Refuses (StoreMissingError, StoreMismatchError) to start on an empty or other database
        where the data dir's marker says a store existed, unless `allow_new_store`; raises
        StoreCorruptError for a damaged file or WAL, StoreError for a server that cannot be
        reached or a schema newer than this tokenbot, and SecretBoxError if `box` is not the
        master key this database's credentials were stored with. A SQLite store's marker is
        next to its file; a PostgreSQL store's is in `data_dir` (none when it is None).
        """
        location = _parse(where)
        marker_dir = location.sqlite_path.parent if location.sqlite_path else data_dir
        marker = read_marker(marker_dir) if marker_dir is not None else None
        db = await _open_backend(location, marker, allow_new_store=allow_new_store)
        try:
            store_id = await ensure_identity(db, marker, allow_new=allow_new_store)
            store = cls(db, box, store_id)
            await store._credentials.check_master_key()
            if marker_dir is not None:
                write_marker(marker_dir, db.marker_name, store_id, marker)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def path(self) -> Path | None:
        """The database file (None for a PostgreSQL store)."""
        return self._db.path if isinstance(self._db, Database) else None

    @property
    def location(self) -> str:
        """The database for messages: its file, or its URL without the password."""
        return self._db.location

    @property
    def backend(self) -> str:
        """Which backend holds the store: "sqlite" or "postgresql"."""
        return self._db.dialect.name

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        return await self._db.schema_version()

    def health(self) -> StoreHealth:
        """Whether usage/audit/last-call rows are reaching the disk, and how many wait or were lost."""
        return self._db.health()

    async def writes_ok(self) -> bool:
        """Readiness check: False while queued rows cannot be written (disk full, read-only)."""
        return not self._db.health().degraded

    @property
    def max_queued_rows(self) -> int:
        """How many unwritten usage/audit rows are kept in memory while writes fail."""
        return self._db.max_queued_rows

    @max_queued_rows.setter
    def max_queued_rows(self, value: int) -> None:
        self._db.max_queued_rows = max(0, int(value))

    # -- credentials ------------------------------------------------------------------------

    async def put_credential(
        self, owner: Owner, service: str, secret: str, *, meta: dict[str, str] | None = None
    ) -> CredentialInfo:
        """Encrypt and store `owner`'s secret for `service`, replacing any previous one."""
        return await self._credentials.put(owner, service, secret, meta=meta)

    async def get_credential(self, owner: Owner, service: str) -> str | None:
        """The decrypted secret, or None if `owner` has none for `service`.

        Raises CredentialUnreadableError when one is stored but no longer decrypts.
        """
        return await self._credentials.get(owner, service)

    async def credential_info(self, owner: Owner, service: str) -> CredentialInfo | None:
        """Fingerprint, times and meta of the stored secret — never the secret."""
        return await self._credentials.info(owner, service)

    async def list_credentials(self, owner: Owner) -> list[CredentialInfo]:
        """Info for every service `owner` has a secret for, by service name."""
        return await self._credentials.all_for(owner)

    async def delete_credential(self, owner: Owner, service: str) -> bool:
        """Forget `owner`'s secret for `service`; True if one was stored."""
        return await self._credentials.delete(owner, service)

    def forget_cached_credentials(
        self, owner: Owner | None = None, service: str | None = None
    ) -> None:
        """Drop cached secrets (all, `owner`'s, or one) that another process has changed."""
        self._credentials.forget_cached(owner, service)

    # -- usage ------------------------------------------------------------------------------

    async def record_usage(self, rec: UsageRecord) -> None:
        """Append a billed call to the usage ledger."""
        await self._usage.record(rec)

    async def list_usage(self, owner: Owner, limit: int = 20) -> list[UsageRecord]:
        """`owner`'s most recent calls, newest first."""
        return await self._usage.recent(owner, limit)

    async def set_last_call(self, owner: Owner, conversation_key: str, call: LastCall) -> None:
        """Remember `owner`'s latest AllToken call in a conversation."""
        await self._usage.set_last_call(owner, conversation_key, call)

    async def get_last_call(self, owner: Owner, conversation_key: str) -> LastCall | None:
        """`owner`'s latest AllToken call in a conversation, if any."""
        return await self._usage.get_last_call(owner, conversation_key)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, job: JobRecord) -> None:
        """Insert a job row (before the backend is called); ValueError if the id exists."""
        await self._jobs.create(job)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        return await self._jobs.get(job_id)

    async def update_job(
        self,
        job_id: str,
        *,
        status: str | None = None,
        state: dict[str, Any] | None = None,
        error: str | Unset | None = UNSET,
        next_run_at: float | Unset | None = UNSET,
        attempts: int | None = None,
    ) -> JobRecord:
        """Change fields (state is merged key by key), bump updated_at, return the new record.

        `error`/`next_run_at` are unchanged unless passed; pass None to clear them.
        Raises JobNotFoundError (a KeyError) for an unknown id.
        """
        return await self._jobs.update(
            job_id,
            status=status,
            state=state,
            error=error,
            next_run_at=next_run_at,
            attempts=attempts,
        )

    async def transition_job(
        self, job_id: str, expected: Collection[str], new_status: str, **fields: Any
    ) -> bool:
        """Compare-and-set the status (plus `update_job` fields); True only for the winner."""
        return await self._jobs.transition(job_id, expected, new_status, **fields)

    async def unfinished_jobs(self, kinds: Collection[str] | None = None) -> list[JobRecord]:
        """Jobs still pending, running or delivering (to resume after a restart), oldest first.

        Rows that do not decode are skipped; `load_unfinished_jobs` returns them too.
        """
        return await self._jobs.unfinished(kinds)

    async def load_unfinished_jobs(
        self, kinds: Collection[str] | None = None
    ) -> tuple[list[JobRecord], list[UnreadableJob]]:
        """Unfinished jobs that decode, and the unfinished rows that do not."""
        return await self._jobs.load_unfinished(kinds)

    async def quarantine_job(self, job_id: str, reason: str) -> bool:
        """Set an unfinished job aside as 'quarantined' with `reason`; the row is kept."""
        return await self._jobs.quarantine(job_id, reason)

    async def jobs_for(self, owner: Owner, limit: int = 20) -> list[JobRecord]:
        """`owner`'s most recent jobs, newest first."""
        return await self._jobs.for_owner(owner, limit)

    # -- audit ------------------------------------------------------------------------------

    async def audit(self, entry: AuditEntry) -> None:
        """Record who ran what and how it ended; key-shaped text is redacted first."""
        await self._audit.add(entry)

    async def list_audit(self, owner: Owner | None, limit: int = 20) -> list[AuditEntry]:
        """Newest audit entries for `owner`, or for everyone when `owner` is None (admins)."""
        return await self._audit.recent(owner, limit)


def _parse(where: Path | str) -> StoreLocation:
    try:
        return parse_location(where)
    except ValueError as exc:
        raise StoreError(str(exc)) from None


async def _open_backend(
    location: StoreLocation, marker: Marker | None, *, allow_new_store: bool, migrate: bool = True
) -> StoreBackend:
    if location.sqlite_path is not None:
        if not allow_new_store:
            # Before opening: opening would create the missing file.
            refuse_if_missing(location.sqlite_path, marker)
        return await Database.open(location.sqlite_path, migrate=migrate)
    # Imported here: asyncpg is loaded only by deployments that use PostgreSQL.
    from bot.store.postgres import PostgresDatabase

    assert location.postgres_url is not None
    return await PostgresDatabase.open(location.postgres_url, migrate=migrate)


async def migrate_store(
    where: Path | str, *, data_dir: Path | None = None, allow_new_store: bool = False
) -> tuple[str, int, int]:
    """Apply the migrations the database lacks: (its location, version before, version after).

    Needs no master key. Refuses, as `Store.open` does, a SQLite file that the data dir's
    marker says held a store and that is now missing, and a schema newer than this tokenbot.
    """
    location = _parse(where)
    marker_dir = location.sqlite_path.parent if location.sqlite_path else data_dir
    marker = read_marker(marker_dir) if marker_dir is not None else None
    db = await _open_backend(location, marker, allow_new_store=allow_new_store, migrate=False)
    try:
        before = await db.schema_version()
        after = await db.migrate()
    finally:
        await db.close()
    return db.location, before, after
