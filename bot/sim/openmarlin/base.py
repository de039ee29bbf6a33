"""The OpenMarlin simulator's state and the request plumbing every route uses.

Keys, workspaces, registrations, tasks and top-ups live here, with OpenMarlin's side of the
shared middleware: its request ids, its flat `{"error": code, "message"}` body (and the
structured 402), API-key auth on `/v1/*` except registration, and how its faults break.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.sim.faults import FaultBook, malformed_json, retry_after_text, take_fault
from bot.sim.openmarlin.config import OpenMarlinSimConfig
from bot.sim.openmarlin.faults import OpenMarlinFault
from bot.sim.openmarlin.world import (
    ApiError,
    ApiKey,
    InsufficientBalance,
    Provider,
    Registration,
    Task,
    TopUp,
    Workspace,
    default_providers,
    new_id,
)
from bot.sim.serving import (
    Handler,
    SimHttpError,
    SimServer,
    bearer_token,
    json_object,
    new_request_id,
    open_event_stream,
)

KEY = web.RequestKey("om_api_key", ApiKey)
DROP_STREAM = web.RequestKey("om_drop_stream", bool)


def html_response(text: str, status: int = 200) -> web.Response:
    """One of the simulator's HTML pages (sign-in, checkout)."""
    return web.Response(text=text, status=status, content_type="text/html")


class OpenMarlinSimBase(SimServer):
    """State and the plumbing the OpenMarlin routes share."""

    service_name = "OpenMarlin"

    def __init__(
        self,
        config: OpenMarlinSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        providers: list[Provider] | None = None,
    ) -> None:
        super().__init__(clock)
        self.config = config or OpenMarlinSimConfig()
        self.providers = providers or default_providers()
        self.requests: Counter[str] = Counter()
        # Spent faults stay in the book: DELETE /_sim/faults counts them too.
        self.faults: FaultBook[OpenMarlinFault] = FaultBook(prune_spent=False)
        self.execution_count = 0
        self._keys: dict[str, ApiKey] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._registrations: dict[str, Registration] = {}
        self._by_user_code: dict[str, str] = {}
        self._by_state: dict[str, str] = {}
        self._tasks: dict[str, Task] = {}
        self._topups: dict[str, TopUp] = {}
        for secret, balance in self.config.demo_keys.items():
            self.issue_key(balance, secret=secret, slug="demo")

    # ---- accounts (also used by tests in-process) -------------------------------------------

    def issue_key(self, balance: float, *, secret: str | None = None, slug: str = "") -> str:
        """A new key on a new workspace holding `balance` credits."""
        ws = self._new_workspace(slug or f"ws-{secrets.token_hex(3)}")
        if balance:
            ws.post(self.now(), "adjustment", Decimal(str(balance)), None)
        secret = secret or new_id("claw_wsk_", 16)
        self._keys[secret] = ApiKey(new_id("key_"), secret, ws.workspace_id, "sim", self.now())
        return secret

    def workspace_of(self, secret: str) -> Workspace:
        """The workspace behind a key (KeyError if unknown)."""
        return self._workspaces[self._keys[secret].workspace_id]

    def set_key_status(self, secret: str, status: str) -> None:
        """Make a key `active` or `inactive`."""
        self._keys[secret].status = status

    def _new_workspace(self, slug: str) -> Workspace:
        ws = Workspace(new_id("ws_"), slug, slug.replace("-", " ").title(), updated_at=self.now())
        self._workspaces[ws.workspace_id] = ws
        return ws

    # ---- the shared middleware's hooks -----------------------------------------------------

    def new_request_id(self) -> str:
        """OpenMarlin's `req_` + 16 hex digits."""
        return new_request_id(8)

    def count_request(self, request: web.Request, template: str) -> None:
        """Count the request as "METHOD /template"."""
        self.requests[f"{request.method} {template}"] += 1

    def error_response(self, request: web.Request, exc: SimHttpError) -> web.Response:
        """The structured 402, or OpenMarlin's flat error body."""
        if isinstance(exc, InsufficientBalance):
            return web.json_response(exc.body(), status=402)
        return self._error(exc)

    def http_error_response(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """Unknown routes are not_found; anything else aiohttp refuses is invalid_request."""
        return self._error(
            ApiError(exc.status, "not_found" if exc.status == 404 else "invalid_request")
        )

    def crash_response(self, request: web.Request) -> web.Response:
        """A 500 server_error."""
        return self._error(ApiError(500, "server_error", "the simulator failed"))

    @staticmethod
    def _error(exc: SimHttpError) -> web.Response:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)

    async def dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Latency and faults, then the API key on `/v1/*` (not registration), then the route."""
        fault = await take_fault(self.faults, request, self.config.latency_ms)
        if fault is not None:
            if fault.mode == "malformed_json":
                return malformed_json(b"{nope")
            if fault.mode == "malformed_sse":
                resp = await open_event_stream(request, {"Content-Type": "text/event-stream"})
                await resp.write(b"event: execution.chunk\ndata: {nope\n\n")
                await resp.write_eof()
                return resp
            if fault.mode == "error":
                response = self._error(
                    ApiError(fault.status, fault.error, fault.message or "injected fault")
                )
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = retry_after_text(fault.retry_after)
                return response
            request[DROP_STREAM] = True
        if request.path.startswith("/v1/") and not request.path.startswith("/v1/registration/"):
            request[KEY] = self._authenticate(request)
        return await handler(request)

    # ---- request helpers -------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> ApiKey:
        token = bearer_token(request)
        if not token:
            raise ApiError(401, "missing_api_key", "send Authorization: Bearer claw_wsk_…")
        key = self._keys.get(token)
        if key is None:
            raise ApiError(401, "invalid_api_key", "this API key is not recognised")
        if key.status != "active":
            raise ApiError(403, "api_key_inactive", "this API key was deactivated")
        if key.workspace_id not in self._workspaces:
            raise ApiError(403, "workspace_missing", "the key's workspace no longer exists")
        key.last_used_at = self.now()
        return key

    def _ws(self, request: web.Request) -> Workspace:
        return self._workspaces[request[KEY].workspace_id]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        return await json_object(
            request,
            not_json=ApiError(400, "invalid_request", "the body is not JSON"),
            not_object=ApiError(400, "invalid_request", "the body must be a JSON object"),
        )
