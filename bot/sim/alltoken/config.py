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
    # Newer spec: later image GETs return r2_url only; False -> 410 image_already_retrieved.
    r2_copy: bool = True
    r2_ttl_s: float = Field(3600.0, ge=0)
    video_url_ttl_s: float = Field(3600.0, ge=0)
    # Longest side of a simulated image: the requested size is scaled down to fit (tests
    # use a small value so pictures are cheap to draw).
    image_pixels: int = Field(1536, ge=16, le=2048)
    poll_after_ms: int = Field(500, ge=0)
    signing_secret: str = "sim-secret"
