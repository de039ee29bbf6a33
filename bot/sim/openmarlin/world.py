"""The OpenMarlin simulator's world: providers and routing, workspaces and money, sessions, tasks.

Pure data and rules (no HTTP): state that depends on time is computed from the clock on read,
so nothing runs in the background and a test can drive everything with a fake clock.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.sim.serving import SimHttpError

SIGNUP_GRANT = Decimal(10)
UNIT = "credits"
TASK_ASPECT_RATIOS = frozenset({"16:9", "9:16", "1:1"})
KNOWN_AGENTS = frozenset({"default", "researcher"})
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9_.\-/]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
FAIL_MARKER = "[[fail]]"
# `completion.credential_bootstrap.status`: the skill says it stays "pending_api_key_issue"
# until the key is issued; the value afterwards is not published (this one is the sim's).
BOOTSTRAP_PENDING = "pending_api_key_issue"
BOOTSTRAP_ISSUED = "api_key_issued"


def new_id(prefix: str, nbytes: int = 8) -> str:
    """A random id such as `task_1f2e…`."""
    return f"{prefix}{secrets.token_hex(nbytes)}"


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC with a Z suffix (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def num(value: Decimal) -> int | float:
    """A Decimal as a JSON number (integral values as integers)."""
    return int(value) if value == value.to_integral_value() else float(value)


def money(value: Decimal) -> dict[str, Any]:
    """`{"amount": …, "unit": "credits"}`."""
    return {"amount": num(value), "unit": UNIT}


class ApiError(SimHttpError):
    """An OpenMarlin error: `{"error": code}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(status, code, message or code.replace("_", " "))


class InsufficientBalance(SimHttpError):
    """The structured 402."""

    def __init__(self, workspace_id: str, current: Decimal, required: Decimal) -> None:
        super().__init__(402, "insufficient_balance", "insufficient balance")
        self.workspace_id = workspace_id
        self.current = current
        self.required = required

    def body(self) -> dict[str, Any]:
        """The 402 body exactly as the reference shapes it."""
        return {
            "error_code": "insufficient_balance",
            "message": "Workspace balance is insufficient for this request.",
            "workspace_id": self.workspace_id,
            "current_balance": money(self.current),
            "required_balance": money(self.required),
        }


def echoed_metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `metadata`, to echo exactly as sent (None when absent); 400 if not an object."""
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ApiError(400, "invalid_request", "metadata must be an object")
    return metadata


# --- providers and routing -------------------------------------------------------------------


@dataclass
class Provider:
    """A node that runs executions (agent_run) and/or tasks (video)."""

    provider_id: str
    models: tuple[str, ...]
    labels: dict[str, str]
    kinds: frozenset[str] = frozenset({"agent_run"})
    connected: bool = True
    model_providers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether every requested label is one of this provider's."""
        return all(self.labels.get(k) == v for k, v in labels.items())


def default_providers() -> list[Provider]:
    """The simulated fleet: two healthy nodes, one offline, one render-only executor."""
    return [
        Provider(
            "node-a",
            ("openai-codex/gpt-5.4", "anthropic/claude-sonnet-4-6"),
            {"region": "eu", "gpu": "a100", "tier": "standard"},
            model_providers={
                "openai-codex/gpt-5.4": ("openai",),
                "anthropic/claude-sonnet-4-6": ("anthropic", "bedrock"),
            },
        ),
        Provider(
            "node-b",
            ("openai-codex/gpt-5.4", "qwen/qwen3-coder-plus"),
            {"region": "us", "tier": "standard"},
            model_providers={
                "openai-codex/gpt-5.4": ("azure-openai",),
                "qwen/qwen3-coder-plus": ("dashscope",),
            },
        ),
        Provider(
            "node-c",
            ("qwen/qwen3-coder-plus",),
            {"region": "ap", "tier": "batch"},
            connected=False,
            model_providers={"qwen/qwen3-coder-plus": ("dashscope",)},
        ),
        Provider(
            "render-1",
            (),
            {"region": "us", "media": "video"},
            kinds=frozenset({"video"}),
        ),
    ]


def check_labels(labels: Any) -> dict[str, str]:
    """Labels must be a flat object of short lower-case keys and simple values."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ApiError(400, "invalid_routing_labels", "labels must be an object of strings")
    for k, v in labels.items():
        if not isinstance(v, str) or not _LABEL_KEY.fullmatch(k) or not _LABEL_VALUE.fullmatch(v):
            raise ApiError(400, "invalid_routing_labels", f"label {k!r} is malformed")
    return dict(labels)


def route(
    providers: list[Provider],
    *,
    model: str | None,
    provider_id: str | None,
    labels: dict[str, str],
    kind: str = "agent_run",
) -> tuple[Provider, str]:
    """Pick (provider, model) for an execution, or raise the routing error the server would."""
    if provider_id:
        chosen = _named_provider(providers, provider_id, model=model, labels=labels, kind=kind)
    else:
        chosen = _automatic_provider(providers, model=model, labels=labels, kind=kind)
    return chosen, model or chosen.models[0]


def _automatic_provider(
    providers: list[Provider], *, model: str | None, labels: dict[str, str], kind: str
) -> Provider:
    """The first connected provider serving `model` (labels must single one out); else the error."""
    candidates = [p for p in providers if p.connected and kind in p.kinds]
    if model:
        candidates = [p for p in candidates if model in p.models]
        if not candidates:
            raise ApiError(404, "provider_route_not_found", f"no connected provider serves {model}")
    if labels:
        candidates = [p for p in candidates if p.matches(labels)]
        if len(candidates) > 1:
            raise ApiError(
                409,
                "execution_provider_ambiguous",
                f"{len(candidates)} providers match; narrow the labels or name a provider",
            )
    if not candidates:
        raise ApiError(404, "execution_provider_not_found", "no eligible provider matched")
    return candidates[0]


def _named_provider(
    providers: list[Provider],
    provider_id: str,
    *,
    model: str | None,
    labels: dict[str, str],
    kind: str,
) -> Provider:
    """The provider a request named, when it can serve it; else the server's routing error."""
    chosen = next((p for p in providers if p.provider_id == provider_id), None)
    if chosen is None:
        raise ApiError(
            404, "execution_provider_not_found", f"no provider {provider_id} is registered"
        )
    if not chosen.connected:
        raise ApiError(503, "provider_unavailable", f"{provider_id} is not connected")
    if kind not in chosen.kinds:
        raise ApiError(422, "execution_kind_not_available", f"{provider_id} does not run {kind}")
    if labels and not chosen.matches(labels):
        raise ApiError(422, "provider_label_mismatch", f"{provider_id} does not carry those labels")
    if model and model not in chosen.models:
        raise ApiError(404, "provider_route_not_found", f"{provider_id} does not serve {model}")
    return chosen


def compose_answer(instruction: str, model: str, provider_id: str) -> str:
    """A deterministic, plausible answer to an instruction."""
    text = instruction.lower()
    if "hello" in text or text.strip() in ("hi", "hey"):
        body = "Hello! 👋 OpenMarlin is up and this agent run reached you."
    elif "exchange rate" in text or "usd/cny" in text:
        body = "USD/CNY is 7.1834 today (simulated rate, for the demo only)."
    elif "summar" in text:
        body = (
            "Summary: the page describes the topic in three parts — background, the main "
            "argument and a short conclusion. Key point: keep it simple."
        )
    elif "translat" in text:
        body = "Translation: « Bonjour tout le monde » (simulated)."
    else:
        body = f"Done. I worked on: “{instruction.strip()}”. Result: completed without issues."
    return f"{body}\n\n_{model} on {provider_id}_"


# --- accounts, keys and money ----------------------------------------------------------------


@dataclass
class LedgerRow:
    """One ledger entry of a workspace."""

    entry_id: str
    created_at: float
    type: str
    status: str
    amount: Decimal
    reference_id: str | None

    def body(self) -> dict[str, Any]:
        """As GET /v1/ledger shows it."""
        return {
            "ledger_entry_id": self.entry_id,
            "created_at": iso(self.created_at),
            "type": self.type,
            "status": self.status,
            "amount": money(self.amount),
            "reference_id": self.reference_id,
        }


@dataclass
class UsageRow:
    """One usage event of a workspace."""

    created_at: float
    capability: str
    status: str
    provider_id: str
    request_id: str
    measured_units: int | float  # a bare number, as the skill's billing.py reads it
    settlement: Decimal

    def body(self) -> dict[str, Any]:
        """As GET /v1/usage-events shows it."""
        return {
            "created_at": iso(self.created_at),
            "capability": self.capability,
            "status": self.status,
            "provider_id": self.provider_id,
            "request_id": self.request_id,
            "measured_units": self.measured_units,
            "settlement": money(self.settlement),
        }


@dataclass
class Workspace:
    """A workspace: its balance, ledger and usage."""

    workspace_id: str
    slug: str
    display_name: str
    balance: Decimal = Decimal(0)
    updated_at: float = 0.0
    ledger: list[LedgerRow] = field(default_factory=list)
    usage: list[UsageRow] = field(default_factory=list)

    def post(self, now: float, type_: str, amount: Decimal, reference_id: str | None) -> LedgerRow:
        """Move the balance and record why."""
        row = LedgerRow(new_id("le_"), now, type_, "posted", amount, reference_id)
        self.ledger.append(row)
        self.balance += amount
        self.updated_at = now
        return row

    def require(self, cost: Decimal) -> None:
        """Raise the structured 402 when `cost` is not covered."""
        if self.balance < cost:
            raise InsufficientBalance(self.workspace_id, self.balance, cost)


@dataclass
class ApiKey:
    """A workspace API key."""

    key_id: str
    secret: str
    workspace_id: str
    label: str
    created_at: float
    status: str = "active"
    last_used_at: float | None = None

    def body(self) -> dict[str, Any]:
        """The key without its secret."""
        return {
            "key_id": self.key_id,
            "workspace_id": self.workspace_id,
            "status": self.status,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "label": self.label,
        }


# --- registration ----------------------------------------------------------------------------


@dataclass
class Registration:
    """A registration session; `decision` is what the person chose on the sign-in page."""

    session_id: str
    auth_flow: str
    created_at: float
    expires_at: float
    user_code: str
    secret: str  # the device_code or the callback_state
    authorization_url: str
    redirect_uri: str | None = None
    decision: str | None = None  # "approve" | "deny"
    decided_at: float | None = None
    email: str = "demo@example.com"
    account_id: str | None = None
    workspace_id: str | None = None
    key_issued: bool = False

    def state(self, now: float) -> str:
        """pending_external_auth, completed or expired (a denial ends the session too)."""
        if self.decision == "approve":
            return "completed"
        if self.decision == "deny" or now >= self.expires_at:
            return "expired"
        return "pending_external_auth"

    def body(self, now: float, workspace: Workspace | None) -> dict[str, Any]:
        """As the registration endpoints show it."""
        handoff: dict[str, Any] = {"authorization_url": self.authorization_url}
        if self.auth_flow == "device":
            handoff.update(type="device", device_code=self.secret)
        else:
            handoff.update(
                type="browser", callback_state=self.secret, redirect_uri=self.redirect_uri
            )
        out: dict[str, Any] = {
            "registration_session_id": self.session_id,
            "state": self.state(now),
            "auth_flow": self.auth_flow,
            "provider": "workos",
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "handoff": handoff,
        }
        if self.state(now) == "completed" and workspace is not None:
            out["completion"] = {
                "account_id": self.account_id,
                "is_new_account": True,
                "workspace": {
                    "workspace_id": workspace.workspace_id,
                    "slug": workspace.slug,
                    "display_name": workspace.display_name,
                },
                "provider_identity": {
                    "provider": "workos",
                    "provider_subject": f"user_{self.session_id[-8:]}",
                    "primary_email": self.email,
                },
                "credential_bootstrap": {
                    "status": BOOTSTRAP_ISSUED if self.key_issued else BOOTSTRAP_PENDING
                },
            }
        return out


# --- tasks and top-ups -----------------------------------------------------------------------


@dataclass
class Task:
    """A long-running video task; its status is a function of the clock."""

    task_id: str
    workspace_id: str
    prompt: str
    created_at: float
    started_at: float
    completed_at: float
    cost: Decimal
    input: dict[str, Any]
    metadata: dict[str, Any] | None  # exactly what the submitter sent, or None
    provider_id: str = "render-1"
    fail: bool = False
    settled: bool = False

    def status(self, now: float) -> str:
        """queued → running → succeeded | failed."""
        if now >= self.completed_at:
            return "failed" if self.fail else "succeeded"
        if now >= self.started_at:
            return "running"
        return "queued"

    def body(self, now: float, base_url: str) -> dict[str, Any]:
        """As GET /v1/tasks/:id shows it."""
        status = self.status(now)
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "status": status,
            "provider_id": self.provider_id if status != "queued" else None,
            "workspace_id": self.workspace_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(min(now, self.completed_at)),
            "started_at": iso(self.started_at) if status != "queued" else None,
            "completed_at": iso(self.completed_at) if status in ("succeeded", "failed") else None,
            "error": None,
            "output": None,
            "metadata": self.metadata,
        }
        if status == "failed":
            out["error"] = {
                "code": "generation_failed",
                "message": "The video executor could not render this prompt.",
            }
        elif status == "succeeded":
            out["output"] = {
                "video_url": f"{base_url}/_media/tasks/{self.task_id}.mp4",
                "thumbnail_url": f"{base_url}/_media/tasks/{self.task_id}.png",
                "duration_ms": self.input.get("duration_ms", 5000),
                # Nested, the shape real task outputs were seen with: {"subtotal": {amount, unit}}.
                "settlement": {"subtotal": money(self.cost)},
            }
        return out


@dataclass
class TopUp:
    """A top-up session; the checkout page decides whether it pays."""

    session_id: str
    workspace_id: str
    amount: Decimal
    created_at: float
    checkout_url: str
    stripe_reference: str
    status: str = "pending_payment"
    completed_at: float | None = None
    ledger_entry_id: str | None = None

    def body(self) -> dict[str, Any]:
        """As the top-up endpoints show it."""
        return {
            "topup_session_id": self.session_id,
            "workspace_id": self.workspace_id,
            "requested_amount": money(self.amount),
            "status": self.status,
            "created_at": iso(self.created_at),
            "completed_at": iso(self.completed_at),
            "stripe_reference": self.stripe_reference,
            "checkout_url": self.checkout_url,
            "credited_ledger_entry_id": self.ledger_entry_id,
        }
