"""Shared pieces of the durable AllToken image and video jobs.

The polling base class, progress-message helpers and retry constants live here; `ImageJob` is in
alltoken_image_job and `VideoJob` (with its Cancel button) in alltoken_video_job.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.backends.alltoken.service import AllTokenService, ImageStatus, VideoStatus
from bot.core.errors import BackendError
from bot.core.failures import render_failure
from bot.core.jobs import JobContext, JobFailed
from bot.core.messages import Failure, MessageRef, Part
from bot.store import LastCall, UsageRecord

TRANSIENT_STATUSES = {0, 429, 500, 502, 503, 504}
MAX_TRANSIENT_ERRORS = 6
DEFAULT_POLL_S = 2.0
MAX_POLL_S = 15.0
CANCEL_ACTION = "alltoken.video.cancel"


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


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
