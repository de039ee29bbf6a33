"""Durable job runner: long work is a row before the backend is called, and survives restarts.

A job kind (image, video, ...) drives one job to completion through a `JobContext`, saving its
progress in the row's `state` as it goes; the state is the kind's versioned `JobState` model
(see bot.core.job_state). The runner supervises every job task, reports any failure to the
user, audits how each job ended, and resumes unfinished rows at start-up.

Several processes (replicas) may share the store: each job is claimed by one of them with a
lease (bot.core.job_leases) that a supervised background task renews; the same task takes over
jobs whose lease ran out. Writes a job makes through its `JobContext` carry the replica's id,
so a replica that lost a job stops at its next write instead of delivering it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.core.job_context import JobContext
from bot.core.job_errors import JobCancelled, JobFailed
from bot.core.job_leases import (
    FencedConversation,
    LeaseKeeper,
    LeaseLost,
    LeasePolicy,
    new_replica_id,
)
from bot.core.job_limits import JobLimits, create_job
from bot.core.job_state import JobState, state_model_of
from bot.core.job_triage import NewerRowWait, unresumable
from bot.core.keys import KeyDirectory, unreadable_key_failure
from bot.core.messages import Conversation, Destination, Failure
from bot.core.poll_budget import PollBudget
from bot.store import (
    AuditEntry,
    CredentialUnreadableError,
    JobNotHeldError,
    JobRecord,
    Owner,
    Store,
)

log = logging.getLogger(__name__)

UNFINISHED = {"pending", "running", "delivering"}


class JobKind(Protocol):
    """One kind of long work.

    A kind should also set `state_model`, the `JobState` subclass its rows hold (kinds without
    one get `NoState`, which holds nothing), and may set `command`, the command name its end is
    audited under (default: its `kind`; None when the kind audits its end itself). It may also
    define `check_state(state: dict) -> None`, raising ValueError for saved state it cannot
    resume from. Rows whose state does not load are quarantined at start-up instead of run.
    """

    kind: str

    async def run(self, ctx: JobContext[Any]) -> None:
        """Drive the job to completion (deliver the result, mark it done)."""

    async def report_failure(self, ctx: JobContext[Any], failure: Failure) -> None:
        """Tell the user the job failed (e.g. edit its progress message)."""


@dataclass(frozen=True)
class JobEnd:
    """How a job ended, as audited: outcome ok/failed/cancelled/expired, code, request id."""

    outcome: str
    detail: str | None = None
    request_id: str | None = None


# A row's final status -> the audited outcome, when the job set the status itself.
_OUTCOME_OF_STATUS = {"done": "ok", "failed": "failed", "cancelled": "cancelled"}


ConversationFactory = Callable[[Destination], Conversation]


def _new_ref() -> str:
    # Short enough to read out, long enough to find the one log line.
    return uuid.uuid4().hex[:8]


class JobRunner:
    """Starts, supervises, claims and resumes jobs (this replica's share of them).

    `clock` gives the epoch seconds leases are measured in (time.time; tests pass their own).
    """

    def __init__(
        self,
        store: Store,
        conversation_for: ConversationFactory,
        budget: PollBudget | None = None,
        *,
        leases: LeasePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.conversation_for = conversation_for
        self.budget = budget or PollBudget(20.0)
        self.leases = leases or LeasePolicy(replica_id=new_replica_id())
        self.clock = clock
        self.lease_keeper = LeaseKeeper(self)
        # Rows not runnable here (their platform runs elsewhere): logged once each.
        self._not_here: set[str] = set()
        self._newer_rows = NewerRowWait()  # rows a newer release may run, when first seen
        self._kinds: dict[str, JobKind] = {}
        self.kinds: Mapping[str, JobKind] = self._kinds  # read-only, for the job limits
        # How to word a key that no longer decrypts (the families declare their key services).
        self.keys = KeyDirectory()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Jobs inside their kind's run (not recording their own end): a cancel from elsewhere
        # may stop these; a job that cancelled itself is left to audit that.
        self._in_run: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def register(self, kind: JobKind) -> None:
        """Make a job kind runnable."""
        state_model_of(kind)  # refuse a bad state_model now, not when a job starts
        self._kinds[kind.kind] = kind

    @property
    def active(self) -> int:
        """Jobs currently running in this process."""
        return len(self._tasks)

    @property
    def replica_id(self) -> str:
        """This replica's id, written into the rows it claims."""
        return self.leases.replica_id

    @property
    def claiming(self) -> bool:
        """False while the store is unreachable: no job is claimed then."""
        return self.lease_keeper.claiming

    def running_ids(self) -> list[str]:
        """The jobs this process is working on right now."""
        return [job_id for job_id, task in self._tasks.items() if not task.done()]

    async def renew_and_take_over(self) -> int:
        """One round of the lease keeper now (see `LeaseKeeper.renew_and_take_over`)."""
        return await self.lease_keeper.renew_and_take_over()

    def lease_lost(self, exc: JobNotHeldError) -> LeaseLost:
        """The exception a job raises when a write finds its row held by another replica."""
        return self.lease_keeper.lease_lost(exc)

    async def stop_local(self, job_id: str) -> None:
        """Stop this process's task for a job, writing nothing (another replica holds it)."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def stop_cancelled_local(self, job_id: str) -> bool:
        """Stop the task of a job cancelled elsewhere, writing nothing (whoever cancelled it
        audits that and updates its message); whether a task was stopped."""
        task = self._tasks.get(job_id)
        if task is None or task.done() or job_id not in self._in_run:
            return False
        task.cancel()
        return True

    def stop_all_local(self) -> None:
        """Cancel every job task, writing nothing: their leases lapsed unrenewed."""
        for task in list(self._tasks.values()):
            task.cancel()

    async def start(
        self,
        kind: str,
        owner: Owner,
        destination: Destination,
        state: JobState | Mapping[str, Any],
        limits: JobLimits | None = None,
    ) -> JobRecord:
        """Write the row (before any backend call), then run it in the background.

        `state` is the kind's state model, or a dict validated into it (a dict without a
        `version` is read as the untyped state callers passed before states were typed).
        """
        if kind not in self._kinds:
            raise KeyError(f"unknown job kind {kind}")
        model = state_model_of(self._kinds[kind])
        if isinstance(state, JobState):
            if not isinstance(state, model):
                raise TypeError(
                    f"a {kind} job's state is a {model.__name__}, not {type(state).__name__}"
                )
            typed: JobState = state
        else:
            typed = model.load(state)
        now = datetime.now(UTC)
        self.lease_keeper.ensure_running()
        job = JobRecord(
            id=uuid.uuid4().hex[:16],
            kind=kind,
            owner=owner,
            destination=destination.model_dump(mode="json"),
            state=typed.model_dump(mode="json"),
            status="pending",
            attempts=0,
            error=None,
            created_at=now,
            updated_at=now,
            next_run_at=None,
            claimed_by=self.replica_id,
            lease_until=self.clock() + self.leases.lease_s,
        )
        await create_job(self.store, job, self._kinds, limits)  # JobLimitReached: no row
        self._spawn(job)
        return job

    async def resume(self) -> int:
        """Claim and restart the unfinished jobs no other replica holds; returns how many run.

        Jobs another replica holds under a live lease are left to it (the lease keeper takes
        them over if that lease runs out). A row that cannot be resumed (does not decode,
        unknown kind, state its kind cannot load) is quarantined and its owner told, so one
        bad row never stops the others. Starts the lease keeper.
        """
        self.lease_keeper.ensure_running()
        claimed, running = await self.claim_available(self.clock())
        return claimed + running

    async def claim_available(self, now: float) -> tuple[int, int]:
        """Claim and spawn every claimable job this process can run: (claimed, already running)."""
        # Another replica's lease counts as run out only past its grace (see LeasePolicy).
        expired = self.leases.expired_before(now)
        jobs, unreadable = await self.store.claimable_jobs(self.replica_id, expired)
        for bad in unreadable:
            await self._quarantine(bad.id, bad.kind, bad.reason, bad.destination, expired)
        wanted: dict[str, JobRecord] = {}
        running = 0
        for job in jobs:
            if job.id in self._tasks:
                running += 1
                continue
            problem = unresumable(job, self._kinds)
            if problem is None:
                if self._platform_here(job):
                    wanted[job.id] = job
            elif problem.newer and self._left_for_newer(job, problem.reason, now):
                continue
            else:
                waited = self._newer_rows.wait_s / 60
                reason = problem.reason + (
                    f"; no newer replica took it in {waited:g} min" if problem.newer else ""
                )
                await self._quarantine(job.id, job.kind, reason, job.destination, expired)
        self._newer_rows.forget({job.id for job in jobs})
        if not wanted:
            return 0, running
        claimed = await self.store.claim_jobs(
            list(wanted), self.replica_id, expired, now + self.leases.lease_s
        )
        spawned = 0
        for job in claimed:
            if job.id in self._tasks:
                continue  # started meanwhile (claimed twice by this replica)
            before = wanted[job.id].claimed_by
            if before and before != self.replica_id:
                log.warning(
                    "taking over job %s (%s, %s) from replica %s: its lease ran out",
                    job.id,
                    job.kind,
                    job.status,
                    before,
                )
            else:
                log.info("resuming job %s (%s, %s)", job.id, job.kind, job.status)
            self._spawn(job)
            spawned += 1
        return spawned, running

    def _left_for_newer(self, job: JobRecord, reason: str, now: float) -> bool:
        """Whether to leave a row a newer release may run to its replicas (for now)."""
        first = job.id not in self._newer_rows
        if not self._newer_rows.waits(job.id, now):
            return False
        if first:
            log.warning("leaving job %s (%s) to a newer replica: %s", job.id, job.kind, reason)
        return True

    def _platform_here(self, job: JobRecord) -> bool:
        """Whether this process runs the platform a resumable row replies on."""
        destination = Destination.model_validate(job.destination)
        try:
            self.conversation_for(destination)
        except LookupError as exc:
            # Not this row's fault: its platform is just not running in this process.
            if job.id not in self._not_here:
                self._not_here.add(job.id)
                log.warning("not resuming job %s (%s) here: %s", job.id, job.kind, exc)
            return False
        return True

    async def _quarantine(
        self,
        job_id: str,
        kind: str,
        reason: str,
        destination: dict[str, Any] | None,
        expired_before: float,
    ) -> None:
        try:
            marked = await self.store.quarantine_job(
                job_id, reason, claimable_by=(self.replica_id, expired_before)
            )
        except Exception:
            log.exception("could not quarantine job %s", job_id)
            return
        if not marked:
            return
        told = await self._tell_not_resumed(job_id, kind, destination)
        log.error(
            "job %s (%s) quarantined and not resumed: %s; %s",
            job_id,
            kind,
            reason,
            "its owner was told" if told else "its owner could not be told",
        )

    async def _tell_not_resumed(
        self, job_id: str, kind: str, destination: dict[str, Any] | None
    ) -> bool:
        if destination is None:
            return False
        try:
            conversation = self.conversation_for(Destination.model_validate(destination))
            await conversation.say(
                [
                    Failure(
                        code="job_not_resumed",
                        message=(
                            f"tokenbot restarted and could not resume your {kind} job "
                            f"(ref {job_id}): its saved progress could not be read."
                        ),
                        hint=(
                            "Run the command again. For a paid image or video, check your "
                            "backend dashboard first so you are not billed twice, and give the "
                            f"bot's operator the ref {job_id}."
                        ),
                    )
                ]
            )
        except Exception as exc:
            log.warning("could not tell the owner of job %s it was not resumed: %s", job_id, exc)
            return False
        return True

    def _spawn(self, job: JobRecord) -> None:
        self._idle.clear()
        task = asyncio.create_task(self._supervise(job), name=f"job-{job.kind}-{job.id}")
        self._tasks[job.id] = task
        job_id = job.id
        task.add_done_callback(lambda _t: self._forget(job_id))

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        if not self._tasks:
            self._idle.set()

    async def _supervise(self, job: JobRecord) -> None:
        kind = self._kinds.get(job.kind)
        try:
            if kind is None:
                raise KeyError(f"unknown job kind {job.kind}")
            destination = Destination.model_validate(job.destination)
            # Its messages are fenced: once cancelled or taken over elsewhere, it says nothing.
            conversation = FencedConversation(
                self.conversation_for(destination),
                self.store,
                job.id,
                self.replica_id,
                self.lease_lost,
                self.lease_keeper.lapsed,
            )
            ctx = JobContext(self, job, conversation, state_model_of(kind))
        except Exception:
            # Nowhere to report to; resume() checks these before spawning, start() too.
            ref = _new_ref()
            log.exception("job %s (%s) could not start [ref %s]", job.id, job.kind, ref)
            await self._finish_row(job.id, "failed", f"could not start (ref {ref})")
            if kind is not None:
                await self._audit_end(kind, job, JobEnd("failed", f"could not start (ref {ref})"))
            return
        # Shutdown or an explicit cancel (CancelledError) passes through: the row stays as it
        # is (resumable) unless the cancel path already marked it cancelled.
        end = await self._drive(kind, ctx)
        if end is not None:
            await self._audit_end(kind, ctx.job, end)

    async def _drive(self, kind: JobKind, ctx: JobContext[Any]) -> JobEnd | None:
        """Run the job; record and report how it ended. None: it has not ended here."""
        job = ctx.job
        try:
            await self._run_marked(kind, ctx)
        except asyncio.CancelledError:
            # Stopped while an uninterrupted delivery finished the job: nobody else audits it.
            if ctx.job.status == "done":
                await self._audit_end(kind, ctx.job, JobEnd("ok", None, ctx.state.request_id))
            raise
        except JobCancelled:
            await self._finish(ctx, "cancelled", None)
            return JobEnd("cancelled", None, ctx.state.request_id)
        except JobFailed as exc:
            log.warning("job %s failed: %s", job.id, exc)
            return await self._fail(kind, ctx, exc.failure, exc.failure.code, exc.outcome)
        except CredentialUnreadableError as exc:
            log.warning("job %s: the owner's %s key does not decrypt", job.id, exc.service)
            failure = unreadable_key_failure(exc.service, self.keys)
            return await self._fail(kind, ctx, failure, failure.code)
        except Exception as exc:
            ref = _new_ref()
            log.exception("job %s (%s) crashed [ref %s]", job.id, job.kind, ref)
            failure = Failure(
                code="internal_error",
                message=f"Something went wrong while working on this (ref {ref}).",
                hint=f"Try the command again; if it keeps happening, give the bot's operator "
                f"the ref {ref}.",
            )
            return await self._fail(kind, ctx, failure, f"{type(exc).__name__} (ref {ref})")
        outcome = _OUTCOME_OF_STATUS.get(ctx.job.status)
        if outcome is None:
            # Still running/delivering: another path (a Cancel, a restart) owns its end.
            return None
        detail = ctx.job.error if outcome == "failed" else None
        return JobEnd(outcome, detail, ctx.state.request_id)

    async def _run_marked(self, kind: JobKind, ctx: JobContext[Any]) -> None:
        """Start (or resume) the row and run the kind, marked as in its run meanwhile."""
        job = ctx.job
        self._in_run.add(job.id)
        try:
            status = "running" if job.status == "pending" else job.status
            await ctx.set_status(status, attempts=job.attempts + 1)
            await ctx.save_upgraded()
            await kind.run(ctx)
        finally:
            self._in_run.discard(job.id)

    async def _fail(
        self,
        kind: JobKind,
        ctx: JobContext[Any],
        failure: Failure,
        error: str,
        outcome: str = "failed",
    ) -> JobEnd:
        await self._finish(ctx, "failed", error)
        await self._report(kind, ctx, failure)
        return JobEnd(outcome, error, failure.request_id or ctx.state.request_id)

    async def _audit_end(self, kind: JobKind, job: JobRecord, end: JobEnd) -> None:
        """The audit row of a job's end (the app audits only that it was started)."""
        command = getattr(kind, "command", kind.kind)
        if command is None:
            return  # the kind audits its own end
        try:
            await self.store.audit(
                AuditEntry(
                    owner=job.owner,
                    command=command,
                    outcome=end.outcome,
                    detail=end.detail,
                    request_id=end.request_id,
                )
            )
        except Exception:
            log.exception("could not audit the end of job %s", job.id)

    async def _finish_row(self, job_id: str, status: str, error: str) -> None:
        try:
            await self.store.update_job(job_id, status=status, error=error, holder=self.replica_id)
        except Exception:
            log.exception("could not record job %s as %s", job_id, status)

    async def _finish(self, ctx: JobContext[Any], status: str, error: str | None) -> None:
        try:
            await ctx.set_status(status, error=error)
        except Exception:
            log.exception("could not record job %s as %s", ctx.job.id, status)

    async def _report(self, kind: JobKind, ctx: JobContext[Any], failure: Failure) -> None:
        try:
            await kind.report_failure(ctx, failure)
        except Exception:
            log.exception("could not report failure of job %s", ctx.job.id)
            try:
                await ctx.conversation.say([failure])
            except Exception:
                log.exception("could not tell the user about job %s", ctx.job.id)

    def is_running(self, job_id: str) -> bool:
        """Whether this process is working on the job right now."""
        task = self._tasks.get(job_id)
        return task is not None and not task.done()

    async def cancel_local(self, job_id: str) -> None:
        """Stop this process's task for a job (the caller records the cancellation).

        Called once, right after the caller moved the row to cancelled: unless the job ended
        on its own first, that end is audited here, since a stopped task cannot audit it.
        """
        task = self._tasks.get(job_id)
        if task is not None:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            if not task.cancelled():
                return  # it ended on its own, and audited that
        await self._audit_cancelled(job_id)

    async def _audit_cancelled(self, job_id: str) -> None:
        try:
            job = await self.store.get_job(job_id)
        except Exception:
            log.exception("could not read job %s to audit its cancellation", job_id)
            return
        kind = self._kinds.get(job.kind) if job is not None else None
        if job is None or kind is None or job.status != "cancelled":
            return
        try:
            request_id = state_model_of(kind).load(job.state).request_id
        except (ValueError, TypeError):
            request_id = None
        await self._audit_end(kind, job, JobEnd("cancelled", None, request_id))

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is running; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        """Stop the lease keeper and all job tasks, then hand their claims back: the rows stay
        unfinished and resume at once on another replica, or on the next start."""
        had_keeper = await self.lease_keeper.stop()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if had_keeper or tasks:
            await self.lease_keeper.release()
