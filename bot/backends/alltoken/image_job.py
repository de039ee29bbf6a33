"""The durable AllToken image job.

Images can be read from AllToken only once: the bytes go to the store (table job_media, where
any replica that takes the job over finds them) and to disk (atomically, fsynced) before
anything else happens, and delivery always reads them from disk, copied back from the store
when this replica's disk lacks them, so neither a crash nor a takeover loses the image.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.backends.alltoken.failures import render_failure
from bot.backends.alltoken.image_keep import KeptImage, expiry_of, save_problem, spill
from bot.backends.alltoken.job_state import ImageState
from bot.backends.alltoken.jobs import _PollingJob, _show, next_delay
from bot.backends.alltoken.service import ImageData, ImageRequest, ImageStatus
from bot.core.errors import BackendError
from bot.core.job_errors import JobExpired, JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Image, Link, Notice, Part
from bot.core.text_split import one_line
from bot.store import JobMedia

UPLOAD_ATTEMPTS = 3
UPLOAD_BACKOFF_S = 0.5

log = logging.getLogger(__name__)

# AllToken's code for an image whose result was read before (it is handed out only once).
ALREADY_RETRIEVED = "image_already_retrieved"
# How long a replica that finds the image read already waits for the reader's copy in the store.
KEPT_GRACE_S = 5.0


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


ImageContext = JobContext[ImageState]


class ImageJob(_PollingJob):
    """Submit with an Idempotency-Key, poll, save the one-shot bytes, upload from disk."""

    kind = "image"
    command = "image"
    in_flight_noun = "image"  # counted by the in-flight job limits
    state_model = ImageState

    async def run(self, ctx: ImageContext) -> None:
        """Drive one image: submit, poll, keep the bytes, deliver; a restart resumes the step."""
        st = ctx.state
        kept: KeptImage | None = None
        if not st.file and not st.image_b64:
            # Another replica (or this one, before a crash) may have kept the bytes and then
            # stopped before saving where: they are read from AllToken only once.
            kept = await self._kept_in_store(ctx)
            if kept is None and ctx.job.status == "delivering":
                raise JobFailed(
                    Failure(code="image_lost", message="The image was lost before it was saved.")
                )
            if kept is None:
                kept = await self._fetch(ctx)
        await self._deliver(ctx, kept or KeptImage.from_state(ctx.state))

    async def _kept_in_store(self, ctx: ImageContext) -> KeptImage | None:
        """The bytes the store holds for this job, copied to this replica's disk; or None."""
        media = await ctx.store.job_media(ctx.job.id)
        if media is None:
            return None
        log.info("job %s: the image's bytes are in the store; delivering those", ctx.job.id)
        meta: dict[str, Any] = {
            "mime": media.mime,
            "r2_url": ctx.state.r2_url,
            "r2_expires_at": ctx.state.r2_expires_at,
        }
        return await self._keep(ctx, media.data, meta, in_store=True)

    async def _kept_in_store_soon(self, ctx: ImageContext) -> KeptImage | None:
        """The store's bytes for this job, waiting up to KEPT_GRACE_S for them to arrive
        (the replica that read them keeps them with one write right after the read)."""
        deadline = time.monotonic() + KEPT_GRACE_S
        while True:
            kept = await self._kept_in_store(ctx)
            if kept is not None or time.monotonic() >= deadline:
                return kept
            await asyncio.sleep(0.2)

    async def _fetch(self, ctx: ImageContext) -> KeptImage:
        """Submit (unless a task id is saved), poll until completed, keep the bytes."""
        key = await self._key(ctx)
        if not ctx.state.task_id:
            await self._submit(ctx, key)
        try:
            status, data, in_store = await self._poll(ctx, key)
        except JobFailed as failed:
            # Read already: a replica that held this job before us (its lease ran out while
            # it read) may be keeping the bytes in the store this very moment.
            if failed.failure.code != ALREADY_RETRIEVED:
                raise
            kept = await self._kept_in_store_soon(ctx)
            if kept is None:
                raise
            return kept
        item = status.data[0] if status.data else None
        if item is None:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="AllToken said completed but sent no image.",
                    request_id=ctx.state.task_id,
                )
            )
        if data is None:
            try:
                data = await self._read(ctx, item)
            except JobFailed:
                # Gone at AllToken: a replica that lost this job may have read (and kept) it.
                kept = await self._kept_in_store_soon(ctx)
                if kept is None:
                    raise
                return kept
        meta: dict[str, Any] = {
            "mime": item.mime_type or "image/png",
            "r2_url": item.r2_url,
            "r2_expires_at": item.r2_url_expires_at,
            "usage": status.usage or {},
            "revised_prompt": item.revised_prompt,
        }
        return await self._keep(ctx, data, meta, in_store=in_store)

    async def _submit(self, ctx: ImageContext, key: str) -> None:
        st = ctx.state
        await _show(
            ctx,
            [
                Notice(
                    level="progress",
                    text=f"🖼️ Generating an image… (queued) — _{one_line(st.prompt)}_",
                )
            ],
        )
        request = ImageRequest(prompt=st.prompt, model=st.model, size=st.size, quality=st.quality)
        try:
            try:
                task_id = await self.service.submit_image(key, request, st.idempotency_key)
            except BackendError as exc:
                if exc.status != 0:
                    raise
                # Timed out or dropped before an answer: the same Idempotency-Key makes a
                # resend safe (AllToken answers 409 with the first task's id if it started).
                task_id = await self.service.submit_image(key, request, st.idempotency_key)
        except BackendError as exc:
            raise JobFailed(render_failure(exc, command="image")) from None
        await ctx.save(task_id=task_id)

    async def _poll(self, ctx: ImageContext, key: str) -> tuple[ImageStatus, bytes | None, bool]:
        """Poll until completed, showing each new status; failed or cancelled end the job.
        The completed status, its inline bytes (if they decode) and whether the store has them."""
        task_id = str(ctx.state.task_id)
        deadline = self._deadline(ctx)
        errors: list[int] = []
        last_status = "queued"  # what the first progress message already says
        while True:
            if time.monotonic() > deadline:
                raise JobExpired(
                    Failure(
                        code="timeout",
                        message=f"The image {task_id} took too long.",
                        hint="Try again; a smaller size or lower quality is faster.",
                    )
                )
            read: _Read | None = await self._poll_guarded(
                ctx, lambda: self._read_status(ctx, key, task_id), errors
            )
            if read is None:
                continue
            status = read.status
            if status.status == "completed":
                return status, read.data, read.in_store
            if status.status in ("failed", "cancelled"):
                raise JobFailed(_task_failure(status, task_id))
            if status.status != last_status:
                last_status = status.status
                await _show(
                    ctx,
                    [
                        Notice(
                            level="progress",
                            text=f"🖼️ Generating an image… ({status.status}) — "
                            f"_{one_line(ctx.state.prompt)}_",
                        )
                    ],
                )
            await asyncio.sleep(next_delay(status))

    async def _read_status(self, ctx: ImageContext, key: str, task_id: str) -> _Read:
        """One status read, finished even if the job is stopped meanwhile (its lease lapsed,
        or the replica is shutting down): the completed read is the only one carrying the
        bytes, and they are kept in the store before it ends, for whoever delivers them."""
        return await ctx.uninterrupted(self._read_and_keep(ctx, key, task_id))

    async def _read_and_keep(self, ctx: ImageContext, key: str, task_id: str) -> _Read:
        status = await self.service.poll_image(key, task_id)
        item = status.data[0] if status.status == "completed" and status.data else None
        data = _decode(item.b64_json) if item is not None and item.b64_json else None
        in_store = False
        if item is not None and data is not None:
            in_store = await self._keep_in_store(ctx, data, item.mime_type or "image/png")
        return _Read(status, data, in_store)

    async def _read(self, ctx: ImageContext, item: ImageData) -> bytes:
        """The completed image's bytes: inline base64, else its r2 link (read once)."""
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
                    request_id=ctx.state.task_id,
                )
            )
        return data

    async def _keep(
        self, ctx: ImageContext, data: bytes, meta: dict[str, Any], *, in_store: bool = False
    ) -> KeptImage:
        """One-shot: the bytes are kept (store first, then disk) before anything else can go wrong."""
        if not in_store:
            await self._keep_in_store(ctx, data, str(meta["mime"]))
        path = self.images_dir / f"{ctx.job.id}.png"
        try:
            await asyncio.to_thread(write_atomically, path, data)
        except OSError as exc:
            return await self._keep_elsewhere(ctx, data, meta, save_problem(self.images_dir, exc))
        await ctx.save(file=str(path), **meta)
        return KeptImage.from_state(ctx.state)

    async def _keep_in_store(self, ctx: ImageContext, data: bytes, mime: str) -> bool:
        """The shared copy: not guarded by the lease, since these bytes may be the only ones.
        Whether the store has them now."""
        try:
            await ctx.store.keep_job_media(ctx.job.id, JobMedia(mime=mime, data=data))
        except Exception:
            # Only this replica has the image now; it still delivers it from its disk.
            log.exception("job %s: could not keep the image's bytes in the store", ctx.job.id)
            return False
        return True

    async def _local_copy(self, ctx: ImageContext, kept: KeptImage) -> KeptImage:
        """The saved file is not on this replica's disk (another replica saved it, or the disk
        was replaced): write the store's copy here, if there is one."""
        if kept.data is not None or kept.path is None or await asyncio.to_thread(kept.path.exists):
            return kept
        try:
            media = await ctx.store.job_media(ctx.job.id)
        except Exception:
            log.exception("job %s: could not read the image's bytes from the store", ctx.job.id)
            return kept
        if media is None:
            return kept
        path = self.images_dir / f"{ctx.job.id}.png"
        try:
            await asyncio.to_thread(write_atomically, path, media.data)
        except OSError as exc:
            log.warning("job %s: %s; posting from memory", ctx.job.id, exc)
            kept.data = media.data
            return kept
        kept.path = path
        return kept

    async def _forget_media(self, ctx: ImageContext) -> None:
        try:
            await ctx.store.drop_job_media(ctx.job.id)
        except Exception:
            log.warning("job %s: delivered; its bytes stay in the store", ctx.job.id, exc_info=True)

    async def _keep_elsewhere(
        self, ctx: ImageContext, data: bytes, meta: dict[str, Any], problem: str
    ) -> KeptImage:
        """The images dir refused a paid image: keep it in the row and a temporary copy."""
        log.error("job %s: %s; keeping the paid image in the job row instead", ctx.job.id, problem)
        spilled = await asyncio.to_thread(spill, ctx.job.id, data)
        fields = {**meta, "save_problem": problem, "image_b64": base64.b64encode(data).decode()}
        if spilled is not None:
            fields["file"] = str(spilled)
        try:
            await ctx.save(**fields)
        except Exception:
            # The store is failing too: deliver from memory now, it is the last copy.
            log.exception("job %s: could not keep the image in the job row", ctx.job.id)
            return KeptImage(
                mime=str(meta["mime"]),
                r2_url=meta["r2_url"],
                r2_expires_at=expiry_of(meta["r2_expires_at"]),
                path=spilled,
                data=data,
                problem=problem,
            )
        return KeptImage.from_state(ctx.state)

    async def _claim(self, ctx: ImageContext, kept: KeptImage) -> bool:
        try:
            return await ctx.claim_delivery()
        except Exception:
            if kept.in_row or kept.data is None:
                raise
            # Only memory holds the image and the store is failing: deliver regardless.
            log.exception("job %s: could not claim delivery; delivering anyway", ctx.job.id)
            return True

    async def _deliver(self, ctx: ImageContext, kept: KeptImage) -> None:
        """Upload the kept image (from disk, retried), then mark the job done."""
        if ctx.job.status == "running" and not await self._claim(ctx, kept):
            return
        # Cut between the post and "done", the job resumed elsewhere would post it again.
        await ctx.uninterrupted(self._post(ctx, kept))

    async def _post(self, ctx: ImageContext, kept: KeptImage) -> None:
        st = ctx.state
        kept = await self._local_copy(ctx, kept)
        path, temp = kept.path, None
        if kept.data is not None and (path is None or not await asyncio.to_thread(path.exists)):
            # The temporary copy is gone (or never was): make one for this upload only.
            path = temp = await asyncio.to_thread(spill, ctx.job.id, kept.data)
        if path is None:
            await self._link_only(ctx, kept)
            return
        image = Image(
            path=path,
            mime=kept.mime,
            alt=one_line(st.prompt, 1000),
            fallback_url=kept.r2_url,
        )
        try:
            if not st.uploaded:
                await self._upload_and_record(ctx, image, kept)
        finally:
            if temp is not None:
                await asyncio.to_thread(temp.unlink, True)
        usage = st.usage
        parts: list[Part] = [
            Notice(
                level="success",
                text=f"🖼️ Image ready — _{one_line(st.prompt)}_ · "
                f"{usage.get('total_tokens', 0)} tokens · `{st.model}`",
            )
        ]
        if kept.problem:
            parts += _kept_note(kept, "it was posted from a temporary copy")
        await _show(ctx, parts)
        await self._record(ctx, "image", st.model, usage, st.task_id)
        await self._done(ctx, kept)
        # Delivered: the copies have done their job (the platform holds the image now).
        await asyncio.to_thread(path.unlink, True)
        await self._forget_media(ctx)

    async def _link_only(self, ctx: ImageContext, kept: KeptImage) -> None:
        """No file could be made for an upload: show the backend's link, and why."""
        st = ctx.state
        await self._record(ctx, "image", st.model, st.usage, st.task_id)
        problem = kept.problem or "its saved copy is gone"
        if not kept.r2_url:
            kept_where = (
                "It is kept in tokenbot's database." if kept.in_row else "It could not be kept."
            )
            raise JobFailed(
                Failure(
                    code="image_not_saved",
                    message=f"The image was generated (and billed), but {problem}, and AllToken "
                    "sent no link to it.",
                    request_id=st.task_id,
                    hint=f"Tell the bot's operator (job {ctx.job.id}). {kept_where}",
                )
            )
        parts: list[Part] = [
            Notice(
                level="warning",
                text=f"🖼️ Image ready — _{one_line(st.prompt)}_ — but it could not be posted here",
            ),
            *_kept_note(kept, "open it from AllToken instead"),
        ]
        await _show(ctx, parts)
        # The link expires; the row's copy of the bytes stays for the operator.
        await self._done(ctx, kept, keep_copy=True)

    async def _done(self, ctx: ImageContext, kept: KeptImage, *, keep_copy: bool = False) -> None:
        # Once uploaded, the row's copy of the bytes is no longer needed.
        drop = kept.in_row and not keep_copy
        changes: dict[str, Any] = {"state": {"image_b64": None}} if drop else {}
        try:
            await ctx.set_status("done", **changes)
        except Exception:
            if kept.in_row or kept.data is None:
                raise
            log.exception("job %s: delivered, but could not record it as done", ctx.job.id)

    async def _upload_and_record(self, ctx: ImageContext, image: Image, kept: KeptImage) -> None:
        await self._upload_with_retry(ctx, image, kept)
        await ctx.save(uploaded=True)

    async def _upload_with_retry(self, ctx: ImageContext, image: Image, kept: KeptImage) -> None:
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
                    if kept.r2_expires_at is not None and image.fallback_url:
                        link += f" (until {kept.r2_expires_at:%Y-%m-%d %H:%M} UTC)"
                    if kept.problem:
                        link += f" Also, {kept.problem}."
                    raise JobFailed(
                        Failure(
                            code="upload_failed",
                            message=f"The image is ready but could not be posted here.{link}",
                            hint="Check that tokenbot may upload files in this conversation, then run the command again.",
                        )
                    ) from None
                await asyncio.sleep(UPLOAD_BACKOFF_S * (2**attempt))


@dataclass(frozen=True)
class _Read:
    """One status read: the status, and for a completed one its inline bytes, and whether
    they are in the store already."""

    status: ImageStatus
    data: bytes | None = None
    in_store: bool = False


def _task_failure(status: ImageStatus, task_id: str) -> Failure:
    """AllToken's reason a task failed or was cancelled (a content violation, ...)."""
    err = status.error
    return Failure(
        code=(err.code if err and err.code else status.status),
        message=(err.message if err and err.message else f"The image task {status.status}."),
        request_id=task_id,
        hint="Rephrase the prompt or try again.",
    )


def _kept_note(kept: KeptImage, instead: str) -> list[Part]:
    """Why the image is not in the images folder, and the backend's link with its expiry."""
    parts: list[Part] = [Notice(level="warning", text=f"Note: {kept.problem}; {instead}.")]
    if kept.r2_url:
        parts.append(
            Link(url=kept.r2_url, label="Open the image at AllToken", expires_at=kept.r2_expires_at)
        )
    return parts


def _decode(b64: str) -> bytes | None:
    try:
        return base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        return None
