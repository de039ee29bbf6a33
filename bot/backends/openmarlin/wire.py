"""OpenMarlin's HTTP API as pydantic models, and its error envelope as a BackendError.

Registration sessions, executions (JSON or SSE events), models with providers, tasks, billing.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.errors import BackendError, parse_retry_after

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
        """`{amount, unit}`, a bare number or numeric string; None when unreadable.

        A dict without `amount` (such as `{"subtotal": {…}}`) is not an amount of 0.
        """
        if isinstance(value, dict):
            if "amount" not in value:
                return None
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


# Units a settlement may be stated in that budgets count as USD (a credit is taken as $1).
USD_UNITS = frozenset({"usd", "credit", "credits"})
# Budget estimates (OpenMarlin publishes no prices): an execution, and each 5 s of a task, are
# held at these until the settlement says what they cost. A task's hold outlives the longest
# watch (30 minutes by default) before it stops counting.
EXECUTION_ESTIMATE = Decimal("0.10")
TASK_ESTIMATE_PER_5S = Decimal("1.00")
TASK_HOLD_S = 2400.0


def task_estimate(duration_ms: int | None) -> Decimal:
    """What a task of `duration_ms` (5 s when unsaid) is held at."""
    fives = max(1, -(-(duration_ms or 5000) // 5000))
    return TASK_ESTIMATE_PER_5S * fives


def settlement_of(value: Any) -> tuple[Decimal | None, Literal["settlement", "estimate"]]:
    """The charge a `settlement` states, `{amount, unit}` or nested (`{"subtotal": {…}}`, a
    `total` preferred); (None, "estimate") when it states none in a unit budgets count."""
    amount = Amount.lenient(value) if isinstance(value, dict) else None
    if amount is None and isinstance(value, dict):
        nested = [value[k] for k in ("total", "subtotal") if isinstance(value.get(k), dict)]
        nested += [v for v in value.values() if isinstance(v, dict)]
        amount = next((a for v in nested if (a := Amount.lenient(v)) is not None), None)
    if amount is None or amount.unit.lower() not in USD_UNITS or amount.amount < 0:
        return None, "estimate"
    return amount.amount, "settlement"


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
    # A bare number in the skill's billing.py; kept as sent, whatever its shape.
    measured_units: Any = None
    # `{amount, unit}` per the contract; kept as sent so a nested shape still reads.
    settlement: Any = None


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


_DEFAULT_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    404: "not_found",
    429: "rate_limited",
}


def _envelope(payload: dict[str, Any]) -> tuple[str, str, Any, dict[str, Any]]:
    """(code, message, request_id, details) of an error body; empty where it says nothing."""
    err = payload.get("error_code") or payload.get("error")
    code = message = ""
    if isinstance(err, dict):
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")
    elif isinstance(err, str):
        code = err
    message = message or str(payload.get("message") or "")
    details: dict[str, Any] = {
        key: payload[key]
        for key in ("workspace_id", "current_balance", "required_balance")
        if key in payload
    }
    return code, message, payload.get("request_id"), details


def openmarlin_error(response: httpx.Response, body: bytes | None = None) -> BackendError:
    """Map `{"error": "<code>"}` and the structured 402 to a BackendError.

    The 402's balances travel in `details` (see InsufficientBalance.from_error).
    """
    raw = body if body is not None else response.content
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    code, message, body_request_id, details = (
        _envelope(payload) if isinstance(payload, dict) else ("", "", None, {})
    )
    request_id = response.headers.get("x-request-id") or body_request_id
    status = response.status_code
    if not code:
        code = _DEFAULT_CODES.get(status, "server_error" if status >= 500 else f"http_{status}")
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
