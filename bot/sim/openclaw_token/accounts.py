"""The OpenClaw Token simulator's accounts: email/password, management keys, GitHub device flow."""

from __future__ import annotations

import secrets

from aiohttp import web

from bot.sim.openclaw_token.base import OpenClawSimBase, data_response
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
        email, password = body.get("email"), body.get("password")
        # The real server only wants both present: "x" / "abc" make an account.
        if not isinstance(email, str) or not email or not isinstance(password, str) or not password:
            raise SimError(400, "INVALID_INPUT", "Email and password are required")
        email = email.strip().lower()
        if self.config.strict_registration:
            local, _, domain = email.partition("@")
            if not local or "." not in domain or len(email) > 254:
                raise SimError(400, "INVALID_INPUT", "email is not a valid address")
            if len(password) < 8:
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
        """POST /oauth/device/code {client_id}: only the server's own GitHub client id."""
        client_id = (await self._body(request)).get("client_id")
        if not client_id:
            raise SimError(400, "INVALID_INPUT", "client_id is required")
        if client_id != self.config.github_client_id:
            raise SimError(400, "INVALID_INPUT", "Invalid client_id")
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
        body = await self._body(request)
        if not body.get("device_code"):
            # Flat, like every other device-token answer of the real server.
            return web.json_response(
                {"error": "bad_device_code", "error_description": "device_code is required"},
                status=400,
            )
        code = require_device_code(body)
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
        if self.config.userinfo_needs_management_key:
            return await self._userinfo_behind_management_check(request)
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

    async def _userinfo_behind_management_check(self, request: web.Request) -> web.Response:
        """The real route: its management-key middleware runs first, so a gho_ token fails."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise SimError(401, "UNAUTHORIZED", "Missing or invalid authorization header")
        account = self.find_management(header[7:])
        if account is None:
            raise SimError(401, "UNAUTHORIZED", "Invalid or revoked token")
        return data_response(
            {
                "management_key": account.management_key,
                "email": account.email,
                "name": account.github_name,
                "avatar_url": f"https://avatars.example.com/{account.github_name}",
                "merged": True,
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
