"""Option values -> AllToken command: the checks the text grammar and typed options share.

`grammar.py` finds a command and its options in text; a platform's typed options (Discord slash
options) arrive as values. Both end here, so a value is checked the same way however it came,
and a typed value is never split into words (a prompt may contain "--size=huge").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from pydantic import SecretStr

from bot.backends.alltoken import catalog
from bot.backends.alltoken.catalog import DurationRange
from bot.backends.alltoken.spec import (
    FAMILY,
    USAGE,
    ChatCommand,
    Command,
    CostCommand,
    HelpCommand,
    ImageCommand,
    KeyCommand,
    ModelsCommand,
    SearchCommand,
    VideoCommand,
    usage_error,
)
from bot.core import key_shapes
from bot.core.command_spec import OptionValue
from bot.core.grammar import ParseState, show_input

_DEFAULT_STATE: Final = ParseState()


@dataclass(frozen=True)
class RouterContext:
    """What the grammar may know beyond the text: live model data and the conversation state."""

    # The cached live chat model list (lower-cased ids) when available, else the catalog's.
    chat_models: frozenset[str] = frozenset(catalog.CHAT_MODELS)
    # Live video capabilities; they override catalog.VIDEO_DURATIONS.
    video_durations: Mapping[str, DurationRange] = field(default_factory=dict)
    # The previous bot action in this conversation was an AllToken call ("how much did that cost").
    last_call_was_alltoken: bool = False
    # The clock for checks such as "that expiry date is already past"; tests pin it.
    now: Callable[[], datetime] = _DEFAULT_STATE.now

    @classmethod
    def from_state(
        cls,
        state: ParseState,
        chat_models: frozenset[str] | None = None,
        video_durations: Mapping[str, DurationRange] | None = None,
    ) -> RouterContext:
        """The context for one message: the shared parse state plus AllToken's cached models."""
        return cls(
            chat_models=frozenset(catalog.CHAT_MODELS) if chat_models is None else chat_models,
            video_durations=video_durations or {},
            last_call_was_alltoken=state.recent_family == FAMILY,
            now=state.now,
        )


DEFAULT_CONTEXT: Final = RouterContext()
# A typed option set, as a platform delivers it (Discord slash options).
Values = Mapping[str, OptionValue]
ModelType = Literal["chat", "image", "video"]
KeyAction = Literal["set", "remove", "status"]

# ---------------------------------------------------------------------------------------------
# Values

# Text that is only punctuation counts as no arguments ("alltoken cost?", "/alltoken-help.").
_NOTHING = re.compile(r"[\s?!.,;:…]*")
_SIZE = re.compile(r"([0-9]{1,5})\s*[x×*]\s*([0-9]{1,5})")
_DURATION = re.compile(r"(-?[0-9]{1,6})\s*(?:s|secs?|seconds?)?")
_COUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+")
_MODEL_ARG = re.compile(r"[A-Za-z][A-Za-z0-9._:/-]*")
_MIN_SIDE, _MAX_SIDE = 256, 4096
_MAX_TOKENS = 10**12  # far beyond any real call; also keeps int() away from huge digit strings
MODEL_TYPES: dict[str, ModelType] = {
    "chat": "chat",
    "chats": "chat",
    "image": "image",
    "images": "image",
    "video": "video",
    "videos": "video",
}
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
# Small checks

_show = show_input


def is_nothing(text: str) -> bool:
    """Whether `text` is only space and punctuation (no arguments)."""
    return _NOTHING.fullmatch(text) is not None


def check_prompt(command: str, text: str, what: str = "prompt") -> str:
    """`text` stripped, when it is a non-empty prompt within the length limit."""
    prompt = text.strip()
    if not prompt:
        raise usage_error(command, f"empty {what}")
    if len(prompt) > catalog.MAX_PROMPT_CHARS:
        raise usage_error(
            command,
            f"{what} is too long ({len(prompt):,} characters; "
            f"the limit is {catalog.MAX_PROMPT_CHARS:,})",
        )
    return prompt


def is_chat_model(word: str, ctx: RouterContext) -> bool:
    """Whether `word` is a known chat model or has the shape of one."""
    return (
        word.lower() in ctx.chat_models
        or word in ctx.chat_models
        or catalog.looks_like_model_id(word)
    )


def model_word(word: str) -> str:
    """A model id as typed, without the `code`/*bold* marks and trailing ":" or ","."""
    # Slack users wrap ids in `code` or *bold* and follow them with ":" or ",".
    return word.strip("`*:,")


def _one_of(command: str, flag: str, value: str, allowed: tuple[str, ...]) -> str:
    lowered = value.lower()
    if lowered in allowed:
        return lowered
    raise usage_error(command, f"--{flag} must be one of {', '.join(allowed)} (got {_show(value)})")


def get(values: Values, name: str) -> str | None:
    """A typed or text option as text; an empty value counts as not given."""
    value = values.get(name)
    return None if value is None or value == "" else str(value)


def _count(value: str, what: str) -> int:
    if not _COUNT.fullmatch(value):
        raise usage_error("cost", f"{what} must be a whole number ≥ 0 (got {_show(value)})")
    digits = value.replace(",", "")
    if len(digits) > 13 or int(digits) > _MAX_TOKENS:
        raise usage_error("cost", f"{what} is unreasonably large (got {_show(value)})")
    return int(digits)


# ---------------------------------------------------------------------------------------------
# One builder per command: option values -> Command (or UsageError)


def chat_model(value: str, ctx: RouterContext) -> str:
    """A chat model id (lower-cased), or the usage error naming what is wrong."""
    word = model_word(value)
    if not word:
        raise usage_error("chat", "--model needs a value (--model=MODEL)")
    if not is_chat_model(word, ctx):
        raise usage_error("chat", f"unknown model {_show(word)}; see /alltoken-models")
    return word.lower()


def _chat_of(values: Values, ctx: RouterContext) -> ChatCommand:
    model = get(values, "model")
    return ChatCommand(
        prompt=check_prompt("chat", get(values, "prompt") or ""),
        model=chat_model(model, ctx) if model else catalog.DEFAULT_CHAT_MODEL,
    )


def _size(value: str) -> str:
    lowered = value.lower()
    if lowered in catalog.IMAGE_SIZES:
        return lowered
    m = _SIZE.fullmatch(lowered)
    if m and all(_MIN_SIDE <= int(side) <= _MAX_SIDE for side in m.groups()):
        return f"{int(m.group(1))}x{int(m.group(2))}"
    raise usage_error(
        "image",
        f"--size must be one of {', '.join(catalog.IMAGE_SIZES)} or WIDTHxHEIGHT with each side "
        f"{_MIN_SIDE}-{_MAX_SIDE} (got {_show(value)})",
    )


def image_of(values: Values, ctx: RouterContext) -> ImageCommand:
    """`/alltoken-image` from its option values."""
    prompt = check_prompt("image", get(values, "prompt") or "")
    size, quality, model = get(values, "size"), get(values, "quality"), get(values, "model")
    return ImageCommand(
        prompt=prompt,
        size=_size(size) if size else catalog.DEFAULT_IMAGE_SIZE,
        quality=_one_of("image", "quality", quality, catalog.IMAGE_QUALITIES)
        if quality
        else catalog.DEFAULT_IMAGE_QUALITY,
        model=_one_of("image", "model", model, catalog.IMAGE_MODELS)
        if model
        else catalog.DEFAULT_IMAGE_MODEL,
    )


def _video_model(value: str, ctx: RouterContext) -> str:
    if value in ctx.video_durations:
        return value
    lowered = value.lower()
    if lowered in catalog.VIDEO_MODELS or lowered in ctx.video_durations:
        return lowered
    known = sorted({*catalog.VIDEO_MODELS, *ctx.video_durations})
    raise usage_error("video", f"--model must be one of {', '.join(known)} (got {_show(value)})")


def _duration(value: str | None, model: str, allowed: DurationRange) -> int:
    if value is None:
        # The default must not turn a flag-less request into an error for a model whose live
        # range excludes it; fall back to that model's shortest duration.
        default = catalog.DEFAULT_VIDEO_DURATION
        return default if allowed.allows(default) else allowed.min
    m = _DURATION.fullmatch(value.strip().lower())
    if m is None:
        raise usage_error(
            "video",
            f"--duration must be a whole number of seconds, {allowed.describe()} for {model} "
            f"(got {_show(value)})",
        )
    duration = int(m.group(1))
    if not allowed.allows(duration):
        raise usage_error(
            "video", f"--duration for {model} must be {allowed.describe()} (got {duration})"
        )
    return duration


def video_of(values: Values, ctx: RouterContext) -> VideoCommand:
    """`/alltoken-video` from its option values (the duration checked against the model's range)."""
    prompt = check_prompt("video", get(values, "prompt") or "")
    raw_model = get(values, "model")
    model = _video_model(raw_model, ctx) if raw_model else catalog.DEFAULT_VIDEO_MODEL
    allowed = catalog.duration_range(model, dict(ctx.video_durations))
    duration = _duration(get(values, "duration"), model, allowed)
    ratio = get(values, "ratio")
    resolution = get(values, "resolution")
    if resolution is not None and resolution.isdecimal():
        resolution += "p"  # "1080" is an obvious spelling of "1080p"
    return VideoCommand(
        prompt=prompt,
        model=model,
        duration=duration,
        ratio=_one_of("video", "ratio", ratio, catalog.VIDEO_RATIOS)
        if ratio
        else catalog.DEFAULT_VIDEO_RATIO,
        resolution=_one_of("video", "resolution", resolution, catalog.VIDEO_RESOLUTIONS)
        if resolution
        else catalog.DEFAULT_VIDEO_RESOLUTION,
    )


def search_of(values: Values, ctx: RouterContext) -> SearchCommand:
    """`/alltoken-search` from its option values (a search-capable model only)."""
    query = check_prompt("search", get(values, "query") or "", what="query")
    value = get(values, "model")
    if value is None:
        return SearchCommand(query=query, model=catalog.DEFAULT_SEARCH_MODEL)
    if not catalog.supports_search(value):
        raise usage_error(
            "search",
            f"--model {_show(value)} does not support web search on AllToken; use one of "
            f"{', '.join(catalog.SEARCH_MODELS)} (default {catalog.DEFAULT_SEARCH_MODEL})",
        )
    return SearchCommand(query=query, model=value.lower())


def model_type(value: str | None) -> ModelType | None:
    """ "chat", "image" or "video" (plurals too), None when not given."""
    if value is None:
        return None
    kind = MODEL_TYPES.get(value.lower())
    if kind is None:
        raise usage_error(
            "models", f"--type must be one of chat, image, video (got {_show(value)})"
        )
    return kind


def _models_of(values: Values, ctx: RouterContext) -> ModelsCommand:
    kind = model_type(get(values, "type"))
    return ModelsCommand(type=kind or "chat", filter=get(values, "filter") or "")


def cost_args(args: list[str]) -> CostCommand:
    """`/alltoken-cost` from its arguments: none (the last call) or model and two counts."""
    if not args:
        return CostCommand()
    if len(args) != 3:
        raise usage_error(
            "cost",
            "give a model, prompt tokens and completion tokens, or nothing for the last call "
            f"(got {len(args)} argument{'' if len(args) == 1 else 's'})",
        )
    model = model_word(args[0])
    if not _MODEL_ARG.fullmatch(model) or key_shapes.contains_key(model):
        raise usage_error("cost", f"the first argument must be a model id (got {_show(args[0])})")
    return CostCommand(
        model=model.lower(),
        prompt_tokens=_count(args[1], "prompt_tokens"),
        completion_tokens=_count(args[2], "completion_tokens"),
    )


def _cost_of(values: Values, ctx: RouterContext) -> CostCommand:
    given = (get(values, n) for n in ("model", "prompt_tokens", "completion_tokens"))
    return cost_args([v for v in given if v is not None])


def key_args(args: list[str]) -> KeyCommand:
    """`/alltoken-key` from its arguments: an action, and for `set` one AllToken key."""
    action = _KEY_ACTIONS.get(args[0].lower().rstrip(":"))
    if action is None:
        raise usage_error("key", f"unknown action {_show(args[0])}; use set, remove or status")
    if action != "set":
        if not is_nothing(" ".join(args[1:])):
            raise usage_error("key", f"{action} takes no arguments")
        return KeyCommand(action=action)
    if len(args) < 2:
        raise usage_error("key", "missing key: /alltoken-key set sk-at-…")
    if len(args) > 2:
        # Never echo this text: it may be a key split by a stray space.
        raise usage_error("key", "give exactly one key after 'set', with nothing after it")
    key = args[1].strip("`'\"<>")
    service = key_shapes.key_service(key)
    if service is None:
        raise usage_error(
            "key",
            "that does not look like an AllToken key "
            "(they start with sk-at- followed by at least 12 characters)",
        )
    if service != "alltoken":
        raise usage_error(
            "key",
            f"that is {_SERVICE_NAMES[service]} key, not an AllToken key "
            "(AllToken keys start with sk-at-)",
        )
    return KeyCommand(action="set", key=SecretStr(key))


def _key_of(values: Values, ctx: RouterContext) -> KeyCommand:
    action, key = get(values, "action"), get(values, "key")
    if key is None and action in (None, "set"):
        return KeyCommand(action="prompt")  # a key never travels as a visible option
    # A typed key is one value: a space inside it is an error, not two arguments.
    return key_args([action or "set", *([key] if key is not None else [])])


def help_topic(word: str) -> str | None:
    """The help topic `word` names ("image", "/alltoken-image"), else None."""
    topic = word.lower().strip("`*?.!,:/")
    topic = topic.removeprefix("alltoken-").removeprefix("alltoken_")
    return topic if topic in _HELP_TOPICS else None


def _help_of(values: Values, ctx: RouterContext) -> HelpCommand:
    return HelpCommand(topic=help_topic(get(values, "topic") or ""))


# The same commands from typed options: the same checks, but a value is never split into words.
FROM_VALUES: dict[str, Callable[[Values, RouterContext], Command]] = {
    "chat": _chat_of,
    "image": image_of,
    "video": video_of,
    "search": search_of,
    "models": _models_of,
    "cost": _cost_of,
    "key": _key_of,
    "help": _help_of,
}
