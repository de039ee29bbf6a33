"""Text -> `/openclaw-token <group> <subcommand> [flags]` command. Pure: no I/O, no clock.

`parse` finds "openclaw-token <group> …" in a message; it returns None when there is none, or
when the word after it is not a command group (prose that merely names the product).
`parse_slash` takes a platform slash command, where a bare `/openclaw-token` is help. Both
raise OpenClawUsageError for a recognised command with bad input; nothing else escapes.
Passwords are never read from chat: a password flag, or stray words after `auth login` /
`auth register`, gives PasswordInChat, whose handler deletes the message where it can.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from bot.backends.alltoken.grammar import DEFAULT_CONTEXT, RouterContext
from bot.backends.alltoken.spec import normalise_flag_token
from bot.backends.openclaw_token.service import MIN_PURCHASE, HistoryType, LimitReset
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
    KeyFilter,
    KeysCreate,
    KeysInfo,
    KeysList,
    KeySort,
    KeysRevoke,
    KeysRevokeAll,
    KeysRotate,
    KeysUpdate,
    KeysUsage,
    OpenClawHelp,
    OpenClawUsageError,
    PasswordInChat,
)
from bot.core import key_shapes
from bot.core.outbound_text import scrub_surrogates

__all__ = ["GROUPS", "SLASH_NAME", "parse", "parse_slash"]

_S = TypeVar("_S", bound=str)

SLASH_NAME = "/openclaw-token"
GROUPS = ("auth", "credits", "keys", "integrate", "audit", "help")
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "auth": ("login", "register", "whoami", "rotate", "logout"),
    "credits": ("balance", "buy", "history", "auto-topup"),
    "keys": ("create", "list", "info", "update", "rotate", "revoke", "revoke-all", "usage"),
    "audit": ("show",),
}
LIMIT_RESETS: tuple[LimitReset, ...] = ("daily", "weekly", "monthly")
HISTORY_TYPES: tuple[HistoryType, ...] = ("purchase", "usage", "refund", "auto_topup")
SORT_FIELDS = {
    "name": "name",
    "usage": "usage",
    "created": "created",
    "created_at": "created",
    "limit": "limit",
    "credit_limit": "limit",
    "hash": "hash",
}
MAX_INTERVAL_S = 300
MAX_AUDIT = 200
MAX_USD = Decimal("9999999.99")
LATEST_EXPIRY = "9999-12-31T23:59:59Z"

# A trigger at the start of the text or after whitespace, so URLs ("…/openclaw-token") don't count.
_TRIGGER = re.compile(r"(?:^|(?<=\s))/?openclaw-token(?=\s|$)", re.IGNORECASE)
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_FLAG = re.compile(r"--?(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=(?P<value>.*))?", re.DOTALL)
_PASSWORD_FLAGS = frozenset({"password", "pass", "passwd", "pwd", "pw", "p"})
_HASH = re.compile(r"[0-9a-fA-F]{16}")
_MONEY = re.compile(r"\$?(?P<units>[0-9]+)(?:\.(?P<cents>[0-9]*))?")
_USAGE_FILTER = re.compile(
    r"usage\s*(?P<op>>=|<=|>|<|==?)\s*\$?(?P<value>[0-9]{1,7}(?:\.[0-9]{1,6})?)", re.IGNORECASE
)
_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@]{1,189}\.[^\s@]{1,63}")
_NO_VALUE = frozenset({"none", "off", "unlimited", "null", "clear"})
# Invisible characters that would make a key's name print differently from what it is.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _show(value: str) -> str:
    """User input for an error message: keys redacted, kept short."""
    safe = key_shapes.redact(value)
    return repr(safe if len(safe) <= 40 else safe[:37] + "...")


# --- tokens and flags ----------------------------------------------------------------------


def _tokens(command: str, text: str) -> list[str]:
    try:
        words = shlex.split(text.translate(_SMART_QUOTES))
    except ValueError:
        raise OpenClawUsageError(command, "unbalanced quotes") from None
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


def _flag(token: str) -> re.Match[str] | None:
    return _FLAG.fullmatch(token) if token.startswith("-") else None


def _split(
    command: str, words: list[str], spec: dict[str, bool], max_positionals: int = 0
) -> _Args:
    """Split words into positionals and options; `spec` says which options take a value."""
    args = _Args()
    i = 0
    while i < len(words):
        word = words[i]
        m = _flag(word)
        if m is None:
            args.positionals.append(word)
            i += 1
            continue
        name = m.group("name").lower()
        if name not in spec:
            allowed = ", ".join(f"--{n}" for n in spec) or "none"
            raise OpenClawUsageError(command, f"unknown option {_show(word)}; options: {allowed}")
        value = m.group("value")
        if spec[name]:
            if value is None and i + 1 < len(words) and not words[i + 1].startswith("--"):
                i += 1
                value = words[i]
            if not value:
                raise OpenClawUsageError(command, f"--{name} needs a value")
            args.flags[name] = value
        else:
            if value is not None:
                raise OpenClawUsageError(command, f"--{name} takes no value")
            args.flags[name] = True
        i += 1
    if len(args.positionals) > max_positionals:
        extra = args.positionals[max_positionals]
        raise OpenClawUsageError(command, f"unexpected argument {_show(extra)}")
    return args


# --- values --------------------------------------------------------------------------------


def _money(command: str, flag: str, raw: str, minimum: Decimal) -> Decimal:
    text = raw.strip().replace(",", "")
    accepted = f"${minimum:.2f} to ${MAX_USD:,.2f}"
    if text.startswith(("-", "$-")):
        raise OpenClawUsageError(command, f"--{flag} must be {accepted}, not negative")
    m = _MONEY.fullmatch(text)
    if m is None:
        raise OpenClawUsageError(
            command,
            f"--{flag} must be an amount in USD such as 25 or 14.50, {accepted} (got {_show(raw)})",
        )
    if len(m.group("cents") or "") > 2:
        raise OpenClawUsageError(
            command, f"--{flag} has at most 2 decimals (whole cents) (got {_show(raw)})"
        )
    # The length check keeps Decimal away from absurd digit strings.
    if len(m.group("units").lstrip("0")) > 7:
        raise OpenClawUsageError(command, f"--{flag} must be {accepted} (got {_show(raw)})")
    amount = Decimal(f"{m.group('units')}.{m.group('cents') or '0'}")
    if not minimum <= amount <= MAX_USD:
        raise OpenClawUsageError(command, f"--{flag} must be {accepted} (got ${amount:.2f})")
    return amount


def _int(command: str, flag: str, raw: str, low: int, high: int) -> int:
    # ASCII digits only: isdecimal() also accepts "٣" and "５", which nobody means here.
    digits = raw.isascii() and raw.isdigit()
    if not digits or len(raw.lstrip("0")) > 7 or not low <= int(raw) <= high:
        raise OpenClawUsageError(
            command, f"--{flag} must be a whole number {low}-{high} (got {_show(raw)})"
        )
    return int(raw)


def _choice(command: str, flag: str, raw: str, allowed: tuple[_S, ...]) -> _S:
    lowered = raw.lower().replace("-", "_") if flag == "type" else raw.lower()
    for option in allowed:
        if option == lowered:
            return option
    raise OpenClawUsageError(
        command, f"--{flag} must be one of {', '.join(allowed)} (got {_show(raw)})"
    )


def _hash(command: str, args: _Args) -> str:
    if not args.positionals:
        raise OpenClawUsageError(command, "missing the key's <hash> (see `keys list`)")
    raw = args.positionals[0]
    if key_shapes.contains_key(raw):
        raise OpenClawUsageError(
            command, "give the key's 16-character hash (see `keys list`), never the key itself"
        )
    if not _HASH.fullmatch(raw):
        raise OpenClawUsageError(command, f"a key hash is 16 hex characters (got {_show(raw)})")
    return raw.lower()


def _expires(command: str, raw: str, now: datetime) -> str:
    """`raw` as an ISO UTC time; it must lie after `now` (a key born expired is useless)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            # A bare date means "valid through that day" (UTC).
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            # Overflows for times whose UTC form leaves years 1-9999 (9999-12-31T23:59-12:00).
            moment = moment.astimezone(UTC)
    except ValueError:
        raise OpenClawUsageError(
            command,
            "--expires must be a date (YYYY-MM-DD) or an ISO time such as "
            f"2027-01-31T18:00:00+01:00 (got {_show(raw)})",
        ) from None
    except OverflowError:
        raise OpenClawUsageError(
            command, f"--expires must be between now and {LATEST_EXPIRY} (got {_show(raw)})"
        ) from None
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if moment <= now:
        raise OpenClawUsageError(
            command,
            f"--expires {stamp} is already past, so the key would be born expired; "
            f"give a time between now and {LATEST_EXPIRY}",
        )
    return stamp


def _filter(command: str, raw: str) -> KeyFilter:
    lowered = raw.strip().lower()
    if lowered in ("active", "disabled"):
        return KeyFilter(kind=cast(Any, lowered))
    m = _USAGE_FILTER.fullmatch(lowered)
    if m is None:
        raise OpenClawUsageError(
            command, f"--filter must be active, disabled, usage>N or usage<=N (got {_show(raw)})"
        )
    op = "=" if m.group("op") == "==" else m.group("op")
    return KeyFilter(kind="usage", op=cast(Any, op), value=Decimal(m.group("value")))


def _sort(command: str, raw: str) -> KeySort:
    descending = raw.startswith("-")
    name = SORT_FIELDS.get(raw.lstrip("-").lower())
    if name is None:
        raise OpenClawUsageError(
            command, f"--sort must be one of name, usage, created, limit, hash (got {_show(raw)})"
        )
    return KeySort(field=cast(Any, name), descending=descending)


def _name(command: str, raw: str) -> str:
    name = " ".join(raw.split())
    if not name or len(name) > 64:
        raise OpenClawUsageError(command, f"--name must be 1-64 characters (got {len(name):,})")
    if _UNSAFE_NAME.search(name):
        raise OpenClawUsageError(
            command, "--name must not contain control or text-direction characters"
        )
    if key_shapes.contains_key(name):
        raise OpenClawUsageError(command, "--name must not contain a key")
    return name


def _limit_reset(command: str, raw: str) -> LimitReset:
    return _choice(command, "limit-reset", raw, LIMIT_RESETS)


# --- subcommands ---------------------------------------------------------------------------

Builder = Callable[[str, list[str]], BaseModel]


def _auth_login(command: str, words: list[str]) -> BaseModel:
    use_email, hint = False, ""
    i = 0
    while i < len(words):
        m = _flag(words[i])
        if m is None:
            return PasswordInChat()  # "auth login me@x.com hunter2": never read, never echoed
        name = m.group("name").lower()
        if name == "email":
            use_email = True
            value = m.group("value")
            if value is None and i + 1 < len(words) and _EMAIL.fullmatch(words[i + 1]):
                i += 1
                value = words[i]
            if value is not None:
                if not _EMAIL.fullmatch(value):
                    return PasswordInChat()
                hint = value
        elif name != "github":
            raise OpenClawUsageError(
                command, f"unknown option {_show(words[i])}; options: --email, --github"
            )
        i += 1
    return AuthLogin(email=use_email, email_hint=hint)


def _auth_register(command: str, words: list[str]) -> BaseModel:
    if words:
        return PasswordInChat()
    return AuthRegister()


def _no_args(model: type[BaseModel]) -> Builder:
    def build(command: str, words: list[str]) -> BaseModel:
        _split(command, words, {})
        return model()

    return build


def _yes(model: type[BaseModel], *, with_hash: bool) -> Builder:
    def build(command: str, words: list[str]) -> BaseModel:
        args = _split(command, words, {"yes": False}, 1 if with_hash else 0)
        extra: dict[str, Any] = {"hash": _hash(command, args)} if with_hash else {}
        return model(yes=args.has("yes"), **extra)

    return build


def _credits_buy(command: str, words: list[str]) -> BaseModel:
    args = _split(command, words, {"amount": True}, 1)
    raw = args.value("amount") or (args.positionals[0] if args.positionals else None)
    if raw is None:
        raise OpenClawUsageError(command, f"missing --amount (USD, at least ${MIN_PURCHASE:.2f})")
    amount = _money(command, "amount", raw, Decimal(0))
    if amount < MIN_PURCHASE:
        raise OpenClawUsageError(
            command, f"the minimum purchase is ${MIN_PURCHASE:.2f} (got ${amount:.2f})"
        )
    return CreditsBuy(amount=amount)


def _credits_history(command: str, words: list[str]) -> BaseModel:
    args = _split(command, words, {"limit": True, "offset": True, "type": True})
    limit = _int(command, "limit", args.value("limit") or "20", 1, 100)
    offset = _int(command, "offset", args.value("offset") or "0", 0, 1_000_000)
    raw_type = args.value("type")
    kind = _choice(command, "type", raw_type, HISTORY_TYPES) if raw_type else None
    return CreditsHistory(limit=limit, offset=offset, type=kind)


def _credits_auto_topup(command: str, words: list[str]) -> BaseModel:
    args = _split(
        command, words, {"enable": False, "disable": False, "threshold": True, "amount": True}
    )
    if args.has("enable") and args.has("disable"):
        raise OpenClawUsageError(command, "give --enable or --disable, not both")
    threshold = args.value("threshold")
    amount = args.value("amount")
    if (threshold or amount) and not args.has("enable"):
        raise OpenClawUsageError(command, "--threshold and --amount go with --enable")
    action = "enable" if args.has("enable") else "disable" if args.has("disable") else "show"
    return CreditsAutoTopup(
        action=action,
        threshold=_money(command, "threshold", threshold, Decimal(1)) if threshold else None,
        amount=_money(command, "amount", amount, MIN_PURCHASE) if amount else None,
    )


def _keys_create(command: str, words: list[str], now: datetime) -> BaseModel:
    args = _split(
        command, words, {"name": True, "limit": True, "limit-reset": True, "expires": True}
    )
    raw_name = args.value("name")
    if raw_name is None:
        raise OpenClawUsageError(command, "missing --name")
    limit, reset, expires = args.value("limit"), args.value("limit-reset"), args.value("expires")
    return KeysCreate(
        name=_name(command, raw_name),
        credit_limit=_money(command, "limit", limit, Decimal("0.01")) if limit else None,
        limit_reset=_limit_reset(command, reset) if reset else None,
        expires_at=_expires(command, expires, now) if expires else None,
    )


def _keys_list(command: str, words: list[str]) -> BaseModel:
    args = _split(command, words, {"filter": True, "sort": True, "include-revoked": False})
    raw_filter, raw_sort = args.value("filter"), args.value("sort")
    return KeysList(
        filter=_filter(command, raw_filter) if raw_filter else None,
        sort=_sort(command, raw_sort) if raw_sort else None,
        include_revoked=args.has("include-revoked"),
    )


def _keys_info(command: str, words: list[str]) -> BaseModel:
    return KeysInfo(hash=_hash(command, _split(command, words, {}, 1)))


def _keys_update(command: str, words: list[str]) -> BaseModel:
    args = _split(
        command,
        words,
        {"limit": True, "limit-reset": True, "disabled": False, "enabled": False},
        1,
    )
    key = _hash(command, args)
    if args.has("disabled") and args.has("enabled"):
        raise OpenClawUsageError(command, "give --disabled or --enabled, not both")
    fields: dict[str, Any] = {}
    limit = args.value("limit")
    if limit is not None:
        fields["set_limit"] = True
        if limit.lower() not in _NO_VALUE:
            fields["credit_limit"] = _money(command, "limit", limit, Decimal("0.01"))
    reset = args.value("limit-reset")
    if reset is not None:
        fields["set_reset"] = True
        if reset.lower() not in _NO_VALUE:
            fields["limit_reset"] = _limit_reset(command, reset)
    if args.has("disabled") or args.has("enabled"):
        fields["disabled"] = args.has("disabled")
    if not fields:
        raise OpenClawUsageError(
            command, "nothing to change: give --limit, --limit-reset, --disabled or --enabled"
        )
    return KeysUpdate(hash=key, **fields)


def _keys_usage(command: str, words: list[str]) -> BaseModel:
    args = _split(command, words, {"watch": False, "interval": True}, 1)
    key = _hash(command, args)
    interval = args.value("interval")
    return KeysUsage(
        hash=key,
        # --interval alone clearly means "watch it".
        watch=args.has("watch") or interval is not None,
        interval=_int(command, "interval", interval, 1, MAX_INTERVAL_S) if interval else 5,
    )


def _integrate(command: str, words: list[str]) -> BaseModel:
    args = _split(
        command,
        words,
        {"status": False, "remove": False, "name": True, "limit": True, "limit-reset": True},
        1,
    )
    modes = [m for m in ("status", "remove") if args.has(m)]
    options = [o for o in ("name", "limit", "limit-reset") if args.has(o)]
    if len(modes) > 1:
        raise OpenClawUsageError(command, "give --status or --remove, not both")
    if modes and (options or args.positionals):
        raise OpenClawUsageError(command, f"--{modes[0]} takes no other arguments")
    if modes:
        return Integrate(action=cast(Any, modes[0]))
    key = _hash(command, args) if args.positionals else None
    if key and options:
        raise OpenClawUsageError(
            command, "with an existing key's <hash>, --name/--limit/--limit-reset don't apply"
        )
    limit, reset, name = args.value("limit"), args.value("limit-reset"), args.value("name")
    return Integrate(
        action="set",
        hash=key,
        name=_name(command, name) if name else "tokenbot-fallback",
        credit_limit=_money(command, "limit", limit, Decimal("0.01")) if limit else None,
        limit_reset=_limit_reset(command, reset) if reset else None,
    )


def _audit_show(command: str, words: list[str]) -> BaseModel:
    args = _split(command, words, {"limit": True, "all": False})
    raw = args.value("limit")
    return AuditShow(
        limit=_int(command, "limit", raw, 1, MAX_AUDIT) if raw else 20, everyone=args.has("all")
    )


_BUILDERS: dict[str, Builder] = {
    "auth login": _auth_login,
    "auth register": _auth_register,
    "auth whoami": _no_args(AuthWhoami),
    "auth rotate": _yes(AuthRotate, with_hash=False),
    "auth logout": _no_args(AuthLogout),
    "credits balance": _no_args(CreditsBalance),
    "credits buy": _credits_buy,
    "credits history": _credits_history,
    "credits auto-topup": _credits_auto_topup,
    "keys list": _keys_list,
    "keys info": _keys_info,
    "keys update": _keys_update,
    "keys rotate": _yes(KeysRotate, with_hash=True),
    "keys revoke": _yes(KeysRevoke, with_hash=True),
    "keys revoke-all": _yes(KeysRevokeAll, with_hash=False),
    "keys usage": _keys_usage,
    "integrate": _integrate,
    "audit show": _audit_show,
}


# --- dispatch ------------------------------------------------------------------------------


def _build(command: str, words: list[str], now: datetime) -> BaseModel:
    if command == "keys create":
        return _keys_create(command, words, now)  # the one builder that needs the clock
    return _BUILDERS[command](command, words)


def _command(text: str, ctx: RouterContext | None) -> BaseModel:
    """Arguments after `/openclaw-token` -> a command (help when empty)."""
    words = _tokens("", scrub_surrogates(text))
    as_json = "--json" in words
    wants_help = any(w in ("--help", "-h") for w in words)
    words = [w for w in words if w not in ("--json", "--help", "-h")]
    if not words:
        return OpenClawHelp()
    group = words[0].lower()
    if group == "help":
        topic = words[1].lower() if len(words) > 1 else None
        return OpenClawHelp(topic=topic if topic in GROUPS else None)
    if group not in GROUPS:
        raise OpenClawUsageError(
            "", f"unknown command {_show(words[0])}; use one of {', '.join(GROUPS)}"
        )
    if group == "auth" and any(
        (m := _flag(w)) is not None and m.group("name").lower() in _PASSWORD_FLAGS for w in words
    ):
        return PasswordInChat()
    if group == "integrate":
        command, rest = "integrate", words[1:]
    else:
        subs = SUBCOMMANDS[group]
        sub = words[1].lower() if len(words) > 1 else ""
        if not sub and group == "audit":
            sub = "show"
        if not sub and wants_help:
            return OpenClawHelp(topic=group)
        if sub not in subs:
            shown = f"unknown subcommand {_show(words[1])}" if sub else "missing subcommand"
            raise OpenClawUsageError(group, f"{shown}; use one of {', '.join(subs)}")
        command, rest = f"{group} {sub}", words[2:]
    if wants_help:
        return OpenClawHelp(topic=group)
    try:
        model = _build(command, rest, (ctx or DEFAULT_CONTEXT).now())
    except ValidationError as exc:
        # Defensive: the builders validate first, so this is a gap in them; still bad input.
        raise OpenClawUsageError(
            command, f"invalid arguments ({exc.error_count()} problem(s))"
        ) from None
    if as_json and "as_json" in type(model).model_fields:
        model = model.model_copy(update={"as_json": True})
    return model


def parse(text: str, ctx: RouterContext | None = None) -> BaseModel | None:
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


def parse_slash(name: str, text: str, ctx: RouterContext | None = None) -> BaseModel | None:
    """A platform slash command; None unless it is `/openclaw-token`."""
    if name.strip().lstrip("/").lower() != SLASH_NAME.lstrip("/"):
        return None
    return _command(text or "", ctx)
