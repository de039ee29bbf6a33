"""The OpenClaw Token simulator's knobs, its demo pacing, and a settable clock for tests."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field


class OpenClawSimConfig(BaseModel):
    """Knobs of the simulator."""

    device_interval_s: float = Field(5.0, ge=0)
    device_expires_s: float = Field(900.0, ge=0)
    slow_down_increment_s: float = Field(5.0, ge=0)
    # Demo only: approve a pending device sign-in as the demo account after this long.
    device_auto_approve_s: float | None = None
    # Stripe mode: a purchase answers with a checkout URL instead of adding credits.
    checkout: bool = False
    tokens_per_second: float = Field(0.0, ge=0)  # proxy stream pacing; 0 = at once
    seed_demo: bool = True


def demo_config() -> OpenClawSimConfig:
    """For `make demo` / `tokenbot sim`: a GitHub sign-in approves itself after a few seconds."""
    return OpenClawSimConfig(device_interval_s=1.0, device_auto_approve_s=3.0)


class SimClock:
    """A settable clock for tests: `advance` moves time forward."""

    def __init__(self, start: float | None = None) -> None:
        self.value = time.time() if start is None else start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.value += seconds
