"""The OpenMarlin simulator's knobs, its demo key, and its pacing from tokenbot's settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from bot.core.settings import Settings

DEMO_KEY = "claw_wsk_demo0000000000000000000000"


class OpenMarlinSimConfig(BaseModel):
    """Knobs of the simulator; mutable at runtime (in-process or via PATCH /_sim/config)."""

    registration_ttl_s: float = Field(300.0, ge=0)
    task_queue_s: float = Field(1.0, ge=0)
    task_run_s: float = Field(4.0, ge=0)
    tokens_per_second: float = Field(40.0, ge=0)  # 0 = as fast as possible
    latency_ms: float = Field(0.0, ge=0)
    # False: answer every execution as JSON even when `stream` is true.
    stream: bool = True
    # False: the (unpublished) referral endpoint answers 404 like a server without it.
    referrals: bool = True
    execution_cost: Decimal = Field(Decimal(1), ge=0)
    task_cost: Decimal = Field(Decimal(5), ge=0)
    demo_keys: dict[str, float] = Field(default_factory=lambda: {DEMO_KEY: 25.0})


def sim_config_from_settings(settings: Settings) -> OpenMarlinSimConfig:
    """Pacing from TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS and friends (demo defaults otherwise)."""
    cfg = OpenMarlinSimConfig()
    if settings.sim_openmarlin_task_seconds is not None:
        total = settings.sim_openmarlin_task_seconds
        cfg.task_queue_s, cfg.task_run_s = total * 0.2, total * 0.8
    if settings.sim_tokens_per_second is not None:
        cfg.tokens_per_second = settings.sim_tokens_per_second
    if settings.sim_latency_ms is not None:
        cfg.latency_ms = settings.sim_latency_ms
    return cfg
