"""A command family: one backend's commands, as the app sees them.

Each family (AllToken, OpenMarlin, OpenClaw Token) says how to recognise its commands in text
and in platform slash commands, which handler runs each command model, and what it registers
when the bot is built (its service, job kinds, button actions and private forms). The app only
iterates families; it never names a backend's commands itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bot.backends.alltoken.grammar import RouterContext

if TYPE_CHECKING:
    from bot.core.app import TokenBot
    from bot.core.context import HandlerContext
    from bot.core.messages import Conversation, Inbound
Handler = Callable[[Any, "HandlerContext"], Awaitable[None]]
# (bot, inbound of the click, button value, conversation) -> None
ActionHandler = Callable[["TokenBot", "Inbound", str, "Conversation"], Awaitable[None]]
# (ctx, submitted values) -> whether it succeeded
FormHandler = Callable[["HandlerContext", dict[str, str]], Awaitable[bool]]


@dataclass
class CommandFamily:
    """How one backend's commands are recognised, handled and wired up."""

    name: str
    parse: Callable[[str, RouterContext], BaseModel | None]
    parse_slash: Callable[[str, str, RouterContext], BaseModel | None]
    # Platform slash commands this family owns, e.g. ("/openmarlin",).
    slash_commands: tuple[str, ...]
    handlers: dict[type[BaseModel], Handler]
    attach: Callable[[TokenBot], None] | None = None
    # Cheap pre-check: a lower-cased message that contains none of these is not for this family.
    keywords: tuple[str, ...] = field(default_factory=tuple)
