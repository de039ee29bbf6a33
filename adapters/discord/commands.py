"""The slash-command tree, built from the families' command specs (bot/core/command_spec.py).

One slash command per `path[0]`. A command whose specs go deeper (`/openclaw-token keys create`)
becomes Discord subcommand groups and subcommands (Discord nests two levels below the command,
25 entries per level). Each option of a spec becomes a typed Discord option with its choices,
range and `required`; an option with a `suggest` list is autocompleted from the family's cache
(never the network); `secret` options are never Discord options: the family asks for them in a
private form, and such a command is not deferred so that form can open as its first answer.

What Discord sent is handed to the core as values (`Inbound.options`, `Inbound.subcommand`),
never turned back into text to be parsed again; `Inbound.text` is only a readable echo
(`keys create --name=ci`). A family with no specs gets one free-text `text` option, parsed like
the same text typed after the command in chat.

Every top-level command declares both install types (server and user) and the contexts it may
run in (adapters/discord/user_install.py decides from the specs).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Optional

import discord
from discord import app_commands

from adapters.discord.guard import log_crash, tell_interaction
from adapters.discord.ports import SlashRunner
from adapters.discord.render import inert
from adapters.discord.user_install import declare
from bot.core.command_spec import CommandSpec, OptionSpec, OptionValue

log = logging.getLogger(__name__)

MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100
MAX_DESCRIPTION = 100
# Options per command, and subcommands or groups per level (Discord's limits).
MAX_OPTIONS = 25
MAX_ENTRIES = 25

_TYPES: dict[str, type] = {
    "text": str,
    "choice": str,
    "date": str,
    "int": int,
    "float": float,
    "bool": bool,
}

Callback = Callable[..., Coroutine[Any, Any, None]]
Complete = Callable[[discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[Any]]]]
TreeEntry = app_commands.Command[Any, ..., None] | app_commands.Group


# --- values -> a readable echo (pure) ---------------------------------------------------------


def _flag(name: str, value: OptionValue) -> str:
    if value is True:
        return f"--{name}"
    if value is False:
        return f"--{name}=false"
    return f"--{name}={value}"


def echo_text(spec: CommandSpec, values: Mapping[str, OptionValue]) -> str:
    """What one would type after the slash command: the subcommand, `--flags`, then the text.

    Only for logs, history and key detection; the core builds the command from the values.
    """
    flags = [
        _flag(o.name, values[o.name]) for o in spec.options if not o.positional and o.name in values
    ]
    free = [str(values[o.name]) for o in spec.options if o.positional and o.name in values]
    return " ".join(bit for bit in (*spec.path[1:], *flags, *free) if bit != "")


def subcommand_of(spec: CommandSpec) -> str | None:
    """The path below the slash command ("keys create"), None for a one-level command."""
    return " ".join(spec.path[1:]) or None


# --- autocomplete (pure) ----------------------------------------------------------------------


def filter_choices(names: Sequence[str], current: str) -> list[app_commands.Choice[str]]:
    """Up to 25 names containing what was typed so far (prefix matches first)."""
    typed = current.strip().lower()
    hits = [n for n in dict.fromkeys(names) if typed in n.lower() and len(n) <= MAX_CHOICE_CHARS]
    hits.sort(key=lambda n: (not n.lower().startswith(typed), n))
    # Values come from a backend: the shown name is made inert, the value stays exact.
    return [
        app_commands.Choice(name=inert(n)[:MAX_CHOICE_CHARS], value=n) for n in hits[:MAX_CHOICES]
    ]


def failed_choices(ref: str, current: str) -> list[app_commands.Choice[str]]:
    """What autocomplete shows when it failed: the error's ref, keeping what was typed."""
    name = f"Something went wrong (ref {ref}); type the value instead"
    return [app_commands.Choice(name=name[:MAX_CHOICE_CHARS], value=current[:100] or "?")]


def _completer(runner: SlashRunner, option: OptionSpec) -> Complete:
    """Autocomplete for one option: its suggestion list and (beyond 25) its own choices."""

    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[Any]]:
        try:
            names = list(option.choices)
            if option.suggest:
                names += runner.suggestions(option.suggest)
            return list(filter_choices(names, str(current)))
        except Exception as exc:
            what = f"autocomplete of {option.suggest or option.name}"
            return list(failed_choices(log_crash(log, what, exc), str(current)))

    return complete


# --- one spec -> one Discord command ----------------------------------------------------------


def _clip(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(text.split()) or "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _annotation(option: OptionSpec) -> Any:
    """The Python annotation discord.py turns into the option's type (and range)."""
    base = _TYPES[option.kind]
    if base in (int, float) and (option.min_value is not None or option.max_value is not None):
        cast: Callable[[float], float | int] = int if base is int else float
        low = None if option.min_value is None else cast(option.min_value)
        high = None if option.max_value is None else cast(option.max_value)
        return app_commands.Range[base, low, high]
    return base


def _choice_value(option: OptionSpec, value: str) -> OptionValue:
    kind = _TYPES[option.kind]
    return kind(value) if kind in (int, float) else value


def discord_options(spec: CommandSpec) -> list[OptionSpec]:
    """The spec's options Discord shows: never a secret one, at most 25."""
    shown = [o for o in spec.options if not o.secret]
    if len(shown) > MAX_OPTIONS:
        log.error("discord: %s has %d options; only %d fit", spec.display, len(shown), MAX_OPTIONS)
    return shown[:MAX_OPTIONS]


def _decorate(callback: Callback, runner: SlashRunner, named: dict[str, OptionSpec]) -> Callback:
    """Apply option names, descriptions, choices and autocomplete to a generated callback."""
    renames = {py: o.name for py, o in named.items()}
    describe = {py: _clip(o.description) for py, o in named.items()}
    choices: dict[str, list[app_commands.Choice[Any]]] = {}
    completes: dict[str, Complete] = {}
    for py, option in named.items():
        if option.choices and len(option.choices) <= MAX_CHOICES and not option.suggest:
            choices[py] = [
                app_commands.Choice(name=c[:MAX_CHOICE_CHARS], value=_choice_value(option, c))
                for c in option.choices
            ]
        elif option.suggest or option.choices:
            completes[py] = _completer(runner, option)
    callback = app_commands.rename(**renames)(callback)
    callback = app_commands.describe(**describe)(callback)
    if choices:
        callback = app_commands.choices(**choices)(callback)
    if completes:
        callback = app_commands.autocomplete(**completes)(callback)
    return callback


def spec_command(
    runner: SlashRunner, spec: CommandSpec, name: str
) -> app_commands.Command[Any, ..., None]:
    """One spec as a Discord command (or subcommand) called `name`, with typed options."""
    # Options get neutral Python names (p0, p1, …) and are renamed to the spec's names, which
    # may be Python keywords or contain hyphens ("type", "limit-reset").
    named = {f"p{i}": option for i, option in enumerate(discord_options(spec))}
    command, subcommand = spec.slash, subcommand_of(spec)
    # A command that may ask for a secret answers with a modal, which must be its first answer.
    defer = not any(o.secret for o in spec.options)

    async def run(interaction: discord.Interaction, **given: Any) -> None:
        values = {named[py].name: v for py, v in given.items() if v is not None}
        await runner.run_slash(
            interaction,
            command,
            echo_text(spec, values),
            options=values,
            subcommand=subcommand,
            defer=defer,
        )

    parameters = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    for py, option in named.items():
        annotation = _annotation(option)
        parameters.append(
            inspect.Parameter(
                py,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation if option.required else Optional[annotation],  # noqa: UP045
                default=inspect.Parameter.empty if option.required else None,
            )
        )
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback = _decorate(run, runner, named)
    return app_commands.Command(name=name, description=_clip(spec.description), callback=callback)


# --- the tree ---------------------------------------------------------------------------------


def free_text_command(runner: SlashRunner, slash: str) -> app_commands.Command[Any, ..., None]:
    """A command of a family without specs: one `text` option, parsed like chat text."""
    name = slash.lstrip("/").lower()

    @app_commands.describe(text=f"Same text as after /{name} in a message; try `help`")
    async def run(interaction: discord.Interaction, text: str | None = None) -> None:
        await runner.run_slash(interaction, f"/{name}", text or "")

    label = runner.family_label(slash)
    return app_commands.Command(
        name=name, description=_clip(f"{label}: the same commands as in chat"), callback=run
    )


def _listing(label: str, names: Sequence[str]) -> str:
    return _clip(f"{label}: {', '.join(names)}" if label else ", ".join(names))


def _add(parent: app_commands.Group, entry: TreeEntry) -> bool:
    """Add a subcommand or group; False (logged) when the level is full or the name taken."""
    taken = parent.get_command(entry.name)
    if taken is not None or len(parent.commands) >= MAX_ENTRIES:
        why = "its name is taken" if taken is not None else f"{MAX_ENTRIES} entries already"
        log.error("discord: cannot add %s %s (%s)", parent.qualified_name, entry.name, why)
        return False
    parent.add_command(entry)
    return True


def group_command(
    runner: SlashRunner, slash: str, specs: Sequence[CommandSpec]
) -> app_commands.Group:
    """A command with subcommands: `path[1]` is a subcommand, or a group of `path[2:]` ones."""
    label = runner.family_label(slash)
    heads = list(dict.fromkeys(s.path[1] for s in specs if len(s.path) > 1))
    root = app_commands.Group(name=slash.lstrip("/").lower(), description=_listing(label, heads))
    leaves: dict[str, list[str]] = {}
    for spec in specs:
        if len(spec.path) > 2:
            # Discord nests two levels: anything deeper is one hyphenated subcommand.
            leaves.setdefault(spec.path[1], []).append("-".join(spec.path[2:]))
    groups: dict[str, app_commands.Group] = {}
    for spec in specs:  # in the specs' order, which is the order Discord shows
        if len(spec.path) == 1:
            # Discord cannot run a command that has subcommands: such a spec needs a path below.
            log.error("discord: %s also has subcommands; it is left out", spec.display)
        elif len(spec.path) == 2:
            _add(root, spec_command(runner, spec, spec.path[1]))
        else:
            head = spec.path[1]
            group = groups.get(head)
            if group is None:
                description = _listing(f"{label} {head}", leaves[head])
                group = groups[head] = app_commands.Group(name=head, description=description)
                _add(root, group)
            _add(group, spec_command(runner, spec, "-".join(spec.path[2:])))
    return root


def slash_entry(runner: SlashRunner, slash: str) -> TreeEntry:
    """The tree entry for one slash command, from its specs (free text when it has none)."""
    specs = runner.specs_for(slash)
    if not specs:
        return free_text_command(runner, slash)
    if all(len(s.path) == 1 for s in specs):
        if len(specs) > 1:
            log.error("discord: %s has %d specs; the first is used", slash, len(specs))
        return spec_command(runner, specs[0], slash.lstrip("/").lower())
    return group_command(runner, slash, specs)


def build_tree(client: discord.Client, runner: SlashRunner) -> app_commands.CommandTree:
    """The command tree for every slash command the bot's families own, in their order."""
    tree: app_commands.CommandTree = app_commands.CommandTree(client)
    for slash in runner.slash_commands:
        entry = slash_entry(runner, slash)
        # Installable to servers and to users; where each may run follows its specs.
        declare(entry, runner.specs_for(slash))
        tree.add_command(entry)

    @tree.error
    async def on_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        # Whatever failed around a command's callback (options Discord sent that don't fit the
        # tree, a stale command): the person still gets an answer with the logged ref.
        data: dict[str, Any] = dict(interaction.data or {})
        what = f"slash command {data.get('name', '?')}"
        await tell_interaction(interaction, log_crash(log, what, error))

    return tree
