"""`/openclaw-token credits …`: balance, buy (quote → Confirm → durable purchase job),
history, auto top-up.

The purchase's Idempotency-Key is fixed when the quote is shown and travels with the
confirmation into the job row, so a double click, a retried request or a restart mid-call all
charge once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from bot.backends.openclaw_token.common import (
    MGMT,
    failures_shown,
    management_key,
    private,
    service,
    show,
)
from bot.backends.openclaw_token.confirm import Confirmations, confirm_buttons
from bot.backends.openclaw_token.job_state import PurchaseState
from bot.backends.openclaw_token.render import (
    credits_fields,
    history_parts,
    purchase_fields,
    quote_fields,
    render_openclaw_failure,
    topup_fields,
    usd,
)
from bot.backends.openclaw_token.service import (
    AutoTopup,
    OpenClawTokenService,
    Purchase,
    purchase_total,
)
from bot.backends.openclaw_token.spec import (
    CreditsAutoTopup,
    CreditsBalance,
    CreditsBuy,
    CreditsHistory,
)
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.job_errors import JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Link, Notice, Part
from bot.store import AuditEntry

PURCHASE_JOB = "openclaw_purchase"
USAGE_NOT_IN_HISTORY = Notice(
    level="info",
    text="OpenClaw Token does not list proxy usage in the credits history: "
    "`/openclaw-token credits balance` shows the total used, `/openclaw-token keys list` each "
    "key's usage.",
)


async def balance(cmd: CreditsBalance, ctx: HandlerContext) -> None:
    """Total, used, remaining."""
    key = await management_key(ctx)
    async with failures_shown(ctx):
        credits = await service(ctx).credits(key)
    await show(ctx, cmd.as_json, credits, [credits_fields(credits)])


async def buy(cmd: CreditsBuy, ctx: HandlerContext, confirmations: Confirmations) -> None:
    """The quote (amount, fee, total) and a Confirm button; nothing is charged yet."""
    await management_key(ctx)
    token = await confirmations.offer(
        ctx.owner,
        "credits.buy",
        {"amount": str(cmd.amount), "idempotency_key": str(uuid.uuid4())},
    )
    await private(
        ctx,
        [
            quote_fields(cmd.amount),
            confirm_buttons(token, f"Confirm {usd(purchase_total(cmd.amount))}"),
        ],
    )


async def do_buy(ctx: HandlerContext, payload: dict[str, str]) -> None:
    """The confirmed purchase: a durable job row first, then the charge."""
    await management_key(ctx)
    await ctx.jobs.start(PURCHASE_JOB, ctx.owner, ctx.conversation.destination, payload)
    await private(
        ctx,
        [Notice(level="progress", text=f"Buying {usd(Decimal(payload['amount']))} of credits…")],
    )


class PurchaseJob:
    """POST /credits/purchase with the quote's Idempotency-Key; resent as-is after a restart."""

    kind = PURCHASE_JOB
    command = None  # it audits its own end, with the transaction id
    state_model = PurchaseState

    def __init__(self, svc: OpenClawTokenService) -> None:
        self.svc = svc

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        """Purchase failures are private."""
        await ctx.conversation.whisper([failure])

    async def run(self, ctx: JobContext) -> None:
        """Charge once, then tell the buyer."""
        key = await ctx.store.get_credential(ctx.owner, MGMT)
        if not key:
            raise JobFailed(
                Failure(
                    code="missing_key",
                    message="You signed out of OpenClaw Token before the purchase ran; "
                    "nothing was charged.",
                    hint="Sign in with `/openclaw-token auth login` and buy again.",
                )
            )
        amount = ctx.state.amount
        try:
            result = await self.svc.purchase(key, amount, ctx.state.idempotency_key)
        except BackendError as exc:
            await self._audit(ctx, "failed", exc.code, exc.request_id)
            raise JobFailed(render_openclaw_failure(exc)) from None
        # Resumed in "delivering" (a crash after the claim): the replayed answer is delivered.
        await ctx.deliver(lambda: self._tell_bought(ctx, result))

    async def _tell_bought(self, ctx: JobContext, result: Purchase) -> None:
        parts: list[Part]
        if result.checkout_url:
            total = usd(purchase_total(ctx.state.amount))
            parts = [
                Notice(level="info", text=f"Finish paying {total} here:"),
                Link(url=result.checkout_url, label="Complete the checkout"),
            ]
        else:
            parts = [
                Notice(level="success", text=f"Bought {usd(result.amount)} of credits."),
                purchase_fields(result),
            ]
        await ctx.conversation.whisper(parts)
        await self._audit(ctx, "ok", result.transaction_id, result.request_id)
        await ctx.set_status("done")

    @staticmethod
    async def _audit(
        ctx: JobContext, outcome: str, detail: str | None, request_id: str | None
    ) -> None:
        await ctx.store.audit(
            AuditEntry(
                owner=ctx.owner,
                command="openclaw.credits.purchase",
                outcome=outcome,
                detail=detail,
                request_id=request_id,
            )
        )


async def history(cmd: CreditsHistory, ctx: HandlerContext) -> None:
    """One page of transactions."""
    key = await management_key(ctx)
    async with failures_shown(ctx):
        page = await service(ctx).history(key, limit=cmd.limit, offset=cmd.offset, type_=cmd.type)
    parts: list[Part] = [*history_parts(page)]
    if cmd.type == "usage" and not page.items:
        # The real server meters proxy usage without writing history rows.
        parts.append(USAGE_NOT_IN_HISTORY)
    await show(ctx, cmd.as_json, page, parts)


async def auto_topup(cmd: CreditsAutoTopup, ctx: HandlerContext) -> None:
    """Show, or change, the automatic top-up."""
    key = await management_key(ctx)
    svc = service(ctx)
    async with failures_shown(ctx):
        current = await svc.auto_topup(key)
        if cmd.action == "show":
            await show(ctx, cmd.as_json, current, [topup_fields(current)])
            return
        wanted = AutoTopup(
            enabled=cmd.action == "enable",
            threshold=cmd.threshold or current.threshold,
            amount=cmd.amount or current.amount,
        )
        updated = await svc.set_auto_topup(key, wanted)
    verb = "on" if updated.enabled else "off"
    await show(
        ctx,
        cmd.as_json,
        updated,
        [Notice(level="success", text=f"Auto top-up is {verb}."), topup_fields(updated)],
    )
