"""Discord events -> `Inbound`: where a message or command came from, and a thread's history."""

from __future__ import annotations

import re
from collections.abc import Iterable

import discord

from bot.core.command_spec import OptionValue
from bot.core.messages import Attachment, Inbound, Turn

# The workspace of direct messages (Discord's own URL for them is /channels/@me).
DM_WORKSPACE = "@me"
HISTORY_LIMIT = 50
# Messages that carry conversation text (not joins, pins, thread-created notices, ...).
_CHAT_TYPES = {discord.MessageType.default, discord.MessageType.reply}


def workspace_of(guild_id: int | None) -> str:
    """The guild id, or "@me" outside guilds (DMs, group DMs)."""
    return str(guild_id) if guild_id else DM_WORKSPACE


def strip_mention(text: str, bot_id: int | None) -> str:
    """The text without the bot's own @mention (`<@id>` or the legacy `<@!id>`)."""
    if bot_id is None:
        return text.strip()
    return re.sub(rf"<@!?{bot_id}>", " ", text).strip()


def place_of(channel: object, channel_id: int | None) -> tuple[str, str | None]:
    """(channel, thread): a thread is reported with its parent channel, as the core expects."""
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return str(channel.parent_id), str(channel.id)
    return str(channel_id or getattr(channel, "id", None) or ""), None


def from_interaction(
    interaction: discord.Interaction,
    command: str | None,
    text: str,
    *,
    options: dict[str, OptionValue] | None = None,
    subcommand: str | None = None,
) -> Inbound:
    """A slash command (or, with no command, a button click) as an Inbound.

    Typed options travel as values; `text` is then only a readable echo. Nobody else in the
    channel sees what a slash command or a click carried, so it is never public.
    """
    channel, thread = place_of(interaction.channel, interaction.channel_id)
    return Inbound(
        platform="discord",
        workspace=workspace_of(interaction.guild_id),
        channel=channel,
        thread=thread,
        user=str(interaction.user.id),
        text=text,
        is_direct=interaction.guild_id is None,
        command=command,
        options=options,
        subcommand=subcommand,
        is_public=False,
        addressed=command is not None,
    )


def _attachments(message: discord.Message) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(name=a.filename, url=a.url, mime=a.content_type, size=a.size)
        for a in message.attachments
    )


def from_message(
    message: discord.Message,
    bot_id: int | None,
    *,
    continues_thread: bool = False,
    history: tuple[Turn, ...] = (),
) -> Inbound:
    """A chat message as an Inbound (mention removed); public unless it is a direct message.

    A DM or a mention is said to the bot (`addressed`): the core answers it even when it is
    not a command; other channel messages that are not commands are ignored.
    """
    channel, thread = place_of(message.channel, message.channel.id)
    mentioned = bot_id is not None and any(u.id == bot_id for u in message.mentions)
    return Inbound(
        platform="discord",
        workspace=workspace_of(message.guild.id if message.guild else None),
        channel=channel,
        thread=thread,
        user=str(message.author.id),
        text=strip_mention(message.content, bot_id),
        is_direct=message.guild is None,
        is_public=message.guild is not None,
        addressed=mentioned or message.guild is None,
        message_id=str(message.id),
        attachments=_attachments(message),
        continues_thread=continues_thread,
        history=history,
    )


def turns(messages: Iterable[discord.Message], bot_id: int | None) -> tuple[Turn, ...]:
    """Earlier messages (oldest first) as conversation turns: the bot's are the assistant's."""
    out: list[Turn] = []
    for message in messages:
        if message.type not in _CHAT_TYPES:
            continue
        text = strip_mention(message.content, bot_id)
        if not text:
            continue
        role = "assistant" if bot_id is not None and message.author.id == bot_id else "user"
        out.append(Turn(role=role, text=text))
    return tuple(out)


async def thread_history(
    client: discord.Client, thread: discord.Thread, before: discord.Message
) -> tuple[Turn, ...]:
    """The thread's earlier messages, starting with the message the thread was created from."""
    bot_id = client.user.id if client.user else None
    earlier = [m async for m in thread.history(limit=HISTORY_LIMIT, before=before)]
    earlier.reverse()
    starter = thread.starter_message
    if starter is None and thread.parent_id:
        # A thread started from a message has that message's id; it lives in the parent.
        parent = client.get_partial_messageable(thread.parent_id, guild_id=thread.guild.id)
        try:
            starter = await parent.fetch_message(thread.id)
        except discord.HTTPException:
            starter = None  # a thread not started from a message, or it was deleted
    if starter is not None and all(m.id != starter.id for m in earlier):
        earlier.insert(0, starter)
    return turns(earlier, bot_id)
