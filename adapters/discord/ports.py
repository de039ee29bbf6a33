"""What the adapter's parts need from the adapter, as protocols (so no part imports the adapter).

The adapter (adapter.py) builds the client, the command tree and its conversations; they call
back into it only through these protocols, which keeps the import graph one-way:
adapter -> client -> commands -> ports, adapter -> conversation -> ports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import discord

from adapters.discord.outgoing import RefReplacements
from adapters.discord.views import FormModal
from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.messages import Actions, Destination, FormRequest


class ConversationHost(Protocol):
    """What a DiscordConversation asks of the adapter: the client, the clock, threads, forms."""

    @property
    def client(self) -> discord.Client:
        """The current discord.py client (it may be rebuilt after a refused intent)."""

    @property
    def clock(self) -> Callable[[], float]:
        """Wall-clock seconds (tests pin it) for interaction-token expiry."""

    @property
    def replacements(self) -> RefReplacements:
        """Messages that were posted again because the original could not be edited."""

    def upload_limit(self, destination: Destination) -> int:
        """The upload limit saved with the destination."""

    def thread_ready(self, thread_id: str) -> bool:
        """Whether the reply thread was created (by this process)."""

    def mark_thread_ready(self, thread_id: str) -> None:
        """Remember a created thread."""

    def form_modal(self, request: FormRequest, origin: Destination) -> FormModal:
        """The modal for a private form, submitted on behalf of `origin`'s user."""

    def form_button(self, request: FormRequest, origin: Destination) -> Actions:
        """A private button that opens the form later (a modal must be a first answer)."""


class SlashRunner(Protocol):
    """What the command tree asks of the adapter: which commands exist, and running one."""

    @property
    def slash_commands(self) -> list[str]:
        """Every slash command the bot's families own, in their order ("/alltoken-chat", …)."""

    def specs_for(self, slash: str) -> tuple[CommandSpec, ...]:
        """The command specs carried by one slash command (empty: a free-text command)."""

    def family_label(self, slash: str) -> str:
        """The display name of the family owning a slash command ("OpenClaw Token")."""

    def suggestions(self, kind: str) -> list[str]:
        """Autocomplete values of a kind ("models:chat"), from the family's cache only."""

    async def run_slash(
        self,
        interaction: discord.Interaction,
        command: str,
        text: str,
        *,
        options: dict[str, OptionValue] | None = None,
        subcommand: str | None = None,
        defer: bool = True,
    ) -> None:
        """Acknowledge, then hand the command (typed options, or free text) to the core."""


class EventSink(SlashRunner, Protocol):
    """What the discord.py client routes gateway events to."""

    async def on_message(self, message: discord.Message) -> None:
        """A chat message the bot can see."""

    async def on_component(self, interaction: discord.Interaction) -> None:
        """A button click."""
