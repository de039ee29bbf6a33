"""Option values -> checked values for `/openclaw-token`: what the text grammar and typed options share.

Each check names the flag in its message; `grammar.py` calls them for words it read from text and
for a platform's typed values alike, so a value is checked the same way however it came.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from bot.backends.openclaw_token.service import LimitReset
from bot.backends.openclaw_token.spec import LIMIT_RESETS, KeyFilter, KeySort, usage_error
from bot.core import key_shapes
from bot.core.grammar import show_input

_S = TypeVar("_S", bound=str)
_show = show_input

SORT_FIELDS = {
    "name": "name",
    "usage": "usage",
    "created": "created",
    "created_at": "created",
    "limit": "limit",
    "credit_limit": "limit",
    "hash": "hash",
}
MAX_USD = Decimal("9999999.99")
LATEST_EXPIRY = "9999-12-31T23:59:59Z"
_HASH = re.compile(r"[0-9a-fA-F]{16}")
_MONEY = re.compile(r"\$?(?P<units>[0-9]+)(?:\.(?P<cents>[0-9]*))?")
_USAGE_FILTER = re.compile(
    r"usage\s*(?P<op>>=|<=|>|<|==?)\s*\$?(?P<value>[0-9]{1,7}(?:\.[0-9]{1,6})?)", re.IGNORECASE
)

# Invisible characters that would make a key's name print differently from what it is.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def money(command: str, flag: str, raw: str, minimum: Decimal) -> Decimal:
    """A USD amount in whole cents, from `minimum` to MAX_USD."""
    text = raw.strip().replace(",", "")
    accepted = f"${minimum:.2f} to ${MAX_USD:,.2f}"
    if text.startswith(("-", "$-")):
        raise usage_error(command, f"--{flag} must be {accepted}, not negative")
    m = _MONEY.fullmatch(text)
    if m is None:
        raise usage_error(
            command,
            f"--{flag} must be an amount in USD such as 25 or 14.50, {accepted} (got {_show(raw)})",
        )
    if len(m.group("cents") or "") > 2:
        raise usage_error(
            command, f"--{flag} has at most 2 decimals (whole cents) (got {_show(raw)})"
        )
    # The length check keeps Decimal away from absurd digit strings.
    if len(m.group("units").lstrip("0")) > 7:
        raise usage_error(command, f"--{flag} must be {accepted} (got {_show(raw)})")
    amount = Decimal(f"{m.group('units')}.{m.group('cents') or '0'}")
    if not minimum <= amount <= MAX_USD:
        raise usage_error(command, f"--{flag} must be {accepted} (got ${amount:.2f})")
    return amount


def whole_number(command: str, flag: str, raw: str, low: int, high: int) -> int:
    """A whole number `low`-`high`, in ASCII digits."""
    # ASCII digits only: isdecimal() also accepts "٣" and "５", which nobody means here.
    digits = raw.isascii() and raw.isdigit()
    if not digits or len(raw.lstrip("0")) > 7 or not low <= int(raw) <= high:
        raise usage_error(
            command, f"--{flag} must be a whole number {low}-{high} (got {_show(raw)})"
        )
    return int(raw)


def choice(command: str, flag: str, raw: str, allowed: tuple[_S, ...]) -> _S:
    """One of `allowed`, any case (and "-" for "_" in --type)."""
    lowered = raw.lower().replace("-", "_") if flag == "type" else raw.lower()
    for option in allowed:
        if option == lowered:
            return option
    raise usage_error(command, f"--{flag} must be one of {', '.join(allowed)} (got {_show(raw)})")


def key_hash(command: str, positionals: list[str]) -> str:
    """The key hash that `positionals` starts with: 16 hex characters, never a key."""
    if not positionals:
        raise usage_error(command, "missing the key's <hash> (see `keys list`)")
    raw = positionals[0]
    if key_shapes.contains_key(raw):
        raise usage_error(
            command, "give the key's 16-character hash (see `keys list`), never the key itself"
        )
    if not _HASH.fullmatch(raw):
        raise usage_error(command, f"a key hash is 16 hex characters (got {_show(raw)})")
    return raw.lower()


def expires(command: str, raw: str, now: datetime) -> str:
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
        raise usage_error(
            command,
            "--expires must be a date (YYYY-MM-DD) or an ISO time such as "
            f"2027-01-31T18:00:00+01:00 (got {_show(raw)})",
        ) from None
    except OverflowError:
        raise usage_error(
            command, f"--expires must be between now and {LATEST_EXPIRY} (got {_show(raw)})"
        ) from None
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if moment <= now:
        raise usage_error(
            command,
            f"--expires {stamp} is already past, so the key would be born expired; "
            f"give a time between now and {LATEST_EXPIRY}",
        )
    return stamp


def key_filter(command: str, raw: str) -> KeyFilter:
    """`active`, `disabled` or `usage<op>N`."""
    lowered = raw.strip().lower()
    if lowered in ("active", "disabled"):
        return KeyFilter(kind=cast(Any, lowered))
    m = _USAGE_FILTER.fullmatch(lowered)
    if m is None:
        raise usage_error(
            command, f"--filter must be active, disabled, usage>N or usage<=N (got {_show(raw)})"
        )
    op = "=" if m.group("op") == "==" else m.group("op")
    return KeyFilter(kind="usage", op=cast(Any, op), value=Decimal(m.group("value")))


def key_sort(command: str, raw: str) -> KeySort:
    """A sort field, descending when written `-field`."""
    descending = raw.startswith("-")
    name = SORT_FIELDS.get(raw.lstrip("-").lower())
    if name is None:
        raise usage_error(
            command, f"--sort must be one of name, usage, created, limit, hash (got {_show(raw)})"
        )
    return KeySort(field=cast(Any, name), descending=descending)


def key_name(command: str, raw: str) -> str:
    """A key name: 1-64 printable characters, no key in it."""
    name = " ".join(raw.split())
    if not name or len(name) > 64:
        raise usage_error(command, f"--name must be 1-64 characters (got {len(name):,})")
    if _UNSAFE_NAME.search(name):
        raise usage_error(command, "--name must not contain control or text-direction characters")
    if key_shapes.contains_key(name):
        raise usage_error(command, "--name must not contain a key")
    return name


def limit_reset(command: str, raw: str) -> LimitReset:
    """daily, weekly or monthly."""
    return choice(command, "limit-reset", raw, LIMIT_RESETS)
