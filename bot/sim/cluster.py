"""Start the backend simulators together on free loopback ports (demo, tests, `tokenbot sim`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bot.sim.alltoken import AllTokenSim, AllTokenSimConfig

DEMO_ALLTOKEN_KEY = "sk-at-demo-0000000000000000000000"


def sim_config_from_env() -> AllTokenSimConfig:
    """Simulator pacing from TOKENBOT_SIM_* variables (demo defaults otherwise)."""
    overrides: dict[str, float] = {}
    for env, name in (
        ("TOKENBOT_SIM_IMAGE_SECONDS", "image_seconds"),
        ("TOKENBOT_SIM_VIDEO_SECONDS", "video_seconds"),
        ("TOKENBOT_SIM_TOKENS_PER_SECOND", "tokens_per_second"),
        ("TOKENBOT_SIM_LATENCY_MS", "latency_ms"),
        ("TOKENBOT_SIM_VIDEO_URL_TTL", "video_url_ttl_s"),
    ):
        if os.environ.get(env):
            overrides[name] = float(os.environ[env])
    return AllTokenSimConfig(**overrides)


@dataclass
class SimCluster:
    """The running simulators and their base URLs."""

    alltoken: AllTokenSim = field(default_factory=lambda: AllTokenSim(sim_config_from_env()))
    host: str = "127.0.0.1"

    async def start(self, alltoken_port: int = 0) -> SimCluster:
        """Start every simulator (port 0 = any free port)."""
        await self.alltoken.start(self.host, alltoken_port)
        return self

    async def stop(self) -> None:
        """Stop every simulator."""
        await self.alltoken.stop()

    @property
    def urls(self) -> dict[str, str]:
        """Settings overrides pointing tokenbot at the simulators."""
        return {"alltoken_base_url": self.alltoken.base_url}

    @property
    def demo_keys(self) -> dict[str, str]:
        """The demo user's pre-provisioned keys, by service."""
        return {"alltoken": DEMO_ALLTOKEN_KEY}
