"""The OpenMarlin top-up job: create the checkout, send it privately, watch the payment,
then show the new balance."""

from __future__ import annotations

import asyncio
import time

from bot.backends.openmarlin.job_state import TopUpState
from bot.backends.openmarlin.jobs import TOPUP_KIND, MarlinJob, remember_balance
from bot.backends.openmarlin.render import amount_text, balance_fields
from bot.backends.openmarlin.service import TopUpSession
from bot.core.errors import BackendError
from bot.core.job_errors import JobExpired, JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Link, Notice, Part

TopUpContext = JobContext[TopUpState]


class TopUpJob(MarlinJob):
    """Create a top-up, send the checkout privately, watch it, then show the new balance."""

    kind = TOPUP_KIND
    command = "openmarlin.topup"
    state_model = TopUpState

    async def run(self, ctx: TopUpContext) -> None:
        """Drive one top-up until credit_applied or payment_failed."""
        key = await self._key(ctx)
        amount = ctx.state.amount
        shown = amount_text(amount)
        if not ctx.state.topup_id:
            # Stopped after the save and before the link went out, the user would never get it.
            await ctx.uninterrupted(self._open_checkout(ctx, key, shown))
        topup_id = str(ctx.state.topup_id)
        deadline = self._deadline(ctx, self.timing.topup_timeout_s)
        errors: list[int] = []
        while True:
            session_now: TopUpSession | None = await self._poll(
                ctx, lambda: self.service.get_topup(key, topup_id), errors
            )
            if session_now is not None and session_now.status == "credit_applied":
                await self._credited(ctx, key, shown)
                return
            if session_now is not None and session_now.status == "payment_failed":
                raise JobFailed(
                    Failure(
                        code="payment_failed",
                        message=f"The payment for the {shown} top-up failed; your balance did "
                        "not change.",
                        request_id=topup_id,
                        hint="Start a new one with `/openmarlin top up <amount>` and try "
                        "another card.",
                    )
                )
            if time.monotonic() > deadline:
                raise JobExpired(
                    Failure(
                        code="topup_timeout",
                        message=f"The {shown} top-up is still pending_payment; tokenbot stopped "
                        "watching it.",
                        request_id=topup_id,
                        hint="If you paid, check `/openmarlin balance` in a few minutes; "
                        "otherwise start a new top-up.",
                    )
                )
            await asyncio.sleep(self.timing.poll_s)

    async def _open_checkout(self, ctx: TopUpContext, key: str, shown: str) -> None:
        amount = ctx.state.amount
        try:
            session = await self.service.create_topup(key, amount)
        except BackendError as exc:
            raise JobFailed(self._failure(exc)) from None
        await ctx.save(topup_id=session.topup_session_id)
        if not session.checkout_url:
            raise JobFailed(
                Failure(
                    code="bad_response",
                    message="OpenMarlin created the top-up but gave no checkout link.",
                    request_id=session.topup_session_id,
                )
            )
        await self._tell(
            ctx,
            [
                Notice(
                    level="info",
                    text=f"💳 Top-up of {shown}: pending_payment. Opening the checkout is "
                    "the only step outside chat; tokenbot watches the payment and shows "
                    "your new balance when the credit lands.",
                ),
                Link(url=session.checkout_url, label="Open the checkout"),
            ],
        )

    async def _credited(self, ctx: TopUpContext, key: str, shown: str) -> None:
        await ctx.deliver(lambda: self._tell_credited(ctx, key, shown))

    async def _tell_credited(self, ctx: TopUpContext, key: str, shown: str) -> None:
        parts: list[Part] = [Notice(level="success", text=f"💳 Top-up of {shown}: credit_applied.")]
        try:
            balance = await self.service.balance(key)
        except BackendError as exc:
            parts.append(
                Notice(
                    level="warning",
                    text=f"The new balance could not be read ({exc.code}); check "
                    "`/openmarlin balance` shortly.",
                )
            )
        else:
            await remember_balance(
                ctx.store, ctx.owner, balance.available_balance, balance.workspace_id
            )
            parts.append(balance_fields(balance))
        await self._tell(ctx, parts)
        await ctx.set_status("done")
