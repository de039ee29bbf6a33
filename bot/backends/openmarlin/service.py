"""OpenMarlin client: device-flow registration, executions (JSON or SSE), tasks, billing.

Knows HTTP and OpenMarlin's contract (reference/backends.md), nothing about chat platforms.
`server_url` is a bare origin; every path below starts with /v1. The wire models live in
wire.py; every call goes through the one BackendCall (bot.core.http).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bot.backends.openmarlin.wire import (
    ROUTING_CODES,
    Amount,
    ApiKeyInfo,
    AuthFlow,
    Balance,
    BootstrappedKey,
    Completion,
    ExecutionChunk,
    ExecutionEvent,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStart,
    Handoff,
    InsufficientBalance,
    LedgerEntry,
    MarlinModel,
    ModelProvider,
    ProviderIdentity,
    RegistrationSession,
    RegistrationState,
    TaskInput,
    TaskRequest,
    TaskState,
    TaskStatus,
    TopUpSession,
    TopUpState,
    UsageEvent,
    Workspace,
    openmarlin_error,
)
from bot.core.errors import BackendError, protocol_error
from bot.core.http import DEFAULT_RETRY, BackendCall, RetryPolicy, read_json

# Names other modules import from here (the wire models moved to wire.py).
__all__ = [
    "OPENAPI_PATH",
    "REFERRAL_PATH",
    "ROUTING_CODES",
    "Amount",
    "ApiKeyInfo",
    "AuthFlow",
    "Balance",
    "BootstrappedKey",
    "Completion",
    "ExecutionChunk",
    "ExecutionEvent",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStart",
    "Handoff",
    "InsufficientBalance",
    "LedgerEntry",
    "MarlinModel",
    "ModelProvider",
    "OpenMarlinService",
    "ProviderIdentity",
    "RegistrationSession",
    "RegistrationState",
    "TaskInput",
    "TaskRequest",
    "TaskState",
    "TaskStatus",
    "TopUpSession",
    "TopUpState",
    "UsageEvent",
    "Workspace",
    "openmarlin_error",
]

# The referral endpoint is not published; this is the one place its path lives.
REFERRAL_PATH = "/v1/referrals/link"
# The skill's scripts check connectivity with GET {origin}/openapi.json (no key; 2xx = up).
OPENAPI_PATH = "/openapi.json"
PROBE_TIMEOUT_S = 5.0
# How long a run's settlement is looked for in the usage events after the answer.
SETTLEMENT_READ_S = 5.0

_M = TypeVar("_M", bound=BaseModel)


# --- the service -----------------------------------------------------------------------------


@dataclass
class OpenMarlinService:
    """OpenMarlin over the shared httpx client. Calls take the caller's own `claw_wsk_` key."""

    http: httpx.AsyncClient
    server_url: str
    retry: RetryPolicy = DEFAULT_RETRY

    def __post_init__(self) -> None:
        origin = self.server_url.rstrip("/")
        if origin.endswith("/v1"):
            # Settings refuse this at start-up; a service built by hand must not double /v1.
            raise ValueError(
                f"OpenMarlin server URL must be a bare origin without /v1; got {origin}"
            )
        self.server_url = origin

    # --- plumbing ------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.server_url}{path}"

    @property
    def _call(self) -> BackendCall:
        # Built per request: `retry` may be replaced after construction (tests, fault drills).
        return BackendCall("openmarlin", self.http, openmarlin_error, self.retry)

    async def _send(
        self,
        method: str,
        path: str,
        key: str | None,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # A 429 means nothing started, so even a paid POST may be resent once.
        return await self._call.send(
            method, self._url(path), json=body, headers=headers, params=params
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        return read_json("openmarlin", response)

    def _parse(self, model: type[_M], response: httpx.Response, data: Any = None) -> _M:
        data = self._json(response) if data is None else data
        try:
            return model.model_validate(data)
        except ValidationError:
            raise protocol_error(
                "openmarlin",
                f"unexpected answer shape from {response.request.url.path}",
                response.headers.get("x-request-id"),
            ) from None

    async def probe(self) -> tuple[bool, str]:
        """The skill's connectivity check: (reachable, what GET /openapi.json answered)."""
        try:
            response = await self._call.send(
                "GET",
                self._url(OPENAPI_PATH),
                timeout=PROBE_TIMEOUT_S,
                accept=frozenset(range(400, 600)),  # an answer, not an error to retry
            )
        except BackendError as exc:
            return False, f"GET {OPENAPI_PATH} failed: {exc.code}"
        return (
            response.status_code < 300,
            f"GET {OPENAPI_PATH} answered HTTP {response.status_code}",
        )

    # --- registration --------------------------------------------------------------------

    async def create_registration(self, auth_flow: AuthFlow = "device") -> RegistrationSession:
        """Start a registration session (no key needed)."""
        response = await self._send(
            "POST",
            "/v1/registration/sessions",
            None,
            body={"provider": "workos", "auth_flow": auth_flow},
        )
        return self._parse(RegistrationSession, response)

    async def get_registration(self, session_id: str) -> RegistrationSession:
        """One poll of a registration session."""
        response = await self._send("GET", f"/v1/registration/sessions/{session_id}", None)
        return self._parse(RegistrationSession, response)

    async def bootstrap_key(
        self,
        session_id: str,
        *,
        device_code: str | None = None,
        callback_state: str | None = None,
        label: str = "tokenbot",
    ) -> BootstrappedKey:
        """Issue the workspace's first API key; the returned secret is never shown again."""
        body: dict[str, Any] = {"label": label}
        if device_code:
            body["device_code"] = device_code
        if callback_state:
            body["callback_state"] = callback_state
        response = await self._send(
            "POST", f"/v1/registration/sessions/{session_id}/api-keys", None, body=body
        )
        return self._parse(BootstrappedKey, response)

    # --- executions ----------------------------------------------------------------------

    async def list_models(self, key: str) -> list[MarlinModel]:
        """Exact model refs and the providers (with labels) advertising each."""
        response = await self._send("GET", "/v1/models", key)
        data = self._json(response)
        items = data.get("data") if isinstance(data, dict) else None
        try:
            return [MarlinModel.model_validate(m) for m in items or []]
        except ValidationError:
            raise protocol_error(
                "openmarlin", "unexpected model list", response.headers.get("x-request-id")
            ) from None

    async def execute(self, key: str, request: ExecutionRequest) -> AsyncIterator[ExecutionEvent]:
        """Run an execution: events as the server streams them, or one result for JSON.

        The last event is always an ExecutionResult; an `execution.error` event raises
        BackendError (after any chunks already yielded).
        """
        # A POST without an Idempotency-Key: only a 429 (nothing started) is tried again; once
        # an execution has started, resending could run (and bill) it twice.
        async with self._call.stream(
            "POST",
            self._url("/v1/executions"),
            json=request.body(),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            async for event in self._read_execution(response):
                yield event

    async def _read_execution(self, response: httpx.Response) -> AsyncIterator[ExecutionEvent]:
        request_id = response.headers.get("x-request-id")
        if "text/event-stream" not in response.headers.get("content-type", ""):
            yield _json_result(await response.aread(), request_id)
            return
        start = ExecutionStart(request_id=request_id)
        parts: list[str] = []
        async for name, data in _sse_events(response, request_id):
            if name == "execution.start":
                start = _start(data, request_id)
                request_id = start.request_id
                yield start
            elif name == "execution.chunk":
                text = _chunk_text(data)
                if text:
                    parts.append(text)
                    yield ExecutionChunk(text=text)
            elif name == "execution.end":
                result = _result(data, request_id, streamed=True)
                yield result.model_copy(
                    update={
                        "provider_id": result.provider_id or start.provider_id,
                        "model": result.model or start.model,
                        "streamed_text": result.streamed_text or "".join(parts),
                    }
                )
                return
            elif name == "execution.error":
                raise _execution_error(data, request_id)
        raise protocol_error("openmarlin", "the execution stream ended early", request_id)

    # --- tasks ---------------------------------------------------------------------------

    async def submit_task(self, key: str, request: TaskRequest) -> TaskStatus:
        """Submit a long-running task (sent once: a resend could start a second paid job)."""
        response = await self._send("POST", "/v1/tasks", key, body=request.body())
        return self._parse(TaskStatus, response)

    async def get_task(self, key: str, task_id: str) -> TaskStatus:
        """One status read of a task."""
        response = await self._send("GET", f"/v1/tasks/{task_id}", key)
        return self._parse(TaskStatus, response)

    # --- billing -------------------------------------------------------------------------

    async def balance(self, key: str) -> Balance:
        """The authoritative balance."""
        response = await self._send("GET", "/v1/balance", key)
        return self._parse(Balance, response)

    async def usage_events(self, key: str, limit: int = 10) -> list[UsageEvent]:
        """Recent metered uses, newest first."""
        response = await self._send("GET", "/v1/usage-events", key, params={"limit": str(limit)})
        return self._list(UsageEvent, response)

    async def settlement(self, key: str, result: ExecutionResult) -> Any:
        """A run's settlement: in its metadata, else its usage event (None if neither says)."""
        if "settlement" in result.metadata or not result.request_id:
            return result.metadata.get("settlement")
        try:
            events = await asyncio.wait_for(self.usage_events(key), SETTLEMENT_READ_S)
        except (BackendError, TimeoutError):
            return None  # the answer was given; its cost is recorded as the estimate
        return next((e.settlement for e in events if e.request_id == result.request_id), None)

    async def ledger(self, key: str, limit: int = 10) -> list[LedgerEntry]:
        """Recent credits and debits, newest first."""
        response = await self._send("GET", "/v1/ledger", key, params={"limit": str(limit)})
        return self._list(LedgerEntry, response)

    def _list(self, model: type[_M], response: httpx.Response) -> list[_M]:
        data = self._json(response)
        items = data.get("data") if isinstance(data, dict) else None
        return [self._parse(model, response, item) for item in items or []]

    async def create_topup(self, key: str, amount: Decimal) -> TopUpSession:
        """Start a top-up; the person pays at `checkout_url` (Stripe)."""
        value: int | float = int(amount) if amount == amount.to_integral_value() else float(amount)
        response = await self._send("POST", "/v1/topup/sessions", key, body={"amount": value})
        return self._parse(TopUpSession, response)

    async def get_topup(self, key: str, session_id: str) -> TopUpSession:
        """One status read of a top-up."""
        response = await self._send("GET", f"/v1/topup/sessions/{session_id}", key)
        return self._parse(TopUpSession, response)

    async def referral_link(self, key: str) -> dict[str, Any]:
        """The caller's referral code, invite link and attribution (404: not offered)."""
        response = await self._send("GET", REFERRAL_PATH, key)
        data = self._json(response)
        if not isinstance(data, dict):
            raise protocol_error("openmarlin", "unexpected referral answer")
        return data


def _result(data: dict[str, Any], request_id: str | None, *, streamed: bool) -> ExecutionResult:
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return ExecutionResult(
        request_id=data.get("request_id") or request_id,
        output=data.get("output"),
        metadata=metadata or {},
        streamed_text=data.get("streamed_text")
        if isinstance(data.get("streamed_text"), str)
        else None,
        provider_id=(metadata or {}).get("provider_id") or data.get("provider_id"),
        model=(metadata or {}).get("model") or data.get("model"),
        streamed=streamed,
    )


def _json_result(raw: bytes, request_id: str | None) -> ExecutionResult:
    """The whole answer of an execution the server did not stream."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise protocol_error("openmarlin", "unreadable execution answer", request_id) from None
    if not isinstance(data, dict):
        raise protocol_error("openmarlin", "unexpected execution answer", request_id)
    return _result(data, request_id, streamed=False)


def _start(data: dict[str, Any], request_id: str | None) -> ExecutionStart:
    return ExecutionStart(
        request_id=data.get("request_id") or request_id,
        provider_id=data.get("provider_id"),
        model=data.get("model"),
    )


def _execution_error(data: dict[str, Any], request_id: str | None) -> BackendError:
    """An `execution.error` event (a 402's balances kept in details)."""
    code = data.get("error") or data.get("error_code") or data.get("code")
    return BackendError(
        "openmarlin",
        200,
        str(code or "execution_failed"),
        str(data.get("message") or "the execution failed"),
        request_id=data.get("request_id") or request_id,
        details={k: data[k] for k in ("current_balance", "required_balance") if k in data},
    )


def _chunk_text(data: dict[str, Any]) -> str:
    for key in ("delta", "text", "content", "chunk"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


async def _sse_events(
    response: httpx.Response, request_id: str | None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) pairs of a Server-Sent Events body."""
    name = ""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if lines:
                raw = "\n".join(lines)
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise protocol_error(
                        "openmarlin", "malformed stream data from OpenMarlin", request_id
                    ) from None
                yield name or "message", data if isinstance(data, dict) else {"text": data}
            name, lines = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value.strip()
        elif field == "data":
            lines.append(value)
    if lines:
        # A final event without its blank line: still an event.
        try:
            data = json.loads("\n".join(lines))
        except ValueError:
            raise protocol_error(
                "openmarlin", "malformed stream data from OpenMarlin", request_id
            ) from None
        yield name or "message", data if isinstance(data, dict) else {"text": data}
