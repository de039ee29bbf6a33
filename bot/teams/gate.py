"""Who administers a workspace, and the PolicyGate that admits or refuses each command.

The policy is read for every gated command from the store's per-workspace cache (no database
round trip; admins' changes reach every replica's cache at once by PostgreSQL NOTIFY, see
bot/store/policy.py). The rules, in order:
allowed channels (DMs count as "not a listed channel" unless the policy is "everywhere"),
allowed commands per backend, then the channel's default model filled in when the command
names none, then allowed models per backend. The `/tokenbot` commands, help and key commands
are never gated, so anyone can always read the policy and store a key privately.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.core.command_spec import CommandSpec
from bot.core.context import HandlerContext
from bot.core.messages import Failure, Inbound
from bot.core.policy_gate import PolicyGate, policy_name
from bot.teams.spec import FAMILY

log = logging.getLogger(__name__)

# Commands no rule refuses: how to get help and how to store a key.
_ALWAYS = frozenset({"help", "key"})


class WorkspacePolicy(BaseModel):
    """The policy keys this gate reads, decoded defensively (a malformed value means "unset")."""

    model_config = ConfigDict(frozen=True)

    admins: tuple[str, ...] = ()
    # None: everywhere.
    channels: tuple[str, ...] | None = None
    # service -> allowed command names; a service missing: all allowed.
    commands: dict[str, tuple[str, ...]] = {}
    # service -> allowed model ids; a service missing: any.
    models: dict[str, tuple[str, ...]] = {}
    # channel -> service -> default model.
    channel_models: dict[str, dict[str, str]] = {}
    budget: dict[str, Any] = {}

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> WorkspacePolicy:
        """The policy from `Store.get_policy`'s dict."""
        return cls(
            admins=_strings(raw.get("admins")),
            channels=None if raw.get("channels") is None else _strings(raw.get("channels")),
            commands=_lists(raw.get("commands")),
            models=_lists(raw.get("models")),
            channel_models={
                str(channel): {str(s): str(m) for s, m in by.items()}
                for channel, by in _dict(raw.get("channel_models")).items()
                if isinstance(by, dict)
            },
            budget=_dict(raw.get("budget")),
        )


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(str(v) for v in value))


def _lists(value: object) -> dict[str, tuple[str, ...]]:
    return {str(k): _strings(v) for k, v in _dict(value).items() if isinstance(v, list)}


def _workspace_policy(raw: dict[str, Any]) -> WorkspacePolicy:
    return WorkspacePolicy.from_raw(raw)


async def load_policy(ctx: HandlerContext) -> WorkspacePolicy:
    """This workspace's policy, as stored now (parsed once per change, not per command)."""
    inbound = ctx.inbound
    return await ctx.store.policy_view(inbound.platform, inbound.workspace, _workspace_policy)


# --- admins ------------------------------------------------------------------------------------


def operator_admins(ctx: HandlerContext) -> list[str]:
    """The user ids TOKENBOT_ADMINS names on this platform (bare ids match every platform)."""
    platform = ctx.inbound.platform
    found: list[str] = []
    for entry in sorted(ctx.settings.admin_ids):
        head, sep, rest = entry.partition(":")
        if not sep:
            found.append(entry)
        elif head == platform and rest:
            found.append(rest)
    return list(dict.fromkeys(found))


def is_operator_admin(ctx: HandlerContext, user: str) -> bool:
    """Whether TOKENBOT_ADMINS names `user` (who can never be removed or locked out)."""
    return user in operator_admins(ctx)


def admins_of(ctx: HandlerContext, policy: WorkspacePolicy) -> list[str]:
    """Every admin of this workspace: TOKENBOT_ADMINS first, then those added in chat."""
    return list(dict.fromkeys([*operator_admins(ctx), *policy.admins]))


def is_admin_in(ctx: HandlerContext, policy: WorkspacePolicy) -> bool:
    """Whether the caller administers this workspace under `policy`."""
    return ctx.inbound.user in admins_of(ctx, policy)


async def is_admin(ctx: HandlerContext) -> bool:
    """Whether the caller is a tokenbot admin: TOKENBOT_ADMINS, or added by `/tokenbot admin add`."""
    if is_operator_admin(ctx, ctx.inbound.user):
        return True  # no store read needed
    return is_admin_in(ctx, await load_policy(ctx))


def who_to_ask(ctx: HandlerContext, policy: WorkspacePolicy) -> str:
    """The admins to ask, written out, or how admins come to be when there are none."""
    admins = admins_of(ctx, policy)
    if not admins:
        return "This workspace has no tokenbot admin yet: the bot's operator names them in TOKENBOT_ADMINS."
    return "Ask a tokenbot admin: " + ", ".join(f"`{a}`" for a in admins) + "."


# --- the gate ----------------------------------------------------------------------------------


def _last_word(name: str) -> str:
    return re.split(r"[ .\-]", name)[-1]


def always_allowed(family: str, name: str) -> bool:
    """The commands no rule refuses: `/tokenbot …`, every family's help and key commands."""
    return family == FAMILY or _last_word(name) in _ALWAYS


def _chat_model_spec(specs: Sequence[CommandSpec]) -> CommandSpec | None:
    """A family's first command with a free-text `--model` flag: where a channel default applies."""
    for spec in specs:
        option = spec.option("model")
        if option is not None and not option.positional and not option.choices:
            return spec
    return None


def _said(inbound: Inbound, model: str) -> bool:
    """Whether the message spells `model` out (typed, or a typed Discord option)."""
    texts = [inbound.text, *(str(v) for v in (inbound.options or {}).values())]
    pattern = re.compile(rf"(?<![\w.\-/]){re.escape(model)}(?![\w.\-/])", re.IGNORECASE)
    return any(pattern.search(text) for text in texts)


def names_no_model(command: BaseModel, inbound: Inbound) -> bool:
    """Whether the command takes a model but the user named none (its default stands in)."""
    field = type(command).model_fields.get("model")
    if field is None:
        return False
    value = getattr(command, "model", None)
    if value is None or "model" not in command.model_fields_set:
        return True
    # Grammars write the default out; it counts as named only when the message says it.
    return isinstance(value, str) and value == field.default and not _said(inbound, value)


class TeamsGate(PolicyGate):
    """The PolicyGate: channels, commands and models per backend, channel default models."""

    def __init__(self, on_know: Callable[[TeamsGate], None] | None = None) -> None:
        # service -> {policy name: spec}
        self.catalog: dict[str, dict[str, CommandSpec]] = {}
        self._chat_specs: dict[str, str] = {}
        # Run once the installed commands are known (the family registers its forms then).
        self._on_know = on_know

    def know(self, specs: Sequence[CommandSpec]) -> None:
        """Every installed command (the admin commands check names against these)."""
        by_family: dict[str, list[CommandSpec]] = {}
        for spec in specs:
            if spec.family != FAMILY:
                by_family.setdefault(spec.family, []).append(spec)
        self.catalog = {
            family: {policy_name(s): s for s in family_specs}
            for family, family_specs in by_family.items()
        }
        self._chat_specs = {
            family: policy_name(found)
            for family, family_specs in by_family.items()
            if (found := _chat_model_spec(family_specs)) is not None
        }
        if self._on_know is not None:
            self._on_know(self)

    def chat_command(self, family: str) -> str | None:
        """The command of `family` a channel default model applies to ("chat"), if any."""
        return self._chat_specs.get(family)

    def gated_commands(self, family: str) -> list[str]:
        """The command names of `family` an admin may allow or deny."""
        return [n for n in self.catalog.get(family, {}) if not always_allowed(family, n)]

    async def admit(
        self, ctx: HandlerContext, family: str, spec_name: str, command: BaseModel
    ) -> BaseModel | Failure:
        """The command (maybe with this channel's default model), or the rule that refuses it."""
        if always_allowed(family, spec_name):
            return command
        try:
            policy = await load_policy(ctx)
        except Exception as exc:
            # Closed, not open: a policy that cannot be read must not let a refused call through.
            log.warning("workspace policy unavailable, refusing %s: %s", spec_name, exc)
            return Failure(
                code="policy_unavailable",
                message="tokenbot could not read this workspace's policy just now, so nothing "
                "was sent.",
                hint="Try again in a moment.",
            )
        refused = self._channel_refusal(ctx, policy) or self._command_refusal(
            ctx, policy, family, spec_name
        )
        if refused is not None:
            return refused
        command = self._with_channel_model(ctx, policy, family, spec_name, command)
        return self._model_refusal(ctx, policy, family, command) or command

    def _channel_refusal(self, ctx: HandlerContext, policy: WorkspacePolicy) -> Failure | None:
        if policy.channels is None:
            return None
        inbound = ctx.inbound
        if not inbound.is_direct and inbound.channel in policy.channels:
            return None
        where = "direct messages" if inbound.is_direct else "this channel"
        listed = ", ".join(f"`{c}`" for c in policy.channels) or "none yet"
        return Failure(
            code="policy_channel",
            message=f"tokenbot's commands are not allowed in {where} (workspace policy: "
            f"allowed channels — {listed}). Nothing was sent.",
            hint=who_to_ask(ctx, policy) + " `/tokenbot policy` shows the rules.",
        )

    def _command_refusal(
        self, ctx: HandlerContext, policy: WorkspacePolicy, family: str, name: str
    ) -> Failure | None:
        allowed = policy.commands.get(family)
        if allowed is None or name in allowed:
            return None
        shown = ", ".join(f"`{n}`" for n in allowed) or "none"
        return Failure(
            code="policy_command",
            message=f"`{name}` is not allowed in this workspace (workspace policy: allowed "
            f"{ctx.keys.display(family)} commands — {shown}). Nothing was sent.",
            hint=who_to_ask(ctx, policy),
        )

    def _with_channel_model(
        self,
        ctx: HandlerContext,
        policy: WorkspacePolicy,
        family: str,
        name: str,
        command: BaseModel,
    ) -> BaseModel:
        model = policy.channel_models.get(ctx.inbound.channel, {}).get(family)
        if model is None or self.chat_command(family) != name:
            return command
        if not names_no_model(command, ctx.inbound):
            return command
        return command.model_copy(update={"model": model})

    def _model_refusal(
        self, ctx: HandlerContext, policy: WorkspacePolicy, family: str, command: BaseModel
    ) -> Failure | None:
        allowed = policy.models.get(family)
        model = getattr(command, "model", None)
        if allowed is None or not isinstance(model, str):
            return None
        if model.casefold() in {m.casefold() for m in allowed}:
            return None
        shown = ", ".join(f"`{m}`" for m in allowed) or "none"
        return Failure(
            code="policy_model",
            message=f"The model `{model}` is not allowed in this workspace (workspace policy: "
            f"allowed {ctx.keys.display(family)} models — {shown}). Nothing was sent.",
            hint="Name an allowed model. " + who_to_ask(ctx, policy),
        )
