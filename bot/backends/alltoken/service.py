"""AllToken client: streaming chat, web search, async images and videos, models, pricing.

Knows HTTP and AllToken's contract (reference/backends.md), nothing about chat platforms. Chat
and search are OpenAI-compatible (bot.core.openai_chat); every call goes through the one
BackendCall (bot.core.http): AllToken's error envelope, and its 429s retried once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from bot.backends.alltoken import catalog
from bot.backends.alltoken.pricing import Prices, catalog_prices
from bot.backends.alltoken.wire import (
    ImageData,
    ImageRequest,
    ImageStatus,
    ModelInfo,
    ModelType,
    TaskError,
    VideoRequest,
    VideoStatus,
)
from bot.core.errors import BackendError, alltoken_error, parse_retry_after, protocol_error
from bot.core.http import DEFAULT_RETRY, BackendCall, RetryPolicy, read_json
from bot.core.openai_chat import (
    ChatMessage,
    ChatResult,
    ChatStream,
    OpenAIChat,
    Usage,
    sse_lines,
)

# Names other modules import from here (the wire models moved to wire.py / core.openai_chat).
__all__ = [
    "AllTokenService",
    "ChatMessage",
    "ChatResult",
    "ChatStream",
    "ImageData",
    "ImageRequest",
    "ImageStatus",
    "ModelInfo",
    "ModelType",
    "TaskError",
    "Usage",
    "VideoRequest",
    "VideoStatus",
    "sse_lines",
]

_MODEL_PATHS: dict[str, str] = {
    "chat": "/v1/models",
    "image": "/v1/images/models",
    "video": "/v1/videos/models",
}


@dataclass
class _CacheEntry:
    at: float
    value: Any


@dataclass
class AllTokenService:
    """AllToken over the shared httpx client. Every call takes the caller's own key."""

    http: httpx.AsyncClient
    base_url: str
    models_ttl_s: float = 300.0
    retry: RetryPolicy = DEFAULT_RETRY
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _CacheEntry] = field(default_factory=dict)

    # --- plumbing ------------------------------------------------------------------------

    @property
    def _call(self) -> BackendCall:
        # Built per request: `retry` may be replaced after construction (tests, fault drills).
        return BackendCall("alltoken", self.http, alltoken_error, self.retry)

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def _send(
        self,
        method: str,
        path: str,
        key: str | None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request through the shared call: AllToken's envelope, the retry policy."""
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        return await self._call.send(method, self._url(path), json=body, headers=all_headers)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        return read_json("alltoken", response)

    # --- chat ----------------------------------------------------------------------------

    @property
    def _chat(self) -> OpenAIChat:
        return OpenAIChat(self._call, self.base_url, "AllToken")

    def stream_chat(self, key: str, model: str, messages: list[ChatMessage]) -> ChatStream:
        """Stream a chat completion; usage comes via include_usage, cost from the [DONE] comment."""
        return self._chat.stream_chat(key, model, messages)

    async def search(self, key: str, model: str, query: str, max_tokens: int = 600) -> ChatResult:
        """Non-streaming chat with enable_search. Refuses models that ignore or reject it."""
        if not catalog.supports_search(model):
            raise BackendError(
                "alltoken",
                400,
                "search_unsupported_model",
                f"{model} does not honour web search on AllToken; use one of "
                f"{', '.join(catalog.SEARCH_MODELS)} (default {catalog.DEFAULT_SEARCH_MODEL})",
            )
        return await self._chat.search(key, model, query, max_tokens)

    # --- images --------------------------------------------------------------------------

    async def submit_image(self, key: str, request: ImageRequest, idempotency_key: str) -> str:
        """Start an image; a repeat with the same Idempotency-Key continues the first task."""
        try:
            response = await self._send(
                "POST",
                "/v1/images/generations/async",
                key,
                body=request.model_dump(),
                headers={"Idempotency-Key": idempotency_key},
            )
        except BackendError as exc:
            if exc.status == 409 and exc.code == "duplicate_request" and exc.task_id:
                return exc.task_id
            raise
        data = self._json(response)
        return str(data["id"])

    async def poll_image(self, key: str, task_id: str) -> ImageStatus:
        """One status read. The first completed read is the only one carrying the bytes."""
        response = await self._send("GET", f"/v1/images/generations/{task_id}", key)
        status = ImageStatus.model_validate(self._json(response))
        status.retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        return status

    async def download(self, url: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Fetch a presigned URL (no Authorization header: the signature is the credential)."""
        async with self._call.stream("GET", url) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise protocol_error("alltoken", "download larger than allowed")
                chunks.append(chunk)
            return b"".join(chunks)

    # --- videos --------------------------------------------------------------------------

    async def submit_video(self, key: str, request: VideoRequest) -> str:
        """Start a video. Sent once: a resend could start a second paid job (no idempotency key)."""
        response = await self._send(
            "POST", "/v1/videos/generations", key, body=request.model_dump()
        )
        return str(self._json(response)["id"])

    async def poll_video(self, key: str, task_id: str) -> VideoStatus:
        """One status read of a video task."""
        response = await self._send("GET", f"/v1/videos/generations/{task_id}", key)
        status = VideoStatus.model_validate(self._json(response))
        status.retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        return status

    async def cancel_video(self, key: str, task_id: str) -> VideoStatus:
        """Cancel a running video (409 when it already finished)."""
        response = await self._send("POST", f"/v1/videos/generations/{task_id}/cancel", key)
        return VideoStatus.model_validate(self._json(response))

    async def recent_videos(self, key: str, limit: int = 20) -> list[VideoStatus]:
        """The caller's latest video tasks (to find one submitted just before a crash)."""
        response = await self._send("GET", f"/v1/videos/generations?limit={limit}", key)
        data = self._json(response)
        items = data.get("items") if isinstance(data, dict) else None
        return [VideoStatus.model_validate(item) for item in items or []]

    # --- models and prices ---------------------------------------------------------------

    async def list_models(self, key: str, type_: ModelType = "chat") -> list[ModelInfo]:
        """Models of one type, cached for `models_ttl_s` (the list is the same for every key)."""
        cache_key = f"models:{type_}"
        hit = self._cache.get(cache_key)
        if hit and self.clock() - hit.at < self.models_ttl_s:
            return list(hit.value)
        response = await self._send("GET", _MODEL_PATHS[type_], key)
        data = self._json(response)
        models = [ModelInfo.model_validate(m) for m in (data.get("data") or [])]
        if type_ == "chat":
            # /v1/models lists text, vision, image and video models together (spec R1).
            models = [m for m in models if m.modality in (None, "text", "vision")]
        self._cache[cache_key] = _CacheEntry(self.clock(), models)
        return list(models)

    def cached_models(self, type_: ModelType = "chat") -> list[ModelInfo] | None:
        """The cached list if any (for the router and autocomplete, which must not wait)."""
        hit = self._cache.get(f"models:{type_}")
        return list(hit.value) if hit else None

    async def check_key(self, key: str) -> None:
        """A cheap authenticated call that raises BackendError(401) for a bad key."""
        await self._send("GET", _MODEL_PATHS["chat"], key)

    async def catalog_prices(self, model: str) -> Prices | None:
        """Prices from the public catalog (no auth). None when the catalog has none."""
        cache_key = f"price:{model}"
        hit = self._cache.get(cache_key)
        if hit and self.clock() - hit.at < self.models_ttl_s:
            return hit.value
        response = await self._send("GET", f"/api-account/models/{model}", None)
        data = self._json(response)
        entry = data.get("data", data) if isinstance(data, dict) else {}
        prices = catalog_prices(model, entry if isinstance(entry, dict) else {})
        self._cache[cache_key] = _CacheEntry(self.clock(), prices)
        return prices

    def cached_prices(self, model: str) -> Prices | None:
        """Catalog prices already fetched (for a budget estimate, which must send nothing)."""
        hit = self._cache.get(f"price:{model}")
        return hit.value if hit and self.clock() - hit.at < self.models_ttl_s else None

    async def media_price(self, model: str) -> Decimal | None:
        """The catalog's USD per image, or per second of 480p video; None when it lists none."""
        cache_key = f"media-price:{model}"
        hit = self._cache.get(cache_key)
        if hit and self.clock() - hit.at < self.models_ttl_s:
            return hit.value
        response = await self._send("GET", f"/api-account/models/{model}", None)
        data = self._json(response)
        entry = data.get("data", data) if isinstance(data, dict) else {}
        price: Decimal | None = None
        for name in ("image_price", "video_price", "price"):
            raw = entry.get(name) if isinstance(entry, dict) else None
            try:
                price = Decimal(str(raw)) if raw not in (None, "") else None
            except InvalidOperation:
                price = None
            if price is not None and price.is_finite() and price >= 0:
                break
            price = None
        self._cache[cache_key] = _CacheEntry(self.clock(), price)
        return price
