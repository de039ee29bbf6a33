"""Job claims across replicas: who this process is, how long its claims last, when they renew.

Every tokenbot process sharing a store is a replica with its own id. A job row is run by the
replica that claimed it; the claim is a lease the runner renews while the job runs (see
`JobRunner` in bot.core.jobs), and a lease that runs out (its replica died, or lost the
store) lets another replica claim the job and resume it from its saved state.

A replica that cannot renew (the store unreachable, or this process stalled) writes no
message once its own lease could have run out, by its own clock; another replica takes the
job over only one renewal interval after that, so the two never both deliver a result.

A job cancelled on another replica is stopped here without a further write: at once when
the store's job notices say so (PostgreSQL), else at the next renewal round, which also
reads whether the held rows were cancelled. The replica that cancelled audits that end and
updates the message; the job's own messages are fenced (`FencedConversation`), so a task that
has not heard yet never writes over them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.store import JobCancelledError, JobNotHeldError

if TYPE_CHECKING:
    from bot.core.messages import Conversation, Image, MessageRef, Part
    from bot.core.settings import Settings
    from bot.store import Store

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
DEFAULT_RENEW_EVERY_S = 10.0
# How long a graceful stop waits to hand its claims back (an unreachable store: they expire).
RELEASE_TIMEOUT_S = 5.0


def _default_replica_id(settings: Settings) -> str:
    """An embedded SQLite store has one process at a time (it is a file on this machine): that
    process keeps one name across restarts, so a restart takes its own jobs back at once.
    Anything else (PostgreSQL, shared by replicas) gets a new unique id per start."""
    url = settings.store_url
    if url.startswith("sqlite:"):
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-embedded-{digest}"
    return new_replica_id()


def new_replica_id() -> str:
    """A replica id unique to this runner: host, process id and a random suffix.

    Unique even for two runners in one process (tests), so two never think they are one;
    set TOKENBOT_REPLICA_ID to a stable name (the pod's) to have a restarted replica take its
    own jobs back at once instead of after their leases run out.
    """
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LeasePolicy:
    """This replica's id, how long a claim lasts unrenewed, and how often claims are renewed
    (and the store scanned for jobs to take over)."""

    replica_id: str
    lease_s: float = DEFAULT_LEASE_S
    renew_every_s: float = DEFAULT_RENEW_EVERY_S

    @property
    def takeover_grace_s(self) -> float:
        """How long past a lease's end another replica waits before taking its job over: the
        holder's last failed round may end that much after its lease did."""
        return self.renew_every_s

    def expired_before(self, now: float) -> float:
        """Leases ending before this time may be taken over at `now`."""
        return now - self.takeover_grace_s

    def __post_init__(self) -> None:
        if not self.replica_id:
            raise ValueError("a replica id must not be empty")
        if not 0 < self.renew_every_s < self.lease_s:
            raise ValueError(
                f"the lease renewal interval ({self.renew_every_s} s) must be positive and "
                f"shorter than the lease ({self.lease_s} s)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> LeasePolicy:
        """TOKENBOT_REPLICA_ID (or a new unique id), TOKENBOT_JOB_LEASE_SECONDS and
        TOKENBOT_JOB_LEASE_RENEW_SECONDS (a third of the lease if it is not shorter)."""
        lease_s, renew_s = settings.job_lease_s, settings.job_lease_renew_s
        if renew_s >= lease_s:
            # Renewing after the lease ran out would hand every job to another replica.
            log.warning(
                "TOKENBOT_JOB_LEASE_RENEW_SECONDS (%s) is not shorter than "
                "TOKENBOT_JOB_LEASE_SECONDS (%s): renewing every %.3g s instead",
                renew_s,
                lease_s,
                lease_s / 3,
            )
            renew_s = lease_s / 3
        return cls(
            replica_id=settings.replica_id.strip() or _default_replica_id(settings),
            lease_s=lease_s,
            renew_every_s=renew_s,
        )


class LeaseLost(asyncio.CancelledError):
    """Raised inside a job whose row another replica now holds.

    A CancelledError, so that it passes every `except Exception` in a job kind: the task stops
    as on shutdown, writing nothing more, and the row is left to its new holder.
    """


class LeasedRunner(Protocol):
    """What the lease keeper needs of the job runner."""

    store: Store
    leases: LeasePolicy
    clock: Callable[[], float]

    @property
    def replica_id(self) -> str: ...

    def running_ids(self) -> list[str]: ...

    async def claim_available(self, now: float) -> tuple[int, int]: ...

    async def stop_local(self, job_id: str) -> None: ...

    def stop_cancelled_local(self, job_id: str) -> bool: ...

    def stop_all_local(self) -> None: ...


class LeaseKeeper:
    """A replica's supervised background task: renews its job leases, stops the jobs it lost,
    and takes over jobs whose lease ran out. Stops claiming while the store is unreachable."""

    def __init__(self, runner: LeasedRunner) -> None:
        self._runner = runner
        self._task: asyncio.Task[None] | None = None
        # Set while rounds fail (the store is unreachable): logged once, cleared on recovery.
        self._store_lost = False
        self._last_renewed = runner.clock()

    @property
    def claiming(self) -> bool:
        """False while the store is unreachable: no job is claimed then."""
        return not self._store_lost

    def ensure_running(self) -> None:
        """Start the background task (again, if it ended)."""
        if self._task is None or self._task.done():
            self._runner.store.job_notices.subscribe(self._cancelled_elsewhere)
            self._last_renewed = self._runner.clock()
            self._task = asyncio.create_task(
                self._loop(), name=f"job-leases-{self._runner.replica_id}"
            )

    async def stop(self) -> bool:
        """Stop the background task (no more renewals); whether it was running."""
        self._runner.store.job_notices.unsubscribe(self._cancelled_elsewhere)
        task, self._task = self._task, None
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._runner.leases.renew_every_s)
            try:
                await self.renew_and_take_over()
            except Exception:
                log.exception("the job lease keeper failed; it runs again shortly")

    async def renew_and_take_over(self) -> int:
        """One round: renew this replica's leases, stop jobs it lost, and claim jobs whose
        lease ran out (or that nobody holds). How many it claimed.

        While the store is unreachable nothing is claimed (logged once); once this replica's
        leases have run out unrenewed, its jobs are stopped, since another replica may take
        them over. They resume wherever they are claimed next, this replica included.
        """
        now = self._runner.clock()
        try:
            # Bounded: on a network that drops packets a query would wait forever, and the
            # leases must be seen to lapse so that the jobs are stopped here.
            claimed = await asyncio.wait_for(self._round(now), self._runner.leases.renew_every_s)
        except Exception as exc:
            # Timed at the failure, not at the round's start: a round may take renew_every_s.
            self._store_unreachable(exc, self._runner.clock())
            return 0
        if self._store_lost:
            self._store_lost = False
            log.warning(
                "the store answers again: replica %s claims jobs again", self._runner.replica_id
            )
        return claimed

    async def _round(self, now: float) -> int:
        await self._renew(now)
        claimed, _running = await self._runner.claim_available(now)
        return claimed

    async def _renew(self, now: float) -> None:
        runner = self._runner
        ids = runner.running_ids()
        renewal = await runner.store.renew_and_check_jobs(
            runner.replica_id, ids, now + runner.leases.lease_s
        )
        self._last_renewed = now
        for job_id in set(ids) - renewal.held:
            log.warning(
                "job %s was taken over by another replica; replica %s stops it",
                job_id,
                runner.replica_id,
            )
            await runner.stop_local(job_id)
        for job_id in sorted(renewal.cancelled):
            # No notice reached this replica (SQLite, or the listener was away): stop it now.
            if runner.stop_cancelled_local(job_id):
                log.info("job %s was cancelled; replica %s stopped it", job_id, runner.replica_id)

    def _cancelled_elsewhere(self, job_id: str) -> None:
        """A job notice: another replica cancelled `job_id`; stop the task here, if any."""
        if self._runner.stop_cancelled_local(job_id):
            log.info(
                "job %s was cancelled on another replica; replica %s stopped it",
                job_id,
                self._runner.replica_id,
            )

    def _store_unreachable(self, exc: Exception, now: float) -> None:
        runner = self._runner
        if not self._store_lost:
            self._store_lost = True
            log.error(
                "the store is unreachable (%s: %s): replica %s claims no job until it answers",
                type(exc).__name__,
                " ".join(str(exc).split())[:300] or "no answer in time",
                runner.replica_id,
            )
        running = runner.running_ids()
        if running and now - self._last_renewed >= runner.leases.lease_s:
            log.error(
                "replica %s could not renew its job leases for %.0f s: stopping its %d job(s), "
                "which resume wherever they are claimed next",
                runner.replica_id,
                now - self._last_renewed,
                len(running),
            )
            runner.stop_all_local()

    def lapsed(self, job_id: str) -> LeaseLost | None:
        """If this replica's leases may have run out unrenewed, the exception that stops
        `job_id` before it writes a message (it resumes wherever it is claimed next)."""
        runner = self._runner
        unrenewed = runner.clock() - self._last_renewed
        if unrenewed < runner.leases.lease_s:
            return None
        log.warning(
            "replica %s has not renewed its job leases for %.1f s: job %s stops before its "
            "next message",
            runner.replica_id,
            unrenewed,
            job_id,
        )
        return LeaseLost(f"job {job_id}: the leases of replica {runner.replica_id} ran out")

    def lease_lost(self, exc: JobNotHeldError) -> LeaseLost:
        """The exception a job raises when a write finds its row held by another replica
        (or cancelled: then the replica that cancelled it records that end)."""
        if isinstance(exc, JobCancelledError):
            log.info(
                "job %s was cancelled; replica %s stops working on it",
                exc.job_id,
                self._runner.replica_id,
            )
            return LeaseLost(str(exc))
        log.warning(
            "job %s is now run by replica %s; replica %s stops working on it",
            exc.job_id,
            exc.claimed_by or "(none)",
            self._runner.replica_id,
        )
        return LeaseLost(str(exc))

    async def release(self) -> None:
        """Hand this replica's claims back (a graceful stop), so another takes them at once."""
        runner = self._runner
        try:
            released = await asyncio.wait_for(
                runner.store.release_jobs(runner.replica_id), RELEASE_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("could not release this replica's job claims (they expire): %s", exc)
            return
        if released:
            log.info("released %d unfinished job(s) for another replica", released)


class FencedConversation:
    """A running job's conversation: before each message it checks that this replica still
    holds the row, that nobody cancelled it and that its leases cannot have run out, else
    raises LeaseLost (the task stops).

    The replica that cancelled a job (or took it over) owns its messages from then on; a task
    that has not heard yet must not write over them. Checking costs one read per message;
    while the store cannot be read the message goes out unchecked (the lease rules still hold).
    """

    def __init__(
        self,
        inner: Conversation,
        store: Store,
        job_id: str,
        replica_id: str,
        lease_lost: Callable[[JobNotHeldError], BaseException],
        lapsed: Callable[[str], BaseException | None],
    ) -> None:
        self._inner = inner
        self._store = store
        self._job_id = job_id
        self._replica_id = replica_id
        self._lease_lost = lease_lost
        self._lapsed = lapsed
        self.destination = inner.destination
        self.limits = inner.limits

    def __getattr__(self, name: str) -> Any:
        # Anything else (stream, forms, an adapter's or a test's own attributes) is the inner's.
        return getattr(self._inner, name)

    async def _check(self) -> None:
        try:
            job = await self._store.get_job(self._job_id)
        except Exception as exc:
            log.debug("job %s: could not check its row before a message: %s", self._job_id, exc)
            job = None
        # After the read, the moment closest to the write: the read itself may have been slow.
        lapsed = self._lapsed(self._job_id)
        if lapsed is not None:
            raise lapsed
        holder = self._replica_id
        if job is None:
            return
        if job.claimed_by != holder:
            raise self._lease_lost(JobNotHeldError(job.id, holder, job.claimed_by))
        if job.status == "cancelled":
            raise self._lease_lost(JobCancelledError(job.id, holder))

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Post a message, unless the job was cancelled or taken over."""
        await self._check()
        return await self._inner.say(parts)

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """Replace a message, unless the job was cancelled or taken over."""
        await self._check()
        await self._inner.edit(ref, parts)

    async def upload(self, image: Image) -> MessageRef:
        """Upload an image, unless the job was cancelled or taken over."""
        await self._check()
        return await self._inner.upload(image)

    async def whisper(self, parts: Sequence[Part]) -> None:
        """Tell the owner privately, unless the job was cancelled or taken over."""
        await self._check()
        await self._inner.whisper(parts)

    async def direct(self, parts: Sequence[Part]) -> None:
        """Message the owner directly, unless the job was cancelled or taken over."""
        await self._check()
        await self._inner.direct(parts)
