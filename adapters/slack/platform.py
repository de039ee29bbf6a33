"""What every Slack conversation shares: the Web API client, the bot's identity and the bookkeeping.

One `SlackPlatform` per process. It owns the aiohttp session (also used for response_url),
the supervised background tasks, the retry/duplicate filters, the per-workspace budgets for
Slack's Tier 2 streaming calls, and a small memory of threads the bot has answered in.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.conversation import SlackConversation
from adapters.slack.limits import LruCounter, SeenAnywhere, TokenBucket
from adapters.slack.supervisor import Supervisor
from bot.core.messages import Destination

if TYPE_CHECKING:
    from bot.core.app import TokenBot

log = logging.getLogger(__name__)

# A response_url accepts 5 posts within 30 minutes.
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60
# chat.startStream and chat.stopStream are Tier 2 (about 20 calls a minute per workspace);
# a native stream costs one of each. Streams beyond this budget use post + chat.update.
STREAM_CALLS_PER_MINUTE = 18.0
STREAM_CALLS_BURST = 6.0
# chat.appendStream is Tier 4 (100+ a minute per workspace).
APPEND_CALLS_PER_MINUTE = 100.0
APPEND_CALLS_BURST = 20.0
_MEMORY = 10_000
# How long a delivery is remembered as seen: Slack's retries come within minutes.
SEEN_TTL_S = 3600.0


@dataclass(frozen=True)
class SlackIdentity:
    """Who the bot is (from auth.test)."""

    team_id: str
    bot_user_id: str
    bot_id: str


def build_client(
    token: str | None, base_url: str, session: aiohttp.ClientSession, timeout_s: int = 30
) -> AsyncWebClient:
    """An AsyncWebClient on the shared session that retries 429s after Retry-After (once)."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        timeout=timeout_s,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=1),
        ],
    )


class SlackPlatform:
    """Shared state of the Slack adapter; builds a Conversation for any Destination."""

    def __init__(
        self,
        bot: TokenBot,
        client: AsyncWebClient,
        session: aiohttp.ClientSession,
        identity: SlackIdentity,
        *,
        native_streaming: bool = True,
    ) -> None:
        self.bot = bot
        self.client = client
        self.session = session
        self.identity = identity
        self.native_streaming = native_streaming
        self.supervisor = Supervisor()
        # Shared by every replica on the store (a retry may reach another one, or this one
        # after a restart). event_id: Slack retries an event it thinks we missed; channel+ts:
        # a mention arrives as app_mention and as message, maybe at two replicas.
        seen = bot.store.events
        self.events = SeenAnywhere(seen, "slack:event", SEEN_TTL_S)
        self.messages = SeenAnywhere(seen, "slack:message", SEEN_TTL_S)
        self._response_url_uses = LruCounter()
        self._dm_channels: OrderedDict[str, str] = OrderedDict()
        self._threads: OrderedDict[str, bool] = OrderedDict()
        self._stream_budgets: dict[str, TokenBucket] = {}
        self._append_budgets: dict[str, TokenBucket] = {}

    def conversation_for(self, destination: Destination) -> SlackConversation:
        """A Conversation for new messages and for jobs resumed after a restart."""
        return SlackConversation(destination, self)

    # --- threads ---------------------------------------------------------------------------

    @staticmethod
    def _thread_key(channel: str, thread_ts: str) -> str:
        return f"{channel}:{thread_ts}"

    def note_answered(self, channel: str, thread_ts: str | None) -> None:
        """The bot posted in (or started) this thread."""
        if thread_ts:
            self._remember_thread(self._thread_key(channel, thread_ts), True)

    def note_checked(self, channel: str, thread_ts: str, answered: bool) -> None:
        """What conversations.replies showed about the bot in this thread."""
        self._remember_thread(self._thread_key(channel, thread_ts), answered)

    def thread_answered(self, channel: str, thread_ts: str) -> bool | None:
        """True/False when known, None when this process has not seen the thread."""
        return self._threads.get(self._thread_key(channel, thread_ts))

    def _remember_thread(self, key: str, answered: bool) -> None:
        self._threads[key] = answered
        self._threads.move_to_end(key)
        while len(self._threads) > _MEMORY:
            self._threads.popitem(last=False)

    # --- budgets ---------------------------------------------------------------------------

    def count_stream_edit(self) -> None:
        """One streamed post, update or append (the tokenbot_stream_edits metric)."""
        self.bot.metrics.stream_edits.labels("slack").inc()

    def stream_budget(self, team: str) -> TokenBucket:
        """Tier 2 budget for chat.startStream + chat.stopStream in one workspace."""
        bucket = self._stream_budgets.get(team)
        if bucket is None:
            bucket = TokenBucket(STREAM_CALLS_PER_MINUTE / 60, STREAM_CALLS_BURST)
            self._stream_budgets[team] = bucket
        return bucket

    def append_budget(self, team: str) -> TokenBucket:
        """Tier 4 budget for chat.appendStream in one workspace."""
        bucket = self._append_budgets.get(team)
        if bucket is None:
            bucket = TokenBucket(APPEND_CALLS_PER_MINUTE / 60, APPEND_CALLS_BURST)
            self._append_budgets[team] = bucket
        return bucket

    # --- response_url and DMs --------------------------------------------------------------

    def response_url_usable(self, destination: Destination) -> bool:
        """The destination has a response_url with uses and time left."""
        url = destination.extras.get("response_url")
        if not url:
            return False
        expires = destination.extras.get("response_url_expires")
        if expires:
            try:
                if time.time() >= float(expires):
                    return False
            except ValueError:
                pass
        return self._response_url_uses.get(url) < RESPONSE_URL_USES

    async def respond(self, destination: Destination, payload: dict[str, Any]) -> bool:
        """Post through the destination's response_url; False when it can't be used."""
        if not self.response_url_usable(destination):
            return False
        url = destination.extras["response_url"]
        self._response_url_uses.add(url)
        try:
            async with self.session.post(url, json=payload) as resp:
                body = await resp.text()
                if resp.status >= 300:
                    log.warning("response_url refused a reply: %s %s", resp.status, body[:200])
                    return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("response_url unreachable: %s", exc)
            return False
        return True

    async def dm_channel(self, user: str) -> str:
        """The id of the bot's DM with `user` (conversations.open, cached)."""
        channel = self._dm_channels.get(user)
        if channel is None:
            resp = await self.client.conversations_open(users=user)
            channel = str(resp["channel"]["id"])
            self._dm_channels[user] = channel
            while len(self._dm_channels) > _MEMORY:
                self._dm_channels.popitem(last=False)
        return channel

    async def aclose(self) -> None:
        """Let running handlers finish briefly, then stop them."""
        await self.supervisor.aclose()
