"""`tokenbot discord-sync [--guild ID]`: register the slash commands, only when they changed.

Discord limits command creation (200 per day per guild), so commands are never synced on
start. This builds the same tree the bot serves, hashes its JSON, and skips the PUT when the
hash equals the one stored (per application and scope) in the data directory.

Every command declares both install types (`integration_types` [0, 1]: servers and users) and
the contexts it runs in (`contexts`; see adapters/discord/user_install.py). Discord only offers a
user install when the application allows it (Developer Portal -> Installation -> User Install):
the sync says so when the application does not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.http import Route

from adapters.discord import endpoints
from adapters.discord.adapter import DiscordAdapter
from bot.core.app import TokenBot
from bot.core.key_shapes import redact
from bot.core.settings import Settings

log = logging.getLogger(__name__)

HASH_FILE = "discord-commands.json"


@dataclass(frozen=True)
class SyncResult:
    """What `sync_commands` did."""

    scope: str  # "global" or "guild <id>"
    commands: int
    synced: bool  # False: unchanged, the PUT was skipped
    digest: str
    user_install: bool = True  # the application offers a user install (the portal's setting)


def tree_payload(tree: discord.app_commands.CommandTree, guild: discord.Object | None) -> list[Any]:
    """The JSON Discord receives for this scope (what `CommandTree.sync` PUTs)."""
    return [command.to_dict(tree) for command in tree.get_commands(guild=guild)]


def payload_hash(payload: list[Any]) -> str:
    """A stable hash of a command payload."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save(path: Path, hashes: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(hashes, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


async def sync_commands(
    bot: TokenBot, settings: Settings, *, guild_id: int | None = None, force: bool = False
) -> SyncResult:
    """PUT the command tree (globally, or to one guild for instant testing) unless unchanged."""
    if settings.discord_token is None:
        raise ValueError("DISCORD_TOKEN is not set")
    restore = endpoints.configure(settings.discord_api_url, settings.discord_gateway_url)
    adapter = DiscordAdapter(bot)
    client = adapter.client
    try:
        await client.login(settings.discord_token.get_secret_value())
        user_install = (await client.application_info()).user_integration_config is not None
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            # Guild commands appear at once (global ones can take a while): copy them there.
            client.tree.copy_global_to(guild=guild)
        payload = tree_payload(client.tree, guild)
        digest = payload_hash(payload)
        scope = f"guild {guild_id}" if guild_id else "global"
        key = f"{client.application_id}:{guild_id or 'global'}"
        path = settings.data_dir / HASH_FILE
        hashes = _load(path)
        if not force and hashes.get(key) == digest:
            return SyncResult(scope, len(payload), False, digest, user_install)
        await client.tree.sync(guild=guild)
        hashes[key] = digest
        _save(path, hashes)
        return SyncResult(scope, len(payload), True, digest, user_install)
    finally:
        await client.close()
        restore()


def _failure(exc: BaseException, api_url: str) -> str | None:
    """One line saying why the sync failed and what to do, or None for an unexpected error."""
    if isinstance(exc, discord.LoginFailure):
        return f"Discord rejected DISCORD_TOKEN ({exc}); copy the bot token again from the portal"
    if isinstance(exc, discord.HTTPException):
        return (
            f"Discord refused the sync: HTTP {exc.status} {exc.text or exc}; check the bot's "
            "access to that guild (--guild) and try again later if it is rate limited"
        )
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        reason = str(exc) or type(exc).__name__
        return (
            f"cannot reach Discord at {api_url} ({reason}); check the network "
            "(and DISCORD_API_URL if set), then run `tokenbot discord-sync` again"
        )
    return None


async def run_sync(settings: Settings, *, guild_id: int | None, force: bool) -> int:
    """The CLI command: prints what happened; exit code 0, or 2 (one line on stderr) on failure."""
    if settings.discord_token is None:
        print("tokenbot: set DISCORD_TOKEN to sync Discord commands.", file=sys.stderr)
        return 2
    api_url = settings.discord_api_url or Route.BASE
    bot = await TokenBot.create(settings)
    try:
        result = await sync_commands(bot, settings, guild_id=guild_id, force=force)
    except Exception as exc:
        message = _failure(exc, api_url)
        if message is None:
            raise
        print(f"tokenbot: {redact(' '.join(message.split()))}", file=sys.stderr)
        return 2
    finally:
        await bot.aclose()
    if result.synced:
        print(
            f"synced {result.commands} commands ({result.scope}), installable to servers and users."
        )
    else:
        print(f"{result.commands} commands unchanged ({result.scope}); nothing sent to Discord.")
    if not result.user_install:
        print(
            "note: the application does not offer a user install yet: enable User Install in the "
            "Developer Portal (Installation) so people can add tokenbot to their own account."
        )
    return 0
