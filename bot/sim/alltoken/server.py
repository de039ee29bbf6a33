"""A local AllToken gateway (aiohttp.web) faithful to the contract in reference/backends.md.

Serves chat (JSON and SSE with the after-[DONE] cost line), web-search semantics per family,
async images (one-shot b64, then R2 URLs), async videos with presigned URLs, model lists, the
public price catalog, per-key balances, and injectable faults. `/_sim/*` is a control API for
tests in other processes; `/_r2/*` and `/_media/*` stand in for object storage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from alltoken.generated.chat import (
    ChatCompletionRequest,
    ImageGenerationRequest,
    VideoGenerationRequest,
)
from pydantic import BaseModel, Field, ValidationError

from bot.backends.alltoken import catalog
from bot.sim.alltoken.answers import (
    FAIL_MARKER,
    SearchMode,
    compose_answer,
    count_tokens,
    prompt_tokens,
    split_tokens,
)
from bot.sim.alltoken.faults import Fault, FaultBook, error_type_for
from bot.sim.alltoken.models import (
    SIM_CHAT_MODELS,
    all_models,
    catalog_entry,
    chat_price_per_m,
    image_model_info,
    image_price,
    video_model_info,
    video_price,
)
from bot.sim.alltoken.sse import ChatPricing, ChunkWriter
from bot.sim.alltoken.tasks import (
    TERMINAL_VIDEO_STATUSES,
    ImageTask,
    UrlSigner,
    VideoTask,
    iso,
)
from bot.sim.demo_video import demo_mp4
from bot.sim.listener import Listener
from bot.sim.picture import fit, image_dimensions, prompt_picture

__all__ = ["AllTokenSim", "AllTokenSimConfig", "Fault", "SimApiError", "SimStats", "create_app"]

log = logging.getLogger(__name__)

DEMO_KEY = "sk-at-demo-0000000000000000000000"
IDEMPOTENCY_WINDOW_S = 60.0
_MILLION = Decimal(1_000_000)
_BaseModelT = TypeVar("_BaseModelT", bound=BaseModel)
_TaskT = TypeVar("_TaskT", ImageTask, VideoTask)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)
API_KEY = web.RequestKey("api_key", str)
OMIT_REQUEST_ID_HEADER = web.RequestKey("omit_request_id_header", bool)


class AllTokenSimConfig(BaseModel):
    """Knobs of the simulator; mutable at runtime (in-process or via PATCH /_sim/config)."""

    image_seconds: float = Field(2.0, ge=0)
    video_seconds: float = Field(5.0, ge=0)
    tokens_per_second: float = Field(40.0, ge=0)  # 0 = as fast as possible
    latency_ms: float = Field(0.0, ge=0)  # before every response's first byte
    demo_keys: dict[str, float] = Field(default_factory=lambda: {DEMO_KEY: 25.0})
    # Newer spec: later image GETs return r2_url only; False -> 410 image_already_retrieved.
    r2_copy: bool = True
    r2_ttl_s: float = Field(3600.0, ge=0)
    video_url_ttl_s: float = Field(3600.0, ge=0)
    # Longest side of a simulated image: the requested size is scaled down to fit (tests
    # use a small value so pictures are cheap to draw).
    image_pixels: int = Field(1536, ge=16, le=2048)
    poll_after_ms: int = Field(500, ge=0)
    signing_secret: str = "sim-secret"


@dataclass
class SimStats:
    """Counters tests read directly (in-process) or via GET /_sim/stats."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, template)
    errors: Counter[tuple[int, str]] = field(default_factory=Counter)  # (status, code)
    b64_deliveries: Counter[str] = field(default_factory=Counter)  # image task id -> b64 reads
    image_reads: Counter[str] = field(default_factory=Counter)  # image task id -> every GET
    r2_downloads: Counter[str] = field(default_factory=Counter)  # storage object id
    video_downloads: Counter[str] = field(default_factory=Counter)  # video task id
    image_submissions: int = 0
    video_submissions: int = 0
    video_cancellations: int = 0
    chat_completions: int = 0
    chat_streams: int = 0
    active_streams: int = 0
    max_active_streams: int = 0
    faults_triggered: int = 0

    def requests_to(self, method: str, template: str) -> int:
        """Requests seen for one route, e.g. ("GET", "/v1/images/generations/{id}")."""
        return self.requests[(method.upper(), template)]

    def reset(self) -> None:
        """Zero every counter (active_streams keeps counting live streams)."""
        active = self.active_streams
        fresh = SimStats()
        self.__dict__.update(fresh.__dict__)
        self.active_streams = active

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view: tuple keys become "METHOD /template" and "status code"."""
        return {
            "requests": {f"{m} {p}": n for (m, p), n in sorted(self.requests.items())},
            "errors": {f"{s} {c}": n for (s, c), n in sorted(self.errors.items())},
            "b64_deliveries": dict(self.b64_deliveries),
            "image_reads": dict(self.image_reads),
            "r2_downloads": dict(self.r2_downloads),
            "video_downloads": dict(self.video_downloads),
            "image_submissions": self.image_submissions,
            "video_submissions": self.video_submissions,
            "video_cancellations": self.video_cancellations,
            "chat_completions": self.chat_completions,
            "chat_streams": self.chat_streams,
            "active_streams": self.active_streams,
            "max_active_streams": self.max_active_streams,
            "faults_triggered": self.faults_triggered,
        }


class SimApiError(Exception):
    """Raised by handlers; the middleware renders it as AllToken's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type or error_type_for(status)
        self.headers = headers or {}
        self.extra = extra or {}


def _new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"


def _enum_value(value: Any, default: str) -> str:
    # The generated models leave some defaults as raw strings rather than enum members.
    if isinstance(value, Enum):
        return str(value.value)
    return str(value) if value is not None else default


def _param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    """Turn a pydantic error location into a field path like "messages[0].role"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # Union branches show up as type names ("str", "list[ContentPart]", "Thinking").
        if not part.isidentifier() or part[:1].isupper() or part in ("str", "int", "bool"):
            break
        path = f"{path}.{part}" if path else part
    return path or None


def _size_ok(size: str) -> bool:
    # gpt-image-2 accepts any WxH divisible by 16, at most 3840x2160, aspect 1:3 to 3:1.
    if size == "auto" or size in catalog.IMAGE_SIZES:
        return True
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return False
    w, h = int(parts[0]), int(parts[1])
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        return False
    return max(w, h) <= 3840 and min(w, h) <= 2160 and 1 / 3 <= w / h <= 3


def _xml_denied(status: int, code: str, message: str) -> web.Response:
    # Object storage answers like S3/R2 do, not with the gateway's JSON envelope.
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class AllTokenSim:
    """The simulator: state (keys, tasks, faults, stats) plus the aiohttp app serving it."""

    def __init__(
        self,
        config: AllTokenSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or AllTokenSimConfig()
        self.stats = SimStats()
        self.faults = FaultBook()
        self.base_url = ""
        self._clock = clock or time.time
        self._balances: dict[str, Decimal] = {
            k: Decimal(str(v)) for k, v in self.config.demo_keys.items()
        }
        self._images: dict[str, ImageTask] = {}
        self._r2_objects: dict[str, tuple[ImageTask, int]] = {}
        self._png_cache: dict[str, bytes] = {}
        self._videos: dict[str, VideoTask] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self.app = create_app(self)
        self._listener = Listener(self.app)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL without trailing slash."""
        self.base_url = await self._listener.start(host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        await self._listener.stop()

    def now(self) -> float:
        """The simulator's clock (unix seconds); injectable for tests."""
        return self._clock()

    # ---- keys and money --------------------------------------------------------------------

    def issue_key(self, balance: float) -> str:
        """A new sk-at-… key holding `balance` USD."""
        key = _new_id("sk-at-", 16)
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
        return self.faults.add(fault)

    def clear_faults(self) -> int:
        """Remove every fault."""
        return self.faults.clear()

    # ---- shared helpers --------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SimApiError(
                401, "invalid_api_key", "Missing API key: send Authorization: Bearer sk-at-…"
            )
        if token not in self._balances:
            raise SimApiError(401, "invalid_api_key", "Invalid API key provided.")
        return token

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            raise SimApiError(400, "invalid_request", "Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise SimApiError(400, "invalid_request", "Request body must be a JSON object.")
        return body

    @staticmethod
    def _validate(model: type[_BaseModelT], body: dict[str, Any]) -> _BaseModelT:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = _param_from_loc(tuple(first["loc"]))
            raise SimApiError(
                400, "invalid_request", f"{param or 'body'}: {first['msg']}", param=param
            ) from None

    def _error_response(
        self, request: web.Request, exc: SimApiError, *, top_level_request_id: bool = False
    ) -> web.Response:
        rid = request[REQUEST_ID]
        self.stats.errors[(exc.status, exc.code)] += 1
        error: dict[str, Any] = {
            "code": exc.code,
            "type": exc.error_type,
            "message": exc.message,
            "param": exc.param,
        }
        if top_level_request_id:
            body: dict[str, Any] = {"error": error, "request_id": rid}
            request[OMIT_REQUEST_ID_HEADER] = True
        else:
            error["request_id"] = rid
            error.update(exc.extra)
            body = {"error": error}
        return web.json_response(body, status=exc.status, headers=exc.headers)

    # ---- middleware ------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Request id, stats, latency, faults, auth and error envelopes for every request."""
        request[REQUEST_ID] = _new_id("req_")
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        self.stats.requests[(request.method, template)] += 1
        try:
            response = await self._dispatch(request, handler)
        except SimApiError as exc:
            response = self._error_response(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = "not_found" if exc.status == 404 else f"http_{exc.status}"
            if exc.status == 405:
                code = "method_not_allowed"
            response = self._error_response(
                request, SimApiError(exc.status, code, exc.reason or "Not found")
            )
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            # The client left mid-response; aiohttp's own write of this placeholder fails the
            # same way and is treated as a client reset, so nothing is logged as a crash.
            return web.Response(status=499)
        except Exception:
            log.exception("AllToken simulator handler failed")
            response = self._error_response(
                request, SimApiError(500, "internal_error", "The simulator failed unexpectedly.")
            )
        if not response.prepared and not request.get(OMIT_REQUEST_ID_HEADER, False):
            response.headers.setdefault("x-request-id", request[REQUEST_ID])
        return response

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        fault = self.faults.take(request.method, request.path)
        delay_ms = self.config.latency_ms
        if fault is not None and fault.latency_ms:
            delay_ms += fault.latency_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if fault is not None and not fault.delay_only:
            self.stats.faults_triggered += 1
            return await self._fault_response(request, fault)
        if request.path.startswith("/v1/"):
            request[API_KEY] = self._authenticate(request)
        return await handler(request)

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.mode == "malformed_json":
            return web.Response(
                status=fault.status or 200, body=b"{not json", content_type="application/json"
            )
        if fault.mode == "malformed_sse":
            resp = await self._open_sse(request)
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
        resp = await self._open_sse(request)
        chunk = ChunkWriter(_new_id("chatcmpl-"), model, int(self.now()), request[REQUEST_ID])
        for piece in ("This ", "answer ", "will ", "be ", "cut "):
            await resp.write(chunk.content(piece))
        # Closing the socket without the final chunked-encoding terminator is what a
        # dropped upstream looks like to the client: an incomplete body.
        if request.transport is not None:
            request.transport.close()
        # aiohttp's write_eof now fails with a ConnectionError, which it treats as a client reset.
        return resp

    async def _open_sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": request[REQUEST_ID],
            },
        )
        await resp.prepare(request)
        return resp

    # ---- chat ------------------------------------------------------------------------------

    @property
    def chat_models(self) -> tuple[str, ...]:
        """Chat model ids the simulator serves (catalog.CHAT_MODELS plus search-only extras)."""
        return SIM_CHAT_MODELS

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions: JSON or SSE, with AllToken's search rules and cost line."""
        key = request[API_KEY]
        body = await self._json_body(request)
        req = self._validate(ChatCompletionRequest, body)
        model = req.model
        if model not in self.chat_models:
            raise SimApiError(
                404, "model_not_found", f"The model `{model}` does not exist.", param="model"
            )
        if not req.messages:
            raise SimApiError(
                400, "invalid_request", "messages must not be empty", param="messages"
            )
        search: SearchMode = "off"
        if req.enable_search:
            family = catalog.family_of(model)
            if family == "gpt":
                raise SimApiError(
                    503,
                    "all_providers_failed",
                    f"All providers failed for {model}: web search is not supported.",
                )
            search = "honoured" if catalog.supports_search(model) else "ignored"
        messages: list[dict[str, Any]] = body["messages"]
        p_tokens = prompt_tokens(messages)
        in_per_m, out_per_m = chat_price_per_m(model)
        self._require_balance(key, Decimal(p_tokens) * in_per_m / _MILLION)
        answer = compose_answer(
            messages, model, search, today=datetime.fromtimestamp(self.now(), UTC)
        )
        pieces = split_tokens(answer)
        finish = "stop"
        if req.max_tokens is not None and len(pieces) > req.max_tokens:
            pieces, finish = pieces[: req.max_tokens], "length"
        self.stats.chat_completions += 1
        pricing = ChatPricing(in_per_m, out_per_m, p_tokens)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await self._stream_chat(
                request, key, model, pieces, finish, include_usage, pricing
            )
        text = "".join(pieces)
        c_tokens = count_tokens(text)
        self._charge(key, pricing.cost(c_tokens))
        return web.json_response(
            {
                "id": _new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(self.now()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": pricing.usage(c_tokens),
                "x-gateway-request-id": request[REQUEST_ID],
            }
        )

    async def _stream_chat(
        self,
        request: web.Request,
        key: str,
        model: str,
        pieces: list[str],
        finish: str,
        include_usage: bool,
        pricing: ChatPricing,
    ) -> web.StreamResponse:
        resp = await self._open_sse(request)
        chunk = ChunkWriter(
            _new_id("chatcmpl-"), model, int(self.now()), request[REQUEST_ID], include_usage
        )
        self.stats.chat_streams += 1
        self.stats.active_streams += 1
        self.stats.max_active_streams = max(
            self.stats.max_active_streams, self.stats.active_streams
        )
        sent = 0
        loop = asyncio.get_running_loop()
        try:
            await resp.write(chunk.role())
            tps = self.config.tokens_per_second
            started = loop.time()
            for i, piece in enumerate(pieces):
                if tps > 0:
                    # Schedule against the start time so pacing does not drift with load.
                    delay = started + i / tps - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await resp.write(chunk.content(piece))
                sent += 1
            c_tokens = len(pieces)
            await resp.write(chunk.finish(finish))
            if include_usage:
                await resp.write(chunk.usage(pricing.usage(c_tokens)))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write(b": " + pricing.cost_line(c_tokens).encode() + b"\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away; charge what was sent
        finally:
            self.stats.active_streams -= 1
            self._charge(key, pricing.cost(sent))
        return resp

    # ---- models and catalog ----------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        """GET /v1/models: text, vision, image and video models together (spec R1)."""
        return web.json_response({"object": "list", "data": all_models()})

    async def list_image_models(self, request: web.Request) -> web.Response:
        """GET /v1/images/models."""
        data = [image_model_info(m) for m in catalog.IMAGE_MODELS]
        return web.json_response({"object": "list", "data": data})

    async def list_video_models(self, request: web.Request) -> web.Response:
        """GET /v1/videos/models (with capabilities)."""
        data = [video_model_info(m, with_capabilities=True) for m in catalog.VIDEO_MODELS]
        return web.json_response({"object": "list", "data": data})

    async def catalog_list(self, request: web.Request) -> web.Response:
        """GET /api-account/models: the public catalog, no auth."""
        ids = [*SIM_CHAT_MODELS, *catalog.IMAGE_MODELS, *catalog.VIDEO_MODELS]
        return web.json_response({"data": [catalog_entry(m) for m in ids]})

    async def catalog_model(self, request: web.Request) -> web.Response:
        """GET /api-account/models/{id}: one model with prices (field names vary by model)."""
        model_id = request.match_info["id"]
        entry = catalog_entry(model_id)
        if entry is None:
            raise SimApiError(404, "model_not_found", f"The model `{model_id}` does not exist.")
        return web.json_response({"data": entry})

    async def account_user(self, request: web.Request) -> web.Response:
        """/api-account/user/*: needs a web session, so API keys are always refused."""
        raise SimApiError(
            401,
            "invalid_token",
            "This endpoint needs a signed-in web session; API keys work on /v1/* only.",
        )

    # ---- images ----------------------------------------------------------------------------

    async def submit_image(self, request: web.Request) -> web.Response:
        """POST /v1/images/generations/async (and the legacy /v1/images/generations)."""
        key = request[API_KEY]
        now = self.now()
        idem = request.headers.get("Idempotency-Key")
        if idem:
            prior = self._idempotency.get((key, idem))
            if prior is not None and now - prior[1] < IDEMPOTENCY_WINDOW_S:
                raise SimApiError(
                    409,
                    "duplicate_request",
                    "A request with this Idempotency-Key was already accepted.",
                    extra={"task_id": prior[0]},
                )
        body = await self._json_body(request)
        model = body.get("model")
        if isinstance(model, str) and model not in catalog.IMAGE_MODELS:
            raise SimApiError(
                404, "model_not_found", f"The image model `{model}` does not exist.", param="model"
            )
        req = self._validate(ImageGenerationRequest, body)
        if not req.prompt.strip():
            raise SimApiError(400, "invalid_request", "prompt must not be empty", param="prompt")
        size = req.size or "auto"
        if not _size_ok(size):
            raise SimApiError(
                400,
                "invalid_request",
                f"size must be auto or WIDTHxHEIGHT (e.g. {', '.join(catalog.IMAGE_SIZES[:3])})",
                param="size",
            )
        model = _enum_value(req.model, catalog.DEFAULT_IMAGE_MODEL)
        quality = _enum_value(req.quality, "auto")
        n = req.n or 1
        cost = image_price(model, quality, n)
        self._require_balance(key, cost)
        self._charge(key, cost)
        ready_at = now + self.config.image_seconds
        task = ImageTask(
            id=_new_id("igen_"),
            api_key=key,
            model=model,
            prompt=req.prompt,
            n=n,
            size=size,
            quality=quality,
            created_at=now,
            ready_at=ready_at,
            r2_copy=self.config.r2_copy,
            r2_expires_at=math.ceil(ready_at + self.config.r2_ttl_s),
            cost=cost,
            fail=FAIL_MARKER in req.prompt,
        )
        self._images[task.id] = task
        for index, object_id in enumerate(task.object_ids()):
            self._r2_objects[object_id] = (task, index)
        if idem:
            self._remember_idempotency(key, idem, task.id, now)
        self.stats.image_submissions += 1
        return web.json_response(
            {"id": task.id, "status": "queued", "model": model, "created_at": iso(now)},
            status=202,
        )

    def _remember_idempotency(self, key: str, idem: str, task_id: str, now: float) -> None:
        if len(self._idempotency) > 10_000:
            # Forget keys past the dedupe window so a long-running sim does not grow forever.
            self._idempotency = {
                k: v for k, v in self._idempotency.items() if now - v[1] < IDEMPOTENCY_WINDOW_S
            }
        self._idempotency[(key, idem)] = (task_id, now)

    def _own(self, tasks: Mapping[str, _TaskT], request: web.Request) -> _TaskT:
        task = tasks.get(request.match_info["id"])
        # Another key's task is indistinguishable from a missing one.
        if task is None or task.api_key != request[API_KEY]:
            raise SimApiError(404, "task_not_found", "No such task for this API key.")
        return task

    async def _png(self, task: ImageTask, index: int) -> bytes:
        object_id = task.object_ids()[index]
        cached = self._png_cache.get(object_id)
        if cached is None:
            width, height = image_dimensions(task.size, self.config.image_pixels)
            # A full-size picture takes ~0.1 s to draw: off the loop, so streams keep flowing.
            cached = await asyncio.to_thread(
                prompt_picture, task.prompt, width, height, variant=str(index)
            )
            self._png_cache[object_id] = cached
        return cached

    def _r2_fields(self, task: ImageTask, index: int, now: float) -> dict[str, Any]:
        if not task.r2_copy or now >= task.r2_expires_at:
            return {}
        object_id = task.object_ids()[index]
        return {
            "r2_url": UrlSigner(self.config.signing_secret).url(
                self.base_url, "/_r2/images", object_id, "png", task.r2_expires_at
            ),
            "r2_url_expires_at": iso(task.r2_expires_at),
        }

    async def get_image(self, request: web.Request) -> web.Response:
        """GET /v1/images/generations/{id}: pending, then one b64 read, then R2 URL or 410."""
        task = self._own(self._images, request)
        now = self.now()
        self.stats.image_reads[task.id] += 1
        status = task.status(now)
        if status in ("queued", "processing"):
            poll_ms = self.config.poll_after_ms
            return web.json_response(
                task.pending_body(status, poll_ms),
                headers={"Retry-After": str(max(1, math.ceil(poll_ms / 1000)))},
            )
        if status == "failed":
            if not task.refunded:
                task.refunded = True
                self._refund(task.api_key, task.cost)
            return web.json_response(task.failed_body())
        if not task.b64_delivered:
            if now >= task.claim_deadline:
                raise SimApiError(410, "image_expired", "The image result has expired.")
            task.b64_delivered = True
            self.stats.b64_deliveries[task.id] += 1
            pngs = [await self._png(task, i) for i in range(task.n)]
            items = [
                {
                    "b64_json": base64.b64encode(pngs[i]).decode("ascii"),
                    **self._r2_fields(task, i, now),
                    "mime_type": "image/png",
                    "revised_prompt": task.revised_prompt(),
                }
                for i in range(task.n)
            ]
            return web.json_response(task.completed_body(items))
        if not task.r2_copy:
            raise SimApiError(
                410,
                "image_already_retrieved",
                "The image was already delivered; results can be read only once.",
            )
        if now >= task.r2_expires_at:
            raise SimApiError(410, "image_expired", "The stored image copy has expired.")
        items = [
            {
                **self._r2_fields(task, i, now),
                "mime_type": "image/png",
                "revised_prompt": task.revised_prompt(),
            }
            for i in range(task.n)
        ]
        return web.json_response(task.completed_body(items))

    async def r2_object(self, request: web.Request) -> web.Response:
        """GET /_r2/images/{name}.png?expires=&sig=: the stored PNG, if the URL is genuine."""
        object_id = request.match_info["name"]
        signer = UrlSigner(self.config.signing_secret)
        q = request.query
        if not signer.verify(object_id, q.get("expires"), q.get("sig"), self.now()):
            return _xml_denied(403, "AccessDenied", "Request has expired or signature mismatch")
        found = self._r2_objects.get(object_id)
        if found is None or not found[0].r2_copy:
            return _xml_denied(404, "NoSuchKey", "The specified key does not exist.")
        task, index = found
        self.stats.r2_downloads[object_id] += 1
        return web.Response(body=await self._png(task, index), content_type="image/png")

    # ---- videos ----------------------------------------------------------------------------

    async def submit_video(self, request: web.Request) -> web.Response:
        """POST /v1/videos/generations."""
        key = request[API_KEY]
        now = self.now()
        body = await self._json_body(request)
        model = body.get("model")
        if isinstance(model, str) and model not in catalog.VIDEO_MODELS:
            raise SimApiError(
                404,
                "upstream_model_not_found",
                f"The video model `{model}` does not exist.",
                param="model",
            )
        req = self._validate(VideoGenerationRequest, body)
        if not req.prompt.strip() and not req.content:
            raise SimApiError(400, "invalid_request", "prompt must not be empty", param="prompt")
        rng = catalog.duration_range(req.model)
        # 0 or absent means the upstream default (5 s), kept inside the model's range.
        requested = req.duration or min(max(catalog.DEFAULT_VIDEO_DURATION, rng.min), rng.max)
        if not rng.allows(requested):
            raise SimApiError(
                400,
                "invalid_request",
                f"duration must be {rng.describe()} for {req.model}",
                param="duration",
            )
        # -1 lets the model choose; the simulator picks deterministically from the prompt.
        duration = (
            requested if requested != -1 else rng.min + len(req.prompt) % (rng.max - rng.min + 1)
        )
        resolution = _enum_value(req.resolution, catalog.DEFAULT_VIDEO_RESOLUTION)
        ratio = _enum_value(req.ratio, catalog.DEFAULT_VIDEO_RATIO)
        cost = video_price(req.model, duration, resolution)
        self._require_balance(key, cost)
        self._charge(key, cost)
        ready_at = now + self.config.video_seconds
        task = VideoTask(
            id=_new_id("vgen_"),
            api_key=key,
            model=req.model,
            prompt=req.prompt,
            ratio=ratio,
            resolution=resolution,
            duration=duration,
            seed=req.seed,
            generate_audio=req.generate_audio,
            return_last_frame=bool(req.return_last_frame),
            created_at=now,
            ready_at=ready_at,
            url_expires_at=math.ceil(ready_at + self.config.video_url_ttl_s),
            cost=cost,
            fail=FAIL_MARKER in req.prompt,
        )
        self._videos[task.id] = task
        self.stats.video_submissions += 1
        return web.json_response(
            {"id": task.id, "status": "queued", "model": task.model, "created_at": iso(now)},
            status=202,
        )

    def _video_body(self, task: VideoTask) -> dict[str, Any]:
        now = self.now()
        if task.status(now) == "failed" and not task.refunded:
            task.refunded = True
            self._refund(task.api_key, task.cost)
        return task.body(now, self.base_url, UrlSigner(self.config.signing_secret))

    async def get_video(self, request: web.Request) -> web.Response:
        """GET /v1/videos/generations/{id}."""
        task = self._own(self._videos, request)
        return web.json_response(self._video_body(task))

    async def cancel_video(self, request: web.Request) -> web.Response:
        """POST /v1/videos/generations/{id}/cancel: 200 task | 404 | 409 already finished."""
        task = self._own(self._videos, request)
        status = task.status(self.now())
        if status in TERMINAL_VIDEO_STATUSES:
            raise SimApiError(
                409, "task_already_finished", f"The task is already {status}; nothing to cancel."
            )
        task.cancelled_at = self.now()
        if not task.refunded:
            task.refunded = True
            self._refund(task.api_key, task.cost)
        self.stats.video_cancellations += 1
        return web.json_response(self._video_body(task))

    async def list_videos(self, request: web.Request) -> web.Response:
        """GET /v1/videos/generations?limit=&status=: this key's tasks, newest first."""
        key = request[API_KEY]
        raw_limit = request.query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise SimApiError(400, "invalid_request", "limit must be 1-100", param="limit")
        wanted = request.query.get("status")
        valid = ("queued", "processing", *sorted(TERMINAL_VIDEO_STATUSES))
        if wanted is not None and wanted not in valid:
            raise SimApiError(
                400, "invalid_request", f"status must be one of {', '.join(valid)}", param="status"
            )
        now = self.now()
        mine = sorted(
            (t for t in self._videos.values() if t.api_key == key),
            key=lambda t: t.created_at,
            reverse=True,
        )
        if wanted is not None:
            mine = [t for t in mine if t.status(now) == wanted]
        items = [self._video_body(t) for t in mine[: int(raw_limit)]]
        return web.json_response({"items": items, "total": len(mine)})

    async def media_object(self, request: web.Request) -> web.Response:
        """GET /_media/videos/{id}.mp4 and /_media/frames/{id}.png (presigned)."""
        kind, object_id = request.match_info["kind"], request.match_info["name"]
        signer = UrlSigner(self.config.signing_secret)
        q = request.query
        if not signer.verify(object_id, q.get("expires"), q.get("sig"), self.now()):
            return _xml_denied(403, "AccessDenied", "Request has expired or signature mismatch")
        task = self._videos.get(object_id)
        if task is None or task.status(self.now()) not in ("completed", "expired"):
            return _xml_denied(404, "NoSuchKey", "The specified key does not exist.")
        if kind == "frames":
            width, height = fit(*task.dimensions(), self.config.image_pixels)
            png = await asyncio.to_thread(
                prompt_picture, task.prompt, width, height, variant="last"
            )
            return web.Response(body=png, content_type="image/png")
        self.stats.video_downloads[object_id] += 1
        # Every task serves the same shipped clip: small, and it plays in any player.
        return web.Response(body=demo_mp4(), content_type="video/mp4")

    # ---- control API -----------------------------------------------------------------------

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


def create_app(sim: AllTokenSim) -> web.Application:
    """The aiohttp application serving `sim` (routes, middleware)."""
    app = web.Application(middlewares=[sim.middleware], client_max_size=8 * 1024 * 1024)
    r = app.router
    r.add_post("/v1/chat/completions", sim.chat_completions)
    r.add_get("/v1/models", sim.list_models)
    r.add_get("/v1/images/models", sim.list_image_models)
    r.add_get("/v1/videos/models", sim.list_video_models)
    r.add_post("/v1/images/generations/async", sim.submit_image)
    r.add_post("/v1/images/generations", sim.submit_image)
    r.add_get("/v1/images/generations/{id}", sim.get_image)
    r.add_post("/v1/videos/generations", sim.submit_video)
    r.add_get("/v1/videos/generations", sim.list_videos)
    r.add_get("/v1/videos/generations/{id}", sim.get_video)
    r.add_post("/v1/videos/generations/{id}/cancel", sim.cancel_video)
    r.add_get("/api-account/models", sim.catalog_list)
    r.add_get("/api-account/models/{id}", sim.catalog_model)
    r.add_route("*", "/api-account/user/{tail:.*}", sim.account_user)
    r.add_get("/_r2/images/{name}.png", sim.r2_object)
    r.add_get("/_media/{kind:videos}/{name}.mp4", sim.media_object)
    r.add_get("/_media/{kind:frames}/{name}.png", sim.media_object)
    r.add_post("/_sim/faults", sim.control_add_fault)
    r.add_get("/_sim/faults", sim.control_list_faults)
    r.add_delete("/_sim/faults", sim.control_clear_faults)
    r.add_post("/_sim/keys", sim.control_issue_key)
    r.add_get("/_sim/keys/{key}", sim.control_get_key)
    r.add_get("/_sim/stats", sim.control_stats)
    r.add_delete("/_sim/stats", sim.control_reset_stats)
    r.add_get("/_sim/config", sim.control_config)
    r.add_patch("/_sim/config", sim.control_config)
    return app
