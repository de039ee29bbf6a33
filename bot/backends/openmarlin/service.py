"""OpenMarlin client: device-flow registration, executions (JSON or SSE), tasks, billing.

Knows HTTP and OpenMarlin's contract (reference/backends.md), nothing about chat platforms.
`server_url` is a bare origin; every path below starts with /v1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.errors import BackendError, parse_retry_after, protocol_error, transport_error
from bot.core.http import DEFAULT_RETRY, RetryPolicy, with_429_retry

# The referral endpoint is not published; this is the one place its path lives.
REFERRAL_PATH = "/v1/referrals/link"

_M = TypeVar("_M", bound=BaseModel)

AuthFlow = Literal["device", "workos_callback"]
RegistrationState = Literal["pending_external_auth", "completed", "expired"]
TaskState = Literal["queued", "running", "succeeded", "failed"]
TopUpState = Literal["pending_payment", "credit_applied", "payment_failed"]

# Error codes that describe how a request was routed to a provider (the seed's list).
ROUTING_CODES = frozenset(
    {
        "invalid_routing_labels",
        "provider_unavailable",
        "provider_label_mismatch",
        "provider_route_not_found",
        "execution_provider_not_found",
        "execution_provider_ambiguous",
        "execution_kind_not_available",
    }
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Amount(_Wire):
    """A quantity of money-like units (credits)."""

    amount: Decimal = Decimal(0)
    unit: str = "credits"

    @classmethod
    def lenient(cls, value: Any, unit: str = "credits") -> Amount | None:
        """`{amount, unit}`, a bare number or numeric string; None when unreadable."""
        if isinstance(value, dict):
            try:
                return cls.model_validate(value)
            except ValidationError:
                return None
        if isinstance(value, bool) or value is None:
            return None
        try:
            return cls(amount=Decimal(str(value)), unit=unit)
        except (InvalidOperation, ValidationError):
            return None


# --- registration ----------------------------------------------------------------------------


class Handoff(_Wire):
    """How the person continues outside chat: a device code or a browser callback."""

    type: str = "device"
    device_code: str | None = None
    callback_state: str | None = None
    authorization_url: str | None = None
    redirect_uri: str | None = None


class Workspace(_Wire):
    """The workspace a registration completed into."""

    workspace_id: str
    slug: str | None = None
    display_name: str | None = None


class ProviderIdentity(_Wire):
    """Who signed in."""

    provider: str | None = None
    provider_subject: str | None = None
    primary_email: str | None = None


class Completion(_Wire):
    """What a completed registration produced."""

    account_id: str | None = None
    is_new_account: bool | None = None
    workspace: Workspace | None = None
    provider_identity: ProviderIdentity | None = None
    credential_bootstrap: dict[str, Any] | None = None


class RegistrationSession(_Wire):
    """A registration session (POST/GET /v1/registration/sessions)."""

    registration_session_id: str
    state: str
    auth_flow: str | None = None
    provider: str | None = None
    created_at: str | None = None
    expires_at: str | None = None
    handoff: Handoff = Field(default_factory=Handoff)
    completion: Completion | None = None


class ApiKeyInfo(_Wire):
    """A workspace API key, without its secret."""

    key_id: str
    workspace_id: str | None = None
    status: str | None = None
    created_at: str | None = None
    last_used_at: str | None = None
    label: str | None = None


class BootstrappedKey(BaseModel):
    """The first API key of a registration; `secret` is shown by the server exactly once."""

    api_key: ApiKeyInfo
    secret: str = Field(repr=False)


# --- executions ------------------------------------------------------------------------------


class ExecutionRequest(BaseModel):
    """Body of POST /v1/executions. Unset routing fields are left out so the server chooses."""

    instruction: str
    kind: Literal["agent_run"] = "agent_run"
    stream: bool = True
    model: str | None = None
    provider_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    agent_id: str | None = None
    session_key: str | None = None
    timeout_ms: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body: empty routing hints omitted rather than sent as null or {}."""
        return self.model_dump(exclude_none=True, exclude={"labels"} if not self.labels else set())


class ExecutionStart(BaseModel):
    """`execution.start`: the server accepted the run and picked a route."""

    kind: Literal["start"] = "start"
    request_id: str | None = None
    provider_id: str | None = None
    model: str | None = None


class ExecutionChunk(BaseModel):
    """`execution.chunk`: more text."""

    kind: Literal["chunk"] = "chunk"
    text: str


class ExecutionResult(BaseModel):
    """`execution.end`, or the whole JSON answer when the server did not stream."""

    kind: Literal["end"] = "end"
    request_id: str | None = None
    output: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    streamed_text: str | None = None
    provider_id: str | None = None
    model: str | None = None
    streamed: bool = False

    @property
    def text(self) -> str:
        """The output as text (structured output as JSON)."""
        if self.output is None:
            return self.streamed_text or ""
        if isinstance(self.output, str):
            return self.output
        if isinstance(self.output, dict):
            for key in ("text", "answer", "content", "message"):
                if isinstance(self.output.get(key), str):
                    return str(self.output[key])
        return "```json\n" + json.dumps(self.output, indent=2, ensure_ascii=False) + "\n```"


ExecutionEvent = ExecutionStart | ExecutionChunk | ExecutionResult


# --- models ----------------------------------------------------------------------------------


class ModelProvider(_Wire):
    """One provider (node) that serves a model, with its routing labels."""

    provider_id: str
    model_providers: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class MarlinModel(_Wire):
    """An exact model ref and the providers advertising it."""

    id: str
    providers: list[ModelProvider] = Field(default_factory=list)

    def provider(self, provider_id: str) -> ModelProvider | None:
        """The entry for `provider_id`, if it advertises this model."""
        return next((p for p in self.providers if p.provider_id == provider_id), None)


# --- tasks -----------------------------------------------------------------------------------


class TaskInput(BaseModel):
    """`input` of POST /v1/tasks."""

    prompt: str
    media_urls: list[str] | None = None
    media_ids: list[str] | None = None
    duration_ms: int | None = None
    aspect_ratio: str | None = None


class TaskRequest(BaseModel):
    """Body of POST /v1/tasks; it has no routing fields (the server rejects them)."""

    kind: Literal["video"] = "video"
    input: TaskInput
    metadata: dict[str, str] | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body without empty optional fields."""
        return self.model_dump(exclude_none=True)


class TaskStatus(_Wire):
    """GET /v1/tasks/:id."""

    task_id: str
    status: str
    provider_id: str | None = None
    workspace_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: Any = None
    output: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        """Succeeded or failed."""
        return self.status in ("succeeded", "failed")

    @property
    def artifact_url(self) -> str | None:
        """The video or artifact URL of a finished task."""
        out = self.output or {}
        for key in ("video_url", "artifact_url", "url"):
            if isinstance(out.get(key), str):
                return str(out[key])
        return None

    def error_code_and_message(self) -> tuple[str, str]:
        """The failure as (code, message), whatever shape the server used."""
        err = self.error
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("error") or "task_failed")
            return code, str(err.get("message") or "The task failed.")
        if isinstance(err, str) and err:
            return err, "The task failed."
        return "task_failed", "The task failed."


# --- billing ---------------------------------------------------------------------------------


class Balance(_Wire):
    """GET /v1/balance."""

    workspace_id: str | None = None
    available_balance: Amount
    updated_at: str | None = None


class UsageEvent(_Wire):
    """One metered use."""

    created_at: str | None = None
    capability: str | None = None
    status: str | None = None
    provider_id: str | None = None
    request_id: str | None = None
    measured_units: Any = None
    settlement: Amount | None = None


class LedgerEntry(_Wire):
    """One credit or debit."""

    created_at: str | None = None
    type: str | None = None
    status: str | None = None
    amount: Amount | None = None
    reference_id: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Any:
        return Amount.lenient(value)


class TopUpSession(_Wire):
    """POST/GET /v1/topup/sessions."""

    topup_session_id: str
    workspace_id: str | None = None
    requested_amount: Amount | None = None
    status: str
    created_at: str | None = None
    completed_at: str | None = None
    stripe_reference: str | None = None
    checkout_url: str | None = None
    credited_ledger_entry_id: str | None = None

    @field_validator("requested_amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Any:
        return Amount.lenient(value)


class InsufficientBalance(BaseModel):
    """The structured 402: workflow input for a top-up, not a generic failure."""

    message: str = "Workspace balance is insufficient for this request."
    workspace_id: str | None = None
    current: Amount
    required: Amount

    @property
    def shortfall(self) -> Decimal:
        """How much is missing (never negative)."""
        return max(self.required.amount - self.current.amount, Decimal(0))

    @classmethod
    def from_error(cls, error: BackendError) -> InsufficientBalance | None:
        """The 402 details carried by a BackendError, if it is one."""
        if error.code != "insufficient_balance":
            return None
        current = Amount.lenient(error.details.get("current_balance"))
        required = Amount.lenient(error.details.get("required_balance"))
        if current is None or required is None:
            return None
        return cls(
            message=error.message,
            workspace_id=error.details.get("workspace_id"),
            current=current,
            required=required,
        )


# --- errors ----------------------------------------------------------------------------------


def openmarlin_error(response: httpx.Response, body: bytes | None = None) -> BackendError:
    """Map `{"error": "<code>"}` and the structured 402 to a BackendError.

    The 402's balances travel in `details` (see InsufficientBalance.from_error).
    """
    raw = body if body is not None else response.content
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    details: dict[str, Any] = {}
    code = ""
    message = ""
    request_id = response.headers.get("x-request-id")
    if isinstance(payload, dict):
        err = payload.get("error_code") or payload.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or "")
            message = str(err.get("message") or "")
        elif isinstance(err, str):
            code = err
        message = message or str(payload.get("message") or "")
        request_id = request_id or payload.get("request_id")
        for key in ("workspace_id", "current_balance", "required_balance"):
            if key in payload:
                details[key] = payload[key]
    status = response.status_code
    if not code:
        code = {
            400: "invalid_request",
            401: "invalid_api_key",
            402: "insufficient_balance",
            404: "not_found",
            429: "rate_limited",
        }.get(status, "server_error" if status >= 500 else f"http_{status}")
    if not message:
        text = raw[:200].decode("utf-8", "replace").strip() if raw else ""
        message = text if text and payload is None else (response.reason_phrase or code)
    return BackendError(
        "openmarlin",
        status,
        code,
        message,
        request_id=str(request_id) if request_id else None,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        details=details,
    )


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

        async def call() -> httpx.Response:
            try:
                return await self.http.request(
                    method, self._url(path), json=body, headers=headers, params=params
                )
            except httpx.HTTPError as exc:
                raise transport_error("openmarlin", exc) from None

        # A 429 means nothing started, so even a paid POST may be resent once.
        return await with_429_retry(call, openmarlin_error, self.retry)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise protocol_error(
                "openmarlin",
                f"unreadable JSON from {response.request.url.path}",
                response.headers.get("x-request-id"),
            ) from None

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
        attempts = 0
        while True:
            wait: float | None = None
            try:
                async with self.http.stream(
                    "POST",
                    self._url("/v1/executions"),
                    json=request.body(),
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    if response.status_code >= 400:
                        error = openmarlin_error(response, await response.aread())
                        wait = self.retry.wait_for(error)
                        if wait is None or attempts >= self.retry.max_retries_on_429:
                            raise error
                        attempts += 1
                    else:
                        async for event in self._read_execution(response):
                            yield event
                        return
            except httpx.HTTPError as exc:
                # Once an execution has started, resending could run (and bill) it twice.
                raise transport_error("openmarlin", exc) from None
            await asyncio.sleep(wait or 0.0)

    async def _read_execution(self, response: httpx.Response) -> AsyncIterator[ExecutionEvent]:
        request_id = response.headers.get("x-request-id")
        ctype = response.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            raw = await response.aread()
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise protocol_error(
                    "openmarlin", "unreadable execution answer", request_id
                ) from None
            if not isinstance(data, dict):
                raise protocol_error("openmarlin", "unexpected execution answer", request_id)
            yield _result(data, request_id, streamed=False)
            return
        start = ExecutionStart(request_id=request_id)
        parts: list[str] = []
        async for name, data in _sse_events(response, request_id):
            if name == "execution.start":
                start = ExecutionStart(
                    request_id=data.get("request_id") or request_id,
                    provider_id=data.get("provider_id"),
                    model=data.get("model"),
                )
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
                code = data.get("error") or data.get("error_code") or data.get("code")
                raise BackendError(
                    "openmarlin",
                    200,
                    str(code or "execution_failed"),
                    str(data.get("message") or "the execution failed"),
                    request_id=data.get("request_id") or request_id,
                    details={
                        k: data[k] for k in ("current_balance", "required_balance") if k in data
                    },
                )
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
