"""A local OpenClaw Token server (aiohttp.web) faithful to the contract in reference/backends.md.

Accounts (email/password and a GitHub-style device flow), credits with the platform fee and
Idempotency-Key purchases, history, auto top-up, provisioned keys with spend limits, and the
proxy `/v1/chat/completions` (bot/sim/openclaw_token/proxy.py). Seeded with the seed's demo account.
The clock is injectable so tests can cross daily/weekly/monthly resets. `/_sim/*` is a small
control API for tests in other processes.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.backends.openclaw_token.service import MIN_PURCHASE, platform_fee
from bot.sim.listener import Listener
from bot.sim.openclaw_token import proxy as openclaw_proxy
from bot.sim.openclaw_token.device import DeviceFlow, DeviceSession, flat_error, require_device_code
from bot.sim.openclaw_token.state import (
    DEMO_EMAIL,
    DEMO_MGMT_KEY,
    HISTORY_TYPES,
    Account,
    AutoTopupSettings,
    ProvKey,
    SimError,
    demo_account,
    iso,
    key_hash,
    new_management_key,
    new_provisioned_key,
    num,
    parse_limit_reset,
    parse_money,
    parse_time,
)

__all__ = [
    "DEMO_EMAIL",
    "DEMO_MGMT_KEY",
    "OpenClawSimConfig",
    "OpenClawTokenSim",
    "SimClock",
    "demo_config",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
IDEMPOTENCY_WINDOW_S = 24 * 3600.0
REQUEST_ID = web.RequestKey("openclaw_request_id", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OpenClawSimConfig(BaseModel):
    """Knobs of the simulator."""

    device_interval_s: float = Field(5.0, ge=0)
    device_expires_s: float = Field(900.0, ge=0)
    slow_down_increment_s: float = Field(5.0, ge=0)
    # Demo only: approve a pending device sign-in as the demo account after this long.
    device_auto_approve_s: float | None = None
    # Stripe mode: a purchase answers with a checkout URL instead of adding credits.
    checkout: bool = False
    tokens_per_second: float = Field(0.0, ge=0)  # proxy stream pacing; 0 = at once
    seed_demo: bool = True


def demo_config() -> OpenClawSimConfig:
    """For `make demo` / `tokenbot sim`: a GitHub sign-in approves itself after a few seconds."""
    return OpenClawSimConfig(device_interval_s=1.0, device_auto_approve_s=3.0)


class SimClock:
    """A settable clock for tests: `advance` moves time forward."""

    def __init__(self, start: float | None = None) -> None:
        self.value = time.time() if start is None else start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.value += seconds


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    code: str
    times: int
    retry_after: float | None = None
    latency_ms: float = 0.0
    # error | malformed_json | malformed_sse | reset_mid_stream
    mode: str = "error"


def _plain(value: float) -> float | int:
    # Intervals print as integers when they are whole, as GitHub sends them.
    return int(value) if float(value).is_integer() else value


def _data(payload: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": payload}, status=status)


def _require_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SimError(400, "INVALID_INPUT", f"{name} is required")
    return value.strip()


class OpenClawTokenSim:
    """The simulator: accounts, keys, device sessions, faults, stats, and the app serving them."""

    def __init__(
        self, config: OpenClawSimConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or OpenClawSimConfig()
        self.clock = clock or time.time
        self.base_url = ""
        self.stats: Counter[str] = Counter()
        self.accounts: dict[str, Account] = {}
        self.device = DeviceFlow(
            interval_s=self.config.device_interval_s,
            expires_s=self.config.device_expires_s,
            slow_down_increment_s=self.config.slow_down_increment_s,
            auto_approve_s=self.config.device_auto_approve_s,
        )
        self._access_tokens: dict[str, str] = {}  # gho_… -> email
        self._idempotency: dict[tuple[str, str], tuple[Decimal, dict[str, Any], float]] = {}
        self._faults: list[_Fault] = []
        if self.config.seed_demo:
            demo = demo_account(self.now())
            self.accounts[demo.email] = demo
        self.app = self._build_app()
        self._listener = Listener(self.app)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL without trailing slash."""
        self.base_url = await self._listener.start(host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        await self._listener.stop()

    def now(self) -> float:
        """The simulator's clock (unix seconds)."""
        return self.clock()

    @staticmethod
    def request_id(request: web.Request) -> str:
        """This request's id (also in the x-request-id header)."""
        return request[REQUEST_ID]

    # ---- lookups and test controls -------------------------------------------------------------

    def account(self, email: str = DEMO_EMAIL) -> Account:
        """An account by email (KeyError if none)."""
        return self.accounts[email.lower()]

    def find_management(self, key: str) -> Account | None:
        """The account a management key belongs to."""
        for account in self.accounts.values():
            if key and secrets.compare_digest(account.management_key, key):
                return account
        return None

    def find_provisioned(self, value: str) -> tuple[Account, ProvKey] | None:
        """The account and key for a provisioned key value."""
        if not value:
            return None
        for account in self.accounts.values():
            for key in account.keys.values():
                if secrets.compare_digest(key.value, value):
                    return account, key
        return None

    def key(self, hash_: str) -> ProvKey:
        """A provisioned key by hash, any account (KeyError if none)."""
        for account in self.accounts.values():
            if hash_ in account.keys:
                return account.keys[hash_]
        raise KeyError(hash_)

    def approve_device(
        self, user_code: str | None = None, *, email: str = DEMO_EMAIL, github_name: str = "octocat"
    ) -> DeviceSession:
        """The user entered the code on GitHub and approved (latest session by default)."""
        session = self.device.find(user_code)
        session.approved_email = email.lower()
        session.github_name = github_name
        return session

    def deny_device(self, user_code: str | None = None) -> None:
        """The user declined."""
        self.device.find(user_code).denied = True

    def expire_device(self, user_code: str | None = None) -> None:
        """The code's lifetime ends now."""
        self.device.find(user_code).expires_at = self.now()

    def script_device(self, answers: list[str], user_code: str | None = None) -> None:
        """Queue answers (e.g. ["authorization_pending", "slow_down"]) for the next polls."""
        self.device.find(user_code).script.extend(answers)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        code: str = "INTERNAL_ERROR",
        times: int = 1,
        *,
        retry_after: float | None = None,
        latency_ms: float = 0.0,
        mode: str = "error",
    ) -> None:
        """Answer the next `times` requests to method+path with an error (after `latency_ms`).

        `mode` other than "error" sends a broken answer instead: unreadable JSON, an unreadable
        event stream, or an event stream whose connection drops mid-answer.
        """
        self._faults.append(
            _Fault(method.upper(), path, status, code, times, retry_after, latency_ms, mode)
        )

    async def _fault_response(self, request: web.Request, fault: _Fault) -> web.StreamResponse:
        """The broken answer of a non-"error" fault."""
        if fault.mode == "malformed_json":
            return web.Response(status=200, body=b"{not json", content_type="application/json")
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )
        await resp.prepare(request)
        if fault.mode == "malformed_sse":
            await resp.write(b"data: {oops\n\ndata: [DONE]\n\n")
            await resp.write_eof()
            return resp
        chunk = {"choices": [{"index": 0, "delta": {"content": "This answer "}}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if request.transport is not None:
            request.transport.close()  # dropped mid-answer: an incomplete chunked body
        return resp

    def _take_fault(self, request: web.Request) -> _Fault | None:
        for fault in self._faults:
            if fault.method == request.method and fault.path == request.path and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    # ---- middleware ----------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Request ids, stats, injected faults and the error envelope."""
        rid = f"req_{secrets.token_hex(8)}"
        request[REQUEST_ID] = rid
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        self.stats[f"{request.method} {template}"] += 1
        fault: _Fault | None = None
        try:
            fault = None if request.path.startswith("/_sim/") else self._take_fault(request)
            if fault is not None and fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault is not None and fault.mode != "error":
                return await self._fault_response(request, fault)
            if fault is not None:
                raise SimError(fault.status, fault.code, "Injected failure (simulator).")
            response = await handler(request)
        except SimError as exc:
            self.stats[f"error {exc.status} {exc.code}"] += 1
            response = web.json_response(
                {"error": {"code": exc.code, "message": exc.message}}, status=exc.status
            )
            if fault is not None and fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
        except web.HTTPRequestEntityTooLarge:
            response = web.json_response(
                {"error": {"code": "PAYLOAD_TOO_LARGE", "message": "The body exceeds 1 MB."}},
                status=413,
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "INVALID_INPUT")
            response = web.json_response(
                {"error": {"code": code, "message": exc.reason}}, status=exc.status
            )
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            return web.Response(status=499)
        except Exception:
            log.exception("OpenClaw Token simulator handler failed")
            response = web.json_response(
                {"error": {"code": "INTERNAL_ERROR", "message": "The simulator failed."}},
                status=500,
            )
        if not response.prepared:
            response.headers.setdefault("x-request-id", rid)
        return response

    # ---- helpers -------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise SimError(400, "INVALID_INPUT", "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise SimError(400, "INVALID_INPUT", "The body must be a JSON object.")
        return body

    def _signed_in(self, request: web.Request) -> Account:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        account = self.find_management(token.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            raise SimError(401, "UNAUTHORIZED", "Missing or invalid management key.")
        return account

    @staticmethod
    def _own_key(account: Account, request: web.Request) -> ProvKey:
        key = account.keys.get(request.match_info["hash"])
        if key is None:
            raise SimError(404, "KEY_NOT_FOUND", "No key with this hash.")
        return key

    # ---- auth ----------------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        """POST /auth/register {email, password} -> 201."""
        body = await self._body(request)
        email = _require_str(body, "email").lower()
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
        return _data(
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
        return _data(
            {
                "management_key": account.management_key,
                "email": account.email,
                "last_login": iso(account.last_login),
            }
        )

    async def me(self, request: web.Request) -> web.Response:
        """GET /auth/me."""
        return _data(self._signed_in(request).me())

    async def rotate(self, request: web.Request) -> web.Response:
        """POST /auth/rotate: the old key stops working now."""
        account = self._signed_in(request)
        account.management_key = new_management_key()
        return _data(
            {
                "management_key": account.management_key,
                "email": account.email,
                "rotated_at": iso(self.now()),
            }
        )

    # ---- device flow ---------------------------------------------------------------------------

    async def device_code(self, request: web.Request) -> web.Response:
        """POST /oauth/device/code {client_id}."""
        _require_str(await self._body(request), "client_id")
        session = self.device.start(self.now())
        return _data(
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
        return _data({"access_token": token, "token_type": "bearer"})

    async def userinfo(self, request: web.Request) -> web.Response:
        """GET /oauth/userinfo with the device-flow access token."""
        header = request.headers.get("Authorization", "")
        email = self._access_tokens.get(header.partition(" ")[2].strip())
        if email is None:
            raise SimError(401, "UNAUTHORIZED", "Invalid access token.")
        account = self.accounts[email]
        return _data(
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

    # ---- credits -------------------------------------------------------------------------------

    async def credits(self, request: web.Request) -> web.Response:
        """GET /credits."""
        return _data(self._signed_in(request).credits())

    async def purchase(self, request: web.Request) -> web.Response:
        """POST /credits/purchase {amount ≥ 5}; an Idempotency-Key is honoured for 24 h."""
        account = self._signed_in(request)
        body = await self._body(request)
        amount = parse_money(body.get("amount"), "amount", minimum=MIN_PURCHASE)
        if amount != amount.quantize(Decimal("0.01")):
            raise SimError(400, "INVALID_INPUT", "amount must have at most 2 decimals")
        now = self.now()
        idem = request.headers.get("Idempotency-Key")
        if idem:
            seen = self._idempotency.get((account.email, idem))
            if seen is not None and now - seen[2] < IDEMPOTENCY_WINDOW_S:
                if seen[0] != amount:
                    raise SimError(
                        409, "CONFLICT", "This Idempotency-Key was used with a different amount."
                    )
                self.stats["purchase replays"] += 1
                return web.json_response({"data": seen[1]}, headers={"Idempotent-Replayed": "true"})
        fee = platform_fee(amount)
        if self.config.checkout:
            session_id = f"cs_{secrets.token_hex(12)}"
            result: dict[str, Any] = {
                "checkout_url": f"{self.base_url}/checkout/{session_id}",
                "session_id": session_id,
            }
        else:
            txn = account.add_credits("purchase", amount, f"Purchase of ${amount:.2f}", now)
            self.stats["purchases"] += 1
            result = {
                "transaction_id": txn.id,
                "amount": num(amount),
                "platform_fee": num(fee),
                "total_charged": num(amount + fee),
                "new_balance": num(account.remaining),
                "created_at": iso(now),
            }
        if idem:
            self._idempotency[(account.email, idem)] = (amount, result, now)
        return _data(result)

    async def history(self, request: web.Request) -> web.Response:
        """GET /credits/history?limit&offset&type, newest first."""
        account = self._signed_in(request)
        q = request.query
        limit_raw, offset_raw = q.get("limit", "20"), q.get("offset", "0")
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
            raise SimError(400, "INVALID_INPUT", "limit must be 1-100")
        if not offset_raw.isdigit():
            raise SimError(400, "INVALID_INPUT", "offset must be 0 or more")
        wanted = q.get("type")
        if wanted is not None and wanted not in HISTORY_TYPES:
            raise SimError(400, "INVALID_INPUT", f"type must be one of {', '.join(HISTORY_TYPES)}")
        items = [t for t in reversed(account.history) if wanted is None or t.type == wanted]
        limit, offset = int(limit_raw), int(offset_raw)
        page = items[offset : offset + limit]
        return _data(
            {
                "items": [t.view() for t in page],
                "total": len(items),
                "limit": limit,
                "offset": offset,
                "has_more": offset + limit < len(items),
            }
        )

    async def auto_topup(self, request: web.Request) -> web.Response:
        """GET|PUT /credits/auto-topup {enabled, threshold ≥ 1, amount ≥ 5}."""
        account = self._signed_in(request)
        if request.method == "PUT":
            body = await self._body(request)
            current = account.auto_topup
            enabled = body.get("enabled", current.enabled)
            if not isinstance(enabled, bool):
                raise SimError(400, "INVALID_INPUT", "enabled must be true or false")
            account.auto_topup = AutoTopupSettings(
                enabled=enabled,
                threshold=parse_money(
                    body.get("threshold", num(current.threshold)), "threshold", minimum=Decimal(1)
                ),
                amount=parse_money(
                    body.get("amount", num(current.amount)), "amount", minimum=MIN_PURCHASE
                ),
            )
        return _data(account.auto_topup.view())

    # ---- provisioned keys ----------------------------------------------------------------------

    async def create_key(self, request: web.Request) -> web.Response:
        """POST /keys {name, credit_limit?, limit_reset?, expires_at?} -> 201 with the value."""
        account = self._signed_in(request)
        body = await self._body(request)
        name = _require_str(body, "name")
        if len(name) > 64:
            raise SimError(400, "INVALID_INPUT", "name must be at most 64 characters")
        if any(k.name == name for k in account.live_keys()):
            raise SimError(409, "KEY_NAME_EXISTS", f"A key named '{name}' already exists.")
        now = self.now()
        expires_at = parse_time(body.get("expires_at"), "expires_at")
        if expires_at is not None and expires_at <= now:
            raise SimError(400, "INVALID_INPUT", "expires_at must be in the future")
        value = new_provisioned_key()
        key = ProvKey(
            hash=key_hash(value),
            value=value,
            name=name,
            created_at=now,
            credit_limit=parse_money(
                body.get("credit_limit"), "credit_limit", minimum=Decimal("0.01"), allow_null=True
            ),
            limit_reset=parse_limit_reset(body.get("limit_reset")),
            expires_at=expires_at,
        )
        account.keys[key.hash] = key
        return _data(key.view(with_value=True), 201)

    async def list_keys(self, request: web.Request) -> web.Response:
        """GET /keys?include_revoked: never the values."""
        account = self._signed_in(request)
        everything = request.query.get("include_revoked", "").lower() in ("1", "true", "yes")
        keys = list(account.keys.values()) if everything else account.live_keys()
        return _data({"items": [k.view() for k in keys], "total": len(keys)})

    async def key_info(self, request: web.Request) -> web.Response:
        """GET /keys/:hash with the usage breakdown."""
        key = self._own_key(self._signed_in(request), request)
        return _data(key.detail(self.now()))

    async def update_key(self, request: web.Request) -> web.Response:
        """PATCH /keys/:hash {credit_limit, limit_reset, disabled}."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(410, "KEY_REVOKED", "The key has been revoked.")
        body = await self._body(request)
        if "credit_limit" in body:
            key.credit_limit = parse_money(
                body["credit_limit"], "credit_limit", minimum=Decimal("0.01"), allow_null=True
            )
        if "limit_reset" in body:
            key.limit_reset = parse_limit_reset(body["limit_reset"])
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise SimError(400, "INVALID_INPUT", "disabled must be true or false")
            key.disabled = body["disabled"]
        return _data(key.view())

    async def revoke_key(self, request: web.Request) -> web.Response:
        """DELETE /keys/:hash."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(410, "KEY_ALREADY_REVOKED", "The key was already revoked.")
        key.revoked_at = self.now()
        return _data(
            {"hash": key.hash, "name": key.name, "revoked": True, "revoked_at": iso(key.revoked_at)}
        )

    async def rotate_key(self, request: web.Request) -> web.Response:
        """POST /keys/:hash/rotate: a new value; hash and settings stay."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(410, "KEY_REVOKED", "The key has been revoked.")
        key.value = new_provisioned_key()
        return _data({**key.view(with_value=True), "rotated_at": iso(self.now())})

    # ---- proxy ---------------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions with a provisioned key."""
        return await openclaw_proxy.chat_completions(self, request, await self._body(request))

    # ---- control API ---------------------------------------------------------------------------

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
        return _data({"ok": True})

    async def control_stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats."""
        return web.json_response(dict(self.stats))

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY_BYTES)
        r = app.router
        r.add_post("/auth/register", self.register)
        r.add_post("/auth/login", self.login)
        r.add_get("/auth/me", self.me)
        r.add_post("/auth/rotate", self.rotate)
        r.add_post("/oauth/device/code", self.device_code)
        r.add_post("/oauth/device/token", self.device_token)
        r.add_get("/oauth/userinfo", self.userinfo)
        r.add_get("/login/device", self.device_page)
        r.add_post("/login/device", self.device_page)
        r.add_get("/credits", self.credits)
        r.add_post("/credits/purchase", self.purchase)
        r.add_get("/credits/history", self.history)
        r.add_get("/credits/auto-topup", self.auto_topup)
        r.add_put("/credits/auto-topup", self.auto_topup)
        r.add_post("/keys", self.create_key)
        r.add_get("/keys", self.list_keys)
        r.add_get("/keys/{hash}", self.key_info)
        r.add_patch("/keys/{hash}", self.update_key)
        r.add_delete("/keys/{hash}", self.revoke_key)
        r.add_post("/keys/{hash}/rotate", self.rotate_key)
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/_sim/device/{action}", self.control_device)
        r.add_get("/_sim/stats", self.control_stats)
        return app
