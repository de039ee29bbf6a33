"""A local OpenClaw Token server (aiohttp.web) faithful to the OpenClaw Token API contract.

Accounts (email/password and a GitHub-style device flow), credits with the platform fee and
Idempotency-Key purchases, history, auto top-up, provisioned keys with spend limits, and the
proxy `/v1/chat/completions` (proxy.py). Seeded with the demo account. The clock is injectable
so tests can cross daily/weekly/monthly resets. `/_sim/*` is a small control API for tests in
other processes.

The routes live in one module per resource (accounts, credits, keys, proxy, control); the
state and plumbing they share in base.py; the account and key rules in state.py.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.sim.openclaw_token.accounts import AccountRoutes
from bot.sim.openclaw_token.config import OpenClawSimConfig, SimClock, demo_config
from bot.sim.openclaw_token.control import ControlRoutes
from bot.sim.openclaw_token.credits import CreditRoutes
from bot.sim.openclaw_token.keys import KeyRoutes
from bot.sim.openclaw_token.proxy import ProxyRoutes
from bot.sim.openclaw_token.state import DEMO_EMAIL, DEMO_MGMT_KEY

__all__ = [
    "DEMO_EMAIL",
    "DEMO_MGMT_KEY",
    "OpenClawSimConfig",
    "OpenClawTokenSim",
    "SimClock",
    "create_app",
    "demo_config",
]

MAX_BODY_BYTES = 1024 * 1024


class OpenClawTokenSim(AccountRoutes, CreditRoutes, KeyRoutes, ProxyRoutes, ControlRoutes):
    """The simulator: accounts, keys, device sessions, faults, stats, and the app serving them."""

    def __init__(
        self, config: OpenClawSimConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        super().__init__(config, clock=clock)
        self.serve(create_app(self))

    @property
    def api_base(self) -> str:
        """What OPENCLAW_TOKEN_API_BASE would be for this shape (the root, or …/v1)."""
        return f"{self.base_url}/v1" if self.config.mount == "hosted" else self.base_url


def create_app(sim: OpenClawTokenSim) -> web.Application:
    """The aiohttp application serving `sim` in its configured shape (`config.mount`)."""
    app = web.Application(middlewares=[sim.middleware], client_max_size=MAX_BODY_BYTES)
    r = app.router
    hosted = sim.config.mount == "hosted"
    m = "/v1" if hosted else ""  # where the management routes hang
    r.add_get("/", sim.root)
    r.add_post(f"{m}/auth/register", sim.register)
    r.add_post(f"{m}/auth/login", sim.login)
    r.add_get(f"{m}/auth/me", sim.me)
    r.add_post(f"{m}/auth/rotate", sim.rotate)
    r.add_post(f"{m}/oauth/device/code", sim.device_code)
    r.add_post(f"{m}/oauth/device/token", sim.device_token)
    r.add_get(f"{m}/oauth/userinfo", sim.userinfo)
    r.add_get("/login/device", sim.device_page)
    r.add_post("/login/device", sim.device_page)
    r.add_get(f"{m}/credits", sim.credits)
    r.add_post(f"{m}/credits/purchase", sim.purchase)
    r.add_get(f"{m}/credits/history", sim.history)
    r.add_get(f"{m}/credits/auto-topup", sim.auto_topup)
    r.add_put(f"{m}/credits/auto-topup", sim.auto_topup)
    r.add_post(f"{m}/keys", sim.create_key)
    r.add_get(f"{m}/keys", sim.list_keys)
    r.add_get(f"{m}/keys/{{hash}}", sim.key_info)
    r.add_patch(f"{m}/keys/{{hash}}", sim.update_key)
    r.add_delete(f"{m}/keys/{{hash}}", sim.revoke_key)
    r.add_post(f"{m}/keys/{{hash}}/rotate", sim.rotate_key)
    r.add_post("/v1/chat/completions", sim.chat_completions)
    r.add_post("/_sim/device/{action}", sim.control_device)
    r.add_get("/_sim/stats", sim.control_stats)
    if not hosted:
        # The server's proxy router guards all of /v1: a management path there meets it.
        r.add_route("*", "/v1/{tail:.*}", sim.proxy_guard)
    return app
