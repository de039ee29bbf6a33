"""Text -> OpenMarlin command: "use openmarlin …" anywhere in a message, and `/openmarlin <text>`.

Pure and synchronous. `parse` returns None when the message is not for OpenMarlin, raises
OpenMarlinUsageError for a recognised command with bad input, and otherwise returns a command.
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
from decimal import Decimal

from pydantic import SecretStr, ValidationError

from bot.backends.alltoken.grammar import DEFAULT_CONTEXT, RouterContext
from bot.backends.alltoken.spec import normalise_flags
from bot.backends.openmarlin.spec import (
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OMTaskStatus,
    OMTopUp,
    OpenMarlinCommand,
    OpenMarlinUsageError,
)
from bot.core import key_shapes
from bot.core.outbound_text import scrub_surrogates

__all__ = ["parse", "parse_slash"]

MAX_INSTRUCTION_CHARS = 8000
MAX_LABELS = 20
MAX_TOPUP = Decimal(100_000)
TOPUP_DECIMALS = 6

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
_LEADING = re.compile(r"^(?:\s|[:,;]|[—–-](?=\s))*(?:(?:to|and|please)\s+)*", re.IGNORECASE)
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
_AMOUNT = re.compile(
    r"(?:(?:my\s+)?(?:account|balance|workspace)\s+)?(?:(?:with|by)\s+)?"
    r"\$?\s*(?P<n>\S+?)(?:\s*credits?)?",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<decimals>[0-9]+))?")
_REFERRAL = re.compile(
    r"(?:(?:get|show)\s+)?(?:my\s+|a\s+)?(?:referral|invite)(?:\s+(?:link|code))?",
    re.IGNORECASE,
)
_TASK_STATUS = re.compile(
    r"(?:task[\s-]+status|status\s+of\s+task|watch\s+task)\b(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_KEY = re.compile(
    r"key(?:\s+(?P<action>set|add|remove|delete|forget|status|show|check)\b(?P<rest>.*))?",
    re.IGNORECASE | re.DOTALL,
)
_HELP = re.compile(r"help|\?|usage|commands", re.IGNORECASE)

# Routing hints, in words or as flags.
_MODEL_PHRASE = re.compile(
    r"(?:\bwith\s+(?:the\s+)?model|--model(?:=|\s+))\s*(?P<v>[^\s]+)", re.IGNORECASE
)
_PROVIDER_PHRASE = re.compile(
    r"(?:\b(?:on|using|via|with)\s+(?:the\s+)?provider|--provider(?:=|\s+))\s*(?P<v>[^\s]+)",
    re.IGNORECASE,
)
_LABELS_PHRASE = re.compile(
    r"(?:\bwith\s+(?:the\s+)?labels?|--labels?(?:=|\s+))\s*"
    r"(?P<v>[^\s,]+(?:\s*,\s*[^\s,=]+=[^\s,]*)*)",
    re.IGNORECASE,
)
_DURATION_FLAG = re.compile(r"--duration(?:=|\s+)(?P<v>[^\s]+)", re.IGNORECASE)
_ASPECT_FLAG = re.compile(r"--(?:aspect[-_]?ratio|aspect|ratio)(?:=|\s+)(?P<v>[^\s]+)", re.I)
_SYNC_FLAG = re.compile(r"(?<![\w-])--sync\b", re.IGNORECASE)
_TASK_FLAG = re.compile(r"(?<![\w-])--(?:async|task)\b", re.IGNORECASE)
_UNKNOWN_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")

_MODEL_REF = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-:]+")
_PROVIDER_ID = re.compile(r"[A-Za-z0-9][\w.\-:]{0,99}")
_LABEL_PAIR = re.compile(r"(?P<k>[^\s,=]+)=(?P<v>[^\s,]*)")
_DURATION = re.compile(r"(?P<n>[0-9]{1,6}(?:\.[0-9]{1,3})?)\s*(?P<u>ms|s|sec|secs|seconds?)?", re.I)
_ASPECT = re.compile(r"[0-9]{1,2}:[0-9]{1,2}")

# Long or artifact-oriented work goes to /v1/tasks (the seed's routing rules).
_TASK_WORDING = re.compile(
    r"\b(?:videos?|clips?|movies?|animations?|animated|render(?:s|ed|ing)?|"
    r"long[\s-]running|background|async|asynchronous(?:ly)?)\b",
    re.IGNORECASE,
)
_SYNC_WORDING = re.compile(
    r"\b(?:synchronous(?:ly)?|sync|right\s+away\s+and\s+wait|as\s+an?\s+execution)\b",
    re.IGNORECASE,
)


def _show(value: str) -> str:
    """User input quoted in an error: keys redacted, kept short."""
    safe = key_shapes.redact(value)
    return repr(safe if len(safe) <= 40 else safe[:37] + "...")


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


def _strip_token(value: str) -> str:
    return value.strip("`'\"<>()[]").rstrip(".,;:!?")


def _tidy(text: str) -> str:
    """Collapse the whitespace left where phrases were cut out, drop a leading "to"."""
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return _LEADING.sub("", text).strip()


def _cut(pattern: re.Pattern[str], text: str) -> tuple[str | None, str]:
    """(value of the first match, text without it); later matches are left in place."""
    m = pattern.search(text)
    if m is None:
        return None, text
    return m.group("v"), text[: m.start()] + " " + text[m.end() :]


def _labels(raw: str) -> dict[str, str]:
    pairs = [p.strip() for p in raw.split(",") if p.strip()]
    out: dict[str, str] = {}
    for pair in pairs:
        m = _LABEL_PAIR.fullmatch(pair.rstrip(".;:!?"))
        if m is None:
            raise OpenMarlinUsageError(
                "openmarlin.execute",
                f"labels are key=value pairs separated by commas, e.g. region=eu,gpu=a100 "
                f"(got {_show(pair)})",
            )
        out[m.group("k")] = m.group("v")
    if len(out) > MAX_LABELS:
        raise OpenMarlinUsageError("openmarlin.execute", f"at most {MAX_LABELS} labels")
    return out


def _duration_ms(raw: str) -> int:
    m = _DURATION.fullmatch(raw.strip())
    if m is None:
        raise OpenMarlinUsageError(
            "openmarlin.task",
            f"--duration takes seconds such as 5s, from 1 s to 600 s (got {_show(raw)})",
        )
    n = Decimal(m.group("n"))
    ms = n if (m.group("u") or "").lower() == "ms" else n * 1000
    if not 1000 <= ms <= 600_000:
        raise OpenMarlinUsageError(
            "openmarlin.task", f"--duration must be 1 s to 10 min (600 s) (got {_show(raw)})"
        )
    return int(ms)


def _free_form(text: str) -> OMExecute | OMTask:
    """An instruction with optional routing hints: an execution or a task."""
    model, text = _cut(_MODEL_PHRASE, text)
    provider, text = _cut(_PROVIDER_PHRASE, text)
    labels_raw, text = _cut(_LABELS_PHRASE, text)
    duration_raw, text = _cut(_DURATION_FLAG, text)
    aspect_raw, text = _cut(_ASPECT_FLAG, text)
    forced_sync = _SYNC_FLAG.search(text) is not None
    forced_task = _TASK_FLAG.search(text) is not None
    text = _TASK_FLAG.sub(" ", _SYNC_FLAG.sub(" ", text))
    unknown = _UNKNOWN_FLAG.search(text)
    if unknown:
        raise OpenMarlinUsageError(
            "openmarlin.execute", f"unknown option {_show(unknown.group(0))}"
        )
    instruction = _tidy(text)
    if not instruction:
        raise OpenMarlinUsageError("openmarlin.execute", "say what OpenMarlin should do")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise OpenMarlinUsageError(
            "openmarlin.execute", f"the request is longer than {MAX_INSTRUCTION_CHARS} characters"
        )
    if key_shapes.contains_key(instruction):
        raise OpenMarlinUsageError(
            "openmarlin.execute",
            "the request contains something shaped like an API key; tokenbot will not send it",
        )
    if model is not None:
        model = _strip_token(model)
        if "/" not in model:
            raise OpenMarlinUsageError(
                "openmarlin.execute",
                f"{_show(model)} is not a full model ref: OpenMarlin needs the exact "
                "vendor/model form such as openai-codex/gpt-5.4 (see `/openmarlin models`)",
            )
        if not _MODEL_REF.fullmatch(model):
            raise OpenMarlinUsageError(
                "openmarlin.execute", f"{_show(model)} is not a model ref like vendor/model"
            )
    if provider is not None:
        provider = _strip_token(provider)
        if not _PROVIDER_ID.fullmatch(provider):
            raise OpenMarlinUsageError(
                "openmarlin.execute", f"{_show(provider)} is not a provider id"
            )
    labels = _labels(labels_raw) if labels_raw is not None else {}
    task_options = duration_raw is not None or aspect_raw is not None
    if forced_sync:
        if task_options:
            raise OpenMarlinUsageError(
                "openmarlin.task", "--duration and --aspect-ratio only apply to tasks, not --sync"
            )
        wants_task = False
    else:
        wants_task = (
            forced_task
            or task_options
            or (
                _TASK_WORDING.search(instruction) is not None
                and _SYNC_WORDING.search(instruction) is None
            )
        )
    if wants_task:
        aspect = _strip_token(aspect_raw) if aspect_raw is not None else None
        if aspect is not None and (
            not _ASPECT.fullmatch(aspect) or "0" in (aspect.split(":")[0], aspect.split(":")[1])
        ):
            raise OpenMarlinUsageError(
                "openmarlin.task",
                f"--aspect-ratio looks like 16:9, each side 1-99 (got {_show(aspect)})",
            )
        ignored = tuple(
            f"{name} {value}"
            for name, value in (
                ("model", model),
                ("provider", provider),
                ("labels", ",".join(f"{k}={v}" for k, v in labels.items()) if labels else None),
            )
            if value
        )
        return OMTask(
            prompt=instruction,
            duration_ms=_duration_ms(duration_raw) if duration_raw is not None else None,
            aspect_ratio=aspect,
            ignored=ignored,
        )
    return OMExecute(instruction=instruction, model=model, provider_id=provider, labels=labels)


def _topup(rest: str) -> OMTopUp:
    m = _AMOUNT.fullmatch(rest.strip())
    if m is None:
        raise OpenMarlinUsageError(
            "openmarlin.topup",
            "give the amount of credits, e.g. top up 10"
            + (f" (got {_show(rest.strip())})" if rest.strip() else ""),
        )
    raw = m.group("n").replace(",", "")
    accepted = f"above 0 and at most {MAX_TOPUP}"
    if raw.startswith("-"):
        raise OpenMarlinUsageError(
            "openmarlin.topup", f"the amount must be {accepted} (got {_show(raw)})"
        )
    number = _NUMBER.fullmatch(raw)
    if number is None:
        raise OpenMarlinUsageError(
            "openmarlin.topup",
            f"the amount must be a number of credits such as 10 or 2.5 (got {_show(raw)})",
        )
    if len(number.group("decimals") or "") > TOPUP_DECIMALS:
        raise OpenMarlinUsageError(
            "openmarlin.topup",
            f"the amount has at most {TOPUP_DECIMALS} decimals (got {_show(raw)})",
        )
    # The length check keeps Decimal away from absurd digit strings.
    amount = Decimal(raw) if len(number.group("units").lstrip("0")) <= 6 else MAX_TOPUP + 1
    if not 0 < amount <= MAX_TOPUP:
        raise OpenMarlinUsageError(
            "openmarlin.topup", f"the amount must be {accepted} (got {_show(raw)})"
        )
    return OMTopUp(amount=amount)


def _task_status(rest: str) -> OMTaskStatus:
    task_id = _strip_token(rest.strip())
    if not task_id:
        raise OpenMarlinUsageError("openmarlin.task_status", "which task? give its id")
    if not _TASK_ID.fullmatch(task_id):
        raise OpenMarlinUsageError("openmarlin.task_status", f"{_show(task_id)} is not a task id")
    return OMTaskStatus(task_id=task_id)


def _key(action: str | None, rest: str) -> OMKey:
    if action is None:
        return OMKey(action="prompt")
    verb = action.lower()
    if verb in ("remove", "delete", "forget"):
        if rest.strip(" ?!.,"):
            raise OpenMarlinUsageError("openmarlin.key", f"{verb} takes no arguments")
        return OMKey(action="remove")
    if verb in ("status", "show", "check"):
        if rest.strip(" ?!.,"):
            raise OpenMarlinUsageError("openmarlin.key", f"{verb} takes no arguments")
        return OMKey(action="status")
    words = rest.split()
    if not words:
        return OMKey(action="prompt")
    if len(words) > 1:
        # Never echo this text: it may be a key split by a stray space.
        raise OpenMarlinUsageError("openmarlin.key", "give exactly one key after 'set'")
    value = words[0].strip("`'\"<>")
    if key_shapes.key_service(value) != "openmarlin":
        raise OpenMarlinUsageError(
            "openmarlin.key",
            "that is not an OpenMarlin key (they start with claw_wsk_); "
            "or run `/openmarlin register` to get one",
        )
    return OMKey(action="set", key=SecretStr(value))


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
        return _topup(m.group("rest"))
    if m := _TASK_STATUS.fullmatch(text):
        return _task_status(m.group("rest"))
    if m := _KEY.fullmatch(text):
        return _key(m.group("action"), m.group("rest") or "")
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
    raise OpenMarlinUsageError(
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
        raise OpenMarlinUsageError(
            "openmarlin", f"invalid arguments ({exc.error_count()} problem(s))"
        ) from None


_FIXED: dict[str, Callable[[], OpenMarlinCommand]] = {
    "register": lambda: OMRegister(),
    "balance": lambda: OMBalance(),
}


def parse(text: str, ctx: RouterContext = DEFAULT_CONTEXT) -> OpenMarlinCommand | None:
    """The OpenMarlin command in a chat message; None if there is none; usage error if malformed."""
    if not text or "openmarlin" not in text.lower():
        return None
    m = _TRIGGER.search(text)
    if m is None:
        return None
    kind = m.lastgroup or ""
    if kind in _FIXED:
        return _FIXED[kind]()
    return _route(text[m.end() :])


def parse_slash(
    name: str, text: str, ctx: RouterContext = DEFAULT_CONTEXT
) -> OpenMarlinCommand | None:
    """A platform slash command `/openmarlin <text>`; other names -> None."""
    if not _SLASH_NAME.fullmatch(name.strip()):
        return None
    return _route(text or "")
