"""The slash-command tree, built from the families' slash commands.

Each option set is turned back into the console's text grammar ("a cat --size=1024x1024") and
handed to the core as `Inbound(command="/alltoken-image", text=...)`, so the router validates
what Discord sent exactly as it validates typed text. AllToken's commands get typed options,
choices and autocomplete; any other family's command (`/openmarlin`, `/openclaw-token`, and
whatever comes next) gets one free-text `text` option with the same grammar as the console.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import discord
from discord import app_commands

from adapters.discord.guard import log_crash, tell_interaction
from adapters.discord.render import inert
from bot.backends.alltoken import catalog
from bot.core.keys import SERVICE_NAMES

if TYPE_CHECKING:
    from bot.core.app import TokenBot
log = logging.getLogger(__name__)

MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100
KEY_COMMAND = "alltoken-key"
# Widest video duration any model may accept (-1 = the model picks); the router checks the
# chosen model's own range.
DURATION_MIN, DURATION_MAX = -1, 60
MAX_TOKENS = 10**12


class SlashRunner(Protocol):
    """What the tree calls back into (the adapter)."""

    bot: TokenBot

    async def run_slash(
        self, interaction: discord.Interaction, command: str, text: str, *, defer: bool = True
    ) -> None:
        """Acknowledge, then hand the command to the core."""

    def model_names(self, kind: str) -> list[str]:
        """Model ids for autocomplete, from the cache only (never the network)."""


# --- options -> text grammar (pure) -----------------------------------------------------------


def _flag(name: str, value: object) -> str:
    return f"--{name}={value}" if value is not None and value != "" else ""


def _join(*bits: str) -> str:
    return " ".join(b for b in bits if b)


def chat_text(prompt: str, model: str | None = None) -> str:
    """`--model=X prompt` (the router accepts a leading --model and rejects unknown ids)."""
    return _join(_flag("model", model), prompt)


def image_text(
    prompt: str, size: str | None = None, quality: str | None = None, model: str | None = None
) -> str:
    """`prompt --size=… --quality=… --model=…`."""
    return _join(prompt, _flag("size", size), _flag("quality", quality), _flag("model", model))


def video_text(
    prompt: str,
    model: str | None = None,
    duration: int | None = None,
    ratio: str | None = None,
    resolution: str | None = None,
) -> str:
    """`prompt --model=… --duration=… --ratio=… --resolution=…`."""
    return _join(
        prompt,
        _flag("model", model),
        _flag("duration", duration),
        _flag("ratio", ratio),
        _flag("resolution", resolution),
    )


def search_text(query: str, model: str | None = None) -> str:
    """`--model=… query`."""
    return _join(_flag("model", model), query)


def models_text(type_: str | None = None, filter_: str | None = None) -> str:
    """`--type=… --filter=…`."""
    return _join(_flag("type", type_), _flag("filter", filter_))


def cost_text(
    model: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> str:
    """`model prompt_tokens completion_tokens`, or nothing for the last call (router checks)."""
    return _join(
        *(str(v) for v in (model, prompt_tokens, completion_tokens) if v is not None and v != "")
    )


def filter_choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Up to 25 names containing what was typed so far (prefix matches first)."""
    typed = current.strip().lower()
    hits = [n for n in dict.fromkeys(names) if typed in n.lower() and len(n) <= MAX_CHOICE_CHARS]
    hits.sort(key=lambda n: (not n.lower().startswith(typed), n))
    # Model ids come from the backend: the shown name is made inert, the value stays exact.
    return [
        app_commands.Choice(name=inert(n)[:MAX_CHOICE_CHARS], value=n) for n in hits[:MAX_CHOICES]
    ]


def failed_choices(ref: str, current: str) -> list[app_commands.Choice[str]]:
    """What autocomplete shows when it failed: the error's ref, keeping what was typed."""
    name = f"Something went wrong (ref {ref}); type the model id instead"
    return [app_commands.Choice(name=name[:MAX_CHOICE_CHARS], value=current[:100] or "?")]


def _choices(values: tuple[str, ...]) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=v, value=v) for v in values[:MAX_CHOICES]]


# --- the tree --------------------------------------------------------------------------------

Callback = Callable[..., Coroutine[Any, Any, None]]
Complete = Callable[[discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]


def _alltoken_commands(runner: SlashRunner) -> list[app_commands.Command[Any, ..., None]]:
    """AllToken's commands with typed options."""

    def models_of(kind: str) -> Complete:
        async def complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            try:
                return filter_choices(runner.model_names(kind), current)
            except Exception as exc:
                return failed_choices(
                    log_crash(log, f"autocomplete of {kind} models", exc), current
                )

        return complete

    @app_commands.describe(prompt="What to ask", model="Model id (default gpt-5.4-mini)")
    @app_commands.autocomplete(model=models_of("chat"))
    async def chat(interaction: discord.Interaction, prompt: str, model: str | None = None) -> None:
        await runner.run_slash(interaction, "/alltoken-chat", chat_text(prompt, model))

    @app_commands.describe(prompt="What to draw", size="Image size", quality="Image quality")
    @app_commands.choices(
        size=_choices(catalog.IMAGE_SIZES),
        quality=_choices(catalog.IMAGE_QUALITIES),
        model=_choices(catalog.IMAGE_MODELS),
    )
    async def image(
        interaction: discord.Interaction,
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        model: str | None = None,
    ) -> None:
        await runner.run_slash(
            interaction, "/alltoken-image", image_text(prompt, size, quality, model)
        )

    @app_commands.describe(
        prompt="What happens in the video",
        model="Video model (default seedance-1.5-pro)",
        duration="Seconds; -1 lets the model choose (the range depends on the model)",
        ratio="Aspect ratio",
        resolution="Resolution",
    )
    @app_commands.autocomplete(model=models_of("video"))
    @app_commands.choices(
        ratio=_choices(catalog.VIDEO_RATIOS), resolution=_choices(catalog.VIDEO_RESOLUTIONS)
    )
    async def video(
        interaction: discord.Interaction,
        prompt: str,
        model: str | None = None,
        duration: app_commands.Range[int, DURATION_MIN, DURATION_MAX] | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
    ) -> None:
        await runner.run_slash(
            interaction, "/alltoken-video", video_text(prompt, model, duration, ratio, resolution)
        )

    @app_commands.describe(query="What to search the web for", model="A search-capable model")
    @app_commands.choices(model=_choices(catalog.SEARCH_MODELS))
    async def search(
        interaction: discord.Interaction, query: str, model: str | None = None
    ) -> None:
        await runner.run_slash(interaction, "/alltoken-search", search_text(query, model))

    @app_commands.describe(type="Which models", filter="Only ids containing this text")
    @app_commands.choices(type=_choices(("chat", "image", "video")))
    async def models(
        interaction: discord.Interaction, type: str | None = None, filter: str | None = None
    ) -> None:
        await runner.run_slash(interaction, "/alltoken-models", models_text(type, filter))

    @app_commands.describe(
        model="Model id (leave everything empty for your last call here)",
        prompt_tokens="Prompt tokens",
        completion_tokens="Completion tokens",
    )
    @app_commands.autocomplete(model=models_of("chat"))
    async def cost(
        interaction: discord.Interaction,
        model: str | None = None,
        prompt_tokens: app_commands.Range[int, 0, MAX_TOKENS] | None = None,
        completion_tokens: app_commands.Range[int, 0, MAX_TOKENS] | None = None,
    ) -> None:
        await runner.run_slash(
            interaction, "/alltoken-cost", cost_text(model, prompt_tokens, completion_tokens)
        )

    @app_commands.describe(action="Leave empty to enter your key in a private form")
    @app_commands.choices(action=_choices(("status", "remove")))
    async def key(interaction: discord.Interaction, action: str | None = None) -> None:
        # No defer: a modal must be the interaction's first response.
        await runner.run_slash(interaction, "/alltoken-key", action or "", defer=False)

    async def help_(interaction: discord.Interaction) -> None:
        await runner.run_slash(interaction, "/alltoken-help", "")

    specs: list[tuple[str, str, Callback]] = [
        ("alltoken-chat", "Chat with an AllToken model (streamed)", chat),
        ("alltoken-image", "Generate an image with AllToken", image),
        ("alltoken-video", "Generate a video with AllToken", video),
        ("alltoken-search", "Answer with web search (DeepSeek and Qwen models)", search),
        ("alltoken-models", "List AllToken's models", models),
        ("alltoken-cost", "Cost of your last AllToken call, or of given token counts", cost),
        ("alltoken-key", "Store, check or remove your AllToken key (private form)", key),
        ("alltoken-help", "What tokenbot can do", help_),
    ]
    return [
        app_commands.Command(name=name, description=description, callback=callback)
        for name, description, callback in specs
    ]


def _free_text_command(
    runner: SlashRunner, name: str, family: str
) -> app_commands.Command[Any, ..., None]:
    """A family command with one `text` option holding what one would type after it in chat."""

    @app_commands.describe(text=f"Same text as after /{name} in a message; try `help`")
    async def run(interaction: discord.Interaction, text: str | None = None) -> None:
        await runner.run_slash(interaction, f"/{name}", text or "")

    label = SERVICE_NAMES.get(family, family.replace("_", " "))
    return app_commands.Command(
        name=name, description=f"{label}: the same commands as in chat"[:100], callback=run
    )


def build_tree(client: discord.Client, runner: SlashRunner) -> app_commands.CommandTree:
    """The command tree for every slash command the bot's families own, in their order."""
    tree: app_commands.CommandTree = app_commands.CommandTree(client)
    typed = {cmd.name: cmd for cmd in _alltoken_commands(runner)}
    family_of = {
        slash.lstrip("/").lower(): family.name
        for family in runner.bot.families
        for slash in family.slash_commands
    }
    for slash in runner.bot.slash_commands:
        name = slash.lstrip("/").lower()
        command = typed.get(name) or _free_text_command(runner, name, family_of.get(name, name))
        tree.add_command(command)

    @tree.error
    async def on_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        # Whatever failed around a command's callback (options Discord sent that don't fit the
        # tree, a stale command): the person still gets an answer with the logged ref.
        data: dict[str, Any] = dict(interaction.data or {})
        what = f"slash command {data.get('name', '?')}"
        await tell_interaction(interaction, log_crash(log, what, error))

    return tree
