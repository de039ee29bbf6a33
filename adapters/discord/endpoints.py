"""Point discord.py at another REST base and gateway (Discord-compatible servers, local fakes).

discord.py reads both from class attributes (`Route.BASE` for every REST call and webhook,
`DiscordWebSocket.DEFAULT_GATEWAY` when it connects), so overriding them is process-wide.
"""

from __future__ import annotations

from collections.abc import Callable

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


def configure(api_url: str | None, gateway_url: str | None) -> Callable[[], None]:
    """Override what is given (None keeps Discord's); returns a function restoring the previous."""
    previous_base, previous_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    if api_url:
        Route.BASE = api_url.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore() -> None:
        Route.BASE = previous_base
        DiscordWebSocket.DEFAULT_GATEWAY = previous_gateway

    return restore


async def discover_gateway(client: discord.Client) -> str | None:
    """The gateway URL the REST API advertises (for a server given only DISCORD_API_URL)."""
    try:
        _shards, url, _limits = await client.http.get_bot_gateway()
    except discord.DiscordException:
        return None
    return url or None
