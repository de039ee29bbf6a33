"""AllToken client: streaming chat, web search, async images and videos, models, pricing.

Knows HTTP and AllToken's contract (reference/backends.md), nothing about chat platforms.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.backends.alltoken import catalog
from bot.backends.alltoken.pricing import CostLine, Prices, catalog_prices, parse_cost_comment
from bot.core.errors import (
    BackendError,
    alltoken_error,
    parse_retry_after,
    protocol_error,
    transport_error,
)
from bot.core.http import DEFAULT_RETRY, RetryPolicy, with_429_retry

ModelType = Literal["chat", "image", "video"]
_MODEL_PATHS: dict[str, str] = {
    "chat": "/v1/models",
    "image": "/v1/images/models",
    "video": "/v1/videos/models",
}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Wire):
    """Token usage of a chat call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatMessage(BaseModel):
    """One OpenAI-style message."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatResult(BaseModel):
    """The outcome of a chat or search call once it is complete."""

    model: str
    text: str
    usage: Usage | None = None
    cost: CostLine | None = None
    request_id: str | None = None
    finish_reason: str | None = None


class ModelInfo(_Wire):
    """An entry of /v1/models, /v1/images/models or /v1/videos/models."""

    id: str
    modality: str | None = None
    display_name: str | None = None
    family: str | None = None
    brand: str | None = None
    description: str | None = None
    capabilities: dict[str, Any] | None = None


class ImageData(_Wire):
    """One generated image as returned by a completed poll."""

    b64_json: str | None = None
    url: str | None = None
    r2_url: str | None = None
    r2_url_expires_at: str | int | float | None = None
    mime_type: str | None = None
    revised_prompt: str | None = None


class TaskError(_Wire):
    """The error block of a failed image or video task."""

    code: str | None = None
    type: str | None = None
    message: str | None = None


class ImageStatus(_Wire):
    """A poll of an async image task."""

    id: str
    status: str
    model: str | None = None
    next_poll_after_ms: int | None = None
    data: list[ImageData] = Field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: TaskError | None = None
    retry_after_s: float | None = None  # from the Retry-After header, not the body


class VideoStatus(_Wire):
    """A poll of a video task."""

    id: str
    status: str
    model: str | None = None
    video_url: str | None = None
    video_url_expires_at: str | None = None
    video_url_ttl: int | None = None
    is_expired: bool = False
    duration: float | None = None
    fps: float | None = None
    resolution: str | None = None
    ratio: str | None = None
    usage: dict[str, Any] | None = None
    error: TaskError | None = None
    created_at: str | int | None = None
    completed_at: str | int | None = None
    retry_after_s: float | None = None

    def expires_at(self, now: datetime | None = None) -> datetime | None:
        """When `video_url` stops working: the explicit time, else now + ttl."""
        if self.video_url_expires_at:
            try:
                return datetime.fromisoformat(self.video_url_expires_at.replace("Z", "+00:00"))
            except ValueError:
                pass
        if self.video_url_ttl is not None:
            return (now or datetime.now(UTC)) + timedelta(seconds=self.video_url_ttl)
        return None


class ImageRequest(BaseModel):
    """Body of POST /v1/images/generations/async."""

    prompt: str
    model: str = catalog.DEFAULT_IMAGE_MODEL
    size: str = catalog.DEFAULT_IMAGE_SIZE
    quality: str = catalog.DEFAULT_IMAGE_QUALITY
    n: int = 1


class VideoRequest(BaseModel):
    """Body of POST /v1/videos/generations."""

    prompt: str
    model: str = catalog.DEFAULT_VIDEO_MODEL
    duration: int = catalog.DEFAULT_VIDEO_DURATION
    ratio: str = catalog.DEFAULT_VIDEO_RATIO
    resolution: str = catalog.DEFAULT_VIDEO_RESOLUTION


async def sse_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The lines of an event stream, split straight from the raw bytes.

    httpx's aiter_lines stacks three decoding generators per chunk; SSE is UTF-8 text with
    LF/CRLF line ends, so splitting bytes here costs a third of the CPU with 500 streams.
    """
    pending = b""
    async for chunk in response.aiter_bytes():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            yield raw.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


@dataclass
class _CacheEntry:
    at: float
    value: Any


class ChatStream:
    """Async iterator of text deltas; `result` is set once the stream is exhausted."""

    def __init__(self, chunks: AsyncIterator[str], holder: dict[str, ChatResult]) -> None:
        self._chunks = chunks
        self._holder = holder

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks

    @property
    def result(self) -> ChatResult:
        """The completed call (text, usage, cost); only valid after iteration ends."""
        if "result" not in self._holder:
            raise RuntimeError("stream not finished")
        return self._holder["result"]


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

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @staticmethod
    def _auth(key: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {key}"}
        if extra:
            headers.update(extra)
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        key: str | None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry_429: bool = True,
    ) -> httpx.Response:
        """One request with the shared 429 policy; transport errors become BackendError."""
        all_headers = self._auth(key, headers) if key else dict(headers or {})

        async def call() -> httpx.Response:
            try:
                return await self.http.request(
                    method, self._url(path), json=body, headers=all_headers
                )
            except httpx.HTTPError as exc:
                raise transport_error("alltoken", exc) from None

        if not retry_429:
            response = await call()
            if response.status_code >= 400:
                raise alltoken_error(response)
            return response
        return await with_429_retry(call, alltoken_error, self.retry)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise protocol_error(
                "alltoken",
                f"unreadable JSON from {response.request.url.path}",
                response.headers.get("x-request-id"),
            ) from None

    # --- chat ----------------------------------------------------------------------------

    def stream_chat(self, key: str, model: str, messages: list[ChatMessage]) -> ChatStream:
        """Stream a chat completion; usage comes via include_usage, cost from the [DONE] comment."""
        holder: dict[str, ChatResult] = {}
        return ChatStream(self._stream_chat(key, model, messages, holder), holder)

    async def _stream_chat(
        self, key: str, model: str, messages: list[ChatMessage], holder: dict[str, ChatResult]
    ) -> AsyncIterator[str]:
        body = {
            "model": model,
            "messages": [m.model_dump() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        attempts = 0
        wait = 0.0
        while True:
            try:
                async with self.http.stream(
                    "POST", self._url("/v1/chat/completions"), json=body, headers=self._auth(key)
                ) as response:
                    if response.status_code >= 400:
                        raw = await response.aread()
                        error = alltoken_error(response, raw)
                        hinted = self.retry.wait_for(error)
                        if hinted is None or attempts >= self.retry.max_retries_on_429:
                            raise error
                        wait = hinted
                        attempts += 1
                    else:
                        request_id = response.headers.get("x-request-id")
                        async for delta in self._read_sse(response, model, request_id, holder):
                            yield delta
                        return
            except httpx.HTTPError as exc:
                # Once text has started, resending would bill a second answer: report instead.
                raise transport_error("alltoken", exc) from None
            await asyncio.sleep(wait)

    async def _read_sse(
        self,
        response: httpx.Response,
        model: str,
        request_id: str | None,
        holder: dict[str, ChatResult],
    ) -> AsyncIterator[str]:
        parts: list[str] = []
        usage: Usage | None = None
        cost: CostLine | None = None
        finish: str | None = None
        done = False
        async for line in sse_lines(response):
            if not line:
                continue
            if line.startswith(":"):
                # The authoritative cost arrives as a comment after [DONE]; keep reading for it.
                cost = parse_cost_comment(line) or cost
                continue
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                raise protocol_error(
                    "alltoken", "malformed stream data from AllToken", request_id
                ) from None
            if not isinstance(chunk, dict):
                raise protocol_error("alltoken", "malformed stream chunk from AllToken", request_id)
            request_id = request_id or chunk.get("x-gateway-request-id") or chunk.get("id")
            if chunk.get("error"):
                err = (
                    chunk["error"]
                    if isinstance(chunk["error"], dict)
                    else {"message": chunk["error"]}
                )
                raise BackendError(
                    "alltoken",
                    200,
                    str(err.get("code") or "stream_error"),
                    str(err.get("message") or "the stream failed"),
                    request_id=err.get("request_id") or request_id,
                )
            if chunk.get("usage"):
                try:
                    usage = Usage.model_validate(chunk["usage"])
                except ValidationError:
                    usage = None
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    yield delta
                finish = choice.get("finish_reason") or finish
        if not done:
            raise protocol_error("alltoken", "the answer stream ended early", request_id)
        holder["result"] = ChatResult(
            model=model,
            text="".join(parts),
            usage=usage,
            cost=cost,
            request_id=request_id,
            finish_reason=finish,
        )

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
        body = {
            "model": model,
            "messages": [{"role": "user", "content": query}],
            "enable_search": True,
            "max_tokens": max_tokens,
        }
        response = await self._send("POST", "/v1/chat/completions", key, body=body)
        data = self._json(response)
        try:
            message = data["choices"][0]["message"]
            text = str(message.get("content") or "").strip()
        except (KeyError, IndexError, TypeError, AttributeError):
            raise protocol_error(
                "alltoken",
                "search answer had no message",
                data.get("x-gateway-request-id") if isinstance(data, dict) else None,
            ) from None
        usage = Usage.model_validate(data["usage"]) if data.get("usage") else None
        return ChatResult(
            model=model,
            text=text,
            usage=usage,
            request_id=data.get("x-gateway-request-id")
            or response.headers.get("x-request-id")
            or data.get("id"),
            finish_reason=data["choices"][0].get("finish_reason"),
        )

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
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise alltoken_error(response, raw)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise protocol_error("alltoken", "download larger than allowed")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise transport_error("alltoken", exc) from None

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
