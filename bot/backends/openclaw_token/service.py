"""OpenClaw Token client: account, device flow, credits, provisioned keys, and the proxy.

Knows HTTP and the openclaw-token server contract (reference/backends.md), nothing about chat:
success bodies are `{"data": …}`, errors `{"error": {"code", "message"}}`, except the device
flow's flat `{"error": "authorization_pending", …}`. Calls time out after 15 s; only
idempotent calls (GET/PUT/PATCH, and a purchase carrying an Idempotency-Key) are retried on
network errors and 5xx, with exponential backoff, as the openclaw-token CLI does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar, get_args

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.backends.alltoken.service import AllTokenService, ChatMessage, ChatResult, ChatStream
from bot.core.errors import BackendError, parse_retry_after, protocol_error, transport_error
from bot.core.http import DEFAULT_RETRY, RetryPolicy

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

_DEVICE_STATUSES = frozenset(get_args(DeviceStatus))

MIN_PURCHASE = Decimal("5")
FEE_RATE = Decimal("0.055")
MIN_FEE = Decimal("0.80")
TIMEOUT_S = 15.0
RETRIES = 3
TRANSIENT = frozenset({500, 502, 503, 504})
# 429s that are business answers, not "slow down": resending cannot succeed.
_FINAL_429 = frozenset({"CREDIT_LIMIT_EXCEEDED"})
_CENT = Decimal("0.01")

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


# --- pure contract rules -------------------------------------------------------------------


def platform_fee(amount: Decimal) -> Decimal:
    """The purchase fee: round(max(amount × 5.5 %, 0.80), 2)."""
    return max(amount * FEE_RATE, MIN_FEE).quantize(_CENT, rounding=ROUND_HALF_UP)


def purchase_total(amount: Decimal) -> Decimal:
    """What the card is charged: the credits plus the fee."""
    return (amount + platform_fee(amount)).quantize(_CENT, rounding=ROUND_HALF_UP)


def period_start(period: LimitReset, now: datetime) -> datetime:
    """Start of the calendar period (UTC) that `now` falls in; weeks start on Monday."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_reset(period: LimitReset, now: datetime) -> datetime:
    """When the current period's usage starts counting from zero again."""
    start = period_start(period, now)
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


# --- wire models ---------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")

    # From the x-request-id header, not the body; shown in failure and audit lines.
    request_id: str | None = Field(None, exclude=True)


class AuthResult(_Wire):
    """register / login / rotate: the (new) management key and the account email."""

    management_key: str = Field(repr=False)
    email: str
    created_at: str | None = None
    last_login: str | None = None
    rotated_at: str | None = None


class Account(_Wire):
    """GET /auth/me."""

    email: str
    plan: str = "free"
    credits_remaining: Decimal = Decimal(0)
    keys_count: int = 0
    created_at: str | None = None


class DeviceCode(_Wire):
    """POST /oauth/device/code."""

    device_code: str = Field(repr=False)
    user_code: str
    verification_uri: str
    interval: float = 5.0
    expires_in: float = 900.0


class DeviceToken(_Wire):
    """One poll of POST /oauth/device/token: success carries the access token."""

    status: DeviceStatus
    access_token: str | None = Field(None, repr=False)
    token_type: str | None = None
    interval: float | None = None
    description: str | None = None


class _DeviceGrant(_Wire):
    access_token: str = Field(repr=False)
    token_type: str | None = None


class UserInfo(_Wire):
    """GET /oauth/userinfo: the account behind a GitHub sign-in."""

    management_key: str = Field(repr=False)
    email: str
    name: str | None = None
    avatar_url: str | None = None
    merged: bool = False


class Credits(_Wire):
    """GET /credits."""

    total_credits: Decimal
    total_usage: Decimal
    remaining: Decimal


class Purchase(_Wire):
    """POST /credits/purchase: a completed charge, or a Stripe checkout to finish."""

    transaction_id: str | None = None
    amount: Decimal | None = None
    platform_fee: Decimal | None = None
    total_charged: Decimal | None = None
    new_balance: Decimal | None = None
    created_at: str | None = None
    checkout_url: str | None = None
    session_id: str | None = None


class Transaction(_Wire):
    """One credits history item."""

    id: str
    type: str
    amount: Decimal
    balance_after: Decimal | None = None
    description: str | None = None
    created_at: str | None = None


class HistoryPage(_Wire):
    """GET /credits/history."""

    items: list[Transaction] = Field(default_factory=list)
    total: int = 0
    limit: int = 20
    offset: int = 0
    has_more: bool = False


class AutoTopup(_Wire):
    """GET|PUT /credits/auto-topup."""

    enabled: bool = False
    threshold: Decimal = Decimal(5)
    amount: Decimal = Decimal(25)


class ProvisionedKey(_Wire):
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


class ModelUsage(_Wire):
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


class KeyList(_Wire):
    """GET /keys."""

    items: list[ProvisionedKey] = Field(default_factory=list)
    total: int = 0


class Revoked(_Wire):
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


_W = TypeVar("_W", bound=_Wire)


def _numbers(model: BaseModel, **dump: Any) -> dict[str, Any]:
    """A request body with Decimal amounts as JSON numbers (the server rejects strings)."""
    return {
        k: float(v) if isinstance(v, Decimal) else v for k, v in model.model_dump(**dump).items()
    }


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


def _relabel(exc: BackendError) -> BackendError:
    """An error from the OpenAI-compatible proxy client, attributed to OpenClaw Token."""
    message = exc.message
    if exc.code == "timeout":
        message = "the OpenClaw Token proxy did not answer in time"
    elif exc.code == "connection_error":
        message = "could not reach the OpenClaw Token proxy"
    elif exc.code == "bad_response":
        message = message.replace("AllToken", "the OpenClaw Token proxy")
    return BackendError(
        "openclaw_token",
        exc.status,
        exc.code,
        message,
        request_id=exc.request_id,
        retry_after=exc.retry_after,
        details=exc.details,
    )


# --- the client ----------------------------------------------------------------------------


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class OpenClawTokenService:
    """OpenClaw Token over the shared httpx client; every call takes the caller's own key."""

    http: httpx.AsyncClient
    base_url: str
    timeout_s: float = TIMEOUT_S
    retries: int = RETRIES
    backoff_s: float = 0.5
    retry: RetryPolicy = DEFAULT_RETRY
    sleep: Sleep = asyncio.sleep
    _proxy: AllTokenService | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    # --- plumbing ------------------------------------------------------------------------

    @property
    def proxy_base(self) -> str:
        """Origin of the OpenAI-compatible proxy (`…/v1/chat/completions` hangs off it).

        The CLI's default API base ends in /v1 while a local server is a bare origin; either
        way the proxy lives at <origin>/v1/chat/completions.
        """
        return self.base_url.removesuffix("/v1")

    @property
    def proxy_url(self) -> str:
        """The proxy's chat completions endpoint (for status displays)."""
        return f"{self.proxy_base}/v1/chat/completions"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        accept_flat_400: bool = False,
    ) -> httpx.Response:
        """One request: 15 s timeout, the shared 429 policy, backoff retries when idempotent."""
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        idempotent = method in ("GET", "PUT", "PATCH") or "Idempotency-Key" in all_headers
        url = f"{self.base_url}{path}"
        transient = 0
        rate_limited = 0
        while True:
            try:
                response = await self.http.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers=all_headers,
                    timeout=self.timeout_s,
                )
            except httpx.HTTPError as exc:
                if idempotent and transient < self.retries:
                    transient += 1
                    await self.sleep(self.backoff_s * 2 ** (transient - 1))
                    continue
                raise transport_error("openclaw_token", exc) from None
            if response.status_code < 400:
                return response
            if accept_flat_400 and response.status_code == 400:
                return response
            error = openclaw_error(response)
            if response.status_code in TRANSIENT and idempotent and transient < self.retries:
                transient += 1
                await self.sleep(self.backoff_s * 2 ** (transient - 1))
                continue
            if response.status_code == 429 and error.code not in _FINAL_429:
                wait = self.retry.wait_for(error)
                if wait is not None and rate_limited < self.retry.max_retries_on_429:
                    rate_limited += 1
                    await self.sleep(wait)
                    continue
            raise error

    @staticmethod
    def _payload(response: httpx.Response) -> Any:
        try:
            payload = response.json()
        except ValueError:
            raise protocol_error(
                "openclaw_token",
                f"unreadable JSON from {response.request.url.path}",
                response.headers.get("x-request-id"),
            ) from None
        return payload

    def _data(self, response: httpx.Response, model: type[_W]) -> _W:
        """Unwrap `{"data": …}` into `model`, with the response's request id attached."""
        payload = self._payload(response)
        data = payload.get("data") if isinstance(payload, dict) else None
        try:
            result = model.model_validate(data)
        except ValidationError:
            raise protocol_error(
                "openclaw_token",
                f"unexpected answer from {response.request.url.path}",
                response.headers.get("x-request-id"),
            ) from None
        result.request_id = response.headers.get("x-request-id")
        return result

    # --- account -------------------------------------------------------------------------

    async def register(self, email: str, password: str) -> AuthResult:
        """Create an account; its management key comes back once."""
        response = await self._call(
            "POST", "/auth/register", body={"email": email, "password": password}
        )
        return self._data(response, AuthResult)

    async def login(self, email: str, password: str) -> AuthResult:
        """Email/password sign-in. The server rotates the management key on every login."""
        response = await self._call(
            "POST", "/auth/login", body={"email": email, "password": password}
        )
        return self._data(response, AuthResult)

    async def me(self, key: str) -> Account:
        """The signed-in account."""
        return self._data(await self._call("GET", "/auth/me", key=key), Account)

    async def rotate(self, key: str) -> AuthResult:
        """A new management key; the old one stops working immediately."""
        return self._data(await self._call("POST", "/auth/rotate", key=key), AuthResult)

    # --- GitHub device flow --------------------------------------------------------------

    async def device_code(self, client_id: str) -> DeviceCode:
        """Start a device-flow sign-in."""
        response = await self._call("POST", "/oauth/device/code", body={"client_id": client_id})
        return self._data(response, DeviceCode)

    async def device_token(self, device_code: str) -> DeviceToken:
        """One poll; the flat 400 answers (pending, slow_down, expired…) are results, not errors."""
        response = await self._call(
            "POST",
            "/oauth/device/token",
            body={"device_code": device_code},
            accept_flat_400=True,
        )
        if response.status_code == 400:
            error = openclaw_error(response)
            code = error.code.lower()
            if code not in _DEVICE_STATUSES:
                raise error
            interval = error.details.get("interval")
            return DeviceToken.model_validate(
                {
                    "status": code,
                    "interval": interval if isinstance(interval, int | float) else None,
                    "description": error.message,
                    "request_id": error.request_id,
                }
            )
        token = self._data(response, _DeviceGrant)
        return DeviceToken(
            status="success",
            access_token=token.access_token,
            token_type=token.token_type,
            request_id=token.request_id,
        )

    async def userinfo(self, access_token: str) -> UserInfo:
        """The account (and its management key) behind a device-flow access token."""
        response = await self._call("GET", "/oauth/userinfo", key=access_token)
        return self._data(response, UserInfo)

    # --- credits -------------------------------------------------------------------------

    async def credits(self, key: str) -> Credits:
        """Total, used and remaining credits."""
        return self._data(await self._call("GET", "/credits", key=key), Credits)

    async def purchase(self, key: str, amount: Decimal, idempotency_key: str) -> Purchase:
        """Buy credits. The Idempotency-Key (kept 24 h by the server) makes a resend charge once."""
        response = await self._call(
            "POST",
            "/credits/purchase",
            key=key,
            body={"amount": float(amount)},
            headers={"Idempotency-Key": idempotency_key},
        )
        return self._data(response, Purchase)

    async def history(
        self, key: str, *, limit: int = 20, offset: int = 0, type_: HistoryType | None = None
    ) -> HistoryPage:
        """One page of credit transactions, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if type_:
            params["type"] = type_
        response = await self._call("GET", "/credits/history", key=key, params=params)
        return self._data(response, HistoryPage)

    async def auto_topup(self, key: str) -> AutoTopup:
        """The auto top-up settings."""
        return self._data(await self._call("GET", "/credits/auto-topup", key=key), AutoTopup)

    async def set_auto_topup(self, key: str, settings: AutoTopup) -> AutoTopup:
        """Replace the auto top-up settings."""
        response = await self._call("PUT", "/credits/auto-topup", key=key, body=_numbers(settings))
        return self._data(response, AutoTopup)

    # --- provisioned keys ----------------------------------------------------------------

    async def create_key(self, key: str, new: NewKey) -> ProvisionedKey:
        """Provision a key; its value is in the answer this once."""
        response = await self._call("POST", "/keys", key=key, body=_numbers(new, exclude_none=True))
        return self._data(response, ProvisionedKey)

    async def list_keys(self, key: str, *, include_revoked: bool = False) -> KeyList:
        """Every key (never their values)."""
        params = {"include_revoked": "true"} if include_revoked else None
        return self._data(await self._call("GET", "/keys", key=key, params=params), KeyList)

    async def key_info(self, key: str, key_hash: str) -> KeyDetail:
        """One key with its daily/weekly/monthly and per-model usage."""
        return self._data(await self._call("GET", f"/keys/{key_hash}", key=key), KeyDetail)

    async def update_key(self, key: str, key_hash: str, changes: dict[str, Any]) -> ProvisionedKey:
        """PATCH credit_limit / limit_reset / disabled."""
        response = await self._call("PATCH", f"/keys/{key_hash}", key=key, body=changes)
        return self._data(response, ProvisionedKey)

    async def revoke_key(self, key: str, key_hash: str) -> Revoked:
        """Revoke for good (sent once: a resend would answer KEY_ALREADY_REVOKED)."""
        return self._data(await self._call("DELETE", f"/keys/{key_hash}", key=key), Revoked)

    async def rotate_key(self, key: str, key_hash: str) -> ProvisionedKey:
        """A new value for the key; hash and settings stay."""
        response = await self._call("POST", f"/keys/{key_hash}/rotate", key=key)
        return self._data(response, ProvisionedKey)

    # --- the proxy (OpenAI-compatible, like AllToken) -------------------------------------

    @property
    def proxy(self) -> AllTokenService:
        """An OpenAI-compatible client for the proxy; its 429s are final (spend limits)."""
        if self._proxy is None:
            self._proxy = AllTokenService(
                self.http, self.proxy_base, retry=RetryPolicy(max_retries_on_429=0)
            )
        return self._proxy

    def proxy_chat(self, key: str, model: str, messages: list[ChatMessage]) -> ChatStream:
        """Stream a chat completion through the proxy with a provisioned sk-prov-… key."""
        holder: dict[str, ChatResult] = {}
        inner = self.proxy.stream_chat(key, model, messages)

        async def chunks() -> AsyncIterator[str]:
            try:
                async for delta in inner:
                    yield delta
            except BackendError as exc:
                raise _relabel(exc) from None
            holder["result"] = inner.result

        return ChatStream(chunks(), holder)

    async def proxy_search(self, key: str, model: str, query: str) -> ChatResult:
        """A web-search-grounded answer through the proxy (same body as AllToken's)."""
        try:
            return await self.proxy.search(key, model, query)
        except BackendError as exc:
            raise _relabel(exc) from None
