"""The OpenClaw Token command family: `/openclaw-token <group> <subcommand> [flags]`.

Wires the parser, the handlers, the service, three durable job kinds (device sign-in,
purchase, usage watch), the Confirm / Cancel / Stop buttons and the private forms.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from bot.backends.alltoken.hooks import ChatFallback
from bot.backends.openclaw_token import auth, credits, keys
from bot.backends.openclaw_token import grammar as parser
from bot.backends.openclaw_token.audit import audit_show
from bot.backends.openclaw_token.common import audit, private
from bot.backends.openclaw_token.confirm import (
    CANCEL_ACTION,
    CONFIRM_ACTION,
    REFUSALS,
    Confirmations,
    Pending,
    TakeStatus,
)
from bot.backends.openclaw_token.fallback import OpenClawFallback
from bot.backends.openclaw_token.integrate import (
    INTEGRATE_FORM,
    PendingIntegrations,
    integrate,
    integrate_form,
)
from bot.backends.openclaw_token.render import help_text, render_openclaw_failure
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.backends.openclaw_token.spec import (
    SPECS,
    AuditShow,
    AuthLogin,
    AuthLogout,
    AuthRegister,
    AuthRotate,
    AuthWhoami,
    CreditsAutoTopup,
    CreditsBalance,
    CreditsBuy,
    CreditsHistory,
    Integrate,
    KeysCreate,
    KeysInfo,
    KeysList,
    KeysRevoke,
    KeysRevokeAll,
    KeysRotate,
    KeysUpdate,
    KeysUsage,
    OpenClawHelp,
    PasswordInChat,
)
from bot.core.context import HandlerContext, MissingKey
from bot.core.failures import HandledFailure
from bot.core.family import ActionHandler, CommandFamily, Handler, Wiring
from bot.core.keys import KeyService
from bot.core.messages import Notice

log = logging.getLogger(__name__)

Executor = Callable[[HandlerContext, dict[str, str]], Awaitable[None]]

# What a Confirm click runs, by the action named when the confirmation was offered.
EXECUTORS: dict[str, Executor] = {
    "credits.buy": credits.do_buy,
    "auth.rotate": auth.do_rotate,
    "keys.rotate": keys.do_rotate,
    "keys.revoke": keys.do_revoke,
    "keys.revoke_all": keys.do_revoke_all,
}


def _expiries(confirmations: Confirmations) -> Callable[[HandlerContext], Awaitable[None]]:
    return functools.partial(record_expiries, confirmations=confirmations)


async def _help(cmd: OpenClawHelp, ctx: HandlerContext) -> None:
    await ctx.conversation.whisper([help_text(cmd.topic)])


def _confirm_row(pending: Pending) -> str:
    return f"openclaw.{pending.action}.confirm"


async def record_expiries(ctx: HandlerContext, confirmations: Confirmations) -> None:
    """Audit, for their owners, the prompts that expired unclicked since the last look."""
    for pending in await confirmations.sweep():
        await audit(
            ctx,
            _confirm_row(pending),
            "expired",
            "not confirmed within 15 min",
            None,
            owner=pending.owner,
        )


async def _refused(
    ctx: HandlerContext,
    confirmations: Confirmations,
    status: TakeStatus,
    pending: Pending | None,
) -> None:
    if status == "expired" and pending is not None and await confirmations.report_expiry(pending):
        await audit(ctx, _confirm_row(pending), "expired", "clicked after 15 min")
    await ctx.conversation.whisper([Notice(level="info", text=REFUSALS[status])])


def _confirm_action(confirmations: Confirmations) -> ActionHandler:
    async def confirm(ctx: HandlerContext, token: str) -> None:
        await record_expiries(ctx, confirmations)
        status, pending = await confirmations.take(ctx.owner, token)
        if status != "ok" or pending is None:
            await _refused(ctx, confirmations, status, pending)
            return
        outcome, detail = "confirmed", None
        try:
            await EXECUTORS[pending.action](ctx, pending.payload)
        except MissingKey as exc:
            outcome, detail = "denied", f"no {exc.service} key"
            await ctx.conversation.whisper(
                [
                    Notice(
                        level="warning",
                        text="You are not signed in to OpenClaw Token. "
                        + ctx.keys.hint(exc.service),
                    )
                ]
            )
        except HandledFailure as exc:
            outcome, detail = "failed", exc.error.code
        if outcome == "confirmed" and ctx.jobs.started:
            # The job (a purchase) audits how it ended.
            detail = "started " + ", ".join(job.id for job in ctx.jobs.started)
        await audit(ctx, _confirm_row(pending), outcome, detail, ctx.request_id)

    return confirm


def _cancel_action(confirmations: Confirmations) -> ActionHandler:
    async def cancel(ctx: HandlerContext, token: str) -> None:
        await record_expiries(ctx, confirmations)
        status, pending = await confirmations.take_for_cancel(ctx.owner, token)
        if status != "ok" or pending is None:
            await _refused(ctx, confirmations, status, pending)
            return
        await audit(ctx, _confirm_row(pending), "cancelled")
        await private(ctx, [Notice(level="info", text="Cancelled; nothing was done.")])

    return cancel


def _prompting(handler: Handler, confirmations: Confirmations) -> Handler:
    """`handler`, audited as "prompted" (not "ok") when it ended by showing a Confirm prompt."""

    async def run(cmd: BaseModel, ctx: HandlerContext) -> None:
        before = confirmations.offers_to(ctx.owner)
        await handler(cmd, ctx)
        if confirmations.offers_to(ctx.owner) > before:
            ctx.outcome = "prompted"

    return run


KEY_SERVICES = (
    KeyService(
        name="openclaw_token",
        display="OpenClaw Token",
        prefix="sk-mgmt-",
        hint="Sign in with `/openclaw-token auth login` (GitHub), "
        "`/openclaw-token auth login --email` or `/openclaw-token auth register` "
        "(email and password go into a private form, never a message).",
        backend="openclaw_token",
    ),
    KeyService(
        name="openclaw_proxy",
        display="OpenClaw Token provisioned",
        prefix="sk-prov-",
        hint="Sign in with `/openclaw-token auth login` (GitHub), "
        "`/openclaw-token auth login --email` or `/openclaw-token auth register` "
        "(email and password go into a private form, never a message).",
        backend="openclaw_token",
    ),
)


def openclaw_token_family() -> CommandFamily:
    """Build the family (fresh confirmation state per bot)."""
    confirmations = Confirmations()
    pending = PendingIntegrations()

    def prompting(handler: Handler) -> Handler:
        return _prompting(handler, confirmations)

    built: list[OpenClawTokenService] = []

    def startup_note() -> str:
        # Which shape the base is read as (hosted …/v1, or a self-hosted root).
        return built[-1].bases.describe() if built else "OpenClaw Token: not attached"

    def attach(wiring: Wiring) -> None:
        api_base = wiring.settings.openclaw_token_api_base
        wiring.metrics.name_backend(api_base, "openclaw_token")
        svc = OpenClawTokenService(wiring.http, api_base)
        built.append(svc)
        wiring.services.add(svc)
        # Pending Confirm prompts are rows of the bot's store (tests move their clock).
        confirmations.attach(wiring.jobs.store)
        wiring.services.add(confirmations)
        # The one declared cross-backend hook: AllToken's chat and search fall back here.
        wiring.services.add(OpenClawFallback(svc), as_=ChatFallback)
        wiring.jobs.register(auth.DeviceLoginJob(svc, wiring.settings.openclaw_github_client_id))
        wiring.jobs.register(credits.PurchaseJob(svc))
        wiring.jobs.register(keys.UsageWatchJob(svc))
        wiring.actions[CONFIRM_ACTION] = _confirm_action(confirmations)
        wiring.actions[CANCEL_ACTION] = _cancel_action(confirmations)
        wiring.actions[keys.STOP_ACTION] = keys.stop_watch
        wiring.forms[auth.LOGIN_FORM] = auth.login_form
        wiring.forms[auth.REGISTER_FORM] = auth.register_form
        wiring.forms[INTEGRATE_FORM] = integrate_form(pending)

    return CommandFamily(
        name="openclaw_token",
        parse=parser.parse,
        parse_slash=parser.parse_slash,
        parse_options=parser.parse_options,
        specs=SPECS,
        slash_commands=(parser.SLASH_NAME,),
        handlers={
            OpenClawHelp: _help,
            PasswordInChat: auth.password_in_chat,
            AuthLogin: auth.login,
            AuthRegister: auth.register,
            AuthWhoami: auth.whoami,
            AuthRotate: prompting(functools.partial(auth.rotate, confirmations=confirmations)),
            AuthLogout: auth.logout,
            CreditsBalance: credits.balance,
            CreditsBuy: prompting(functools.partial(credits.buy, confirmations=confirmations)),
            CreditsHistory: credits.history,
            CreditsAutoTopup: credits.auto_topup,
            KeysCreate: keys.create,
            KeysList: keys.list_,
            KeysInfo: keys.info,
            KeysUpdate: keys.update,
            KeysRotate: prompting(functools.partial(keys.rotate, confirmations=confirmations)),
            KeysRevoke: prompting(functools.partial(keys.revoke, confirmations=confirmations)),
            KeysRevokeAll: prompting(
                functools.partial(keys.revoke_all, confirmations=confirmations)
            ),
            KeysUsage: keys.usage,
            Integrate: functools.partial(integrate, pending=pending),
            AuditShow: functools.partial(audit_show, before=_expiries(confirmations)),
        },
        attach=attach,
        keywords=("openclaw",),
        display_name="OpenClaw Token",
        markers=("openclaw-token",),
        key_services=KEY_SERVICES,
        render_failure=render_openclaw_failure,
        key_command="`/openclaw-token auth login`",
        help_command="`/openclaw-token help`",
        startup_note=startup_note,
    )
