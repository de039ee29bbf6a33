"""Slack payloads -> the core's Inbound (plus the Destination extras a reply needs).

Slash commands, message events (mentions, DMs, channel messages) and button clicks each map
to one Inbound. Thread replies also get the thread's earlier messages as `history`, read with
conversations.replies, and `continues_thread` when the bot answered this person there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.errors import error_code
from adapters.slack.mrkdwn import from_slack, strip_mention
from adapters.slack.platform import RESPONSE_URL_TTL_S, SlackIdentity
from bot.core.key_shapes import redact
from bot.core.messages import Attachment, Inbound, Turn

log = logging.getLogger(__name__)

# Message subtypes that are a person posting; everything else (edits, joins, bot posts) is not.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
# conversations.replies page size; the core trims the turns to its character budget.
HISTORY_FETCH = 200
MAX_TURNS = 50
# Seconds subtracted from a response_url's 30 minutes, for clock skew and slow handlers.
_RESPONSE_URL_MARGIN_S = 60


def _is_direct(channel: str, channel_type: str | None = None) -> bool:
    return channel_type == "im" or channel.startswith("D")


def _response_url_extras(url: str | None) -> dict[str, str]:
    if not url:
        return {}
    expires = time.time() + RESPONSE_URL_TTL_S - _RESPONSE_URL_MARGIN_S
    return {"response_url": url, "response_url_expires": f"{expires:.0f}"}


def command_inbound(body: dict[str, Any]) -> tuple[Inbound, dict[str, str]]:
    """A slash command (its text is private to the person who typed it)."""
    channel = str(body.get("channel_id") or "")
    team = str(body.get("team_id") or "")
    inbound = Inbound(
        platform="slack",
        workspace=team,
        channel=channel,
        user=str(body.get("user_id") or ""),
        text=str(body.get("text") or ""),
        is_direct=_is_direct(channel) or body.get("channel_name") == "directmessage",
        command=str(body.get("command") or ""),
    )
    extras = {"team": team, "command": inbound.command or ""}
    extras.update(_response_url_extras(body.get("response_url")))
    if body.get("trigger_id"):
        extras["trigger_id"] = str(body["trigger_id"])
    return inbound, extras


def is_user_post(event: dict[str, Any], identity: SlackIdentity) -> bool:
    """A message a person posted (not the bot, not another bot, not an edit or a join)."""
    if event.get("subtype") not in USER_SUBTYPES:
        return False
    if event.get("bot_id") or event.get("user") in (None, identity.bot_user_id):
        return False
    return True


def mentions_bot(event: dict[str, Any], identity: SlackIdentity) -> bool:
    """The text mentions the bot (Slack then also sends an app_mention event)."""
    return f"<@{identity.bot_user_id}" in str(event.get("text") or "")


def message_inbound(
    event: dict[str, Any], team: str, identity: SlackIdentity
) -> tuple[Inbound, dict[str, str]]:
    """A mention, DM or channel message; the bot answers in its thread."""
    channel = str(event.get("channel") or "")
    ts = str(event.get("ts") or "")
    thread_ts = str(event.get("thread_ts") or ts)
    text = from_slack(strip_mention(str(event.get("text") or ""), identity.bot_user_id))
    files = tuple(
        Attachment(
            name=str(f.get("name") or f.get("title") or "file"),
            url=str(f.get("url_private") or f.get("permalink") or ""),
            mime=f.get("mimetype"),
            size=f.get("size"),
        )
        for f in event.get("files") or ()
        if isinstance(f, dict)
    )
    inbound = Inbound(
        platform="slack",
        workspace=team or str(event.get("team") or ""),
        channel=channel,
        user=str(event.get("user") or ""),
        text=text,
        thread=thread_ts,
        is_direct=_is_direct(channel, event.get("channel_type")),
        message_id=ts,
        attachments=files,
    )
    extras = {"team": inbound.workspace, "message_ts": ts, "thread_ts": thread_ts}
    return inbound, extras


def is_thread_reply(event: dict[str, Any]) -> bool:
    """A reply inside an existing thread (not the thread's first message)."""
    thread_ts = event.get("thread_ts")
    return bool(thread_ts) and thread_ts != event.get("ts")


def action_inbound(body: dict[str, Any]) -> tuple[Inbound, dict[str, str]]:
    """A button click, as the person who clicked it, where the clicked message is."""
    user = body.get("user") or {}
    team = str((body.get("team") or {}).get("id") or user.get("team_id") or "")
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    container = body.get("container") or {}
    message_ts = str(container.get("message_ts") or message.get("ts") or "")
    inbound = Inbound(
        platform="slack",
        workspace=team,
        channel=channel,
        user=str(user.get("id") or ""),
        text="",
        thread=message.get("thread_ts") or container.get("thread_ts"),
        is_direct=_is_direct(channel),
        message_id=message_ts or None,
    )
    extras = {"team": team, "message_ts": message_ts}
    extras.update(_response_url_extras(body.get("response_url")))
    if body.get("trigger_id"):
        extras["trigger_id"] = str(body["trigger_id"])
    return inbound, extras


def form_inbound(body: dict[str, Any], meta: dict[str, Any]) -> tuple[Inbound, dict[str, str]]:
    """A modal submission, answered where the form was opened (from the view's metadata)."""
    user = body.get("user") or {}
    extras = {k: str(v) for k, v in (meta.get("extras") or {}).items()}
    team = str((body.get("team") or {}).get("id") or user.get("team_id") or extras.get("team", ""))
    extras["team"] = team
    inbound = Inbound(
        platform="slack",
        workspace=team,
        channel=str(meta.get("channel") or ""),
        user=str(user.get("id") or ""),
        text="",
        thread=meta.get("thread") or None,
        is_direct=bool(meta.get("direct")),
        command=extras.get("command") or None,
    )
    return inbound, extras


@dataclass(frozen=True)
class ThreadContext:
    """What a thread says about a reply in it."""

    history: tuple[Turn, ...] = ()
    bot_present: bool = False  # the bot posted in the thread (or started it)
    answered_author: bool = False  # … in answer to the person replying now


async def _earlier_replies(
    client: AsyncWebClient, channel: str, thread: str, latest: str
) -> list[Any] | None:
    """The thread's messages up to `latest`, as Slack sent them; None when Slack won't say."""
    try:
        resp = await client.conversations_replies(
            channel=channel,
            ts=thread,
            latest=latest,
            inclusive=False,
            limit=HISTORY_FETCH,
        )
    except SlackApiError as exc:
        log.warning("conversations.replies failed (%s); no thread context", error_code(exc))
        return None
    return list(resp.get("messages") or ())


def _is_bot_message(msg: dict[str, Any], identity: SlackIdentity) -> bool:
    return msg.get("user") == identity.bot_user_id or msg.get("bot_id") == identity.bot_id


def _is_person_message(msg: dict[str, Any]) -> bool:
    # Other apps and system messages are not part of the conversation.
    return not msg.get("bot_id") and msg.get("subtype") in USER_SUBTYPES


def _read_thread(
    messages: list[Any], identity: SlackIdentity, author: str, current: float
) -> ThreadContext:
    """Turns and bot presence from the messages before `current`, replied to by `author`."""
    turns: list[Turn] = []
    present = answered = False
    previous_author: str | None = None
    for index, msg in enumerate(messages):
        if not isinstance(msg, dict) or float(msg.get("ts") or 0) >= current:
            continue
        text = str(msg.get("text") or "").strip()
        if _is_bot_message(msg, identity):
            present = True
            answered = answered or index == 0 or previous_author == author
            previous_author = identity.bot_user_id
            if text:
                turns.append(Turn(role="assistant", text=redact(text)))
        elif _is_person_message(msg):
            previous_author = str(msg.get("user") or "")
            text = from_slack(strip_mention(text, identity.bot_user_id))
            if text:
                turns.append(Turn(role="user", text=redact(text)))
    return ThreadContext(tuple(turns[-MAX_TURNS:]), present, answered)


async def thread_context(
    client: AsyncWebClient,
    identity: SlackIdentity,
    inbound: Inbound,
) -> ThreadContext:
    """The thread's earlier messages as turns, and whether the bot answered this person in it.

    "Answered this person": a bot message right after one of theirs, or the bot started the
    thread (a reply to the bot's own message). Others chatting in the same thread don't
    silently run commands on their own keys.
    """
    assert inbound.thread and inbound.message_id
    messages = await _earlier_replies(client, inbound.channel, inbound.thread, inbound.message_id)
    if messages is None:
        return ThreadContext()
    return _read_thread(messages, identity, inbound.user, float(inbound.message_id))
