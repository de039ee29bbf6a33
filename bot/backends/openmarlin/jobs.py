"""Durable OpenMarlin jobs: registration sign-in and long tasks (top-ups: `topup_job`).

Each is a job row before OpenMarlin is called, saves its progress (session, task or top-up id)
as soon as it has it, and resumes polling after a restart. Registration and top-up messages are
private (they concern one person's account and money); a task's progress is one public message
edited in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from bot.backends.openmarlin.job_state import RegistrationState, TaskState
from bot.backends.openmarlin.render import (
    TASK_METADATA,
    failure,
    insufficient_parts,
    task_done,
    task_failed,
    task_progress,
)
from bot.backends.openmarlin.service import (
    Amount,
    InsufficientBalance,
    OpenMarlinService,
    RegistrationSession,
    TaskInput,
    TaskRequest,
    TaskStatus,
)
from bot.backends.openmarlin.wire import settlement_of
from bot.core.errors import BackendError
from bot.core.http import PollBackoff
from bot.core.job_errors import JobExpired, JobFailed
from bot.core.job_leases import LeaseLost
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Link, Notice, Part, Text
from bot.core.spend import FindsServices, job_hold, job_key, job_usage
from bot.store import JobNotFoundError, JobRecord, Owner, Store

log = logging.getLogger(__name__)

SERVICE = "openmarlin"
REGISTRATION_KIND = "openmarlin.registration"
TASK_KIND = "openmarlin.task"
TOPUP_KIND = "openmarlin.topup"
SNAPSHOT_KIND = "openmarlin.balance_snapshot"
# A session that ends "expired" this long before its expiry time was ended by the person.
DENIAL_MARGIN_S = 2.0
_T = TypeVar("_T")


class OpenMarlinTiming(BaseModel):
    """How often and how long the OpenMarlin jobs poll (the reference: every 2 s)."""

    poll_s: float = Field(2.0, gt=0)
    registration_timeout_s: float = Field(300.0, gt=0)
    task_timeout_s: float = Field(1800.0, gt=0)
    topup_timeout_s: float = Field(1800.0, gt=0)
    max_transient_errors: int = Field(6, ge=0)
    # A replica taking a task over mid-submit waits this long for the old holder, still inside
    # the submit, to hand over the task's id (the HTTP time-out bounds that submit).
    submit_handover_s: float = Field(60.0, gt=0)

    def poll_backoff(self) -> PollBackoff:
        """How a poll rides out transient errors: `poll_s` × n, at most 30 s."""
        return PollBackoff(base_s=self.poll_s, cap_s=30.0, max_errors=self.max_transient_errors)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _snapshot_id(owner: Owner) -> str:
    digest = hashlib.sha256(
        f"{owner.platform}\0{owner.workspace}\0{owner.user}".encode()
    ).hexdigest()
    return f"om-balance-{digest[:24]}"


async def remember_balance(
    store: Store, owner: Owner, amount: Amount, workspace_id: str | None = None
) -> None:
    """Keep the latest balance seen, shown as "last known" when the server can't answer.

    It lives in one finished job row per person (a fixed id, never resumed): the store has no
    table for it, and rewriting the encrypted key just to add metadata could race a new key.
    """
    state: dict[str, Any] = {
        "balance_amount": f"{amount.amount.normalize():f}",
        "balance_unit": amount.unit,
        "balance_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspace_id": workspace_id or "",
    }
    job_id = _snapshot_id(owner)
    try:
        await store.update_job(job_id, state=state)
        return
    except JobNotFoundError:
        pass
    record = JobRecord(
        id=job_id, kind=SNAPSHOT_KIND, owner=owner, destination={}, state=state, status="done"
    )
    try:
        await store.create_job(record)
    except ValueError:  # another call created it first
        await store.update_job(job_id, state=state)


async def last_balance(store: Store, owner: Owner) -> dict[str, str]:
    """The snapshot `remember_balance` kept, or {}."""
    job = await store.get_job(_snapshot_id(owner))
    return {k: str(v) for k, v in job.state.items()} if job else {}


RegistrationContext = JobContext[RegistrationState]
TaskContext = JobContext[TaskState]


class MarlinJob:
    """What the three job kinds share: the key, deadlines, guarded polls, messages."""

    kind = ""

    def __init__(self, service: OpenMarlinService, timing: OpenMarlinTiming) -> None:
        self.service = service
        self.timing = timing
        self.services: FindsServices | None = None  # where budgets are found (family.attach)

    async def _key(self, ctx: JobContext[Any]) -> str:
        key = await job_key(ctx, SERVICE)
        if not key:
            raise JobFailed(
                Failure(
                    code="missing_key",
                    message="Your OpenMarlin key was removed while this was running.",
                    hint="Run `/openmarlin register` or store a key with `/openmarlin key`, then try again.",
                )
            )
        return key

    @staticmethod
    def _deadline(ctx: JobContext[Any], timeout_s: float) -> float:
        age = (datetime.now(UTC) - ctx.job.created_at).total_seconds()
        return time.monotonic() + max(timeout_s - age, 0.0)

    def _failure(self, exc: BackendError, *, task: bool = False) -> Failure:
        return failure(exc, task=task, server_url=self.service.server_url)

    async def _poll(
        self,
        ctx: JobContext[Any],
        call: Callable[[], Awaitable[_T]],
        errors: list[int],
        *,
        task: bool = False,
    ) -> _T | None:
        """One poll in the process-wide budget; transient errors back off and return None."""
        await ctx.poll_slot()
        try:
            result = await call()
        except BackendError as exc:
            wait = self.timing.poll_backoff().wait_after(exc, len(errors) + 1)
            if wait is None:
                raise JobFailed(self._failure(exc, task=task)) from None
            errors.append(exc.status)
            await asyncio.sleep(wait)
            return None
        errors.clear()
        return result

    @staticmethod
    async def _tell(ctx: JobContext[Any], parts: list[Part]) -> None:
        """Private to the person who started the job."""
        await ctx.conversation.whisper(parts)

    async def report_failure(self, ctx: JobContext[Any], failure_: Failure) -> None:
        """Private by default (registration, top-up)."""
        await self._tell(ctx, [failure_])


class RegistrationJob(MarlinJob):
    """Device-flow (or browser) registration: link privately, poll, bootstrap, store the key."""

    kind = REGISTRATION_KIND
    command = "openmarlin.register"
    state_model = RegistrationState

    async def run(self, ctx: RegistrationContext) -> None:
        """Drive one registration from session to stored key."""
        if not ctx.state.session_id:
            await self._start(ctx)
        session = await self._wait(ctx)
        await self._bootstrap(ctx, session)

    async def _start(self, ctx: RegistrationContext) -> None:
        try:
            session = await self.service.create_registration(ctx.state.auth_flow)
        except BackendError as exc:
            raise JobFailed(self._failure(exc)) from None
        handoff = session.handoff
        # The device code / callback state is short-lived and is cleared once the key is stored.
        await ctx.save(
            session_id=session.registration_session_id,
            device_code=handoff.device_code,
            callback_state=handoff.callback_state,
            expires_at=session.expires_at,
        )
        url = handoff.authorization_url
        if not url:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="OpenMarlin started a registration but gave no sign-in link.",
                    request_id=session.registration_session_id,
                    hint="Try `/openmarlin register` again in a minute.",
                )
            )
        await self._tell(
            ctx,
            [
                Notice(
                    level="info",
                    text="🔐 Finish setting up OpenMarlin in your browser: open the link, sign "
                    "in and approve. tokenbot never asks for your password, a magic link or an "
                    "MFA code in chat — only this link, and only for you.",
                ),
                Link(
                    url=url,
                    label="Sign in to OpenMarlin",
                    expires_at=_parse_time(session.expires_at),
                ),
                Notice(
                    level="progress",
                    text="Waiting for you to approve… I'll confirm here when your key is stored.",
                ),
            ],
        )

    async def _wait(self, ctx: RegistrationContext) -> RegistrationSession:
        session_id = str(ctx.state.session_id)
        expires = _parse_time(ctx.state.expires_at)
        timeout = self.timing.registration_timeout_s
        if expires is not None:
            left = (expires - ctx.job.created_at).total_seconds() + 2 * self.timing.poll_s
            timeout = min(timeout, max(left, self.timing.poll_s))
        deadline = self._deadline(ctx, timeout)
        errors: list[int] = []
        while True:
            session = await self._poll(
                ctx, lambda: self.service.get_registration(session_id), errors
            )
            if session is not None:
                if session.state == "completed":
                    return session
                if session.state == "expired":
                    await ctx.save(device_code=None, callback_state=None)
                    raise self._ended(session)
            if time.monotonic() > deadline:
                await ctx.save(device_code=None, callback_state=None)
                raise JobExpired(self._expired(session_id))
            await asyncio.sleep(self.timing.poll_s)

    def _ended(self, session: RegistrationSession) -> JobFailed:
        """A session that ended early was declined; one that ended at its expiry, expired."""
        expires = _parse_time(session.expires_at)
        now = datetime.now(UTC)
        if expires is not None and (expires - now).total_seconds() > DENIAL_MARGIN_S:
            return JobFailed(
                Failure(
                    code="registration_denied",
                    message="The OpenMarlin sign-in was declined before it expired, so no key "
                    "was created.",
                    request_id=session.registration_session_id,
                    hint="If that was a mistake, run `/openmarlin register` again and choose "
                    "Approve.",
                )
            )
        return JobExpired(self._expired(session.registration_session_id))

    @staticmethod
    def _expired(session_id: str) -> Failure:
        return Failure(
            code="registration_expired",
            message="The OpenMarlin sign-in link expired before it was approved, so no key was "
            "created.",
            request_id=session_id,
            hint="Run `/openmarlin register` again and approve the new link within 5 minutes.",
        )

    async def _bootstrap(self, ctx: RegistrationContext, session: RegistrationSession) -> None:
        """Have the key issued and store it (once), then say so."""
        await ctx.deliver(lambda: self._store_and_tell(ctx, session))

    async def _store_and_tell(self, ctx: RegistrationContext, session: RegistrationSession) -> None:
        if not ctx.state.stored:
            await self._store_key(ctx, session)
        await self._tell(ctx, _set_up_parts(session))
        await ctx.set_status("done")

    async def _store_key(self, ctx: RegistrationContext, session: RegistrationSession) -> None:
        label = f"tokenbot {ctx.owner.platform}:{ctx.owner.user}"[:100]
        try:
            issued = await self.service.bootstrap_key(
                session.registration_session_id,
                device_code=ctx.state.device_code,
                callback_state=ctx.state.callback_state,
                label=label,
            )
        except BackendError as exc:
            if exc.status == 409:
                raise JobFailed(
                    Failure(
                        code="key_already_issued",
                        message="OpenMarlin already issued this registration's key, and "
                        "tokenbot does not have it (it was interrupted while storing it).",
                        request_id=exc.request_id,
                        hint="Run `/openmarlin register` again for a fresh key.",
                    )
                ) from None
            raise JobFailed(self._failure(exc)) from None
        workspace = session.completion.workspace if session.completion else None
        meta = {
            "source": "registration",
            "key_id": issued.api_key.key_id,
            "label": issued.api_key.label or label,
            "key_set_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        workspace_id = issued.api_key.workspace_id or (
            workspace.workspace_id if workspace else None
        )
        if workspace_id:
            meta["workspace_id"] = workspace_id
        if workspace and workspace.slug:
            meta["workspace_slug"] = workspace.slug
        # Stored before anything else: the server shows this secret exactly once.
        await ctx.store.put_credential(ctx.owner, SERVICE, issued.secret, meta=meta)
        await ctx.save(stored=True, device_code=None, callback_state=None)


def _set_up_parts(session: RegistrationSession) -> list[Part]:
    """The confirmation that registration finished, naming the workspace."""
    completion = session.completion
    workspace = completion.workspace if completion else None
    name = (
        (workspace.display_name or workspace.slug or workspace.workspace_id) if workspace else None
    )
    new = " (a new account)" if completion and completion.is_new_account else ""
    return [
        Notice(
            level="success",
            text="OpenMarlin is set up"
            + (f" — workspace **{name}**{new}" if name else "")
            + ". Your API key is stored for you, encrypted; tokenbot will not show it.",
        ),
        Text(
            markdown="Try `use openmarlin to say hello`, `use openmarlin balance` or "
            "`use openmarlin models`."
        ),
    ]


class TaskJob(MarlinJob):
    """Submit a task once, acknowledge its id, show queued → running, then the result."""

    kind = TASK_KIND
    command = "openmarlin.task"
    in_flight_noun = "OpenMarlin task"  # counted by the in-flight job limits
    state_model = TaskState

    async def report_failure(self, ctx: TaskContext, failure_: Failure) -> None:
        """Replace the task's public message with the failure (or post it); release the hold."""
        await job_hold(self.services, ctx, SERVICE).release()
        await self._show(ctx, [failure_])

    @staticmethod
    async def _show(ctx: TaskContext, parts: list[Part]) -> None:
        await ctx.show(parts)

    def _note(self, ctx: TaskContext) -> str:
        ignored = ctx.state.ignored
        if not ignored:
            return ""
        return (
            "Tasks pick their own executor, so the routing you gave ("
            + ", ".join(str(i) for i in ignored)
            + ") was not sent."
        )

    async def run(self, ctx: TaskContext) -> None:
        """Drive one task to its result."""
        key = await self._key(ctx)
        prompt = ctx.state.prompt
        if ctx.state.submit_started and not ctx.state.task_id:
            await self._handed_over(ctx)
        if not ctx.state.task_id:
            status = await self._submit(ctx, key, prompt)
            if status is None:
                return
        task_id = str(ctx.state.task_id)
        last = ctx.state.last_status or ""
        deadline = self._deadline(ctx, self.timing.task_timeout_s)
        errors: list[int] = []
        while True:
            status = await self._poll(
                ctx, lambda: self.service.get_task(key, task_id), errors, task=True
            )
            if status is not None:
                if status.status == "succeeded":
                    await self._deliver(ctx, status, prompt)
                    return
                if status.status == "failed":
                    raise JobFailed(task_failed(status))
                if status.status != last:
                    last = status.status
                    await ctx.save(last_status=last)
                    await self._show(ctx, task_progress(task_id, last, prompt, self._note(ctx)))
            if time.monotonic() > deadline:
                raise JobExpired(
                    Failure(
                        code="timeout",
                        message=f"Task {task_id} did not finish within "
                        f"{int(self.timing.task_timeout_s // 60)} minutes; tokenbot stopped watching.",
                        request_id=task_id,
                        hint=f"It may still finish: check with `/openmarlin task status {task_id}`.",
                    )
                )
            await asyncio.sleep(self.timing.poll_s)

    async def _handed_over(self, ctx: TaskContext) -> None:
        """Taken over mid-submit: wait for the old holder to hand over the task's id."""
        # No idempotency key and no task list in the API: resubmitting could pay twice.
        deadline = time.monotonic() + self.timing.submit_handover_s
        while not ctx.state.task_id and time.monotonic() < deadline:
            await asyncio.sleep(min(self.timing.poll_s, 1.0))
            await ctx.refresh()
        if not ctx.state.task_id:
            raise JobFailed(
                Failure(
                    code="submit_interrupted",
                    message="tokenbot restarted while submitting this task, so its id is "
                    "unknown; it may or may not be running.",
                    hint="Check `use openmarlin activity` before submitting it again.",
                )
            )
        log.info("job %s: adopted task %s from its last holder", ctx.job.id, ctx.state.task_id)

    async def _submit(self, ctx: TaskContext, key: str, prompt: str) -> TaskStatus | None:
        request = TaskRequest(
            input=TaskInput(
                prompt=prompt,
                duration_ms=ctx.state.duration_ms,
                aspect_ratio=ctx.state.aspect_ratio,
            ),
            metadata=dict(TASK_METADATA),
        )

        async def submit_and_save() -> TaskStatus:
            # One step from the flag on: stopped between them, the task would be marked as
            # submitted (and the next holder wait for its id) though it never was.
            await ctx.save(submit_started=True)
            status = await self.service.submit_task(key, request)
            try:
                await ctx.save(task_id=status.task_id, last_status=status.status)
            except LeaseLost:
                # Taken over meanwhile: the new holder waits for this id (`_handed_over`).
                await ctx.hand_over(task_id=status.task_id, last_status=status.status)
                raise
            return status

        try:
            status = await ctx.uninterrupted(submit_and_save())
        except BackendError as exc:
            info = InsufficientBalance.from_error(exc)
            if info is None:
                raise JobFailed(self._failure(exc, task=True)) from None
            await remember_balance(ctx.store, ctx.owner, info.current, info.workspace_id)
            await self._tell(ctx, insufficient_parts(info, exc.request_id))
            await ctx.set_status("failed", error="insufficient_balance")
            return None
        # Acknowledge with the id at once; later states edit this same message.
        await self._show(ctx, task_progress(status.task_id, status.status, prompt, self._note(ctx)))
        return status

    async def _deliver(self, ctx: TaskContext, status: TaskStatus, prompt: str) -> None:
        await ctx.deliver(lambda: self._answer(ctx, status, prompt))

    async def _answer(self, ctx: TaskContext, status: TaskStatus, prompt: str) -> None:
        if not status.artifact_url and not status.output:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="The task succeeded but OpenMarlin sent no output.",
                    request_id=status.task_id,
                )
            )
        await self._show(ctx, task_done(status, prompt))
        cost, source = settlement_of((status.output or {}).get("settlement"))
        usage = job_usage(ctx, SERVICE, "task", request_id=status.task_id)
        await job_hold(self.services, ctx, SERVICE).settle(usage, cost, source)
        await ctx.set_status("done")


def job_state_for_task(**fields: Any) -> dict[str, Any]:
    """The initial state of a task job (only JSON-ready values)."""
    return {k: v for k, v in fields.items() if v is not None}
