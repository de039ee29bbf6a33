"""Text -> `/openclaw-token <group> <subcommand> [flags]` command. Pure: no I/O, no clock.

`parse` finds "openclaw-token <group> …" in a message; it returns None when there is none, or
when the word after it is not a command group (prose that merely names the product).
`parse_slash` takes a platform slash command, where a bare `/openclaw-token` is help. Both
raise a UsageError for a recognised command with bad input; nothing else escapes.
Passwords are never read from chat: a password flag, or stray words after `auth login` /
`auth register`, gives PasswordInChat, whose handler deletes the message where it can.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from bot.backends.openclaw_token.arguments import (
    choice,
    expires,
    key_filter,
    key_hash,
    key_name,
    key_sort,
    limit_reset,
    money,
    whole_number,
)
from bot.backends.openclaw_token.service import MIN_PURCHASE
from bot.backends.openclaw_token.spec import (
    FAMILY,
    GROUPS,
    HISTORY_TYPES,
    SPECS,
    AuditShow,
    AuthLogin,
    AuthRegister,
    AuthRotate,
    CreditsAutoTopup,
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
    usage_error,
)
from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.grammar import (
    ParseState,
    normalise_flag_token,
    read_flag,
    reject_single_dash,
    scan_flags,
    show_input,
)
from bot.core.outbound_text import scrub_surrogates

__all__ = ["GROUPS", "SLASH_NAME", "parse", "parse_options", "parse_slash"]

_S = TypeVar("_S", bound=str)

SLASH_NAME = "/openclaw-token"
# Each spec by "group sub" ("integrate" alone), as the grammar names them.
_SPECS: dict[str, CommandSpec] = {" ".join(s.path[1:]): s for s in SPECS}
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    group: tuple(s.path[2] for s in SPECS if s.path[1] == group and len(s.path) == 3)
    for group in ("auth", "credits", "keys", "audit")
}
DEFAULT_STATE = ParseState()
Values = Mapping[str, OptionValue]
MAX_INTERVAL_S = 300
MAX_AUDIT = 200

# A trigger at the start of the text or after whitespace, so URLs ("…/openclaw-token") don't count.
_TRIGGER = re.compile(r"(?:^|(?<=\s))/?openclaw-token(?=\s|$)", re.IGNORECASE)
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
# A password option in any spelling, one dash included ("-p hunter2"): refused, never read.
_PASSWORD_FLAG = re.compile(r"--?(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=.*)?", re.DOTALL)
_PASSWORD_FLAGS = frozenset({"password", "pass", "passwd", "pwd", "pw", "p"})
_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@]{1,189}\.[^\s@]{1,63}")
_NO_VALUE = frozenset({"none", "off", "unlimited", "null", "clear"})


_show = show_input


# --- tokens and flags ----------------------------------------------------------------------


def _tokens(command: str, text: str) -> list[str]:
    try:
        words = shlex.split(text.translate(_SMART_QUOTES))
    except ValueError:
        raise usage_error(command, "unbalanced quotes") from None
    # "—name" (autocorrect), "--name\u200b", "--ｎａｍｅ＝x" are all "--name".
    return [normalise_flag_token(w) for w in words]


@dataclass
class _Args:
    """Positional words and options of one subcommand."""

    positionals: list[str] = field(default_factory=list)
    flags: dict[str, str | bool] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        found = self.flags.get(name)
        return found if isinstance(found, str) else None

    def has(self, name: str) -> bool:
        return name in self.flags


def _split(command: str, words: list[str], max_positionals: int = 0) -> _Args:
    """Split words into positionals and the options the command's spec declares."""
    spec = _SPECS[command]
    scan = scan_flags(spec.key, words, spec.flags, spec.usage)
    args = _Args([words[i] for i in scan.positionals], scan.flags)
    if len(args.positionals) > max_positionals:
        extra = args.positionals[max_positionals]
        raise usage_error(command, f"unexpected argument {_show(extra)}")
    return args


def _args_of(spec: CommandSpec, values: Values) -> _Args:
    """Typed option values as the same `_Args` the text gives: each value whole, never split."""
    args = _Args()
    for option in spec.options:
        value = values.get(option.name)
        if value is None or value == "" or value is False:
            continue
        if option.positional:
            args.positionals.append(str(value))
        else:
            args.flags[option.name] = True if option.kind == "bool" else str(value)
    return args


# --- subcommands ---------------------------------------------------------------------------

Builder = Callable[[str, "_Args", datetime], BaseModel]


def _auth_login(command: str, words: list[str]) -> BaseModel:
    """Its own loop: stray words here are a password, never read and never echoed."""
    use_email, hint = False, ""
    i = 0
    while i < len(words):
        spec = _SPECS[command]
        reject_single_dash(spec.key, words[i], ("email", "github"), spec.usage)
        flag = read_flag(words[i])
        if flag is None:
            return PasswordInChat()  # "auth login me@x.com hunter2": never read, never echoed
        if flag.name == "email":
            use_email = True
            value = flag.value
            if value is None and i + 1 < len(words) and _EMAIL.fullmatch(words[i + 1]):
                i += 1
                value = words[i]
            if value is not None:
                if not _EMAIL.fullmatch(value):
                    return PasswordInChat()
                hint = value
        elif flag.name != "github":
            raise usage_error(
                command, f"unknown option {_show('--' + flag.name)}; use --email, --github"
            )
        i += 1
    return AuthLogin(email=use_email, email_hint=hint)


# Commands whose words are read by their own rules (a password may hide in them).
_WORD_BUILDERS: dict[str, Callable[[str, list[str]], BaseModel]] = {
    "auth login": _auth_login,
    "auth register": lambda command, words: PasswordInChat() if words else AuthRegister(),
}


def _yes(model: type[BaseModel], *, with_hash: bool) -> Builder:
    def build(command: str, args: _Args, now: datetime) -> BaseModel:
        extra: dict[str, Any] = {"hash": key_hash(command, args.positionals)} if with_hash else {}
        return model(yes=args.has("yes"), **extra)

    return build


def _credits_buy(command: str, args: _Args, now: datetime) -> BaseModel:
    raw = args.value("amount") or (args.positionals[0] if args.positionals else None)
    if raw is None:
        raise usage_error(command, f"missing --amount (USD, at least ${MIN_PURCHASE:.2f})")
    amount = money(command, "amount", raw, Decimal(0))
    if amount < MIN_PURCHASE:
        raise usage_error(
            command, f"the minimum purchase is ${MIN_PURCHASE:.2f} (got ${amount:.2f})"
        )
    return CreditsBuy(amount=amount)


def _credits_history(command: str, args: _Args, now: datetime) -> BaseModel:
    limit = whole_number(command, "limit", args.value("limit") or "20", 1, 100)
    offset = whole_number(command, "offset", args.value("offset") or "0", 0, 1_000_000)
    raw_type = args.value("type")
    kind = choice(command, "type", raw_type, HISTORY_TYPES) if raw_type else None
    return CreditsHistory(limit=limit, offset=offset, type=kind)


def _credits_auto_topup(command: str, args: _Args, now: datetime) -> BaseModel:
    if args.has("enable") and args.has("disable"):
        raise usage_error(command, "give --enable or --disable, not both")
    threshold = args.value("threshold")
    amount = args.value("amount")
    if (threshold or amount) and not args.has("enable"):
        raise usage_error(command, "--threshold and --amount go with --enable")
    action = "enable" if args.has("enable") else "disable" if args.has("disable") else "show"
    return CreditsAutoTopup(
        action=action,
        threshold=money(command, "threshold", threshold, Decimal(1)) if threshold else None,
        amount=money(command, "amount", amount, MIN_PURCHASE) if amount else None,
    )


def _keys_create(command: str, args: _Args, now: datetime) -> BaseModel:
    raw_name = args.value("name")
    if raw_name is None:
        raise usage_error(command, "missing --name")
    limit, reset, expiry = args.value("limit"), args.value("limit-reset"), args.value("expires")
    return KeysCreate(
        name=key_name(command, raw_name),
        credit_limit=money(command, "limit", limit, Decimal("0.01")) if limit else None,
        limit_reset=limit_reset(command, reset) if reset else None,
        expires_at=expires(command, expiry, now) if expiry else None,
    )


def _keys_list(command: str, args: _Args, now: datetime) -> BaseModel:
    raw_filter, raw_sort = args.value("filter"), args.value("sort")
    return KeysList(
        filter=key_filter(command, raw_filter) if raw_filter else None,
        sort=key_sort(command, raw_sort) if raw_sort else None,
        include_revoked=args.has("include-revoked"),
    )


def _keys_info(command: str, args: _Args, now: datetime) -> BaseModel:
    return KeysInfo(hash=key_hash(command, args.positionals))


def _keys_update(command: str, args: _Args, now: datetime) -> BaseModel:
    key = key_hash(command, args.positionals)
    if args.has("disabled") and args.has("enabled"):
        raise usage_error(command, "give --disabled or --enabled, not both")
    fields: dict[str, Any] = {}
    limit = args.value("limit")
    if limit is not None:
        fields["set_limit"] = True
        if limit.lower() not in _NO_VALUE:
            fields["credit_limit"] = money(command, "limit", limit, Decimal("0.01"))
    reset = args.value("limit-reset")
    if reset is not None:
        fields["set_reset"] = True
        if reset.lower() not in _NO_VALUE:
            fields["limit_reset"] = limit_reset(command, reset)
    if args.has("disabled") or args.has("enabled"):
        fields["disabled"] = args.has("disabled")
    if not fields:
        raise usage_error(
            command, "nothing to change: give --limit, --limit-reset, --disabled or --enabled"
        )
    return KeysUpdate(hash=key, **fields)


def _keys_usage(command: str, args: _Args, now: datetime) -> BaseModel:
    key = key_hash(command, args.positionals)
    interval = args.value("interval")
    return KeysUsage(
        hash=key,
        # --interval alone clearly means "watch it".
        watch=args.has("watch") or interval is not None,
        interval=whole_number(command, "interval", interval, 1, MAX_INTERVAL_S) if interval else 5,
    )


def _integrate_mode(command: str, args: _Args) -> str | None:
    """ "status" or "remove" when one is asked for (alone), else None (set the fallback)."""
    modes = [m for m in ("status", "remove") if args.has(m)]
    if len(modes) > 1:
        raise usage_error(command, "give --status or --remove, not both")
    if modes and (args.positionals or any(args.has(o) for o in ("name", "limit", "limit-reset"))):
        raise usage_error(command, f"--{modes[0]} takes no other arguments")
    return modes[0] if modes else None


def _integrate(command: str, args: _Args, now: datetime) -> BaseModel:
    mode = _integrate_mode(command, args)
    if mode is not None:
        return Integrate(action=cast(Any, mode))
    key = key_hash(command, args.positionals) if args.positionals else None
    if key and any(args.has(o) for o in ("name", "limit", "limit-reset")):
        raise usage_error(
            command, "with an existing key's <hash>, --name/--limit/--limit-reset don't apply"
        )
    limit, reset, name = args.value("limit"), args.value("limit-reset"), args.value("name")
    return Integrate(
        action="set",
        hash=key,
        name=key_name(command, name) if name else "tokenbot-fallback",
        credit_limit=money(command, "limit", limit, Decimal("0.01")) if limit else None,
        limit_reset=limit_reset(command, reset) if reset else None,
    )


def _audit_show(command: str, args: _Args, now: datetime) -> BaseModel:
    raw = args.value("limit")
    return AuditShow(
        limit=whole_number(command, "limit", raw, 1, MAX_AUDIT) if raw else 20,
        everyone=args.has("all"),
    )


def _from_spec(command: str, args: _Args, now: datetime) -> BaseModel:
    """A command whose spec says it all: its options, as declared, become the model's fields.

    A new command with plain options needs only its spec (and its handler), no builder here.
    """
    spec = _SPECS[command]
    assert spec.model is not None, f"{command} has no command model"
    fields: dict[str, Any] = {}
    positionals = iter(args.positionals)
    for option in spec.options:
        name = option.name.replace("-", "_")
        if option.name == "json":
            continue  # every command's --json is applied by _with_json
        if option.positional:
            word = next(positionals, None)
            if word is not None:
                fields[name] = word
        elif option.kind == "bool":
            fields[name] = args.has(option.name)
        elif (value := args.value(option.name)) is not None:
            fields[name] = value
    return spec.model(**fields)


def _builder(command: str) -> tuple[Builder, int]:
    """The command's builder and how many positional words its text form takes."""
    if command in _BUILDERS:
        return _BUILDERS[command]
    return _from_spec, sum(1 for o in _SPECS[command].options if o.positional)


# Commands that need more than their spec: conversions, cross-checks, positional hashes.
_BUILDERS: dict[str, tuple[Builder, int]] = {
    "auth rotate": (_yes(AuthRotate, with_hash=False), 0),
    "credits buy": (_credits_buy, 1),
    "credits history": (_credits_history, 0),
    "credits auto-topup": (_credits_auto_topup, 0),
    "keys create": (_keys_create, 0),
    "keys list": (_keys_list, 0),
    "keys info": (_keys_info, 1),
    "keys update": (_keys_update, 1),
    "keys rotate": (_yes(KeysRotate, with_hash=True), 1),
    "keys revoke": (_yes(KeysRevoke, with_hash=True), 1),
    "keys revoke-all": (_yes(KeysRevokeAll, with_hash=False), 0),
    "keys usage": (_keys_usage, 1),
    "integrate": (_integrate, 1),
    "audit show": (_audit_show, 0),
}


# --- dispatch ------------------------------------------------------------------------------


def _build(command: str, words: list[str], now: datetime) -> BaseModel:
    if command in _WORD_BUILDERS:
        return _WORD_BUILDERS[command](command, words)
    build, max_positionals = _builder(command)
    return build(command, _split(command, words, max_positionals), now)


def _has_password(words: list[str]) -> bool:
    return any(
        (m := _PASSWORD_FLAG.fullmatch(w)) is not None
        and m.group("name").lower() in _PASSWORD_FLAGS
        for w in words
    )


def _subcommand(words: list[str], wants_help: bool) -> tuple[str, list[str]] | BaseModel:
    """("group sub", its words) for the group in `words[0]`, or the help / refusal to give."""
    group = words[0].lower()
    if group == "help":
        topic = words[1].lower() if len(words) > 1 else None
        return OpenClawHelp(topic=topic if topic in GROUPS else None)
    if group not in GROUPS:
        raise usage_error("", f"unknown command {_show(words[0])}; use one of {', '.join(GROUPS)}")
    if group == "auth" and _has_password(words):
        return PasswordInChat()
    if group == "integrate":
        return "integrate", words[1:]
    subs = SUBCOMMANDS[group]
    sub = words[1].lower() if len(words) > 1 else ""
    if not sub and group == "audit":
        sub = "show"
    if not sub and wants_help:
        return OpenClawHelp(topic=group)
    if sub not in subs:
        shown = f"unknown subcommand {_show(words[1])}" if sub else "missing subcommand"
        raise usage_error(group, f"{shown}; use one of {', '.join(subs)}")
    return f"{group} {sub}", words[2:]


def _command(text: str, ctx: ParseState) -> BaseModel:
    """Arguments after `/openclaw-token` -> a command (help when empty)."""
    words = _tokens("", scrub_surrogates(text))
    as_json = "--json" in words
    wants_help = any(w in ("--help", "-h") for w in words)
    words = [w for w in words if w not in ("--json", "--help", "-h")]
    if not words:
        return OpenClawHelp()
    found = _subcommand(words, wants_help)
    if isinstance(found, BaseModel):
        return found
    command, rest = found
    if wants_help:
        return OpenClawHelp(topic=command.split(" ")[0])
    try:
        model = _build(command, rest, ctx.now())
    except ValidationError as exc:
        # Defensive: the builders validate first, so this is a gap in them; still bad input.
        raise usage_error(command, f"invalid arguments ({exc.error_count()} problem(s))") from None
    return _with_json(model, as_json)


def _with_json(model: BaseModel, as_json: bool) -> BaseModel:
    if as_json and "as_json" in type(model).model_fields:
        return model.model_copy(update={"as_json": True})
    return model


def parse(text: str, ctx: ParseState = DEFAULT_STATE) -> BaseModel | None:
    """The `openclaw-token …` command in a chat message; None if there is none."""
    if not text or "openclaw-token" not in text.lower():
        return None
    m = _TRIGGER.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    if m.group().startswith("/"):
        return _command(rest, ctx)  # spelled as the slash command: as explicit as one
    # Otherwise only a known group after the trigger (global flags aside) makes it a command.
    first = next((w for w in rest.split() if not w.startswith(("-", "—", "–"))), "")
    if first.lower() not in GROUPS:
        return None
    return _command(rest, ctx)


def parse_slash(name: str, text: str, ctx: ParseState = DEFAULT_STATE) -> BaseModel | None:
    """A platform slash command; None unless it is `/openclaw-token`."""
    if name.strip().lstrip("/").lower() != SLASH_NAME.lstrip("/"):
        return None
    return _command(text or "", ctx)


def parse_options(spec: CommandSpec, values: Values, ctx: ParseState = DEFAULT_STATE) -> BaseModel:
    """The command a platform's typed options describe, checked as its text would be.

    Each value is taken whole: `--name "my --limit key"` typed as an option keeps its name.
    """
    command = " ".join(spec.path[1:])
    if spec.family != FAMILY or command not in _SPECS:
        raise ValueError(f"not an OpenClaw Token command spec: {spec.display}")
    cleaned = {k: scrub_surrogates(v) if isinstance(v, str) else v for k, v in values.items()}
    try:
        if command == "help":
            topic = str(cleaned.get("topic") or "").lower()
            return OpenClawHelp(topic=topic if topic in GROUPS else None)
        if command == "auth login":
            return AuthLogin(email=cleaned.get("email") is True)
        if command == "auth register":
            return AuthRegister()
        build, _ = _builder(command)
        model = build(command, _args_of(spec, cleaned), ctx.now())
    except ValidationError as exc:
        raise usage_error(command, f"invalid arguments ({exc.error_count()} problem(s))") from None
    return _with_json(model, cleaned.get("json") is True)
