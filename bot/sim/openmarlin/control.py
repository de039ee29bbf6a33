"""The OpenMarlin simulator's `/_sim/*` control API, for tests in other processes."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from bot.sim.openmarlin.base import OpenMarlinSimBase
from bot.sim.openmarlin.config import OpenMarlinSimConfig
from bot.sim.openmarlin.faults import OpenMarlinFault
from bot.sim.openmarlin.world import ApiError


class ControlRoutes(OpenMarlinSimBase):
    """Faults, keys, config and stats over HTTP."""

    async def control_faults(self, request: web.Request) -> web.Response:
        """POST /_sim/faults adds one; DELETE clears them."""
        if request.method == "DELETE":
            return web.json_response({"cleared": self.faults.clear()})
        try:
            fault = OpenMarlinFault.model_validate(await self._body(request))
        except ValidationError as exc:
            raise ApiError(400, "invalid_request", str(exc.errors()[0]["msg"])) from None
        self.faults.append(fault)
        return web.json_response(fault.model_dump(), status=201)

    async def control_keys(self, request: web.Request) -> web.Response:
        """POST /_sim/keys {balance} -> {key, workspace_id}."""
        body = await self._body(request)
        balance = body.get("balance", 25)
        if isinstance(balance, bool) or not isinstance(balance, int | float):
            raise ApiError(400, "invalid_request", "balance must be a number")
        key = self.issue_key(float(balance))
        return web.json_response({"key": key, "workspace_id": self._keys[key].workspace_id})

    async def control_config(self, request: web.Request) -> web.Response:
        """GET or PATCH /_sim/config."""
        if request.method == "PATCH":
            merged = {**self.config.model_dump(), **(await self._body(request))}
            try:
                self.config = OpenMarlinSimConfig.model_validate(merged)
            except ValidationError as exc:
                raise ApiError(400, "invalid_request", str(exc.errors()[0]["msg"])) from None
        return web.json_response(self.config.model_dump(mode="json"))

    async def control_stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats."""
        return web.json_response(
            {"requests": dict(self.requests), "executions": self.execution_count}
        )
