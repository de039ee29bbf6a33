"""What every family's grammar shares: the conversation state, the usage error, the flag syntax.

One flag syntax for every command: `--name=value`, `--name value` and `--flag`. Odd spellings
that chat clients produce (zero-width characters, an em dash for "--", a fullwidth "＝") are
normalised first (`normalise_flag_token`). A single-dash spelling of a command's own option
("-type=image", "-limit 5") is a usage error that suggests the double-dash form, in every
family: silently reading it as prose (or as the option) would guess at what was meant.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from bot.core import key_shapes

__all__ = [
    "Flag",
    "FlagScan",
    "ParseState",
    "UsageError",
    "normalise_flag_token",
    "normalise_flags",
    "read_flag",
    "reject_single_dash",
    "scan_flags",
    "show_input",
    "single_dash_name",
    "split_flag_text",
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ParseState:
    """What a parser may know beyond the text: which family this conversation used last, the clock."""

    conversation_key: str = ""
    # The family whose command the bot ran last in this conversation ("how much did that cost").
    recent_family: str | None = None
    # The clock for checks such as "that expiry date is already past"; tests pin it.
    now: Callable[[], datetime] = field(default=_utc_now)


class UsageError(ValueError):
    """Bad input for a recognised command: which command, what is wrong, and its usage line.

    `command` is the name audit rows and metrics use ("image", "openmarlin.topup",
    "openclaw-token credits buy"); `usage` comes from that command's spec.
    """

    def __init__(self, command: str, problem: str, usage: str = "") -> None:
        self.command = command
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem} — usage: {usage}")


def show_input(value: str) -> str:
    """User input quoted for an error message: keys redacted first, then kept short."""
    safe = key_shapes.redact(value)
    return repr(safe if len(safe) <= 40 else safe[:37] + "...")


# --- spelling ---------------------------------------------------------------------------------
# Chat clients slip invisible characters into "--size=auto" (a zero-width space pasted along),
# autocorrect turns "--" into an em dash and CJK keyboards type a fullwidth "＝"; unmatched,
# each would silently move the flag into the prompt.

_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff"
_ZERO_WIDTH = re.compile(f"[{_ZERO_WIDTH_CHARS}]")
# What a flag can start with once zero-width characters are gone: "-", an en or em dash, or the
# fullwidth hyphen-minus (NFKC makes it "-").
_FLAG_STARTS = frozenset("-\u2013\u2014\uff0d")
_MAYBE_FLAG_FIRST = _FLAG_STARTS | frozenset(_ZERO_WIDTH_CHARS)
_FLAG_EQUALS = re.compile("[=\uff1d]")
_FLAG_HEAD = re.compile(r"(?P<dash>--|[\u2013\u2014])(?P<name>[A-Za-z][A-Za-z0-9_-]*)")
_NON_SPACE = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")
# Sentence punctuation right after a bare flag ("make it --sync.") is not part of its name.
_FLAG = re.compile(r"--(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=(?P<value>.*)|[.,;:!?…]*)", re.DOTALL)
_SINGLE_DASH = re.compile(r"-(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=.*)?", re.DOTALL)


def normalise_flag_token(token: str, known: Collection[str] | None = None) -> str:
    """`token` spelled as a plain flag ("--size=auto") when it is one, else unchanged.

    Zero-width characters around the name go, the name and "=" are NFKC-normalised, and an em
    or en dash counts as "--" when the name is in `known` (any name when `known` is None).
    """
    if token.lstrip(_ZERO_WIDTH_CHARS)[:1] not in _FLAG_STARTS:
        return token  # the common case: a plain word
    if token.isascii():
        # ASCII has no zero-width characters, no fullwidth "=" and nothing NFKC changes.
        at = token.find("=")
        m = _FLAG_HEAD.fullmatch(token if at < 0 else token[:at])
        # An ASCII dash is "--": `known` does not matter.
        if m is None or at < 0:
            return token if m is None else "--" + m.group("name")
        return f"--{m.group('name')}={token[at + 1 :]}"
    sep = _FLAG_EQUALS.search(token)
    head = token[: sep.start()] if sep else token
    m = _FLAG_HEAD.fullmatch(unicodedata.normalize("NFKC", _ZERO_WIDTH.sub("", head)))
    if m is None:
        return token
    name = m.group("name")
    if m.group("dash") != "--" and known is not None and name.lower() not in known:
        return token  # "—this" in prose is not an option
    if sep is None:
        return "--" + name
    return f"--{name}={token[sep.end() :].strip(_ZERO_WIDTH_CHARS)}"


def normalise_flags(text: str, known: Collection[str] | None = None) -> str:
    """`text` with every flag-shaped word normalised by `normalise_flag_token`."""
    return _NON_SPACE.sub(lambda m: normalise_flag_token(m.group(), known), text)


# --- reading flags ----------------------------------------------------------------------------


class Flag(NamedTuple):
    """One `--name` or `--name=value` token; the name lower-cased."""

    # A named tuple, not a frozen dataclass: one is built per option read, and a frozen
    # dataclass's __init__ cost a microsecond of each command's parse.
    name: str
    value: str | None


def read_flag(token: str) -> Flag | None:
    """`token` (already normalised) as a flag, or None when it is not `--name[=value]`."""
    if not token.startswith("--"):
        return None
    m = _FLAG.fullmatch(token)
    return Flag(m.group("name").lower(), m.group("value")) if m else None


def single_dash_name(token: str, options: Collection[str]) -> str | None:
    """The option a single-dash token spells ("-type=image" -> "type") when it is one of `options`."""
    if token[:1] != "-" or token.startswith("--"):
        return None
    m = _SINGLE_DASH.fullmatch(token)
    if m is None or m.group("name").lower() not in options:
        return None
    return m.group("name").lower()


def reject_single_dash(command: str, token: str, options: Collection[str], usage: str) -> None:
    """Raise a usage error suggesting "--x" when `token` is "-x" or "-x=…" for an option `x`."""
    if single_dash_name(token, options) is not None:
        raise UsageError(
            command, f"did you mean {show_input('-' + token)}? options take two dashes", usage
        )


@dataclass(slots=True)
class FlagScan:
    """What `scan_flags` found: the options given, and which tokens were words, not options."""

    flags: dict[str, str | bool] = field(default_factory=dict)
    # Indices of the tokens that are not options (nor an option's value), in order.
    positionals: list[int] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        """The value of a valued option, if given."""
        found = self.flags.get(name)
        return found if isinstance(found, str) else None

    def has(self, name: str) -> bool:
        """Whether the option was given at all."""
        return name in self.flags


def _options_hint(options: Mapping[str, bool]) -> str:
    if not options:
        return "this command takes no options"
    return "use " + ", ".join(f"--{n}" for n in options)


def _known_flag(token: str, options: Mapping[str, bool]) -> Flag | None:
    """ "--name" or "--name=value" (from "--") for an option in `options`, read with string
    methods; None sends the token to `read_flag` (any other spelling, or not an option)."""
    name, equals, value = token[2:].partition("=")
    lowered = name.lower()
    # ASCII, since a non-ASCII letter can lower-case to an ASCII one (the Kelvin sign to "k");
    # option names have the shape read_flag's pattern requires (a test holds every spec to it).
    if lowered in options and name.isascii():
        return Flag(lowered, value if equals else None)
    return None


def scan_flags(
    command: str, tokens: list[str], options: Mapping[str, bool], usage: str
) -> FlagScan:
    """Read `--name=value` / `--name value` / `--flag` options out of normalised tokens.

    `options` maps each option name to whether it takes a value. A repeated option takes its
    last value (as with argparse); a valued option without "=" takes the next token unless that
    starts with "--" (so "--sort -usage" and "--limit -5" reach their validators).
    """
    scan = FlagScan()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token[:1] != "-":
            # The common case, a plain word: neither "--name" nor a "-name" slip.
            scan.positionals.append(i)
            i += 1
            continue
        flag = _known_flag(token, options) if token[1:2] == "-" else None
        if flag is None:
            flag = read_flag(token)
        if flag is None:
            reject_single_dash(command, token, options, usage)
            scan.positionals.append(i)
            i += 1
            continue
        if flag.name not in options:
            raise UsageError(
                command,
                f"unknown option {show_input('--' + flag.name)}; {_options_hint(options)}",
                usage,
            )
        i += 1
        if not options[flag.name]:
            if flag.value is not None:
                raise UsageError(command, f"--{flag.name} takes no value", usage)
            scan.flags[flag.name] = True
            continue
        value = flag.value
        if value is None and i < len(tokens) and not tokens[i].startswith("--"):
            value = tokens[i]
            i += 1
        if not value:
            raise UsageError(command, f"--{flag.name} needs a value (--{flag.name}=VALUE)", usage)
        scan.flags[flag.name] = value
    return scan


def split_flag_text(
    command: str,
    text: str,
    options: Mapping[str, bool],
    usage: str,
    known: Collection[str] | None = None,
) -> tuple[str, dict[str, str | bool]]:
    """`text` without its options (its other spacing kept), and the options given.

    Words are split on whitespace and normalised against `known` (default: the options'
    names), so an em dash stands for "--" only before a name the command knows.
    """
    if text.isascii():
        if "-" not in text:
            # No word can be an option (nor a single-dash slip): every word is kept.
            return text.strip(), {}
        quick = _plain_options(text, options)
        if quick is not None:
            return quick
        # normalise_flag_token leaves every ASCII word as it is (a property test holds it to
        # that), so the words are the tokens.
        words = tokens = text.split()
    else:
        words = text.split()
        names = options.keys() if known is None else known
        # A word that starts with neither a dash nor a zero-width character is left as it is
        # by normalise_flag_token.
        tokens = [
            w if w[0] not in _MAYBE_FLAG_FIRST else normalise_flag_token(w, names) for w in words
        ]
    scan = scan_flags(command, tokens, options, usage)
    if len(scan.positionals) == len(tokens):
        return text.strip(), scan.flags
    return _without_words(text, words, set(scan.positionals)), scan.flags


# A word and the whitespace after it (both as str.split() and str.isspace() define them).
_WORD_AND_SPACE = re.compile(r"(\S+)\s*")


def _plain_options(
    text: str, options: Mapping[str, bool]
) -> tuple[str, dict[str, str | bool]] | None:
    """What split_flag_text answers for ASCII `text` whose every dash-led word is a plain
    "--option=value" or "--switch" of `options`; None for anything else (the general path).

    The common case, read with string methods and one anchored match per option: the general
    path walks every word through scan_flags (a property test holds the two to one answer).
    """
    flags: dict[str, str | bool] = {}
    parts: list[str] = []
    pos = 0  # where the text still to keep starts
    at = text.find("-")
    while at != -1:
        if at and not text[at - 1].isspace():
            at = text.find("-", at + 1)  # a hyphen inside a word ("state-of-the-art")
            continue
        word = _WORD_AND_SPACE.match(text, at)
        if word is None:  # pragma: no cover - text[at] is "-", so a word starts here
            return None
        token = word.group(1)
        if token[1:2] != "-":
            return None  # "-x": a single-dash slip or prose; the general path decides
        name, equals, value = token[2:].partition("=")
        name = name.lower()
        takes_value = options.get(name)
        if takes_value is None or (equals and not value) or bool(equals) != takes_value:
            return None  # not an option, "--size=", "--size 1024" or "--switch=x"
        flags[name] = value if equals else True
        parts.append(text[pos:at])
        pos = word.end()
        at = text.find("-", pos)
    if not flags:
        return text.strip(), flags
    parts.append(text[pos:])
    return "".join(parts).strip(), flags


def _without_words(text: str, words: list[str], kept: set[int]) -> str:
    """`text` without the words (from `text.split()`) whose index is not in `kept`; each goes
    with the whitespace after it, so no double spaces remain where it stood."""
    parts: list[str] = []
    pos = 0  # where the text still to keep starts
    at = 0  # where the next word is looked for
    last_kept = max(kept, default=-1)
    for index, word in enumerate(words):
        # The next word starts at the first non-space character from `at`, and no occurrence
        # of it can start earlier (it does not start with a space): find() lands on it.
        start = text.find(word, at)
        if index > last_kept:
            # Every word from here on goes (options at the end: the usual case).
            parts.append(text[pos:start])
            return "".join(parts).strip()
        at = start + len(word)
        if index in kept:
            continue
        parts.append(text[pos:start])
        space = _SPACE.match(text, at)
        pos = space.end() if space else at
    parts.append(text[pos:])
    return "".join(parts).strip()
