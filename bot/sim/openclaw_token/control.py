"""The OpenClaw Token simulator's `/_sim/*` control API, for tests in other processes."""

from __future__ import annotations

import html

from aiohttp import web

from bot.sim.openclaw_token.base import OpenClawSimBase, data_response
from bot.sim.openclaw_token.state import DEMO_EMAIL, SimError


class ControlRoutes(OpenClawSimBase):
    """Steer the device flow; read the stats."""

    async def control_device(self, request: web.Request) -> web.Response:
        """POST /_sim/device/{action} {user_code?, email?, answers?}: approve|deny|expire|script."""
        body = await self._body(request)
        code = body.get("user_code")
        try:
            action = request.match_info["action"]
            if action == "approve":
                self.approve_device(code, email=str(body.get("email") or DEMO_EMAIL))
            elif action == "deny":
                self.deny_device(code)
            elif action == "expire":
                self.expire_device(code)
            elif action == "script":
                self.script_device([str(a) for a in body.get("answers") or []], code)
            else:
                raise SimError(404, "NOT_FOUND", f"unknown action {html.escape(action)}")
        except KeyError:
            raise SimError(404, "NOT_FOUND", "no such device session") from None
        return data_response({"ok": True})

    async def control_stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats."""
        return web.json_response(dict(self.stats))
