"""Slack's Agents & AI Apps surface: the assistant thread, through bolt's `AsyncAssistant`.

- `assistant_thread_started`: the thread's context (the channel the person has open) is stored,
  a greeting is posted and suggested prompts are set: a chat, an image, an OpenMarlin
  instruction and the week's spend, each kept only if this build's router reads it.
- A person's message in the thread goes through the same router as a DM, with the thread as
  history; plain text continues the thread's chat (the user's default model unless the thread
  chose one). The first prompt becomes the thread's title (clipped, keys redacted, inert).
  The status says "is thinking…" or "is drawing…" until the core has handled the message:
  a chat streams (natively, the reply is in a thread) before that; an image job's progress
  message takes over (Slack clears a status whenever the app posts in the thread).
- `assistant_thread_context_changed`: the new context is stored in tokenbot's store (not in
  memory, and not in message metadata as bolt's default store does), so a restart or another
  replica still knows which channel the person is looking at.
- "Summarize this channel": a message that names *this channel* gets that channel's recent
  messages (conversations.history, the `channels:history` / `groups:history` scopes the bot
  already has) ahead of the thread's history. The person's own request in their own assistant
  thread is the permission; nothing is read otherwise, only people's messages are kept, keys
  are redacted, and the answer stays in the private thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.async_store import (
    AsyncAssistantThreadContextStore,
)
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import is_event
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import claims
from adapters.slack import inbound as mapping
from adapters.slack.errors import error_code
from adapters.slack.inert import inert_plain
from adapters.slack.mrkdwn import from_slack
from adapters.slack.platform import SlackPlatform
from bot.core.grammar import UsageError
from bot.core.key_shapes import find_keys, redact
from bot.core.messages import Destination, Inbound, Notice, Text, Turn
from bot.store.thread_contexts import ThreadContextRows

if TYPE_CHECKING:
    from bot.core.app import TokenBot

log = logging.getLogger(__name__)

THINKING = "is thinking…"
DRAWING = "is drawing…"
# Help topics whose commands make a picture or a film: their status is "is drawing…".
_DRAWING_TOPICS = frozenset({"image", "video"})
TITLE_CHARS = 60
# How many of the open channel's latest top-level messages "summarize this channel" reads.
CHANNEL_HISTORY = 50
_ASKS_ABOUT_CHANNEL = re.compile(r"\bthis\s+(?:channel|conversation)\b", re.I)
# Only these keys of a thread context are kept: ids, never text.
_CONTEXT_FIELDS = ("channel_id", "team_id", "enterprise_id")
GREETING = (
    "Hi! I'm tokenbot. Ask me anything and I'll answer with your own AllToken key, or ask "
    "for an image or an OpenMarlin task. My **Home** tab shows which of your keys are set."
)
PROMPTS_TITLE = "Try one of these:"


@dataclass(frozen=True)
class Suggestion:
    """A suggested prompt; `plain` ones are chat, the others must parse as a command."""

    title: str
    message: str
    plain: bool = False


SUGGESTIONS = (
    Suggestion("Ask a question", "Explain how tides work, in three sentences.", plain=True),
    Suggestion("Draw an image", "draw with alltoken a lighthouse at dusk"),
    Suggestion(
        "Run an OpenMarlin task", "use openmarlin to summarize the latest Python release notes"
    ),
    Suggestion("How much did I spend this week?", "/tokenbot usage --since 7d"),
)


class ListenerHost(Protocol):
    """What the listeners need from `adapters.slack.app.SlackHandlers`."""

    platform: SlackPlatform

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str,
        body: dict[str, Any],
        *,
        secrets_inside: bool = False,
    ) -> None:
        """Run after the ack, guarded."""
        ...

    def crashed(
        self, what: str, body: Any, exc: Exception, *, secrets_inside: bool = False
    ) -> None:
        """A listener itself failed: log and reply in the background."""
        ...


def thread_key(channel_id: str, thread_ts: str) -> str:
    """The store key of one assistant thread."""
    return f"slack:{channel_id}:{thread_ts}"


class StoredThreadContexts(AsyncAssistantThreadContextStore):
    """Bolt's thread context store, kept in tokenbot's store (`thread_contexts`)."""

    def __init__(self, rows: ThreadContextRows) -> None:
        self.rows = rows

    async def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        """Keep the context's ids (nothing when it names no channel)."""
        kept = {k: str(context[k]) for k in _CONTEXT_FIELDS if context.get(k)}
        if channel_id and thread_ts and kept.get("channel_id"):
            await self.rows.save(thread_key(channel_id, thread_ts), kept)

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        """The stored context of a thread, or None."""
        found = await self.rows.get(thread_key(channel_id, thread_ts))
        return AssistantThreadContext(found) if found and found.get("channel_id") else None


def suggested_prompts(bot: TokenBot) -> list[dict[str, str]]:
    """The suggestions this build's router understands, as setSuggestedPrompts wants them."""
    kept = []
    for suggestion in SUGGESTIONS:
        probe = Inbound(
            platform="slack",
            workspace="-",
            channel="D-",
            user="-",
            text=suggestion.message,
            thread="-",
            is_direct=True,
            continues_thread=suggestion.plain,
        )
        try:
            understood = bot.parse(probe) is not None
        except UsageError:
            understood = False
        if understood:
            kept.append({"title": suggestion.title, "message": suggestion.message})
    return kept


def status_for(bot: TokenBot, inbound: Inbound) -> str:
    """ "is drawing…" for an image or a video, else "is thinking…"."""
    try:
        command = bot.parse(inbound)
    except UsageError:
        return THINKING
    if command is None:
        return THINKING
    spec = next((s for s in bot.specs if s.model is type(command)), None)
    return DRAWING if spec is not None and spec.topic in _DRAWING_TOPICS else THINKING


def thread_title(text: str) -> str:
    """The thread's title from its first prompt: one line, clipped, no keys, no Slack tokens."""
    flat = " ".join(redact(text).split())
    if len(flat) > TITLE_CHARS:
        flat = flat[: TITLE_CHARS - 1].rstrip() + "…"
    return inert_plain(flat)


def asks_about_channel(text: str) -> bool:
    """The message is about "this channel" (the one the person has open)."""
    return _ASKS_ABOUT_CHANNEL.search(text) is not None


async def channel_turns(client: AsyncWebClient, channel: str) -> tuple[Turn, ...] | None:
    """The channel's latest messages by people, oldest first; None when they can't be read."""
    if not channel.startswith(("C", "G")):
        return None  # a DM or a group DM is not the bot's to read
    try:
        resp = await client.conversations_history(channel=channel, limit=CHANNEL_HISTORY)
    except SlackApiError as exc:
        log.info("conversations.history of %s refused (%s)", channel, error_code(exc))
        return None
    lines = [
        f"{msg.get('user')}: {redact(from_slack(str(msg['text'])))}"
        for msg in reversed(list(resp.get("messages") or ()))
        if isinstance(msg, dict)
        and msg.get("text")
        and not msg.get("bot_id")
        and msg.get("subtype") in mapping.USER_SUBTYPES
    ]
    if not lines:
        return ()
    # The framing rides on the newest message: when the context budget is short the oldest
    # turns are dropped first, so it stays as long as any of the channel does.
    lines[-1] = f"{lines[-1]}\n\n{_CHANNEL_NOTE}"
    return tuple(Turn(role="user", text=line) for line in lines)


async def quietly(what: str, call: Awaitable[Any]) -> bool:
    """A best-effort Slack call (status, title, prompts): a refusal is logged, not raised."""
    try:
        await call
    except SlackApiError as exc:
        log.info("%s refused (%s)", what, error_code(exc))
        return False
    return True


class AssistantThreads:
    """What each assistant listener does after its ack."""

    def __init__(self, platform: SlackPlatform, contexts: StoredThreadContexts) -> None:
        self.platform = platform
        self.contexts = contexts

    @property
    def bot(self) -> TokenBot:
        """The core."""
        return self.platform.bot

    async def started(self, event: dict[str, Any], team: str) -> None:
        """Keep the context, greet, suggest prompts."""
        thread = event.get("assistant_thread") or {}
        channel, ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        if not channel or not ts:
            return
        await self.contexts.save(
            channel_id=channel, thread_ts=ts, context=thread.get("context") or {}
        )
        destination = Destination(
            platform="slack",
            workspace=team,
            channel=channel,
            user=str(thread.get("user_id") or ""),
            thread=ts,
            is_direct=True,
            extras={"team": team},
        )
        await self.platform.conversation_for(destination).say([Text(markdown=GREETING)])
        prompts = suggested_prompts(self.bot)
        if prompts:
            client = self.platform.client
            await quietly(
                "assistant.threads.setSuggestedPrompts",
                client.assistant_threads_setSuggestedPrompts(
                    channel_id=channel, thread_ts=ts, prompts=prompts, title=PROMPTS_TITLE
                ),
            )

    async def context_changed(self, event: dict[str, Any]) -> None:
        """The person looks at another channel now: keep it."""
        thread = event.get("assistant_thread") or {}
        await self.contexts.save(
            channel_id=str(thread.get("channel_id") or ""),
            thread_ts=str(thread.get("thread_ts") or ""),
            context=thread.get("context") or {},
        )

    async def _status(self, inbound: Inbound, status: str) -> None:
        await quietly(
            "assistant.threads.setStatus",
            self.platform.client.assistant_threads_setStatus(
                channel_id=inbound.channel, thread_ts=inbound.thread or "", status=status
            ),
        )

    async def message(self, event: dict[str, Any], team: str) -> None:
        """A prompt in the thread: status, title, then the router; the status cleared after."""
        platform = self.platform
        inbound, extras = mapping.message_inbound(event, team, platform.identity)
        assert inbound.thread  # the assistant listener only sees thread messages
        await self._status(inbound, status_for(self.bot, inbound))
        try:
            thread = await mapping.thread_context(platform.client, platform.identity, inbound)
            if not any(turn.role == "user" for turn in thread.history) and inbound.text.strip():
                await quietly(
                    "assistant.threads.setTitle",
                    platform.client.assistant_threads_setTitle(
                        channel_id=inbound.channel,
                        thread_ts=inbound.thread,
                        title=thread_title(inbound.text),
                    ),
                )
            conversation = platform.conversation_for(inbound.destination(**extras))
            found = await self.contexts.find(channel_id=inbound.channel, thread_ts=inbound.thread)
            viewing = found.channel_id if found is not None else None
            history = thread.history
            if viewing and asks_about_channel(inbound.text):
                turns = await channel_turns(platform.client, viewing)
                if turns is None:
                    await conversation.whisper([Notice(level="info", text=_UNREADABLE)])
                else:
                    history = turns + history
            inbound = inbound.model_copy(
                update={
                    "history": history,
                    "continues_thread": True,
                    "addressed": True,
                    "context_channel": viewing,
                }
            )
            await self.bot.handle(inbound, conversation)
        finally:
            await self._status(inbound, "")


_CHANNEL_NOTE = (
    "(Those were the latest messages of the channel I have open, oldest first, each after "
    "its author's id.)"
)
_UNREADABLE = (
    "I can't read the channel you have open (invite me to it with `/invite @tokenbot`), "
    "so this answer doesn't use its messages."
)


class EventsAssistant(AsyncAssistant):
    """bolt's AsyncAssistant, consulted for Events API deliveries only.

    Everything it answers is an event; for any other request (a slash command, a click) it
    would still try its four listeners' matchers, each building its arguments — 0.15 ms of
    every slash command's ack, most of bolt's dispatch.
    """

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        if not is_event(req.body):
            return await next()
        return await super().async_process(req=req, resp=resp, next=next)


def build_assistant(host: ListenerHost) -> AsyncAssistant:
    """The AsyncAssistant middleware: its listeners only ack and spawn."""
    platform = host.platform
    contexts = StoredThreadContexts(platform.bot.store.thread_contexts)
    threads = AssistantThreads(platform, contexts)
    assistant = EventsAssistant(thread_context_store=contexts)

    def team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
        context = (event.get("assistant_thread") or {}).get("context") or {}
        return str(
            body.get("team_id")
            or event.get("team")
            or context.get("team_id")
            or platform.identity.team_id
        )

    @assistant.thread_started
    async def on_started(body: dict[str, Any], payload: dict[str, Any]) -> None:
        try:
            work = threads.started(payload, team_of(body, payload))
            host.spawn(work, "slack assistant thread started", body)
        except Exception as exc:
            host.crashed("slack assistant thread started", body, exc)

    @assistant.thread_context_changed
    async def on_context_changed(body: dict[str, Any], payload: dict[str, Any]) -> None:
        try:
            host.spawn(threads.context_changed(payload), "slack assistant context", body)
        except Exception as exc:
            host.crashed("slack assistant context", body, exc)

    @assistant.user_message
    async def on_message(body: dict[str, Any], payload: dict[str, Any]) -> None:
        text = payload.get("text")
        secret = isinstance(text, str) and bool(find_keys(text))
        try:
            if not mapping.is_user_post(payload, platform.identity):
                return
            first = platform.messages.claim(f"{payload.get('channel')}:{payload.get('ts')}")
            if first is not False:
                with claims.pending(first):
                    work = threads.message(payload, team_of(body, payload))
                    host.spawn(work, "slack assistant message", body, secrets_inside=secret)
        except Exception as exc:
            host.crashed("slack assistant message", body, exc, secrets_inside=secret)

    return assistant
