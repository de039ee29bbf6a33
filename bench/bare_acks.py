"""The libraries alone: slack-bolt acking every slash command, discord.py deferring every
interaction, and nothing else — the floor under tokenbot's burst acks on this machine.

bench_burst starts this module in place of `tokenbot run` (the same environment, fakes and
generator), so its burst rows can say how much of an ack's time is the libraries' own before
tokenbot does anything. It takes SLACK_SIGNING_SECRET, DISCORD_TOKEN, DISCORD_API_URL and
DISCORD_GATEWAY_URL as tokenbot does, listens on TOKENBOT_HTTP_HOST:0 and prints the port line
the cluster waits for; /readyz answers 200 once the gateway is ready. The heap is settled as
`tokenbot run` settles it, so the collector's settings are not part of the difference.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import Any

import discord
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult

from adapters.discord import endpoints
from bot.core.heap import settle_heap
from bot.core.settings import Settings


def slack_app(signing_secret: str, bot_token: str) -> AsyncApp:
    """A bolt app whose every slash command is acked, with no work after it."""

    async def authorize(**_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None, team_id="T", bot_token=bot_token, bot_user_id="U", bot_id="B"
        )

    app = AsyncApp(signing_secret=signing_secret, authorize=authorize, process_before_response=True)

    @app.command(re.compile(r"^/.+"))
    async def ack_only(ack: Any) -> None:
        await ack()

    return app


def discord_client(shard_id: int, shard_count: int) -> discord.Client:
    """A discord.py client that defers ("thinking…") every interaction, and nothing else."""
    client = discord.Client(
        intents=discord.Intents.default(), shard_id=shard_id, shard_count=shard_count
    )

    @client.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)

    return client


async def main() -> None:
    """Serve /slack/events and /readyz, connect the gateway, run until SIGTERM."""
    env = os.environ
    app = slack_app(env["SLACK_SIGNING_SECRET"], env.get("SLACK_BOT_TOKEN", "xoxb-bare"))
    endpoints.configure(env["DISCORD_API_URL"], env["DISCORD_GATEWAY_URL"])
    ids = env.get("DISCORD_SHARD_IDS", "0").split(",")
    client = discord_client(int(ids[0]), int(env.get("DISCORD_SHARD_COUNT", "1")))

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(status=200 if client.is_ready() else 503)

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    web_app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(web_app)
    await runner.setup()
    # The same accept queue as tokenbot's server (a burst of 500 connections overflows 128).
    site = web.TCPSite(runner, env.get("TOKENBOT_HTTP_HOST", "127.0.0.1"), 0, backlog=2048)
    await site.start()
    port = runner.addresses[0][1]
    await client.login(env["DISCORD_TOKEN"])
    gateway = asyncio.create_task(client.connect(reconnect=True))
    # The collector as `tokenbot run` sets it, so the floor is measured under the same one.
    settings = Settings()
    settle_heap(settings.gc_freeze, settings.gc_gen0_threshold)
    print(f"bare acks: health and metrics on port {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await client.close()
    gateway.cancel()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
