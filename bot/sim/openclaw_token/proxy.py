"""The simulator's proxy `POST /v1/chat/completions` for provisioned sk-prov-… keys.

Checks the key (revoked, disabled, expired → 401) and its credit limit in the current reset
period (→ 429 CREDIT_LIMIT_EXCEEDED), runs auto top-up when the balance is at or below its
threshold ($0 included, as the real server does), then refuses an empty account (→ 402
INSUFFICIENT_CREDITS). The answer is the upstream's, passed through as the real server does:
with the default AllToken upstream, JSON or SSE with usage forced on and AllToken's cost
comment after [DONE] — the upstream's cost at AllToken's prices, not what OpenClaw Token
charges. The request is metered at OpenClaw Token's own price table before the stream ends.

`ProxyRoutes.upstream` is the switch for the upstream's kind: "alltoken" (default) honours
`enable_search` for DeepSeek/Qwen and sends the cost comment; "plain" (e.g. OpenAI) ignores
`enable_search` — so a search comes back without sources — and sends no cost comment.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web

from bot.backends.alltoken import catalog
from bot.sim.alltoken.answers import (
    SearchMode,
    compose_answer,
    count_tokens,
    prompt_tokens,
    split_tokens,
)
from bot.sim.alltoken.models import chat_price_per_m
from bot.sim.alltoken.sse import ChatPricing, ChunkWriter
from bot.sim.openclaw_token.base import OpenClawSimBase
from bot.sim.openclaw_token.state import Account, ProvKey, SimError, UsageEvent, iso
from bot.sim.serving import bearer_token, open_event_stream

# USD per 1M tokens (input, output), per the server's price table; "other" for the rest.
PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o": (Decimal("2.5"), Decimal(10)),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.6")),
    "claude-sonnet-4-5": (Decimal(3), Decimal(15)),
}
OTHER_PRICE = (Decimal(5), Decimal(15))
Upstream = Literal["alltoken", "plain"]


def price_per_m(model: str) -> tuple[Decimal, Decimal]:
    """(input, output) USD per 1M tokens."""
    return PRICES.get(model, OTHER_PRICE)


def authorize(sim: OpenClawSimBase, request: web.Request) -> tuple[Account, ProvKey]:
    """The account and key behind `Authorization: Bearer sk-prov-…`, or the 401 for it."""
    found = sim.find_provisioned(bearer_token(request))
    if found is None:
        raise SimError(401, "UNAUTHORIZED", "Invalid or missing provisioned key.")
    account, key = found
    now = sim.now()
    if key.revoked_at is not None:
        raise SimError(401, "KEY_REVOKED", f"The key '{key.name}' has been revoked.")
    if key.disabled:
        raise SimError(401, "KEY_DISABLED", f"The key '{key.name}' is disabled.")
    if key.expired(now):
        raise SimError(
            401, "KEY_EXPIRED", f"The key '{key.name}' expired at {iso(key.expires_at or now)}."
        )
    return account, key


def check_spend(account: Account, key: ProvKey, now: float) -> None:
    """429 when the key's limit for this period is used up; then auto top-up; 402 when empty."""
    if key.credit_limit is not None and key.limited_usage(now) >= key.credit_limit:
        period = f"{key.limit_reset} " if key.limit_reset else ""
        resets = key.resets_at(now)
        when = f"; it resets at {iso(resets)}" if resets is not None else ""
        raise SimError(
            429,
            "CREDIT_LIMIT_EXCEEDED",
            f"The key '{key.name}' reached its {period}credit limit of ${key.credit_limit}{when}.",
        )
    account.auto_topup_before_request(now)
    if account.remaining <= 0:
        raise SimError(
            402, "INSUFFICIENT_CREDITS", "The account has no credits left; purchase more."
        )


def _request_body(raw: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    model = raw.get("model")
    messages = raw.get("messages")
    if not isinstance(model, str) or not model.strip():
        raise SimError(400, "INVALID_INPUT", "model is required")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        raise SimError(400, "INVALID_INPUT", "messages must be a non-empty list of messages")
    return model, messages


async def chat_completions(
    sim: OpenClawSimBase,
    request: web.Request,
    body: dict[str, Any],
    upstream: Upstream = "alltoken",
) -> web.StreamResponse:
    """Serve one proxied chat completion."""
    account, key = authorize(sim, request)
    model, messages = _request_body(body)
    now = sim.now()
    check_spend(account, key, now)
    search: SearchMode = "off"
    if body.get("enable_search"):
        honoured = upstream == "alltoken" and catalog.supports_search(model)
        search = "honoured" if honoured else "ignored"
    pieces = split_tokens(compose_answer(messages, model, search))
    max_tokens = body.get("max_tokens")
    finish = "stop"
    if isinstance(max_tokens, int) and 0 < max_tokens < len(pieces):
        pieces, finish = pieces[:max_tokens], "length"
    sent_prompt = prompt_tokens(messages)
    charged = ChatPricing(*price_per_m(model), sent_prompt)  # what OpenClaw Token meters
    upstream_cost = (
        ChatPricing(*chat_price_per_m(model), sent_prompt) if upstream == "alltoken" else None
    )
    sim.stats["proxy_requests"] += 1
    request_id = sim.request_id(request)
    if body.get("stream"):
        return await _stream(
            sim, request, account, key, model, pieces, finish, charged, upstream_cost
        )
    completion = count_tokens("".join(pieces))
    _meter(sim, account, key, model, charged, completion)
    return web.json_response(
        {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(now),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": finish,
                }
            ],
            "usage": charged.usage(completion),
            "x-gateway-request-id": request_id,
        }
    )


def _meter(
    sim: OpenClawSimBase,
    account: Account,
    key: ProvKey,
    model: str,
    pricing: ChatPricing,
    completion: int,
) -> None:
    tokens = pricing.prompt_tokens + completion
    account.charge(key, UsageEvent(sim.now(), model, tokens, pricing.cost(completion)))


async def _stream(
    sim: OpenClawSimBase,
    request: web.Request,
    account: Account,
    key: ProvKey,
    model: str,
    pieces: list[str],
    finish: str,
    charged: ChatPricing,
    upstream_cost: ChatPricing | None,
) -> web.StreamResponse:
    request_id = sim.request_id(request)
    resp = await open_event_stream(request)
    # The proxy forces include_usage: the last chunk always carries usage.
    chunk = ChunkWriter(
        f"chatcmpl-{secrets.token_hex(12)}", model, int(sim.now()), request_id, True
    )
    sent = 0
    metered = False
    tps = sim.config.tokens_per_second
    try:
        await resp.write(chunk.role())
        for piece in pieces:
            if tps > 0:
                await asyncio.sleep(1 / tps)
            await resp.write(chunk.content(piece))
            sent += 1
        await resp.write(chunk.finish(finish))
        await resp.write(chunk.usage(charged.usage(sent)))
        await resp.write(b"data: [DONE]\n\n")
        if upstream_cost is not None:
            await resp.write(b": " + upstream_cost.cost_line(sent).encode() + b"\n\n")
        # Like the real server (usage recorded in the stream's flush): metered before the end.
        _meter(sim, account, key, model, charged, sent)
        metered = True
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client left: meter what was sent
    finally:
        if not metered:
            _meter(sim, account, key, model, charged, sent)
    return resp


class ProxyRoutes(OpenClawSimBase):
    """The proxy route, for provisioned keys."""

    # The switch for the upstream's kind (see the module docstring); tests set it per instance.
    upstream: Upstream = "alltoken"

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions with a provisioned key."""
        return await chat_completions(self, request, await self._body(request), self.upstream)
