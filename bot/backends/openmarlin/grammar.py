"""Text -> OpenMarlin command: "use openmarlin …" anywhere in a message, and `/openmarlin <text>`.

Seed-style phrasings around the bare name reach the same free subcommands ("top up OpenMarlin
3", "OpenMarlin top up 3", "show my OpenMarlin status"), never a paid free-form run.

Pure and synchronous. `parse` returns None when the message is not for OpenMarlin, raises
a UsageError for a recognised command with bad input, and otherwise returns a command.
Free-form requests go to `/v1/tasks` when they speak of video, rendering, long-running,
background or async work (unless the user asks for it synchronously), else to `/v1/executions`.

Free-form requests are paid, so a request whose first word is a subcommand word ("balance",
"status", "models", "key", "task", …) is that subcommand: "balance please" is the balance and
"status report of Q3" is a usage error. Only a leading "to" ("use openmarlin to status report
…") makes such a request an instruction; exact subcommand phrasings stay subcommands anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from bot.backends.openmarlin.arguments import (
    FROM_VALUES,
    Values,
    free_form_of,
    key_command,
    task_status,
    topup,
)
from bot.backends.openmarlin.spec import (
    FAMILY,
    UMBRELLA,
    USAGE,
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OpenMarlinCommand,
    usage_error,
)
from bot.core.command_spec import CommandSpec
from bot.core.grammar import (
    ParseState,
    UsageError,
    normalise_flags,
    show_input,
    split_flag_text,
)
from bot.core.outbound_text import scrub_surrogates

__all__ = ["parse", "parse_options", "parse_slash"]

DEFAULT_STATE = ParseState()
_show = show_input


# "use openmarlin …", "ask openmarlin …", "/openmarlin …", and the seed's "register OpenMarlin",
# "check OpenMarlin balance". Not "/openmarlin" inside a URL path, not "myopenmarlin".
_TRIGGER = re.compile(
    r"(?P<slash>(?<![\w/.-])/openmarlin(?![\w-]))"
    r"|(?P<use>(?<![\w-])(?:use|ask)\s+openmarlin(?:'s|’s)?(?![\w-]))"
    r"|(?P<register>(?<![\w-])register\s+(?:(?:with|on|for|at)\s+)?openmarlin(?![\w-]))"
    r"|(?P<balance>(?<![\w-])check\s+(?:my\s+)?openmarlin(?:'s|’s)?\s+balance(?![\w-]))",
    re.IGNORECASE,
)
_SLASH_NAME = re.compile(r"/?openmarlin", re.IGNORECASE)

# What opens a request: separators, politeness, and the optional "to" that marks an instruction.
_OPENING = re.compile(
    r"(?:\s|[:,;]|[—–-](?=\s))*(?:(?:and|please)\s+)*(?:(?P<to>to)(?:\s+|$)(?:please\s+)*)?",
    re.IGNORECASE,
)
_TRAILING_CHARS = "?!.,;:…"

# Politeness at the end of a subcommand is not an argument ("balance please", "status now").
_FILLER_END = re.compile(
    r"(?<!\S)(?:please|pls|plz|thanks|thank\s+you|thx|ty|now|asap)$", re.IGNORECASE
)

# Flag names an em/en dash may stand in for ("—sync" typed by autocorrect).
_FLAG_NAMES = frozenset(
    {
        "model",
        "provider",
        "label",
        "labels",
        "duration",
        "aspect-ratio",
        "aspect_ratio",
        "aspectratio",
        "aspect",
        "ratio",
        "sync",
        "async",
        "task",
        "browser",
        "callback",
    }
)


# Intents: the whole remaining text must match (after trailing punctuation is dropped), so
# "use openmarlin to check the balance sheet of ACME" stays a free-form request.
_REGISTER = re.compile(
    r"(?:register|sign[\s-]?up|sign[\s-]?in|log[\s-]?in)"
    r"(?:\s+(?:me|an?\s+account|my\s+account|with\s+openmarlin))?"
    r"(?:\s+(?P<browser>(?:(?:with|via|using)\s+(?:the\s+)?)?(?:browser(?:\s+callback)?|callback)"
    r"|--browser|--callback))?",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"(?:(?:show|check|get)\s+)?(?:my\s+)?(?:registration|key|account|api\s+key)?\s*status",
    re.IGNORECASE,
)
_MODELS = re.compile(
    r"(?:(?:list|show|get)\s+)?(?:the\s+|my\s+)?(?:available\s+)?models"
    r"(?:\s+(?P<filter>[^\s]+))?"
    r"|what\s+models\s+are\s+(?:available|there)",
    re.IGNORECASE,
)
_BALANCE = re.compile(
    r"(?:(?:check|show|get|what(?:'s|\s+is))\s+)?(?:my\s+|the\s+)?(?:workspace\s+)?balance",
    re.IGNORECASE,
)
_ACTIVITY = re.compile(
    r"(?:(?:show|check|get)\s+)?(?:my\s+)?(?:recent\s+)?(?:billing\s+)?"
    r"(?:activity|usage|ledger)",
    re.IGNORECASE,
)
_TOPUP = re.compile(r"top[\s-]?up\b(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_REFERRAL = re.compile(
    r"(?:(?:get|show)\s+)?(?:my\s+|a\s+)?(?:referral|invite)(?:\s+(?:link|code))?",
    re.IGNORECASE,
)
_TASK_STATUS = re.compile(
    r"(?:task[\s-]+status|status\s+of\s+task|watch\s+task)\b(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)
_KEY = re.compile(
    r"key(?:\s+(?P<action>set|add|remove|delete|forget|status|show|check)\b(?P<rest>.*))?",
    re.IGNORECASE | re.DOTALL,
)
_HELP = re.compile(r"help|\?|usage|commands", re.IGNORECASE)


# Routing hints, in words or as flags.
_MODEL_PHRASE = re.compile(r"\bwith\s+(?:the\s+)?model\s*(?P<v>[^\s]+)", re.IGNORECASE)
_PROVIDER_PHRASE = re.compile(
    r"\b(?:on|using|via|with)\s+(?:the\s+)?provider\s*(?P<v>[^\s]+)",
    re.IGNORECASE,
)
_LABELS_PHRASE = re.compile(
    r"\bwith\s+(?:the\s+)?labels?\s*"
    r"(?P<v>[^\s,]+(?:\s*,\s*[^\s,=]+=[^\s,]*)*)",
    re.IGNORECASE,
)


# The flags of a free-form request, each with whether it takes a value; the other spellings
# the grammar accepts are renamed to these first (`_FLAG_ALIASES`).
_FREE_FORM_FLAGS = {
    "model": True,
    "provider": True,
    "labels": True,
    "duration": True,
    "aspect-ratio": True,
    "sync": False,
    "task": False,
}
_FLAG_ALIASES = re.compile(
    r"(?<!\S)--(?P<name>aspect[-_]?ratio|aspect|ratio|label|async)(?=[=\s]|$)", re.IGNORECASE
)
_ALIAS_OF = {"label": "labels", "async": "task"}


def _strip_trailing(text: str) -> str:
    """`text` without trailing space and punctuation (a loop, not a regex: linear on any input)."""
    end = len(text)
    while end and (text[end - 1].isspace() or text[end - 1] in _TRAILING_CHARS):
        end -= 1
    return text[:end]


def _drop_filler(text: str) -> str:
    """`text` without trailing punctuation and politeness ("balance please!" -> "balance")."""
    text = _strip_trailing(text)
    for _ in range(4):  # "status now please, thanks" at most; bounded so it stays linear
        m = _FILLER_END.search(text, max(0, len(text) - 40))
        if m is None:
            break
        text = _strip_trailing(text[: m.start()])
    return text


def _cut(pattern: re.Pattern[str], text: str) -> tuple[str | None, str]:
    """(value of the first match, text without it); later matches are left in place."""
    m = pattern.search(text)
    if m is None:
        return None, text
    return m.group("v"), text[: m.start()] + " " + text[m.end() :]


def _hints(text: str) -> tuple[str, dict[str, str | bool]]:
    """(the instruction, its routing hints): `--flags` first, then "with model X"-style words."""
    text = _FLAG_ALIASES.sub(
        lambda m: "--" + _ALIAS_OF.get(m.group("name").lower(), "aspect-ratio"), text
    )
    text, flags = split_flag_text(
        "openmarlin.execute", text, _FREE_FORM_FLAGS, USAGE["openmarlin.execute"]
    )
    hints = dict(flags)
    # A flag wins over the same hint in words; the words then stay part of the instruction.
    for name, pattern in (
        ("model", _MODEL_PHRASE),
        ("provider", _PROVIDER_PHRASE),
        ("labels", _LABELS_PHRASE),
    ):
        if name not in hints:
            value, text = _cut(pattern, text)
            if value is not None:
                hints[name] = value
    return text, hints


def _free_form(text: str) -> OMExecute | OMTask:
    """A free-form request: an execution, or a task when its wording or flags say so."""
    text, hints = _hints(text)
    return free_form_of(text, hints)


def _intent(rest: str) -> OpenMarlinCommand | None:
    """A named intent when the whole text is one, else None (free-form)."""
    text = _drop_filler(rest.strip())
    if not text or _HELP.fullmatch(text):
        return OMHelp()
    if m := _REGISTER.fullmatch(text):
        return OMRegister(auth_flow="workos_callback" if m.group("browser") else "device")
    if _STATUS.fullmatch(text):
        return OMStatus()
    if m := _MODELS.fullmatch(text):
        return OMModels(filter=(m.group("filter") or "").strip("`'\""))
    if _BALANCE.fullmatch(text):
        return OMBalance()
    if _ACTIVITY.fullmatch(text):
        return OMActivity()
    if _REFERRAL.fullmatch(text):
        return OMReferral()
    if m := _TOPUP.fullmatch(text):
        return topup(m.group("rest"))
    if m := _TASK_STATUS.fullmatch(text):
        return task_status(m.group("rest"))
    if m := _KEY.fullmatch(text):
        return key_command(m.group("action"), m.group("rest") or "")
    return None


# Words that start a subcommand, with the usage to show and what the subcommand accepts.
_SUBCOMMAND_WORDS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ("register", "signup", "sign-up", "signin", "sign-in", "login", "log-in"),
        ("openmarlin.register", "takes only `browser`"),
    ),
    **dict.fromkeys(
        ("sign up", "sign in", "log in"), ("openmarlin.register", "takes only `browser`")
    ),
    "status": ("openmarlin.status", "takes no arguments"),
    "models": ("openmarlin.models", "takes at most one filter word"),
    "balance": ("openmarlin.balance", "takes no arguments"),
    **dict.fromkeys(("activity", "ledger"), ("openmarlin.activity", "takes no arguments")),
    "usage": ("openmarlin", "is the command list; `activity` shows recent usage"),
    **dict.fromkeys(("referral", "invite"), ("openmarlin.referral", "takes no arguments")),
    **dict.fromkeys(
        ("topup", "top-up", "top up"), ("openmarlin.topup", "takes an amount such as 10")
    ),
    **dict.fromkeys(("task", "tasks"), ("openmarlin.task_status", "is `task status <task id>`")),
    **dict.fromkeys(
        ("key", "keys"),
        ("openmarlin.key", "is `key`, `key set <key>`, `key remove` or `key status`"),
    ),
    "cancel": ("openmarlin", "is not a command: tokenbot cannot cancel OpenMarlin work"),
}
_HELP_WORDS = frozenset({"help", "commands"})


def _subcommand_word(text: str) -> tuple[str, str]:
    """(the subcommand word or pair the text starts with, or "", what follows it)."""
    parts = text.split(maxsplit=2)
    words = [p.lower().rstrip(_TRAILING_CHARS) for p in parts[:2]]
    if len(words) == 2 and f"{words[0]} {words[1]}" in _SUBCOMMAND_WORDS:
        return f"{words[0]} {words[1]}", parts[2] if len(parts) > 2 else ""
    if words and (words[0] in _SUBCOMMAND_WORDS or words[0] in _HELP_WORDS):
        return words[0], text.split(maxsplit=1)[1] if len(parts) > 1 else ""
    return "", text


def _near_miss(text: str) -> OpenMarlinCommand | None:
    """Refuse a subcommand word with words it does not take, rather than run it as paid work."""
    word, extra = _subcommand_word(text)
    if not word:
        return None
    if word in _HELP_WORDS:
        return OMHelp()  # "help me with …" is still a request for help, and free
    command, accepts = _SUBCOMMAND_WORDS[word]
    got = f" (got {_show(extra.strip())})" if extra.strip() else ""
    raise usage_error(
        command,
        f"`{word}` {accepts}{got}; to run it as a paid instruction, start with `to`: "
        f"`use openmarlin to {word} …`",
    )


def _route(rest: str) -> OpenMarlinCommand:
    # Lone surrogates would fail later in a backend's JSON encoder; odd flag spellings
    # ("--\u200bsync", "—sync") would silently become part of a paid instruction.
    rest = normalise_flags(scrub_surrogates(rest), _FLAG_NAMES)
    opening = _OPENING.match(rest)
    text = rest[opening.end() :] if opening else rest
    try:
        command = _intent(text)
        if command is None and not (opening and opening.group("to")):
            command = _near_miss(text)
        return command or _free_form(text)
    except ValidationError as exc:
        # Defensive: the builders validate first; report a gap in them as bad input.
        raise usage_error(UMBRELLA, f"invalid arguments ({exc.error_count()} problem(s))") from None


# A bare mention, for the seed's style of phrasing around the name: "top up OpenMarlin 3",
# "OpenMarlin top up 3", "show my OpenMarlin status". Only free subcommands are reached this
# way, never a paid free-form run: "openmarlin is down again?" stays prose.
_MENTION = re.compile(r"(?<![\w/.@-])openmarlin(?:'s|’s)?(?![\w-])", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[.!?;:,\n]")
# Words between the verb and the name that carry nothing ("sign up for", "show my").
_LINKING = frozenset({"for", "to", "with", "at", "my", "our", "the"})
# Words that may come before "OpenMarlin <command>" at the start of a clause.
_GREETING = frozenset({"hey", "hi", "hello", "ok", "okay", "please", "pls", "so", "now", "yo"})
_MAX_LEAD_WORDS = 4


def _lead_words(before: str) -> tuple[list[str], bool]:
    """(the words of the clause before the name, whether they are only a greeting/mention)."""
    words = _CLAUSE_BREAK.split(before)[-1].split()
    greeting = all(w.lower() in _GREETING or w.startswith(("@", "<@")) for w in words)
    while words and words[-1].lower() in _LINKING:
        words.pop()
    return words[-_MAX_LEAD_WORDS:], greeting


def _named_intent(text: str) -> OpenMarlinCommand | None:
    """The free subcommand `text` spells out in full, or None (never a free-form run)."""
    text = normalise_flags(scrub_surrogates(text), _FLAG_NAMES)
    opening = _OPENING.match(text)
    body = text[opening.end() :] if opening else text
    if not _drop_filler(body.strip()):
        return None  # the name alone is prose, not a request for help
    try:
        return _intent(body)
    except ValidationError:
        return None


def _mentioned(text: str) -> OpenMarlinCommand | None:
    """A subcommand phrased around a bare mention of OpenMarlin; None when there is none.

    The words before the name (at most four, longest first) and the text after it must
    together be one subcommand; "OpenMarlin <subcommand>" needs the name to open its clause.
    A recognised subcommand with bad input is a usage error, as anywhere else.
    """
    m = _MENTION.search(text)
    if m is None:
        return None
    lead, greeting = _lead_words(text[: m.start()])
    rest = text[m.end() :]
    problem: UsageError | None = None
    for k in range(len(lead), -1 if greeting else 0, -1):
        try:
            command = _named_intent(" ".join([*lead[len(lead) - k :], rest]))
        except UsageError as exc:
            problem = problem or exc
            continue
        if command is not None:
            return command
    if problem is not None:
        raise problem
    return None


_FIXED: dict[str, Callable[[], OpenMarlinCommand]] = {
    "register": lambda: OMRegister(),
    "balance": lambda: OMBalance(),
}


def parse(text: str, ctx: ParseState = DEFAULT_STATE) -> OpenMarlinCommand | None:
    """The OpenMarlin command in a chat message; None if there is none; usage error if malformed."""
    if not text or "openmarlin" not in text.lower():
        return None
    m = _TRIGGER.search(text)
    if m is None:
        return _mentioned(text)
    kind = m.lastgroup or ""
    if kind in _FIXED:
        return _FIXED[kind]()
    return _route(text[m.end() :])


def parse_slash(name: str, text: str, ctx: ParseState = DEFAULT_STATE) -> OpenMarlinCommand | None:
    """A platform slash command `/openmarlin <text>`; other names -> None."""
    if not _SLASH_NAME.fullmatch(name.strip()):
        return None
    return _route(text or "")


# --- typed options -----------------------------------------------------------------------------


def parse_options(spec: CommandSpec, values: Values, ctx: ParseState = DEFAULT_STATE) -> BaseModel:
    """The command a platform's typed options describe, checked as its text would be.

    Each value is taken whole: an instruction that mentions "--model=x" keeps it as words.
    """
    build = FROM_VALUES.get(spec.key)
    if build is None or spec.family != FAMILY:
        raise ValueError(f"not an OpenMarlin command spec: {spec.display}")
    cleaned = {k: scrub_surrogates(v) if isinstance(v, str) else v for k, v in values.items()}
    try:
        return build(cleaned)
    except ValidationError as exc:
        raise usage_error(spec.key, f"invalid arguments ({exc.error_count()} problem(s))") from None
