"""The discord.py client: gateway events in, routed to the adapter; the slash-command tree."""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.commands import build_tree
from adapters.discord.guard import NO_MENTIONS
from adapters.discord.ports import EventSink

# tokenbot never joins voice channels: skip discord.py's warnings about missing voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class TokenBotClient(discord.Client):
    """A Client whose messages, button clicks and slash commands go to the adapter."""

    def __init__(self, adapter: EventSink, *, intents: discord.Intents, **options: Any) -> None:
        # No reply may ping anyone: model text can contain @everyone or user mentions. Forced,
        # not defaulted, so no client option can turn pings back on (sends pass it explicitly too).
        options["allowed_mentions"] = NO_MENTIONS
        super().__init__(intents=intents, **options)
        self.adapter = adapter
        self.tree = build_tree(self, adapter)

    async def on_message(self, message: discord.Message) -> None:
        """Every message the bot can see (content only with the intent, or when mentioned / DMed)."""
        await self.adapter.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Button clicks are routed by custom_id (slash commands and modals go through the tree)."""
        if interaction.type is discord.InteractionType.component:
            await self.adapter.on_component(interaction)


class ShardedTokenBotClient(TokenBotClient, discord.AutoShardedClient):
    """The same client over several gateway shards (`shard_ids` of `shard_count`) at once."""


def build_client(adapter: EventSink, *, intents: discord.Intents, **options: Any) -> TokenBotClient:
    """An AutoShardedClient when `shard_ids` are given, else a plain Client (maybe one shard_id)."""
    if options.get("shard_ids") is not None:
        return ShardedTokenBotClient(adapter, intents=intents, **options)
    return TokenBotClient(adapter, intents=intents, **options)
