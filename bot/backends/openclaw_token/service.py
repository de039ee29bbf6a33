"""OpenClaw Token client: account, device flow, credits, provisioned keys, and the proxy.

Knows HTTP and the openclaw-token server contract (reference/backends.md), nothing about chat;
the wire models and the error envelope live in wire.py. Calls time out after 15 s; every call
goes through the one BackendCall (bot.core.http), whose policy here is the openclaw-token CLI's:
resendable calls (GET/PUT/PATCH, and a purchase carrying an Idempotency-Key) are retried on
network errors and 5xx, 3 times with exponential backoff. The proxy is OpenAI-compatible
(bot.core.openai_chat) and its 429s are spend limits: final.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bot.backends.openclaw_token.wire import (
    DEVICE_STATUSES,
    Account,
    AuthResult,
    AutoTopup,
    Credits,
    DeviceCode,
    DeviceGrant,
    DeviceStatus,
    DeviceToken,
    HistoryPage,
    HistoryType,
    KeyDetail,
    KeyList,
    LimitReset,
    ModelUsage,
    NewKey,
    ProvisionedKey,
    Purchase,
    Revoked,
    Transaction,
    UserInfo,
    WireModel,
    openclaw_error,
    proxy_error,
)
from bot.core.errors import protocol_error
from bot.core.http import BackendCall, RetryPolicy, Sleep, read_json
from bot.core.openai_chat import ChatMessage, ChatResult, ChatStream, OpenAIChat

# Names other modules import from here (the wire models moved to wire.py).
__all__ = [
    "CLI_RETRY",
    "MIN_PURCHASE",
    "Account",
    "ApiBases",
    "AuthResult",
    "AutoTopup",
    "Credits",
    "DeviceCode",
    "DeviceStatus",
    "DeviceToken",
    "HistoryPage",
    "HistoryType",
    "KeyDetail",
    "KeyList",
    "LimitReset",
    "ModelUsage",
    "NewKey",
    "OpenClawTokenService",
    "ProvisionedKey",
    "Purchase",
    "Revoked",
    "Transaction",
    "UserInfo",
    "next_reset",
    "openclaw_error",
    "period_start",
    "platform_fee",
    "purchase_total",
]

MIN_PURCHASE = Decimal("5")
FEE_RATE = Decimal("0.055")
MIN_FEE = Decimal("0.80")
TIMEOUT_S = 15.0
# The openclaw-token CLI's policy: network errors and 5xx retried 3 times, backoff from 0.5 s.
CLI_RETRY = RetryPolicy(max_retries=3, backoff_s=0.5)
# 429s that are business answers, not "slow down": resending cannot succeed.
_FINAL_CODES = frozenset({"CREDIT_LIMIT_EXCEEDED"})
# The proxy's 429s are spend limits (CREDIT_LIMIT_EXCEEDED and kin): never resent.
_PROXY_RETRY = RetryPolicy(max_retries_on_429=0)
PROXY_LABEL = "the OpenClaw Token proxy"
_CENT = Decimal("0.01")


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


_W = TypeVar("_W", bound=WireModel)
log = logging.getLogger(__name__)
Shape = Literal["self-hosted", "hosted", "to be detected"]
# A management route that answers 400 to an empty body before touching any account
# (`bad_device_code`); behind a self-hosted server's /v1 the proxy refuses it with 401.
_PROBE_PATH = "/oauth/device/token"
_PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ApiBases:
    """Where OPENCLAW_TOKEN_API_BASE puts the management API and the proxy.

    Two shapes exist. The hosted service's base ends in /v1 and serves everything under it
    (`…/v1/auth/me`, `…/v1/chat/completions`). A self-hosted openclaw-token-server mounts
    /auth, /keys, /credits and /oauth at its root and only the proxy under /v1. A root base
    is therefore self-hosted; a /v1 base could be either, and the first management call
    finds out which (see `OpenClawTokenService.management_base`).
    """

    configured: str
    proxy_origin: str  # the proxy is `<proxy_origin>/v1/chat/completions`
    management: str | None  # None while a /v1 base's shape is still to be detected
    shape: Shape

    @classmethod
    def derive(cls, api_base: str) -> ApiBases:
        """The bases a configured OPENCLAW_TOKEN_API_BASE implies before any request."""
        base = api_base.rstrip("/")
        origin = base.removesuffix("/v1")
        if origin == base:
            return cls(base, origin, base, "self-hosted")
        return cls(base, origin, None, "to be detected")

    @property
    def candidates(self) -> tuple[str, str]:
        """Management base of the hosted shape, then of a self-hosted server's."""
        return self.configured, self.proxy_origin

    def describe(self) -> str:
        """One line for the start-up log."""
        proxy = f"{self.proxy_origin}/v1/chat/completions"
        if self.management is None:
            return (
                f"OpenClaw Token: base {self.configured} ends in /v1, so the management API is "
                f"at {self.configured} (hosted shape) or at {self.proxy_origin} (a self-hosted "
                f"server's root): the first call finds out; proxy {proxy}"
            )
        return f"OpenClaw Token: management API {self.management} ({self.shape}), proxy {proxy}"


def _numbers(model: BaseModel, **dump: Any) -> dict[str, Any]:
    """A request body with Decimal amounts as JSON numbers (the server rejects strings)."""
    return {
        k: float(v) if isinstance(v, Decimal) else v for k, v in model.model_dump(**dump).items()
    }


@dataclass
class OpenClawTokenService:
    """OpenClaw Token over the shared httpx client; every call takes the caller's own key."""

    http: httpx.AsyncClient
    base_url: str
    timeout_s: float = TIMEOUT_S
    retry: RetryPolicy = CLI_RETRY
    sleep: Sleep = asyncio.sleep
    bases: ApiBases = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.bases = ApiBases.derive(self.base_url)
        self._detecting = asyncio.Lock()

    # --- plumbing ------------------------------------------------------------------------

    @property
    def proxy_base(self) -> str:
        """Origin of the OpenAI-compatible proxy (`…/v1/chat/completions` hangs off it).

        The CLI's default API base ends in /v1 while a local server is a bare origin; either
        way the proxy lives at <origin>/v1/chat/completions.
        """
        return self.bases.proxy_origin

    async def management_base(self) -> str:
        """The management API's base; for a /v1 base found out once, by a harmless probe.

        `POST <candidate>/oauth/device/token {}` answers 400 (bad_device_code) where the
        management API lives and 401 where a self-hosted server's proxy guards /v1.
        """
        if self.bases.management is not None:
            return self.bases.management
        async with self._detecting:
            if self.bases.management is None:
                found = await self._detect()
                if found is None:
                    # Unreachable for now: use the base as configured, try again next call.
                    return self.bases.configured
                shape: Shape = "hosted" if found == self.bases.configured else "self-hosted"
                self.bases = ApiBases(self.bases.configured, self.proxy_base, found, shape)
                log.info("%s (detected)", self.bases.describe())
        return self.bases.management or self.bases.configured

    async def _detect(self) -> str | None:
        answered = False
        for candidate in self.bases.candidates:
            try:
                response = await self.http.post(
                    f"{candidate}{_PROBE_PATH}", json={}, timeout=_PROBE_TIMEOUT_S
                )
            except httpx.HTTPError:
                continue
            answered = True
            if response.status_code == 400:
                return candidate
        if answered:
            log.warning(
                "OpenClaw Token: neither %s nor %s answers like its management API; using %s",
                *self.bases.candidates,
                self.bases.configured,
            )
            return self.bases.configured
        return None

    @property
    def proxy_url(self) -> str:
        """The proxy's chat completions endpoint (for status displays)."""
        return f"{self.proxy_base}/v1/chat/completions"

    @property
    def _call(self) -> BackendCall:
        # Built per request: `retry` may be replaced after construction (tests, fault drills).
        return BackendCall(
            "openclaw_token",
            self.http,
            openclaw_error,
            self.retry,
            final_codes=_FINAL_CODES,
            sleep=self.sleep,
        )

    async def _send(
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
        """One request: 15 s timeout, the CLI's retry policy (see the module docstring)."""
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        return await self._call.send(
            method,
            f"{await self.management_base()}{path}",
            json=body,
            params=params,
            headers=all_headers,
            timeout=self.timeout_s,
            accept=frozenset({400}) if accept_flat_400 else frozenset(),
        )

    def _data(self, response: httpx.Response, model: type[_W]) -> _W:
        """Unwrap `{"data": …}` into `model`, with the response's request id attached."""
        payload = read_json("openclaw_token", response)
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
        result.keep_received(data)  # what --json prints
        return result

    # --- account -------------------------------------------------------------------------

    async def register(self, email: str, password: str) -> AuthResult:
        """Create an account; its management key comes back once."""
        response = await self._send(
            "POST", "/auth/register", body={"email": email, "password": password}
        )
        return self._data(response, AuthResult)

    async def login(self, email: str, password: str) -> AuthResult:
        """Email/password sign-in. The server rotates the management key on every login."""
        response = await self._send(
            "POST", "/auth/login", body={"email": email, "password": password}
        )
        return self._data(response, AuthResult)

    async def me(self, key: str) -> Account:
        """The signed-in account."""
        return self._data(await self._send("GET", "/auth/me", key=key), Account)

    async def rotate(self, key: str) -> AuthResult:
        """A new management key; the old one stops working immediately."""
        return self._data(await self._send("POST", "/auth/rotate", key=key), AuthResult)

    # --- GitHub device flow --------------------------------------------------------------

    async def device_code(self, client_id: str) -> DeviceCode:
        """Start a device-flow sign-in."""
        response = await self._send("POST", "/oauth/device/code", body={"client_id": client_id})
        return self._data(response, DeviceCode)

    async def device_token(self, device_code: str) -> DeviceToken:
        """One poll; the flat 400 answers (pending, slow_down, expired…) are results, not errors."""
        response = await self._send(
            "POST",
            "/oauth/device/token",
            body={"device_code": device_code},
            accept_flat_400=True,
        )
        if response.status_code == 400:
            error = openclaw_error(response)
            code = error.code.lower()
            if code not in DEVICE_STATUSES:
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
        token = self._data(response, DeviceGrant)
        return DeviceToken(
            status="success",
            access_token=token.access_token,
            token_type=token.token_type,
            request_id=token.request_id,
        )

    async def userinfo(self, access_token: str) -> UserInfo:
        """The account (and its management key) behind a device-flow access token."""
        response = await self._send("GET", "/oauth/userinfo", key=access_token)
        return self._data(response, UserInfo)

    # --- credits -------------------------------------------------------------------------

    async def credits(self, key: str) -> Credits:
        """Total, used and remaining credits."""
        return self._data(await self._send("GET", "/credits", key=key), Credits)

    async def purchase(self, key: str, amount: Decimal, idempotency_key: str) -> Purchase:
        """Buy credits. The Idempotency-Key (kept 24 h by the server) makes a resend charge once."""
        response = await self._send(
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
        response = await self._send("GET", "/credits/history", key=key, params=params)
        return self._data(response, HistoryPage)

    async def auto_topup(self, key: str) -> AutoTopup:
        """The auto top-up settings."""
        return self._data(await self._send("GET", "/credits/auto-topup", key=key), AutoTopup)

    async def set_auto_topup(self, key: str, settings: AutoTopup) -> AutoTopup:
        """Replace the auto top-up settings."""
        response = await self._send("PUT", "/credits/auto-topup", key=key, body=_numbers(settings))
        return self._data(response, AutoTopup)

    # --- provisioned keys ----------------------------------------------------------------

    async def create_key(self, key: str, new: NewKey) -> ProvisionedKey:
        """Provision a key; its value is in the answer this once."""
        response = await self._send("POST", "/keys", key=key, body=_numbers(new, exclude_none=True))
        return self._data(response, ProvisionedKey)

    async def list_keys(self, key: str, *, include_revoked: bool = False) -> KeyList:
        """Every key (never their values)."""
        params = {"include_revoked": "true"} if include_revoked else None
        return self._data(await self._send("GET", "/keys", key=key, params=params), KeyList)

    async def key_info(self, key: str, key_hash: str) -> KeyDetail:
        """One key with its daily/weekly/monthly and per-model usage."""
        return self._data(await self._send("GET", f"/keys/{key_hash}", key=key), KeyDetail)

    async def update_key(self, key: str, key_hash: str, changes: dict[str, Any]) -> ProvisionedKey:
        """PATCH credit_limit / limit_reset / disabled."""
        response = await self._send("PATCH", f"/keys/{key_hash}", key=key, body=changes)
        return self._data(response, ProvisionedKey)

    async def revoke_key(self, key: str, key_hash: str) -> Revoked:
        """Revoke for good (sent once: a resend would answer KEY_ALREADY_REVOKED)."""
        return self._data(await self._send("DELETE", f"/keys/{key_hash}", key=key), Revoked)

    async def rotate_key(self, key: str, key_hash: str) -> ProvisionedKey:
        """A new value for the key; hash and settings stay."""
        response = await self._send("POST", f"/keys/{key_hash}/rotate", key=key)
        return self._data(response, ProvisionedKey)

    # --- the proxy (OpenAI-compatible, like AllToken) -------------------------------------

    @property
    def _proxy(self) -> OpenAIChat:
        call = BackendCall(
            "openclaw_token",
            self.http,
            proxy_error,
            _PROXY_RETRY,
            label=PROXY_LABEL,
            sleep=self.sleep,
        )
        return OpenAIChat(call, self.proxy_base, PROXY_LABEL)

    def proxy_chat(self, key: str, model: str, messages: list[ChatMessage]) -> ChatStream:
        """Stream a chat completion through the proxy with a provisioned sk-prov-… key."""
        return self._proxy.stream_chat(key, model, messages)

    async def proxy_search(self, key: str, model: str, query: str) -> ChatResult:
        """A web-search-grounded answer through the proxy (same body as AllToken's)."""
        return await self._proxy.search(key, model, query)
