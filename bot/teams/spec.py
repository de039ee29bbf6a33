"""Typed `/tokenbot` commands (usage reports, the policy, help, admin changes) and their specs.

`SPECS` declares each command once; the grammar, `/tokenbot help`, usage errors, the Discord
tree, the Slack manifest check and the README check read it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.core.command_spec import CommandSpec, OptionKind, OptionSpec
from bot.core.grammar import UsageError

FAMILY = "tokenbot"
PREFIX = "/tokenbot"
SLASH_NAME = PREFIX

# Budgets in USD: positive, cents, below ten million.
Usd = Annotated[Decimal, Field(gt=0, le=Decimal("9999999.99"), decimal_places=2)]
Dimension = Literal["day", "model", "user", "backend"]
DIMENSIONS: tuple[Dimension, ...] = ("day", "model", "user", "backend")
HELP_TOPICS = ("usage", "policy", "admin", "budget")


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class UsageQuery(_Command):
    """Spend report: whose (None = me, a user id, "all" = the workspace), by what, since when."""

    kind: Literal["tokenbot.usage"] = "tokenbot.usage"
    user: str | None = None
    by: Dimension = "day"
    since: date | None = None
    since_days: int | None = Field(7, ge=1, le=366)
    csv: bool = False

    @model_validator(mode="after")
    def _one_window(self) -> UsageQuery:
        if (self.since is None) == (self.since_days is None):
            raise ValueError("exactly one of since and since_days")
        return self


class PolicyShow(_Command):
    """The effective policy for the current channel (anyone, privately)."""

    kind: Literal["tokenbot.policy"] = "tokenbot.policy"


class TeamsHelp(_Command):
    """The `/tokenbot` commands, or one topic's."""

    kind: Literal["tokenbot.help"] = "tokenbot.help"
    topic: str | None = None


class OwnKeysOptIn(_Command):
    """The caller's own choice: count their own-key calls against the caps (on) or not (off)."""

    kind: Literal["tokenbot.budget.own_keys"] = "tokenbot.budget.own_keys"
    on: bool


class AdminAdd(_Command):
    """Make a user a workspace admin."""

    kind: Literal["tokenbot.admin.add"] = "tokenbot.admin.add"
    user: str = Field(min_length=1)


class AdminRemove(_Command):
    """Remove a workspace admin (never one named by TOKENBOT_ADMINS)."""

    kind: Literal["tokenbot.admin.remove"] = "tokenbot.admin.remove"
    user: str = Field(min_length=1)


class AdminChannels(_Command):
    """Where tokenbot's commands run: everywhere, or the listed channels."""

    kind: Literal["tokenbot.admin.channels"] = "tokenbot.admin.channels"
    action: Literal["everywhere", "add", "remove"]
    channel: str | None = None


class AdminCommands(_Command):
    """Allow or deny a backend's commands (by the words after its name), or reset to all."""

    kind: Literal["tokenbot.admin.commands"] = "tokenbot.admin.commands"
    backend: str
    action: Literal["allow", "deny", "reset"]
    commands: tuple[str, ...] = ()


class AdminModels(_Command):
    """Allow only these models of a backend, or reset to any."""

    kind: Literal["tokenbot.admin.models"] = "tokenbot.admin.models"
    backend: str
    action: Literal["allow", "reset"]
    models: tuple[str, ...] = ()


class AdminChannelModel(_Command):
    """The current channel's default model for a backend (None: clear it)."""

    kind: Literal["tokenbot.admin.channel_model"] = "tokenbot.admin.channel_model"
    backend: str
    model: str | None = None


class AdminWorkspaceKey(_Command):
    """Open the private form for a backend's workspace key, or clear it."""

    kind: Literal["tokenbot.admin.workspace_key"] = "tokenbot.admin.workspace_key"
    backend: str
    clear: bool = False


class BudgetCap(_Command):
    # None: the cap is off.
    usd: Usd | None = None


class BudgetWorkspace(BudgetCap):
    """The workspace's monthly budget (UTC month)."""

    kind: Literal["tokenbot.admin.budget.workspace"] = "tokenbot.admin.budget.workspace"


class BudgetUserDaily(BudgetCap):
    """Each member's daily cap (UTC day)."""

    kind: Literal["tokenbot.admin.budget.user_daily"] = "tokenbot.admin.budget.user_daily"


class BudgetUserMonthly(BudgetCap):
    """Each member's monthly cap (UTC month)."""

    kind: Literal["tokenbot.admin.budget.user_monthly"] = "tokenbot.admin.budget.user_monthly"


AdminCommand = (
    AdminAdd
    | AdminRemove
    | AdminChannels
    | AdminCommands
    | AdminModels
    | AdminChannelModel
    | AdminWorkspaceKey
    | BudgetWorkspace
    | BudgetUserDaily
    | BudgetUserMonthly
)
ADMIN_MODELS: tuple[type[BaseModel], ...] = (
    AdminAdd,
    AdminRemove,
    AdminChannels,
    AdminCommands,
    AdminModels,
    AdminChannelModel,
    AdminWorkspaceKey,
    BudgetWorkspace,
    BudgetUserDaily,
    BudgetUserMonthly,
)
# Which budget key each budget command sets in the policy's "budget" value.
BUDGET_FIELDS: dict[type[BaseModel], tuple[str, str]] = {
    BudgetWorkspace: ("workspace_monthly_usd", "the workspace's monthly budget"),
    BudgetUserDaily: ("user_daily_usd", "each member's daily cap"),
    BudgetUserMonthly: ("user_monthly_usd", "each member's monthly cap"),
}


# --- specs -----------------------------------------------------------------------------------


def _opt(
    name: str,
    description: str,
    kind: OptionKind = "text",
    *,
    choices: tuple[str, ...] = (),
    positional: bool = False,
    required: bool = False,
) -> OptionSpec:
    return OptionSpec(
        name=name,
        kind=kind,
        description=description,
        choices=choices,
        positional=positional,
        required=required,
    )


def _spec(
    words: str,
    usage: str,
    description: str,
    model: type[BaseModel],
    *options: OptionSpec,
    topic: str,
    examples: tuple[str, ...] = (),
) -> CommandSpec:
    path = tuple(words.split())
    return CommandSpec(
        family=FAMILY,
        name=f"tokenbot {words}",
        path=("tokenbot", *path),
        usage=f"{PREFIX} {words}{' ' + usage if usage else ''}",
        description=description,
        options=options,
        # Reports, the policy and admin changes are answered to the caller only.
        private=True,
        topic=topic,
        model=model,
        examples=examples or (f"{PREFIX} {words}",),
    )


_BACKEND = _opt("backend", "alltoken, openmarlin or openclaw-token", positional=True, required=True)
_USD_OR_OFF = _opt("usd", "USD, or off", positional=True, required=True)

SPECS: tuple[CommandSpec, ...] = (
    _spec(
        "usage",
        "[--user @x|me|all] [--by day|model|user|backend] [--since 7d|30d|YYYY-MM-DD] [--csv]",
        "Spend as a table and a chart: yours, or (admins) anyone's or the workspace's",
        UsageQuery,
        _opt("user", "@someone, me, or all (the workspace; admins only)"),
        _opt("by", "Stack the bars by", "choice", choices=DIMENSIONS),
        _opt("since", "7d, 30d or a date YYYY-MM-DD"),
        _opt("csv", "Upload the rows as CSV too", "bool"),
        topic="usage",
        examples=(f"{PREFIX} usage --by model --since 30d", f"{PREFIX} usage --user all --csv"),
    ),
    _spec(
        "policy",
        "",
        "The workspace policy in effect in this channel",
        PolicyShow,
        topic="policy",
    ),
    _spec(
        "help",
        f"[{'|'.join(HELP_TOPICS)}]",
        "The /tokenbot commands, or one topic's",
        TeamsHelp,
        _opt("topic", "One topic's commands", "choice", choices=HELP_TOPICS, positional=True),
        topic="help",
        examples=(PREFIX, f"{PREFIX} help admin"),
    ),
    _spec(
        "budget own-keys",
        "on|off",
        "Count your own-key calls against the caps too (on) or not (off)",
        OwnKeysOptIn,
        _opt("state", "on or off", "choice", choices=("on", "off"), positional=True, required=True),
        topic="budget",
        examples=(f"{PREFIX} budget own-keys on",),
    ),
    _spec(
        "admin add",
        "@user",
        "Make someone a tokenbot admin of this workspace",
        AdminAdd,
        _opt("user", "The member (@mention)", positional=True, required=True),
        topic="admin",
        examples=(f"{PREFIX} admin add <@U0123ABCD>",),
    ),
    _spec(
        "admin remove",
        "@user",
        "Remove a workspace admin (never one named by TOKENBOT_ADMINS)",
        AdminRemove,
        _opt("user", "The admin (@mention)", positional=True, required=True),
        topic="admin",
        examples=(f"{PREFIX} admin remove <@U0123ABCD>",),
    ),
    _spec(
        "admin channels",
        "everywhere | add #channel | remove #channel",
        "Where commands run: everywhere, or only the listed channels",
        AdminChannels,
        _opt(
            "action",
            "everywhere, add or remove",
            "choice",
            choices=("everywhere", "add", "remove"),
            positional=True,
            required=True,
        ),
        _opt("channel", "The channel (#mention) to add or remove", positional=True),
        topic="admin",
        examples=(
            f"{PREFIX} admin channels add <#C0123ABCD|ai>",
            f"{PREFIX} admin channels everywhere",
        ),
    ),
    _spec(
        "admin commands",
        "<backend> allow|deny <command>… | <backend> reset",
        "Allow or deny a backend's commands (e.g. video), or allow all again",
        AdminCommands,
        _BACKEND,
        _opt(
            "action",
            "allow, deny or reset",
            "choice",
            choices=("allow", "deny", "reset"),
            positional=True,
            required=True,
        ),
        _opt("commands", "Command names, e.g. video image", positional=True),
        topic="admin",
        examples=(f"{PREFIX} admin commands alltoken deny video image",),
    ),
    _spec(
        "admin models",
        "<backend> allow <model>… | <backend> reset",
        "Allow only these models of a backend, or any again",
        AdminModels,
        _BACKEND,
        _opt(
            "action",
            "allow or reset",
            "choice",
            choices=("allow", "reset"),
            positional=True,
            required=True,
        ),
        _opt("models", "Model ids", positional=True),
        topic="admin",
        examples=(f"{PREFIX} admin models alltoken allow gpt-5.4-mini claude-sonnet-4-6",),
    ),
    _spec(
        "admin channel-model",
        "<backend> <model>|clear",
        "This channel's default model for a backend's chat (when a command names none)",
        AdminChannelModel,
        _BACKEND,
        _opt("model", "A model id, or clear", positional=True, required=True),
        topic="admin",
        examples=(f"{PREFIX} admin channel-model alltoken claude-sonnet-4-6",),
    ),
    _spec(
        "admin workspace-key",
        "<backend> [clear]",
        "Set (private form) or clear the key members without their own may use",
        AdminWorkspaceKey,
        _BACKEND,
        _opt("clear", "Remove the workspace key", "bool"),
        topic="admin",
        examples=(
            f"{PREFIX} admin workspace-key alltoken",
            f"{PREFIX} admin workspace-key alltoken clear",
        ),
    ),
    _spec(
        "admin budget workspace",
        "<usd>|off",
        "The workspace's monthly budget in USD (UTC month), or off",
        BudgetWorkspace,
        _USD_OR_OFF,
        topic="budget",
        examples=(f"{PREFIX} admin budget workspace 100",),
    ),
    _spec(
        "admin budget user-daily",
        "<usd>|off",
        "Each member's daily cap in USD (UTC day), or off",
        BudgetUserDaily,
        _USD_OR_OFF,
        topic="budget",
        examples=(f"{PREFIX} admin budget user-daily 2.50",),
    ),
    _spec(
        "admin budget user-monthly",
        "<usd>|off",
        "Each member's monthly cap in USD (UTC month), or off",
        BudgetUserMonthly,
        _USD_OR_OFF,
        topic="budget",
        examples=(f"{PREFIX} admin budget user-monthly off",),
    ),
)

# Specs by the words after "/tokenbot" ("admin budget workspace").
BY_WORDS: dict[str, CommandSpec] = {" ".join(s.path[1:]): s for s in SPECS}
USAGE: dict[str, str] = {
    "": f"{PREFIX} <usage|policy|budget|admin|help> …",
    "admin": f"{PREFIX} admin <add|remove|channels|commands|models|channel-model|workspace-key|budget> …",
    "admin budget": f"{PREFIX} admin budget <workspace|user-daily|user-monthly> <usd>|off",
    "budget": f"{PREFIX} budget own-keys on|off",
    **{words: s.usage for words, s in BY_WORDS.items()},
}


def usage_error(words: str, problem: str) -> UsageError:
    """A UsageError for a command ("admin add"), a group ("admin") or the whole (""), with its usage."""
    spec = BY_WORDS.get(words)
    name = spec.key if spec is not None else f"tokenbot {words}".strip()
    return UsageError(name, problem, USAGE.get(words, USAGE[""]))
