"""The OpenClaw Token simulator's accounts: email/password, management keys, GitHub device flow."""

from __future__ import annotations

import secrets

from aiohttp import web

from bot.sim.openclaw_token.base import OpenClawSimBase, data_response, require_str
from bot.sim.openclaw_token.device import flat_error, require_device_code
from bot.sim.openclaw_token.state import (
    DEMO_EMAIL,
    Account,
    SimError,
    iso,
    new_management_key,
)


def _plain(value: float) -> float | int:
    # Intervals print as integers when they are whole, as GitHub sends them.
    return int(value) if float(value).is_integer() else value


class AccountRoutes(OpenClawSimBase):
    """`/auth/*`, `/oauth/*` and the `/login/device` page."""

    async def register(self, request: web.Request) -> web.Response:
        """POST /auth/register {email, password} -> 201."""
        body = await self._body(request)
        email = require_str(body, "email").lower()
        password = body.get("password")
        local, _, domain = email.partition("@")
        if not local or "." not in domain or len(email) > 254:
            raise SimError(400, "INVALID_INPUT", "email is not a valid address")
        if not isinstance(password, str) or len(password) < 8:
            raise SimError(400, "INVALID_INPUT", "password must be at least 8 characters")
        if email in self.accounts:
            raise SimError(409, "EMAIL_EXISTS", "An account with this email already exists.")
        account = Account(email=email, management_key=new_management_key(), created_at=self.now())
        account.set_password(password)
        self.accounts[email] = account
        return data_response(
            {
                "management_key": account.management_key,
                "email": email,
                "created_at": iso(account.created_at),
            },
            201,
        )

    async def login(self, request: web.Request) -> web.Response:
        """POST /auth/login: a new management key on every login."""
        body = await self._body(request)
        email, password = body.get("email"), body.get("password")
        account = self.accounts.get(email.lower()) if isinstance(email, str) else None
        if (
            account is None
            or not isinstance(password, str)
            or not account.password_matches(password)
        ):
            raise SimError(401, "INVALID_CREDENTIALS", "Invalid email or password.")
        account.management_key = new_management_key()
        account.last_login = self.now()
        return data_response(
            {
                "management_key": account.management_key,
                "email": account.email,
                "last_login": iso(account.last_login),
            }
        )

    async def me(self, request: web.Request) -> web.Response:
        """GET /auth/me."""
        return data_response(self._signed_in(request).me())

    async def rotate(self, request: web.Request) -> web.Response:
        """POST /auth/rotate: the old key stops working now."""
        account = self._signed_in(request)
        account.management_key = new_management_key()
        return data_response(
            {
                "management_key": account.management_key,
                "email": account.email,
                "rotated_at": iso(self.now()),
            }
        )

    # ---- device flow ---------------------------------------------------------------------------

    async def device_code(self, request: web.Request) -> web.Response:
        """POST /oauth/device/code {client_id}."""
        require_str(await self._body(request), "client_id")
        session = self.device.start(self.now())
        return data_response(
            {
                "device_code": session.device_code,
                "user_code": session.user_code,
                "verification_uri": f"{self.base_url}/login/device",
                "interval": _plain(session.interval),
                "expires_in": _plain(self.config.device_expires_s),
            }
        )

    async def device_token(self, request: web.Request) -> web.Response:
        """POST /oauth/device/token: the access token, or a flat 400 error."""
        code = require_device_code(await self._body(request))
        session, answer = self.device.poll(code, self.now())
        self.stats[f"device {answer}"] += 1
        if answer != "success" or session is None:
            return web.json_response(flat_error(answer, session), status=400)
        email = session.approved_email or DEMO_EMAIL
        if email not in self.accounts:
            # A GitHub identity with no email account yet gets a fresh, password-less account.
            self.accounts[email] = Account(
                email=email, management_key=new_management_key(), created_at=self.now()
            )
        self.accounts[email].github_name = session.github_name or "octocat"
        token = f"gho_{secrets.token_hex(18)}"
        self._access_tokens[token] = email
        return data_response({"access_token": token, "token_type": "bearer"})

    async def userinfo(self, request: web.Request) -> web.Response:
        """GET /oauth/userinfo with the device-flow access token."""
        # Any scheme is accepted ("token gho_…" as GitHub's own clients send, or "Bearer").
        header = request.headers.get("Authorization", "")
        email = self._access_tokens.get(header.partition(" ")[2].strip())
        if email is None:
            raise SimError(401, "UNAUTHORIZED", "Invalid access token.")
        account = self.accounts[email]
        return data_response(
            {
                "management_key": account.management_key,
                "email": account.email,
                "name": account.github_name,
                "avatar_url": f"https://avatars.example.com/{account.github_name}",
                "merged": account.password_hash is not None,
            }
        )

    async def device_page(self, request: web.Request) -> web.Response:
        """GET/POST /login/device: the stand-in for github.com/login/device (approves as demo)."""
        note = ""
        if request.method == "POST":
            form = await request.post()
            try:
                self.approve_device(str(form.get("user_code", "")))
                note = "<p>Approved. You can return to your chat.</p>"
            except KeyError:
                note = "<p>Unknown code.</p>"
        page = (
            "<!doctype html><title>Device activation</title><h1>Device activation</h1>"
            f"{note}<form method=post><label>Code <input name=user_code></label>"
            "<button>Continue</button></form>"
        )
        return web.Response(text=page, content_type="text/html")
