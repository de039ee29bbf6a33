"""In-flight job limits: count a user's and a workspace's unfinished long jobs, and insert a
new job only if both counts stay under their limits, in one transaction.

The count is of rows, so it is right across replicas. SQLite: the write transaction (BEGIN
IMMEDIATE) already excludes every other writer on the file. PostgreSQL: an advisory lock per
workspace, held until commit, serialises the check-and-insert of every replica (one lock per
workspace covers the user's count too, and one lock per transaction cannot deadlock).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from bot.store.backend import StoreBackend, Tx
from bot.store.jobs import Jobs
from bot.store.models import UNFINISHED_STATUSES, JobRecord, Owner

# Advisory lock class for job admission (two-key form, distinct from the policy lock's class
# so a job start never waits for a budget or policy write of the same workspace).
_JOB_ADMISSION_LOCK_CLASS = 0x70CD
_STATUSES = tuple(sorted(UNFINISHED_STATUSES))


@dataclass(frozen=True)
class InFlight:
    """Unfinished limited jobs: the owner's, by kind, and the whole workspace's."""

    by_kind: dict[str, int] = field(default_factory=dict)
    workspace: int = 0

    @property
    def mine(self) -> int:
        """How many of them are the owner's."""
        return sum(self.by_kind.values())


@dataclass(frozen=True)
class Limits:
    """The most unfinished jobs of `kinds` a user / a workspace may have (0: no limit)."""

    kinds: frozenset[str]
    per_user: int = 0
    per_workspace: int = 0

    def exceeded_by(self, counts: InFlight) -> bool:
        """Whether one more job would go over a limit."""
        return bool(
            (self.per_user and counts.mine >= self.per_user)
            or (self.per_workspace and counts.workspace >= self.per_workspace)
        )


class JobLimitExceeded(Exception):
    """A new job would go over a limit; nothing was written. `counts` is what was found."""

    def __init__(self, counts: InFlight) -> None:
        self.counts = counts
        super().__init__(f"{counts.mine} of the user's, {counts.workspace} in the workspace")


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" for _ in values)


async def count_in_flight(tx: Tx, owner: Owner, kinds: Collection[str]) -> InFlight:
    """The owner's unfinished jobs of `kinds` by kind, and the workspace's total."""
    if not kinds:
        return InFlight()
    kind_list = sorted(kinds)
    where = (
        f"platform = ? AND workspace = ? AND status IN ({_marks(_STATUSES)})"
        f" AND kind IN ({_marks(kind_list)})"
    )
    params = (owner.platform, owner.workspace, *_STATUSES, *kind_list)
    rows = await tx.fetchall(
        f'SELECT kind, COUNT(*) AS n FROM jobs WHERE {where} AND "user" = ? GROUP BY kind',
        (*params, owner.user),
    )
    total = await tx.fetchone(f"SELECT COUNT(*) AS n FROM jobs WHERE {where}", params)
    return InFlight(
        by_kind={str(row["kind"]): int(row["n"]) for row in rows},
        workspace=int(total["n"]) if total is not None else 0,
    )


async def lock_admission(tx: Tx, dialect: str, owner: Owner) -> None:
    """Serialise job admission in the owner's workspace until this transaction ends."""
    if dialect == "postgresql":
        await tx.execute(
            "SELECT pg_advisory_xact_lock(?, hashtext(?))",
            (_JOB_ADMISSION_LOCK_CLASS, f"{owner.platform}:{owner.workspace}"),
        )


class JobLimitRows:
    """Counts and limited inserts over the `jobs` table (see the module docstring)."""

    def __init__(self, db: StoreBackend, jobs: Jobs) -> None:
        self._db = db
        self._jobs = jobs

    async def in_flight(self, owner: Owner, kinds: Collection[str]) -> InFlight:
        """What is running now (a read: a hint for refusing early, not a guarantee)."""
        async with self._db.read() as tx:
            return await count_in_flight(tx, owner, kinds)

    async def create_within(self, job: JobRecord, limits: Limits) -> None:
        """Insert `job` unless a limit is reached (JobLimitExceeded: nothing is written)."""

        async def admit(tx: Tx) -> None:
            await lock_admission(tx, self._db.dialect.name, job.owner)
            counts = await count_in_flight(tx, job.owner, limits.kinds)
            if limits.exceeded_by(counts):
                raise JobLimitExceeded(counts)

        await self._jobs.create(job, admit=admit)
