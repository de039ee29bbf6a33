"""OpenAI-compatible chat completions: the wire models, the SSE reader and a small client.

AllToken and the OpenClaw Token proxy both speak it, cost comment after `data: [DONE]` included,
so both backends use this module rather than one importing the other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.errors import BackendError, protocol_error
from bot.core.http import BackendCall, read_json

CHAT_PATH = "/v1/chat/completions"


class Usage(BaseModel):
    """Token usage of a chat call."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CostLine(BaseModel):
    """The gateway's authoritative per-request cost, from the comment line after [DONE]."""

    cost: Decimal
    input_price: Decimal | None = None  # USD per 1K tokens
    output_price: Decimal | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


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


def parse_cost_comment(line: str) -> CostLine | None:
    """Read `: {"cost": ...}`; None for any other comment or an unreadable one."""
    body = line[1:].strip() if line.startswith(":") else ""
    if not body.startswith("{"):
        return None
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or "cost" not in data:
            return None
        return CostLine.model_validate(data)
    except (ValueError, InvalidOperation):
        return None


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


async def sse_line_batches(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The complete lines of each network read, together: a reader folds every event that
    arrived at once in one pass (one wake-up, one delta) instead of one hop per line."""
    pending = b""
    async for chunk in response.aiter_bytes():
        pending += chunk
        if b"\n" not in chunk:
            continue
        # Only up to the last line end: a read may stop inside a multi-byte character.
        complete, _, pending = pending.rpartition(b"\n")
        text = complete.decode("utf-8", "replace")
        lines = text.split("\n")
        yield [line.rstrip("\r") for line in lines] if "\r" in text else lines
    if pending:
        yield [pending.rstrip(b"\r").decode("utf-8", "replace")]


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
class _Reading:
    """What an answer stream has said so far."""

    model: str
    request_id: str | None
    parts: list[str]
    usage: Usage | None = None
    cost: CostLine | None = None
    finish: str | None = None
    done: bool = False

    def result(self) -> ChatResult:
        return ChatResult(
            model=self.model,
            text="".join(self.parts),
            usage=self.usage,
            cost=self.cost,
            request_id=self.request_id,
            finish_reason=self.finish,
        )


@dataclass(frozen=True)
class OpenAIChat:
    """Chat completions (streamed) and web search (one answer) against one compatible server."""

    call: BackendCall
    base_url: str
    # Who answered, in messages about unreadable answers ("AllToken").
    label: str

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
        # A POST without an Idempotency-Key: only a 429 (nothing started) is tried again.
        async with self.call.stream(
            "POST", f"{self.base_url}{CHAT_PATH}", json=body, headers=_auth(key)
        ) as response:
            reading = _Reading(model, response.headers.get("x-request-id"), [])
            async for lines in sse_line_batches(response):
                text = ""
                for line in lines:
                    if line:  # the blank line that ends each event
                        text += self._read_line(line, reading)
                if text:
                    yield text
        if not reading.done:
            raise protocol_error(
                self.call.backend, "the answer stream ended early", reading.request_id
            )
        holder["result"] = reading.result()

    def _read_line(self, line: str, reading: _Reading) -> str:
        """Fold one SSE line into `reading`; the text delta it carried, if any."""
        if line.startswith(":"):
            # The authoritative cost arrives as a comment after [DONE]; keep reading for it.
            reading.cost = parse_cost_comment(line) or reading.cost
            return ""
        if not line.startswith("data:"):
            return ""
        data = line[5:].strip()
        if data == "[DONE]":
            reading.done = True
            return ""
        chunk = self._chunk(data, reading.request_id)
        reading.request_id = (
            reading.request_id or chunk.get("x-gateway-request-id") or chunk.get("id")
        )
        if chunk.get("error"):
            raise self._stream_error(chunk["error"], reading.request_id)
        if chunk.get("usage"):
            try:
                reading.usage = Usage.model_validate(chunk["usage"])
            except ValidationError:
                reading.usage = None
        text = ""
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                reading.parts.append(delta)
                text += delta
            reading.finish = choice.get("finish_reason") or reading.finish
        return text

    def _chunk(self, data: str, request_id: str | None) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise protocol_error(
                self.call.backend, f"malformed stream data from {self.label}", request_id
            ) from None
        if not isinstance(chunk, dict):
            raise protocol_error(
                self.call.backend, f"malformed stream chunk from {self.label}", request_id
            )
        return chunk

    def _stream_error(self, raw: Any, request_id: str | None) -> BackendError:
        err = raw if isinstance(raw, dict) else {"message": raw}
        return BackendError(
            self.call.backend,
            200,
            str(err.get("code") or "stream_error"),
            str(err.get("message") or "the stream failed"),
            request_id=err.get("request_id") or request_id,
        )

    async def search(self, key: str, model: str, query: str, max_tokens: int = 600) -> ChatResult:
        """One non-streamed answer with enable_search (the model must honour it)."""
        body = {
            "model": model,
            "messages": [{"role": "user", "content": query}],
            "enable_search": True,
            "max_tokens": max_tokens,
        }
        response = await self.call.send(
            "POST", f"{self.base_url}{CHAT_PATH}", json=body, headers=_auth(key)
        )
        data = read_json(self.call.backend, response)
        try:
            choice = data["choices"][0]
            text = str(choice["message"].get("content") or "").strip()
        except (KeyError, IndexError, TypeError, AttributeError):
            raise protocol_error(
                self.call.backend,
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
            finish_reason=choice.get("finish_reason"),
        )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
