"""The AllToken simulator's state and the request plumbing every route uses.

Keys and balances, tasks, faults and stats live here, with AllToken's side of the shared
middleware: its request ids, the error envelope (request id inside `error`, or at the top for
the `top_level_request_id` fault), auth on `/v1/*`, and how its injected faults break.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bot.backends.alltoken import catalog
from bot.sim.alltoken.config import AllTokenSimConfig
from bot.sim.alltoken.errors import SimApiError, validate
from bot.sim.alltoken.faults import Fault
from bot.sim.alltoken.models import SIM_CHAT_MODELS
from bot.sim.alltoken.sse import ChunkWriter
from bot.sim.alltoken.stats import SimStats
from bot.sim.alltoken.tasks import ImageTask, VideoTask
from bot.sim.faults import FaultBook, cut_connection, malformed_json, take_fault
from bot.sim.serving import (
    NO_REQUEST_ID_HEADER,
    Handler,
    SimHttpError,
    SimServer,
    bearer_token,
    json_object,
    new_request_id,
    open_event_stream,
    request_id,
)

API_KEY = web.RequestKey("api_key", str)
_BaseModelT = TypeVar("_BaseModelT", bound=BaseModel)
_TaskT = TypeVar("_TaskT", ImageTask, VideoTask)


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A random id such as `igen_1f2e…`."""
    return f"{prefix}{secrets.token_hex(nbytes)}"


def enum_value(value: Any, default: str) -> str:
    """A request field's plain value (the SDK's enum member or raw string), or `default`."""
    # The generated models leave some defaults as raw strings rather than enum members.
    if isinstance(value, Enum):
        return str(value.value)
    return str(value) if value is not None else default


def xml_denied(status: int, code: str, message: str) -> web.Response:
    """Object storage's refusal, worded like S3/R2 do, not with the gateway's JSON envelope."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class AllTokenSimBase(SimServer):
    """State (keys, tasks, faults, stats) and the plumbing the AllToken routes share."""

    service_name = "AllToken"

    def __init__(
        self,
        config: AllTokenSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock)
        self.config = config or AllTokenSimConfig()
        self.stats = SimStats()
        self.faults: FaultBook[Fault] = FaultBook()
        self._fault_ids = itertools.count(1)
        self._balances: dict[str, Decimal] = {
            k: Decimal(str(v)) for k, v in self.config.demo_keys.items()
        }
        self._images: dict[str, ImageTask] = {}
        self._r2_objects: dict[str, tuple[ImageTask, int]] = {}
        self._png_cache: dict[str, bytes] = {}
        self._videos: dict[str, VideoTask] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}

    # ---- keys and money --------------------------------------------------------------------

    def issue_key(self, balance: float) -> str:
        """A new sk-at-… key holding `balance` USD."""
        key = new_id("sk-at-", 16)
        self._balances[key] = Decimal(str(balance))
        return key

    def balance(self, key: str) -> float:
        """The key's remaining USD balance (KeyError for unknown keys)."""
        return float(self._balances[key])

    def set_balance(self, key: str, balance: float) -> None:
        """Overwrite a key's balance (creating the key if needed)."""
        self._balances[key] = Decimal(str(balance))

    def _require_balance(self, key: str, estimate: Decimal) -> None:
        balance = self._balances[key]
        if balance <= 0 or balance < estimate:
            raise SimApiError(
                402,
                "insufficient_balance",
                f"Insufficient balance: ${balance:.4f} left, this request needs about "
                f"${estimate:.4f}. Top up in Settings -> Billing.",
            )

    def _charge(self, key: str, amount: Decimal) -> None:
        if key in self._balances:
            self._balances[key] -= amount

    def _refund(self, key: str, amount: Decimal) -> None:
        if key in self._balances:
            self._balances[key] += amount

    # ---- faults ----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault in-process; returns the stored copy (with its id)."""
        stored = fault.model_copy(update={"id": next(self._fault_ids), "hits": 0})
        return self.faults.append(stored)

    def clear_faults(self) -> int:
        """Remove every fault."""
        return self.faults.clear()

    # ---- request helpers -------------------------------------------------------------------

    @property
    def chat_models(self) -> tuple[str, ...]:
        """Chat model ids the simulator serves (catalog.CHAT_MODELS plus search-only extras)."""
        return SIM_CHAT_MODELS

    def _authenticate(self, request: web.Request) -> str:
        token = bearer_token(request)
        if not token:
            raise SimApiError(
                401, "invalid_api_key", "Missing API key: send Authorization: Bearer sk-at-…"
            )
        if token not in self._balances:
            raise SimApiError(401, "invalid_api_key", "Invalid API key provided.")
        return token

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        return await json_object(
            request,
            not_json=SimApiError(400, "invalid_request", "Request body is not valid JSON."),
            not_object=SimApiError(400, "invalid_request", "Request body must be a JSON object."),
        )

    @staticmethod
    def _validate(model: type[_BaseModelT], body: dict[str, Any]) -> _BaseModelT:
        return validate(model, body)

    def _own(self, tasks: Mapping[str, _TaskT], request: web.Request) -> _TaskT:
        task = tasks.get(request.match_info["id"])
        # Another key's task is indistinguishable from a missing one.
        if task is None or task.api_key != request[API_KEY]:
            raise SimApiError(404, "task_not_found", "No such task for this API key.")
        return task

    # ---- the shared middleware's hooks -----------------------------------------------------

    def new_request_id(self) -> str:
        """AllToken's `req_` + 24 hex digits."""
        return new_request_id(12)

    def count_request(self, request: web.Request, template: str) -> None:
        """Count the request per (method, route template)."""
        self.stats.count(request.method, template)

    def error_response(self, request: web.Request, exc: SimHttpError) -> web.Response:
        """AllToken's envelope for an error a handler raised."""
        if not isinstance(exc, SimApiError):
            exc = SimApiError(exc.status, exc.code, exc.message)
        return self._error_response(request, exc)

    def http_error_response(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """Unknown routes and methods, in AllToken's envelope."""
        code = "not_found" if exc.status == 404 else f"http_{exc.status}"
        if exc.status == 405:
            code = "method_not_allowed"
        return self._error_response(
            request, SimApiError(exc.status, code, exc.reason or "Not found")
        )

    def crash_response(self, request: web.Request) -> web.Response:
        """A 500 internal_error in AllToken's envelope."""
        return self._error_response(
            request, SimApiError(500, "internal_error", "The simulator failed unexpectedly.")
        )

    def _error_response(
        self, request: web.Request, exc: SimApiError, *, top_level_request_id: bool = False
    ) -> web.Response:
        rid = request_id(request)
        self.stats.errors[(exc.status, exc.code)] += 1
        error: dict[str, Any] = {
            "code": exc.code,
            "type": exc.error_type,
            "message": exc.message,
            "param": exc.param,
        }
        if top_level_request_id:
            body: dict[str, Any] = {"error": error, "request_id": rid}
            # The id is in the body, and this variant of the gateway sends no header.
            request[NO_REQUEST_ID_HEADER] = True
        else:
            error["request_id"] = rid
            error.update(exc.extra)
            body = {"error": error}
        return web.json_response(body, status=exc.status, headers=exc.headers)

    async def dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Latency and faults, then the API key on `/v1/*`, then the route."""
        fault = await take_fault(self.faults, request, self.config.latency_ms)
        if fault is not None and not fault.delay_only:
            self.stats.faults_triggered += 1
            return await self._fault_response(request, fault)
        if request.path.startswith("/v1/"):
            request[API_KEY] = self._authenticate(request)
        return await handler(request)

    # ---- how AllToken breaks ---------------------------------------------------------------

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.mode == "malformed_json":
            return malformed_json(b"{not json", fault.status or 200)
        if fault.mode == "malformed_sse":
            resp = await open_event_stream(request)
            await resp.write(b"data: {oops\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        if fault.mode == "reset_mid_stream":
            return await self._reset_mid_stream(request)
        exc = SimApiError(
            fault.effective_status(),
            fault.effective_code(),
            fault.message or f"Injected fault ({fault.effective_code()}).",
        )
        retry_after = fault.retry_after_header()
        if retry_after is not None:
            exc.headers["Retry-After"] = retry_after
        return self._error_response(
            request, exc, top_level_request_id=fault.mode == "top_level_request_id"
        )

    async def _reset_mid_stream(self, request: web.Request) -> web.StreamResponse:
        model = catalog.DEFAULT_CHAT_MODEL
        try:
            body = json.loads(await request.read() or b"{}")
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                model = body["model"]
        except ValueError:
            pass
        resp = await open_event_stream(request)
        chunk = ChunkWriter(new_id("chatcmpl-"), model, int(self.now()), request_id(request))
        for piece in ("This ", "answer ", "will ", "be ", "cut "):
            await resp.write(chunk.content(piece))
        cut_connection(request)
        return resp
