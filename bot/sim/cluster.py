"""Start the backend simulators together on free loopback ports (demo, tests, `tokenbot sim`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bot.core.settings import Settings, load_settings
from bot.sim.alltoken.config import DEMO_KEY, AllTokenSimConfig
from bot.sim.dependencies import require_sim_dependencies

if TYPE_CHECKING:
    from bot.sim.alltoken.server import AllTokenSim

DEMO_ALLTOKEN_KEY = DEMO_KEY


class Simulator(Protocol):
    """What every simulator offers the cluster."""

    base_url: str

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns the base URL."""

    async def stop(self) -> None:
        """Stop listening."""


def sim_config_from_settings(settings: Settings) -> AllTokenSimConfig:
    """AllToken simulator pacing from the TOKENBOT_SIM_* settings (demo defaults otherwise)."""
    overrides: dict[str, float] = {}
    for value, name in (
        (settings.sim_image_seconds, "image_seconds"),
        (settings.sim_video_seconds, "video_seconds"),
        (settings.sim_tokens_per_second, "tokens_per_second"),
        (settings.sim_latency_ms, "latency_ms"),
        (settings.sim_video_url_ttl_s, "video_url_ttl_s"),
    ):
        if value is not None:
            overrides[name] = value
    return AllTokenSimConfig(**overrides)


class SimCluster:
    """The running simulators, the settings that point tokenbot at them, and the demo keys."""

    def __init__(self, host: str = "127.0.0.1", settings: Settings | None = None) -> None:
        # One clear line when the [sim] extra is missing; the simulators import it below.
        require_sim_dependencies()
        from bot.sim.alltoken.server import AllTokenSim

        self.host = host
        # The pacing comes from the environment and the TOKENBOT_CONFIG file alike.
        self._settings = settings if settings is not None else load_settings()
        self.alltoken: AllTokenSim = AllTokenSim(sim_config_from_settings(self._settings))
        # Each entry: (name, simulator, settings field that should point at it).
        self._sims: list[tuple[str, Simulator, str]] = [
            ("alltoken", self.alltoken, "alltoken_base_url")
        ]
        self._demo_keys: dict[str, str] = {"alltoken": DEMO_ALLTOKEN_KEY}
        self._add_other_simulators()

    def _add_other_simulators(self) -> None:
        """OpenMarlin and OpenClaw Token simulators join here (see their modules)."""
        from bot.sim.openmarlin.server import DEMO_KEY as DEMO_OPENMARLIN_KEY
        from bot.sim.openmarlin.server import OpenMarlinSim
        from bot.sim.openmarlin.server import sim_config_from_settings as openmarlin_config

        self.add(
            "openmarlin",
            OpenMarlinSim(openmarlin_config(self._settings)),
            "openmarlin_server_url",
            {"openmarlin": DEMO_OPENMARLIN_KEY},
        )
        from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim, demo_config

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
