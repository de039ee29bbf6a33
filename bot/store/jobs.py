"""Durable jobs: a row exists before the backend is called, and status changes are checked."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from bot.store.backend import Dialect, Row, StoreBackend, Tx
from bot.store.models import (
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    JobRecord,
    Owner,
    from_iso,
    iso,
    utcnow,
)


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

    def __init__(self, db: StoreBackend) -> None:
        self._db = db
        self._dialect: Dialect = db.dialect

    async def create(self, job: JobRecord) -> None:
        """Insert a new job; ValueError if the id is already taken."""
        async with self._db.write() as conn:
            # ON CONFLICT (id) rather than catching the driver's own IntegrityError type.
            inserted = await conn.execute(
                'INSERT INTO jobs (id, kind, platform, workspace, "user", destination, state,'
                " status, attempts, error, created_at, updated_at, next_run_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    job.id,
                    job.kind,
                    job.owner.platform,
                    job.owner.workspace,
                    job.owner.user,
                    json.dumps(job.destination),
                    json.dumps(job.state),
                    job.status,
                    job.attempts,
                    job.error,
                    iso(job.created_at),
                    iso(job.updated_at),
                    job.next_run_at,
                ),
            )
        if not inserted:
            raise ValueError(f"job {job.id!r} already exists")

    async def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        async with self._db.read() as conn:
            return await _select(conn, job_id)

    async def update(
        self,
        job_id: str,
        *,
        status: str | None = None,
        state: dict[str, Any] | None = None,
        error: str | Unset | None = UNSET,
        next_run_at: float | Unset | None = UNSET,
        attempts: int | None = None,
    ) -> JobRecord:
        """Change the given fields and bump updated_at; JobNotFoundError if there is no such job.

        `state` is merged key by key into the stored state (so a phase can add its keys
        without re-sending the others). `error`/`next_run_at` are left alone unless passed;
        passing None clears them.
        """
        async with self._db.write() as conn:
            job = await _select(conn, job_id, self._dialect.lock_rows)
            if job is None:
                raise JobNotFoundError(job_id)
            updated = await _apply(conn, job, status, state, error, next_run_at, attempts)
        return updated

    async def transition(
        self, job_id: str, expected: Collection[str], new_status: str, **fields: Any
    ) -> bool:
        """Compare-and-set: move to `new_status` only if the status is in `expected`.

        Returns True for the one caller that made the change, False for everyone else (status
        already moved on, or no such job). `fields` are those of `update` (state, error,
        next_run_at, attempts) and are applied in the same transaction.
        """
        if isinstance(expected, str):
            expected = {expected}  # a lone status, not its characters
        unknown = set(fields) - _TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition_job() got unexpected fields: {sorted(unknown)}")
        _check_statuses(expected)
        async with self._db.write() as conn:
            job = await _select(conn, job_id, self._dialect.lock_rows)
            if job is None or job.status not in expected:
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
        self, kinds: Collection[str] | None = None
    ) -> tuple[list[JobRecord], list[UnreadableJob]]:
        """Unfinished rows, oldest first: those that decode, and those that do not."""
        statuses = sorted(UNFINISHED_STATUSES)
        sql = f"SELECT * FROM jobs WHERE status IN ({_marks(statuses)})"
        params: list[Any] = list(statuses)
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
                jobs.append(_to_job(row))
            except (ValueError, TypeError) as exc:  # JSON and validation errors are ValueErrors
                bad.append(_unreadable(row, exc))
        return jobs, bad

    async def quarantine(self, job_id: str, reason: str) -> bool:
        """Set an unfinished row aside (status 'quarantined', the reason in `error`).

        Touches only status, error and updated_at, so it works on rows that do not decode;
        nothing else in the row changes. False if the row is not unfinished (or absent).
        """
        statuses = sorted(UNFINISHED_STATUSES)
        async with self._db.write() as conn:
            changed = await conn.execute(
                "UPDATE jobs SET status = 'quarantined', error = ?, updated_at = ?"
                f" WHERE id = ? AND status IN ({_marks(statuses)})",
                (reason[:_MAX_REASON_CHARS], iso(utcnow()), job_id, *statuses),
            )
            return changed > 0

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
                jobs.append(_to_job(row))
            except (ValueError, TypeError) as exc:
                # One damaged row must not hide the owner's other jobs.
                log.warning("job %s does not decode: %s", row["id"], _describe(exc))
        return jobs


def _marks(values: Collection[Any]) -> str:
    # Placeholders only: values are always bound as parameters.
    return ", ".join("?" for _ in values)


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


async def _select(conn: Tx, job_id: str, lock_rows: str = "") -> JobRecord | None:
    # `lock_rows` (FOR UPDATE on PostgreSQL) when the caller is about to change the row.
    row = await conn.fetchone(f"SELECT * FROM jobs WHERE id = ?{lock_rows}", (job_id,))
    if row is None:
        return None
    try:
        return _to_job(row)
    except (ValueError, TypeError) as exc:
        # Treated as absent (so a click on its button is refused, not crashed on); the row
        # itself stays as it is for the operator.
        log.warning("job %s does not decode: %s", job_id, _describe(exc))
        return None


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _unreadable(row: Row, exc: Exception) -> UnreadableJob:
    owner: Owner | None
    try:
        owner = Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"])
    except ValueError:
        owner = None
    destination: dict[str, Any] | None
    try:
        decoded = json.loads(row["destination"])
        destination = decoded if isinstance(decoded, dict) else None
    except (ValueError, TypeError):
        destination = None
    return UnreadableJob(
        id=str(row["id"]),
        kind=str(row["kind"]),
        reason=f"the row does not decode ({_describe(exc)})",
        owner=owner,
        destination=destination,
    )


def _to_job(row: Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        destination=json.loads(row["destination"]),
        state=json.loads(row["state"]),
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        next_run_at=row["next_run_at"],
    )
