"""An aiohttp fake of Discord's REST API and gateway that records every call, for adapter tests.

The real discord.py is pointed at it (REST base and gateway URL overridden). It speaks the
gateway as uncompressed JSON text frames: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats
with ACKs, and dispatches MESSAGE_CREATE / INTERACTION_CREATE / THREAD_CREATE. Over REST it
serves the login calls, interaction callbacks, webhook follow-ups and edits of `@original`,
channel messages (JSON or multipart with attachments), history, threads, DMs, message deletes
and command PUTs. Every request is recorded as a `Call`; faults (e.g. a 429 with retry_after)
can be queued per route. Like Discord, it hides message content from a bot without the
message-content intent (except DMs and mentions) and refuses expired interaction tokens.
Like Discord, it keeps one gateway connection per shard (IDENTIFY's `shard`) and sends a
guild's events only over shard `(guild_id >> 22) % shard_count` (DMs over shard 0), READY and
GUILD_CREATE listing that shard's guilds only; `add_guild(shard, count)` and `add_channel`
make more guilds and channels before the bot connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from bot.core.app import TokenBot
from bot.core.command_spec import CommandSpec
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim
from tests import leaks

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
BOT_TOKEN = "fake-bot-token"

# Permission bits.
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | MANAGE_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
MESSAGE_CONTENT_INTENT = 1 << 15
EPHEMERAL = 1 << 6
LOADING = 1 << 7

T = TypeVar("T")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class UploadedFile:
    """One multipart attachment."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One REST request the fake received."""

    method: str
    path: str  # after /api/v10
    route: str  # the template, e.g. "/channels/{channel_id}/messages"
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    headers: dict[str, str]
    at: float  # time.perf_counter()
    status: int = 0

    def text(self) -> str:
        """The JSON body as text (to check what was sent, e.g. that a key never was)."""
        return json.dumps(self.json) if self.json is not None else ""


CALL: web.RequestKey[Call] = web.RequestKey("call", Call)


@dataclass
class Fault:
    """Answer the next `count` requests to a route with this status and body."""

    method: str
    route: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    count: int = 1


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched, and what the bot answered."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    dispatched_at: float
    message_id: int | None = None  # for button clicks: the message the button is on
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    callback_at: float | None = None
    original_id: int | None = None
    followups: list[int] = field(default_factory=list)
    # A user-installed app's interaction: Discord refuses follow-ups beyond this many.
    followup_limit: int | None = None

    @property
    def response_type(self) -> int | None:
        """The interaction callback type (5 = deferred with thinking, 9 = modal, ...)."""
        return self.callbacks[0]["type"] if self.callbacks else None


class FakeDiscord:
    """Discord's REST API and gateway on a loopback port."""

    def __init__(
        self,
        *,
        attachment_size_limit: int = 10 * 1024 * 1024,
        bot_permissions: int = BOT_PERMISSIONS,
        grant_message_content: bool = True,
    ) -> None:
        self._ids = itertools.count(1)
        self.attachment_size_limit = attachment_size_limit
        self.bot_permissions = bot_permissions
        self.grant_message_content = grant_message_content
        self.app_id = self.snowflake()
        self.bot_user = self._user(self.app_id, "tokenbot", bot=True)
        # The first guild is on shard 0 of any count up to 8 (840 = lcm(1..8)), so a test
        # with shards finds it on the first connection.
        self.guild_id = ((self.snowflake() >> 22) // 840 * 840) << 22 | next(self._ids)
        self.bot_role_id = self.snowflake()
        self.channel_id = self.snowflake()
        # Every guild the bot is in (the first one's text channel is `channel_id`).
        self.guild_ids: list[int] = [self.guild_id]
        self.alice = self._user(self.snowflake(), "alice")
        self.bob = self._user(self.snowflake(), "bob")
        self.users: dict[int, dict[str, Any]] = {
            int(u["id"]): u for u in (self.bot_user, self.alice, self.bob)
        }
        self.channels: dict[int, dict[str, Any]] = {
            self.channel_id: {
                "id": str(self.channel_id),
                "type": 0,
                "guild_id": str(self.guild_id),
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
            }
        }
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.forbidden_channels: set[int] = set()  # the bot may not post here
        self.absent_channels: set[int] = set()  # not the bot's (user installs): 403 on any call
        self.offers_user_install = True  # the portal's Installation -> User Install
        self.messages: dict[int, dict[str, Any]] = {}
        self.deleted: set[int] = set()
        self.interactions: dict[int, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self.expired_tokens: set[str] = set()
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[Call] = []
        self.gateway_log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.identify_intents: int | None = None
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._ws: web.WebSocketResponse | None = None
        # One gateway connection per shard, as Discord keeps them: shard id -> connection.
        self.shard_ws: dict[int, web.WebSocketResponse] = {}
        self.shard_count = 1
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.burst: list[FakeInteraction] = []
        self.app = self._build_app()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        """Serve on a free loopback port."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Close the gateway and stop serving."""
        for ws in {id(w): w for w in [self._ws, *self.shard_ws.values()] if w}.values():
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """What DISCORD_API_URL should be."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What DISCORD_GATEWAY_URL should be."""
        return self.base_url.replace("http://", "ws://") + "/gateway"

    # --- ids and objects -----------------------------------------------------------------

    def snowflake(self) -> int:
        """A Discord id whose timestamp is now (discord.py derives interaction expiry from it)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
        }
        if bot:
            user["bot"] = True
        return user

    def _member(self, user: dict[str, Any], roles: list[str] | None = None) -> dict[str, Any]:
        return {
            "user": user,
            "roles": roles or [],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }

    def add_guild(self, shard: int = 0, shard_count: int = 1) -> tuple[int, int]:
        """Another guild with one text channel, on `shard` of `shard_count`: (guild, channel)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        ms += (shard - ms) % shard_count  # Discord's shard of a guild: (id >> 22) % count
        guild_id = (ms << 22) | (next(self._ids) & 0x3FFFFF)
        self.guild_ids.append(guild_id)
        return guild_id, self.add_channel(guild_id)

    def add_channel(self, guild_id: int, name: str = "general") -> int:
        """Another text channel in a guild (before the bot connects: GUILD_CREATE lists it)."""
        channel_id = self.snowflake()
        self.channels[channel_id] = {
            **self.channels[self.channel_id],
            "id": str(channel_id),
            "guild_id": str(guild_id),
            "name": name,
        }
        return channel_id

    def shard_of(self, guild_id: int | None) -> int:
        """The shard a guild's events go to (DMs: shard 0), under the connected shard count."""
        return 0 if guild_id is None else (guild_id >> 22) % self.shard_count

    async def wait_shard(self, shard: int, timeout: float = 30.0) -> None:
        """Wait until a connection has identified as `shard`."""
        await self.wait_until(
            lambda: shard in self.shard_ws and not self.shard_ws[shard].closed,
            timeout,
            what=f"shard {shard} to connect",
        )

    def guild_payload(self, guild_id: int | None = None) -> dict[str, Any]:
        """The GUILD_CREATE payload: one text channel, the bot as a member with its role."""
        guild_id = guild_id or self.guild_id
        return {
            "id": str(guild_id),
            "name": "tokenbot tests",
            "icon": None,
            "owner_id": self.alice["id"],
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": str(VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                {
                    "id": str(self.bot_role_id),
                    "name": "tokenbot",
                    "permissions": str(self.bot_permissions),
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": True,
                    "mentionable": False,
                    "flags": 0,
                },
            ],
            "emojis": [],
            "stickers": [],
            "member_count": 3,
            "large": False,
            "unavailable": False,
            "joined_at": _now_iso(),
            "channels": [
                c
                for c in self.channels.values()
                if c["type"] == 0 and c.get("guild_id") == str(guild_id)
            ],
            "threads": [
                c
                for c in self.channels.values()
                if c["type"] == 11 and c.get("guild_id") == str(guild_id)
            ],
            "members": [self._member(self.bot_user, [str(self.bot_role_id)])],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _message(
        self,
        channel_id: int,
        author: dict[str, Any],
        body: dict[str, Any] | None = None,
        files: list[UploadedFile] | None = None,
        *,
        webhook: bool = False,
        flags: int = 0,
    ) -> dict[str, Any]:
        body = body or {}
        message_id = self.snowflake()
        channel = self.channels.get(channel_id, {})
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": body.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments(files or []),
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": flags | int(body.get("flags") or 0),
        }
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        if webhook:
            message["webhook_id"] = str(self.app_id)
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
            message["type"] = 19
        self.messages[message_id] = message
        return message

    def _attachments(self, files: list[UploadedFile]) -> list[dict[str, Any]]:
        return [
            {
                "id": str(self.snowflake()),
                "filename": f.filename,
                "size": len(f.data),
                "url": f"{self.base_url}/attachments/{f.filename}",
                "proxy_url": f"{self.base_url}/attachments/{f.filename}",
                "content_type": f.content_type,
            }
            for f in files
        ]

    def _edit(
        self, message: dict[str, Any], body: dict[str, Any], files: list[UploadedFile]
    ) -> None:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = (
                    body[key] if body[key] is not None else ([] if key != "content" else "")
                )
        if files:
            message["attachments"] = [*message["attachments"], *self._attachments(files)]
        # Editing settles a deferred ("thinking…") response.
        message["flags"] = int(message.get("flags") or 0) & ~LOADING
        message["edited_timestamp"] = _now_iso()

    # --- driving the bot -------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send one gateway DISPATCH, over the connection of the shard holding its guild."""
        ws = self._ws
        if self.shard_ws:
            guild = data.get("guild_id")
            shard = self.shard_of(int(guild) if guild else None)
            ws = self.shard_ws.get(shard)
            if ws is None or ws.closed:
                raise RuntimeError(f"no gateway connection for shard {shard}")
        if ws is None:
            raise RuntimeError("no gateway connection")
        async with self._send_lock:
            self._seq += 1
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    def _sees_content(self, guild: bool, mentioned: bool) -> bool:
        if not guild or mentioned:
            return True
        intents = self.identify_intents or 0
        return bool(intents & MESSAGE_CONTENT_INTENT) and self.grant_message_content

    async def user_message(
        self,
        content: str,
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        mention_bot: bool = False,
        dm: bool = False,
    ) -> dict[str, Any]:
        """A person posts a message (stored, then dispatched as MESSAGE_CREATE)."""
        user = user or self.alice
        if dm:
            channel_id = self._dm_channel(int(user["id"]))
        channel_id = channel_id or self.channel_id
        text = f"<@{self.bot_user['id']}> {content}" if mention_bot else content
        message = self._message(channel_id, user, {"content": text})
        if mention_bot:
            message["mentions"] = [{**self.bot_user, "member": self._member(self.bot_user)}]
        channel = self.channels.get(channel_id, {})
        guild = bool(channel.get("guild_id"))
        event = dict(message)
        if guild:
            event["member"] = {k: v for k, v in self._member(user).items() if k != "user"}
        if not self._sees_content(guild, mention_bot):
            event["content"] = ""
        await self.dispatch("MESSAGE_CREATE", event)
        return message

    def _dm_channel(self, user_id: int) -> int:
        if user_id not in self.dm_channels:
            channel_id = self.snowflake()
            self.dm_channels[user_id] = channel_id
            self.channels[channel_id] = {
                "id": str(channel_id),
                "type": 1,
                "recipients": [self.users.get(user_id) or self._user(user_id, "someone")],
                "last_message_id": None,
            }
        return self.dm_channels[user_id]

    async def _interaction(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any] | None,
        channel_id: int | None,
        dm: bool = False,
        message: dict[str, Any] | None = None,
        attachment_size_limit: int | None = None,
    ) -> FakeInteraction:
        user = user or self.alice
        if dm:
            channel_id = self._dm_channel(int(user["id"]))
        channel_id = channel_id or self.channel_id
        guild_id = int(self.channels[channel_id].get("guild_id") or self.guild_id)
        interaction_id = self.snowflake()
        token = f"itok-{interaction_id}-{secrets.token_hex(8)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.app_id),
            "type": type_,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "locale": "en-US",
            "attachment_size_limit": attachment_size_limit or self.attachment_size_limit,
            "entitlements": [],
            "app_permissions": str(self.bot_permissions),
            "context": 1 if dm else 0,
            "authorizing_integration_owners": {"0": str(guild_id)},
        }
        if dm:
            payload["user"] = user
        else:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["member"] = {
                **self._member(user),
                "permissions": str(VIEW_CHANNEL | SEND_MESSAGES),
            }
        if message is not None:
            payload["message"] = message
        record = FakeInteraction(
            id=interaction_id,
            token=token,
            type=type_,
            payload=payload,
            channel_id=channel_id,
            dispatched_at=time.perf_counter(),
            message_id=int(message["id"]) if message else None,
        )
        self.interactions[interaction_id] = record
        self._by_token[token] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    @staticmethod
    def _options(
        options: dict[str, Any], focused: str | None = None, subcommand: str | None = None
    ) -> list[dict[str, Any]]:
        """Option payloads as Discord nests them: group (2) > subcommand (1) > typed values."""
        out = []
        for name, value in options.items():
            if value is None:
                continue
            option: dict[str, Any] = {"name": name, "type": _option_type(value), "value": value}
            if name == focused:
                option["focused"] = True
            out.append(option)
        words = (subcommand or "").split()
        for depth, word in reversed(list(enumerate(words))):
            kind = 1 if depth == len(words) - 1 else 2
            out = [{"name": word, "type": kind, "options": out}]
        return out

    async def slash(
        self,
        name: str,
        /,
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        attachment_size_limit: int | None = None,
        subcommand: str | None = None,
        **options: Any,
    ) -> FakeInteraction:
        """A person runs a slash command (`subcommand="keys create"` below a grouped one)."""
        data = {
            "id": str(self.snowflake()),
            "name": name,
            "type": 1,
            "options": self._options(options, subcommand=subcommand),
        }
        return await self._interaction(
            2,
            data,
            user=user,
            channel_id=channel_id,
            dm=dm,
            attachment_size_limit=attachment_size_limit,
        )

    async def autocomplete(
        self,
        name: str,
        focused: str,
        /,
        *,
        user: dict[str, Any] | None = None,
        subcommand: str | None = None,
        **options: Any,
    ) -> FakeInteraction:
        """Discord asks for autocomplete choices of the `focused` option."""
        data = {
            "id": str(self.snowflake()),
            "name": name,
            "type": 1,
            "options": self._options(options, focused, subcommand),
        }
        return await self._interaction(4, data, user=user, channel_id=None)

    async def click(
        self, custom_id: str, message_id: int, *, user: dict[str, Any] | None = None
    ) -> FakeInteraction:
        """A person clicks a button on a message."""
        message = self.messages[message_id]
        return await self._interaction(
            3,
            {"custom_id": custom_id, "component_type": 2},
            user=user,
            channel_id=int(message["channel_id"]),
            message=message,
        )

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, str],
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        dm: bool = False,
    ) -> FakeInteraction:
        """A person submits a modal (Label-wrapped text inputs, as Discord sends them)."""
        components = [
            {"type": 18, "id": i + 1, "component": {"type": 4, "custom_id": k, "value": v}}
            for i, (k, v) in enumerate(values.items())
        ]
        return await self._interaction(
            5,
            {"custom_id": custom_id, "components": components},
            user=user,
            channel_id=channel_id,
            dm=dm,
        )

    async def user_install_slash(
        self,
        name: str,
        /,
        *,
        place: str = "guild",
        guild_id: int | None = None,
        user: dict[str, Any] | None = None,
        subcommand: str | None = None,
        **options: Any,
    ) -> FakeInteraction:
        """A person runs a command of tokenbot installed to their account, where the bot is no
        member: a server without it (`place="guild"`, `guild_id` or a new one) or their DM with
        bob (`place="private_channel"`).

        Like Discord: authorized by the user install only (`authorizing_integration_owners`
        {"1": user}), every call to that channel is 403 Missing Access, at most 5 follow-ups.
        """
        user = user or self.alice
        interaction_id, channel_id = self.snowflake(), self.snowflake()
        token = f"itok-{interaction_id}-{secrets.token_hex(8)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.app_id),
            "type": 2,
            "data": {
                "id": str(self.snowflake()),
                "name": name,
                "type": 1,
                "options": self._options(options, subcommand=subcommand),
            },
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "locale": "en-US",
            "attachment_size_limit": self.attachment_size_limit,
            "entitlements": [],
            "app_permissions": str(EMBED_LINKS | ATTACH_FILES),
            "context": 0 if place == "guild" else 2,
            "authorizing_integration_owners": {"1": user["id"]},
        }
        if place == "guild":
            guild_id = guild_id or self.snowflake()  # never one of the bot's guilds
            channel = {**self.channels[self.channel_id], "guild_id": str(guild_id)}
            payload.update(
                guild_id=str(guild_id),
                guild_locale="en-US",
                guild={"id": str(guild_id), "locale": "en-US", "features": []},
                member={**self._member(user), "permissions": str(VIEW_CHANNEL | SEND_MESSAGES)},
            )
        else:
            channel = {"id": "", "type": 1, "recipients": [self.bob], "last_message_id": None}
            payload["user"] = user
        channel["id"] = str(channel_id)
        self.channels[channel_id] = payload["channel"] = channel
        self.absent_channels.add(channel_id)
        record = FakeInteraction(
            id=interaction_id,
            token=token,
            type=2,
            payload=payload,
            channel_id=channel_id,
            dispatched_at=time.perf_counter(),
            followup_limit=5,
        )
        self.interactions[interaction_id] = record
        self._by_token[token] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def user_install_click(
        self, custom_id: str, message_id: int, of: FakeInteraction
    ) -> FakeInteraction:
        """A click on a button of a message the bot sent through the user-install interaction
        `of`: like Discord, the click comes from the same place (a server without the bot or a
        private channel), authorized by the user install only, with its own token and budget."""
        base = of.payload
        interaction_id = self.snowflake()
        token = f"itok-{interaction_id}-{secrets.token_hex(8)}"
        payload: dict[str, Any] = {
            key: base[key]
            for key in (
                "application_id", "channel_id", "channel", "locale", "attachment_size_limit",
                "entitlements", "app_permissions", "context", "authorizing_integration_owners",
                "guild_id", "guild_locale", "guild", "member", "user",
            )
            if key in base
        }  # fmt: skip
        payload.update(
            id=str(interaction_id),
            type=3,
            data={"custom_id": custom_id, "component_type": 2},
            token=token,
            version=1,
            message=self.messages[message_id],
        )
        record = FakeInteraction(
            id=interaction_id,
            token=token,
            type=3,
            payload=payload,
            channel_id=of.channel_id,
            dispatched_at=time.perf_counter(),
            message_id=message_id,
            followup_limit=5,
        )
        self.interactions[interaction_id] = record
        self._by_token[token] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    def expire(self, interaction: FakeInteraction) -> None:
        """From now on the interaction's token is refused (as after 15 minutes)."""
        self.expired_tokens.add(interaction.token)

    def fail_next(
        self,
        method: str,
        route: str,
        status: int = 429,
        *,
        retry_after: float = 0.3,
        count: int = 1,
    ) -> None:
        """Answer the next request(s) to `route` (a template) with an error; 429 by default."""
        body: dict[str, Any]
        headers: dict[str, str] = {}
        if status == 429:
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
            }
            # discord.py treats a 429 without Via as a Cloudflare ban, not a rate limit.
            headers = {
                "Retry-After": str(retry_after),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(retry_after),
                "X-RateLimit-Bucket": "fake-bucket",
                "X-RateLimit-Scope": "user",
                "Via": "1.1 google",
            }
        else:
            body = {"message": "fake failure", "code": 0}
        self.faults.append(Fault(method.upper(), route, status, body, headers, count))

    # --- reading what happened -----------------------------------------------------------

    def calls_to(self, method: str, route: str) -> list[Call]:
        """Recorded calls by method and route template."""
        return [c for c in self.calls if c.method == method.upper() and c.route == route]

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages of a channel, oldest first (deleted ones excluded)."""
        return [
            m
            for mid, m in sorted(self.messages.items())
            if int(m["channel_id"]) == channel_id and mid not in self.deleted
        ]

    def original(self, interaction: FakeInteraction) -> dict[str, Any] | None:
        """The interaction's original response message."""
        if interaction.original_id is None:
            return None
        return self.messages.get(interaction.original_id)

    def replies(self, interaction: FakeInteraction) -> list[dict[str, Any]]:
        """The original response and follow-ups (not deleted), in order."""
        ids = [i for i in [interaction.original_id, *interaction.followups] if i is not None]
        return [self.messages[i] for i in ids if i not in self.deleted]

    async def wait_until(
        self, check: Callable[[], T | bool | None], timeout: float = 5.0, what: str = "condition"
    ) -> T:
        """Wait until `check()` is truthy (re-checked after every request); returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            result = check()
            if result:
                return result  # type: ignore[return-value]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

    # --- the HTTP app --------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        p = API_PREFIX
        routes = [
            ("GET", "/gateway", self._gateway_info),
            ("GET", "/gateway/bot", self._gateway_info),
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._application),
            ("POST", "/users/@me/channels", self._create_dm),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{application_id}/{token}", self._webhook_send),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_get),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._webhook_edit,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._webhook_delete,
            ),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/channels/{channel_id}/messages", self._history),
            ("POST", "/channels/{channel_id}/messages", self._channel_send),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._channel_get),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._channel_edit),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._channel_delete),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._thread),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._put_commands,
            ),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._get_commands,
            ),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, p + path, handler)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_post("/_fake/burst", self._control_burst)
        app.router.add_get("/_fake/burst", self._control_report)
        return app

    # --- control API: a benchmark drives a fake running in another process -----------------

    def burst_user(self, k: int) -> dict[str, Any]:
        """The k-th of many distinct users (ids derived from alice's)."""
        return {**self.alice, "id": str(int(self.alice["id"]) + 1000 + k), "username": f"u{k}"}

    async def _control_burst(self, request: web.Request) -> web.Response:
        """Dispatch n slash commands at once, each from its own user; `{k}` in options is k.

        Mixed load: `commands` ([{name, subcommand?, options}, …]) is cycled through instead of
        one name, and `users` (optional) reuses that many users (the k-th is user k % users).
        """
        body = await request.json()
        n = int(body["n"])
        mix: list[dict[str, Any]] = list(body.get("commands") or []) or [
            {"name": str(body["name"]), "options": body.get("options") or {}}
        ]
        users = int(body.get("users") or n)

        def options_for(k: int) -> dict[str, Any]:
            options: dict[str, Any] = dict(mix[k % len(mix)].get("options") or {})
            return {
                key: v.replace("{k}", str(k)) if isinstance(v, str) else v
                for key, v in options.items()
            }

        self.burst = list(
            await asyncio.gather(
                *(
                    self.slash(
                        str(mix[k % len(mix)]["name"]),
                        user=self.burst_user(k % users),
                        subcommand=mix[k % len(mix)].get("subcommand"),
                        **options_for(k),
                    )
                    for k in range(n)
                )
            )
        )
        return _json({"dispatched": len(self.burst)})

    async def _control_report(self, request: web.Request) -> web.Response:
        """Acknowledgement latencies of the last burst, and how many replies contain `needle`."""
        needle = request.query.get("needle", "")

        def delivered(i: FakeInteraction) -> bool:
            replies = self.replies(i)
            return (
                bool(replies)
                and all(not int(m["flags"]) & LOADING for m in replies)
                and needle in replies[-1]["content"]
            )

        return _json(
            {
                "dispatched": len(self.burst),
                "acked": [
                    i.callback_at - i.dispatched_at for i in self.burst if i.callback_at is not None
                ],
                "delivered": sum(delivered(i) for i in self.burst),
            }
        )

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        info = request.match_info
        template = info.route.resource.canonical if info.route.resource else request.path
        body, files = await self._read_body(request)
        call = Call(
            method=request.method,
            path=request.path[len(API_PREFIX) :],
            route=template[len(API_PREFIX) :],
            params=dict(info),
            query=dict(request.query),
            json=body,
            files=files,
            headers=dict(request.headers),
            at=time.perf_counter(),
        )
        self.calls.append(call)
        if call.method in ("POST", "PATCH", "PUT"):
            leaks.reply(f"discord {call.route}", call.text(), private=self._is_private(call))
        request[CALL] = call
        try:
            fault = self._take_fault(call)
            if fault is not None:
                response: web.StreamResponse = _json(
                    fault.body, status=fault.status, headers=fault.headers
                )
            else:
                needs_bot_auth = not call.route.startswith(("/interactions/", "/webhooks/"))
                if needs_bot_auth and request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
                    response = _error(401, 0, "401: Unauthorized")
                else:
                    response = await handler(request)
        except _Reject as exc:
            response = exc.response
        call.status = response.status
        self._changed.set()
        return response

    def _is_private(self, call: Call) -> bool:
        """Whether only the interacting user sees what this call sends (ephemeral or a DM)."""
        body = call.json if isinstance(call.json, dict) else {}
        inner = body.get("data")
        data = inner if isinstance(inner, dict) else body
        if int(data.get("flags") or 0) & EPHEMERAL:
            return True
        channel = call.params.get("channel_id", "")
        if channel.isdigit() and int(channel) in self.dm_channels.values():
            return True
        message_id = call.params.get("message_id", "")
        interaction = self._by_token.get(call.params.get("token", ""))
        if message_id == "@original" and interaction is not None:
            message_id = str(interaction.original_id)
        message = self.messages.get(int(message_id)) if message_id.isdigit() else None
        return message is not None and bool(int(message.get("flags") or 0) & EPHEMERAL)

    def _take_fault(self, call: Call) -> Fault | None:
        for fault in self.faults:
            if fault.method == call.method and fault.route == call.route and fault.count > 0:
                fault.count -= 1
                return fault
        return None

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if not request.can_read_body:
            return None, []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                data = await part.read()  # type: ignore[union-attr]
                name = part.name or ""  # type: ignore[union-attr]
                if name == "payload_json":
                    body = json.loads(data)
                else:
                    files.append(
                        UploadedFile(
                            field=name,
                            filename=part.filename or "",  # type: ignore[union-attr]
                            content_type=part.headers.get("Content-Type", ""),
                            data=bytes(data),
                        )
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    # login ---------------------------------------------------------------------------------

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.app_id),
                "name": "tokenbot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.alice,
                "verify_key": "0" * 64,
                "flags": 0,
                "summary": "",
                "integration_types_config": {
                    "0": {"oauth2_install_params": {"scopes": ["bot"], "permissions": "0"}},
                    **({"1": {}} if self.offers_user_install else {}),
                },
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = request[CALL].json or {}
        channel_id = self._dm_channel(int(body["recipient_id"]))
        return _json(self.channels[channel_id])

    # interactions --------------------------------------------------------------------------

    def _interaction_for(self, token: str) -> FakeInteraction:
        record = self._by_token.get(token)
        if record is None:
            raise _http_error(404, 10015, "Unknown Webhook")
        if token in self.expired_tokens:
            raise _http_error(401, 50027, "Invalid Webhook Token")
        return record

    async def _callback(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        record = self.interactions.get(int(request.match_info["interaction_id"]))
        if record is None or record.token != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        if record.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = call.json or {}
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        record.callbacks.append(body)
        record.callback_at = call.at
        message: dict[str, Any] | None = None
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (LOADING if kind == 5 else 0)
            message = self._message(
                record.channel_id, self.bot_user, data, call.files, webhook=True, flags=flags
            )
            record.original_id = int(message["id"])
        elif kind in (6, 7) and record.message_id is not None:
            record.original_id = record.message_id
            message = self.messages[record.message_id]
            if kind == 7:
                self._edit(message, data, call.files)
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message
        response = {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "response_message_id": str(record.original_id) if record.original_id else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(
                    message and int(message.get("flags") or 0) & EPHEMERAL
                ),
            },
            "resource": resource,
        }
        if request.query.get("with_response") in ("1", "true", "True"):
            return _json(response)
        return web.Response(status=204)

    def _resolve(self, record: FakeInteraction, message_id: str) -> dict[str, Any]:
        mid = record.original_id if message_id == "@original" else int(message_id)
        if mid is None or mid not in self.messages or mid in self.deleted:
            raise _http_error(404, 10008, "Unknown Message")
        return self.messages[mid]

    async def _webhook_send(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        record = self._interaction_for(request.match_info["token"])
        if record.followup_limit is not None and len(record.followups) >= record.followup_limit:
            raise _http_error(
                400, 40094, "This interaction has hit the maximum number of follow up messages"
            )
        message = self._message(
            record.channel_id, self.bot_user, call.json, call.files, webhook=True
        )
        record.followups.append(int(message["id"]))
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return web.Response(status=204)

    async def _webhook_get(self, request: web.Request) -> web.Response:
        record = self._interaction_for(request.match_info["token"])
        return _json(self._resolve(record, request.match_info["message_id"]))

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        record = self._interaction_for(request.match_info["token"])
        message = self._resolve(record, request.match_info["message_id"])
        self._edit(message, call.json or {}, call.files)
        return _json(message)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        record = self._interaction_for(request.match_info["token"])
        message = self._resolve(record, request.match_info["message_id"])
        self.deleted.add(int(message["id"]))
        return web.Response(status=204)

    # channels --------------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        channel_id = int(request.match_info["channel_id"])
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _http_error(404, 10003, "Unknown Channel")
        if channel_id in self.absent_channels:
            raise _http_error(403, 50001, "Missing Access")
        return channel_id, channel

    def _channel_message(self, request: web.Request) -> dict[str, Any]:
        channel_id, _ = self._channel(request)
        message_id = int(request.match_info["message_id"])
        message = self.messages.get(message_id)
        if (
            message is None
            or message_id in self.deleted
            or int(message["channel_id"]) != channel_id
        ):
            raise _http_error(404, 10008, "Unknown Message")
        if int(message.get("flags") or 0) & EPHEMERAL:
            raise _http_error(404, 10008, "Unknown Message")
        return message

    async def _get_channel(self, request: web.Request) -> web.Response:
        _, channel = self._channel(request)
        return _json(channel)

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _history(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(request)
        before = int(request.query.get("before", 0)) or None
        limit = int(request.query.get("limit", 50))
        found = [
            m
            for m in reversed(self.messages_in(channel_id))
            if before is None or int(m["id"]) < before
        ]
        return _json(found[:limit])

    async def _channel_send(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        channel_id, channel = self._channel(request)
        parent = int(channel.get("parent_id") or 0)
        if channel_id in self.forbidden_channels or parent in self.forbidden_channels:
            return _error(403, 50013, "Missing Permissions")
        message = self._message(channel_id, self.bot_user, call.json, call.files)
        return _json(message)

    async def _channel_get(self, request: web.Request) -> web.Response:
        return _json(self._channel_message(request))

    async def _channel_edit(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        message = self._channel_message(request)
        if message["author"]["id"] != self.bot_user["id"]:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        self._edit(message, call.json or {}, call.files)
        return _json(message)

    async def _channel_delete(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        ours = message["author"]["id"] == self.bot_user["id"]
        if not ours and not self.bot_permissions & MANAGE_MESSAGES:
            return _error(403, 50013, "Missing Permissions")
        self.deleted.add(int(message["id"]))
        return web.Response(status=204)

    async def _thread(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        message = self._channel_message(request)
        channel_id, channel = self._channel(request)
        thread_id = int(message["id"])
        if thread_id in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        body = call.json or {}
        thread = {
            "id": str(thread_id),
            "type": 11,
            "guild_id": channel.get("guild_id"),
            "parent_id": str(channel_id),
            "owner_id": self.bot_user["id"],
            "name": body.get("name", "thread"),
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration", 1440),
                "archive_timestamp": _now_iso(),
                "locked": False,
            },
        }
        self.channels[thread_id] = thread
        # Discord tells the bot about its new thread over the gateway too.
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, status=201)

    # commands --------------------------------------------------------------------------------

    async def _put_commands(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        scope = request.match_info.get("guild_id", "global")
        stored = [
            {
                **c,
                "id": str(self.snowflake()),
                "application_id": str(self.app_id),
                "version": "1",
            }
            for c in call.json or []
        ]
        self.commands[scope] = stored
        return _json(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands.get(request.match_info.get("guild_id", "global"), []))

    # gateway ---------------------------------------------------------------------------------

    async def _send_ws(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await ws.send_str(json.dumps(payload))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._ws = ws
        await self._send_ws(ws, {"op": 10, "d": {"heartbeat_interval": 41250}})
        try:
            await self._serve_gateway(ws)
        finally:
            for shard, held in list(self.shard_ws.items()):
                if held is ws:
                    del self.shard_ws[shard]
            self._changed.set()
        return ws

    async def _serve_gateway(self, ws: web.WebSocketResponse) -> None:
        async for raw in ws:
            if raw.type.name != "TEXT":
                continue
            payload = json.loads(raw.data)
            self.gateway_log.append(payload)
            op = payload.get("op")
            if op == 1:
                await self._send_ws(ws, {"op": 11})
            elif op == 2:
                self.identify_intents = int(payload["d"].get("intents") or 0)
                if (
                    self.identify_intents & MESSAGE_CONTENT_INTENT
                    and not self.grant_message_content
                ):
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    return
                # READY names the shard asked for: discord.py counts shards by it.
                await self._identify(ws, payload["d"].get("shard") or [0, 1])
            elif op == 6:
                # No resuming here: ask for a fresh IDENTIFY.
                await self._send_ws(ws, {"op": 9, "d": False})
            self._changed.set()

    async def _identify(self, ws: web.WebSocketResponse, shard: list[int]) -> None:
        self.shard_count = max(int(shard[1]), 1)
        self.shard_ws[int(shard[0])] = ws
        # Only the guilds of this shard: a guild is on one connection, as on Discord.
        guilds = [g for g in self.guild_ids if self.shard_of(g) == int(shard[0])]
        self._seq += 1
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": "fake-session",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "shard": shard,
        }
        await self._send_ws(ws, {"op": 0, "t": "READY", "s": self._seq, "d": ready})
        for guild_id in guilds:
            self._seq += 1
            await self._send_ws(
                ws,
                {"op": 0, "t": "GUILD_CREATE", "s": self._seq, "d": self.guild_payload(guild_id)},
            )
        self.ready.set()


def _option_type(value: Any) -> int:
    """Discord's option type of a value: boolean 5, integer 4, number 10, string 3."""
    if isinstance(value, bool):  # before int: a bool is an int
        return 5
    if isinstance(value, int):
        return 4
    return 10 if isinstance(value, float) else 3


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json", without "; charset=…": discord.py compares the header verbatim.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


class _Reject(Exception):
    """Raised by handlers to answer with a Discord error envelope."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _http_error(status: int, code: int, message: str) -> _Reject:
    return _Reject(_error(status, code, message))


# --- typed lines as slash commands -----------------------------------------------------------


@dataclass(frozen=True)
class TypedSlash:
    """A typed line as a person would send it through the Discord tree."""

    name: str
    subcommand: str | None
    options: dict[str, str]


def _fillable(spec: CommandSpec) -> bool:
    """Every required option can take text (the line's rest)."""
    return all(o.kind == "text" or not o.required for o in spec.options if not o.secret)


def _has_text(spec: CommandSpec) -> bool:
    return any(o.kind == "text" and not o.secret for o in spec.options)


def _common(path: tuple[str, ...], words: list[str]) -> int:
    """How many leading words of the line are the spec's path."""
    count = 0
    for part, word in zip(path, words, strict=False):
        if part != word:
            break
        count += 1
    return count


def _text_options(spec: CommandSpec, text: str) -> dict[str, str]:
    """The line's rest in the first text option (and "x" in any other required one)."""
    fill = [o for o in spec.options if o.kind == "text" and not o.secret]
    return {o.name: text or "x" for i, o in enumerate(fill) if o.required or (text and i == 0)}


def typed_slash(specs: Sequence[CommandSpec], line: str) -> TypedSlash | None:
    """The spec sharing most leading words with the line, its text options holding the rest.

    `/openclaw-token keys create x y` -> keys create with name "x y"; a line naming no
    subcommand goes to a spec with a text option (`/openmarlin x` -> run with "x").
    """
    words = line.lstrip("/").split()
    own = [s for s in specs if words and s.path[0] == words[0] and _fillable(s)]
    # Discord cannot run the bare command when it has subcommands.
    own = [s for s in own if len(s.path) > 1] or own
    spec = max(own, key=lambda s: (_common(s.path, words), _has_text(s)), default=None)
    if spec is None:
        return None
    text = " ".join(words[_common(spec.path, words) :])
    return TypedSlash(spec.path[0], " ".join(spec.path[1:]) or None, _text_options(spec, text))


# --- a whole world for adapter tests ----------------------------------------------------------


@dataclass
class DiscordWorld:
    """The fake Discord, the AllToken simulator, a TokenBot and its running Discord adapter."""

    fake: FakeDiscord
    sim: AllTokenSim
    bot: TokenBot
    runner: Any  # adapters.discord.runner.DiscordRunner

    @property
    def adapter(self) -> Any:
        """The DiscordAdapter."""
        return self.runner.adapter


@contextlib.asynccontextmanager
async def discord_world(
    sim: AllTokenSim,
    data_dir: Path,
    *,
    fake: FakeDiscord | None = None,
    families: list[Any] | None = None,
    **settings: Any,
) -> AsyncIterator[DiscordWorld]:
    """Start the fake, a TokenBot on the simulator, and `start_discord` against the fake."""
    from adapters.discord.runner import start_discord

    fake = fake or FakeDiscord()
    await fake.start()
    config = Settings(
        alltoken_base_url=sim.base_url,
        data_dir=data_dir,
        http_timeout_s=5.0,
        max_polls_per_second=1000.0,
        discord_token=BOT_TOKEN,
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        **settings,
    )
    bot = await TokenBot.create(config, families)
    runner = None
    try:
        runner = await start_discord(bot, config, guild_ready_timeout=0.05)
        await runner.wait_ready(10)
        yield DiscordWorld(fake=fake, sim=sim, bot=bot, runner=runner)
    finally:
        # Jobs first (they stay resumable), then the adapter (after replies in flight), then
        # the rest: a job must not find Discord gone and count that as a failure.
        await bot.jobs.aclose()
        if runner is not None:
            await runner.aclose()
        await bot.aclose()
        await fake.stop()


async def _serve() -> None:
    """`python -m tests.fakes.discord`: serve until killed; the first line says where (JSON)."""
    fake = await FakeDiscord().start()
    print(
        json.dumps(
            {
                "ready": True,
                "api_url": fake.api_url,
                "gateway_url": fake.gateway_url,
                "guild_id": str(fake.guild_id),
                "alice_id": fake.alice["id"],
            }
        ),
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve())
