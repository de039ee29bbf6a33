"""The AllToken simulator's model lists, public price catalog and web-session-only account API."""

from __future__ import annotations

from aiohttp import web

from bot.backends.alltoken import catalog
from bot.sim.alltoken.base import AllTokenSimBase
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.models import (
    SIM_CHAT_MODELS,
    all_models,
    catalog_entry,
    image_model_info,
    video_model_info,
)


class ListingRoutes(AllTokenSimBase):
    """`/v1/*models` and `/api-account/*`."""

    async def list_models(self, request: web.Request) -> web.Response:
        """GET /v1/models: text, vision, image and video models together (spec R1)."""
        return web.json_response({"object": "list", "data": all_models()})

    async def list_image_models(self, request: web.Request) -> web.Response:
        """GET /v1/images/models."""
        data = [image_model_info(m) for m in catalog.IMAGE_MODELS]
        return web.json_response({"object": "list", "data": data})

    async def list_video_models(self, request: web.Request) -> web.Response:
        """GET /v1/videos/models (with capabilities)."""
        data = [video_model_info(m, with_capabilities=True) for m in catalog.VIDEO_MODELS]
        return web.json_response({"object": "list", "data": data})

    async def catalog_list(self, request: web.Request) -> web.Response:
        """GET /api-account/models: the public catalog, no auth."""
        ids = [*SIM_CHAT_MODELS, *catalog.IMAGE_MODELS, *catalog.VIDEO_MODELS]
        return web.json_response({"data": [catalog_entry(m) for m in ids]})

    async def catalog_model(self, request: web.Request) -> web.Response:
        """GET /api-account/models/{id}: one model with prices (field names vary by model)."""
        model_id = request.match_info["id"]
        entry = catalog_entry(model_id)
        if entry is None:
            raise SimApiError(404, "model_not_found", f"The model `{model_id}` does not exist.")
        return web.json_response({"data": entry})

    async def account_user(self, request: web.Request) -> web.Response:
        """/api-account/user/*: needs a web session, so API keys are always refused."""
        raise SimApiError(
            401,
            "invalid_token",
            "This endpoint needs a signed-in web session; API keys work on /v1/* only.",
        )
