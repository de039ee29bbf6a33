"""A local AllToken gateway (aiohttp.web) faithful to the AllToken API contract.

Serves chat (JSON and SSE with the after-[DONE] cost line), web-search semantics per family,
async images (one-shot b64), async videos with presigned URLs, model lists, the public price
catalog, per-key balances, and injectable faults.

It behaves like the real gateway by default: a completed image is read once and every later
read answers 410 image_already_retrieved (the seed's live-verified behaviour; the switch
`r2_copy=True`, also `PATCH /_sim/config {"r2_copy": true}`, serves the SDK's newer R2 copy:
an r2_url with the first read and on later ones); images are drawn at the requested size
(`image_pixels` caps them, for tests); the video submit reply is a whole VideoTaskResponse;
image-to-video models refuse a prompt alone (400 upstream_invalid_parameter); injected 429s
carry Retry-After; streamed chunks carry `usage: null`. `/_sim/*` is a control API for
tests in other processes; `/_r2/*` and `/_media/*` stand in for object storage.

The routes live in one module per resource (chat, images, videos, listings, control); the
state and plumbing they share in base.py; serving and faults are bot/sim's, shared by all
three simulators.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.sim.alltoken.chat import ChatRoutes
from bot.sim.alltoken.config import DEMO_KEY, AllTokenSimConfig
from bot.sim.alltoken.control import ControlRoutes
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.faults import Fault
from bot.sim.alltoken.images import ImageRoutes
from bot.sim.alltoken.listings import ListingRoutes
from bot.sim.alltoken.stats import SimStats
from bot.sim.alltoken.videos import VideoRoutes

__all__ = [
    "DEMO_KEY",
    "AllTokenSim",
    "AllTokenSimConfig",
    "Fault",
    "SimApiError",
    "SimStats",
    "create_app",
]


class AllTokenSim(ChatRoutes, ListingRoutes, ImageRoutes, VideoRoutes, ControlRoutes):
    """The simulator: state (keys, tasks, faults, stats) plus the aiohttp app serving it."""

    def __init__(
        self,
        config: AllTokenSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(config, clock=clock)
        self.serve(create_app(self))


def create_app(sim: AllTokenSim) -> web.Application:
    """The aiohttp application serving `sim` (routes, middleware)."""
    app = web.Application(middlewares=[sim.middleware], client_max_size=8 * 1024 * 1024)
    r = app.router
    r.add_post("/v1/chat/completions", sim.chat_completions)
    r.add_get("/v1/models", sim.list_models)
    r.add_get("/v1/images/models", sim.list_image_models)
    r.add_get("/v1/videos/models", sim.list_video_models)
    r.add_post("/v1/images/generations/async", sim.submit_image)
    r.add_post("/v1/images/generations", sim.submit_image)
    r.add_get("/v1/images/generations/{id}", sim.get_image)
    r.add_post("/v1/videos/generations", sim.submit_video)
    r.add_get("/v1/videos/generations", sim.list_videos)
    r.add_get("/v1/videos/generations/{id}", sim.get_video)
    r.add_post("/v1/videos/generations/{id}/cancel", sim.cancel_video)
    r.add_get("/api-account/models", sim.catalog_list)
    r.add_get("/api-account/models/{id}", sim.catalog_model)
    r.add_route("*", "/api-account/user/{tail:.*}", sim.account_user)
    r.add_get("/_r2/images/{name}.png", sim.r2_object)
    r.add_get("/_media/{kind:videos}/{name}.mp4", sim.media_object)
    r.add_get("/_media/{kind:frames}/{name}.png", sim.media_object)
    r.add_post("/_sim/faults", sim.control_add_fault)
    r.add_get("/_sim/faults", sim.control_list_faults)
    r.add_delete("/_sim/faults", sim.control_clear_faults)
    r.add_post("/_sim/keys", sim.control_issue_key)
    r.add_get("/_sim/keys/{key}", sim.control_get_key)
    r.add_get("/_sim/stats", sim.control_stats)
    r.add_delete("/_sim/stats", sim.control_reset_stats)
    r.add_get("/_sim/config", sim.control_config)
    r.add_patch("/_sim/config", sim.control_config)
    return app
