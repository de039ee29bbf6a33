"""The context a running job works through: its row, its typed state, its conversation.

Every write it makes carries the replica's id (`holder`), so a replica whose job another one
has taken over stops at its next write (LeaseLost) instead of delivering the job twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.core.job_state import JobState
from bot.core.messages import Conversation, MessageRef, Part
from bot.store import JobNotHeldError, JobRecord, Owner, Store

if TYPE_CHECKING:
    from bot.core.poll_budget import PollBudget


class JobHost(Protocol):
    """What a running job needs from the runner that started it (bot.core.jobs.JobRunner)."""

    store: Store
    budget: PollBudget

    @property
    def replica_id(self) -> str:
        """This replica's id, written with every job write."""
        ...

    def lease_lost(self, exc: JobNotHeldError) -> BaseException:
        """What a write that found the row held by another replica raises."""
        ...


T = TypeVar("T")


async def uninterrupted(step: Awaitable[T]) -> T:
    """Run `step` to its end even if this task is stopped meanwhile, then stop.

    For a step that must not be cut in half: a read that hands out one-shot bytes, a paid
    submit whose id must be saved. A stop (lease lapsed, shutdown, cancel) waits for it.
    """
    inner = asyncio.ensure_future(step)
    stop: asyncio.CancelledError | None = None
    while not inner.done():
        try:
            await asyncio.wait({inner})
        except asyncio.CancelledError as exc:
            stop = exc
    if stop is not None:
        if not inner.cancelled():
            inner.exception()  # retrieved: the stop wins, its own end is no longer asked for
        raise stop
    return await inner


# Covariant: a helper taking JobContext[AllTokenJobState] accepts a JobContext[ImageState].
S = TypeVar("S", bound=JobState, covariant=True)


class JobContext(Generic[S]):
    """What a running job may touch: its row, its typed state, its conversation, the store."""

    def __init__(
        self,
        runner: JobHost,
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
        self._adopt(await self._update(state=delta))

    async def _update(self, **fields: Any) -> JobRecord:
        """`update_job` as this replica: LeaseLost once another replica holds the job."""
        try:
            return await self.runner.store.update_job(
                self.job.id, holder=self.runner.replica_id, **fields
            )
        except JobNotHeldError as exc:
            raise self.runner.lease_lost(exc) from None

    async def save_upgraded(self) -> None:
        """Write back a state loaded from an older version, whole and at the current version."""
        if self._model.is_current(self.job.state):
            return
        # Keys an upgrade dropped are cleared: rows are merged key by key, never replaced.
        cleared = {k: None for k in self.job.state if k not in self._model.model_fields}
        state = {**cleared, **self._state.model_dump(mode="json")}
        self._adopt(await self._update(state=state))

    async def hand_over(self, **changes: Any) -> None:
        """Write state `changes` although another replica took the job over meanwhile: what
        only this one learnt (a paid submit's id), which the new holder waits for."""
        new = self._model.model_validate({**dict(self._state), **changes})
        delta = new.model_dump(mode="json", include={*changes})
        await self.runner.store.update_job(self.job.id, state=delta)

    async def refresh(self) -> None:
        """Read the row again (another replica may have written to it)."""
        fresh = await self.runner.store.get_job(self.job.id)
        if fresh is not None:
            self._adopt(fresh)

    async def set_status(self, status: str, **fields: Any) -> None:
        """Move the row to `status` (`fields`: error, attempts, raw state keys to merge)."""
        self._adopt(await self._update(status=status, **fields))

    async def claim_delivery(self) -> bool:
        """Compare-and-set running -> delivering; False if another path already delivered."""
        try:
            ok = await self.runner.store.transition_job(
                self.job.id, {"running"}, "delivering", holder=self.runner.replica_id
            )
        except JobNotHeldError as exc:
            raise self.runner.lease_lost(exc) from None
        if ok:
            refreshed = await self.runner.store.get_job(self.job.id)
            if refreshed:
                self._adopt(refreshed)
        return ok

    async def cancel_requested(self) -> bool:
        """Whether the owner asked to cancel (recorded in the row by the Cancel action)."""
        await self.refresh()
        return bool(getattr(self._state, "cancel_requested", False))

    async def uninterrupted(self, step: Awaitable[T]) -> T:
        """`step`, finished even if the job is stopped meanwhile (see `uninterrupted`)."""
        return await uninterrupted(step)

    async def deliver(self, finish: Callable[[], Awaitable[None]]) -> bool:
        """Claim the delivery, then run `finish` (post the result, record it, mark the job
        done) as one uninterrupted step; False when another path already delivered it.

        Resumed in "delivering" (stopped after the claim, before anything was posted), the
        claim is skipped. Cut between its message and "done", the replica resuming the job
        would post the result again; the lease fence still decides, before the message.
        """
        if self.job.status != "delivering" and not await self.claim_delivery():
            return False
        await self.uninterrupted(finish())
        return True

    async def show(self, parts: Sequence[Part]) -> MessageRef:
        """The job's own message: posted once (its ref kept in the state's `progress_ref`),
        then edited in place."""
        ref: MessageRef | None = getattr(self._state, "progress_ref", None)
        if ref is not None:
            await self.conversation.edit(ref, parts)
            return ref
        # Stopped between the post and the save, the job would post a second message.
        return await self.uninterrupted(self._post_and_keep(parts))

    async def _post_and_keep(self, parts: Sequence[Part]) -> MessageRef:
        ref = await self.conversation.say(parts)
        await self.save(progress_ref=ref)
        return ref

    async def poll_slot(self) -> None:
        """Wait for a slot in the process-wide poll budget."""
        await self.runner.budget.acquire()
