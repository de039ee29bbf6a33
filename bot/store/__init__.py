"""The store: credentials (encrypted), usage, last calls, jobs, audit, and teams' ledger and policy.

`Store` is the only entry point the rest of tokenbot needs. It delegates to one small
repository per table family, and those to a `StoreBackend`: SQLite (one file, the embedded
default) or PostgreSQL (shared by several processes), chosen by TOKENBOT_DATABASE_URL.
Secrets are encrypted (Fernet) before either backend sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from bot.store.audit import Audit, redact
from bot.store.backend import StoreBackend, StoreCorruptError, StoreError, StoreHealth
from bot.store.confirmations import Confirmation, ConfirmationRows
from bot.store.conversations import ConversationRecord, ConversationRows, ThreadNote
from bot.store.credentials import Credentials, CredentialUnreadableError, fingerprint
from bot.store.db import SCHEMA_VERSION, Database
from bot.store.events import SeenEvents
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
from bot.store.job_limits import JobLimitRows
from bot.store.job_notices import JobNotices
from bot.store.jobs import (
    UNSET,
    JobCancelledError,
    JobNotFoundError,
    JobNotHeldError,
    Jobs,
    LeaseRenewal,
    UnreadableJob,
    Unset,
)
from bot.store.ledger import Ledger
from bot.store.location import StoreLocation, parse_location
from bot.store.message_replacements import MessageReplacementRows
from bot.store.models import (
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    WORKSPACE_USER,
    AuditEntry,
    CostSource,
    CredentialInfo,
    JobMedia,
    JobRecord,
    JobStatus,
    KeySource,
    LastCall,
    LedgerEntry,
    Owner,
    SpendHoldRecord,
    SpendSnapshot,
    UsageRecord,
    period_bounds,
    utcnow,
)
from bot.store.notice_listener import NoticeListener
from bot.store.policy import PolicyRows
from bot.store.secret_box import SecretBox, SecretBoxError
from bot.store.spend_holds import SpendHolds, Verdict
from bot.store.thread_contexts import ThreadContextRows
from bot.store.usage import Usage

V = TypeVar("V", bound=Verdict)
T = TypeVar("T")

__all__ = [
    "JOB_STATUSES",
    "MARKER_NAME",
    "SCHEMA_VERSION",
    "UNFINISHED_STATUSES",
    "UNSET",
    "WORKSPACE_USER",
    "AuditEntry",
    "Confirmation",
    "ConversationRecord",
    "CostSource",
    "CredentialInfo",
    "CredentialUnreadableError",
    "JobCancelledError",
    "JobMedia",
    "JobNotFoundError",
    "JobNotHeldError",
    "JobNotices",
    "JobRecord",
    "JobStatus",
    "KeySource",
    "LastCall",
    "LeaseRenewal",
    "LedgerEntry",
    "Owner",
    "SecretBox",
    "SecretBoxError",
    "SpendHoldRecord",
    "SpendSnapshot",
    "Store",
    "StoreBackend",
    "StoreCorruptError",
    "StoreError",
    "StoreHealth",
    "StoreMismatchError",
    "StoreMissingError",
    "ThreadNote",
    "UnreadableJob",
    "UsageRecord",
    "fingerprint",
    "migrate_store",
    "parse_location",
    "period_bounds",
    "redact",
    "utcnow",
]


class Store:
    """Async facade over the database; one instance per process, safe for concurrent use."""

    def __init__(self, db: StoreBackend, box: SecretBox, store_id: str = "") -> None:
        self._db = db
        self.store_id = store_id
        # One LISTEN connection (PostgreSQL) for every channel below, not one each.
        self._notices = NoticeListener(db)
        self._credentials = Credentials(db, box, self._notices)
        self._usage = Usage(db)
        # Jobs cancelled on another replica (PostgreSQL LISTEN/NOTIFY): their holder stops them.
        self.job_notices = JobNotices(db, self._notices)
        self._jobs = Jobs(db, self.job_notices, box)
        self.job_limits = JobLimitRows(db, self._jobs)  # in-flight limits, checked at insert
        self._audit = Audit(db)
        self._ledger = Ledger(db)
        self._holds = SpendHolds(db)
        self._policy = PolicyRows(db, self._notices)
        # State that outlives a message, shared by every process on this store.
        self.events = SeenEvents(db)  # deliveries already seen (Slack retries, replays)
        self.confirmations = ConfirmationRows(db)  # pending Confirm buttons
        self.conversations = ConversationRows(db)  # last family used, thread continuations
        self.thread_contexts = ThreadContextRows(db)  # what a side-panel thread looks at
        self.message_replacements = MessageReplacementRows(db)  # messages posted again

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
            await store._credentials.listen()  # PostgreSQL: other replicas' key changes
            await store.job_notices.listen()  # PostgreSQL: jobs other replicas cancelled
            await store._policy.listen()  # PostgreSQL: other replicas' policy changes
            if marker_dir is not None:
                write_marker(marker_dir, db.marker_name, store_id, marker)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection."""
        await self._credentials.stop_listening()
        await self.job_notices.stop_listening()
        await self._policy.stop_listening()
        await self._notices.close()
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
        holder: str | None = None,
    ) -> JobRecord:
        """Change fields (state is merged key by key), bump updated_at, return the new record.

        `error`/`next_run_at` are unchanged unless passed; pass None to clear them.
        Raises JobNotFoundError (a KeyError) for an unknown id, and JobNotHeldError when
        `holder` is given and another replica holds the job.
        """
        return await self._jobs.update(
            job_id,
            status=status,
            state=state,
            error=error,
            next_run_at=next_run_at,
            attempts=attempts,
            holder=holder,
        )

    async def transition_job(
        self,
        job_id: str,
        expected: Collection[str],
        new_status: str,
        *,
        holder: str | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set the status (plus `update_job` fields); True only for the winner."""
        return await self._jobs.transition(job_id, expected, new_status, holder=holder, **fields)

    async def claimable_jobs(
        self, replica: str, now: float
    ) -> tuple[list[JobRecord], list[UnreadableJob]]:
        """Unfinished jobs `replica` may claim at `now` (unheld, its own, or lease ran out)."""
        return await self._jobs.load_unfinished(claimable_by=(replica, now))

    async def claim_jobs(
        self, job_ids: Collection[str], replica: str, now: float, lease_until: float
    ) -> list[JobRecord]:
        """Claim what `replica` still may of `job_ids`, leased until `lease_until`; those rows."""
        return await self._jobs.claim(job_ids, replica, now, lease_until)

    async def renew_job_leases(
        self, replica: str, job_ids: Collection[str], lease_until: float
    ) -> set[str]:
        """Extend `replica`'s leases; the ids of `job_ids` it still holds."""
        return await self._jobs.renew(replica, job_ids, lease_until)

    async def renew_and_check_jobs(
        self, replica: str, job_ids: Collection[str], lease_until: float
    ) -> LeaseRenewal:
        """Extend `replica`'s leases: the ids it still holds, and those of them now cancelled."""
        return await self._jobs.renew_and_check(replica, job_ids, lease_until)

    async def release_jobs(self, replica: str) -> int:
        """Give up `replica`'s claims on unfinished jobs, for another replica to take at once."""
        return await self._jobs.release(replica)

    async def keep_job_media(self, job_id: str, media: JobMedia) -> None:
        """Keep a job's one-shot result bytes in the store, where any replica finds them."""
        await self._jobs.keep_media(job_id, media)

    async def job_media(self, job_id: str) -> JobMedia | None:
        """A job's kept result bytes, or None."""
        return await self._jobs.media(job_id)

    async def drop_job_media(self, job_id: str) -> bool:
        """Forget a job's kept result bytes (once delivered)."""
        return await self._jobs.drop_media(job_id)

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

    async def quarantine_job(
        self, job_id: str, reason: str, *, claimable_by: tuple[str, float] | None = None
    ) -> bool:
        """Set an unfinished job aside as 'quarantined' with `reason`; the row is kept.

        With `claimable_by=(replica, now)`, not while another replica holds it.
        """
        return await self._jobs.quarantine(job_id, reason, claimable_by=claimable_by)

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

    # -- teams: workspace keys, the ledger, spend holds, policy ------------------------------

    async def put_workspace_key(
        self,
        platform: str,
        workspace: str,
        service: str,
        secret: str,
        *,
        by_user: str | None = None,
    ) -> CredentialInfo:
        """Encrypt and store the workspace's key for `service` (members without one use it)."""
        meta = {"set_by": by_user} if by_user else None
        owner = _workspace_owner(platform, workspace)
        return await self._credentials.put(owner, service, secret, meta=meta)

    async def get_workspace_key(self, platform: str, workspace: str, service: str) -> str | None:
        """The decrypted workspace key for `service`, or None (CredentialUnreadableError if damaged)."""
        return await self._credentials.get(_workspace_owner(platform, workspace), service)

    async def workspace_key_info(
        self, platform: str, workspace: str, service: str
    ) -> CredentialInfo | None:
        """Fingerprint, times and who set the workspace key — never the key."""
        return await self._credentials.info(_workspace_owner(platform, workspace), service)

    async def delete_workspace_key(self, platform: str, workspace: str, service: str) -> bool:
        """Forget the workspace key for `service`; True if one was stored."""
        return await self._credentials.delete(_workspace_owner(platform, workspace), service)

    async def record_charge(self, usage: UsageRecord, entry: LedgerEntry) -> None:
        """Queue a charged call's usage row and ledger row as one unit (one transaction)."""
        await self._ledger.record_charge(usage, entry)

    async def ledger_rows(
        self,
        platform: str,
        workspace: str,
        *,
        user: str | None,
        since: datetime,
        until: datetime | None = None,
    ) -> list[LedgerEntry]:
        """Ledger entries from `since` (to `until`), one user's or the workspace's, oldest first."""
        return await self._ledger.rows(platform, workspace, user=user, since=since, until=until)

    async def reserve_spend(
        self,
        owner: Owner,
        service: str,
        command: str,
        amount: Decimal,
        key_source: KeySource,
        *,
        decide: Callable[[SpendSnapshot], V],
        now: datetime,
        ttl_s: float,
    ) -> tuple[V, SpendHoldRecord | None]:
        """Check `decide(snapshot)` and hold `amount` if allowed, in one serialised transaction."""
        return await self._holds.reserve(
            owner, service, command, amount, key_source, decide=decide, now=now, ttl_s=ttl_s
        )

    async def settle_spend(self, hold_id: str, usage: UsageRecord, entry: LedgerEntry) -> bool:
        """Turn an open or released hold into its usage and ledger rows at once; False if settled."""
        return await self._holds.settle(hold_id, usage, entry)

    async def release_spend(self, hold_id: str) -> bool:
        """Stop a hold counting, uncharged; True if it was open (a settled one stays settled)."""
        return await self._holds.release(hold_id)

    async def get_spend_hold(
        self, hold_id: str, *, released: bool = False
    ) -> SpendHoldRecord | None:
        """A hold still open (expired or not), or None; with `released`, a released one too."""
        return await self._holds.get(hold_id, released=released)

    async def get_policy(self, platform: str, workspace: str) -> dict[str, Any]:
        """Every policy key set for the workspace, decoded from JSON (cached, kept coherent)."""
        return await self._policy.get_all(platform, workspace)

    async def policy_view(
        self, platform: str, workspace: str, reader: Callable[[dict[str, Any]], T]
    ) -> T:
        """`reader(policy)`, worked out once per cached policy (PolicyRows.view): `reader` is a
        pure module-level function, and what it returns is shared and must not be changed."""
        return await self._policy.view(platform, workspace, reader)

    async def set_policy(
        self, platform: str, workspace: str, key: str, value: Any, by_user: str
    ) -> None:
        """Replace one policy key's value (JSON-serialisable)."""
        await self._policy.set(platform, workspace, key, value, by_user)

    async def update_policy(
        self,
        platform: str,
        workspace: str,
        key: str,
        change: Callable[[Any], Any],
        by_user: str,
    ) -> Any:
        """Write `change(current value)` in the one transaction that reads it; the new value."""
        return await self._policy.update(platform, workspace, key, change, by_user)

    async def claim_notice(self, platform: str, workspace: str, notice_key: str) -> bool:
        """True only the first time any replica claims `notice_key` (an 80 %/100 % notice)."""
        return await self._policy.claim_notice(platform, workspace, notice_key)


def _workspace_owner(platform: str, workspace: str) -> Owner:
    return Owner(platform=platform, workspace=workspace, user=WORKSPACE_USER)


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
