"""A command family: one backend's commands, as the core sees them.

Each family (one per folder under bot/backends/) says how to recognise its commands in text,
in platform slash commands and in typed options, which handler runs each command model, how its
failures read, which key services it has, and what it attaches when the bot is built (its
service, job kinds, button actions and private forms) through `Wiring`. The core only iterates
families; it never names a backend or its commands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.failures import FailureRenderer
from bot.core.grammar import ParseState
from bot.core.keys import KeyService

if TYPE_CHECKING:
    import httpx

    from bot.core.context import HandlerContext, ServiceRegistry, ThreadResumer
    from bot.core.jobs import JobRunner
    from bot.core.metrics import Metrics
    from bot.core.settings import Settings

Handler = Callable[[Any, "HandlerContext"], Awaitable[None]]
# (ctx of the click, button value) -> None
ActionHandler = Callable[["HandlerContext", str], Awaitable[None]]
# (ctx, submitted values) -> whether it succeeded
FormHandler = Callable[["HandlerContext", dict[str, str]], Awaitable[bool]]
TextParser = Callable[[str, ParseState], BaseModel | None]
SlashParser = Callable[[str, str, ParseState], BaseModel | None]
OptionsParser = Callable[[CommandSpec, Mapping[str, OptionValue], ParseState], BaseModel | None]


@dataclass
class Wiring:
    """What a family may attach to when the bot is built (never the bot itself)."""

    settings: Settings
    http: httpx.AsyncClient
    services: ServiceRegistry
    jobs: JobRunner
    metrics: Metrics
    actions: dict[str, ActionHandler]
    forms: dict[str, FormHandler]


@dataclass
class CommandFamily:
    """How one backend's commands are recognised, handled, worded and wired up."""

    name: str
    display_name: str
    parse: TextParser
    parse_slash: SlashParser
    # Platform slash commands this family owns, e.g. ("/openmarlin",).
    slash_commands: tuple[str, ...]
    handlers: dict[type[BaseModel], Handler]
    attach: Callable[[Wiring], None] | None = None
    # Cheap pre-check: a lower-cased message that contains none of these is not for this family.
    keywords: tuple[str, ...] = ()
    # Words whose parse depends on what the conversation did last ("cost" after an AllToken
    # call): only text with one of them has the conversation's stored state read first.
    state_keywords: tuple[str, ...] = ()
    # Text that spells one of the family's commands out ("openmarlin"): a usage error in such a
    # channel message is answered, while loose talk that merely mentions a keyword is not.
    markers: tuple[str, ...] = ()
    key_services: tuple[KeyService, ...] = ()
    # How this backend's failures read; None: the core's generic words.
    render_failure: FailureRenderer | None = None
    specs: tuple[CommandSpec, ...] = ()
    # Typed options (Discord) straight to a command, never re-tokenising free text.
    parse_options: OptionsParser | None = None
    # Suggestions for an option's `suggest` list ("models:chat"), from caches only.
    suggest: Callable[[str], list[str]] | None = None
    # What a plain reply in a thread the bot answered in becomes when nothing was noted for the
    # thread (e.g. a chat with the default model). The first family that has one owns threads.
    continue_thread: Callable[[str], BaseModel] | None = None
    # Rebuilds a thread continuation from its stored form (command, model), so a thread keeps
    # its model after a restart and on another replica; None for a form it does not know.
    resume_thread: ThreadResumer | None = None
    # Where users store this family's key privately, e.g. "`/alltoken-key`" (named in refusals).
    key_command: str = ""
    # How to get this family's help, e.g. "`/alltoken-help`" (named when text is not a command).
    help_command: str = ""
    # A line logged when the bot starts serving (TokenBot.start), e.g. which bases it uses.
    startup_note: Callable[[], str] | None = None
