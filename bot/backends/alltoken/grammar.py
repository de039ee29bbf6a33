"""Text -> typed Command: recognise tokenbot's AllToken commands anywhere in a chat message.

Pure and synchronous: no I/O, no clock, no logging. `parse` returns None for messages that are
not commands (the vast majority, rejected by a substring pre-check before any regex runs),
raises `UsageError` for a recognised command with bad input, and otherwise returns a Command
model. Nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import SecretStr, ValidationError

from bot.backends.alltoken import catalog
from bot.backends.alltoken.catalog import DurationRange
from bot.backends.alltoken.spec import (
    USAGE,
    ChatCommand,
    Command,
    CostCommand,
    HelpCommand,
    ImageCommand,
    KeyCommand,
    ModelsCommand,
    SearchCommand,
    UsageError,
    VideoCommand,
    normalise_flag_token,
)
from bot.core import key_shapes
from bot.core.outbound_text import scrub_surrogates

__all__ = ["DEFAULT_CONTEXT", "RouterContext", "parse", "parse_slash"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RouterContext:
    """What the router may know beyond the text: live model data and the conversation state."""

    # The cached live chat model list (lower-cased ids) when available, else the catalog's.
    chat_models: frozenset[str] = frozenset(catalog.CHAT_MODELS)
    # Live video capabilities; they override catalog.VIDEO_DURATIONS.
    video_durations: Mapping[str, DurationRange] = field(default_factory=dict)
    # The previous bot action in this conversation was an AllToken call ("how much did that cost").
    last_call_was_alltoken: bool = False
    # The clock for checks such as "that expiry date is already past"; tests pin it.
    now: Callable[[], datetime] = _utc_now


DEFAULT_CONTEXT: Final = RouterContext()

ModelType = Literal["chat", "image", "video"]
KeyAction = Literal["set", "remove", "status"]

# ---------------------------------------------------------------------------------------------
# Triggers. One alternation, so a single left-to-right search finds the earliest trigger of
# any kind; the outer groups are named so `Match.lastgroup` says which one matched.

_COMMAND_WORDS = "chat|image|video|search|models|cost|key|help"
_VIA = r"(?:via|with|on|using|through|in|from)"

_TRIGGER = re.compile(
    "|".join(
        (
            # /alltoken-chat, alltoken chat, ALLTOKEN_image … but not "myalltoken-chat" or a
            # URL path; the separator is a hyphen, an underscore or spaces (not a newline).
            r"(?P<explicit>(?<![\w/-])/?alltoken(?:-|_|[^\S\n]+)"
            rf"(?P<word>{_COMMAND_WORDS})(?![\w-]))",
            # "ask alltoken with model X …"; "model" is optional, but then X must be a model.
            r"(?P<nl_chat>\bask\s+alltoken\s+(?:with|using|via|on)\s+(?:the\s+)?"
            r"(?:(?P<model_kw>model)\s+)?(?P<nl_model>[^\s:,]+)[:,]?)",
            # "generate an image via alltoken …", "draw me a picture of X with alltoken …"
            r"(?P<nl_image>\b(?:generate|create|make|draw|render|paint)\s+(?:me\s+)?"
            r"(?:an?\s+|the\s+|one\s+)?(?:image|picture|pic|photo|illustration|drawing)\s+"
            rf"(?:of\s+(?P<image_pre>[^\n]{{1,500}}?)\s+)?{_VIA}\s+alltoken\b)",
            rf"(?P<nl_draw>\bdraw\s+(?:this\s+|it\s+|something\s+)?{_VIA}\s+alltoken\b)",
            # "make a video on alltoken …", "create a clip of X with alltoken …"
            r"(?P<nl_video>\b(?:make|generate|create|render|produce)\s+(?:me\s+)?(?:an?\s+)?"
            r"(?:video|clip|movie|animation)\s+"
            rf"(?:of\s+(?P<video_pre>[^\n]{{1,500}}?)\s+)?{_VIA}\s+alltoken\b)",
            # "use alltoken web search …", "find with alltoken …", "search the web via alltoken"
            r"(?P<nl_search>\buse\s+alltoken(?:'s|’s)?\s+(?:web\s+)?search\b"
            rf"|\b(?:find|look\s+up|search(?:\s+the\s+web)?)\s+{_VIA}\s+alltoken\b)",
            # "what alltoken models are available", "which image models are available on alltoken"
            r"(?P<nl_models>\b(?:what|which)\s+(?:"
            r"alltoken\s+(?:(?P<type_a>chat|image|video)\s+)?models\s+(?:are|is)\s+"
            r"(?:available|there)"
            r"|(?:(?P<type_b>chat|image|video)\s+)?models\s+(?:are|is)\s+(?:available|there)\s+"
            r"(?:on|in|via|from|with|through|at)\s+alltoken"
            r"|(?:(?P<type_c>chat|image|video)\s+)?models\s+does\s+alltoken\s+"
            r"(?:have|offer|support|provide))\b)",
            # "how much did that cost?" — a command only right after an AllToken call.
            r"(?P<nl_cost>\b(?:how\s+much\s+(?:did|does|was|will)\s+(?:that|this|it)"
            r"(?:\s+(?:last\s+)?(?:alltoken\s+)?(?:one|call|request|answer|reply|response|"
            r"image|video|search|chat))?\s+cost|what\s+did\s+(?:that|this|it)\s+cost)\b)",
        )
    ),
    re.IGNORECASE,
)
# Which command a natural-language trigger stands for (for error reports).
_NL_COMMAND = {
    "nl_chat": "chat",
    "nl_image": "image",
    "nl_draw": "image",
    "nl_video": "video",
    "nl_search": "search",
    "nl_models": "models",
    "nl_cost": "cost",
}

_SLASH_NAME = re.compile(rf"/?alltoken(?:-|_|\s+)?(?P<word>{_COMMAND_WORDS})", re.IGNORECASE)

# Leading separators after a trigger ("alltoken chat: hi", "draw with alltoken — a cat").
_LEADING = re.compile(r"\s*(?:[:,;]|[—–](?=\s|\Z))?\s*")
_LEADING_OF = re.compile(r"(?:of|showing)\s+", re.IGNORECASE)
_LEADING_FOR = re.compile(r"(?:to|for)\s+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\S+")
_FLAG = re.compile(r"(?:--|[—–])(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=(?P<value>.*))?", re.DOTALL)
# Text that is only punctuation counts as no arguments ("alltoken cost?", "/alltoken-help.").
_NOTHING = re.compile(r"[\s?!.,;:…]*")
_SIZE = re.compile(r"([0-9]{1,5})\s*[x×*]\s*([0-9]{1,5})")
_DURATION = re.compile(r"(-?[0-9]{1,6})\s*(?:s|secs?|seconds?)?")
_COUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+")
_MODEL_ARG = re.compile(r"[A-Za-z][A-Za-z0-9._:/-]*")
_MODELS_TYPE_TAIL = re.compile(
    r"\s*(?:for|to|with)\s+(?:(?:making|generating|creating)\s+)?(?:an?\s+)?"
    r"(?P<type>chat|image|video)s?\b",
    re.IGNORECASE,
)

_MIN_SIDE, _MAX_SIDE = 256, 4096
_MAX_TOKENS = 10**12  # far beyond any real call; also keeps int() away from huge digit strings
_MODEL_TYPES: dict[str, ModelType] = {
    "chat": "chat",
    "chats": "chat",
    "image": "image",
    "images": "image",
    "video": "video",
    "videos": "video",
}
# Politeness around "/alltoken-models" is not a filter ("show alltoken models please").
_FILLER = frozenset({"please", "pls", "plz", "thanks", "thx", "now", "list", "all"})
_HELP_TOPICS = frozenset(USAGE)
_KEY_ACTIONS: dict[str, KeyAction] = {
    "set": "set",
    "add": "set",
    "remove": "remove",
    "delete": "remove",
    "unset": "remove",
    "clear": "remove",
    "forget": "remove",
    "status": "status",
    "show": "status",
    "check": "status",
}
_SERVICE_NAMES = {
    "openmarlin": "an OpenMarlin",
    "openclaw_token": "an OpenClaw management",
    "openclaw_proxy": "an OpenClaw provisioned",
}


# ---------------------------------------------------------------------------------------------
# Small helpers


def _show(value: str) -> str:
    """Quote user input for an error message: keys redacted first, then kept short."""
    safe = key_shapes.redact(value)
    if len(safe) > 40:
        safe = safe[:37] + "..."
    return repr(safe)


def _drop(pattern: re.Pattern[str], text: str) -> str:
    """`text` without whatever `pattern` matches at its start."""
    m = pattern.match(text)
    return text[m.end() :] if m else text


def _clean(text: str) -> str:
    """Strip surrounding space and one leading separator (":", ",", a spaced dash)."""
    return _drop(_LEADING, text).rstrip()


def _split_first(text: str) -> tuple[str, str]:
    """(first word, rest) of already-stripped text; the rest keeps its inner whitespace."""
    m = _SPACE.search(text)
    if m is None:
        return text, ""
    return text[: m.start()], text[m.end() :]


def _is_nothing(text: str) -> bool:
    return _NOTHING.fullmatch(text) is not None


def _check_prompt(command: str, text: str, what: str = "prompt") -> str:
    prompt = text.strip()
    if not prompt:
        raise UsageError(command, f"empty {what}")
    if len(prompt) > catalog.MAX_PROMPT_CHARS:
        raise UsageError(
            command,
            f"{what} is too long ({len(prompt):,} characters; "
            f"the limit is {catalog.MAX_PROMPT_CHARS:,})",
        )
    return prompt


def _is_chat_model(word: str, ctx: RouterContext) -> bool:
    return (
        word.lower() in ctx.chat_models
        or word in ctx.chat_models
        or catalog.looks_like_model_id(word)
    )


def _model_word(word: str) -> str:
    # Slack users wrap ids in `code` or *bold* and follow them with ":" or ",".
    return word.strip("`*:,")


def _one_of(command: str, flag: str, value: str, allowed: tuple[str, ...]) -> str:
    lowered = value.lower()
    if lowered in allowed:
        return lowered
    raise UsageError(command, f"--{flag} must be one of {', '.join(allowed)} (got {_show(value)})")


def _parse_flags(command: str, text: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Split `--name=value` / `--name value` options out of text, anywhere among the words.

    Returns the remaining text (its spacing kept) and the options; a repeated option takes its
    last value, as with argparse. Em/en-dash spellings ("—size=auto", as autocorrect makes
    them) count only for known names, since "—this" in prose is not an option.
    """
    words = list(_WORD.finditer(text))
    tokens = [normalise_flag_token(w.group(), allowed) for w in words]
    flags: dict[str, str] = {}
    cuts: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        word = words[i]
        m = _FLAG.fullmatch(tokens[i])
        if m is None:
            i += 1
            continue
        name = m.group("name").lower()
        if name not in allowed:
            if not tokens[i].startswith("--"):
                i += 1
                continue
            options = ", ".join(f"--{a}" for a in allowed)
            raise UsageError(
                command, f"unknown option {_show('--' + m.group('name'))}; use {options}"
            )
        value = m.group("value")
        end = word.end()
        if value is None:
            following = tokens[i + 1] if i + 1 < len(words) else ""
            if following and not following.startswith("--"):
                value = following
                end = words[i + 1].end()
                i += 1
        if not value:
            raise UsageError(command, f"--{name} needs a value (--{name}=VALUE)")
        flags[name] = value
        cuts.append((word.start(), end))
        i += 1
    if not cuts:
        return text, flags
    # Cut each option together with the whitespace after it so no double spaces remain.
    parts: list[str] = []
    pos = 0
    for start, end in cuts:
        parts.append(text[pos:start])
        space = _SPACE.match(text, end)
        pos = space.end() if space else end
    parts.append(text[pos:])
    return "".join(parts).strip(), flags


def _count(value: str, what: str) -> int:
    if not _COUNT.fullmatch(value):
        raise UsageError("cost", f"{what} must be a whole number ≥ 0 (got {_show(value)})")
    digits = value.replace(",", "")
    if len(digits) > 13 or int(digits) > _MAX_TOKENS:
        raise UsageError("cost", f"{what} is unreasonably large (got {_show(value)})")
    return int(digits)


# ---------------------------------------------------------------------------------------------
# Command builders: the text after the trigger -> Command (or UsageError).


def _leading_model(body: str, ctx: RouterContext) -> tuple[str, str]:
    """(model, prompt) for a chat body whose first word may name the model."""
    first, after = _split_first(body)
    first = normalise_flag_token(first, ("model",))
    flag = _FLAG.fullmatch(first) if first.startswith("--") else None
    if flag is not None and flag.group("name").lower() == "model":
        # Not in the seed syntax, but a natural slip; accepted only at the very front.
        value = flag.group("value")
        if value is None:
            value, after = _split_first(after)
        word = _model_word(value)
        if not word:
            raise UsageError("chat", "--model needs a value (--model=MODEL)")
        if not _is_chat_model(word, ctx):
            raise UsageError("chat", f"unknown model {_show(word)}; see /alltoken-models")
    else:
        word = _model_word(first)
        # A model only if known or model-shaped; hyphenated prose ("state-of-the-art",
        # "claude-like") fails both tests and stays in the prompt.
        if not word or not _is_chat_model(word, ctx):
            return catalog.DEFAULT_CHAT_MODEL, body
    if not after.strip():
        raise UsageError("chat", f"empty prompt (after the model {_show(word)})")
    return word.lower(), after


def _chat(rest: str, ctx: RouterContext, model: str | None = None) -> ChatCommand:
    body = _clean(rest)
    if model is None:
        model, body = _leading_model(body, ctx)
    return ChatCommand(prompt=_check_prompt("chat", body), model=model)


def _size(value: str) -> str:
    lowered = value.lower()
    if lowered in catalog.IMAGE_SIZES:
        return lowered
    m = _SIZE.fullmatch(lowered)
    if m and all(_MIN_SIDE <= int(side) <= _MAX_SIDE for side in m.groups()):
        return f"{int(m.group(1))}x{int(m.group(2))}"
    raise UsageError(
        "image",
        f"--size must be one of {', '.join(catalog.IMAGE_SIZES)} or WIDTHxHEIGHT with each side "
        f"{_MIN_SIDE}-{_MAX_SIDE} (got {_show(value)})",
    )


def _image(rest: str, ctx: RouterContext) -> ImageCommand:
    text, flags = _parse_flags("image", _clean(rest), ("size", "quality", "model"))
    prompt = _check_prompt("image", text)
    size = _size(flags["size"]) if "size" in flags else catalog.DEFAULT_IMAGE_SIZE
    quality = catalog.DEFAULT_IMAGE_QUALITY
    if "quality" in flags:
        quality = _one_of("image", "quality", flags["quality"], catalog.IMAGE_QUALITIES)
    model = catalog.DEFAULT_IMAGE_MODEL
    if "model" in flags:
        model = _one_of("image", "model", flags["model"], catalog.IMAGE_MODELS)
    return ImageCommand(prompt=prompt, size=size, quality=quality, model=model)


def _video_model(value: str, ctx: RouterContext) -> str:
    if value in ctx.video_durations:
        return value
    lowered = value.lower()
    if lowered in catalog.VIDEO_MODELS or lowered in ctx.video_durations:
        return lowered
    known = sorted({*catalog.VIDEO_MODELS, *ctx.video_durations})
    raise UsageError("video", f"--model must be one of {', '.join(known)} (got {_show(value)})")


def _video(rest: str, ctx: RouterContext) -> VideoCommand:
    text, flags = _parse_flags("video", _clean(rest), ("model", "duration", "ratio", "resolution"))
    prompt = _check_prompt("video", text)
    model = _video_model(flags["model"], ctx) if "model" in flags else catalog.DEFAULT_VIDEO_MODEL
    allowed = catalog.duration_range(model, dict(ctx.video_durations))
    if "duration" in flags:
        m = _DURATION.fullmatch(flags["duration"].strip().lower())
        if m is None:
            raise UsageError(
                "video",
                f"--duration must be a whole number of seconds, {allowed.describe()} for {model} "
                f"(got {_show(flags['duration'])})",
            )
        duration = int(m.group(1))
        if not allowed.allows(duration):
            raise UsageError(
                "video", f"--duration for {model} must be {allowed.describe()} (got {duration})"
            )
    else:
        # The default must not turn a flag-less request into an error for a model whose live
        # range excludes it; fall back to that model's shortest duration.
        default = catalog.DEFAULT_VIDEO_DURATION
        duration = default if allowed.allows(default) else allowed.min
    ratio = catalog.DEFAULT_VIDEO_RATIO
    if "ratio" in flags:
        ratio = _one_of("video", "ratio", flags["ratio"], catalog.VIDEO_RATIOS)
    resolution = catalog.DEFAULT_VIDEO_RESOLUTION
    if "resolution" in flags:
        value = flags["resolution"]
        # "1080" is an obvious spelling of "1080p".
        spelled = value + "p" if value.isdecimal() else value
        resolution = _one_of("video", "resolution", spelled, catalog.VIDEO_RESOLUTIONS)
    return VideoCommand(
        prompt=prompt, model=model, duration=duration, ratio=ratio, resolution=resolution
    )


def _search(rest: str, ctx: RouterContext) -> SearchCommand:
    text, flags = _parse_flags("search", _clean(rest), ("model",))
    query = _check_prompt("search", text, what="query")
    model = catalog.DEFAULT_SEARCH_MODEL
    if "model" in flags:
        value = flags["model"]
        if not catalog.supports_search(value):
            raise UsageError(
                "search",
                f"--model {_show(value)} does not support web search on AllToken; use one of "
                f"{', '.join(catalog.SEARCH_MODELS)} (default {catalog.DEFAULT_SEARCH_MODEL})",
            )
        model = value.lower()
    return SearchCommand(query=query, model=model)


def _models(rest: str, ctx: RouterContext) -> ModelsCommand:
    text, flags = _parse_flags("models", _clean(rest), ("type", "filter"))
    kind: ModelType | None = None
    if "type" in flags:
        kind = _MODEL_TYPES.get(flags["type"].lower())
        if kind is None:
            raise UsageError(
                "models",
                f"--type must be one of chat, image, video (got {_show(flags['type'])})",
            )
    filter_ = flags.get("filter", "")
    # Bare words are a convenience: "/alltoken-models image claude" is
    # --type=image --filter=claude.
    others: list[str] = []
    for word in text.split():
        bare = word.strip("?!.,;:…`*")
        as_type = _MODEL_TYPES.get(bare.lower())
        if as_type is not None and kind is None:
            kind = as_type
        elif bare and bare.lower() not in _FILLER:
            others.append(bare)
    if others:
        if len(others) > 1 or filter_:
            raise UsageError(
                "models",
                f"unexpected text {_show(' '.join(others))}; filter ids with --filter=TEXT",
            )
        filter_ = others[0]
    return ModelsCommand(type=kind or "chat", filter=filter_)


def _cost(rest: str, ctx: RouterContext) -> CostCommand:
    text = _clean(rest)
    if _is_nothing(text):
        return CostCommand()
    args = text.split()
    if len(args) != 3:
        raise UsageError(
            "cost",
            "give a model, prompt tokens and completion tokens, or nothing for the last call "
            f"(got {len(args)} argument{'' if len(args) == 1 else 's'})",
        )
    model = _model_word(args[0])
    if not _MODEL_ARG.fullmatch(model) or key_shapes.contains_key(model):
        raise UsageError("cost", f"the first argument must be a model id (got {_show(args[0])})")
    return CostCommand(
        model=model.lower(),
        prompt_tokens=_count(args[1], "prompt_tokens"),
        completion_tokens=_count(args[2], "completion_tokens"),
    )


def _key(rest: str, ctx: RouterContext) -> KeyCommand:
    text = _clean(rest)
    if _is_nothing(text):
        # No arguments: the handler asks for the key privately (DM / ephemeral / modal).
        return KeyCommand(action="prompt")
    args = text.split()
    action = _KEY_ACTIONS.get(args[0].lower().rstrip(":"))
    if action is None:
        raise UsageError("key", f"unknown action {_show(args[0])}; use set, remove or status")
    if action != "set":
        if not _is_nothing(" ".join(args[1:])):
            raise UsageError("key", f"{action} takes no arguments")
        return KeyCommand(action=action)
    if len(args) < 2:
        raise UsageError("key", "missing key: /alltoken-key set sk-at-…")
    if len(args) > 2:
        # Never echo this text: it may be a key split by a stray space.
        raise UsageError("key", "give exactly one key after 'set', with nothing after it")
    key = args[1].strip("`'\"<>")
    service = key_shapes.key_service(key)
    if service is None:
        raise UsageError(
            "key",
            "that does not look like an AllToken key "
            "(they start with sk-at- followed by at least 12 characters)",
        )
    if service != "alltoken":
        raise UsageError(
            "key",
            f"that is {_SERVICE_NAMES[service]} key, not an AllToken key "
            "(AllToken keys start with sk-at-)",
        )
    return KeyCommand(action="set", key=SecretStr(key))


def _help(rest: str, ctx: RouterContext) -> HelpCommand:
    first, _ = _split_first(_clean(rest))
    topic = first.lower().strip("`*?.!,:/")
    topic = topic.removeprefix("alltoken-").removeprefix("alltoken_")
    return HelpCommand(topic=topic if topic in _HELP_TOPICS else None)


_BUILDERS: dict[str, Callable[[str, RouterContext], Command]] = {
    "chat": _chat,
    "image": _image,
    "video": _video,
    "search": _search,
    "models": _models,
    "cost": _cost,
    "key": _key,
    "help": _help,
}


# ---------------------------------------------------------------------------------------------
# Dispatch


def _with_pre(pre: str | None, rest: str) -> str:
    """Join "an image of <pre> via alltoken <rest>" into one prompt."""
    rest = _drop(_LEADING_OF, _clean(rest))
    if not pre:
        return rest
    return f"{pre.strip()} {rest}" if rest else pre.strip()


def _natural(m: re.Match[str], rest: str, ctx: RouterContext) -> Command | None:
    """The command for a natural-language trigger; None declines it (the search goes on)."""
    kind = m.lastgroup
    if kind == "nl_chat":
        word = _model_word(m.group("nl_model"))
        if not _is_chat_model(word, ctx):
            if m.group("model_kw") is None:
                return None  # "ask alltoken with a question …" is prose, not a model choice
            raise UsageError("chat", f"unknown model {_show(word)}; see /alltoken-models")
        return _chat(rest, ctx, model=word.lower())
    if kind == "nl_image":
        return _image(_with_pre(m.group("image_pre"), rest), ctx)
    if kind == "nl_draw":
        return _image(_with_pre(None, rest), ctx)
    if kind == "nl_video":
        return _video(_with_pre(m.group("video_pre"), rest), ctx)
    if kind == "nl_search":
        return _search(_drop(_LEADING_FOR, _clean(rest)), ctx)
    if kind == "nl_models":
        named = m.group("type_a") or m.group("type_b") or m.group("type_c")
        tail = _MODELS_TYPE_TAIL.match(rest)
        word = (named or (tail.group("type") if tail else None) or "chat").lower()
        return ModelsCommand(type=_MODEL_TYPES.get(word, "chat"))
    if kind == "nl_cost":
        return CostCommand() if ctx.last_call_was_alltoken else None
    return None


def _dispatch(m: re.Match[str], text: str, ctx: RouterContext) -> Command | None:
    rest = text[m.end() :]
    command = m.group("word").lower() if m.lastgroup == "explicit" else ""
    try:
        if command:
            return _BUILDERS[command](rest, ctx)
        return _natural(m, rest, ctx)
    except ValidationError as exc:
        # Defensive: the builders validate first, so this would be a gap in them; report it as
        # bad input rather than let a pydantic error escape.
        name = command or _NL_COMMAND.get(m.lastgroup or "", "help")
        raise UsageError(name, f"invalid arguments ({exc.error_count()} problem(s))") from None


# ---------------------------------------------------------------------------------------------
# Public API


def parse(text: str, ctx: RouterContext = DEFAULT_CONTEXT) -> Command | None:
    """The AllToken command in a chat message, None if there is none; UsageError if malformed."""
    if not text:
        return None
    lowered = text.lower()
    # Most channel traffic stops here: every trigger contains "alltoken", except the follow-up
    # "how much did that cost", which only counts right after an AllToken call.
    if "alltoken" not in lowered and not (ctx.last_call_was_alltoken and "cost" in lowered):
        return None
    # Undecodable input (lone surrogates) must not reach a backend's JSON encoder.
    text = scrub_surrogates(text)
    for m in _TRIGGER.finditer(text):
        command = _dispatch(m, text, ctx)
        if command is not None:
            return command
    return None


def parse_slash(name: str, text: str, ctx: RouterContext = DEFAULT_CONTEXT) -> Command | None:
    """A platform slash command: name "/alltoken-chat", "alltoken-chat" or umbrella "/alltoken".

    `text` is the command's argument string. With the umbrella name its first word picks the
    command ("/alltoken chat hi"); bare "/alltoken" is help. Other names -> None.
    """
    text = scrub_surrogates(text or "")
    name = scrub_surrogates(name).strip()
    m = _SLASH_NAME.fullmatch(name)
    if m is not None:
        word, rest = m.group("word").lower(), text
    elif name.lstrip("/").lower() == "alltoken":
        first, rest = _split_first(_clean(text))
        word = first.lower().removeprefix("alltoken-")
        if not word:
            return HelpCommand()
        if word not in _BUILDERS:
            raise UsageError(
                "help", f"unknown command {_show(first)}; use one of {', '.join(_BUILDERS)}"
            )
    else:
        return None
    try:
        return _BUILDERS[word](rest, ctx)
    except ValidationError as exc:
        raise UsageError(word, f"invalid arguments ({exc.error_count()} problem(s))") from None
