"""Handlers for the six AllToken commands."""

from __future__ import annotations

import difflib
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

from bot.backends.alltoken import catalog
from bot.backends.alltoken.failures import render_failure, suggest_alternatives
from bot.backends.alltoken.hooks import ChatFallback, chat_continuation
from bot.backends.alltoken.jobs import HOLD_MARGIN_S, image_estimate, video_estimate
from bot.backends.alltoken.pricing import Prices, cost_of, format_usd, prices_from_cost_line
from bot.backends.alltoken.render import (
    MEDIA_KINDS,
    cost_table,
    media_cost,
    models_reply,
    reported_cost,
    usage_line,
)
from bot.backends.alltoken.service import AllTokenService, ChatMessage, ChatResult, ModelType
from bot.backends.alltoken.spec import (
    ChatCommand,
    CostCommand,
    ImageCommand,
    ModelsCommand,
    SearchCommand,
    VideoCommand,
)
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.messages import Failure, Notice, Text
from bot.core.spend import SpendHold
from bot.store import JobRecord, LastCall, UsageRecord

log = logging.getLogger(__name__)

# A chat's budget estimate: the prompt at ~4 characters a token, this many completion tokens,
# at the catalog's prices; never less than the floor (and the floor when there is no price).
COMPLETION_TOKENS_GUESS = 1024
CHAT_ESTIMATE_FLOOR = Decimal("0.002")


async def failure_for(
    ctx: HandlerContext, error: BackendError, model: str | None, kind: ModelType = "chat"
) -> Failure:
    """render_failure plus live alternatives when every provider of `model` failed, and the
    closest known model id when `model` does not exist ("did you mean `claude-sonnet-4-6`?")."""
    alternatives: list[str] | None = None
    if error.code == "all_providers_failed" and model:
        alternatives = await _alternatives(ctx, model)
    failure = render_failure(error, alternatives=alternatives)
    if error.code in ("model_not_found", "upstream_model_not_found") and model:
        # The cached list (no extra call on an error path), else the built-in catalog.
        cached = ctx.services.get(AllTokenService).cached_models(kind)
        builtin = {"image": catalog.IMAGE_MODELS, "video": catalog.VIDEO_MODELS}
        known = [m.id for m in cached] if cached else list(builtin.get(kind, catalog.CHAT_MODELS))
        close = difflib.get_close_matches(model, [m for m in known if m != model], n=1)
        if close:
            hint = f"Did you mean `{close[0]}`? " + (failure.hint or "")
            failure = failure.model_copy(update={"hint": hint.strip()})
    return failure


async def _alternatives(ctx: HandlerContext, model: str) -> list[str]:
    svc = ctx.services.get(AllTokenService)
    models = svc.cached_models("chat")
    if models is None:
        try:
            models = await svc.list_models(await ctx.require_key("alltoken", lend=True), "chat")
        except Exception:
            models = []
    ids = [m.id for m in models] or list(catalog.CHAT_MODELS)
    return suggest_alternatives(model, ids)


# A call's cost, the prices it was worked out from, and where they came from.
Priced = tuple[Decimal | None, Prices | None, str]


async def _cost_and_prices(ctx: HandlerContext, result: ChatResult) -> Priced:
    """The authoritative SSE cost when present, else the catalog's prices applied to usage."""
    if result.cost is not None:
        return (
            result.cost.cost,
            prices_from_cost_line(result.model, result.cost),
            "reported by AllToken",
        )
    if result.usage is None:
        return None, None, ""
    try:
        prices = await ctx.services.get(AllTokenService).catalog_prices(result.model)
    except BackendError as exc:
        log.info("no catalog price for %s: %s", result.model, exc.code)
        return None, None, ""
    if prices is None:
        return None, None, ""
    return (
        cost_of(result.usage.prompt_tokens, result.usage.completion_tokens, prices),
        prices,
        "estimated from catalog prices",
    )


async def _hold_chat(ctx: HandlerContext, command: str, model: str, chars: int) -> SpendHold:
    """Hold the chat's estimate against the caps (SpendRefused before anything is sent)."""

    async def estimate() -> Decimal:
        # Prices known without asking (a refused call sends nothing): this conversation's last
        # call's SSE prices for the same model, else the catalog's if cached, else the floor.
        prices = ctx.services.get(AllTokenService).cached_prices(model)
        last = await ctx.store.get_last_call(ctx.owner, ctx.inbound.conversation_key)
        if last and last.model == model and last.input_price and last.output_price:
            per_1k = Decimal(1000)
            prices = Prices(
                model=model,
                input_per_1m=last.input_price * per_1k,
                output_per_1m=last.output_price * per_1k,
                source="sse",
            )
        if prices is None:
            return CHAT_ESTIMATE_FLOOR
        guess = cost_of(chars // 4 + 1, COMPLETION_TOKENS_GUESS, prices)
        return max(guess, CHAT_ESTIMATE_FLOOR)

    source = ctx.key_source("alltoken")
    return await ctx.spend.hold(ctx.spender, "alltoken", command, estimate, source)


async def _record(
    ctx: HandlerContext,
    command: str,
    result: ChatResult,
    hold: SpendHold,
    priced: Priced | None = None,
) -> Decimal | None:
    """Settle the hold with the call's usage row and keep it as the conversation's last call.

    `priced` is `_cost_and_prices` when the caller already worked it out (for the usage line).
    """
    cost, prices, source = priced if priced is not None else await _cost_and_prices(ctx, result)
    usage = result.usage
    pt = usage.prompt_tokens if usage else 0
    ct = usage.completion_tokens if usage else 0
    # The SSE cost line is AllToken's word; catalog prices x tokens are an estimate.
    await hold.settle(
        UsageRecord(
            owner=ctx.owner,
            service="alltoken",
            command=command,
            model=result.model,
            prompt_tokens=pt,
            completion_tokens=ct,
            cost_usd=cost,
            request_id=result.request_id,
            conversation_key=ctx.inbound.conversation_key,
        ),
        cost,
        "reported" if source == "reported by AllToken" else "estimate",
    )
    per_1k = Decimal(1000)
    last = LastCall(
        command=command,
        model=result.model,
        prompt_tokens=pt,
        completion_tokens=ct,
        cost_usd=cost if source == "reported by AllToken" else None,
        input_price=prices.input_per_1m / per_1k if prices else None,
        output_price=prices.output_per_1m / per_1k if prices else None,
        request_id=result.request_id,
    )
    for key in {ctx.inbound.conversation_key, ctx.conversation.destination.conversation_key}:
        await ctx.store.set_last_call(ctx.owner, key, last)
    ctx.memory.note_call(
        "alltoken", ctx.inbound.conversation_key, ctx.conversation.destination.conversation_key
    )
    ctx.request_id = result.request_id
    return cost


def _dropped_notice(dropped: int) -> list[Notice]:
    """Say so when older thread messages did not fit the context (as llmcord does)."""
    if not dropped:
        return []
    what = "message" if dropped == 1 else "messages"
    return [
        Notice(
            level="info",
            text=f"The {dropped} oldest {what} of this thread did not fit the context and "
            "were left out.",
        )
    ]


async def chat(cmd: ChatCommand, ctx: HandlerContext) -> None:
    """Stream the answer into the conversation, then the usage and cost line."""
    key = await ctx.require_key("alltoken", lend=True)
    window = ctx.history()
    messages = [ChatMessage(role=turn.role, content=turn.text) for turn in window.turns]
    messages.append(ChatMessage(role="user", content=cmd.prompt))
    hold = await _hold_chat(ctx, "chat", cmd.model, sum(len(m.content) for m in messages))
    try:
        await _chat(cmd, ctx, key, window.dropped, messages, hold)
    finally:
        await hold.release()  # a no-op once settled; frees the estimate on any failure


async def _chat(
    cmd: ChatCommand,
    ctx: HandlerContext,
    key: str,
    dropped: int,
    messages: list[ChatMessage],
    hold: SpendHold,
) -> None:
    chat_stream = ctx.services.get(AllTokenService).stream_chat(key, cmd.model, messages)
    out = ctx.conversation.stream()
    started = False
    try:
        async for delta in chat_stream:
            started = True
            await out.append(delta)
    except BackendError as exc:
        # AllToken balance empty: the same request through the user's OpenClaw Token fallback.
        fallback = ctx.services.find(ChatFallback)
        if not started and fallback and await fallback.chat(ctx, exc, cmd.model, messages, out):
            return
        failure = await failure_for(ctx, exc, cmd.model)
        ctx.request_id = exc.request_id
        if started:
            await out.finish([Notice(level="warning", text="The answer stopped early."), failure])
        else:
            await ctx.conversation.say([failure])
        raise HandledFailure(exc) from None
    result = chat_stream.result
    priced = await _cost_and_prices(ctx, result)
    cost, _prices, source = priced
    await out.finish(
        [
            usage_line(
                result.model,
                result.usage,
                cost,
                cost_source="" if source.startswith("reported") else "est.",
            ),
            *_dropped_notice(dropped),
        ]
    )
    await _record(ctx, "chat", result, hold, priced)
    ctx.memory.note_thread(
        ctx.conversation.destination.conversation_key, chat_continuation(cmd.model)
    )


async def search(cmd: SearchCommand, ctx: HandlerContext) -> None:
    """Web-search-grounded answer (DeepSeek/Qwen), one reply with the usage line."""
    key = await ctx.require_key("alltoken", lend=True)
    hold = await _hold_chat(ctx, "search", cmd.model, len(cmd.query))
    try:
        result = await ctx.services.get(AllTokenService).search(key, cmd.model, cmd.query)
    except BackendError as exc:
        await hold.release()
        fallback = ctx.services.find(ChatFallback)
        if fallback and await fallback.search(ctx, exc, cmd.model, cmd.query):
            return
        ctx.request_id = exc.request_id
        await ctx.conversation.say([await failure_for(ctx, exc, cmd.model)])
        raise HandledFailure(exc) from None
    except BaseException:
        await hold.release()
        raise
    cost = await _record(ctx, "search", result, hold)
    text = result.text or "_(the model returned no text)_"
    await ctx.conversation.say([Text(markdown=text), usage_line(result.model, result.usage, cost)])


async def models(cmd: ModelsCommand, ctx: HandlerContext) -> None:
    """List model ids of one type, filtered."""
    key = await ctx.require_key("alltoken", lend=True)
    try:
        found = await ctx.services.get(AllTokenService).list_models(key, cmd.type)
    except BackendError as exc:
        ctx.request_id = exc.request_id
        await ctx.conversation.say([render_failure(exc)])
        raise HandledFailure(exc) from None
    await ctx.conversation.say([models_reply(cmd.type, found, cmd.filter)])


async def _latest_media_job(ctx: HandlerContext) -> JobRecord | None:
    """The caller's newest image or video job started from this conversation."""
    for job in await ctx.store.jobs_for(ctx.owner, limit=20):
        if job.kind in MEDIA_KINDS and job.state.get("conversation_key") == (
            ctx.inbound.conversation_key
        ):
            return job
    return None


async def _media_cost(ctx: HandlerContext, last: LastCall | None) -> bool:
    """Answer "how much did that cost" when "that" is an image or video; False if it is not.

    An image or video job newer than the last recorded call is "that" even while it runs (its
    call is recorded only on delivery). Catalog token prices never apply to media.
    """
    job = await _latest_media_job(ctx)
    if job is not None and (
        last is None or last.command in MEDIA_KINDS or job.created_at > last.at
    ):
        state = job.state
        task_id = state.get("task_id")
        usage = state.get("usage") if isinstance(state.get("usage"), dict) else None
        cost = reported_cost(usage)
        if cost is None and last is not None and last.request_id == task_id:
            cost = last.cost_usd
        if usage is None and last is not None and last.request_id == task_id:
            usage = {"total_tokens": last.prompt_tokens + last.completion_tokens}
        await ctx.conversation.say(
            media_cost(
                job.kind,
                state,
                status=job.status,
                request_id=str(task_id) if task_id else None,
                usage=usage,
                cost=cost,
            )
        )
        return True
    if last is not None and last.command in MEDIA_KINDS:
        # The job row is gone (or too old to list); the last call still says what it was.
        await ctx.conversation.say(
            media_cost(
                last.command,
                {"model": last.model},
                status="done",
                request_id=last.request_id,
                usage={"total_tokens": last.prompt_tokens + last.completion_tokens},
                cost=last.cost_usd,
            )
        )
        return True
    return False


def _fallback_cost(last: LastCall) -> Notice:
    """A call answered through the OpenClaw Token fallback: its charge (learned from the key's
    usage) or "not known yet" — never AllToken's prices or the upstream's cost line."""
    charge = (
        f"OpenClaw Token charged {format_usd(last.cost_usd)} for it"
        if last.cost_usd is not None
        else "OpenClaw Token's charge for it is not known yet "
        "(`/openclaw-token integrate --status` shows the key's usage)"
    )
    return Notice(
        level="info",
        text=f"Your last call here (`{last.model}`, {last.prompt_tokens} prompt + "
        f"{last.completion_tokens} completion tokens) was answered through your OpenClaw Token "
        f"fallback: {charge}.",
    )


async def cost(cmd: CostCommand, ctx: HandlerContext) -> None:
    """Cost of explicit token counts (catalog prices) or of the last AllToken call here."""
    svc = ctx.services.get(AllTokenService)
    if cmd.model is None:
        last = await ctx.store.get_last_call(ctx.owner, ctx.inbound.conversation_key)
        if await _media_cost(ctx, last):
            return
        if last is not None and last.command.startswith("fallback:"):
            await ctx.conversation.say([_fallback_cost(last)])
            return
        if last is None or last.model is None:
            await ctx.conversation.whisper(
                [
                    Notice(
                        level="info",
                        text="No AllToken call of yours in this conversation yet. Give the "
                        "numbers instead: `/alltoken-cost <model> <prompt_tokens> <completion_tokens>`.",
                    )
                ]
            )
            return
        model, pt, ct = last.model, last.prompt_tokens, last.completion_tokens
        if last.cost_usd is not None:
            prices = None
            if last.input_price is not None and last.output_price is not None:
                prices = Prices(
                    model=model,
                    input_per_1m=last.input_price * 1000,
                    output_per_1m=last.output_price * 1000,
                    source="sse",
                )
            await ctx.conversation.say(
                [
                    cost_table(
                        model,
                        pt,
                        ct,
                        last.cost_usd,
                        prices,
                        f"reported by AllToken (request {last.request_id})",
                    )
                ]
            )
            return
    else:
        model = cmd.model
        pt = cmd.prompt_tokens or 0
        ct = cmd.completion_tokens or 0
    try:
        prices = await svc.catalog_prices(model)
    except BackendError as exc:
        ctx.request_id = exc.request_id
        await ctx.conversation.say([render_failure(exc)])
        raise HandledFailure(exc) from None
    if prices is None:
        await ctx.conversation.say(
            [
                Failure(
                    code="no_prices",
                    message=f"AllToken's catalog lists no prices for `{model}`.",
                    hint="Check the id with `/alltoken-models`.",
                )
            ]
        )
        return
    await ctx.conversation.say(
        [
            cost_table(
                model, pt, ct, cost_of(pt, ct, prices), prices, "catalog prices (USD per 1M tokens)"
            )
        ]
    )


async def image(cmd: ImageCommand, ctx: HandlerContext) -> None:
    """Start a durable image job (the row exists before AllToken is called)."""
    await ctx.require_key("alltoken", lend=True)
    svc = ctx.services.get(AllTokenService)
    await _start_media(
        ctx,
        "image",
        lambda: image_estimate(svc, cmd.model),
        ctx.settings.image_timeout_s,
        {
            "prompt": cmd.prompt,
            "model": cmd.model,
            "size": cmd.size,
            "quality": cmd.quality,
            "idempotency_key": str(uuid.uuid4()),
            "conversation_key": ctx.inbound.conversation_key,
        },
    )
    ctx.memory.note_call(
        "alltoken", ctx.inbound.conversation_key, ctx.conversation.destination.conversation_key
    )


async def video(cmd: VideoCommand, ctx: HandlerContext) -> None:
    """Start a durable video job."""
    await ctx.require_key("alltoken", lend=True)
    svc = ctx.services.get(AllTokenService)
    await _start_media(
        ctx,
        "video",
        lambda: video_estimate(svc, cmd.model, cmd.duration, cmd.resolution),
        ctx.settings.video_timeout_s,
        {
            "prompt": cmd.prompt,
            "model": cmd.model,
            "duration": cmd.duration,
            "ratio": cmd.ratio,
            "resolution": cmd.resolution,
            "conversation_key": ctx.inbound.conversation_key,
        },
    )
    ctx.memory.note_call(
        "alltoken", ctx.inbound.conversation_key, ctx.conversation.destination.conversation_key
    )


async def _start_media(
    ctx: HandlerContext,
    kind: str,
    estimate: Callable[[], Awaitable[Decimal]],
    timeout_s: float,
    state: dict[str, object],
) -> None:
    """Reserve the job's estimate (refused before anything is sent), then start the job with
    the hold in its state; the job settles it on delivery and releases it on failure."""
    # Over the in-flight limit: refused before the estimate's price lookup or any hold.
    await ctx.jobs.check_room(kind, ctx.owner)
    source = ctx.key_source("alltoken")
    held: list[Decimal] = []

    async def remembered() -> Decimal:
        held.append(await estimate())
        return held[-1]

    hold = await ctx.spend.hold(
        ctx.spender, "alltoken", kind, remembered, source, ttl_s=timeout_s + HOLD_MARGIN_S
    )
    # Only keys that are set: an own-key, uncapped job's row stays as it always was.
    if source == "workspace":
        state["key_source"] = source
    if hold.id is not None:
        state["spend_hold"] = hold.id
        state["spend_estimate"] = str(held[-1]) if held else None
    try:
        await ctx.jobs.start(kind, ctx.owner, ctx.conversation.destination, state)
    except BaseException:
        await hold.release()
        raise
