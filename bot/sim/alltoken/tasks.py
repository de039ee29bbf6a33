"""Image and video tasks of the AllToken simulator: lifecycle by clock, JSON as the spec shapes it.

A task's state is a pure function of the clock (submitted -> queued -> processing -> done), so
nothing runs in the background and a test can drive it with a fake clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from bot.backends.alltoken import catalog

# How long an unclaimed image result waits for its first (b64) read.
IMAGE_CLAIM_WINDOW_S = 3600.0
# Share of the generation time a task spends "queued" before "processing".
QUEUED_SHARE = 0.3
VIDEO_FPS = 24
TERMINAL_VIDEO_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


def iso(ts: float) -> str:
    """RFC 3339 UTC with a Z suffix, millisecond precision."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UrlSigner:
    """Presigned URLs for the simulator's object storage: HMAC-SHA256 of "object_id:expires"."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")

    def signature(self, object_id: str, expires: int) -> str:
        """Hex signature of one object id and expiry."""
        return hmac.new(self._secret, f"{object_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base_url: str, route: str, object_id: str, ext: str, expires: int) -> str:
        """`{base}{route}/{id}.{ext}?expires=..&sig=..`."""
        query = urlencode({"expires": expires, "sig": self.signature(object_id, expires)})
        return f"{base_url}{route}/{object_id}.{ext}?{query}"

    def verify(self, object_id: str, expires: str | None, sig: str | None, now: float) -> bool:
        """Whether a presented (expires, sig) pair is genuine and not yet expired."""
        if not expires or not sig or not expires.isdigit():
            return False
        if not hmac.compare_digest(self.signature(object_id, int(expires)), sig):
            return False
        return now < int(expires)


def _phase(now: float, created_at: float, ready_at: float) -> str:
    if now >= ready_at:
        return "done"
    if now < created_at + (ready_at - created_at) * QUEUED_SHARE:
        return "queued"
    return "processing"


@dataclass
class ImageTask:
    """One async image generation."""

    id: str
    api_key: str
    model: str
    prompt: str
    n: int
    size: str
    quality: str
    created_at: float
    ready_at: float
    r2_copy: bool
    r2_expires_at: int
    cost: Decimal
    fail: bool
    b64_delivered: bool = False
    refunded: bool = False

    def status(self, now: float) -> str:
        """queued | processing | completed | failed."""
        phase = _phase(now, self.created_at, self.ready_at)
        if phase != "done":
            return phase
        return "failed" if self.fail else "completed"

    @property
    def claim_deadline(self) -> float:
        """After this an unclaimed result is gone (`expires_at`)."""
        return self.ready_at + IMAGE_CLAIM_WINDOW_S

    def object_ids(self) -> list[str]:
        """Storage ids of the task's images: the task id, then `{id}_{i}` for extra images."""
        return [self.id if i == 0 else f"{self.id}_{i}" for i in range(self.n)]

    def revised_prompt(self) -> str | None:
        """gpt-image-2 rewrites prompts; the wan models do not."""
        return f"A detailed rendering of: {self.prompt}" if self.model == "gpt-image-2" else None

    def usage(self) -> dict[str, int]:
        """Token usage of the generation (words in, a fixed budget per image out)."""
        per_image = {"low": 272, "medium": 1056, "high": 4160}.get(self.quality, 1056)
        input_tokens = max(1, len(self.prompt.split()))
        output_tokens = per_image * self.n
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }

    def pending_body(self, status: str, poll_after_ms: int) -> dict[str, Any]:
        """Body of a GET while queued/processing."""
        return {
            "id": self.id,
            "status": status,
            "model": self.model,
            "next_poll_after_ms": poll_after_ms,
            "created_at": iso(self.created_at),
        }

    def failed_body(self) -> dict[str, Any]:
        """Body of a GET on a failed task."""
        return {
            "id": self.id,
            "status": "failed",
            "model": self.model,
            "error": {
                "code": "upstream_content_violation",
                "type": "invalid_request_error",
                "message": "The prompt was rejected by the upstream content policy.",
            },
            "created_at": iso(self.created_at),
            "updated_at": iso(self.ready_at),
        }

    def completed_body(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Body of a completed GET around the given data items."""
        return {
            "id": self.id,
            "status": "completed",
            "model": self.model,
            "created": int(self.created_at),
            "data": items,
            "usage": self.usage(),
            "size": self.size if self.size != "auto" else catalog.DEFAULT_IMAGE_SIZE,
            "quality": self.quality,
            "output_format": "png",
            "completed_at": iso(self.ready_at),
            "expires_at": iso(self.claim_deadline),
        }


def _video_dimensions(resolution: str, ratio: str) -> tuple[int, int]:
    short = int(resolution.rstrip("p"))
    a, b = (16, 9) if ratio == "adaptive" else (int(x) for x in ratio.split(":"))
    if a >= b:
        return round(short * a / b), short
    return short, round(short * b / a)


@dataclass
class VideoTask:
    """One async video generation."""

    id: str
    api_key: str
    model: str
    prompt: str
    ratio: str
    resolution: str
    duration: int
    seed: int | None
    generate_audio: bool | None
    return_last_frame: bool
    created_at: float
    ready_at: float
    url_expires_at: int
    cost: Decimal
    fail: bool
    cancelled_at: float | None = None
    refunded: bool = False

    def status(self, now: float) -> str:
        """queued | processing | completed | failed | expired | cancelled."""
        if self.cancelled_at is not None:
            return "cancelled"
        phase = _phase(now, self.created_at, self.ready_at)
        if phase != "done":
            return phase
        if self.fail:
            return "failed"
        return "expired" if now >= self.url_expires_at else "completed"

    def dimensions(self) -> tuple[int, int]:
        """(width, height) in pixels of the requested resolution and ratio."""
        return _video_dimensions(self.resolution, self.ratio)

    def usage(self) -> dict[str, int]:
        """Seedance-style usage: tokens ~ pixels * frames / 1024."""
        width, height = self.dimensions()
        tokens = width * height * VIDEO_FPS * self.duration // 1024
        return {"completion_tokens": tokens, "total_tokens": tokens}

    def body(
        self, now: float, base_url: str, signer: UrlSigner, *, status: str | None = None
    ) -> dict[str, Any]:
        """The task as GET /v1/videos/generations/{id} returns it (a VideoTaskResponse).

        `status` pins the reported status: the submit reply is always "queued", even when the
        simulator's clock would already call the task done.
        """
        status = status or self.status(now)
        done = status in ("completed", "expired")
        video_url = last_frame_url = expires_at = None
        ttl: int | None = None
        if done:
            video_url = signer.url(base_url, "/_media/videos", self.id, "mp4", self.url_expires_at)
            if self.return_last_frame:
                last_frame_url = signer.url(
                    base_url, "/_media/frames", self.id, "png", self.url_expires_at
                )
            expires_at = iso(self.url_expires_at)
            ttl = max(0, math.floor(self.url_expires_at - now))
        error = None
        if status == "failed":
            error = {
                "code": "upstream_content_violation",
                "message": "The prompt was rejected by the upstream content policy.",
            }
        finished_at = self.ready_at if self.cancelled_at is None else self.cancelled_at
        return {
            "id": self.id,
            "status": status,
            "model": self.model,
            "input_type": "image_first_frame" if self.model.endswith("-i2v") else "text",
            "video_url": video_url,
            "video_url_expires_at": expires_at,
            "video_url_ttl": ttl,
            "is_expired": status == "expired",
            "last_frame_url": last_frame_url,
            "duration": self.duration,
            "fps": VIDEO_FPS,
            "resolution": self.resolution,
            "ratio": self.ratio,
            "seed": self.seed,
            "generate_audio": self.generate_audio,
            "usage": self.usage() if done else None,
            "error": error,
            "created_at": iso(self.created_at),
            "updated_at": iso(min(now, finished_at)),
            "completed_at": iso(finished_at) if status in TERMINAL_VIDEO_STATUSES else None,
        }
