"""Text -> `/tokenbot …` command. Pure: no I/O; the clock only through ParseState.

`parse` finds "/tokenbot …" (or "tokenbot usage|policy|admin|budget|help …") in a message;
`parse_slash` takes the platform slash command, where a bare `/tokenbot` is help;
`parse_options` builds a command from Discord's typed options. Mentions are read in both
platforms' forms: Slack `<@U123>` / `<#C123|name>`, Discord `<@123>` / `<@!123>` / `<#123>`.
Whether a backend, command or model exists is checked by the handlers (they know the
installed families); the grammar checks only the shape.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.grammar import ParseState, normalise_flag_token, scan_flags, show_input
from bot.core.outbound_text import scrub_surrogates
from bot.teams.spec import (
    BY_WORDS,
    DIMENSIONS,
    FAMILY,
    HELP_TOPICS,
    SLASH_NAME,
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
    usage_error,
)

__all__ = ["channel_id", "parse", "parse_options", "parse_slash", "user_id"]

DEFAULT_STATE = ParseState()
Values = Mapping[str, OptionValue]

_TRIGGER = re.compile(r"(?:^|(?<=\s))(?P<slash>/)?tokenbot(?=\s|$)", re.IGNORECASE)
_GROUPS = ("usage", "policy", "admin", "budget", "help")
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
# Slack <@U123> / <@U123|name>, Discord <@123> / <@!123>; a bare id is accepted too.
_USER = re.compile(
    r"<@!?(?P<id>[A-Za-z0-9]+)(?:\|[^>]*)?>|@?(?P<bare>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
)
# Slack <#C123|name> / <#C123>, Discord <#123>; a bare id too.
_CHANNEL = re.compile(
    r"<#(?P<id>[A-Za-z0-9]+)(?:\|[^>]*)?>|#?(?P<bare>[A-Za-z0-9][A-Za-z0-9._-]{0,79})"
)
_DAYS = re.compile(r"(?P<n>\d{1,3})\s*d(?:ays?)?")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
_BACKEND = re.compile(r"[a-z][a-z0-9_-]{1,40}")
_COMMAND_WORD = re.compile(r"[a-z][a-z0-9_-]{0,40}")
_OFF = frozenset({"off", "none", "clear"})


def user_id(words: str, raw: str) -> str:
    """The user id a mention (or bare id) names; a usage error for anything else."""
    m = _USER.fullmatch(raw.strip())
    if m is None:
        raise usage_error(words, f"{show_input(raw)} is not a @mention of a member")
    return m.group("id") or m.group("bare")


def channel_id(words: str, raw: str) -> str:
    """The channel id a #mention (or bare id) names; a usage error for anything else."""
    m = _CHANNEL.fullmatch(raw.strip())
    if m is None:
        raise usage_error(words, f"{show_input(raw)} is not a #channel mention")
    return m.group("id") or m.group("bare")


def _backend(words: str, raw: str | None) -> str:
    if not raw:
        raise usage_error(words, "name a backend: alltoken, openmarlin or openclaw-token")
    name = raw.lower()
    if not _BACKEND.fullmatch(name):
        raise usage_error(words, f"{show_input(raw)} is not a backend name")
    return name.replace("-", "_")


def _usd(words: str, raw: str | None) -> Decimal | None:
    if raw is None:
        raise usage_error(words, "give an amount in USD, or off")
    if raw.lower() in _OFF:
        return None
    try:
        amount = Decimal(raw.strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise usage_error(words, f"{show_input(raw)} is not an amount in USD") from None
    if not amount.is_finite() or amount <= 0 or amount > Decimal("9999999.99"):
        raise usage_error(words, f"the amount must be above $0 (got {show_input(raw)})")
    if amount != amount.quantize(Decimal("0.01")):
        raise usage_error(words, f"at most two decimals, dollars and cents (got {show_input(raw)})")
    return amount.quantize(Decimal("0.01"))


def _since(words: str, raw: str, today: date) -> dict[str, Any]:
    m = _DAYS.fullmatch(raw.strip().lower())
    if m is not None:
        days = int(m.group("n"))
        if not 1 <= days <= 366:
            raise usage_error(words, f"--since takes 1 to 366 days (got {show_input(raw)})")
        return {"since_days": days, "since": None}
    try:
        when = date.fromisoformat(raw.strip())
    except ValueError:
        raise usage_error(
            words, f"--since takes 7d, 30d or YYYY-MM-DD (got {show_input(raw)})"
        ) from None
    if when > today:
        raise usage_error(words, f"--since {when.isoformat()} is in the future")
    return {"since": when, "since_days": None}


def _who(words: str, raw: str | None) -> str | None:
    if raw is None or raw.lower() == "me":
        return None
    if raw.lower() in ("all", "everyone", "workspace"):
        return "all"
    return user_id(words, raw)


# --- builders: (words, flags, positionals, now) -> command ------------------------------------

Flags = Mapping[str, str | bool]
Builder = Callable[[str, Flags, list[str], datetime], BaseModel]


def _text(flags: Flags, name: str) -> str | None:
    found = flags.get(name)
    return found if isinstance(found, str) else None


def _one_of(words: str, what: str, raw: str | None, allowed: tuple[str, ...]) -> str:
    if raw is None or raw.lower() not in allowed:
        shown = f" (got {show_input(raw)})" if raw else ""
        raise usage_error(words, f"{what} must be one of {', '.join(allowed)}{shown}")
    return raw.lower()


def _no_more(words: str, rest: list[str]) -> None:
    if rest:
        raise usage_error(words, f"unexpected argument {show_input(rest[0])}")


def _usage(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    _no_more(words, rest)
    fields: dict[str, Any] = {
        "user": _who(words, _text(flags, "user")),
        "csv": flags.get("csv") is True,
    }
    by = _text(flags, "by")
    if by is not None:
        fields["by"] = _one_of(words, "--by", by, DIMENSIONS)
    since = _text(flags, "since")
    if since is not None:
        fields.update(_since(words, since, now.date()))
    return UsageQuery(**fields)


def _plain(model: type[BaseModel]) -> Builder:
    def build(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
        _no_more(words, rest)
        return model()

    return build


def _help(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    topic = rest[0].lower() if rest else None
    return TeamsHelp(topic=topic if topic in HELP_TOPICS else None)


def _own_keys(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    state = _one_of(words, "the setting", rest[0] if rest else None, ("on", "off"))
    _no_more(words, rest[1:])
    return OwnKeysOptIn(on=state == "on")


def _member(model: type[AdminAdd] | type[AdminRemove]) -> Builder:
    def build(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
        if not rest:
            raise usage_error(words, "name the member with an @mention")
        _no_more(words, rest[1:])
        return model(user=user_id(words, rest[0]))

    return build


def _channels(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    action = _one_of(
        words, "the action", rest[0] if rest else None, ("everywhere", "add", "remove")
    )
    if action == "everywhere":
        _no_more(words, rest[1:])
        return AdminChannels(action="everywhere")
    if len(rest) < 2:
        raise usage_error(words, f"name the channel to {action} with a #mention")
    _no_more(words, rest[2:])
    return AdminChannels(action=action, channel=channel_id(words, rest[1]))


def _commands(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    backend = _backend(words, rest[0] if rest else None)
    action = _one_of(
        words, "the action", rest[1] if len(rest) > 1 else None, ("allow", "deny", "reset")
    )
    names = rest[2:]
    if action == "reset":
        _no_more(words, names)
        return AdminCommands(backend=backend, action="reset")
    if not names:
        raise usage_error(words, f"name the commands to {action}, e.g. video image")
    bad = next((n for n in names if not _COMMAND_WORD.fullmatch(n.lower())), None)
    if bad is not None:
        raise usage_error(words, f"{show_input(bad)} is not a command name")
    return AdminCommands(backend=backend, action=action, commands=tuple(n.lower() for n in names))


def _models(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    backend = _backend(words, rest[0] if rest else None)
    action = _one_of(words, "the action", rest[1] if len(rest) > 1 else None, ("allow", "reset"))
    names = rest[2:]
    if action == "reset":
        _no_more(words, names)
        return AdminModels(backend=backend, action="reset")
    if not names:
        raise usage_error(words, "name the models to allow")
    bad = next((n for n in names if not _MODEL.fullmatch(n)), None)
    if bad is not None:
        raise usage_error(words, f"{show_input(bad)} is not a model id")
    return AdminModels(backend=backend, action="allow", models=tuple(dict.fromkeys(names)))


def _channel_model(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    backend = _backend(words, rest[0] if rest else None)
    if len(rest) < 2:
        raise usage_error(words, "name the model, or clear")
    _no_more(words, rest[2:])
    model = rest[1]
    if model.lower() in _OFF:
        return AdminChannelModel(backend=backend)
    if not _MODEL.fullmatch(model):
        raise usage_error(words, f"{show_input(model)} is not a model id")
    return AdminChannelModel(backend=backend, model=model)


def _workspace_key(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
    # Only the backend and "clear": a key typed here never reaches a model (the core refuses
    # key-shaped text before parsing is used; anything else is a usage error).
    backend = _backend(words, rest[0] if rest else None)
    clear = flags.get("clear") is True
    if len(rest) > 1 and rest[1].lower() == "clear" and not clear:
        clear, rest = True, rest[:1] + rest[2:]
    if len(rest) > 1:
        raise usage_error(
            words, "keys go only into the private form: leave them out of the command"
        )
    return AdminWorkspaceKey(backend=backend, clear=clear)


def _budget(
    model: type[BudgetWorkspace] | type[BudgetUserDaily] | type[BudgetUserMonthly],
) -> Builder:
    def build(words: str, flags: Flags, rest: list[str], now: datetime) -> BaseModel:
        amount = _usd(words, rest[0] if rest else None)
        _no_more(words, rest[1:])
        return model(usd=amount)

    return build


_BUILDERS: dict[str, Builder] = {
    "usage": _usage,
    "policy": _plain(PolicyShow),
    "help": _help,
    "budget own-keys": _own_keys,
    "admin add": _member(AdminAdd),
    "admin remove": _member(AdminRemove),
    "admin channels": _channels,
    "admin commands": _commands,
    "admin models": _models,
    "admin channel-model": _channel_model,
    "admin workspace-key": _workspace_key,
    "admin budget workspace": _budget(BudgetWorkspace),
    "admin budget user-daily": _budget(BudgetUserDaily),
    "admin budget user-monthly": _budget(BudgetUserMonthly),
}
_SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    group: tuple(w[len(group) + 1 :].split(" ")[0] for w in BY_WORDS if w.startswith(group + " "))
    for group in ("admin", "budget", "admin budget")
}


# --- dispatch --------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    try:
        words = shlex.split(text.translate(_SMART_QUOTES))
    except ValueError:
        raise usage_error("", "unbalanced quotes") from None
    return [normalise_flag_token(w) for w in words]


def _command_words(words: list[str]) -> tuple[str, list[str]]:
    """("admin budget workspace", the words after it) for the longest command `words` start with."""
    lowered = [w.lower() for w in words]
    for length in (3, 2, 1):
        head = " ".join(lowered[:length])
        if head in BY_WORDS:
            return head, words[length:]
    group = " ".join(lowered[:2]) if lowered[:2] == ["admin", "budget"] else lowered[0]
    if group in _SUBCOMMANDS:
        taken = len(group.split(" "))
        sub = words[taken] if len(words) > taken else ""
        shown = f"unknown subcommand {show_input(sub)}" if sub else "missing subcommand"
        raise usage_error(
            group, f"{shown}; use one of {', '.join(dict.fromkeys(_SUBCOMMANDS[group]))}"
        )
    raise usage_error(
        "", f"unknown command {show_input(words[0])}; use one of {', '.join(_GROUPS)}"
    )


def _command(text: str, state: ParseState) -> BaseModel:
    words = _tokens(scrub_surrogates(text))
    if not words or words[0].lower() in ("--help", "-h"):
        return TeamsHelp()
    name, rest = _command_words(words)
    spec = BY_WORDS[name]
    scan = scan_flags(spec.key, rest, spec.flags, spec.usage)
    positionals = [rest[i] for i in scan.positionals]
    try:
        return _BUILDERS[name](name, scan.flags, positionals, state.now())
    except ValidationError as exc:
        raise usage_error(name, f"invalid arguments ({exc.error_count()} problem(s))") from None


def parse(text: str, state: ParseState = DEFAULT_STATE) -> BaseModel | None:
    """The `tokenbot …` command in a chat message; None if there is none."""
    if not text or "tokenbot" not in text.lower():
        return None
    m = _TRIGGER.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    if m.group("slash") is None:
        # Without the slash only a known group right after the name makes it a command
        # ("tokenbot is great" is talk about the bot).
        first = rest.split(maxsplit=1)[0].lower() if rest.strip() else ""
        if first not in _GROUPS:
            return None
    return _command(rest, state)


def parse_slash(name: str, text: str, state: ParseState = DEFAULT_STATE) -> BaseModel | None:
    """A platform slash command; None unless it is `/tokenbot`."""
    if name.strip().lstrip("/").lower() != SLASH_NAME.lstrip("/"):
        return None
    return _command(text or "", state)


def _positionals(spec: CommandSpec, values: Values) -> list[str]:
    """Typed positional values in spec order; list options ("commands", "models") split on spaces."""
    found: list[str] = []
    for option in spec.options:
        value = values.get(option.name)
        if not option.positional or value is None or value == "":
            continue
        found.extend(str(value).split() if option.name in ("commands", "models") else [str(value)])
    return found


def parse_options(
    spec: CommandSpec, values: Values, state: ParseState = DEFAULT_STATE
) -> BaseModel:
    """The command Discord's typed options describe, checked as its text would be."""
    words = " ".join(spec.path[1:])
    if spec.family != FAMILY or words not in _BUILDERS:
        raise ValueError(f"not a /tokenbot command spec: {spec.display}")
    cleaned = {k: scrub_surrogates(v) if isinstance(v, str) else v for k, v in values.items()}
    flags: dict[str, str | bool] = {}
    for option in spec.options:
        value = cleaned.get(option.name)
        if option.positional or value is None or value == "" or value is False:
            continue
        flags[option.name] = True if option.kind == "bool" else str(value)
    try:
        return _BUILDERS[words](words, flags, _positionals(spec, cleaned), state.now())
    except ValidationError as exc:
        raise usage_error(words, f"invalid arguments ({exc.error_count()} problem(s))") from None
