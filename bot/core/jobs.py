"""Durable job runner: long work is a row before the backend is called, and survives restarts.

A job kind (image, video, ...) drives one job to completion through a `JobContext`, saving its
progress in the row's `state` as it goes; the state is the kind's versioned `JobState` model
(see bot.core.job_state). The runner supervises every job task, reports any failure to the
user, audits how each job ended, and resumes unfinished rows at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from bot.core.job_state import JobState, NoState
from bot.core.keys import KeyDirectory, unreadable_key_failure
from bot.core.messages import Conversation, Destination, Failure
from bot.core.poll_budget import PollBudget
from bot.store import AuditEntry, CredentialUnreadableError, JobRecord, Owner, Store

log = logging.getLogger(__name__)

UNFINISHED = {"pending", "running", "delivering"}


class JobCancelled(Exception):
    """Raised inside a job when its owner cancelled it."""


class JobFailed(Exception):
    """A job ended without a result; `failure` is what the user is told."""

    # How the job's end is audited.
    outcome = "failed"

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"{failure.code}: {failure.message}")


class JobExpired(JobFailed):
    """A job ran out of time (its deadline, or the backend's expiry): audited as `expired`."""

    outcome = "expired"


# Covariant: a helper taking JobContext[AllTokenJobState] accepts a JobContext[ImageState].
S = TypeVar("S", bound=JobState, covariant=True)


class JobContext(Generic[S]):
    """What a running job may touch: its row, its typed state, its conversation, the store."""

    def __init__(
        self,
        runner: JobRunner,
        job: JobRecord,
        conversation: Conversation,
        model: type[S],
    ) -> None:
        self.runner = runner
        self.job = job
        self.conversation = conversation
        self._model = model
        self._state = model.load(job.state)

    @property
    def state(self) -> S:
        """The job's saved progress, as its kind's model (read-only: change it with `save`)."""
        return self._state

    @property
    def owner(self) -> Owner:
        """Whose job this is."""
        return self.job.owner

    @property
    def store(self) -> Store:
        """The store (credentials, usage)."""
        return self.runner.store

    def _adopt(self, job: JobRecord) -> None:
        self.job = job
        self._state = self._model.load(job.state)

    async def save(self, **changes: Any) -> None:
        """Persist progress before acting on it, so a restart continues from here.

        `changes` are validated by the kind's model; only they (and `version`) are written,
        so a field another path set meanwhile (the Cancel button's request) is kept.
        """
        new = self._model.model_validate({**dict(self._state), **changes})
        delta = new.model_dump(mode="json", include={*changes, "version"})
        self._adopt(await self.runner.store.update_job(self.job.id, state=delta))

    async def save_upgraded(self) -> None:
        """Write back a state loaded from an older version, whole and at the current version."""
        if self._model.is_current(self.job.state):
            return
        # Keys an upgrade dropped are cleared: rows are merged key by key, never replaced.
        cleared = {k: None for k in self.job.state if k not in self._model.model_fields}
        state = {**cleared, **self._state.model_dump(mode="json")}
        self._adopt(await self.runner.store.update_job(self.job.id, state=state))

    async def set_status(self, status: str, **fields: Any) -> None:
        """Move the row to `status` (`fields`: error, attempts, raw state keys to merge)."""
        self._adopt(await self.runner.store.update_job(self.job.id, status=status, **fields))

    async def claim_delivery(self) -> bool:
        """Compare-and-set running -> delivering; False if another path already delivered."""
        ok = await self.runner.store.transition_job(self.job.id, {"running"}, "delivering")
        if ok:
            refreshed = await self.runner.store.get_job(self.job.id)
            if refreshed:
                self._adopt(refreshed)
        return ok

    async def cancel_requested(self) -> bool:
        """Whether the owner asked to cancel (recorded in the row by the Cancel action)."""
        fresh = await self.runner.store.get_job(self.job.id)
        if fresh is not None:
            self._adopt(fresh)
        return bool(getattr(self._state, "cancel_requested", False))

    async def poll_slot(self) -> None:
        """Wait for a slot in the process-wide poll budget."""
        await self.runner.budget.acquire()


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


def state_model_of(kind: JobKind) -> type[JobState]:
    """The state model a kind declared (NoState if it declared none)."""
    model = getattr(kind, "state_model", NoState)
    if not (isinstance(model, type) and issubclass(model, JobState)):
        raise TypeError(f"job kind {kind.kind}: state_model must be a JobState subclass")
    return model


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
        # How to word a key that no longer decrypts (the families declare their key services).
        self.keys = KeyDirectory()
        self._tasks: dict[str, asyncio.Task[None]] = {}
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

    async def start(
        self,
        kind: str,
        owner: Owner,
        destination: Destination,
        state: JobState | Mapping[str, Any],
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
        try:
            state_model_of(kind).load(job.state)
            check = getattr(kind, "check_state", None)
            if check is not None:
                check(job.state)
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'state'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            return f"its saved state cannot be loaded by the {job.kind} job ({errors})"
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
        kind = self._kinds.get(job.kind)
        try:
            if kind is None:
                raise KeyError(f"unknown job kind {job.kind}")
            destination = Destination.model_validate(job.destination)
            ctx = JobContext(self, job, self.conversation_for(destination), state_model_of(kind))
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
            status = "running" if job.status == "pending" else job.status
            await ctx.set_status(status, attempts=job.attempts + 1)
            await ctx.save_upgraded()
            await kind.run(ctx)
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
            await self.store.update_job(job_id, status=status, error=error)
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
        """Stop all job tasks; their rows stay unfinished and resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
