"""The AllToken simulator's `POST /v1/chat/completions`: JSON or SSE, search rules, cost line."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from alltoken.generated.chat import ChatCompletionRequest

from bot.backends.alltoken import catalog
from bot.sim.alltoken.answers import (
    SearchMode,
    compose_answer,
    count_tokens,
    prompt_tokens,
    split_tokens,
)
from bot.sim.alltoken.base import API_KEY, AllTokenSimBase, new_id
from bot.sim.alltoken.errors import SimApiError
from bot.sim.alltoken.models import chat_price_per_m
from bot.sim.alltoken.sse import ChatPricing, ChunkWriter
from bot.sim.serving import open_event_stream, request_id

_MILLION = Decimal(1_000_000)


class ChatRoutes(AllTokenSimBase):
    """Chat completions, streamed or not, charged per token."""

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions: JSON or SSE, with AllToken's search rules and cost line."""
        key = request[API_KEY]
        body = await self._json_body(request)
        req = self._validate(ChatCompletionRequest, body)
        model = req.model
        if model not in self.chat_models:
            raise SimApiError(
                404, "model_not_found", f"The model `{model}` does not exist.", param="model"
            )
        if not req.messages:
            raise SimApiError(
                400, "invalid_request", "messages must not be empty", param="messages"
            )
        search: SearchMode = "off"
        if req.enable_search:
            family = catalog.family_of(model)
            if family == "gpt":
                raise SimApiError(
                    503,
                    "all_providers_failed",
                    f"All providers failed for {model}: web search is not supported.",
                )
            search = "honoured" if catalog.supports_search(model) else "ignored"
        messages: list[dict[str, Any]] = body["messages"]
        p_tokens = prompt_tokens(messages)
        in_per_m, out_per_m = chat_price_per_m(model)
        self._require_balance(key, Decimal(p_tokens) * in_per_m / _MILLION)
        answer = compose_answer(
            messages, model, search, today=datetime.fromtimestamp(self.now(), UTC)
        )
        pieces = split_tokens(answer)
        finish = "stop"
        if req.max_tokens is not None and len(pieces) > req.max_tokens:
            pieces, finish = pieces[: req.max_tokens], "length"
        self.stats.chat_completions += 1
        pricing = ChatPricing(in_per_m, out_per_m, p_tokens)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await self._stream_chat(
                request, key, model, pieces, finish, include_usage, pricing
            )
        text = "".join(pieces)
        c_tokens = count_tokens(text)
        self._charge(key, pricing.cost(c_tokens))
        return web.json_response(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(self.now()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": pricing.usage(c_tokens),
                "x-gateway-request-id": request_id(request),
            }
        )

    async def _stream_chat(
        self,
        request: web.Request,
        key: str,
        model: str,
        pieces: list[str],
        finish: str,
        include_usage: bool,
        pricing: ChatPricing,
    ) -> web.StreamResponse:
        resp = await open_event_stream(request)
        chunk = ChunkWriter(new_id("chatcmpl-"), model, int(self.now()), request_id(request))
        self.stats.chat_streams += 1
        self.stats.active_streams += 1
        self.stats.max_active_streams = max(
            self.stats.max_active_streams, self.stats.active_streams
        )
        sent = 0
        loop = asyncio.get_running_loop()
        try:
            await resp.write(chunk.role())
            tps = self.config.tokens_per_second
            started = loop.time()
            for i, piece in enumerate(pieces):
                if tps > 0:
                    # Schedule against the start time so pacing does not drift with load.
                    delay = started + i / tps - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await resp.write(chunk.content(piece))
                sent += 1
            c_tokens = len(pieces)
            await resp.write(chunk.finish(finish))
            if include_usage:
                await resp.write(chunk.usage(pricing.usage(c_tokens)))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write(b": " + pricing.cost_line(c_tokens).encode() + b"\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away; charge what was sent
        finally:
            self.stats.active_streams -= 1
            self._charge(key, pricing.cost(sent))
        return resp
