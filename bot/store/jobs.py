"""Durable jobs: a row exists before the backend is called, and status changes are checked."""

from __future__ import annotations

import enum
import json
from collections.abc import Collection
from typing import Any, Final

import aiosqlite

from bot.store.db import Database
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


class JobNotFoundError(KeyError):
    """No job has this id."""


class Jobs:
    """Repository for the `jobs` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, job: JobRecord) -> None:
        """Insert a new job; ValueError if the id is already taken."""
        async with self._db.write() as conn:
            try:
                await conn.execute(
                    "INSERT INTO jobs (id, kind, platform, workspace, user, destination, state,"
                    " status, attempts, error, created_at, updated_at, next_run_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            except aiosqlite.IntegrityError as exc:
                raise ValueError(f"job {job.id!r} already exists") from exc

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
            job = await _select(conn, job_id)
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
            job = await _select(conn, job_id)
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
        """Jobs still pending/running/delivering (optionally of these kinds), oldest first."""
        statuses = sorted(UNFINISHED_STATUSES)
        sql = f"SELECT * FROM jobs WHERE status IN ({_marks(statuses)})"
        params: list[Any] = list(statuses)
        if kinds is not None:
            if not kinds:
                return []
            sql += f" AND kind IN ({_marks(kinds)})"
            params.extend(sorted(kinds))
        sql += " ORDER BY created_at, id"
        async with self._db.read() as conn:
            async with conn.execute(sql, params) as cur:
                rows = await cur.fetchall()
        return [_to_job(r) for r in rows]

    async def for_owner(self, owner: Owner, limit: int = 20) -> list[JobRecord]:
        """`owner`'s most recent jobs, newest first."""
        async with self._db.read() as conn:
            async with conn.execute(
                "SELECT * FROM jobs WHERE platform = ? AND workspace = ? AND user = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (owner.platform, owner.workspace, owner.user, max(0, limit)),
            ) as cur:
                rows = await cur.fetchall()
        return [_to_job(r) for r in rows]


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
    conn: aiosqlite.Connection,
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


async def _select(conn: aiosqlite.Connection, job_id: str) -> JobRecord | None:
    async with conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
    return _to_job(row) if row is not None else None


def _to_job(row: aiosqlite.Row) -> JobRecord:
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
