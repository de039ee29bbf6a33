"""AllToken's HTTP API as pydantic models: models, image and video tasks, request bodies.

The chat completion models are OpenAI-compatible and live in bot.core.openai_chat.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.backends.alltoken import catalog

ModelType = Literal["chat", "image", "video"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelInfo(_Wire):
    """An entry of /v1/models, /v1/images/models or /v1/videos/models."""

    id: str
    modality: str | None = None
    display_name: str | None = None
    family: str | None = None
    brand: str | None = None
    description: str | None = None
    capabilities: dict[str, Any] | None = None


class ImageData(_Wire):
    """One generated image as returned by a completed poll."""

    b64_json: str | None = None
    url: str | None = None
    r2_url: str | None = None
    r2_url_expires_at: str | int | float | None = None
    mime_type: str | None = None
    revised_prompt: str | None = None


class TaskError(_Wire):
    """The error block of a failed image or video task."""

    code: str | None = None
    type: str | None = None
    message: str | None = None


class ImageStatus(_Wire):
    """A poll of an async image task."""

    id: str
    status: str
    model: str | None = None
    next_poll_after_ms: int | None = None
    data: list[ImageData] = Field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: TaskError | None = None
    retry_after_s: float | None = None  # from the Retry-After header, not the body


class VideoStatus(_Wire):
    """A poll of a video task."""

    id: str
    status: str
    model: str | None = None
    video_url: str | None = None
    video_url_expires_at: str | None = None
    video_url_ttl: int | None = None
    is_expired: bool = False
    duration: float | None = None
    fps: float | None = None
    resolution: str | None = None
    ratio: str | None = None
    usage: dict[str, Any] | None = None
    error: TaskError | None = None
    created_at: str | int | None = None
    completed_at: str | int | None = None
    retry_after_s: float | None = None

    def expires_at(self, now: datetime | None = None) -> datetime | None:
        """When `video_url` stops working: the explicit time, else now + ttl."""
        if self.video_url_expires_at:
            try:
                return datetime.fromisoformat(self.video_url_expires_at.replace("Z", "+00:00"))
            except ValueError:
                pass
        if self.video_url_ttl is not None:
            return (now or datetime.now(UTC)) + timedelta(seconds=self.video_url_ttl)
        return None


class ImageRequest(BaseModel):
    """Body of POST /v1/images/generations/async."""

    prompt: str
    model: str = catalog.DEFAULT_IMAGE_MODEL
    size: str = catalog.DEFAULT_IMAGE_SIZE
    quality: str = catalog.DEFAULT_IMAGE_QUALITY
    n: int = 1


class VideoRequest(BaseModel):
    """Body of POST /v1/videos/generations."""

    prompt: str
    model: str = catalog.DEFAULT_VIDEO_MODEL
    duration: int = catalog.DEFAULT_VIDEO_DURATION
    ratio: str = catalog.DEFAULT_VIDEO_RATIO
    resolution: str = catalog.DEFAULT_VIDEO_RESOLUTION
