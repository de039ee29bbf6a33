"""The fallback chain: AllToken answers 402 insufficient_balance to chat or search, and the
caller has integrated a provisioned key, so the same request goes through the OpenClaw Token
proxy with that key. The reply says the fallback was used; the proxy's own errors are shown
plainly. Registered as AllToken's `ChatFallback` hook (bot/backends/alltoken/hooks.py, the only
AllToken module this backend imports); images and videos have no fallback.
"""

from __future__ import annotations

from decimal import Decimal

from bot.backends.alltoken.hooks import (
    ChatFallback,
    ChatMessage,
    ChatResult,
    chat_continuation,
    usage_line,
    wants_fallback,
)
from bot.backends.openclaw_token.render import render_openclaw_failure
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.messages import Notice, Part, Text, TextStream
from bot.store import CredentialInfo, UsageRecord

PROXY = "openclaw_proxy"


async def _fallback_key(
    ctx: HandlerContext, error: BackendError
) -> tuple[str, CredentialInfo] | None:
    if not wants_fallback(error):
        return None
    key = await ctx.store.get_credential(ctx.owner, PROXY)
    info = await ctx.store.credential_info(ctx.owner, PROXY)
    return (key, info) if key and info else None


def _used(info: CredentialInfo) -> Notice:
    name = info.meta.get("name") or "provisioned key"
    return Notice(
        level="info",
        text=f"↪ Your AllToken balance is empty, so this answer came through your OpenClaw Token "
        f"fallback (key {name}, {info.fingerprint}).",
    )


def _tried(info: CredentialInfo) -> Notice:
    return Notice(
        level="warning",
        text="Your AllToken balance is empty, and your OpenClaw Token fallback "
        f"(key {info.meta.get('name') or info.fingerprint}) could not answer either:",
    )


def _handled(ctx: HandlerContext, exc: BackendError) -> Exception:
    """The shown failure, for the app to record (HandledFailure)."""
    ctx.request_id = exc.request_id
    return HandledFailure(exc)


async def _record(ctx: HandlerContext, command: str, result: ChatResult) -> Decimal | None:
    cost = result.cost.cost if result.cost else None
    usage = result.usage
    await ctx.store.record_usage(
        UsageRecord(
            owner=ctx.owner,
            service="openclaw_token",
            command=command,
            model=result.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost_usd=cost,
            request_id=result.request_id,
            conversation_key=ctx.inbound.conversation_key,
        )
    )
    ctx.request_id = result.request_id
    return cost


async def chat_fallback(
    svc: OpenClawTokenService,
    ctx: HandlerContext,
    error: BackendError,
    model: str,
    messages: list[ChatMessage],
    out: TextStream,
) -> bool:
    """Answer a chat through the proxy when AllToken said 402; False when there is no fallback."""
    found = await _fallback_key(ctx, error)
    if found is None:
        return False
    key, info = found
    stream = svc.proxy_chat(key, model, messages)
    started = False
    try:
        async for delta in stream:
            started = True
            await out.append(delta)
    except BackendError as exc:
        failure = render_openclaw_failure(exc, info.meta.get("hash"))
        if started:
            await out.finish([Notice(level="warning", text="The answer stopped early."), failure])
        else:
            await ctx.conversation.say([_tried(info), failure])
        raise _handled(ctx, exc) from None
    result = stream.result
    cost = await _record(ctx, "chat", result)
    await out.finish([usage_line(result.model, result.usage, cost), _used(info)])
    ctx.memory.note_thread(ctx.conversation.destination.conversation_key, chat_continuation(model))
    return True


async def search_fallback(
    svc: OpenClawTokenService, ctx: HandlerContext, error: BackendError, model: str, query: str
) -> bool:
    """Answer a search through the proxy when AllToken said 402; False when there is no fallback."""
    found = await _fallback_key(ctx, error)
    if found is None:
        return False
    key, info = found
    try:
        result = await svc.proxy_search(key, model, query)
    except BackendError as exc:
        await ctx.conversation.say(
            [_tried(info), render_openclaw_failure(exc, info.meta.get("hash"))]
        )
        raise _handled(ctx, exc) from None
    cost = await _record(ctx, "search", result)
    parts: list[Part] = [
        Text(markdown=result.text or "_(the model returned no text)_"),
        usage_line(result.model, result.usage, cost),
        _used(info),
    ]
    await ctx.conversation.say(parts)
    return True


class OpenClawFallback(ChatFallback):
    """AllToken's `ChatFallback` hook: the same request through the caller's provisioned key."""

    def __init__(self, service: OpenClawTokenService) -> None:
        self.service = service

    async def chat(
        self,
        ctx: HandlerContext,
        error: BackendError,
        model: str,
        messages: list[ChatMessage],
        out: TextStream,
    ) -> bool:
        """See ChatFallback.chat."""
        return await chat_fallback(self.service, ctx, error, model, messages, out)

    async def search(
        self, ctx: HandlerContext, error: BackendError, model: str, query: str
    ) -> bool:
        """See ChatFallback.search."""
        return await search_fallback(self.service, ctx, error, model, query)
