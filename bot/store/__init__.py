"""The store: credentials (encrypted), usage, last calls, jobs and audit, over one SQLite file.

`Store` is the only entry point the rest of tokenbot needs; it delegates to one small
repository per table family so a PostgreSQL backend could replace them one by one.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from bot.store.audit import Audit, redact
from bot.store.credentials import Credentials, CredentialUnreadableError, fingerprint
from bot.store.db import (
    SCHEMA_VERSION,
    Database,
    StoreCorruptError,
    StoreError,
    StoreHealth,
)
from bot.store.identity import (
    MARKER_NAME,
    StoreMismatchError,
    StoreMissingError,
    ensure_identity,
    read_marker,
    refuse_if_missing,
    write_marker,
)
from bot.store.jobs import UNSET, JobNotFoundError, Jobs, UnreadableJob, Unset
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
    "StoreCorruptError",
    "StoreError",
    "StoreHealth",
    "StoreMismatchError",
    "StoreMissingError",
    "UnreadableJob",
    "UsageRecord",
    "fingerprint",
    "redact",
    "utcnow",
]


class Store:
    """Async facade over the database; one instance per process, safe for concurrent use."""

    def __init__(self, db: Database, box: SecretBox, store_id: str = "") -> None:
        self._db = db
        self.store_id = store_id
        self._credentials = Credentials(db, box)
        self._usage = Usage(db)
        self._jobs = Jobs(db)
        self._audit = Audit(db)

    @classmethod
    async def open(cls, path: Path, box: SecretBox, *, allow_new_store: bool = False) -> Store:
        """Open the database (creating its directory), migrate it, and check the master key.

        Refuses (StoreMissingError, StoreMismatchError) to start on an empty or other database
        where the data dir's marker says a store existed, unless `allow_new_store`; raises
        StoreCorruptError for a damaged file or WAL, and SecretBoxError if `box` is not the
        master key this database's credentials were stored with.
        """
        path = Path(path)
        marker = read_marker(path.parent)
        if not allow_new_store:
            refuse_if_missing(path, marker)
        db = await Database.open(path)
        try:
            store_id = await ensure_identity(db, marker, allow_new=allow_new_store)
            store = cls(db, box, store_id)
            await store._credentials.check_master_key()
            write_marker(path, store_id, marker)
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
    def path(self) -> Path:
        """The database file."""
        return self._db.path

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
