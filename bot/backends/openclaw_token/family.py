"""The OpenClaw Token command family: `/openclaw-token <group> <subcommand> [flags]`.

Wires the parser, the handlers, the service, three durable job kinds (device sign-in,
purchase, usage watch), the Confirm / Cancel / Stop buttons and the private forms.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.backends.alltoken.handlers import HandledFailure
from bot.backends.openclaw_token import auth, credits, keys
from bot.backends.openclaw_token import grammar as parser
from bot.backends.openclaw_token.audit import audit_show
from bot.backends.openclaw_token.common import audit, private
from bot.backends.openclaw_token.confirm import (
    CANCEL_ACTION,
    CONFIRM_ACTION,
    REFUSALS,
    Confirmations,
)
from bot.backends.openclaw_token.integrate import (
    INTEGRATE_FORM,
    PendingIntegrations,
    integrate,
    integrate_form,
)
from bot.backends.openclaw_token.render import help_text, render_openclaw_failure
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.backends.openclaw_token.spec import (
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
from bot.core import failures
from bot.core.context import KEY_HINTS, HandlerContext, MissingKey
from bot.core.family import CommandFamily
from bot.core.messages import Conversation, Inbound, Notice

if TYPE_CHECKING:
    from bot.core.app import TokenBot
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


async def _help(cmd: OpenClawHelp, ctx: HandlerContext) -> None:
    await ctx.conversation.whisper([help_text(cmd.topic)])


def _confirm_action(confirmations: Confirmations) -> Callable[..., Awaitable[None]]:
    async def confirm(
        bot: TokenBot, inbound: Inbound, token: str, conversation: Conversation
    ) -> None:
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=bot)
        status, pending = confirmations.take(ctx.owner, token)
        if status != "ok" or pending is None:
            await conversation.whisper([Notice(level="info", text=REFUSALS[status])])
            return
        bot.last_request_id = None
        outcome, detail = "ok", None
        try:
            await EXECUTORS[pending.action](ctx, pending.payload)
        except MissingKey as exc:
            outcome, detail = "denied", f"no {exc.service} key"
            await conversation.whisper(
                [
                    Notice(
                        level="warning",
                        text="You are not signed in to OpenClaw Token. "
                        + KEY_HINTS.get(exc.service, ""),
                    )
                ]
            )
        except HandledFailure as exc:
            outcome, detail = "failed", exc.error.code
        await audit(ctx, f"openclaw.{pending.action}.confirm", outcome, detail, bot.last_request_id)

    return confirm


def _cancel_action(confirmations: Confirmations) -> Callable[..., Awaitable[None]]:
    async def cancel(
        bot: TokenBot, inbound: Inbound, token: str, conversation: Conversation
    ) -> None:
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=bot)
        status = confirmations.cancel(ctx.owner, token)
        text = "Cancelled; nothing was done." if status == "ok" else REFUSALS[status]
        await private(ctx, [Notice(level="info", text=text)])

    return cancel


def openclaw_token_family() -> CommandFamily:
    """Build the family (fresh confirmation state per bot)."""
    failures.register_renderer("openclaw_token", render_openclaw_failure)
    confirmations = Confirmations()
    pending = PendingIntegrations()

    def attach(bot: TokenBot) -> None:
        svc = OpenClawTokenService(bot.http, bot.settings.openclaw_token_api_base)
        bot.services.openclaw_token = svc
        bot.jobs.register(auth.DeviceLoginJob(svc))
        bot.jobs.register(credits.PurchaseJob(svc))
        bot.jobs.register(keys.UsageWatchJob(svc))
        bot.actions[CONFIRM_ACTION] = _confirm_action(confirmations)
        bot.actions[CANCEL_ACTION] = _cancel_action(confirmations)
        bot.actions[keys.STOP_ACTION] = keys.stop_watch
        bot.forms[auth.LOGIN_FORM] = auth.login_form
        bot.forms[auth.REGISTER_FORM] = auth.register_form
        bot.forms[INTEGRATE_FORM] = integrate_form(pending)

    return CommandFamily(
        name="openclaw_token",
        parse=parser.parse,
        parse_slash=parser.parse_slash,
        slash_commands=(parser.SLASH_NAME,),
        handlers={
            OpenClawHelp: _help,
            PasswordInChat: auth.password_in_chat,
            AuthLogin: auth.login,
            AuthRegister: auth.register,
            AuthWhoami: auth.whoami,
            AuthRotate: functools.partial(auth.rotate, confirmations=confirmations),
            AuthLogout: auth.logout,
            CreditsBalance: credits.balance,
            CreditsBuy: functools.partial(credits.buy, confirmations=confirmations),
            CreditsHistory: credits.history,
            CreditsAutoTopup: credits.auto_topup,
            KeysCreate: keys.create,
            KeysList: keys.list_,
            KeysInfo: keys.info,
            KeysUpdate: keys.update,
            KeysRotate: functools.partial(keys.rotate, confirmations=confirmations),
            KeysRevoke: functools.partial(keys.revoke, confirmations=confirmations),
            KeysRevokeAll: functools.partial(keys.revoke_all, confirmations=confirmations),
            KeysUsage: keys.usage,
            Integrate: functools.partial(integrate, pending=pending),
            AuditShow: audit_show,
        },
        attach=attach,
        keywords=("openclaw",),
    )
