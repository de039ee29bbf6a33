"""Backpressure for long jobs: a per-user and a per-workspace limit on unfinished ones.

A job kind opts in by naming what it is, `in_flight_noun = "image"` (read by getattr, like a
kind's `state_model`), and says `cancel_button = True` when its progress message has a Cancel
button. A start that would go over `TOKENBOT_MAX_JOBS_PER_USER` or
`TOKENBOT_MAX_JOBS_PER_WORKSPACE` is refused with `JobLimitReached` before its row is written
(the count and the insert are one transaction, see bot.store.job_limits), so no backend is
asked and no progress message is shown; a handler that took a spend hold first releases it.
`check_room` is the same count as a read, for a handler to refuse before any other work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.messages import Failure
from bot.core.settings import Settings
from bot.core.spend import SpendRefused
from bot.store import JobRecord, Owner, Store
from bot.store.job_limits import InFlight, JobLimitExceeded, Limits

CODE = "job_limit"


class JobLimitReached(SpendRefused):
    """A long job was refused by an in-flight limit; the app whispers `failure` (no row)."""


def _noun(kind: object) -> str | None:
    noun = getattr(kind, "in_flight_noun", None)
    return noun if isinstance(noun, str) and noun else None


@dataclass(frozen=True)
class JobLimits:
    """How many unfinished long jobs a user and a workspace may have (0: unlimited)."""

    per_user: int = 0
    per_workspace: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> JobLimits:
        """The limits the settings name."""
        return cls(settings.max_jobs_per_user, settings.max_jobs_per_workspace)

    def applies_to(self, kind: str, kinds: Mapping[str, object]) -> Limits | None:
        """The limits a new `kind` job is checked against; None when nothing limits it."""
        if not (self.per_user or self.per_workspace) or _noun(kinds.get(kind)) is None:
            return None
        counted = frozenset(name for name, k in kinds.items() if _noun(k) is not None)
        return Limits(counted, self.per_user, self.per_workspace)


def _plural(noun: str, n: int) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def refusal(counts: InFlight, limits: Limits, kinds: Mapping[str, object]) -> Failure:
    """The private reply to a refused start: what is running, and what to do about it."""
    mine = ", ".join(
        _plural(_noun(kinds.get(kind)) or kind, n) for kind, n in sorted(counts.by_kind.items())
    )
    cancellable = sorted(
        _noun(kinds.get(kind)) or kind
        for kind in counts.by_kind
        if getattr(kinds.get(kind), "cancel_button", False)
    )
    if limits.per_user and counts.mine >= limits.per_user:
        message = (
            f"You have {counts.mine} running ({mine}), the most you may have at once; "
            "wait for one to finish or cancel one."
        )
    else:
        yours = f", {counts.mine} of them yours ({mine})" if counts.mine else ""
        message = (
            f"This workspace has {counts.workspace} long jobs running{yours}, the most it may "
            "have at once; wait for one to finish"
            + (" or cancel one of yours." if counts.mine else ".")
        )
    hint = "Nothing was started or charged."
    if cancellable:
        hint += (
            f" To cancel a {' or '.join(cancellable)}: the Cancel button on its progress message."
        )
    return Failure(code=CODE, message=message, hint=hint)


async def check_room(
    store: Store, owner: Owner, kind: str, kinds: Mapping[str, object], limits: JobLimits
) -> None:
    """Refuse early (JobLimitReached) when `owner` could not start a `kind` job now."""
    applied = limits.applies_to(kind, kinds)
    if applied is None:
        return
    counts = await store.job_limits.in_flight(owner, applied.kinds)
    if applied.exceeded_by(counts):
        raise JobLimitReached(refusal(counts, applied, kinds))


async def create_job(
    store: Store, job: JobRecord, kinds: Mapping[str, object], limits: JobLimits | None
) -> None:
    """Insert the job's row, counted against the limits in the same transaction."""
    applied = limits.applies_to(job.kind, kinds) if limits is not None else None
    if applied is None:
        await store.create_job(job)
        return
    try:
        await store.job_limits.create_within(job, applied)
    except JobLimitExceeded as exc:
        raise JobLimitReached(refusal(exc.counts, applied, kinds)) from None
