"""Durable AllToken image and video jobs.

Images can be read from AllToken only once: the bytes go to disk (atomically, fsynced) before
anything else happens, and delivery always reads them from disk, so a crash after the read
never loses the image. Videos are posted once (no idempotency key in AllToken's API); a crash
between the POST and saving the task id is recovered by finding the task in the recent list.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.failures import render_failure
from bot.jobs import JobCancelled, JobContext, JobFailed
from bot.messages import (
    Actions,
    Button,
    Conversation,
    Failure,
    Image,
    Inbound,
    Link,
    MessageRef,
    Notice,
    Part,
    Text,
)
from bot.services.alltoken import (
    AllTokenService,
    ImageRequest,
    ImageStatus,
    VideoRequest,
    VideoStatus,
)
from bot.services.errors import BackendError
from bot.store import AuditEntry, LastCall, Owner, UsageRecord

if TYPE_CHECKING:
    from bot.app import TokenBot

TRANSIENT_STATUSES = {0, 429, 500, 502, 503, 504}
MAX_TRANSIENT_ERRORS = 6
DEFAULT_POLL_S = 2.0
MAX_POLL_S = 15.0
CANCEL_ACTION = "alltoken.video.cancel"
UPLOAD_ATTEMPTS = 3
UPLOAD_BACKOFF_S = 0.5

log = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync and rename, so a file at `path` is always complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def next_delay(status: ImageStatus | VideoStatus, default: float = DEFAULT_POLL_S) -> float:
    """Honour next_poll_after_ms and Retry-After, whichever asks for more patience."""
    hinted = [default]
    if isinstance(status, ImageStatus) and status.next_poll_after_ms is not None:
        hinted = [status.next_poll_after_ms / 1000]
    if status.retry_after_s is not None:
        hinted.append(status.retry_after_s)
    return min(max(max(hinted), 0.05), MAX_POLL_S)


def _ref(ctx: JobContext) -> MessageRef | None:
    raw = ctx.state.get("progress_ref")
    return MessageRef.model_validate(raw) if raw else None


async def _show(ctx: JobContext, parts: list[Part]) -> None:
    """Post the job's progress message once, then edit it in place."""
    ref = _ref(ctx)
    if ref is None:
        ref = await ctx.conversation.say(parts)
        await ctx.save(progress_ref=ref.model_dump(mode="json"))
    else:
        await ctx.conversation.edit(ref, parts)


class _PollingJob:
    kind = ""
    timeout_s = 600.0

    def __init__(self, service: AllTokenService, images_dir: Path, timeout_s: float) -> None:
        self.service = service
        self.images_dir = images_dir
        self.timeout_s = timeout_s

    async def _key(self, ctx: JobContext) -> str:
        key = await ctx.store.get_credential(ctx.owner, "alltoken")
        if not key:
            raise JobFailed(
                Failure(
                    code="missing_key",
                    message="Your AllToken key was removed while this job was running.",
                    hint="Set it again with `/alltoken-key` and re-run the command.",
                )
            )
        return key

    def _deadline(self, ctx: JobContext) -> float:
        age = (datetime.now(UTC) - ctx.job.created_at).total_seconds()
        return time.monotonic() + max(self.timeout_s - age, 0.0)

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        """Replace the progress message with the failure (or post it)."""
        await _show(ctx, [failure])

    async def _poll_guarded(self, ctx: JobContext, poll: Any, errors: list[int]) -> Any:
        """One poll; transient errors back off and return None, others fail the job."""
        await ctx.poll_slot()
        try:
            result = await poll()
        except BackendError as exc:
            if exc.status in TRANSIENT_STATUSES and len(errors) < MAX_TRANSIENT_ERRORS:
                errors.append(exc.status)
                await asyncio.sleep(
                    min(exc.retry_after or DEFAULT_POLL_S * len(errors), MAX_POLL_S)
                )
                return None
            raise JobFailed(render_failure(exc)) from None
        errors.clear()
        return result

    async def _record(
        self,
        ctx: JobContext,
        command: str,
        model: str,
        usage: dict[str, Any] | None,
        request_id: str | None,
    ) -> None:
        usage = usage or {}
        pt = int(usage.get("input_tokens") or usage.get("prompt_tokens") or 0)
        ct = int(usage.get("output_tokens") or usage.get("completion_tokens") or 0)
        conv = str(ctx.state.get("conversation_key") or "")
        await ctx.store.record_usage(
            UsageRecord(
                owner=ctx.owner,
                service="alltoken",
                command=command,
                model=model,
                prompt_tokens=pt,
                completion_tokens=ct,
                cost_usd=None,
                request_id=request_id,
                conversation_key=conv or None,
            )
        )
        if conv:
            await ctx.store.set_last_call(
                ctx.owner,
                conv,
                LastCall(
                    command=command,
                    model=model,
                    prompt_tokens=pt,
                    completion_tokens=ct,
                    request_id=request_id,
                ),
            )


class ImageJob(_PollingJob):
    """Submit with an Idempotency-Key, poll, save the one-shot bytes, upload from disk."""

    kind = "image"

    async def run(self, ctx: JobContext) -> None:
        """Drive one image from submission to upload."""
        st = ctx.state
        if not st.get("file"):
            if ctx.job.status == "delivering":
                raise JobFailed(
                    Failure(code="image_lost", message="The image was lost before it was saved.")
                )
            await self._fetch(ctx)
        await self._deliver(ctx)

    async def _fetch(self, ctx: JobContext) -> None:
        key = await self._key(ctx)
        st = ctx.state
        prompt = str(st["prompt"])
        if not st.get("task_id"):
            await _show(
                ctx,
                [
                    Notice(
                        level="progress",
                        text=f"🖼️ Generating an image… (queued) — _{_clip(prompt)}_",
                    )
                ],
            )
            request = ImageRequest(
                prompt=prompt, model=st["model"], size=st["size"], quality=st["quality"]
            )
            try:
                try:
                    task_id = await self.service.submit_image(
                        key, request, str(st["idempotency_key"])
                    )
                except BackendError as exc:
                    if exc.status != 0:
                        raise
                    # Timed out or dropped before an answer: the same Idempotency-Key makes a
                    # resend safe (AllToken answers 409 with the first task's id if it started).
                    task_id = await self.service.submit_image(
                        key, request, str(st["idempotency_key"])
                    )
            except BackendError as exc:
                raise JobFailed(render_failure(exc, command="image")) from None
            await ctx.save(task_id=task_id)
        task_id = str(ctx.state["task_id"])
        deadline = self._deadline(ctx)
        errors: list[int] = []
        last_status = "queued"  # what the first progress message already says
        while True:
            if time.monotonic() > deadline:
                raise JobFailed(
                    Failure(
                        code="timeout",
                        message=f"The image {task_id} took too long.",
                        hint="Try again; a smaller size or lower quality is faster.",
                    )
                )
            status: ImageStatus | None = await self._poll_guarded(
                ctx, lambda: self.service.poll_image(key, task_id), errors
            )
            if status is None:
                continue
            if status.status == "completed":
                break
            if status.status in ("failed", "cancelled"):
                err = status.error
                raise JobFailed(
                    Failure(
                        code=(err.code if err and err.code else status.status),
                        message=(
                            err.message
                            if err and err.message
                            else f"The image task {status.status}."
                        ),
                        request_id=task_id,
                        hint="Rephrase the prompt or try again.",
                    )
                )
            if status.status != last_status:
                last_status = status.status
                await _show(
                    ctx,
                    [
                        Notice(
                            level="progress",
                            text=f"🖼️ Generating an image… ({status.status}) — _{_clip(prompt)}_",
                        )
                    ],
                )
            await asyncio.sleep(next_delay(status))
        item = status.data[0] if status.data else None
        if item is None:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="AllToken said completed but sent no image.",
                    request_id=task_id,
                )
            )
        data = _decode(item.b64_json) if item.b64_json else None
        if data is None and item.r2_url:
            try:
                data = await self.service.download(item.r2_url)
            except BackendError as exc:
                raise JobFailed(render_failure(exc)) from None
        if data is None:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="The completed image had no bytes.",
                    request_id=task_id,
                )
            )
        # One-shot: the bytes are on disk before anything else can go wrong.
        path = self.images_dir / f"{ctx.job.id}.png"
        await asyncio.to_thread(write_atomically, path, data)
        await ctx.save(
            file=str(path),
            mime=item.mime_type or "image/png",
            r2_url=item.r2_url,
            usage=status.usage or {},
            revised_prompt=item.revised_prompt,
        )

    async def _deliver(self, ctx: JobContext) -> None:
        st = ctx.state
        path = Path(str(st["file"]))
        if ctx.job.status == "running" and not await ctx.claim_delivery():
            return
        image = Image(
            path=path,
            mime=str(st.get("mime") or "image/png"),
            alt=_clip(str(st["prompt"]), 1000),
            fallback_url=st.get("r2_url"),
        )
        if not st.get("uploaded"):
            await self._upload_with_retry(ctx, image)
            await ctx.save(uploaded=True)
        usage = st.get("usage") or {}
        await _show(
            ctx,
            [
                Notice(
                    level="success",
                    text=f"🖼️ Image ready — _{_clip(str(st['prompt']))}_ · "
                    f"{usage.get('total_tokens', 0)} tokens · `{st['model']}`",
                )
            ],
        )
        await self._record(ctx, "image", str(st["model"]), usage, st.get("task_id"))
        await ctx.set_status("done")
        # Delivered: the disk copy has done its job (the platform holds the image now).
        await asyncio.to_thread(path.unlink, True)

    async def _upload_with_retry(self, ctx: JobContext, image: Image) -> None:
        """The bytes are safe on disk, so a refused upload is simply tried again."""
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                await ctx.conversation.upload(image)
                return
            except Exception as exc:
                log.warning(
                    "upload of job %s failed (attempt %d): %s", ctx.job.id, attempt + 1, exc
                )
                if attempt + 1 == UPLOAD_ATTEMPTS:
                    link = f" Meanwhile it is at {image.fallback_url}" if image.fallback_url else ""
                    raise JobFailed(
                        Failure(
                            code="upload_failed",
                            message=f"The image is ready but could not be posted here.{link}",
                            hint="Check that tokenbot may upload files in this conversation, then run the command again.",
                        )
                    ) from None
                await asyncio.sleep(UPLOAD_BACKOFF_S * (2**attempt))


class VideoJob(_PollingJob):
    """Submit once, poll with progress and a Cancel button, then link the presigned URL."""

    kind = "video"

    def _buttons(self, ctx: JobContext) -> Actions:
        return Actions(
            buttons=[
                Button(action_id=CANCEL_ACTION, label="Cancel", value=ctx.job.id, style="danger")
            ]
        )

    async def run(self, ctx: JobContext) -> None:
        """Drive one video from submission to the link."""
        key = await self._key(ctx)
        st = ctx.state
        prompt = str(st["prompt"])
        if not st.get("task_id"):
            await _show(
                ctx,
                [
                    Notice(level="progress", text=f"🎬 Video queued — _{_clip(prompt)}_"),
                    self._buttons(ctx),
                ],
            )
            task_id = await self._adopt(ctx, key) if st.get("submit_started") else None
            if task_id is None:
                await ctx.save(submit_started=True)
                try:
                    task_id = await self.service.submit_video(
                        key,
                        VideoRequest(
                            prompt=prompt,
                            model=st["model"],
                            duration=int(st["duration"]),
                            ratio=st["ratio"],
                            resolution=st["resolution"],
                        ),
                    )
                except BackendError as exc:
                    # No answer (time-out, dropped connection): the video may have started
                    # anyway, and a resend could bill twice, so look for it instead.
                    found = await self._adopt(ctx, key) if exc.status == 0 else None
                    if found is None:
                        failure = render_failure(exc, command="video")
                        if exc.status == 0:
                            failure.hint = (
                                "AllToken did not answer, and no new video of yours shows up "
                                "there yet. Wait a minute before trying again, so you are not "
                                "billed twice."
                            )
                        raise JobFailed(failure) from None
                    task_id = found
            await ctx.save(task_id=task_id)
        task_id = str(ctx.state["task_id"])
        deadline = self._deadline(ctx)
        errors: list[int] = []
        last_status = "queued"
        started = time.monotonic()
        while True:
            if await ctx.cancel_requested():
                await self._cancel_at_backend(ctx, key, task_id, prompt)
            if time.monotonic() > deadline:
                raise JobFailed(
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
                break
            if status.status == "cancelled":
                await _show(
                    ctx, [Notice(level="warning", text=f"🎬 Video cancelled — _{_clip(prompt)}_")]
                )
                raise JobCancelled()
            if status.status in ("failed", "expired"):
                err = status.error
                raise JobFailed(
                    Failure(
                        code=(err.code if err and err.code else status.status),
                        message=(
                            err.message
                            if err and err.message
                            else f"The video task {status.status}."
                        ),
                        request_id=task_id,
                        hint="Try again, perhaps with a shorter duration or another model.",
                    )
                )
            if status.status != last_status:
                last_status = status.status
                elapsed = int(time.monotonic() - started)
                await _show(
                    ctx,
                    [
                        Notice(
                            level="progress",
                            text=f"🎬 Video {status.status} ({elapsed} s) — _{_clip(prompt)}_",
                        ),
                        self._buttons(ctx),
                    ],
                )
            await asyncio.sleep(next_delay(status))
        # Resumed in "delivering": a crash hit between the claim and the delivery; finish it.
        if ctx.job.status != "delivering" and not await ctx.claim_delivery():
            return
        expires = status.expires_at()
        details = " · ".join(
            x
            for x in [
                f"`{status.model or st['model']}`",
                f"{status.duration:g} s" if status.duration else "",
                status.resolution or "",
                status.ratio or "",
                f"{status.fps:g} fps" if status.fps else "",
            ]
            if x
        )
        parts: list[Part] = [
            Notice(level="success", text=f"🎬 Video ready — _{_clip(prompt)}_"),
            Link(url=status.video_url or "", label="Download the video", expires_at=expires),
            Text(markdown=details + "\nThe link is presigned and expires: download it soon."),
        ]
        if not status.video_url:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="The video completed without a URL.",
                    request_id=task_id,
                )
            )
        await _show(ctx, parts)
        await self._record(ctx, "video", str(st["model"]), status.usage, task_id)
        await ctx.set_status("done")

    async def _cancel_at_backend(
        self, ctx: JobContext, key: str, task_id: str, prompt: str
    ) -> None:
        """Honour a Cancel clicked before the task id was known."""
        try:
            await self.service.cancel_video(key, task_id)
        except BackendError as exc:
            if exc.status != 409:  # 409: it already finished; deliver it instead
                raise JobFailed(render_failure(exc, command="video")) from None
            await ctx.save(cancel_requested=False)
            return
        await _show(ctx, [Notice(level="warning", text=f"🎬 Video cancelled — _{_clip(prompt)}_")])
        raise JobCancelled()

    async def _adopt(self, ctx: JobContext, key: str) -> str | None:
        """After a crash mid-submit, find the task we may already have started."""
        try:
            recent = await self.service.recent_videos(key)
        except BackendError:
            return None
        since = ctx.job.created_at - timedelta(seconds=5)
        for item in recent:
            created = _parse_time(item.created_at)
            if (
                item.model == ctx.state["model"]
                and (created is None or created >= since)
                and item.id not in ctx.state.get("seen_ids", [])
                and _prompt_of(item) in (None, ctx.state["prompt"])
            ):
                return item.id
        return None


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


def _decode(b64: str) -> bytes | None:
    try:
        return base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        return None


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def cancel_video(
    bot: TokenBot, inbound: Inbound, job_id: str, conversation: Conversation
) -> None:
    """The Cancel button: only the owner may cancel; the backend task is cancelled first."""
    actor = Owner.of(inbound)

    async def tell(text: str, level: str = "info") -> None:
        await conversation.whisper([Notice(level=level, text=text)])

    async def audit(outcome: str, detail: str | None, request_id: str | None = None) -> None:
        await bot.store.audit(
            AuditEntry(
                owner=actor,
                command="video.cancel",
                outcome=outcome,
                detail=detail,
                request_id=request_id,
            )
        )

    job = await bot.store.get_job(job_id)
    if job is None or job.owner != actor:
        # Same answer for "not yours" and "does not exist": don't reveal others' jobs.
        await tell("Only the person who started this video can cancel it.", "warning")
        await audit("denied", job_id)
        return
    if job.status not in ("pending", "running"):
        await tell(f"This video is already {job.status}.")
        return
    key = await bot.store.get_credential(actor, "alltoken")
    task_id = job.state.get("task_id")
    if not task_id and job.state.get("submit_started") and bot.jobs.is_running(job_id):
        # The POST may be in flight: let the job cancel the task as soon as it has its id,
        # rather than stopping here and leaving a paid video running at AllToken.
        await bot.store.update_job(job_id, state={"cancel_requested": True})
        await tell("Cancelling as soon as AllToken confirms the video…")
        await audit("requested", job_id)
        return
    if key and task_id:
        try:
            await bot.services.alltoken.cancel_video(key, str(task_id))
        except BackendError as exc:
            if exc.status == 409:
                await tell("The video had already finished; it will be posted here.")
                return
            await conversation.whisper([render_failure(exc)])
            await audit("failed", exc.code, exc.request_id)
            return
    if not await bot.store.transition_job(job_id, {"pending", "running"}, "cancelled"):
        await tell("The video finished before it could be cancelled.")
        return
    await bot.jobs.cancel_local(job_id)
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
