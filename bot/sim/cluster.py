"""Start the backend simulators together on free loopback ports (demo, tests, `tokenbot sim`)."""

from __future__ import annotations

import os
from typing import Any, Protocol

from bot.sim.alltoken import AllTokenSim, AllTokenSimConfig

DEMO_ALLTOKEN_KEY = "sk-at-demo-0000000000000000000000"


class Simulator(Protocol):
    """What every simulator offers the cluster."""

    base_url: str

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns the base URL."""

    async def stop(self) -> None:
        """Stop listening."""


def sim_config_from_env() -> AllTokenSimConfig:
    """AllToken simulator pacing from TOKENBOT_SIM_* variables (demo defaults otherwise)."""
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


class SimCluster:
    """The running simulators, the settings that point tokenbot at them, and the demo keys."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.alltoken = AllTokenSim(sim_config_from_env())
        # Each entry: (name, simulator, settings field that should point at it).
        self._sims: list[tuple[str, Simulator, str]] = [
            ("alltoken", self.alltoken, "alltoken_base_url")
        ]
        self._demo_keys: dict[str, str] = {"alltoken": DEMO_ALLTOKEN_KEY}
        self._add_other_simulators()

    def _add_other_simulators(self) -> None:
        """OpenMarlin and OpenClaw Token simulators join here (see their modules)."""
        from bot.sim.openmarlin import DEMO_KEY as DEMO_OPENMARLIN_KEY
        from bot.sim.openmarlin import OpenMarlinSim
        from bot.sim.openmarlin import sim_config_from_env as openmarlin_config_from_env

        self.add(
            "openmarlin",
            OpenMarlinSim(openmarlin_config_from_env()),
            "openmarlin_server_url",
            {"openmarlin": DEMO_OPENMARLIN_KEY},
        )
        from bot.sim.openclaw_token import DEMO_MGMT_KEY, OpenClawTokenSim, demo_config

        self.add(
            "openclaw_token",
            OpenClawTokenSim(demo_config()),
            "openclaw_token_api_base",
            {"openclaw_token": DEMO_MGMT_KEY},
        )

    def add(
        self,
        name: str,
        sim: Simulator,
        settings_field: str,
        demo_keys: dict[str, str] | None = None,
    ) -> None:
        """Include one more simulator."""
        self._sims.append((name, sim, settings_field))
        self._demo_keys.update(demo_keys or {})

    def get(self, name: str) -> Any:
        """A simulator by name."""
        for sim_name, sim, _ in self._sims:
            if sim_name == name:
                return sim
        raise KeyError(name)

    async def start(self, ports: dict[str, int] | None = None) -> SimCluster:
        """Start every simulator (port 0 = any free port)."""
        for name, sim, _ in self._sims:
            await sim.start(self.host, (ports or {}).get(name, 0))
        return self

    async def stop(self) -> None:
        """Stop every simulator."""
        for _, sim, _ in reversed(self._sims):
            await sim.stop()

    @property
    def urls(self) -> dict[str, str]:
        """Settings overrides pointing tokenbot at the simulators."""
        return {field: sim.base_url for _, sim, field in self._sims}

    @property
    def demo_keys(self) -> dict[str, str]:
        """The demo user's pre-provisioned keys, by credential service name."""
        return dict(self._demo_keys)
