"""The OpenClaw Token simulator's knobs, its demo pacing, and a settable clock for tests."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

# The value a server set up for the official openclaw-token CLI expects (the CLI sends it).
SIM_GITHUB_CLIENT_ID = "openclaw-cli"


class OpenClawSimConfig(BaseModel):
    """Knobs of the simulator. The defaults behave like the real self-hosted server; each
    switch below that makes it stricter (or tidier) than that says so.
    """

    # "self-hosted": like openclaw-token-server, /auth /keys /credits /oauth at the root and
    # only the proxy under /v1 (where any other path meets the proxy's key check: 401).
    # "hosted": the hosted service's shape the CLI's default base implies, all under /v1.
    mount: Literal["self-hosted", "hosted"] = "self-hosted"
    # The only client_id POST /oauth/device/code accepts (the server's GITHUB_CLIENT_ID).
    github_client_id: str = SIM_GITHUB_CLIENT_ID
    # Stricter than the real server, which takes any non-empty email and password: refuse
    # an email without a domain and a password under 8 characters (400 INVALID_INPUT).
    strict_registration: bool = False
    # Stricter than the real server, which stores an expires_at in the past (the key is born
    # expired): refuse it with 400 INVALID_INPUT.
    refuse_past_expiry: bool = False
    # The real server's /oauth/userinfo sits behind its management-key check, so it refuses
    # the GitHub access token the device flow hands out (401 "Invalid or revoked token").
    # Off by default so the demo's GitHub sign-in completes; on, it behaves like the server.
    userinfo_needs_management_key: bool = False

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
