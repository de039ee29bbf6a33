"""Shared pieces of the durable AllToken image and video jobs.

The polling base class, progress-message helpers and retry constants live here; `ImageJob` is in
image_job, `VideoJob` (with its Cancel button) in video_job, their states in job_state.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.backends.alltoken import catalog
from bot.backends.alltoken.failures import render_failure
from bot.backends.alltoken.job_state import AllTokenJobState
from bot.backends.alltoken.render import reported_cost
from bot.backends.alltoken.service import AllTokenService, ImageStatus, VideoStatus
from bot.core.context import ServiceRegistry
from bot.core.errors import BackendError
from bot.core.http import PollBackoff
from bot.core.job_errors import JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Part
from bot.core.spend import SpendHold, job_hold, job_key
from bot.store import LastCall, UsageRecord

DEFAULT_POLL_S = 2.0
MAX_POLL_S = 15.0
CANCEL_ACTION = "alltoken.video.cancel"
# Budget estimates when the catalog lists no media price (USD per image; per 480p second).
IMAGE_PRICE_FLOOR = Decimal("0.05")
VIDEO_PRICE_PER_S_FLOOR = Decimal("0.05")
# The catalog prices video per second at 480p; higher resolutions cost more (assumed x2, x4),
# and a hold that errs high is the safe side of a cap.
_RESOLUTION_FACTOR = {"480p": Decimal(1), "720p": Decimal(2), "1080p": Decimal(4)}
# A job's hold counts this long past the job's own time-out (then it is taken to have died).
HOLD_MARGIN_S = 600.0


async def _catalog_price(service: AllTokenService, model: str) -> Decimal | None:
    try:
        return await service.media_price(model)
    except BackendError:
        return None  # the catalog is down: the floor is the estimate


async def image_estimate(service: AllTokenService, model: str) -> Decimal:
    """What one image is expected to cost (catalog price, else a floor)."""
    return await _catalog_price(service, model) or IMAGE_PRICE_FLOOR


async def video_estimate(
    service: AllTokenService, model: str, duration: int, resolution: str
) -> Decimal:
    """What a video is expected to cost: price per second x seconds x resolution."""
    per_s = await _catalog_price(service, model) or VIDEO_PRICE_PER_S_FLOOR
    seconds = duration if duration > 0 else catalog.duration_range(model).max
    return per_s * seconds * _RESOLUTION_FACTOR.get(resolution, Decimal(4))


def next_delay(status: ImageStatus | VideoStatus, default: float = DEFAULT_POLL_S) -> float:
    """Honour next_poll_after_ms and Retry-After, whichever asks for more patience."""
    hinted = [default]
    if isinstance(status, ImageStatus) and status.next_poll_after_ms is not None:
        hinted = [status.next_poll_after_ms / 1000]
    if status.retry_after_s is not None:
        hinted.append(status.retry_after_s)
    return min(max(max(hinted), 0.05), MAX_POLL_S)


AllTokenJobContext = JobContext[AllTokenJobState]


async def _show(ctx: AllTokenJobContext, parts: list[Part]) -> None:
    """Post the job's progress message once, then edit it in place."""
    await ctx.show(parts)


class _PollingJob:
    kind = ""
    timeout_s = 600.0

    def __init__(
        self,
        service: AllTokenService,
        images_dir: Path,
        timeout_s: float,
        services: ServiceRegistry | None = None,
    ) -> None:
        self.service = service
        self.images_dir = images_dir
        self.timeout_s = timeout_s
        # Where the budget control is found (registered after this family attaches).
        self.services = services

    def _hold(self, ctx: AllTokenJobContext) -> SpendHold:
        """The budget hold the submit took (or none), to settle or release."""
        return job_hold(self.services, ctx, "alltoken")

    async def _estimate(self, ctx: AllTokenJobContext, model: str) -> Decimal:
        """The catalog estimate of this job's cost (nothing was held: no cap applied)."""
        state = ctx.state
        duration = getattr(state, "duration", None)
        if isinstance(duration, int):
            resolution = str(getattr(state, "resolution", "480p"))
            return await video_estimate(self.service, model, duration, resolution)
        return await image_estimate(self.service, model)

    async def _release(self, ctx: AllTokenJobContext) -> None:
        """The job ended uncharged (failed, cancelled): its estimate stops counting."""
        await self._hold(ctx).release()

    async def _key(self, ctx: AllTokenJobContext) -> str:
        key = await job_key(ctx, "alltoken")
        if not key:
            raise JobFailed(
                Failure(
                    code="missing_key",
                    message="Your AllToken key was removed while this job was running.",
                    hint="Set it again with `/alltoken-key` and re-run the command.",
                )
            )
        return key

    def _deadline(self, ctx: AllTokenJobContext) -> float:
        age = (datetime.now(UTC) - ctx.job.created_at).total_seconds()
        return time.monotonic() + max(self.timeout_s - age, 0.0)

    async def report_failure(self, ctx: AllTokenJobContext, failure: Failure) -> None:
        """Replace the progress message with the failure (or post it); release the hold."""
        await self._release(ctx)
        await _show(ctx, [failure])

    async def _poll_guarded(self, ctx: AllTokenJobContext, poll: Any, errors: list[int]) -> Any:
        """One poll; transient errors back off and return None, others fail the job."""
        await ctx.poll_slot()
        try:
            result = await poll()
        except BackendError as exc:
            # Built per call: the pacing constants are read when the error happens.
            backoff = PollBackoff(base_s=DEFAULT_POLL_S, cap_s=MAX_POLL_S)
            wait = backoff.wait_after(exc, len(errors) + 1)
            if wait is None:
                raise JobFailed(render_failure(exc)) from None
            errors.append(exc.status)
            await asyncio.sleep(wait)
            return None
        errors.clear()
        return result

    async def _record(
        self,
        ctx: AllTokenJobContext,
        command: str,
        model: str,
        usage: dict[str, Any] | None,
        request_id: str | None,
    ) -> None:
        usage = usage or {}
        pt = int(usage.get("input_tokens") or usage.get("prompt_tokens") or 0)
        ct = int(usage.get("output_tokens") or usage.get("completion_tokens") or 0)
        conv = ctx.state.conversation_key or ""
        # Media tasks report no price (the contract promises none): a cost in `usage` is
        # AllToken's word, else the catalog estimate held at submit is recorded as one.
        reported = reported_cost(usage)
        estimate = ctx.state.spend_estimate
        if reported is None and estimate is None:
            estimate = await self._estimate(ctx, model)
        await self._hold(ctx).settle(
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
            ),
            reported if reported is not None else estimate,
            "reported" if reported is not None else "estimate",
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
