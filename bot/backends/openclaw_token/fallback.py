"""The fallback chain: AllToken answers 402 insufficient_balance to chat or search, and the
caller has integrated a provisioned key, so the same request goes through the OpenClaw Token
proxy with that key. The reply says the fallback was used; the proxy's own errors are shown
plainly. Registered as AllToken's `ChatFallback` hook (bot/backends/alltoken/hooks.py, the only
AllToken module this backend imports); images and videos have no fallback.

What the user pays is OpenClaw Token's charge, never the cost line the proxy passes through
from its own upstream: it is learned from the key's usage before and after the answer (with the
management key), and said to be not known yet when that cannot be read. The last call is kept
as "fallback:<command>" so `/alltoken-cost` answers the same way. A spend-limit refusal is kept
with the fallback key, so `keys usage` cannot claim room the proxy just refused.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from decimal import Decimal

from bot.backends.alltoken.hooks import (
    ChatFallback,
    ChatMessage,
    ChatResult,
    chat_continuation,
    usage_line,
    wants_fallback,
)
from bot.backends.openclaw_token.render import (
    refusal_from_meta,
    refusal_meta,
    render_openclaw_failure,
    usd,
    without_refusal,
)
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.messages import Notice, Part, Text, TextStream
from bot.store import CredentialInfo, LastCall, UsageRecord

PROXY = "openclaw_proxy"
MGMT = "openclaw_token"
# The prefix AllToken's cost handler recognises: a call answered by another service's fallback.
FALLBACK_CALL = "fallback:"
USAGE_READ_TIMEOUT_S = 5.0
_LINK = re.compile(r"https?://\S+")


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


class ChargeMeter:
    """OpenClaw Token's charge for one answer: the key's usage before and after it."""

    def __init__(self, svc: OpenClawTokenService, mgmt: str | None, key_hash: str | None) -> None:
        self.svc, self.mgmt, self.key_hash = svc, mgmt, key_hash
        self.before: Decimal | None = None
        self.after: Decimal | None = None

    async def _usage(self) -> Decimal | None:
        if not self.mgmt or not self.key_hash:
            return None
        try:
            read = self.svc.key_info(self.mgmt, self.key_hash)
            return (await asyncio.wait_for(read, USAGE_READ_TIMEOUT_S)).usage
        except (BackendError, TimeoutError):
            return None  # the answer matters more than the figure: it is "not known yet"

    async def start(self) -> None:
        """Read the usage before the proxy call."""
        self.before = await self._usage()

    async def finish(self) -> Decimal | None:
        """The charge, or None when it cannot be told (yet)."""
        if self.before is None:
            return None
        self.after = await self._usage()
        if self.after is None or self.after <= self.before:
            return None  # not recorded yet, or unreadable: never guess
        return self.after - self.before


def charge_notice(meter: ChargeMeter, charge: Decimal | None) -> Notice:
    """What OpenClaw Token charged for the answer, or that it is not known yet."""
    if charge is not None:
        return Notice(
            level="info",
            text=f"OpenClaw Token charged {usd(charge)} for this answer (your key's usage went "
            f"from {usd(meter.before)} to {usd(meter.after)}).",
        )
    target = meter.key_hash or "<hash>"
    return Notice(
        level="info",
        text="OpenClaw Token's charge for this answer is not known yet; "
        f"`/openclaw-token keys usage {target}` shows the key's usage.",
    )


async def _record(
    ctx: HandlerContext, command: str, result: ChatResult, charge: Decimal | None
) -> None:
    usage = result.usage
    pt = usage.prompt_tokens if usage else 0
    ct = usage.completion_tokens if usage else 0
    # The ledger's cost is OpenClaw Token's charge (the user's own provisioned key paid);
    # a charge not known yet is recorded as a 0 estimate, never the upstream's cost line.
    await ctx.spend.record(
        ctx.spender,
        UsageRecord(
            owner=ctx.owner,
            service="openclaw_token",
            command=command,
            model=result.model,
            prompt_tokens=pt,
            completion_tokens=ct,
            cost_usd=charge,
            request_id=result.request_id,
            conversation_key=ctx.inbound.conversation_key,
        ),
        charge,
        "charge" if charge is not None else "estimate",
        "own",
    )
    last = LastCall(
        command=f"{FALLBACK_CALL}{command}",
        model=result.model,
        prompt_tokens=pt,
        completion_tokens=ct,
        cost_usd=charge,
        request_id=result.request_id,
    )
    for conversation in {
        ctx.inbound.conversation_key,
        ctx.conversation.destination.conversation_key,
    }:
        await ctx.store.set_last_call(ctx.owner, conversation, last)
    # "how much did that cost" right after reaches AllToken's cost command, which answers it.
    ctx.memory.note_call(
        "alltoken", ctx.inbound.conversation_key, ctx.conversation.destination.conversation_key
    )
    ctx.request_id = result.request_id


async def _note_refusal(
    ctx: HandlerContext, key: str, info: CredentialInfo, exc: BackendError
) -> None:
    """Keep a spend-limit refusal with the key, or drop a stale one after an answer."""
    if exc.code != "CREDIT_LIMIT_EXCEEDED":
        return
    meta = {**info.meta, **refusal_meta(exc.code, datetime.now(UTC), exc.request_id)}
    await ctx.store.put_credential(ctx.owner, PROXY, key, meta=meta)


async def _answered(ctx: HandlerContext, key: str, info: CredentialInfo) -> None:
    """The key answered: a refusal seen before no longer holds."""
    if refusal_from_meta(info.meta, info.meta.get("hash", "")) is not None:
        await ctx.store.put_credential(ctx.owner, PROXY, key, meta=without_refusal(info.meta))


async def _meter(
    svc: OpenClawTokenService, ctx: HandlerContext, info: CredentialInfo
) -> ChargeMeter:
    meter = ChargeMeter(svc, await ctx.store.get_credential(ctx.owner, MGMT), info.meta.get("hash"))
    await meter.start()
    return meter


def has_sources(text: str) -> bool:
    """The answer cites something: at least one link."""
    return bool(_LINK.search(text))


def _no_sources() -> Notice:
    return Notice(
        level="warning",
        text="This answer came back without sources: the OpenClaw Token proxy's upstream may "
        "not search the web (only some upstreams honour web search), so it may rest on the "
        "model's training data alone.",
    )


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
    meter = await _meter(svc, ctx, info)
    stream = svc.proxy_chat(key, model, messages)
    started = False
    try:
        async for delta in stream:
            started = True
            await out.append(delta)
    except BackendError as exc:
        await _note_refusal(ctx, key, info, exc)
        failure = render_openclaw_failure(exc, info.meta.get("hash"))
        if started:
            await out.finish([Notice(level="warning", text="The answer stopped early."), failure])
        else:
            await ctx.conversation.say([_tried(info), failure])
        raise _handled(ctx, exc) from None
    result = stream.result
    charge = await meter.finish()
    await _answered(ctx, key, info)
    await _record(ctx, "chat", result, charge)
    # The usage line never carries the cost line the proxy passed through from its upstream.
    await out.finish(
        [usage_line(result.model, result.usage, None), charge_notice(meter, charge), _used(info)]
    )
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
    meter = await _meter(svc, ctx, info)
    try:
        result = await svc.proxy_search(key, model, query)
    except BackendError as exc:
        await _note_refusal(ctx, key, info, exc)
        await ctx.conversation.say(
            [_tried(info), render_openclaw_failure(exc, info.meta.get("hash"))]
        )
        raise _handled(ctx, exc) from None
    charge = await meter.finish()
    await _answered(ctx, key, info)
    await _record(ctx, "search", result, charge)
    parts: list[Part] = [Text(markdown=result.text or "_(the model returned no text)_")]
    if not has_sources(result.text):
        parts.append(_no_sources())
    parts += [
        usage_line(result.model, result.usage, None),
        charge_notice(meter, charge),
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
