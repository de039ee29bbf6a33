"""`start_discord(bot, settings)`: log in, keep the gateway connected, stop on `aclose()`.

The message-content intent is requested. If the application has not enabled it in the
Developer Portal, Discord refuses the connection (close code 4014); the runner then reconnects
without it, so slash commands, mentions and DMs keep working, and says how to enable it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord

from adapters.discord import endpoints
from adapters.discord.adapter import DiscordAdapter, default_intents
from bot.core.app import TokenBot
from bot.core.settings import Settings

log = logging.getLogger(__name__)

# discord.py logs whole gateway events and request bodies at DEBUG, form values (passwords,
# keys) included; tokenbot's DEBUG must not turn into a secret dump.
for _name in ("discord.gateway", "discord.http", "discord.webhook.async_"):
    logging.getLogger(_name).setLevel(logging.INFO)

INTENT_HELP = (
    "Discord refused the Message Content intent: enable it under Bot -> Privileged Gateway "
    "Intents in the Developer Portal. Continuing without it: slash commands, @mentions and DMs "
    'work; "alltoken …" / "use openmarlin …" typed in channels are not seen.'
)


class DiscordRunner:
    """A connected Discord adapter: the gateway runs in a background task."""

    def __init__(self, adapter: DiscordAdapter, token: str, restore: Any) -> None:
        self.adapter = adapter
        self._token = token
        self._restore = restore
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def client(self) -> discord.Client:
        """The current discord.py client."""
        return self.adapter.client

    async def start(self, *, discover_gateway: bool = False) -> DiscordRunner:
        """Log in over REST (a bad token fails here), then connect the gateway in the background."""
        await self.adapter.client.login(self._token)
        if discover_gateway:
            # A Discord-compatible server given only its API: ask it where its gateway is.
            url = await endpoints.discover_gateway(self.adapter.client)
            if url:
                endpoints.configure(None, url)
        self._task = asyncio.create_task(self._gateway(), name="tokenbot-discord-gateway")
        return self

    async def _gateway(self) -> None:
        while not self._closed:
            try:
                await self.adapter.client.connect(reconnect=True)
                return
            except discord.PrivilegedIntentsRequired:
                if not self.adapter.intents.message_content or self._closed:
                    raise
                log.warning(INTENT_HELP)
                await self.adapter.client.close()
                client = self.adapter.rebuild_client(default_intents(message_content=False))
                await client.login(self._token)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discord gateway stopped")
                return

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the gateway is ready (guilds received); raises TimeoutError."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            client = self.adapter.client
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("discord gateway not ready")
            if self._task is not None and self._task.done():
                self._task.result()  # surfaces why the gateway stopped
                raise RuntimeError("discord gateway stopped")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.wait_until_ready(), min(remaining, 0.2))
                if client is self.adapter.client:
                    return

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Let replies in flight finish (up to `grace_s`), then disconnect and stop the gateway."""
        self._closed = True
        await self.adapter.wait_idle(grace_s)
        await self.adapter.aclose()
        with contextlib.suppress(Exception):
            await self.adapter.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._restore()


def shard_options(settings: Settings) -> dict[str, Any]:
    """discord.py's shard arguments from DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT (none: unsharded).

    One id: a plain Client on that shard; several (or only a count: all of them): an
    AutoShardedClient opening just those shards, so each replica holds its own guilds.
    """
    ids, count = settings.discord_shard_ids, settings.discord_shard_count
    if count is None:
        return {}
    if ids is None:
        ids = tuple(range(count))
    if len(ids) == 1:
        return {"shard_id": ids[0], "shard_count": count}
    return {"shard_ids": list(ids), "shard_count": count}


async def start_discord(bot: TokenBot, settings: Settings, **client_options: Any) -> DiscordRunner:
    """Connect `bot` to Discord with DISCORD_TOKEN (and DISCORD_API_URL / DISCORD_GATEWAY_URL).

    DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT choose the gateway shards this process opens.
    """
    if settings.discord_token is None:
        raise ValueError("DISCORD_TOKEN is not set")
    restore = endpoints.configure(settings.discord_api_url, settings.discord_gateway_url)
    adapter = DiscordAdapter(bot, client_options={**shard_options(settings), **client_options})
    runner = DiscordRunner(adapter, settings.discord_token.get_secret_value(), restore)
    try:
        await runner.start(
            discover_gateway=bool(settings.discord_api_url and not settings.discord_gateway_url)
        )
    except BaseException:
        await runner.aclose()
        raise
    return runner
