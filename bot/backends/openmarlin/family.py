"""The OpenMarlin command family: "use openmarlin …" and `/openmarlin`, its jobs, button and form."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.backends.openmarlin import grammar as router
from bot.backends.openmarlin import handlers
from bot.backends.openmarlin.jobs import OpenMarlinTiming, RegistrationJob, TaskJob, TopUpJob
from bot.backends.openmarlin.render import TOPUP_ACTION
from bot.backends.openmarlin.service import OpenMarlinService
from bot.backends.openmarlin.spec import (
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
from bot.core.family import CommandFamily

if TYPE_CHECKING:
    from bot.core.app import TokenBot
SLASH_COMMANDS = ("/openmarlin",)


def openmarlin_family(timing: OpenMarlinTiming | None = None) -> CommandFamily:
    """Build the family; `timing` sets poll intervals and time-outs (tests make them tiny)."""
    pace = timing or OpenMarlinTiming()

    def attach(bot: TokenBot) -> None:
        svc = OpenMarlinService(bot.http, bot.settings.openmarlin_server_url)
        bot.services.openmarlin = svc
        bot.jobs.register(RegistrationJob(svc, pace))
        bot.jobs.register(TaskJob(svc, pace))
        bot.jobs.register(TopUpJob(svc, pace))
        bot.actions[TOPUP_ACTION] = handlers.topup_action
        bot.forms[handlers.KEY_FORM] = handlers.key_form()

    return CommandFamily(
        name="openmarlin",
        parse=router.parse,
        parse_slash=router.parse_slash,
        slash_commands=SLASH_COMMANDS,
        handlers={
            OMExecute: handlers.execute,
            OMTask: handlers.task,
            OMTaskStatus: handlers.task_status,
            OMRegister: handlers.register,
            OMStatus: handlers.status,
            OMKey: handlers.key,
            OMModels: handlers.models,
            OMBalance: handlers.balance,
            OMActivity: handlers.activity,
            OMTopUp: handlers.topup,
            OMReferral: handlers.referral,
            OMHelp: handlers.help_,
        },
        attach=attach,
        keywords=("openmarlin",),
    )
