"""The AllToken simulator's async videos (presigned links, cancel, list) and their media."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web
from alltoken.generated.chat import VideoGenerationRequest

from bot.backends.alltoken import catalog
from bot.sim.alltoken.answers import FAIL_MARKER
from bot.sim.alltoken.base import API_KEY, AllTokenSimBase, enum_value, new_id, xml_denied
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.models import video_price
from bot.sim.alltoken.tasks import TERMINAL_VIDEO_STATUSES, UrlSigner, VideoTask
from bot.sim.demo_video import demo_mp4
from bot.sim.picture import fit, prompt_picture

# Content item types that carry a picture (the full `image_url` form and the simple `image`).
_IMAGE_ITEMS = frozenset({"image_url", "image"})


def _require_first_frame(req: VideoGenerationRequest) -> None:
    """Image-to-video models refuse a text-only request, as their upstream does (400)."""
    if not req.model.endswith("-i2v"):
        return
    for item in req.content or []:
        if enum_value(item.type, "") in _IMAGE_ITEMS and (
            item.image_url is not None or item.url or item.upload_id
        ):
            return
    # The gateway forwards it (its capability hints are not server-side checks); the provider
    # answers, so the code is the upstream's, not the gateway's own invalid_request.
    raise SimApiError(
        400,
        "upstream_invalid_parameter",
        f"{req.model} generates a video from an image: the request needs a content item "
        "with the first frame (type image_url, role first_frame); a text prompt alone is "
        "not accepted.",
        param="content",
    )


class VideoRoutes(AllTokenSimBase):
    """`/v1/videos/generations*` and the `/_media/*` presigned downloads."""

    async def submit_video(self, request: web.Request) -> web.Response:
        """POST /v1/videos/generations."""
        key = request[API_KEY]
        now = self.now()
        body = await self._json_body(request)
        model = body.get("model")
        if isinstance(model, str) and model not in catalog.VIDEO_MODELS:
            raise SimApiError(
                404,
                "upstream_model_not_found",
                f"The video model `{model}` does not exist.",
                param="model",
            )
        req = self._validate(VideoGenerationRequest, body)
        if not req.prompt.strip() and not req.content:
            raise SimApiError(400, "invalid_request", "prompt must not be empty", param="prompt")
        rng = catalog.duration_range(req.model)
        # 0 or absent means the upstream default (5 s), kept inside the model's range.
        requested = req.duration or min(max(catalog.DEFAULT_VIDEO_DURATION, rng.min), rng.max)
        if not rng.allows(requested):
            raise SimApiError(
                400,
                "invalid_request",
                f"duration must be {rng.describe()} for {req.model}",
                param="duration",
            )
        # -1 lets the model choose; the simulator picks deterministically from the prompt.
        duration = (
            requested if requested != -1 else rng.min + len(req.prompt) % (rng.max - rng.min + 1)
        )
        resolution = enum_value(req.resolution, catalog.DEFAULT_VIDEO_RESOLUTION)
        ratio = enum_value(req.ratio, catalog.DEFAULT_VIDEO_RATIO)
        cost = video_price(req.model, duration, resolution)
        self._require_balance(key, cost)
        _require_first_frame(req)
        self._charge(key, cost)
        ready_at = now + self.config.video_seconds
        task = VideoTask(
            id=new_id("vgen_"),
            api_key=key,
            model=req.model,
            prompt=req.prompt,
            ratio=ratio,
            resolution=resolution,
            duration=duration,
            seed=req.seed,
            generate_audio=req.generate_audio,
            return_last_frame=bool(req.return_last_frame),
            created_at=now,
            ready_at=ready_at,
            url_expires_at=math.ceil(ready_at + self.config.video_url_ttl_s),
            cost=cost,
            fail=FAIL_MARKER in req.prompt,
        )
        self._videos[task.id] = task
        self.stats.video_submissions += 1
        # The whole task, as the SDK's VideoTaskResponse requires (is_expired, created_at, …).
        signer = UrlSigner(self.config.signing_secret)
        return web.json_response(task.body(now, self.base_url, signer, status="queued"), status=202)

    def _video_body(self, task: VideoTask) -> dict[str, Any]:
        now = self.now()
        if task.status(now) == "failed" and not task.refunded:
            task.refunded = True
            self._refund(task.api_key, task.cost)
        return task.body(now, self.base_url, UrlSigner(self.config.signing_secret))

    async def get_video(self, request: web.Request) -> web.Response:
        """GET /v1/videos/generations/{id}."""
        task = self._own(self._videos, request)
        return web.json_response(self._video_body(task))

    async def cancel_video(self, request: web.Request) -> web.Response:
        """POST /v1/videos/generations/{id}/cancel: 200 task | 404 | 409 already finished."""
        task = self._own(self._videos, request)
        status = task.status(self.now())
        if status in TERMINAL_VIDEO_STATUSES:
            raise SimApiError(
                409, "task_already_finished", f"The task is already {status}; nothing to cancel."
            )
        task.cancelled_at = self.now()
        if not task.refunded:
            task.refunded = True
            self._refund(task.api_key, task.cost)
        self.stats.video_cancellations += 1
        return web.json_response(self._video_body(task))

    async def list_videos(self, request: web.Request) -> web.Response:
        """GET /v1/videos/generations?limit=&status=: this key's tasks, newest first."""
        key = request[API_KEY]
        raw_limit = request.query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise SimApiError(400, "invalid_request", "limit must be 1-100", param="limit")
        wanted = request.query.get("status")
        valid = ("queued", "processing", *sorted(TERMINAL_VIDEO_STATUSES))
        if wanted is not None and wanted not in valid:
            raise SimApiError(
                400, "invalid_request", f"status must be one of {', '.join(valid)}", param="status"
            )
        now = self.now()
        mine = sorted(
            (t for t in self._videos.values() if t.api_key == key),
            key=lambda t: t.created_at,
            reverse=True,
        )
        if wanted is not None:
            mine = [t for t in mine if t.status(now) == wanted]
        items = [self._video_body(t) for t in mine[: int(raw_limit)]]
        return web.json_response({"items": items, "total": len(mine)})

    async def media_object(self, request: web.Request) -> web.Response:
        """GET /_media/videos/{id}.mp4 and /_media/frames/{id}.png (presigned)."""
        kind, object_id = request.match_info["kind"], request.match_info["name"]
        signer = UrlSigner(self.config.signing_secret)
        q = request.query
        if not signer.verify(object_id, q.get("expires"), q.get("sig"), self.now()):
            return xml_denied(403, "AccessDenied", "Request has expired or signature mismatch")
        task = self._videos.get(object_id)
        if task is None or task.status(self.now()) not in ("completed", "expired"):
            return xml_denied(404, "NoSuchKey", "The specified key does not exist.")
        if kind == "frames":
            width, height = fit(*task.dimensions(), self.config.image_pixels)
            png = await asyncio.to_thread(
                prompt_picture, task.prompt, width, height, variant="last"
            )
            return web.Response(body=png, content_type="image/png")
        self.stats.video_downloads[object_id] += 1
        # Every task serves the same shipped clip: small, and it plays in any player.
        return web.Response(body=demo_mp4(), content_type="video/mp4")
