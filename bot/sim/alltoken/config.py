"""The AllToken simulator's knobs and its demo key."""

from __future__ import annotations

from pydantic import BaseModel, Field

DEMO_KEY = "sk-at-demo-0000000000000000000000"


class AllTokenSimConfig(BaseModel):
    """Knobs of the simulator; mutable at runtime (in-process or via PATCH /_sim/config)."""

    image_seconds: float = Field(2.0, ge=0)
    video_seconds: float = Field(5.0, ge=0)
    tokens_per_second: float = Field(40.0, ge=0)  # 0 = as fast as possible
    latency_ms: float = Field(0.0, ge=0)  # before every response's first byte
    demo_keys: dict[str, float] = Field(default_factory=lambda: {DEMO_KEY: 25.0})
    # False (default, the seed's live-verified behaviour): the first completed image GET
    # carries b64_json only and every later GET answers 410 image_already_retrieved.
    # True (the SDK's newer spec): the first read also carries an r2_url, later GETs carry
    # r2_url only until r2_url_expires_at, then 410 image_expired.
    r2_copy: bool = False
    r2_ttl_s: float = Field(3600.0, ge=0)
    video_url_ttl_s: float = Field(3600.0, ge=0)
    # None (default): images are drawn at the requested size, as the service makes them.
    # A number caps the longest side (the ratio kept): tests use a small one so pictures
    # are cheap to draw, upload and scan.
    image_pixels: int | None = Field(None, ge=16, le=4096)
    poll_after_ms: int = Field(500, ge=0)
    signing_secret: str = "sim-secret"
