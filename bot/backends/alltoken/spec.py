"""Typed AllToken commands: what the grammar produces and the handlers consume, and their specs.

`SPECS` declares each command once (usage line, description, typed options, privacy, help
topic); usage errors, `/alltoken-help` and the platforms' command lists read it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bot.backends.alltoken import catalog
from bot.core.command_spec import CommandSpec, OptionSpec, spec_named, usage_lines

# Re-exported until every importer uses bot.core.grammar's (there is only one UsageError).
from bot.core.grammar import UsageError as UsageError


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


# --- specs -----------------------------------------------------------------------------------

FAMILY = "alltoken"


def _choice(
    name: str, description: str, choices: tuple[str, ...], *, positional: bool = False
) -> OptionSpec:
    return OptionSpec(
        name=name, kind="choice", description=description, choices=choices, positional=positional
    )


def _text(
    name: str,
    description: str,
    *,
    positional: bool = False,
    required: bool = False,
    suggest: str | None = None,
    secret: bool = False,
) -> OptionSpec:
    return OptionSpec(
        name=name,
        description=description,
        positional=positional,
        required=required,
        suggest=suggest,
        secret=secret,
    )


_MAX_TOKENS = 10**12

SPECS: tuple[CommandSpec, ...] = (
    CommandSpec(
        family=FAMILY,
        name="chat",
        path=("alltoken-chat",),
        usage="/alltoken-chat [model] <prompt>",
        description=f"Chat with an AllToken model (default {catalog.DEFAULT_CHAT_MODEL}), streamed",
        options=(
            _text("prompt", "What to ask", positional=True, required=True),
            _text(
                "model",
                f"Model id (default {catalog.DEFAULT_CHAT_MODEL})",
                suggest="models:chat",
            ),
        ),
        topic="chat",
        model=ChatCommand,
        examples=("/alltoken-chat claude-sonnet-4-6 what is 2+2", "alltoken chat hi"),
    ),
    CommandSpec(
        family=FAMILY,
        name="image",
        path=("alltoken-image",),
        usage="/alltoken-image <prompt> [--size=" + "|".join(catalog.IMAGE_SIZES) + "] "
        "[--quality=" + "|".join(catalog.IMAGE_QUALITIES) + "] "
        f"[--model={catalog.DEFAULT_IMAGE_MODEL}]",
        description="Generate an image with AllToken",
        options=(
            _text("prompt", "What to draw", positional=True, required=True),
            # The text form also takes WIDTHxHEIGHT; a platform's list offers the named sizes.
            _choice("size", "Image size (or WIDTHxHEIGHT)", catalog.IMAGE_SIZES),
            _choice("quality", "Image quality", catalog.IMAGE_QUALITIES),
            _choice("model", "Image model", catalog.IMAGE_MODELS),
        ),
        topic="image",
        model=ImageCommand,
        examples=("/alltoken-image a lighthouse at dusk --size=1536x1024 --quality=high",),
    ),
    CommandSpec(
        family=FAMILY,
        name="video",
        path=("alltoken-video",),
        usage=f"/alltoken-video <prompt> [--model={catalog.DEFAULT_VIDEO_MODEL}] "
        f"[--duration={catalog.DEFAULT_VIDEO_DURATION}] "
        "[--ratio=" + "|".join(catalog.VIDEO_RATIOS) + "] "
        "[--resolution=" + "|".join(catalog.VIDEO_RESOLUTIONS) + "]",
        description="Generate a video with AllToken",
        options=(
            _text("prompt", "What happens in the video", positional=True, required=True),
            _text(
                "model",
                f"Video model (default {catalog.DEFAULT_VIDEO_MODEL})",
                suggest="models:video",
            ),
            OptionSpec(
                name="duration",
                kind="int",
                description="Seconds; -1 lets the model choose (the range depends on the model)",
                # The widest any model may accept; the grammar checks the model's own range.
                min_value=-1,
                max_value=60,
            ),
            _choice("ratio", "Aspect ratio", catalog.VIDEO_RATIOS),
            _choice("resolution", "Resolution", catalog.VIDEO_RESOLUTIONS),
        ),
        topic="video",
        model=VideoCommand,
        examples=("/alltoken-video a drone shot over a harbour --duration=8 --ratio=9:16",),
    ),
    CommandSpec(
        family=FAMILY,
        name="search",
        path=("alltoken-search",),
        usage=f"/alltoken-search [--model={catalog.DEFAULT_SEARCH_MODEL}] <query>",
        description="Answer with web search (DeepSeek and Qwen models)",
        options=(
            _text("query", "What to search the web for", positional=True, required=True),
            _choice("model", "A search-capable model", catalog.SEARCH_MODELS),
        ),
        topic="search",
        model=SearchCommand,
        examples=("/alltoken-search --model=qwen3.6-flash latest python release",),
    ),
    CommandSpec(
        family=FAMILY,
        name="models",
        path=("alltoken-models",),
        usage="/alltoken-models [--type=chat|image|video] [--filter=TEXT]",
        description="List AllToken's models",
        options=(
            _choice("type", "Which models", ("chat", "image", "video")),
            _text("filter", "Only ids containing this text"),
        ),
        topic="models",
        model=ModelsCommand,
        examples=("/alltoken-models --type=image", "what alltoken models are available"),
    ),
    CommandSpec(
        family=FAMILY,
        name="cost",
        path=("alltoken-cost",),
        usage="/alltoken-cost [<model> <prompt_tokens> <completion_tokens>]",
        description="Cost of your last AllToken call here, or of given token counts",
        options=(
            OptionSpec(
                name="model",
                description="Model id (leave everything empty for your last call here)",
                positional=True,
                suggest="models:chat",
            ),
            OptionSpec(
                name="prompt_tokens",
                kind="int",
                positional=True,
                description="Prompt tokens",
                min_value=0,
                max_value=_MAX_TOKENS,
            ),
            OptionSpec(
                name="completion_tokens",
                kind="int",
                positional=True,
                description="Completion tokens",
                min_value=0,
                max_value=_MAX_TOKENS,
            ),
        ),
        topic="cost",
        model=CostCommand,
        examples=("/alltoken-cost gpt-5.4-mini 1200 300", "/alltoken-cost"),
    ),
    CommandSpec(
        family=FAMILY,
        name="key",
        path=("alltoken-key",),
        usage="/alltoken-key set <key> | remove | status",
        description="Store, check or remove your AllToken key (alone: a private form)",
        options=(
            _choice(
                "action",
                "Leave empty to enter your key in a private form",
                ("set", "remove", "status"),
                positional=True,
            ),
            _text("key", "Your AllToken key (sk-at-…)", positional=True, secret=True),
        ),
        private=True,
        topic="key",
        model=KeyCommand,
        examples=("/alltoken-key status", "/alltoken-key"),
    ),
    CommandSpec(
        family=FAMILY,
        name="help",
        path=("alltoken-help",),
        usage="/alltoken-help [chat|image|video|search|models|cost|key]",
        description="What tokenbot can do",
        options=(
            _choice(
                "topic",
                "One command's details",
                ("chat", "image", "video", "search", "models", "cost", "key"),
                positional=True,
            ),
        ),
        topic="help",
        model=HelpCommand,
        examples=("/alltoken-help", "/alltoken-help image"),
    ),
)

# Usage lines by command name: what usage errors carry.
USAGE: dict[str, str] = usage_lines(SPECS)


def spec_for(name: str) -> CommandSpec:
    """The spec of the AllToken command called `name` ("chat", "image", …)."""
    return spec_named(SPECS, name)


def usage_error(command: str, problem: str) -> UsageError:
    """A UsageError for an AllToken command, carrying that command's usage line."""
    return UsageError(command, problem, USAGE.get(command, ""))
