"""A local OpenMarlin server (aiohttp.web) faithful to the contract in reference/backends.md.

Device-flow and browser-callback registration with an HTML sign-in page (Approve / Deny), key
bootstrap returning the secret once, `/v1/models` with providers and labels, executions as JSON
or SSE with routing by model, provider and labels (every routing error code), video tasks
queued → running → succeeded/failed, balance, usage events, ledger, top-ups with an HTML
checkout, the structured 402, and injectable faults. `/_sim/*` is a control API for tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

# The referral path is unpublished; the client and this stand-in share its one constant.
from bot.backends.openmarlin.service import REFERRAL_PATH
from bot.core.settings import Settings
from bot.sim.demo_video import demo_mp4
from bot.sim.listener import Listener
from bot.sim.openmarlin.pages import (
    callback_landing_page,
    checkout_page,
    closed_page,
    decided_page,
    paid_page,
    sign_in_page,
)
from bot.sim.openmarlin.world import (
    FAIL_MARKER,
    KNOWN_AGENTS,
    SIGNUP_GRANT,
    TASK_ASPECT_RATIOS,
    UNIT,
    ApiError,
    ApiKey,
    InsufficientBalance,
    Provider,
    Registration,
    Task,
    TopUp,
    UsageRow,
    Workspace,
    check_labels,
    compose_answer,
    default_providers,
    iso,
    money,
    new_id,
    num,
    route,
)
from bot.sim.png import gradient_png

__all__ = ["DEMO_KEY", "OpenMarlinFault", "OpenMarlinSim", "OpenMarlinSimConfig"]

log = logging.getLogger(__name__)

DEMO_KEY = "claw_wsk_demo0000000000000000000000"
REQUEST_ID = web.RequestKey("om_request_id", str)
KEY = web.RequestKey("om_api_key", ApiKey)
DROP_STREAM = web.RequestKey("om_drop_stream", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TASK_FORBIDDEN = ("instruction", "provider_id", "labels", "model", "stream")


class OpenMarlinSimConfig(BaseModel):
    """Knobs of the simulator; mutable at runtime (in-process or via PATCH /_sim/config)."""

    registration_ttl_s: float = Field(300.0, ge=0)
    task_queue_s: float = Field(1.0, ge=0)
    task_run_s: float = Field(4.0, ge=0)
    tokens_per_second: float = Field(40.0, ge=0)  # 0 = as fast as possible
    latency_ms: float = Field(0.0, ge=0)
    # False: answer every execution as JSON even when `stream` is true.
    stream: bool = True
    # False: the (unpublished) referral endpoint answers 404 like a server without it.
    referrals: bool = True
    execution_cost: Decimal = Field(Decimal(1), ge=0)
    task_cost: Decimal = Field(Decimal(5), ge=0)
    demo_keys: dict[str, float] = Field(default_factory=lambda: {DEMO_KEY: 25.0})


class OpenMarlinFault(BaseModel):
    """One injected fault: matching requests (method + path prefix) fail `times` times."""

    method: str | None = None
    path: str
    status: int = Field(500, ge=100, le=599)
    error: str = "server_error"
    message: str | None = None
    times: int | None = Field(1, ge=1)  # None = forever
    latency_ms: float = Field(0.0, ge=0)
    retry_after: float | None = Field(None, ge=0)
    mode: Literal["error", "malformed_json", "malformed_sse", "drop_stream"] = "error"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies (and has uses left)."""
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method.upper() == method) and path.startswith(self.path)


class OpenMarlinSim:
    """The simulator: state plus the aiohttp app serving it."""

    def __init__(
        self,
        config: OpenMarlinSimConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        providers: list[Provider] | None = None,
    ) -> None:
        self.config = config or OpenMarlinSimConfig()
        self.providers = providers or default_providers()
        self.base_url = ""
        self.requests: Counter[str] = Counter()
        self.faults: list[OpenMarlinFault] = []
        self.execution_count = 0
        self._clock = clock or time.time
        self._keys: dict[str, ApiKey] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._registrations: dict[str, Registration] = {}
        self._by_user_code: dict[str, str] = {}
        self._by_state: dict[str, str] = {}
        self._tasks: dict[str, Task] = {}
        self._topups: dict[str, TopUp] = {}
        for secret, balance in self.config.demo_keys.items():
            self.issue_key(balance, secret=secret, slug="demo")
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
        """The simulator's clock (unix seconds)."""
        return self._clock()

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

    # ---- middleware ------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Request id, counters, latency, faults, auth and error bodies for every request."""
        request[REQUEST_ID] = new_id("req_")
        resource = request.match_info.route.resource
        self.requests[f"{request.method} {resource.canonical if resource else request.path}"] += 1
        try:
            response = await self._dispatch(request, handler)
        except ApiError as exc:
            response = self._error(exc)
        except InsufficientBalance as exc:
            response = web.json_response(exc.body(), status=402)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self._error(
                ApiError(exc.status, "not_found" if exc.status == 404 else "invalid_request")
            )
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            return web.Response(status=499)
        except Exception:
            log.exception("OpenMarlin simulator handler failed")
            response = self._error(ApiError(500, "server_error", "the simulator failed"))
        if not response.prepared:
            response.headers.setdefault("x-request-id", request[REQUEST_ID])
        return response

    @staticmethod
    def _error(exc: ApiError) -> web.Response:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
        delay = self.config.latency_ms + (fault.latency_ms if fault else 0.0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if fault is not None:
            fault.hits += 1
            if fault.mode == "malformed_json":
                return web.Response(status=200, body=b"{nope", content_type="application/json")
            if fault.mode == "malformed_sse":
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(b"event: execution.chunk\ndata: {nope\n\n")
                await resp.write_eof()
                return resp
            if fault.mode == "error":
                response = self._error(
                    ApiError(fault.status, fault.error, fault.message or "injected fault")
                )
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = f"{fault.retry_after:g}"
                return response
            request[DROP_STREAM] = True
        if request.path.startswith("/v1/") and not request.path.startswith("/v1/registration/"):
            request[KEY] = self._authenticate(request)
        return await handler(request)

    def _authenticate(self, request: web.Request) -> ApiKey:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
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
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return body

    # ---- registration ----------------------------------------------------------------------

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
            return _html(closed_page("unknown"), 404)
        state_now = reg.state(self.now())
        if state_now != "pending_external_auth":
            return _html(closed_page(state_now), 410)
        if request.method == "GET":
            left = int(reg.expires_at - self.now())
            return _html(sign_in_page(reg.user_code, left, reg.email))
        form = await request.post()
        decision = str(form.get("decision") or "")
        if decision not in ("approve", "deny"):
            return _html(sign_in_page(reg.user_code, 0, reg.email), 400)
        self._decide(reg, decision, str(form.get("email") or "") or None)
        if decision == "approve" and reg.redirect_uri:
            raise web.HTTPFound(f"{reg.redirect_uri}?{urlencode({'state': reg.secret})}")
        return _html(decided_page(decision))

    async def callback_landing(self, request: web.Request) -> web.Response:
        """GET /auth/callback: user-facing only."""
        return _html(callback_landing_page())

    # ---- models and executions -------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        """GET /v1/models: every model a connected provider advertises, with its providers."""
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.providers:
            if not p.connected:
                continue
            for model in p.models:
                out.setdefault(model, []).append(
                    {
                        "provider_id": p.provider_id,
                        "model_providers": list(p.model_providers.get(model, ())),
                        "labels": dict(p.labels),
                    }
                )
        data = [{"id": m, "providers": providers} for m, providers in sorted(out.items())]
        return web.json_response({"object": "list", "data": data})

    async def executions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/executions: route, check the balance, answer as JSON or SSE."""
        body = await self._body(request)
        instruction = body.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ApiError(400, "invalid_request", "instruction is required")
        if body.get("kind", "agent_run") != "agent_run":
            raise ApiError(400, "invalid_request", "kind must be agent_run")
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or "/" not in model):
            raise ApiError(400, "invalid_request", "model must be an exact ref like vendor/model")
        provider_id = body.get("provider_id")
        if provider_id is not None and not isinstance(provider_id, str):
            raise ApiError(400, "invalid_request", "provider_id must be a string")
        labels = check_labels(body.get("labels"))
        agent = body.get("agent_id")
        if agent is not None and agent not in KNOWN_AGENTS:
            raise ApiError(404, "skill_not_available", f"no agent {agent!r} in this workspace")
        provider, chosen_model = route(
            self.providers, model=model, provider_id=provider_id, labels=labels
        )
        ws = self._ws(request)
        cost = self.config.execution_cost
        ws.require(cost)
        rid = request[REQUEST_ID]
        answer = compose_answer(instruction, chosen_model, provider.provider_id)
        failing = FAIL_MARKER in instruction
        self.execution_count += 1
        metadata = {"provider_id": provider.provider_id, "model": chosen_model}
        if body.get("stream") and self.config.stream:
            return await self._stream(request, ws, answer, metadata, cost, failing)
        if failing:
            raise ApiError(502, "execution_failed", "the agent run failed on the provider")
        self._settle(ws, provider.provider_id, rid, "agent_run", cost, len(answer.split()))
        return web.json_response(
            {
                "request_id": rid,
                "output": answer,
                "metadata": {**metadata, "settlement": money(cost)},
                "streamed_text": None,
            }
        )

    def _settle(
        self, ws: Workspace, provider_id: str, rid: str, capability: str, cost: Decimal, units: int
    ) -> None:
        now = self.now()
        ws.post(now, "usage_debit", -cost, rid)
        ws.usage.append(
            UsageRow(now, capability, "settled", provider_id, rid, {"units": units}, cost)
        )

    async def _stream(
        self,
        request: web.Request,
        ws: Workspace,
        answer: str,
        metadata: dict[str, str],
        cost: Decimal,
        failing: bool,
    ) -> web.StreamResponse:
        rid = request[REQUEST_ID]
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": rid,
            }
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send("execution.start", {"request_id": rid, **metadata})
        words = answer.split(" ")
        delay = 1 / self.config.tokens_per_second if self.config.tokens_per_second else 0.0
        for i, word in enumerate(words):
            if request.get(DROP_STREAM) and i == 3:
                if request.transport is not None:
                    request.transport.close()
                return resp
            if failing and i == 3:
                await send(
                    "execution.error",
                    {
                        "error": "execution_failed",
                        "message": "the agent run failed on the provider",
                        "request_id": rid,
                    },
                )
                await resp.write_eof()
                return resp
            await send("execution.chunk", {"delta": word if i == 0 else " " + word})
            if delay:
                await asyncio.sleep(delay)
        self._settle(ws, metadata["provider_id"], rid, "agent_run", cost, len(words))
        await send(
            "execution.end",
            {
                "request_id": rid,
                "output": answer,
                "metadata": {**metadata, "settlement": money(cost)},
            },
        )
        await resp.write_eof()
        return resp

    # ---- tasks -----------------------------------------------------------------------------

    async def submit_task(self, request: web.Request) -> web.Response:
        """POST /v1/tasks: video only, no routing fields, charged up front."""
        body = await self._body(request)
        bad = [k for k in _TASK_FORBIDDEN if k in body]
        if bad:
            raise ApiError(400, "invalid_request", f"tasks do not accept {', '.join(bad)}")
        if body.get("kind") != "video":
            raise ApiError(400, "invalid_request", "kind must be video")
        inp = body.get("input")
        if (
            not isinstance(inp, dict)
            or not isinstance(inp.get("prompt"), str)
            or not inp["prompt"].strip()
        ):
            raise ApiError(400, "invalid_request", "input.prompt is required")
        duration = inp.get("duration_ms")
        if duration is not None and (
            not isinstance(duration, int) or not 1000 <= duration <= 20000
        ):
            raise ApiError(400, "invalid_request", "input.duration_ms must be 1000-20000")
        ratio = inp.get("aspect_ratio")
        if ratio is not None and ratio not in TASK_ASPECT_RATIOS:
            raise ApiError(
                404, "task_executor_not_found", f"no task executor renders aspect ratio {ratio}"
            )
        if not any(p.connected and "video" in p.kinds for p in self.providers):
            raise ApiError(404, "task_executor_not_found", "no video executor is connected")
        ws = self._ws(request)
        cost = self.config.task_cost
        ws.require(cost)
        now = self.now()
        started = now + self.config.task_queue_s
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        task = Task(
            new_id("task_"),
            ws.workspace_id,
            inp["prompt"],
            now,
            started,
            started + self.config.task_run_s,
            cost,
            dict(inp),
            {**(meta or {}), "aspect_ratio": ratio or "16:9", "duration_ms": duration or 5000},
            fail=FAIL_MARKER in inp["prompt"],
        )
        self._tasks[task.task_id] = task
        ws.post(now, "usage_debit", -cost, task.task_id)
        return web.json_response(task.body(now, self.base_url), status=202)

    def _task(self, request: web.Request) -> Task:
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.workspace_id != request[KEY].workspace_id:
            raise ApiError(404, "not_found", "no such task in this workspace")
        now = self.now()
        if not task.settled and task.status(now) in ("succeeded", "failed"):
            task.settled = True
            ws = self._workspaces[task.workspace_id]
            if task.fail:
                ws.post(now, "refund", task.cost, task.task_id)
            status = "refunded" if task.fail else "settled"
            settled = Decimal(0) if task.fail else task.cost
            ws.usage.append(
                UsageRow(
                    now, "video", status, task.provider_id, task.task_id, {"seconds": 5}, settled
                )
            )
        return task

    async def get_task(self, request: web.Request) -> web.Response:
        """GET /v1/tasks/:id."""
        return web.json_response(self._task(request).body(self.now(), self.base_url))

    async def media(self, request: web.Request) -> web.Response:
        """GET /_media/tasks/{id}.mp4|png: the artifact of a finished task."""
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.status(self.now()) != "succeeded":
            raise ApiError(404, "not_found", "no such artifact")
        if request.match_info["ext"] == "png":
            return web.Response(body=gradient_png(task.prompt, 32), content_type="image/png")
        return web.Response(body=demo_mp4(), content_type="video/mp4")

    # ---- billing ---------------------------------------------------------------------------

    async def balance(self, request: web.Request) -> web.Response:
        """GET /v1/balance."""
        ws = self._ws(request)
        return web.json_response(
            {
                "workspace_id": ws.workspace_id,
                "available_balance": money(ws.balance),
                "updated_at": iso(ws.updated_at),
            }
        )

    @staticmethod
    def _limit(request: web.Request) -> int:
        raw = request.query.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise ApiError(400, "invalid_request", "limit must be 1-100")
        return int(raw)

    async def usage_events(self, request: web.Request) -> web.Response:
        """GET /v1/usage-events: newest first."""
        rows = list(reversed(self._ws(request).usage))[: self._limit(request)]
        return web.json_response({"data": [r.body() for r in rows]})

    async def ledger(self, request: web.Request) -> web.Response:
        """GET /v1/ledger: newest first."""
        rows = list(reversed(self._ws(request).ledger))[: self._limit(request)]
        return web.json_response({"data": [r.body() for r in rows]})

    async def create_topup(self, request: web.Request) -> web.Response:
        """POST /v1/topup/sessions {amount}."""
        body = await self._body(request)
        raw = body.get("amount")
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise InvalidOperation
            amount = Decimal(str(raw))
        except InvalidOperation:
            raise ApiError(400, "invalid_request", "amount must be a number") from None
        if not amount.is_finite() or amount <= 0 or amount > 100_000:
            raise ApiError(400, "invalid_request", "amount must be between 0 and 100000")
        ws = self._ws(request)
        session_id = new_id("tops_")
        topup = TopUp(
            session_id,
            ws.workspace_id,
            amount,
            self.now(),
            f"{self.base_url}/checkout/{session_id}",
            new_id("cs_test_", 12),
        )
        self._topups[session_id] = topup
        return web.json_response(topup.body(), status=201)

    async def get_topup(self, request: web.Request) -> web.Response:
        """GET /v1/topup/sessions/:id."""
        topup = self._topups.get(request.match_info["id"])
        if topup is None or topup.workspace_id != request[KEY].workspace_id:
            raise ApiError(404, "not_found", "no such top-up session")
        return web.json_response(topup.body())

    async def checkout(self, request: web.Request) -> web.Response:
        """GET/POST /checkout/{id}: the stand-in for Stripe Checkout."""
        topup = self._topups.get(request.match_info["id"])
        if topup is None:
            return _html(closed_page("unknown"), 404)
        if request.method == "POST" and topup.status == "pending_payment":
            decision = str((await request.post()).get("decision") or "")
            now = self.now()
            if decision == "pay":
                ws = self._workspaces[topup.workspace_id]
                row = ws.post(now, "topup_credit", topup.amount, topup.session_id)
                topup.status, topup.ledger_entry_id = "credit_applied", row.entry_id
            elif decision == "fail":
                topup.status = "payment_failed"
            else:
                return _html(
                    checkout_page(
                        str(num(topup.amount)), UNIT, topup.stripe_reference, topup.status
                    ),
                    400,
                )
            topup.completed_at = now
            return _html(paid_page(topup.status))
        return _html(
            checkout_page(str(num(topup.amount)), UNIT, topup.stripe_reference, topup.status)
        )

    async def referral(self, request: web.Request) -> web.Response:
        """The referral endpoint (its real path is unpublished)."""
        if not self.config.referrals:
            raise ApiError(404, "not_found", "no such route")
        ws = self._ws(request)
        code = ws.slug.upper().replace("-", "")[:8] or "MARLIN"
        return web.json_response(
            {
                "referral_code": code,
                "invite_url": f"{self.base_url}/invite/{code}",
                "attribution": {"invited": 3, "converted": 1, "credits_earned": money(Decimal(5))},
            }
        )

    # ---- control API -----------------------------------------------------------------------

    async def control_faults(self, request: web.Request) -> web.Response:
        """POST /_sim/faults adds one; DELETE clears them."""
        if request.method == "DELETE":
            count = len(self.faults)
            self.faults.clear()
            return web.json_response({"cleared": count})
        try:
            fault = OpenMarlinFault.model_validate(await self._body(request))
        except ValidationError as exc:
            raise ApiError(400, "invalid_request", str(exc.errors()[0]["msg"])) from None
        self.faults.append(fault)
        return web.json_response(fault.model_dump(), status=201)

    async def control_keys(self, request: web.Request) -> web.Response:
        """POST /_sim/keys {balance} -> {key, workspace_id}."""
        body = await self._body(request)
        balance = body.get("balance", 25)
        if isinstance(balance, bool) or not isinstance(balance, int | float):
            raise ApiError(400, "invalid_request", "balance must be a number")
        key = self.issue_key(float(balance))
        return web.json_response({"key": key, "workspace_id": self._keys[key].workspace_id})

    async def control_config(self, request: web.Request) -> web.Response:
        """GET or PATCH /_sim/config."""
        if request.method == "PATCH":
            merged = {**self.config.model_dump(), **(await self._body(request))}
            try:
                self.config = OpenMarlinSimConfig.model_validate(merged)
            except ValidationError as exc:
                raise ApiError(400, "invalid_request", str(exc.errors()[0]["msg"])) from None
        return web.json_response(self.config.model_dump(mode="json"))

    async def control_stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats."""
        return web.json_response(
            {"requests": dict(self.requests), "executions": self.execution_count}
        )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def sim_config_from_settings(settings: Settings) -> OpenMarlinSimConfig:
    """Pacing from TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS and friends (demo defaults otherwise)."""
    cfg = OpenMarlinSimConfig()
    if settings.sim_openmarlin_task_seconds is not None:
        total = settings.sim_openmarlin_task_seconds
        cfg.task_queue_s, cfg.task_run_s = total * 0.2, total * 0.8
    if settings.sim_tokens_per_second is not None:
        cfg.tokens_per_second = settings.sim_tokens_per_second
    if settings.sim_latency_ms is not None:
        cfg.latency_ms = settings.sim_latency_ms
    return cfg


def create_app(sim: OpenMarlinSim) -> web.Application:
    """The aiohttp application serving `sim`."""
    app = web.Application(middlewares=[sim.middleware])
    r = app.router
    r.add_post("/v1/registration/sessions", sim.create_registration)
    r.add_get("/v1/registration/sessions/{id}", sim.get_registration)
    r.add_post("/v1/registration/sessions/{id}/api-keys", sim.bootstrap_key)
    r.add_get("/v1/models", sim.list_models)
    r.add_post("/v1/executions", sim.executions)
    r.add_post("/v1/tasks", sim.submit_task)
    r.add_get("/v1/tasks/{id}", sim.get_task)
    r.add_get("/v1/balance", sim.balance)
    r.add_get("/v1/usage-events", sim.usage_events)
    r.add_get("/v1/ledger", sim.ledger)
    r.add_post("/v1/topup/sessions", sim.create_topup)
    r.add_get("/v1/topup/sessions/{id}", sim.get_topup)
    r.add_get(REFERRAL_PATH, sim.referral)
    r.add_route("GET", "/activate/{code}", sim.sign_in)
    r.add_route("POST", "/activate/{code}", sim.sign_in)
    r.add_route("GET", "/authorize", sim.sign_in)
    r.add_route("POST", "/authorize", sim.sign_in)
    r.add_get("/auth/callback", sim.callback_landing)
    r.add_route("GET", "/checkout/{id}", sim.checkout)
    r.add_route("POST", "/checkout/{id}", sim.checkout)
    r.add_get("/_media/tasks/{id}.{ext:mp4|png}", sim.media)
    r.add_route("*", "/_sim/faults", sim.control_faults)
    r.add_post("/_sim/keys", sim.control_keys)
    r.add_route("*", "/_sim/config", sim.control_config)
    r.add_get("/_sim/stats", sim.control_stats)
    return app
