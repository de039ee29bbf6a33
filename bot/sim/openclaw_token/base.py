"""The OpenClaw Token simulator's state and the request plumbing every route uses.

Accounts, device sessions, access tokens and purchase idempotency live here, with the test
controls, and OpenClaw Token's side of the shared middleware: its `{"error": {"code",
"message"}}` envelope (counted per status and code), and how its injected faults break.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.sim.faults import (
    FaultBook,
    cut_connection,
    malformed_json,
    retry_after_text,
    take_fault,
)
from bot.sim.openclaw_token.config import OpenClawSimConfig
from bot.sim.openclaw_token.device import DeviceFlow, DeviceSession
from bot.sim.openclaw_token.faults import OpenClawFault
from bot.sim.openclaw_token.state import DEMO_EMAIL, Account, ProvKey, SimError, demo_account
from bot.sim.serving import (
    NO_REQUEST_ID_HEADER,
    Handler,
    SimHttpError,
    SimServer,
    bearer_token,
    json_object,
    open_event_stream,
)
from bot.sim.serving import request_id as request_id_of


def data_response(payload: Any, status: int = 200) -> web.Response:
    """OpenClaw Token's success body: `{"data": …}`."""
    return web.json_response({"data": payload}, status=status)


def require_str(body: dict[str, Any], name: str) -> str:
    """A required non-empty string field, stripped (400 INVALID_INPUT otherwise)."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SimError(400, "INVALID_INPUT", f"{name} is required")
    return value.strip()


class OpenClawSimBase(SimServer):
    """Accounts, keys, device sessions, faults and stats, and the plumbing routes share."""

    service_name = "OpenClaw Token"

    def __init__(
        self, config: OpenClawSimConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        super().__init__(clock)
        self.config = config or OpenClawSimConfig()
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
        self.faults: FaultBook[OpenClawFault] = FaultBook(match="exact")
        if self.config.seed_demo:
            demo = demo_account(self.now())
            self.accounts[demo.email] = demo

    @staticmethod
    def request_id(request: web.Request) -> str:
        """This request's id (also in the x-request-id header)."""
        return request_id_of(request)

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
    ) -> OpenClawFault:
        """Answer the next `times` requests to method+path with an error (after `latency_ms`).

        `mode` other than "error" sends a broken answer instead: unreadable JSON, an unreadable
        event stream, or an event stream whose connection drops mid-answer; "upstream" sends
        an upstream provider's OpenAI-style error as the real proxy passes it through. Returns
        the armed fault (its `hits` count the requests it answered).
        """
        fault = OpenClawFault(
            method.upper(), path, status, code, times, retry_after, latency_ms, mode
        )
        return self.faults.append(fault)

    def upstream_refuses(
        self, status: int = 402, code: str = "insufficient_balance", times: int = 1
    ) -> OpenClawFault:
        """The operator's upstream provider refuses the next proxy requests (e.g. its balance
        is empty): the real proxy forwards that provider's own error body and status as is.
        """
        return self.fail_next("POST", "/v1/chat/completions", status, code, times, mode="upstream")

    # ---- the real server's shape ---------------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        """GET / -> {"status": "ok"} (the server's liveness answer, unwrapped)."""
        return web.json_response({"status": "ok"})

    async def proxy_guard(self, request: web.Request) -> web.Response:
        """Any other /v1 path on a self-hosted server: the proxy's key check, then 404."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise SimError(401, "UNAUTHORIZED", "Missing or invalid authorization header")
        if self.find_provisioned(header[7:]) is None:
            raise SimError(401, "UNAUTHORIZED", "Invalid or revoked key")
        return web.Response(status=404, text="404 Not Found")

    # ---- the shared middleware's hooks ---------------------------------------------------------

    def error_response(self, request: web.Request, exc: SimHttpError) -> web.Response:
        """`{"error": {"code", "message"}}`, counted as "error <status> <code>"."""
        self.stats[f"error {exc.status} {exc.code}"] += 1
        return web.json_response(
            {"error": {"code": exc.code, "message": exc.message}}, status=exc.status
        )

    def http_error_response(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """aiohttp's refusals (too large, unknown route, wrong method) in the envelope."""
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            return web.json_response(
                {"error": {"code": "PAYLOAD_TOO_LARGE", "message": "The body exceeds 1 MB."}},
                status=413,
            )
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "INVALID_INPUT")
        return web.json_response(
            {"error": {"code": code, "message": exc.reason}}, status=exc.status
        )

    def crash_response(self, request: web.Request) -> web.Response:
        """A 500 INTERNAL_ERROR."""
        return web.json_response(
            {"error": {"code": "INTERNAL_ERROR", "message": "The simulator failed."}},
            status=500,
        )

    def count_request(self, request: web.Request, template: str) -> None:
        """Count the request as "METHOD /template"."""
        self.stats[f"{request.method} {template}"] += 1

    async def dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """An injected fault answers instead of the route (auth is each route's own)."""
        fault = await take_fault(self.faults, request)
        if fault is None:
            return await handler(request)
        if fault.mode == "upstream":
            return web.json_response(
                {
                    "error": {
                        "code": fault.code,
                        "message": "Upstream provider refused the request (simulator).",
                        "type": "invalid_request_error",
                    }
                },
                status=fault.status,
            )
        if fault.mode != "error":
            return await self._fault_response(request, fault)
        response = self.error_response(
            request, SimError(fault.status, fault.code, "Injected failure (simulator).")
        )
        if fault.retry_after is not None:
            response.headers["Retry-After"] = retry_after_text(fault.retry_after)
        return response

    async def _fault_response(
        self, request: web.Request, fault: OpenClawFault
    ) -> web.StreamResponse:
        """The broken answer of a non-"error" fault."""
        if fault.mode == "malformed_json":
            # Unlike its errors, its garbled JSON answer carries no x-request-id.
            request[NO_REQUEST_ID_HEADER] = True
            return malformed_json(b"{not json")
        resp = await open_event_stream(
            request, {"Content-Type": "text/event-stream; charset=utf-8"}
        )
        if fault.mode == "malformed_sse":
            await resp.write(b"data: {oops\n\ndata: [DONE]\n\n")
            await resp.write_eof()
            return resp
        chunk = {"choices": [{"index": 0, "delta": {"content": "This answer "}}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        cut_connection(request)  # dropped mid-answer: an incomplete chunked body
        return resp

    # ---- request helpers -----------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        return await json_object(
            request,
            not_json=SimError(400, "INVALID_INPUT", "The body is not valid JSON."),
            not_object=SimError(400, "INVALID_INPUT", "The body must be a JSON object."),
            empty={},
        )

    def _signed_in(self, request: web.Request) -> Account:
        account = self.find_management(bearer_token(request))
        if account is None:
            raise SimError(401, "UNAUTHORIZED", "Missing or invalid management key.")
        return account

    @staticmethod
    def _own_key(account: Account, request: web.Request) -> ProvKey:
        key = account.keys.get(request.match_info["hash"])
        if key is None:
            raise SimError(404, "KEY_NOT_FOUND", "No key with this hash.")
        return key
