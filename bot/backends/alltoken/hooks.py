"""AllToken's declared hook for other backends: the chat/search fallback, and what it may use.

This module is the only part of bot/backends/alltoken that another backend may import (the
import test enforces it). AllToken's handlers look the fallback up in the service registry; a
family that offers one registers it with `services.add(impl, as_=ChatFallback)`.
"""

from __future__ import annotations

from bot.backends.alltoken import catalog
from bot.backends.alltoken.render import usage_line
from bot.backends.alltoken.service import ChatMessage, ChatResult
from bot.backends.alltoken.spec import USAGE, ChatCommand
from bot.core.context import Continuation, HandlerContext
from bot.core.errors import BackendError
from bot.core.grammar import UsageError
from bot.core.messages import TextStream

__all__ = [
    "ChatFallback",
    "ChatMessage",
    "ChatResult",
    "chat_continuation",
    "resume_thread",
    "usage_line",
    "wants_fallback",
]


def wants_fallback(error: BackendError) -> bool:
    """AllToken's own "balance too low" (not any 402 from elsewhere)."""
    return error.backend == "alltoken" and (
        error.status == 402 or error.code == "insufficient_balance"
    )


def chat_continuation(model: str) -> Continuation:
    """Plain replies in a thread continue a chat with `model` (within the prompt limit)."""

    def continue_chat(text: str) -> ChatCommand:
        text = text.strip()
        if len(text) > catalog.MAX_PROMPT_CHARS:
            # The same limit as a spelled-out prompt, before anything reaches a backend.
            raise UsageError(
                "chat",
                f"that message is too long ({len(text):,} characters; "
                f"the limit is {catalog.MAX_PROMPT_CHARS:,})",
                USAGE.get("chat", ""),
            )
        return ChatCommand(prompt=text, model=model)

    return Continuation(family="alltoken", command="chat", model=model, parse=continue_chat)


def resume_thread(command: str, model: str | None) -> Continuation | None:
    """A stored thread continuation rebuilt: a chat with its model (None for anything else)."""
    return chat_continuation(model) if command == "chat" and model else None


class ChatFallback:
    """Answers a chat or a search another way when AllToken refused it (e.g. balance empty).

    The base answers nothing; a family that has a fallback subclasses it and registers it.
    """

    async def chat(
        self,
        ctx: HandlerContext,
        error: BackendError,
        model: str,
        messages: list[ChatMessage],
        out: TextStream,
    ) -> bool:
        """Stream the answer into `out`; False when there is no fallback for this caller."""
        return False

    async def search(
        self, ctx: HandlerContext, error: BackendError, model: str, query: str
    ) -> bool:
        """Answer the search; False when there is no fallback for this caller."""
        return False
