"""The AllToken simulator's `/_sim/*` control API, for tests in other processes."""

from __future__ import annotations

from aiohttp import web

from bot.sim.alltoken.base import AllTokenSimBase
from bot.sim.alltoken.config import AllTokenSimConfig
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.faults import Fault


class ControlRoutes(AllTokenSimBase):
    """Faults, keys, stats and config over HTTP."""

    async def control_add_fault(self, request: web.Request) -> web.Response:
        """POST /_sim/faults."""
        body = await self._json_body(request)
        stored = self.add_fault(self._validate(Fault, body))
        return web.json_response(stored.model_dump(), status=201)

    async def control_list_faults(self, request: web.Request) -> web.Response:
        """GET /_sim/faults."""
        return web.json_response({"faults": [f.model_dump() for f in self.faults.active()]})

    async def control_clear_faults(self, request: web.Request) -> web.Response:
        """DELETE /_sim/faults."""
        return web.json_response({"cleared": self.clear_faults()})

    async def control_issue_key(self, request: web.Request) -> web.Response:
        """POST /_sim/keys {balance} -> {key, balance}."""
        body = await self._json_body(request)
        balance = body.get("balance", 25.0)
        if isinstance(balance, bool) or not isinstance(balance, int | float):
            raise SimApiError(400, "invalid_request", "balance must be a number", param="balance")
        key = self.issue_key(float(balance))
        return web.json_response({"key": key, "balance": self.balance(key)})

    async def control_get_key(self, request: web.Request) -> web.Response:
        """GET /_sim/keys/{key} -> {key, balance}."""
        key = request.match_info["key"]
        if key not in self._balances:
            raise SimApiError(404, "not_found", "Unknown key.")
        return web.json_response({"key": key, "balance": self.balance(key)})

    async def control_stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats."""
        return web.json_response(self.stats.to_json())

    async def control_reset_stats(self, request: web.Request) -> web.Response:
        """DELETE /_sim/stats."""
        self.stats.reset()
        return web.json_response(self.stats.to_json())

    async def control_config(self, request: web.Request) -> web.Response:
        """GET or PATCH /_sim/config (PATCH takes a partial config)."""
        if request.method == "PATCH":
            body = await self._json_body(request)
            merged = {**self.config.model_dump(), **body}
            self.config = self._validate(AllTokenSimConfig, merged)
        return web.json_response(self.config.model_dump())
