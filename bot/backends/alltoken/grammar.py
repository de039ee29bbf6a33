"""Text -> typed Command: recognise tokenbot's AllToken commands anywhere in a chat message.

Pure and synchronous: no I/O, no clock, no logging. `parse` returns None for messages that are
not commands (the vast majority, rejected by a substring pre-check before any regex runs),
raises `UsageError` for a recognised command with bad input, and otherwise returns a Command
model. Nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from bot.backends.alltoken import catalog
from bot.backends.alltoken.arguments import (
    DEFAULT_CONTEXT,
    FROM_VALUES,
    MODEL_TYPES,
    RouterContext,
    Values,
    chat_model,
    check_prompt,
    cost_args,
    get,
    help_topic,
    image_of,
    is_chat_model,
    is_nothing,
    key_args,
    model_type,
    model_word,
    search_of,
    video_of,
)
from bot.backends.alltoken.spec import (
    FAMILY,
    USAGE,
    ChatCommand,
    Command,
    CostCommand,
    HelpCommand,
    KeyCommand,
    ModelsCommand,
    spec_for,
    usage_error,
)
from bot.core.command_spec import CommandSpec
from bot.core.grammar import (
    normalise_flag_token,
    read_flag,
    reject_single_dash,
    show_input,
    split_flag_text,
)
from bot.core.outbound_text import scrub_surrogates

__all__ = ["DEFAULT_CONTEXT", "RouterContext", "parse", "parse_options", "parse_slash"]

_show = show_input


# ---------------------------------------------------------------------------------------------
# Triggers. One alternation, so a single left-to-right search finds the earliest trigger of
# any kind; the outer groups are named so `Match.lastgroup` says which one matched.

_COMMAND_WORDS = "chat|image|video|search|models|cost|key|help"
_VIA = r"(?:via|with|on|using|through|in|from)"
_TRIGGER = re.compile(
    # Every alternative starts with one of these characters: one cheap test per position
    # before the alternatives are tried (the scan is then about twice as fast).
    "(?=[/agcmdrpuflswh])(?:"
    + "|".join(
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
    )
    + ")",
    re.IGNORECASE,
)
# Necessary context of "alltoken" in any trigger but nl_cost (ASCII text, lower case): the word
# before it (natural wording: "ask", "use", "what", "does", a _VIA word or nl_models' "at"), or
# a command word after it ("alltoken chat", "/alltoken-image"). Plain chatter that names
# alltoken has neither and skips the regex scan.
_BEFORE_ALLTOKEN = (
    *("via", "with", "on", "using", "through", "in", "from", "at"),
    *("ask", "use", "what", "which", "does"),
)
_AFTER_ALLTOKEN = tuple(_COMMAND_WORDS.split("|"))
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
_SEPARATORS = (":", ",", ";", "—", "–")
_LEADING_OF = re.compile(r"(?:of|showing)\s+", re.IGNORECASE)
_LEADING_FOR = re.compile(r"(?:to|for)\s+", re.IGNORECASE)
_MODELS_TYPE_TAIL = re.compile(
    r"\s*(?:for|to|with)\s+(?:(?:making|generating|creating)\s+)?(?:an?\s+)?"
    r"(?P<type>chat|image|video)s?\b",
    re.IGNORECASE,
)
# Politeness around "/alltoken-models" is not a filter ("show alltoken models please").
_FILLER = frozenset({"please", "pls", "plz", "thanks", "thx", "now", "list", "all"})

# ---------------------------------------------------------------------------------------------
# Text helpers


def _drop(pattern: re.Pattern[str], text: str) -> str:
    """`text` without whatever `pattern` matches at its start."""
    m = pattern.match(text)
    return text[m.end() :] if m else text


def _clean(text: str) -> str:
    """Strip surrounding space and one leading separator (":", ",", a spaced dash)."""
    stripped = text.lstrip()
    if not stripped.startswith(_SEPARATORS):
        # No separator: _LEADING would match the leading space only (its \s is str.isspace).
        return stripped.rstrip()
    return _drop(_LEADING, text).rstrip()


def _split_first(text: str) -> tuple[str, str]:
    """(first word, rest) of already-stripped text; the rest keeps its inner whitespace."""
    if text[:1].isspace():
        return "", text.lstrip()  # not stripped after all: an empty first word, as ever
    parts = text.split(None, 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    return (parts[0] if parts else ""), ""


# Each command's `--options`, read from its spec once (building them per message was a
# measurable part of parsing a command).
_OPTIONS: dict[str, dict[str, bool]] = {}


def _flags(command: str, text: str) -> tuple[str, dict[str, str | bool]]:
    """`text` without its `--options`, and the options (the command's spec names them)."""
    options = _OPTIONS.get(command)
    if options is None:
        options = _OPTIONS[command] = spec_for(command).flags
    return split_flag_text(command, text, options, USAGE[command])


# ---------------------------------------------------------------------------------------------
# Text builders: the text after the trigger -> Command (or UsageError).


def _leading_model(body: str, ctx: RouterContext) -> tuple[str, str]:
    """(model, prompt) for a chat body whose first word may name the model."""
    first, after = _split_first(body)
    first = normalise_flag_token(first, ("model",))
    reject_single_dash("chat", first, ("model",), USAGE["chat"])
    flag = read_flag(first)
    if flag is not None and flag.name == "model":
        # Not in the seed syntax, but a natural slip; accepted only at the very front.
        value = flag.value
        if value is None:
            value, after = _split_first(after)
        model = chat_model(value, ctx)
    else:
        word = model_word(first)
        # A model only if known or model-shaped; hyphenated prose ("state-of-the-art",
        # "claude-like") fails both tests and stays in the prompt.
        if not word or not is_chat_model(word, ctx):
            return catalog.DEFAULT_CHAT_MODEL, body
        model = word.lower()
    if not after.strip():
        raise usage_error("chat", f"empty prompt (after the model {_show(model)})")
    return model, after


def _chat(rest: str, ctx: RouterContext, model: str | None = None) -> ChatCommand:
    body = _clean(rest)
    if model is None:
        model, body = _leading_model(body, ctx)
    return ChatCommand(prompt=check_prompt("chat", body), model=model)


def _with_flags(
    command: str, build: Callable[[Values, RouterContext], Command], positional: str
) -> Callable[[str, RouterContext], Command]:
    """A text builder: the options out of the text, the rest as the free-text value."""

    def from_text(rest: str, ctx: RouterContext) -> Command:
        text, flags = _flags(command, _clean(rest))
        return build({**flags, positional: text}, ctx)

    return from_text


_image = _with_flags("image", image_of, "prompt")
_search = _with_flags("search", search_of, "query")
_video = _with_flags("video", video_of, "prompt")


def _models(rest: str, ctx: RouterContext) -> ModelsCommand:
    text, flags = _flags("models", _clean(rest))
    kind = model_type(get(flags, "type"))
    filter_ = get(flags, "filter") or ""
    # Bare words are a convenience: "/alltoken-models image claude" is
    # --type=image --filter=claude.
    others: list[str] = []
    for word in text.split():
        bare = word.strip("?!.,;:…`*")
        as_type = MODEL_TYPES.get(bare.lower())
        if as_type is not None and kind is None:
            kind = as_type
        elif bare and bare.lower() not in _FILLER:
            others.append(bare)
    if others:
        if len(others) > 1 or filter_:
            raise usage_error(
                "models",
                f"unexpected text {_show(' '.join(others))}; filter ids with --filter=TEXT",
            )
        filter_ = others[0]
    return ModelsCommand(type=kind or "chat", filter=filter_)


def _cost(rest: str, ctx: RouterContext) -> CostCommand:
    text = _clean(rest)
    return cost_args([] if is_nothing(text) else text.split())


def _key(rest: str, ctx: RouterContext) -> KeyCommand:
    text = _clean(rest)
    if is_nothing(text):
        # No arguments: the handler asks for the key privately (DM / ephemeral / modal).
        return KeyCommand(action="prompt")
    return key_args(text.split())


def _help(rest: str, ctx: RouterContext) -> HelpCommand:
    first, _ = _split_first(_clean(rest))
    return HelpCommand(topic=help_topic(first))


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


def _nl_chat(m: re.Match[str], rest: str, ctx: RouterContext) -> Command | None:
    word = model_word(m.group("nl_model"))
    if not is_chat_model(word, ctx):
        if m.group("model_kw") is None:
            return None  # "ask alltoken with a question …" is prose, not a model choice
        raise usage_error("chat", f"unknown model {_show(word)}; see /alltoken-models")
    return _chat(rest, ctx, model=word.lower())


def _nl_models(m: re.Match[str], rest: str, ctx: RouterContext) -> Command | None:
    named = m.group("type_a") or m.group("type_b") or m.group("type_c")
    tail = _MODELS_TYPE_TAIL.match(rest)
    word = (named or (tail.group("type") if tail else None) or "chat").lower()
    return ModelsCommand(type=MODEL_TYPES.get(word, "chat"))


# Natural-language trigger -> its command; None declines it (the search goes on).
_NATURAL: dict[str, Callable[[re.Match[str], str, RouterContext], Command | None]] = {
    "nl_chat": _nl_chat,
    "nl_image": lambda m, rest, ctx: _image(_with_pre(m.group("image_pre"), rest), ctx),
    "nl_draw": lambda m, rest, ctx: _image(_with_pre(None, rest), ctx),
    "nl_video": lambda m, rest, ctx: _video(_with_pre(m.group("video_pre"), rest), ctx),
    "nl_search": lambda m, rest, ctx: _search(_drop(_LEADING_FOR, _clean(rest)), ctx),
    "nl_models": _nl_models,
    "nl_cost": lambda m, rest, ctx: CostCommand() if ctx.last_call_was_alltoken else None,
}


def _natural(m: re.Match[str], rest: str, ctx: RouterContext) -> Command | None:
    """The command for a natural-language trigger; None declines it (the search goes on)."""
    build = _NATURAL.get(m.lastgroup or "")
    return build(m, rest, ctx) if build else None


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
        raise usage_error(name, f"invalid arguments ({exc.error_count()} problem(s))") from None


# ---------------------------------------------------------------------------------------------
# Public API


def _may_trigger(lowered: str, ctx: RouterContext) -> bool:
    """False when no trigger can match ASCII `lowered`: a necessary condition, checked with
    string methods only (a regex scan costs microseconds; most chatter stops here)."""
    if (
        ctx.last_call_was_alltoken
        and "cost" in lowered
        and (("much" in lowered and "how" in lowered) or ("did" in lowered and "what" in lowered))
    ):
        return True
    at = lowered.find("alltoken")
    while at != -1:
        # "alltoken-chat", "alltoken_image": a command word right after one separator (what
        # the slower test below also finds, without copying the text around it).
        if lowered.startswith(_AFTER_ALLTOKEN, at + 9):
            return True
        if lowered[:at].rstrip().endswith(_BEFORE_ALLTOKEN):
            return True
        if lowered[at + 9 :].lstrip().startswith(_AFTER_ALLTOKEN):
            return True
        at = lowered.find("alltoken", at + 8)
    return False


def parse(text: str, ctx: RouterContext = DEFAULT_CONTEXT) -> Command | None:
    """The AllToken command in a chat message, None if there is none; UsageError if malformed."""
    if not text:
        return None
    lowered = text.lower()
    # Most channel traffic stops here: every trigger contains "alltoken", except the follow-up
    # "how much did that cost", which only counts right after an AllToken call.
    if "alltoken" not in lowered and not (ctx.last_call_was_alltoken and "cost" in lowered):
        return None
    # Case folding differs beyond ASCII (the regex matches "ſ" for "s"): only ASCII is
    # pre-checked further.
    if text.isascii() and not _may_trigger(lowered, ctx):
        return None
    # Undecodable input (lone surrogates) must not reach a backend's JSON encoder.
    text = scrub_surrogates(text)
    # search() from the last match's end, not finditer(): the same matches (lookbehinds still
    # see the text before `pos`, and no trigger matches empty), without building a scanner.
    m = _TRIGGER.search(text)
    while m is not None:
        command = _dispatch(m, text, ctx)
        if command is not None:
            return command
        m = _TRIGGER.search(text, m.end())
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
            raise usage_error(
                "help", f"unknown command {_show(first)}; use one of {', '.join(_BUILDERS)}"
            )
    else:
        return None
    try:
        return _BUILDERS[word](rest, ctx)
    except ValidationError as exc:
        raise usage_error(word, f"invalid arguments ({exc.error_count()} problem(s))") from None


def parse_options(
    spec: CommandSpec, values: Values, ctx: RouterContext = DEFAULT_CONTEXT
) -> BaseModel:
    """The command a platform's typed options describe, checked as its text would be.

    Each value is taken whole: `prompt="a poster reading --size=huge"` keeps its whole prompt.
    """
    build = FROM_VALUES.get(spec.key)
    if build is None or spec.family != FAMILY:
        raise ValueError(f"not an AllToken command spec: {spec.display}")
    cleaned = {k: scrub_surrogates(v) if isinstance(v, str) else v for k, v in values.items()}
    try:
        return build(cleaned, ctx)
    except ValidationError as exc:
        raise usage_error(spec.key, f"invalid arguments ({exc.error_count()} problem(s))") from None
