"""The durable AllToken video job and its Cancel button.

Videos are posted once (no idempotency key in AllToken's API); a crash between the POST and
saving the task id is recovered by finding the task in the recent list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.backends.alltoken.failures import render_failure
from bot.backends.alltoken.job_state import VideoState
from bot.backends.alltoken.jobs import CANCEL_ACTION, _PollingJob, _show, next_delay
from bot.backends.alltoken.service import AllTokenService, VideoRequest, VideoStatus
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.job_errors import JobCancelled, JobExpired, JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import (
    Actions,
    Button,
    Failure,
    Link,
    MessageRef,
    Notice,
    Part,
    Text,
)
from bot.core.text_split import one_line
from bot.store import AuditEntry, JobRecord, Owner

if TYPE_CHECKING:
    pass
log = logging.getLogger(__name__)


VideoContext = JobContext[VideoState]


class VideoJob(_PollingJob):
    """Submit once, poll with progress and a Cancel button, then link the presigned URL."""

    kind = "video"
    command = "video"
    in_flight_noun, cancel_button = "video", True  # for the in-flight job limits
    state_model = VideoState

    def _buttons(self, ctx: VideoContext) -> Actions:
        return Actions(
            buttons=[
                Button(action_id=CANCEL_ACTION, label="Cancel", value=ctx.job.id, style="danger")
            ]
        )

    async def run(self, ctx: VideoContext) -> None:
        """Drive one video: submit, poll, deliver; a restart resumes at the step it reached."""
        key = await self._key(ctx)
        if not ctx.state.task_id:
            await self._submit(ctx, key)
        status = await self._poll(ctx, key)
        await self._deliver(ctx, status)

    async def _submit(self, ctx: VideoContext, key: str) -> None:
        """Post the video once (or find the one a crash mid-submit started); save its id."""
        prompt = ctx.state.prompt
        await _show(
            ctx,
            [
                Notice(level="progress", text=f"🎬 Video queued — _{one_line(prompt)}_"),
                self._buttons(ctx),
            ],
        )
        task_id = await self._adopt(ctx, key) if ctx.state.submit_started else None
        if task_id is None:
            await ctx.save(submit_started=True)
            # A stop mid-post would leave a video that may be running, and paid, unknown.
            await ctx.uninterrupted(self._post_and_save(ctx, key))
        else:
            await ctx.save(task_id=task_id)

    async def _post_and_save(self, ctx: VideoContext, key: str) -> None:
        await ctx.save(task_id=await self._post(ctx, key))

    async def _post(self, ctx: VideoContext, key: str) -> str:
        st = ctx.state
        try:
            return await self.service.submit_video(
                key,
                VideoRequest(
                    prompt=st.prompt,
                    model=st.model,
                    duration=st.duration,
                    ratio=st.ratio,
                    resolution=st.resolution,
                ),
            )
        except BackendError as exc:
            # No answer (time-out, dropped connection): the video may have started anyway,
            # and a resend could bill twice, so look for it instead.
            found = await self._adopt(ctx, key) if exc.status == 0 else None
            if found is None:
                raise JobFailed(_submit_failure(exc)) from None
            return found

    async def _poll(self, ctx: VideoContext, key: str) -> VideoStatus:
        """Poll until the video is completed, showing each new status; honour a Cancel."""
        task_id = str(ctx.state.task_id)
        deadline = self._deadline(ctx)
        errors: list[int] = []
        last_status = "queued"
        started = time.monotonic()
        while True:
            if await ctx.cancel_requested():
                await self._cancel_at_backend(ctx, key, task_id)
            if time.monotonic() > deadline:
                raise JobExpired(
                    Failure(
                        code="timeout",
                        message=f"The video {task_id} took too long.",
                        request_id=task_id,
                    )
                )
            status: VideoStatus | None = await self._poll_guarded(
                ctx, lambda: self.service.poll_video(key, task_id), errors
            )
            if status is None:
                continue
            if status.status == "completed":
                return status
            await self._stop_if_ended(ctx, status)
            if status.status != last_status:
                last_status = status.status
                elapsed = int(time.monotonic() - started)
                await _show(
                    ctx,
                    [
                        Notice(
                            level="progress",
                            text=f"🎬 Video {status.status} ({elapsed} s) — "
                            f"_{one_line(ctx.state.prompt)}_",
                        ),
                        self._buttons(ctx),
                    ],
                )
            await asyncio.sleep(next_delay(status))

    async def _stop_if_ended(self, ctx: VideoContext, status: VideoStatus) -> None:
        """End the job if AllToken says the task was cancelled, failed or expired."""
        if status.status == "cancelled":
            await _show(
                ctx,
                [
                    Notice(
                        level="warning", text=f"🎬 Video cancelled — _{one_line(ctx.state.prompt)}_"
                    )
                ],
            )
            await self._release(ctx)
            raise JobCancelled()
        if status.status not in ("failed", "expired"):
            return
        err = status.error
        failure = Failure(
            code=(err.code if err and err.code else status.status),
            message=(err.message if err and err.message else f"The video task {status.status}."),
            request_id=ctx.state.task_id,
            hint="Try again, perhaps with a shorter duration or another model.",
        )
        raise (JobExpired if status.status == "expired" else JobFailed)(failure)

    async def _deliver(self, ctx: VideoContext, status: VideoStatus) -> None:
        """Link the finished video (once, even if a crash interrupted a delivery)."""
        await ctx.deliver(lambda: self._link(ctx, status))

    async def _link(self, ctx: VideoContext, status: VideoStatus) -> None:
        st = ctx.state
        if not status.video_url:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="The video completed without a URL.",
                    request_id=st.task_id,
                )
            )
        details = " · ".join(
            x
            for x in [
                f"`{status.model or st.model}`",
                f"{status.duration:g} s" if status.duration else "",
                status.resolution or "",
                status.ratio or "",
                f"{status.fps:g} fps" if status.fps else "",
            ]
            if x
        )
        parts: list[Part] = [
            Notice(level="success", text=f"🎬 Video ready — _{one_line(st.prompt)}_"),
            Link(url=status.video_url, label="Download the video", expires_at=status.expires_at()),
            Text(markdown=details + "\nThe link is presigned and expires: download it soon."),
        ]
        await _show(ctx, parts)
        await self._record(ctx, "video", st.model, status.usage, st.task_id)
        await ctx.set_status("done")

    async def _cancel_at_backend(self, ctx: VideoContext, key: str, task_id: str) -> None:
        """Honour a Cancel clicked before the task id was known."""
        try:
            await self.service.cancel_video(key, task_id)
        except BackendError as exc:
            if exc.status != 409:  # 409: it already finished; deliver it instead
                raise JobFailed(render_failure(exc, command="video")) from None
            await ctx.save(cancel_requested=False)
            return
        await _show(
            ctx,
            [Notice(level="warning", text=f"🎬 Video cancelled — _{one_line(ctx.state.prompt)}_")],
        )
        await self._release(ctx)
        raise JobCancelled()

    async def _adopt(self, ctx: VideoContext, key: str) -> str | None:
        """After a crash mid-submit, find the task we may already have started."""
        try:
            recent = await self.service.recent_videos(key)
        except BackendError:
            return None
        since = ctx.job.created_at - timedelta(seconds=5)
        for item in recent:
            created = _parse_time(item.created_at)
            if (
                item.model == ctx.state.model
                and (created is None or created >= since)
                and item.id not in ctx.state.seen_ids
                and _prompt_of(item) in (None, ctx.state.prompt)
            ):
                return item.id
        return None


def _submit_failure(exc: BackendError) -> Failure:
    failure = render_failure(exc, command="video")
    if exc.status == 0:
        failure.hint = (
            "AllToken did not answer, and no new video of yours shows up there yet. Wait a "
            "minute before trying again, so you are not billed twice."
        )
    return failure


def _prompt_of(item: VideoStatus) -> str | None:
    extra = item.model_extra or {}
    value = extra.get("prompt")
    return str(value) if value is not None else None


def _parse_time(value: str | int | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def _job_key(ctx: HandlerContext, job: JobRecord) -> str | None:
    """The key the video was started with (its owner's, or the workspace's)."""
    owner = job.owner
    if job.state.get("key_source") == "workspace":
        return await ctx.store.get_workspace_key(owner.platform, owner.workspace, "alltoken")
    return await ctx.store.get_credential(owner, "alltoken")


async def _release_hold(ctx: HandlerContext, job: JobRecord) -> None:
    """A cancelled video is not charged: its budget hold stops counting."""
    hold = job.state.get("spend_hold")
    if isinstance(hold, str):
        await ctx.spend.held(ctx.spender, hold, "alltoken", "video", "own").release()


def _being_run(ctx: HandlerContext, job: JobRecord) -> bool:
    """Whether this replica or another one (a live lease) runs the job: it sees a request."""
    return ctx.jobs.is_running(job.id) or (job.lease_until or 0) > time.time()


async def cancel_video(ctx: HandlerContext, job_id: str) -> None:
    """The Cancel button: only the owner may cancel; the backend task is cancelled first."""
    inbound, conversation = ctx.inbound, ctx.conversation
    actor = Owner.of(inbound)

    async def tell(text: str, level: str = "info") -> None:
        await conversation.whisper([Notice(level=level, text=text)])

    async def audit(outcome: str, detail: str | None, request_id: str | None = None) -> None:
        await ctx.store.audit(
            AuditEntry(
                owner=actor,
                command="video.cancel",
                outcome=outcome,
                detail=detail,
                request_id=request_id,
            )
        )

    job = await ctx.store.get_job(job_id)
    if job is None or job.owner != actor:
        # Same answer for "not yours" and "does not exist": don't reveal others' jobs.
        await tell("Only the person who started this video can cancel it.", "warning")
        await audit("denied", job_id)
        return
    if job.status not in ("pending", "running"):
        await tell(f"This video is already {job.status}.")
        return
    key = await _job_key(ctx, job)
    task_id = job.state.get("task_id")
    if not task_id and job.state.get("submit_started") and _being_run(ctx, job):
        # The POST may be in flight: let the job cancel the task as soon as it has its id,
        # rather than stopping here and leaving a paid video running at AllToken.
        await ctx.store.update_job(job_id, state={"cancel_requested": True})
        await tell("Cancelling as soon as AllToken confirms the video…")
        await audit("requested", job_id)
        return
    if key and task_id:
        try:
            await ctx.services.get(AllTokenService).cancel_video(key, str(task_id))
        except BackendError as exc:
            if exc.status == 409:
                await tell("The video had already finished; it will be posted here.")
                return
            await conversation.whisper([render_failure(exc)])
            await audit("failed", exc.code, exc.request_id)
            return
    if not await ctx.store.transition_job(job_id, {"pending", "running"}, "cancelled"):
        await tell("The video finished before it could be cancelled.")
        return
    await ctx.jobs.cancel_local(job_id)
    await _release_hold(ctx, job)
    ref = job.state.get("progress_ref")
    parts: list[Part] = [Notice(level="warning", text="🎬 Video cancelled.")]
    try:
        if ref:
            await conversation.edit(MessageRef.model_validate(ref), parts)
        else:
            await conversation.say(parts)
    except Exception:
        log.exception("could not update the cancelled video message")
    await audit("ok", job_id, str(task_id) if task_id else None)
