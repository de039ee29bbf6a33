"""The OpenMarlin simulator's sign-up: registration sessions, the sign-in page, the first key."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from aiohttp import web

from bot.sim.openmarlin.base import OpenMarlinSimBase, html_response
from bot.sim.openmarlin.pages import (
    callback_landing_page,
    closed_page,
    decided_page,
    sign_in_page,
)
from bot.sim.openmarlin.world import SIGNUP_GRANT, ApiError, ApiKey, Registration, new_id


class RegistrationRoutes(OpenMarlinSimBase):
    """Device-flow and browser-callback registration, with the person's Approve / Deny."""

    async def create_registration(self, request: web.Request) -> web.Response:
        """POST /v1/registration/sessions."""
        body = await self._body(request)
        flow = body.get("auth_flow", "device")
        if body.get("provider", "workos") != "workos" or flow not in ("device", "workos_callback"):
            raise ApiError(
                400,
                "invalid_request",
                "provider must be workos; auth_flow device or workos_callback",
            )
        now = self.now()
        session_id = new_id("rs_")
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
        if flow == "device":
            secret = new_id("dc_", 16)
            url = f"{self.base_url}/activate/{user_code}"
            redirect = None
        else:
            secret = new_id("cs_", 16)
            url = f"{self.base_url}/authorize?{urlencode({'state': secret})}"
            redirect = f"{self.base_url}/auth/callback"
            self._by_state[secret] = session_id
        reg = Registration(
            session_id,
            flow,
            now,
            now + self.config.registration_ttl_s,
            user_code,
            secret,
            url,
            redirect,
        )
        self._registrations[session_id] = reg
        self._by_user_code[user_code] = session_id
        return web.json_response(reg.body(now, None), status=201)

    def _registration(self, session_id: str) -> Registration:
        reg = self._registrations.get(session_id)
        if reg is None:
            raise ApiError(404, "not_found", "no such registration session")
        return reg

    async def get_registration(self, request: web.Request) -> web.Response:
        """GET /v1/registration/sessions/:id."""
        reg = self._registration(request.match_info["id"])
        ws = self._workspaces.get(reg.workspace_id or "")
        return web.json_response(reg.body(self.now(), ws))

    async def bootstrap_key(self, request: web.Request) -> web.Response:
        """POST /v1/registration/sessions/:id/api-keys: the secret, exactly once."""
        reg = self._registration(request.match_info["id"])
        body = await self._body(request)
        presented = body.get("device_code") or body.get("callback_state")
        if not isinstance(presented, str) or not secrets.compare_digest(presented, reg.secret):
            raise ApiError(400, "invalid_request", "device_code or callback_state does not match")
        if reg.state(self.now()) != "completed" or reg.workspace_id is None:
            raise ApiError(409, "invalid_request", "the registration is not completed")
        if reg.key_issued:
            raise ApiError(409, "invalid_request", "the first key was already issued")
        label = str(body.get("label") or "default")[:100]
        secret = new_id("claw_wsk_", 16)
        key = ApiKey(new_id("key_"), secret, reg.workspace_id, label, self.now())
        self._keys[secret] = key
        reg.key_issued = True
        return web.json_response({"api_key": key.body(), "secret": secret}, status=201)

    def _decide(self, reg: Registration, decision: str, email: str | None) -> None:
        now = self.now()
        reg.decision, reg.decided_at = decision, now
        if decision == "approve":
            reg.email = email or reg.email
            ws = self._new_workspace(reg.email.split("@")[0].replace(".", "-") or "workspace")
            ws.post(now, "signup_grant", SIGNUP_GRANT, reg.session_id)
            reg.account_id, reg.workspace_id = new_id("acct_"), ws.workspace_id

    async def sign_in(self, request: web.Request) -> web.Response:
        """GET/POST /activate/{code} and /authorize?state=: the person's Approve / Deny."""
        if "code" in request.match_info:
            session_id = self._by_user_code.get(request.match_info["code"])
        else:
            form = await request.post() if request.method == "POST" else {}
            state = request.query.get("state") or str(form.get("state") or "")
            session_id = self._by_state.get(state)
        reg = self._registrations.get(session_id or "")
        if reg is None:
            return html_response(closed_page("unknown"), 404)
        state_now = reg.state(self.now())
        if state_now != "pending_external_auth":
            return html_response(closed_page(state_now), 410)
        if request.method == "GET":
            left = int(reg.expires_at - self.now())
            return html_response(sign_in_page(reg.user_code, left, reg.email))
        form = await request.post()
        decision = str(form.get("decision") or "")
        if decision not in ("approve", "deny"):
            return html_response(sign_in_page(reg.user_code, 0, reg.email), 400)
        self._decide(reg, decision, str(form.get("email") or "") or None)
        if decision == "approve" and reg.redirect_uri:
            raise web.HTTPFound(f"{reg.redirect_uri}?{urlencode({'state': reg.secret})}")
        return html_response(decided_page(decision))

    async def callback_landing(self, request: web.Request) -> web.Response:
        """GET /auth/callback: user-facing only."""
        return html_response(callback_landing_page())
