"""The store: credentials (encrypted), usage, last calls, jobs and audit, over one SQLite file.

`Store` is the only entry point the rest of tokenbot needs; it delegates to one small
repository per table family so a PostgreSQL backend could replace them one by one.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from bot.store.audit import Audit, redact
from bot.store.credentials import Credentials, fingerprint
from bot.store.db import SCHEMA_VERSION, Database, StoreError
from bot.store.jobs import UNSET, JobNotFoundError, Jobs, Unset
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
    "SCHEMA_VERSION",
    "UNFINISHED_STATUSES",
    "UNSET",
    "AuditEntry",
    "CredentialInfo",
    "JobNotFoundError",
    "JobRecord",
    "JobStatus",
    "LastCall",
    "Owner",
    "SecretBox",
    "SecretBoxError",
    "Store",
    "StoreError",
    "UsageRecord",
    "fingerprint",
    "redact",
    "utcnow",
]


class Store:
    """Async facade over the database; one instance per process, safe for concurrent use."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._credentials = Credentials(db, box)
        self._usage = Usage(db)
        self._jobs = Jobs(db)
        self._audit = Audit(db)

    @classmethod
    async def open(cls, path: Path, box: SecretBox) -> Store:
        """Open the database (creating its directory), migrate it, and check the master key.

        Raises SecretBoxError if `box` is not the master key this database was used with.
        """
        db = await Database.open(Path(path))
        store = cls(db, box)
        try:
            await store._credentials.check_master_key()
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

    # -- credentials ------------------------------------------------------------------------

    async def put_credential(
        self, owner: Owner, service: str, secret: str, *, meta: dict[str, str] | None = None
    ) -> CredentialInfo:
        """Encrypt and store `owner`'s secret for `service`, replacing any previous one."""
        return await self._credentials.put(owner, service, secret, meta=meta)

    async def get_credential(self, owner: Owner, service: str) -> str | None:
        """The decrypted secret, or None if `owner` has none for `service`."""
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
        """Jobs still pending, running or delivering (to resume after a restart), oldest first."""
        return await self._jobs.unfinished(kinds)

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
