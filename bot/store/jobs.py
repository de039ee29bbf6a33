"""Durable jobs: a row exists before the backend is called, and status changes are checked.

Several replicas may share the table: a job is run by the one that holds its claim
(`claimed_by`, with a lease until `lease_until`, epoch seconds), renewed while it runs; a
lease that ran out may be claimed by another replica (`claim`). A write made on behalf of a
holder (`holder=`) is refused with JobNotHeldError once another replica holds the job, and
with JobCancelledError once the row was cancelled (by its owner, on any replica): the holder
stops without writing more. Cancelling a row also notifies the other replicas (job_notices).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from bot.store.backend import Dialect, Row, StoreBackend, Tx
from bot.store.job_notices import JobNotices
from bot.store.models import (
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    JobMedia,
    JobRecord,
    Owner,
    from_iso,
    iso,
    utcnow,
)
from bot.store.secret_box import SecretBox, SecretBoxError


class Unset(enum.Enum):
    """Type of the UNSET sentinel."""

    UNSET = "unset"


# Default for fields where None is a meaningful new value (clear the error, unschedule).
UNSET: Final = Unset.UNSET

_TRANSITION_FIELDS = frozenset({"state", "error", "next_run_at", "attempts"})


log = logging.getLogger(__name__)
# How much of a quarantine reason is kept in the row's `error` column.
_MAX_REASON_CHARS = 500


class JobNotFoundError(KeyError):
    """No job has this id."""


class JobNotHeldError(RuntimeError):
    """A write for a job's holder found another replica (or none) holding it: stop working on it."""

    def __init__(self, job_id: str, holder: str, claimed_by: str | None) -> None:
        self.job_id = job_id
        self.claimed_by = claimed_by
        super().__init__(f"job {job_id} is held by {claimed_by or 'no replica'}, not {holder}")


class JobCancelledError(JobNotHeldError):
    """A write for a job's holder found the row cancelled (on any replica): stop, write nothing."""

    def __init__(self, job_id: str, holder: str) -> None:
        RuntimeError.__init__(self, f"job {job_id} was cancelled; {holder} stops working on it")
        self.job_id = job_id
        self.claimed_by = holder


@dataclass(frozen=True)
class LeaseRenewal:
    """One renewal: the ids a replica still holds, and those of them whose row is cancelled."""

    held: frozenset[str]
    cancelled: frozenset[str]


# A row `replica` may claim at time `now`: nobody holds it, it does, or the lease ran out.
# Parameters: (replica, now).
_CLAIMABLE = "(claimed_by IS NULL OR claimed_by = ? OR lease_until IS NULL OR lease_until < ?)"


@dataclass(frozen=True)
class UnreadableJob:
    """An unfinished job row that does not decode (bad JSON, invalid fields).

    `owner` and `destination` are filled in when those parts still decode, so the owner can
    be told that the job could not be resumed.
    """

    id: str
    kind: str
    reason: str
    owner: Owner | None = None
    destination: dict[str, Any] | None = None


class Jobs:
    """Repository for the `jobs` table."""

    def __init__(
        self, db: StoreBackend, notices: JobNotices | None = None, box: SecretBox | None = None
    ) -> None:
        self._db = db
        self._dialect: Dialect = db.dialect
        self._notices = notices if notices is not None else JobNotices(db)
        # Destinations carry platform credentials (a Discord interaction token, a Slack
        # response_url): sealed under the master key; None only for tests of other columns.
        self._box = box

    async def create(
        self, job: JobRecord, *, admit: Callable[[Tx], Awaitable[None]] | None = None
    ) -> None:
        """Insert a new job; ValueError if the id is already taken. `admit` runs first, in the
        same transaction, and refuses the insert by raising (bot.store.job_limits)."""
        async with self._db.write() as conn:
            if admit is not None:
                await admit(conn)
            # ON CONFLICT (id) rather than catching the driver's own IntegrityError type.
            inserted = await conn.execute(
                'INSERT INTO jobs (id, kind, platform, workspace, "user", destination, state,'
                " status, attempts, error, created_at, updated_at, next_run_at, claimed_by,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    job.id,
                    job.kind,
                    job.owner.platform,
                    job.owner.workspace,
                    job.owner.user,
                    seal_destination(job.destination, self._box),
                    json.dumps(job.state),
                    job.status,
                    job.attempts,
                    job.error,
                    iso(job.created_at),
                    iso(job.updated_at),
                    job.next_run_at,
                    job.claimed_by,
                    job.lease_until,
                ),
            )
        if not inserted:
            raise ValueError(f"job {job.id!r} already exists")

    async def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        async with self._db.read() as conn:
            return await _select(conn, job_id, box=self._box)

    async def update(
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
        """Change the given fields and bump updated_at; JobNotFoundError if there is no such job.

        `state` is merged key by key into the stored state (so a phase can add its keys
        without re-sending the others). `error`/`next_run_at` are left alone unless passed;
        passing None clears them. With `holder`, JobNotHeldError unless that replica holds it.
        """
        async with self._db.write() as conn:
            job = await _select(conn, job_id, self._dialect.lock_rows, box=self._box)
            if job is None:
                raise JobNotFoundError(job_id)
            _check_holder(job, holder)
            updated = await _apply(conn, job, status, state, error, next_run_at, attempts)
            await self._tell_if_cancelled(conn, job, updated.status)
        return updated

    async def _tell_if_cancelled(self, conn: Tx, before: JobRecord, status: str) -> None:
        # In the same transaction: the notice goes out at commit, only if the change does.
        if status == "cancelled" and before.status != "cancelled":
            await self._notices.cancelled(conn, before.id)

    async def transition(
        self,
        job_id: str,
        expected: Collection[str],
        new_status: str,
        *,
        holder: str | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: move to `new_status` only if the status is in `expected`.

        Returns True for the one caller that made the change, False for everyone else (status
        already moved on, or no such job). `fields` are those of `update` (state, error,
        next_run_at, attempts) and are applied in the same transaction. With `holder`,
        JobNotHeldError unless that replica holds the job (the check and the change are one
        transaction, so two replicas never both win).
        """
        if isinstance(expected, str):
            expected = {expected}  # a lone status, not its characters
        unknown = set(fields) - _TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition_job() got unexpected fields: {sorted(unknown)}")
        _check_statuses(expected)
        async with self._db.write() as conn:
            job = await _select(conn, job_id, self._dialect.lock_rows, box=self._box)
            if job is None:
                return False
            _check_holder(job, holder)
            if job.status not in expected:
                return False
            await _apply(
                conn,
                job,
                new_status,
                fields.get("state"),
                fields.get("error", UNSET),
                fields.get("next_run_at", UNSET),
                fields.get("attempts"),
            )
            await self._tell_if_cancelled(conn, job, new_status)
        return True

    async def unfinished(self, kinds: Collection[str] | None = None) -> list[JobRecord]:
        """Jobs still pending/running/delivering (optionally of these kinds), oldest first.

        Rows that do not decode are left out (see `load_unfinished` to deal with them).
        """
        if kinds is not None and not kinds:
            return []
        jobs, bad = await self.load_unfinished(kinds)
        for row in bad:
            log.warning("skipping unreadable job %s (%s): %s", row.id, row.kind, row.reason)
        return jobs

    async def load_unfinished(
        self,
        kinds: Collection[str] | None = None,
        *,
        claimable_by: tuple[str, float] | None = None,
    ) -> tuple[list[JobRecord], list[UnreadableJob]]:
        """Unfinished rows, oldest first: those that decode, and those that do not.

        With `claimable_by=(replica, now)`, only those that replica may claim at `now`.
        """
        statuses = sorted(UNFINISHED_STATUSES)
        sql = f"SELECT * FROM jobs WHERE status IN ({_marks(statuses)})"
        params: list[Any] = list(statuses)
        if claimable_by is not None:
            sql += f" AND {_CLAIMABLE}"
            params.extend(claimable_by)
        if kinds is not None:
            if not kinds:
                return [], []
            sql += f" AND kind IN ({_marks(kinds)})"
            params.extend(sorted(kinds))
        sql += " ORDER BY created_at, id"
        async with self._db.read() as conn:
            rows = await conn.fetchall(sql, params)
        jobs: list[JobRecord] = []
        bad: list[UnreadableJob] = []
        for row in rows:
            try:
                jobs.append(_to_job(row, self._box))
            except (ValueError, TypeError, SecretBoxError) as exc:  # JSON/validation: ValueErrors
                bad.append(_unreadable(row, exc, self._box))
        return jobs, bad

    async def quarantine(
        self, job_id: str, reason: str, *, claimable_by: tuple[str, float] | None = None
    ) -> bool:
        """Set an unfinished row aside (status 'quarantined', the reason in `error`).

        Touches only status, error and updated_at, so it works on rows that do not decode;
        nothing else in the row changes. False if the row is not unfinished (or absent), or,
        with `claimable_by=(replica, now)`, if another replica holds it.
        """
        statuses = sorted(UNFINISHED_STATUSES)
        sql = (
            "UPDATE jobs SET status = 'quarantined', error = ?, updated_at = ?"
            f" WHERE id = ? AND status IN ({_marks(statuses)})"
        )
        params: list[Any] = [reason[:_MAX_REASON_CHARS], iso(utcnow()), job_id, *statuses]
        if claimable_by is not None:
            sql += f" AND {_CLAIMABLE}"
            params.extend(claimable_by)
        async with self._db.write() as conn:
            changed = await conn.execute(sql, params)
            return changed > 0

    # -- claims and leases ------------------------------------------------------------------

    async def claim(
        self, job_ids: Collection[str], replica: str, now: float, lease_until: float
    ) -> list[JobRecord]:
        """Claim those of `job_ids` that `replica` may claim at `now`; the claimed rows.

        PostgreSQL locks the candidates with FOR UPDATE SKIP LOCKED (a row another replica is
        claiming or writing is left for the next scan); SQLite's guarded UPDATE runs inside
        BEGIN IMMEDIATE, which excludes every other writer. Either way one replica wins a row.
        """
        ids = sorted(set(job_ids))
        if not ids:
            return []
        statuses = sorted(UNFINISHED_STATUSES)
        async with self._db.write() as conn:
            if self._dialect.name == "postgresql":
                rows = await conn.fetchall(
                    f"SELECT id FROM jobs WHERE id IN ({_marks(ids)})"
                    f" AND status IN ({_marks(statuses)}) AND {_CLAIMABLE}"
                    " FOR UPDATE SKIP LOCKED",
                    (*ids, *statuses, replica, now),
                )
                won = [str(r["id"]) for r in rows]
                if won:
                    await conn.execute(
                        "UPDATE jobs SET claimed_by = ?, lease_until = ?"
                        f" WHERE id IN ({_marks(won)})",
                        (replica, lease_until, *won),
                    )
            else:
                won = []
                for job_id in ids:
                    changed = await conn.execute(
                        "UPDATE jobs SET claimed_by = ?, lease_until = ? WHERE id = ?"
                        f" AND status IN ({_marks(statuses)}) AND {_CLAIMABLE}",
                        (replica, lease_until, job_id, *statuses, replica, now),
                    )
                    if changed:
                        won.append(job_id)
            if not won:
                return []
            rows = await conn.fetchall(
                f"SELECT * FROM jobs WHERE id IN ({_marks(won)}) ORDER BY created_at, id", won
            )
        claimed: list[JobRecord] = []
        for row in rows:
            try:
                claimed.append(_to_job(row, self._box))
            except (ValueError, TypeError, SecretBoxError) as exc:
                log.warning("claimed job %s does not decode: %s", row["id"], _describe(exc))
        return claimed

    async def renew(self, replica: str, job_ids: Collection[str], lease_until: float) -> set[str]:
        """Extend `replica`'s leases on `job_ids`; the ids it still holds (the rest were taken)."""
        return set((await self.renew_and_check(replica, job_ids, lease_until)).held)

    async def renew_and_check(
        self, replica: str, job_ids: Collection[str], lease_until: float
    ) -> LeaseRenewal:
        """Extend `replica`'s leases on `job_ids`: which it still holds, and which of those
        were cancelled meanwhile (on any replica), whose tasks it should stop."""
        ids = sorted(set(job_ids))
        if not ids:
            return LeaseRenewal(frozenset(), frozenset())
        async with self._db.write() as conn:
            await conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE claimed_by = ? AND id IN ({_marks(ids)})",
                (lease_until, replica, *ids),
            )
            rows = await conn.fetchall(
                f"SELECT id, status FROM jobs WHERE claimed_by = ? AND id IN ({_marks(ids)})",
                (replica, *ids),
            )
        return LeaseRenewal(
            held=frozenset(str(r["id"]) for r in rows),
            cancelled=frozenset(str(r["id"]) for r in rows if r["status"] == "cancelled"),
        )

    async def release(self, replica: str) -> int:
        """Give up `replica`'s claims on unfinished jobs (a graceful stop); how many."""
        statuses = sorted(UNFINISHED_STATUSES)
        async with self._db.write() as conn:
            return await conn.execute(
                "UPDATE jobs SET claimed_by = NULL, lease_until = NULL"
                f" WHERE claimed_by = ? AND status IN ({_marks(statuses)})",
                (replica, *statuses),
            )

    # -- one-shot result bytes --------------------------------------------------------------

    async def keep_media(self, job_id: str, media: JobMedia) -> None:
        """Store a job's result bytes (replacing any kept before), for any replica to deliver."""
        async with self._db.write() as conn:
            await conn.execute(
                "INSERT INTO job_media (job_id, mime, data, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET mime = excluded.mime,"
                " data = excluded.data, created_at = excluded.created_at",
                (job_id, media.mime, media.data, iso(utcnow())),
            )

    async def media(self, job_id: str) -> JobMedia | None:
        """A job's kept result bytes, or None."""
        async with self._db.read() as conn:
            row = await conn.fetchone(
                "SELECT mime, data FROM job_media WHERE job_id = ?", (job_id,)
            )
        if row is None:
            return None
        return JobMedia(mime=str(row["mime"]), data=bytes(row["data"]))

    async def drop_media(self, job_id: str) -> bool:
        """Forget a job's kept bytes (once delivered); True if there were any."""
        async with self._db.write() as conn:
            return await conn.execute("DELETE FROM job_media WHERE job_id = ?", (job_id,)) > 0

    async def for_owner(self, owner: Owner, limit: int = 20) -> list[JobRecord]:
        """`owner`'s most recent jobs, newest first."""
        async with self._db.read() as conn:
            rows = await conn.fetchall(
                'SELECT * FROM jobs WHERE platform = ? AND workspace = ? AND "user" = ?'
                f" ORDER BY created_at DESC, {self._dialect.job_order} DESC LIMIT ?",
                (owner.platform, owner.workspace, owner.user, max(0, limit)),
            )
        jobs: list[JobRecord] = []
        for row in rows:
            try:
                jobs.append(_to_job(row, self._box))
            except (ValueError, TypeError, SecretBoxError) as exc:
                # One damaged row must not hide the owner's other jobs.
                log.warning("job %s does not decode: %s", row["id"], _describe(exc))
        return jobs


def _marks(values: Collection[Any]) -> str:
    # Placeholders only: values are always bound as parameters.
    return ", ".join("?" for _ in values)


def _check_holder(job: JobRecord, holder: str | None) -> None:
    if holder is None:
        return
    if job.claimed_by != holder:
        raise JobNotHeldError(job.id, holder, job.claimed_by)
    if job.status == "cancelled":
        # Its owner cancelled it (the Cancel path wrote that and audits it): the holder's task
        # must neither overwrite the status (a late "done") nor record a second end.
        raise JobCancelledError(job.id, holder)


def _check_statuses(statuses: Collection[str]) -> None:
    bad = set(statuses) - JOB_STATUSES
    if bad:
        raise ValueError(
            f"unknown job status {sorted(bad)}; expected one of {sorted(JOB_STATUSES)}"
        )


async def _apply(
    conn: Tx,
    job: JobRecord,
    status: str | None,
    state: dict[str, Any] | None,
    error: str | Unset | None,
    next_run_at: float | Unset | None,
    attempts: int | None,
) -> JobRecord:
    # Build the new record through the model so every value is validated before it is written.
    changes: dict[str, Any] = {"updated_at": utcnow()}
    if status is not None:
        _check_statuses([status])
        changes["status"] = status
    if state is not None:
        changes["state"] = {**job.state, **state}
    if error is not UNSET:
        changes["error"] = error
    if next_run_at is not UNSET:
        changes["next_run_at"] = next_run_at
    if attempts is not None:
        changes["attempts"] = attempts
    new = JobRecord.model_validate({**job.model_dump(), **changes})
    await conn.execute(
        "UPDATE jobs SET status = ?, state = ?, error = ?, next_run_at = ?, attempts = ?,"
        " updated_at = ? WHERE id = ?",
        (
            new.status,
            json.dumps(new.state),
            new.error,
            new.next_run_at,
            new.attempts,
            iso(new.updated_at),
            new.id,
        ),
    )
    return new


async def _select(
    conn: Tx, job_id: str, lock_rows: str = "", *, box: SecretBox | None
) -> JobRecord | None:
    # `lock_rows` (FOR UPDATE on PostgreSQL) when the caller is about to change the row.
    row = await conn.fetchone(f"SELECT * FROM jobs WHERE id = ?{lock_rows}", (job_id,))
    if row is None:
        return None
    try:
        return _to_job(row, box)
    except (ValueError, TypeError, SecretBoxError) as exc:
        # Treated as absent (so a click on its button is refused, not crashed on); the row
        # itself stays as it is for the operator.
        log.warning("job %s does not decode: %s", job_id, _describe(exc))
        return None


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def seal_destination(destination: dict[str, Any], box: SecretBox | None) -> str:
    """The `destination` column's text: the JSON encrypted under the master key (a Fernet
    token, never starting with "{"), or plain JSON without a box."""
    text = json.dumps(destination)
    return text if box is None else box.encrypt(text).decode("ascii")


def open_destination(raw: str, box: SecretBox | None) -> Any:
    """The decoded `destination` column: sealed, or plain JSON as rows before sealing have."""
    if raw.startswith("{") or box is None:
        return json.loads(raw)
    return json.loads(box.decrypt(raw.encode("ascii")))


def _unreadable(row: Row, exc: Exception, box: SecretBox | None) -> UnreadableJob:
    owner: Owner | None
    try:
        owner = Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"])
    except ValueError:
        owner = None
    destination: dict[str, Any] | None
    try:
        decoded = open_destination(row["destination"], box)
        destination = decoded if isinstance(decoded, dict) else None
    except (ValueError, TypeError, AttributeError, SecretBoxError):
        destination = None
    return UnreadableJob(
        id=str(row["id"]),
        kind=str(row["kind"]),
        reason=f"the row does not decode ({_describe(exc)})",
        owner=owner,
        destination=destination,
    )


def _to_job(row: Row, box: SecretBox | None) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        destination=open_destination(row["destination"], box),
        state=json.loads(row["state"]),
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        next_run_at=row["next_run_at"],
        claimed_by=row["claimed_by"],
        lease_until=row["lease_until"],
    )
