"""The `tokenbot` command family: `/tokenbot usage|policy|budget|admin|help …`.

Registers the PolicyGate (bot/teams/gate.py) that the core consults before every other
family's handler, and one private workspace-key form per installed backend.
"""

from __future__ import annotations

from bot.core.context import HandlerContext
from bot.core.family import CommandFamily, FormHandler, Wiring
from bot.core.messages import Text
from bot.core.policy_gate import PolicyGate
from bot.teams import admin
from bot.teams import grammar as parser
from bot.teams.gate import TeamsGate
from bot.teams.policy_view import show_policy
from bot.teams.spec import (
    FAMILY,
    HELP_TOPICS,
    SLASH_NAME,
    SPECS,
    AdminAdd,
    AdminChannelModel,
    AdminChannels,
    AdminCommands,
    AdminModels,
    AdminRemove,
    AdminWorkspaceKey,
    BudgetUserDaily,
    BudgetUserMonthly,
    BudgetWorkspace,
    OwnKeysOptIn,
    PolicyShow,
    TeamsHelp,
    UsageQuery,
)
from bot.teams.spend_control import attach_spend_control
from bot.teams.usage import usage

_TOPIC_TITLES = {
    "usage": "Spend reports",
    "policy": "The policy in this channel",
    "budget": "Budgets",
    "admin": "Admin commands (tokenbot admins only; answered privately, every change audited)",
}


def help_text(topic: str | None = None) -> Text:
    """Every `/tokenbot` command by topic, or one topic's, with an example each."""
    lines = ["**/tokenbot** — team usage, policy and budgets"]
    for name in (t for t in HELP_TOPICS if topic in (None, t)):
        specs = [s for s in SPECS if s.topic == name]
        lines.append(f"\n**{_TOPIC_TITLES[name]}**")
        for spec in specs:
            lines.append(f"• `{spec.usage}` — {spec.description}")
            if topic is not None:
                lines.append(f"  e.g. `{spec.examples[0]}`")
    if topic is None:
        helps = next(s for s in SPECS if s.model is TeamsHelp)
        lines.append(f"\n`{helps.usage}` — one topic's commands, with examples")
    return Text(markdown="\n".join(lines))


async def _help(cmd: TeamsHelp, ctx: HandlerContext) -> None:
    await ctx.conversation.whisper([help_text(cmd.topic)])


def tokenbot_family() -> CommandFamily:
    """Build the family with a fresh gate (it learns the installed commands when the bot is built)."""

    def attach(wiring: Wiring) -> None:
        forms = wiring.forms

        def on_know(gate: TeamsGate) -> None:
            # One form per backend, registered on every replica alike (a submission may reach
            # any of them).
            for backend in gate.catalog:
                handler: FormHandler = admin.workspace_key_form(backend)
                forms[admin.WORKSPACE_KEY_FORM + backend] = handler

        gate = TeamsGate(on_know=on_know)
        wiring.services.add(gate)
        wiring.services.add(gate, as_=PolicyGate)
        # Budgets and workspace keys: the SpendControl every charged call goes through.
        attach_spend_control(wiring)

    return CommandFamily(
        name=FAMILY,
        display_name="tokenbot",
        parse=parser.parse,
        parse_slash=parser.parse_slash,
        parse_options=parser.parse_options,
        specs=SPECS,
        slash_commands=(SLASH_NAME,),
        handlers={
            UsageQuery: usage,
            PolicyShow: show_policy,
            TeamsHelp: _help,
            OwnKeysOptIn: admin.own_keys,
            AdminAdd: admin.add_admin,
            AdminRemove: admin.remove_admin,
            AdminChannels: admin.set_channels,
            AdminCommands: admin.set_commands,
            AdminModels: admin.set_models,
            AdminChannelModel: admin.set_channel_model,
            AdminWorkspaceKey: admin.workspace_key,
            BudgetWorkspace: admin.set_budget,
            BudgetUserDaily: admin.set_budget,
            BudgetUserMonthly: admin.set_budget,
        },
        attach=attach,
        keywords=("tokenbot",),
        markers=("/tokenbot",),
        help_command="`/tokenbot help`",
    )
