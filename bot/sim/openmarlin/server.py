"""A local OpenMarlin server (aiohttp.web) faithful to the OpenMarlin API contract.

Device-flow and browser-callback registration with an HTML sign-in page (Approve / Deny), key
bootstrap returning the secret once, `/v1/models` with providers and labels, executions as JSON
or SSE with routing by model, provider and labels (every routing error code), video tasks
queued → running → succeeded/failed, balance, usage events, ledger, top-ups with an HTML
checkout, the structured 402, `/openapi.json` (the skill's connectivity check), and injectable
faults. `/_sim/*` is a control API for tests.

The routes live in one module per resource (registration, executions, tasks, billing,
control); the state and plumbing they share in base.py; the rules in world.py.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

# The referral path is unpublished; the client and this stand-in share its one constant.
from bot.backends.openmarlin.service import REFERRAL_PATH
from bot.sim.openmarlin.billing import BillingRoutes
from bot.sim.openmarlin.config import DEMO_KEY, OpenMarlinSimConfig, sim_config_from_settings
from bot.sim.openmarlin.control import ControlRoutes
from bot.sim.openmarlin.executions import ExecutionRoutes
from bot.sim.openmarlin.faults import OpenMarlinFault
from bot.sim.openmarlin.openapi import OPENAPI_PATH, openapi_document
from bot.sim.openmarlin.registration import RegistrationRoutes
from bot.sim.openmarlin.tasks import TaskRoutes
from bot.sim.openmarlin.world import Provider

__all__ = [
    "DEMO_KEY",
    "OpenMarlinFault",
    "OpenMarlinSim",
    "OpenMarlinSimConfig",
    "create_app",
    "sim_config_from_settings",
]


class OpenMarlinSim(RegistrationRoutes, ExecutionRoutes, TaskRoutes, BillingRoutes, ControlRoutes):
    """The simulator: state plus the aiohttp app serving it."""

    def __init__(
        self,
        config: OpenMarlinSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        providers: list[Provider] | None = None,
    ) -> None:
        super().__init__(config, clock=clock, providers=providers)
        self.serve(create_app(self))

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /openapi.json (no key): the routes below, as the skill's connectivity check reads."""
        return web.json_response(openapi_document(request.app, self.base_url))


def create_app(sim: OpenMarlinSim) -> web.Application:
    """The aiohttp application serving `sim`."""
    app = web.Application(middlewares=[sim.middleware])
    r = app.router
    r.add_get(OPENAPI_PATH, sim.openapi)
    r.add_post("/v1/registration/sessions", sim.create_registration)
    r.add_get("/v1/registration/sessions/{id}", sim.get_registration)
    r.add_post("/v1/registration/sessions/{id}/api-keys", sim.bootstrap_key)
    r.add_get("/v1/models", sim.list_models)
    r.add_post("/v1/executions", sim.executions)
    r.add_post("/v1/tasks", sim.submit_task)
    r.add_get("/v1/tasks/{id}", sim.get_task)
    r.add_get("/v1/balance", sim.balance)
    r.add_get("/v1/usage-events", sim.usage_events)
    r.add_get("/v1/ledger", sim.ledger)
    r.add_post("/v1/topup/sessions", sim.create_topup)
    r.add_get("/v1/topup/sessions/{id}", sim.get_topup)
    r.add_get(REFERRAL_PATH, sim.referral)
    r.add_route("GET", "/activate/{code}", sim.sign_in)
    r.add_route("POST", "/activate/{code}", sim.sign_in)
    r.add_route("GET", "/authorize", sim.sign_in)
    r.add_route("POST", "/authorize", sim.sign_in)
    r.add_get("/auth/callback", sim.callback_landing)
    r.add_route("GET", "/checkout/{id}", sim.checkout)
    r.add_route("POST", "/checkout/{id}", sim.checkout)
    r.add_get("/_media/tasks/{id}.{ext:mp4|png}", sim.media)
    r.add_route("*", "/_sim/faults", sim.control_faults)
    r.add_post("/_sim/keys", sim.control_keys)
    r.add_route("*", "/_sim/config", sim.control_config)
    r.add_get("/_sim/stats", sim.control_stats)
    return app
