"""Handlers for the OpenMarlin commands: executions, tasks, registration, billing, keys.

Every OpenMarlin failure is answered here (code, request id, next step) and then raised as
HandledFailure, so the app's generic (AllToken-flavoured) failure text never shows.
Account and money replies (status, balance, activity, referral, keys, 402) are private.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, NoReturn

from bot.backends.openmarlin.jobs import (
    REGISTRATION_KIND,
    SERVICE,
    TASK_KIND,
    TOPUP_KIND,
    job_state_for_task,
    last_balance,
    remember_balance,
)
from bot.backends.openmarlin.render import (
    KEY_HELP,
    RoutingSent,
    activity_text,
    balance_fields,
    failure,
    help_text,
    insufficient_parts,
    models_text,
    readable,
    referral_parts,
    snapshot_fields,
    task_done,
    task_failed,
    task_progress,
    when,
)
from bot.backends.openmarlin.service import (
    ExecutionChunk,
    ExecutionRequest,
    ExecutionResult,
    InsufficientBalance,
    OpenMarlinService,
)
from bot.backends.openmarlin.spec import (
    USAGE,
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OMTaskStatus,
    OMTopUp,
)
from bot.backends.openmarlin.wire import (
    EXECUTION_ESTIMATE,
    TASK_HOLD_S,
    settlement_of,
    task_estimate,
)
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.family import FormHandler
from bot.core.key_shapes import fingerprint, key_service
from bot.core.messages import (
    Failure,
    Fields,
    FormField,
    FormRequest,
    Notice,
    Part,
    Text,
)
from bot.core.secret_refusal import typed_in_public
from bot.core.spend import SpendHold
from bot.store import UsageRecord

if TYPE_CHECKING:
    from bot.core.messages import TextStream
log = logging.getLogger(__name__)

KEY_FORM = "key.openmarlin"


def service_of(ctx: HandlerContext) -> OpenMarlinService:
    """The OpenMarlin service the family attached."""
    return ctx.services.get(OpenMarlinService)


async def _fail(
    ctx: HandlerContext,
    exc: BackendError,
    *,
    sent: RoutingSent | None = None,
    task: bool = False,
    private: bool = False,
) -> NoReturn:
    """Answer a failure (the 402 as a top-up offer, privately) and stop the handler."""
    ctx.request_id = exc.request_id
    info = InsufficientBalance.from_error(exc)
    if info is not None:
        await remember_balance(ctx.store, ctx.owner, info.current, info.workspace_id)
        await ctx.conversation.whisper(insufficient_parts(info, exc.request_id))
    else:
        part = failure(exc, sent=sent, task=task, server_url=service_of(ctx).server_url)
        if private:
            await ctx.conversation.whisper([part])
        else:
            await ctx.conversation.say([part])
    raise HandledFailure(exc)


# --- executions and tasks ----------------------------------------------------------------------


async def execute(cmd: OMExecute, ctx: HandlerContext) -> None:
    """POST /v1/executions: stream into the chat when the server streams, else one reply."""
    key = await ctx.require_key(SERVICE, lend=True)
    source = ctx.key_source(SERVICE)
    hold = await ctx.spend.hold(ctx.spender, SERVICE, "execute", EXECUTION_ESTIMATE, source)
    try:
        await _execute(cmd, ctx, key, hold)
    finally:
        await hold.release()  # a no-op once settled; frees the estimate on any failure


async def _execute(cmd: OMExecute, ctx: HandlerContext, key: str, hold: SpendHold) -> None:
    svc = service_of(ctx)
    sent = RoutingSent(cmd.model, cmd.provider_id, dict(cmd.labels))
    if cmd.model and cmd.provider_id:
        await _confirm_route(ctx, svc, key, cmd.model, cmd.provider_id, sent)
    session = hashlib.sha256(ctx.inbound.conversation_key.encode()).hexdigest()[:24]
    request = ExecutionRequest(
        instruction=cmd.instruction,
        model=cmd.model,
        provider_id=cmd.provider_id,
        labels=dict(cmd.labels),
        session_key=f"tokenbot-{session}",
        metadata={"client": "tokenbot", "platform": ctx.inbound.platform},
    )
    out: TextStream | None = None
    result: ExecutionResult | None = None
    try:
        async for event in svc.execute(key, request):
            if isinstance(event, ExecutionChunk):
                if out is None:
                    out = ctx.conversation.stream()
                await out.append(event.text)
            elif isinstance(event, ExecutionResult):
                result = event
    except BackendError as exc:
        if out is None:
            await _fail(ctx, exc, sent=sent)
        ctx.request_id = exc.request_id
        await out.finish(
            [
                Notice(level="warning", text="The answer stopped early."),
                failure(exc, sent=sent, server_url=svc.server_url),
            ]
        )
        raise HandledFailure(exc) from None
    assert result is not None  # execute() always ends with a result or raises
    trailer = _trailer(result, sent)
    if out is not None:
        await out.finish([trailer])
    else:
        await ctx.conversation.say([Text(markdown=result.text or "_(no output)_"), trailer])
    ctx.request_id = result.request_id
    cost, source = settlement_of(await svc.settlement(key, result))
    await hold.settle(
        UsageRecord(
            owner=ctx.owner,
            service=SERVICE,
            command="execute",
            model=result.model,
            request_id=result.request_id,
            conversation_key=ctx.inbound.conversation_key,
        ),
        cost,
        source,
    )


def _trailer(result: ExecutionResult, sent: RoutingSent) -> Notice:
    bits = ["OpenMarlin"]
    if result.model:
        bits.append(f"`{result.model}`")
    if result.provider_id:
        bits.append(f"on `{result.provider_id}`")
    # Only a charge the server stated; a metadata echo carries none (nested shapes read too).
    settlement = result.metadata.get("settlement")
    if isinstance(settlement, dict):
        bits.append(readable(settlement))
    if sent.labels:
        bits.append("labels " + ",".join(f"{k}={v}" for k, v in sent.labels.items()))
    if result.request_id:
        bits.append(f"request {result.request_id}")
    return Notice(level="info", text=" · ".join(bits))


async def _confirm_route(
    ctx: HandlerContext,
    svc: OpenMarlinService,
    key: str,
    model: str,
    provider_id: str,
    sent: RoutingSent,
) -> None:
    """With both a model and a provider, the provider must advertise that exact model."""
    try:
        models = await svc.list_models(key)
    except BackendError as exc:
        await _fail(ctx, exc, sent=sent)
    entry = next((m for m in models if m.id == model), None)
    if entry is not None and entry.provider(provider_id) is not None:
        return
    others = [p.provider_id for p in entry.providers] if entry else []
    if others:
        hint = (
            f"Providers advertising `{model}`: "
            + ", ".join(f"`{p}`" for p in others)
            + ". Use one of them, or drop `on provider` and let OpenMarlin choose."
        )
    else:
        hint = "No connected provider advertises that model right now; see `/openmarlin models`."
    error = BackendError(
        "openmarlin",
        0,
        "provider_model_mismatch",
        f"Provider `{provider_id}` does not advertise `{model}` in /v1/models, so tokenbot did "
        f"not send the request. You asked for: {sent.describe()}.",
    )
    await ctx.conversation.say([Failure(code=error.code, message=error.message, hint=hint)])
    raise HandledFailure(error)


async def task(cmd: OMTask, ctx: HandlerContext) -> None:
    """Submit a long-running task as a durable job and watch it (its estimate held first)."""
    await ctx.require_key(SERVICE, lend=True)
    source = ctx.key_source(SERVICE)
    estimate = task_estimate(cmd.duration_ms)
    hold = await ctx.spend.hold(ctx.spender, SERVICE, "task", estimate, source, ttl_s=TASK_HOLD_S)
    state = job_state_for_task(
        prompt=cmd.prompt,
        duration_ms=cmd.duration_ms,
        aspect_ratio=cmd.aspect_ratio,
        ignored=list(cmd.ignored) or None,
        conversation_key=ctx.inbound.conversation_key,
        key_source="workspace" if source == "workspace" else None,
        spend_hold=hold.id,
        spend_estimate=str(estimate) if hold.id else None,
    )
    try:
        await ctx.jobs.start(TASK_KIND, ctx.owner, ctx.conversation.destination, state)
    except BaseException:
        await hold.release()
        raise


async def task_status(cmd: OMTaskStatus, ctx: HandlerContext) -> None:
    """One task's state; an unfinished task is watched to the end (once)."""
    key = await ctx.require_key(SERVICE, lend=True)
    try:
        status = await service_of(ctx).get_task(key, cmd.task_id)
    except BackendError as exc:
        await _fail(ctx, exc, task=True)
    label = f"task {status.task_id}"
    if status.status == "succeeded":
        await ctx.conversation.say(task_done(status, label))
        return
    if status.status == "failed":
        await ctx.conversation.say([task_failed(status)])
        return
    for job in await ctx.store.jobs_for(ctx.owner, limit=50):
        if (
            job.kind == TASK_KIND
            and job.status in ("pending", "running", "delivering")
            and job.state.get("task_id") == status.task_id
        ):
            await ctx.conversation.whisper(
                [
                    *task_progress(status.task_id, status.status, label),
                    Notice(level="info", text="Already watching it: the result will be posted."),
                ]
            )
            return
    await ctx.jobs.start(
        TASK_KIND,
        ctx.owner,
        ctx.conversation.destination,
        job_state_for_task(
            task_id=status.task_id,
            prompt=label,
            conversation_key=ctx.inbound.conversation_key,
            key_source="workspace" if ctx.key_source(SERVICE) == "workspace" else None,
        ),
    )


# --- registration, status, keys ----------------------------------------------------------------


async def register(cmd: OMRegister, ctx: HandlerContext) -> None:
    """Start a durable registration; the sign-in link goes to the person privately."""
    for job in await ctx.store.jobs_for(ctx.owner, limit=50):
        if job.kind == REGISTRATION_KIND and job.status in ("pending", "running", "delivering"):
            await ctx.conversation.whisper(
                [
                    Notice(
                        level="info",
                        text="A registration is already waiting for you: open the sign-in link "
                        "sent to you earlier, or wait for it to expire and try again.",
                    )
                ]
            )
            return
    if await ctx.store.credential_info(ctx.owner, SERVICE) is not None:
        await ctx.conversation.whisper(
            [
                Notice(
                    level="info",
                    text="You already have an OpenMarlin key stored; when this registration "
                    "completes, the new key replaces it.",
                )
            ]
        )
    await ctx.jobs.start(
        REGISTRATION_KIND, ctx.owner, ctx.conversation.destination, {"auth_flow": cmd.auth_flow}
    )


async def status(cmd: OMStatus, ctx: HandlerContext) -> None:
    """Registration and key status, with a live check of the key."""
    rows: list[tuple[str, str]] = []
    info = await ctx.store.credential_info(ctx.owner, SERVICE)
    parts: list[Part] = []
    if info is None:
        rows.append(("key", "none stored"))
    else:
        set_at = info.meta.get("key_set_at")
        rows.append(
            (
                "key",
                f"stored {info.fingerprint} (encrypted), set {when(set_at or info.created_at)}",
            )
        )
        if info.meta.get("workspace_id"):
            rows.append(("workspace", info.meta["workspace_id"]))
        key = await ctx.store.get_credential(ctx.owner, SERVICE)
        try:
            balance = await service_of(ctx).balance(key or "")
        except BackendError as exc:
            rows.append(("key check", f"failed: {exc.code}"))
            parts.append(failure(exc, server_url=service_of(ctx).server_url))
        else:
            rows.append(("key check", "works"))
            await remember_balance(
                ctx.store, ctx.owner, balance.available_balance, balance.workspace_id
            )
    registration = next(
        (j for j in await ctx.store.jobs_for(ctx.owner, limit=50) if j.kind == REGISTRATION_KIND),
        None,
    )
    if registration is not None:
        state = {
            "pending": "starting",
            "running": "waiting for you to approve the sign-in link",
            "delivering": "storing your key",
            "done": "completed",
            "failed": f"ended ({registration.error})",
            "cancelled": "cancelled",
        }.get(registration.status, registration.status)
        rows.append(("registration", f"{state}, started {when(registration.created_at)}"))
    else:
        rows.append(("registration", "none from tokenbot"))
    reachable, detail = await service_of(ctx).probe()
    checked = "reachable" if reachable else "connectivity check failed"
    rows.append(("server", f"{service_of(ctx).server_url} — {checked} ({detail})"))
    parts.insert(0, Fields(title="OpenMarlin status", rows=rows))
    if info is None:
        parts.append(Notice(level="info", text=KEY_HELP))
    await ctx.conversation.whisper(parts)


async def key(cmd: OMKey, ctx: HandlerContext) -> None:
    """Store (privately), inspect or remove an existing key; never echoes it."""
    if cmd.action == "prompt":
        await ctx.conversation.request_form(
            FormRequest(
                form_id=KEY_FORM,
                title="OpenMarlin key",
                intro="Stored encrypted, used only for your own commands, never shown again.",
                fields=[
                    FormField(name="key", label="Your OpenMarlin API key", placeholder="claw_wsk_…")
                ],
            )
        )
        return
    if cmd.action == "status":
        info = await ctx.store.credential_info(ctx.owner, SERVICE)
        text = (
            f"Your OpenMarlin key {info.fingerprint} is stored (encrypted)."
            if info
            else "No OpenMarlin key stored for you. " + KEY_HELP
        )
        await ctx.conversation.whisper([Notice(level="info", text=text)])
        return
    if cmd.action == "remove":
        removed = await ctx.store.delete_credential(ctx.owner, SERVICE)
        text = "Removed your OpenMarlin key." if removed else "You had no OpenMarlin key stored."
        await ctx.conversation.whisper([Notice(level="success" if removed else "info", text=text)])
        return
    assert cmd.key is not None
    if typed_in_public(ctx.inbound):
        return  # everyone saw it; the app already told the person to rotate it
    await store_key(ctx, cmd.key.get_secret_value())


async def store_key(ctx: HandlerContext, secret: str) -> bool:
    """Check the key with a cheap authenticated call, then store it encrypted."""
    secret = secret.strip()
    svc = service_of(ctx)
    try:
        balance = await svc.balance(secret)
    except BackendError as exc:
        part = failure(exc, server_url=svc.server_url)
        if exc.status in (401, 403):
            part = Failure(
                code=exc.code,
                message="OpenMarlin refused that key, so it was not stored.",
                request_id=exc.request_id,
                hint="Copy it again, or run `/openmarlin register` for a new one.",
            )
        await ctx.conversation.whisper([part])
        return False
    meta = {"source": "manual", "key_set_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if balance.workspace_id:
        meta["workspace_id"] = balance.workspace_id
    await ctx.store.put_credential(ctx.owner, SERVICE, secret, meta=meta)
    await remember_balance(ctx.store, ctx.owner, balance.available_balance, balance.workspace_id)
    await ctx.conversation.whisper(
        [
            Notice(
                level="success",
                text=f"Stored your OpenMarlin key {fingerprint(secret)} for you (encrypted).",
            )
        ]
    )
    return True


def key_form() -> FormHandler:
    """The private key form's submission."""

    async def submit(ctx: HandlerContext, values: dict[str, str]) -> bool:
        value = values.get("key", "").strip()
        if not value:
            await ctx.conversation.whisper(
                [Notice(level="info", text="Nothing entered; no key stored.")]
            )
            return False
        if key_service(value) != "openmarlin":
            # Checked before any request: a pasted paragraph is not a header value to send.
            await ctx.conversation.whisper(
                [
                    Failure(
                        code="usage",
                        message="That is not an OpenMarlin key, so it was not stored.",
                        hint="OpenMarlin keys start with claw_wsk_; "
                        "or run `/openmarlin register` to get one.",
                    )
                ]
            )
            return False
        return await store_key(ctx, value)

    return submit


# --- models, billing, referral, help -------------------------------------------------------------


async def models(cmd: OMModels, ctx: HandlerContext) -> None:
    """Exact model refs with providers and labels."""
    key = await ctx.require_key(SERVICE, lend=True)
    try:
        found = await service_of(ctx).list_models(key)
    except BackendError as exc:
        await _fail(ctx, exc)
    await ctx.conversation.say([models_text(found, cmd.filter)])


async def balance(cmd: OMBalance, ctx: HandlerContext) -> None:
    """GET /v1/balance; when that fails, the last snapshot clearly labelled."""
    key = await ctx.require_key(SERVICE)
    svc = service_of(ctx)
    try:
        current = await svc.balance(key)
    except BackendError as exc:
        snapshot = snapshot_fields(await last_balance(ctx.store, ctx.owner))
        if snapshot is None:
            await _fail(ctx, exc, private=True)
        ctx.request_id = exc.request_id
        await ctx.conversation.whisper(
            [
                snapshot,
                Notice(
                    level="warning",
                    text="OpenMarlin did not answer, so this is the last balance tokenbot saw, "
                    "not a live figure.",
                ),
                failure(exc, server_url=svc.server_url),
            ]
        )
        raise HandledFailure(exc) from None
    await remember_balance(ctx.store, ctx.owner, current.available_balance, current.workspace_id)
    await ctx.conversation.whisper([balance_fields(current)])


async def activity(cmd: OMActivity, ctx: HandlerContext) -> None:
    """Recent usage events and ledger entries, as a compact table."""
    key = await ctx.require_key(SERVICE)
    svc = service_of(ctx)
    try:
        events, ledger = await asyncio.gather(svc.usage_events(key), svc.ledger(key))
    except BackendError as exc:
        await _fail(ctx, exc, private=True)
    await ctx.conversation.whisper([activity_text(events, ledger)])


async def topup(cmd: OMTopUp, ctx: HandlerContext) -> None:
    """`top up N`: a durable top-up job (checkout link privately, then watched)."""
    await ctx.require_key(SERVICE)
    await start_topup(ctx, cmd.amount)


async def start_topup(ctx: HandlerContext, amount: Decimal) -> None:
    """Start watching a new top-up of `amount` credits."""
    await ctx.jobs.start(
        TOPUP_KIND, ctx.owner, ctx.conversation.destination, {"amount": f"{amount.normalize():f}"}
    )


async def topup_action(ctx: HandlerContext, value: str) -> None:
    """The "Top up <shortfall>" button of a 402."""
    conversation = ctx.conversation
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal(0)
    if not amount.is_finite() or not 0 < amount <= 100_000:
        await conversation.whisper(
            [
                Notice(
                    level="warning",
                    text=f"That button is stale; use `{USAGE['openmarlin.topup']}`.",
                )
            ]
        )
        return
    if await ctx.store.credential_info(ctx.owner, SERVICE) is None:
        await conversation.whisper(
            [Notice(level="warning", text="You have no OpenMarlin key stored yet. " + KEY_HELP)]
        )
        return
    await start_topup(ctx, amount)


async def referral(cmd: OMReferral, ctx: HandlerContext) -> None:
    """The referral code and invite link (a server without the endpoint says so)."""
    key = await ctx.require_key(SERVICE)
    try:
        data = await service_of(ctx).referral_link(key)
    except BackendError as exc:
        if exc.status == 404:
            await ctx.conversation.whisper(
                [Notice(level="info", text="This server does not offer referral links.")]
            )
            return
        await _fail(ctx, exc, private=True)
    await ctx.conversation.whisper(referral_parts(data))


async def help_(cmd: OMHelp, ctx: HandlerContext) -> None:
    """What the OpenMarlin commands are."""
    await ctx.conversation.say([help_text()])
