"""Durable job runner: long work is a row before the backend is called, and survives restarts.

A job kind (image, video, ...) drives one job to completion through a `JobContext`, saving its
progress in the row's `state` as it goes; the runner supervises every job task, reports any
failure to the user, and resumes unfinished rows at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from bot.core.keys import unreadable_key_failure
from bot.core.messages import Conversation, Destination, Failure
from bot.core.poll_budget import PollBudget
from bot.store import CredentialUnreadableError, JobRecord, Owner, Store

log = logging.getLogger(__name__)

UNFINISHED = {"pending", "running", "delivering"}


class JobCancelled(Exception):
    """Raised inside a job when its owner cancelled it."""


class JobFailed(Exception):
    """A job ended without a result; `failure` is what the user is told."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"{failure.code}: {failure.message}")


class JobContext:
    """What a running job may touch: its row, its conversation, the store, the poll budget."""

    def __init__(self, runner: JobRunner, job: JobRecord, conversation: Conversation) -> None:
        self.runner = runner
        self.job = job
        self.conversation = conversation

    @property
    def state(self) -> dict[str, Any]:
        """The job's saved progress."""
        return self.job.state

    @property
    def owner(self) -> Owner:
        """Whose job this is."""
        return self.job.owner

    @property
    def store(self) -> Store:
        """The store (credentials, usage)."""
        return self.runner.store

    async def save(self, **changes: Any) -> None:
        """Persist progress before acting on it, so a restart continues from here."""
        state = {**self.job.state, **changes}
        self.job = await self.runner.store.update_job(self.job.id, state=state)

    async def set_status(self, status: str, **fields: Any) -> None:
        """Move the row to `status`."""
        self.job = await self.runner.store.update_job(self.job.id, status=status, **fields)

    async def claim_delivery(self) -> bool:
        """Compare-and-set running -> delivering; False if another path already delivered."""
        ok = await self.runner.store.transition_job(self.job.id, {"running"}, "delivering")
        if ok:
            refreshed = await self.runner.store.get_job(self.job.id)
            if refreshed:
                self.job = refreshed
        return ok

    async def cancel_requested(self) -> bool:
        """Whether the owner asked to cancel (recorded in the row by the Cancel action)."""
        fresh = await self.runner.store.get_job(self.job.id)
        if fresh is not None:
            self.job = fresh
        return bool(self.job.state.get("cancel_requested"))

    async def poll_slot(self) -> None:
        """Wait for a slot in the process-wide poll budget."""
        await self.runner.budget.acquire()


class JobKind(Protocol):
    """One kind of long work.

    A kind may also define `check_state(state) -> None`, raising ValueError for saved state
    it cannot resume from; such rows are quarantined at start-up instead of run.
    """

    kind: str

    async def run(self, ctx: JobContext) -> None:
        """Drive the job to completion (deliver the result, mark it done)."""

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        """Tell the user the job failed (e.g. edit its progress message)."""


ConversationFactory = Callable[[Destination], Conversation]


def _new_ref() -> str:
    # Short enough to read out, long enough to find the one log line.
    return uuid.uuid4().hex[:8]


class JobRunner:
    """Starts, supervises and resumes jobs."""

    def __init__(
        self,
        store: Store,
        conversation_for: ConversationFactory,
        budget: PollBudget | None = None,
    ) -> None:
        self.store = store
        self.conversation_for = conversation_for
        self.budget = budget or PollBudget(20.0)
        self._kinds: dict[str, JobKind] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def register(self, kind: JobKind) -> None:
        """Make a job kind runnable."""
        self._kinds[kind.kind] = kind

    @property
    def active(self) -> int:
        """Jobs currently running in this process."""
        return len(self._tasks)

    async def start(
        self, kind: str, owner: Owner, destination: Destination, state: dict[str, Any]
    ) -> JobRecord:
        """Write the row (before any backend call), then run it in the background."""
        if kind not in self._kinds:
            raise KeyError(f"unknown job kind {kind}")
        now = datetime.now(UTC)
        job = JobRecord(
            id=uuid.uuid4().hex[:16],
            kind=kind,
            owner=owner,
            destination=destination.model_dump(mode="json"),
            state=state,
            status="pending",
            attempts=0,
            error=None,
            created_at=now,
            updated_at=now,
            next_run_at=None,
        )
        await self.store.create_job(job)
        self._spawn(job)
        return job

    async def resume(self) -> int:
        """Restart every unfinished job; returns how many.

        A row that cannot be resumed (does not decode, unknown kind, state its kind cannot
        load) is quarantined and its owner told, so one bad row never stops the others.
        """
        jobs, unreadable = await self.store.load_unfinished_jobs()
        for bad in unreadable:
            await self._quarantine(bad.id, bad.kind, bad.reason, bad.destination)
        resumed = 0
        for job in jobs:
            if job.id in self._tasks:
                resumed += 1
                continue
            problem = self._unresumable(job)
            if problem is not None:
                await self._quarantine(job.id, job.kind, problem, job.destination)
                continue
            destination = Destination.model_validate(job.destination)
            try:
                self.conversation_for(destination)
            except LookupError as exc:
                # Not this row's fault: its platform is just not running in this process.
                log.warning("not resuming job %s (%s) here: %s", job.id, job.kind, exc)
                continue
            log.info("resuming job %s (%s, %s)", job.id, job.kind, job.status)
            self._spawn(job)
            resumed += 1
        return resumed

    def _unresumable(self, job: JobRecord) -> str | None:
        """Why this decoded row cannot be run by this process, or None."""
        kind = self._kinds.get(job.kind)
        if kind is None:
            known = ", ".join(sorted(self._kinds)) or "none"
            return f"unknown job kind {job.kind!r} (this tokenbot runs: {known})"
        try:
            Destination.model_validate(job.destination)
        except ValidationError as exc:
            return f"its destination does not decode ({exc.error_count()} error(s))"
        check = getattr(kind, "check_state", None)
        if check is not None:
            try:
                check(job.state)
            except (ValueError, TypeError, KeyError) as exc:
                return f"its saved state cannot be loaded by the {job.kind} job ({exc})"
        return None

    async def _quarantine(
        self, job_id: str, kind: str, reason: str, destination: dict[str, Any] | None
    ) -> None:
        try:
            marked = await self.store.quarantine_job(job_id, reason)
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
        try:
            kind = self._kinds[job.kind]
            destination = Destination.model_validate(job.destination)
            ctx = JobContext(self, job, self.conversation_for(destination))
        except Exception:
            # Nowhere to report to; resume() checks these before spawning, start() too.
            ref = _new_ref()
            log.exception("job %s (%s) could not start [ref %s]", job.id, job.kind, ref)
            await self._finish_row(job.id, "failed", f"could not start (ref {ref})")
            return
        try:
            if job.status == "pending":
                await ctx.set_status("running", attempts=job.attempts + 1)
            else:
                await ctx.set_status(job.status, attempts=job.attempts + 1)
            await kind.run(ctx)
        except asyncio.CancelledError:
            # Shutdown or an explicit cancel: the row stays as it is (resumable) unless the
            # cancel path already marked it cancelled.
            raise
        except JobCancelled:
            await self._finish(ctx, "cancelled", None)
        except JobFailed as exc:
            log.warning("job %s failed: %s", job.id, exc)
            await self._finish(ctx, "failed", exc.failure.code)
            await self._report(kind, ctx, exc.failure)
        except CredentialUnreadableError as exc:
            log.warning("job %s: the owner's %s key does not decrypt", job.id, exc.service)
            failure = unreadable_key_failure(exc.service)
            await self._finish(ctx, "failed", failure.code)
            await self._report(kind, ctx, failure)
        except Exception as exc:
            ref = _new_ref()
            log.exception("job %s (%s) crashed [ref %s]", job.id, job.kind, ref)
            failure = Failure(
                code="internal_error",
                message=f"Something went wrong while working on this (ref {ref}).",
                hint=f"Try the command again; if it keeps happening, give the bot's operator "
                f"the ref {ref}.",
            )
            await self._finish(ctx, "failed", f"{type(exc).__name__} (ref {ref})")
            await self._report(kind, ctx, failure)

    async def _finish_row(self, job_id: str, status: str, error: str) -> None:
        try:
            await self.store.update_job(job_id, status=status, error=error)
        except Exception:
            log.exception("could not record job %s as %s", job_id, status)

    async def _finish(self, ctx: JobContext, status: str, error: str | None) -> None:
        try:
            await ctx.set_status(status, error=error)
        except Exception:
            log.exception("could not record job %s as %s", ctx.job.id, status)

    async def _report(self, kind: JobKind, ctx: JobContext, failure: Failure) -> None:
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
        """Stop this process's task for a job (the caller records the cancellation)."""
        task = self._tasks.get(job_id)
        if task and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is running; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        """Stop all job tasks; their rows stay unfinished and resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
