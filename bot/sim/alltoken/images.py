"""The AllToken simulator's async images: submit, one b64 read, then 410 (or, with the
`r2_copy` switch, R2 copies until they expire)."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

from aiohttp import web
from alltoken.generated.chat import ImageGenerationRequest

from bot.backends.alltoken import catalog
from bot.sim.alltoken.answers import FAIL_MARKER
from bot.sim.alltoken.base import API_KEY, AllTokenSimBase, enum_value, new_id, xml_denied
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.models import image_price
from bot.sim.alltoken.tasks import ImageTask, UrlSigner, iso
from bot.sim.picture import image_dimensions, prompt_picture

IDEMPOTENCY_WINDOW_S = 60.0


def size_ok(size: str) -> bool:
    """Whether gpt-image-2 accepts `size`: any WxH divisible by 16, ≤ 3840x2160, 1:3 to 3:1."""
    if size == "auto" or size in catalog.IMAGE_SIZES:
        return True
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return False
    w, h = int(parts[0]), int(parts[1])
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        return False
    return max(w, h) <= 3840 and min(w, h) <= 2160 and 1 / 3 <= w / h <= 3


class ImageRoutes(AllTokenSimBase):
    """`/v1/images/generations*` and the `/_r2/images/*` object store."""

    async def submit_image(self, request: web.Request) -> web.Response:
        """POST /v1/images/generations/async (and the legacy /v1/images/generations)."""
        key = request[API_KEY]
        now = self.now()
        idem = request.headers.get("Idempotency-Key")
        if idem:
            prior = self._idempotency.get((key, idem))
            if prior is not None and now - prior[1] < IDEMPOTENCY_WINDOW_S:
                raise SimApiError(
                    409,
                    "duplicate_request",
                    "A request with this Idempotency-Key was already accepted.",
                    extra={"task_id": prior[0]},
                )
        body = await self._json_body(request)
        model = body.get("model")
        if isinstance(model, str) and model not in catalog.IMAGE_MODELS:
            raise SimApiError(
                404, "model_not_found", f"The image model `{model}` does not exist.", param="model"
            )
        req = self._validate(ImageGenerationRequest, body)
        if not req.prompt.strip():
            raise SimApiError(400, "invalid_request", "prompt must not be empty", param="prompt")
        size = req.size or "auto"
        if not size_ok(size):
            raise SimApiError(
                400,
                "invalid_request",
                f"size must be auto or WIDTHxHEIGHT (e.g. {', '.join(catalog.IMAGE_SIZES[:3])})",
                param="size",
            )
        model = enum_value(req.model, catalog.DEFAULT_IMAGE_MODEL)
        quality = enum_value(req.quality, "auto")
        n = req.n or 1
        cost = image_price(model, quality, n)
        self._require_balance(key, cost)
        self._charge(key, cost)
        ready_at = now + self.config.image_seconds
        task = ImageTask(
            id=new_id("igen_"),
            api_key=key,
            model=model,
            prompt=req.prompt,
            n=n,
            size=size,
            quality=quality,
            created_at=now,
            ready_at=ready_at,
            r2_copy=self.config.r2_copy,
            r2_expires_at=math.ceil(ready_at + self.config.r2_ttl_s),
            cost=cost,
            fail=FAIL_MARKER in req.prompt,
        )
        self._images[task.id] = task
        for index, object_id in enumerate(task.object_ids()):
            self._r2_objects[object_id] = (task, index)
        if idem:
            self._remember_idempotency(key, idem, task.id, now)
        self.stats.image_submissions += 1
        return web.json_response(
            {"id": task.id, "status": "queued", "model": model, "created_at": iso(now)},
            status=202,
        )

    def _remember_idempotency(self, key: str, idem: str, task_id: str, now: float) -> None:
        if len(self._idempotency) > 10_000:
            # Forget keys past the dedupe window so a long-running sim does not grow forever.
            self._idempotency = {
                k: v for k, v in self._idempotency.items() if now - v[1] < IDEMPOTENCY_WINDOW_S
            }
        self._idempotency[(key, idem)] = (task_id, now)

    async def _png(self, task: ImageTask, index: int) -> bytes:
        object_id = task.object_ids()[index]
        cached = self._png_cache.get(object_id)
        if cached is None:
            width, height = image_dimensions(task.size, self.config.image_pixels)
            # A full-size picture takes ~0.1 s to draw: off the loop, so streams keep flowing.
            cached = await asyncio.to_thread(
                prompt_picture, task.prompt, width, height, variant=str(index)
            )
            self._png_cache[object_id] = cached
        return cached

    def _r2_fields(self, task: ImageTask, index: int, now: float) -> dict[str, Any]:
        if not task.r2_copy or now >= task.r2_expires_at:
            return {}
        object_id = task.object_ids()[index]
        return {
            "r2_url": UrlSigner(self.config.signing_secret).url(
                self.base_url, "/_r2/images", object_id, "png", task.r2_expires_at
            ),
            "r2_url_expires_at": iso(task.r2_expires_at),
        }

    async def get_image(self, request: web.Request) -> web.Response:
        """GET /v1/images/generations/{id}: pending, then one b64 read, then R2 URL or 410."""
        task = self._own(self._images, request)
        now = self.now()
        self.stats.image_reads[task.id] += 1
        status = task.status(now)
        if status in ("queued", "processing"):
            poll_ms = self.config.poll_after_ms
            return web.json_response(
                task.pending_body(status, poll_ms),
                headers={"Retry-After": str(max(1, math.ceil(poll_ms / 1000)))},
            )
        if status == "failed":
            if not task.refunded:
                task.refunded = True
                self._refund(task.api_key, task.cost)
            return web.json_response(task.failed_body())
        if not task.b64_delivered:
            return await self._first_read(task, now)
        if not task.r2_copy:
            raise SimApiError(
                410,
                "image_already_retrieved",
                "The image was already delivered; results can be read only once.",
            )
        if now >= task.r2_expires_at:
            raise SimApiError(410, "image_expired", "The stored image copy has expired.")
        items = [
            {
                **self._r2_fields(task, i, now),
                "mime_type": "image/png",
                "revised_prompt": task.revised_prompt(),
            }
            for i in range(task.n)
        ]
        return web.json_response(task.completed_body(items))

    async def _first_read(self, task: ImageTask, now: float) -> web.Response:
        # The one read that carries the pictures themselves (b64), within the claim window.
        if now >= task.claim_deadline:
            raise SimApiError(410, "image_expired", "The image result has expired.")
        task.b64_delivered = True
        self.stats.b64_deliveries[task.id] += 1
        pngs = [await self._png(task, i) for i in range(task.n)]
        items = [
            {
                "b64_json": base64.b64encode(pngs[i]).decode("ascii"),
                **self._r2_fields(task, i, now),
                "mime_type": "image/png",
                "revised_prompt": task.revised_prompt(),
            }
            for i in range(task.n)
        ]
        return web.json_response(task.completed_body(items))

    async def r2_object(self, request: web.Request) -> web.Response:
        """GET /_r2/images/{name}.png?expires=&sig=: the stored PNG, if the URL is genuine."""
        object_id = request.match_info["name"]
        signer = UrlSigner(self.config.signing_secret)
        q = request.query
        if not signer.verify(object_id, q.get("expires"), q.get("sig"), self.now()):
            return xml_denied(403, "AccessDenied", "Request has expired or signature mismatch")
        found = self._r2_objects.get(object_id)
        if found is None or not found[0].r2_copy:
            return xml_denied(404, "NoSuchKey", "The specified key does not exist.")
        task, index = found
        self.stats.r2_downloads[object_id] += 1
        return web.Response(body=await self._png(task, index), content_type="image/png")
