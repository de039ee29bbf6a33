"""OpenClaw Token's HTTP API as pydantic models, and its error envelope as a BackendError.

Success bodies are `{"data": …}` (unwrapped by the service), errors `{"error": {"code",
"message"}}`, except the device flow's flat `{"error": "authorization_pending", …}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, Self, get_args

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from bot.core.errors import BackendError, openai_error, parse_retry_after

LimitReset = Literal["daily", "weekly", "monthly"]
HistoryType = Literal["purchase", "usage", "refund", "auto_topup"]
DeviceStatus = Literal[
    "success",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "access_denied",
    "bad_device_code",
]

DEVICE_STATUSES = frozenset(get_args(DeviceStatus))

_DEFAULT_CODES = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_CREDITS",
    404: "NOT_FOUND",
    409: "CONFLICT",
    410: "GONE",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "UPSTREAM_UNREACHABLE",
}


# --- answers and request bodies ---------------------------------------------------------


class WireModel(BaseModel):
    """Base of every answer model: unknown fields kept, the request id attached.

    An answer also keeps the JSON it was read from: `model_dump(mode="json")` (what `--json`
    prints) gives that, numbers as numbers and no field the server did not send.
    """

    model_config = ConfigDict(extra="allow")

    # From the x-request-id header, not the body; shown in failure and audit lines.
    request_id: str | None = Field(None, exclude=True)
    _received: Any = PrivateAttr(default=None)

    def keep_received(self, raw: Any) -> None:
        """Remember `raw` (this answer's JSON) here and in the nested answers it holds."""
        self._received = raw
        if not isinstance(raw, dict):
            return
        for name in type(self).model_fields:
            value, sent = getattr(self, name, None), raw.get(name)
            if isinstance(value, WireModel):
                value.keep_received(sent)
            elif isinstance(value, list) and isinstance(sent, list) and len(sent) == len(value):
                for item, item_raw in zip(value, sent, strict=True):
                    if isinstance(item, WireModel):
                        item.keep_received(item_raw)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """As pydantic's; in JSON mode without include/exclude, the JSON as received."""
        plain = not any(kwargs.get(k) for k in ("include", "exclude", "exclude_unset"))
        if kwargs.get("mode") == "json" and plain and isinstance(self._received, dict):
            return json.loads(json.dumps(self._received))
        return super().model_dump(**kwargs)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """As pydantic's; a copy with changes no longer is what the server sent."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._received = None
        return copy


class AuthResult(WireModel):
    """register / login / rotate: the (new) management key and the account email."""

    management_key: str = Field(repr=False)
    email: str
    created_at: str | None = None
    last_login: str | None = None
    rotated_at: str | None = None


class Account(WireModel):
    """GET /auth/me."""

    email: str
    plan: str = "free"
    credits_remaining: Decimal = Decimal(0)
    keys_count: int = 0
    created_at: str | None = None


class DeviceCode(WireModel):
    """POST /oauth/device/code."""

    device_code: str = Field(repr=False)
    user_code: str
    verification_uri: str
    interval: float = 5.0
    expires_in: float = 900.0


class DeviceToken(WireModel):
    """One poll of POST /oauth/device/token: success carries the access token."""

    status: DeviceStatus
    access_token: str | None = Field(None, repr=False)
    token_type: str | None = None
    interval: float | None = None
    description: str | None = None


class DeviceGrant(WireModel):
    """A successful device-token poll: the access token, inside `{"data": …}`."""

    access_token: str = Field(repr=False)
    token_type: str | None = None


class UserInfo(WireModel):
    """GET /oauth/userinfo: the account behind a GitHub sign-in."""

    management_key: str = Field(repr=False)
    email: str
    name: str | None = None
    avatar_url: str | None = None
    merged: bool = False


class Credits(WireModel):
    """GET /credits."""

    total_credits: Decimal
    total_usage: Decimal
    remaining: Decimal


class Purchase(WireModel):
    """POST /credits/purchase: a completed charge, or a Stripe checkout to finish."""

    transaction_id: str | None = None
    amount: Decimal | None = None
    platform_fee: Decimal | None = None
    total_charged: Decimal | None = None
    new_balance: Decimal | None = None
    created_at: str | None = None
    checkout_url: str | None = None
    session_id: str | None = None


class Transaction(WireModel):
    """One credits history item."""

    id: str
    type: str
    amount: Decimal
    balance_after: Decimal | None = None
    description: str | None = None
    created_at: str | None = None


class HistoryPage(WireModel):
    """GET /credits/history."""

    items: list[Transaction] = Field(default_factory=list)
    total: int = 0
    limit: int = 20
    offset: int = 0
    has_more: bool = False


class AutoTopup(WireModel):
    """GET|PUT /credits/auto-topup."""

    enabled: bool = False
    threshold: Decimal = Decimal(5)
    amount: Decimal = Decimal(25)


class ProvisionedKey(WireModel):
    """A provisioned key; `key` is present only when created or rotated."""

    hash: str
    name: str
    key: str | None = Field(None, repr=False)
    credit_limit: Decimal | None = None
    limit_reset: LimitReset | None = None
    usage: Decimal = Decimal(0)
    disabled: bool = False
    created_at: str | None = None
    expires_at: str | None = None
    revoked: bool = False
    revoked_at: str | None = None


class ModelUsage(WireModel):
    """Per-model usage of one key."""

    model: str
    requests: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)


class KeyDetail(ProvisionedKey):
    """GET /keys/:hash: the key plus its usage breakdown."""

    usage_daily: Decimal = Decimal(0)
    usage_weekly: Decimal = Decimal(0)
    usage_monthly: Decimal = Decimal(0)
    requests_count: int = 0
    model_usage: list[ModelUsage] = Field(default_factory=list)

    def period_usage(self) -> Decimal:
        """The usage the credit limit is measured against."""
        if self.limit_reset == "daily":
            return self.usage_daily
        if self.limit_reset == "weekly":
            return self.usage_weekly
        if self.limit_reset == "monthly":
            return self.usage_monthly
        return self.usage


class KeyList(WireModel):
    """GET /keys."""

    items: list[ProvisionedKey] = Field(default_factory=list)
    total: int = 0


class Revoked(WireModel):
    """DELETE /keys/:hash."""

    hash: str
    name: str
    revoked: bool = True
    revoked_at: str | None = None


class NewKey(BaseModel):
    """What `create_key` sends."""

    name: str
    credit_limit: Decimal | None = None
    limit_reset: LimitReset | None = None
    expires_at: str | None = None


# --- errors --------------------------------------------------------------------------------


def openclaw_error(response: httpx.Response, body: bytes | None = None) -> BackendError:
    """Map `{"error": {"code", "message"}}` — or the device flow's flat `{"error": "…"}`."""
    raw = body if body is not None else response.content
    try:
        payload: Any = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] = {}
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict):
            code, message = inner.get("code"), inner.get("message")
        elif isinstance(inner, str):
            code, message = inner, payload.get("error_description")
            if payload.get("interval") is not None:
                details["interval"] = payload["interval"]
    status = response.status_code
    if not message:
        text = raw[:200].decode("utf-8", "replace").strip() if raw else ""
        message = text or response.reason_phrase or f"HTTP {status}"
    return BackendError(
        "openclaw_token",
        status,
        str(code or _DEFAULT_CODES.get(status, f"HTTP_{status}")),
        str(message),
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        details=details,
    )


# The proxy's own refusals (proxy-auth middleware and the proxy route). Anything else on the
# proxy is the upstream model provider's error, which the server passes through unchanged.
_OWN_PROXY_CODES = frozenset(
    {
        "UNAUTHORIZED",
        "KEY_REVOKED",
        "KEY_DISABLED",
        "KEY_EXPIRED",
        "CREDIT_LIMIT_EXCEEDED",
        "INSUFFICIENT_CREDITS",
        "INVALID_INPUT",
        "UPSTREAM_UNREACHABLE",
        "PAYLOAD_TOO_LARGE",
        "INTERNAL_ERROR",
        "CONFLICT",
    }
)
_BALANCE_WORDS = re.compile(r"balance|quota|billing|credit|insufficient", re.IGNORECASE)
UPSTREAM_BALANCE = "upstream_insufficient_balance"


def _names_an_error(raw: bytes) -> bool:
    """Whether a body is an error envelope with its own code or type (not a bare status)."""
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return False
    inner = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(inner, dict):
        return bool(inner.get("code") or inner.get("type"))
    return isinstance(inner, str) and bool(inner)


def proxy_error(response: httpx.Response, body: bytes | None = None) -> BackendError:
    """The proxy's error; an upstream provider's (passed through) says whose it is.

    The server forwards a non-2xx answer of its upstream (the operator's provider account,
    e.g. AllToken's 402 insufficient_balance) as it came: such a code is renamed
    `upstream_<code>` and its message names the operator's account, never the user's credits.
    """
    error = openai_error("openclaw_token", response, body)
    if error.code in _OWN_PROXY_CODES or not _names_an_error(body or response.content):
        return error
    said = f"{error.code}: {error.message}"
    kind = str(error.details.get("type") or "")
    if error.status == 402 or _BALANCE_WORDS.search(f"{error.code} {kind}"):
        code = UPSTREAM_BALANCE
        message = (
            "the model provider behind this OpenClaw Token server is out of balance on the "
            "server operator's own account — this is not about your OpenClaw Token credits, "
            f"which were not charged. The provider said: {said}"
        )
    else:
        code = f"upstream_{error.code}"
        message = (
            "the model provider behind this OpenClaw Token server (the operator's upstream "
            f"account) refused the request. The provider said: {said}"
        )
    return BackendError(
        "openclaw_token",
        error.status,
        code,
        message,
        request_id=error.request_id,
        retry_after=error.retry_after,
        details={**error.details, "upstream": True, "upstream_code": error.code},
    )
