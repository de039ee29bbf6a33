"""Typed commands: what the router produces from text and the handlers consume.

Also the flag spelling all three command families share (`normalise_flag_token`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bot.backends.alltoken import catalog

USAGE: dict[str, str] = {
    "chat": "/alltoken-chat [model] <prompt>",
    "image": "/alltoken-image <prompt> [--size=1024x1024|1536x1024|1024x1536|auto] "
    "[--quality=low|medium|high|auto] [--model=gpt-image-2]",
    "video": "/alltoken-video <prompt> [--model=seedance-1.5-pro] [--duration=5] "
    "[--ratio=16:9|9:16|4:3|3:4|21:9|1:1|adaptive] [--resolution=480p|720p|1080p]",
    "search": "/alltoken-search [--model=deepseek-v4-pro] <query>",
    "models": "/alltoken-models [--type=chat|image|video] [--filter=TEXT]",
    "cost": "/alltoken-cost [<model> <prompt_tokens> <completion_tokens>]",
    "key": "/alltoken-key set <key> | remove | status",
    "help": "/alltoken-help",
}


# Flag spelling. Chat clients slip invisible characters into "--size=auto" (a zero-width space
# pasted along), autocorrect turns "--" into an em dash and CJK keyboards type a fullwidth "＝";
# unmatched, each would silently move the flag into the prompt. Shared by all three families.

_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff"
_ZERO_WIDTH = re.compile(f"[{_ZERO_WIDTH_CHARS}]")
# What a flag can start with once zero-width characters are gone: "-", an en or em dash, or the
# fullwidth hyphen-minus (NFKC makes it "-").
_FLAG_STARTS = frozenset("-\u2013\u2014\uff0d")
_FLAG_EQUALS = re.compile("[=\uff1d]")
_FLAG_HEAD = re.compile(r"(?P<dash>--|[\u2013\u2014])(?P<name>[A-Za-z][A-Za-z0-9_-]*)")
_NON_SPACE = re.compile(r"\S+")


def normalise_flag_token(token: str, known: Collection[str] | None = None) -> str:
    """`token` spelled as a plain flag ("--size=auto") when it is one, else unchanged.

    Zero-width characters around the name go, the name and "=" are NFKC-normalised, and an em
    or en dash counts as "--" when the name is in `known` (any name when `known` is None).
    """
    if token.lstrip(_ZERO_WIDTH_CHARS)[:1] not in _FLAG_STARTS:
        return token  # the common case: a plain word
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


class UsageError(ValueError):
    """Bad input for a recognised command; carries the command's usage line."""

    def __init__(self, command: str, problem: str) -> None:
        self.command = command
        self.problem = problem
        self.usage = USAGE.get(command, "")
        super().__init__(f"{problem} — usage: {self.usage}")


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class ChatCommand(_Command):
    """Stream a chat completion."""

    kind: Literal["chat"] = "chat"
    prompt: str
    model: str = catalog.DEFAULT_CHAT_MODEL


class ImageCommand(_Command):
    """Generate one image asynchronously."""

    kind: Literal["image"] = "image"
    prompt: str
    size: str = catalog.DEFAULT_IMAGE_SIZE
    quality: str = catalog.DEFAULT_IMAGE_QUALITY
    model: str = catalog.DEFAULT_IMAGE_MODEL


class VideoCommand(_Command):
    """Generate a video asynchronously."""

    kind: Literal["video"] = "video"
    prompt: str
    model: str = catalog.DEFAULT_VIDEO_MODEL
    duration: int = catalog.DEFAULT_VIDEO_DURATION
    ratio: str = catalog.DEFAULT_VIDEO_RATIO
    resolution: str = catalog.DEFAULT_VIDEO_RESOLUTION


class SearchCommand(_Command):
    """Answer with web search (DeepSeek/Qwen only)."""

    kind: Literal["search"] = "search"
    query: str
    model: str = catalog.DEFAULT_SEARCH_MODEL


class ModelsCommand(_Command):
    """List models of one type, optionally filtered by substring."""

    kind: Literal["models"] = "models"
    type: Literal["chat", "image", "video"] = "chat"
    filter: str = ""


class CostCommand(_Command):
    """Cost of explicit token counts, or (no arguments) of the last AllToken call here."""

    kind: Literal["cost"] = "cost"
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class KeyCommand(_Command):
    """Set, remove or inspect the caller's stored key. `prompt` asks for it privately."""

    kind: Literal["key"] = "key"
    action: Literal["set", "remove", "status", "prompt"]
    service: Literal["alltoken", "openmarlin", "openclaw_token", "openclaw_proxy"] = "alltoken"
    key: SecretStr | None = None


class HelpCommand(_Command):
    """Show what tokenbot can do."""

    kind: Literal["help"] = "help"
    topic: str | None = None


Command = Annotated[
    ChatCommand
    | ImageCommand
    | VideoCommand
    | SearchCommand
    | ModelsCommand
    | CostCommand
    | KeyCommand
    | HelpCommand,
    Field(discriminator="kind"),
]
