"""The OpenMarlin command family: "use openmarlin …" and `/openmarlin`, its jobs, button and form."""

from __future__ import annotations

from bot.backends.openmarlin import grammar as router
from bot.backends.openmarlin import handlers
from bot.backends.openmarlin.jobs import OpenMarlinTiming, RegistrationJob, TaskJob
from bot.backends.openmarlin.render import TOPUP_ACTION, failure
from bot.backends.openmarlin.service import OpenMarlinService
from bot.backends.openmarlin.spec import (
    SPECS,
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
from bot.backends.openmarlin.topup_job import TopUpJob
from bot.core.family import CommandFamily, Wiring
from bot.core.keys import KeyService

SLASH_COMMANDS = ("/openmarlin",)
KEY_SERVICE = KeyService(
    name="openmarlin",
    display="OpenMarlin",
    prefix="claw_wsk_",
    hint="Run `/openmarlin register` to sign up (the sign-in link comes to you "
    "privately), or store an existing key privately with `/openmarlin key`.",
    backend="openmarlin",
)


def openmarlin_family(timing: OpenMarlinTiming | None = None) -> CommandFamily:
    """Build the family; `timing` sets poll intervals and time-outs (tests make them tiny)."""
    pace = timing or OpenMarlinTiming()

    def attach(wiring: Wiring) -> None:
        server_url = wiring.settings.openmarlin_server_url
        wiring.metrics.name_backend(server_url, "openmarlin")
        svc = OpenMarlinService(wiring.http, server_url)
        wiring.services.add(svc)
        wiring.jobs.register(RegistrationJob(svc, pace))
        tasks = TaskJob(svc, pace)
        tasks.services = wiring.services  # budgets: a task settles or releases its hold
        wiring.jobs.register(tasks)
        wiring.jobs.register(TopUpJob(svc, pace))
        wiring.actions[TOPUP_ACTION] = handlers.topup_action
        wiring.forms[handlers.KEY_FORM] = handlers.key_form()

    return CommandFamily(
        name="openmarlin",
        parse=router.parse,
        parse_slash=router.parse_slash,
        parse_options=router.parse_options,
        specs=SPECS,
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
        display_name="OpenMarlin",
        markers=("openmarlin",),
        key_services=(KEY_SERVICE,),
        render_failure=failure,
        key_command="`/openmarlin key`",
        help_command="`/openmarlin help`",
    )
