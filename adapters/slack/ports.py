"""What the Slack adapter's parts need from each other, as protocols.

`SlackPlatform` builds conversations and a conversation builds streams, so the concrete classes
import downwards only: platform → conversation → streams. Upward needs (a conversation asking
the platform for a DM channel, a stream posting through its conversation) go through these
protocols, which import nothing of the adapter but the message and budget types. So
`platform → conversation → streams`, and conversation, streams and guard → ports: no circle.
"""

from __future__ import annotations

from typing import Any, Protocol

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.limits import TokenBucket
from adapters.slack.render import SlackMessage
from bot.core.messages import Destination, Limits, MessageRef


class SlackWorkspaces(Protocol):
    """The process-wide Slack state a conversation or an error report uses (`SlackPlatform`)."""

    @property
    def client(self) -> AsyncWebClient:
        """The shared Web API client."""
        ...

    @property
    def native_streaming(self) -> bool:
        """Whether chat.startStream may be tried at all."""
        ...

    def note_answered(self, channel: str, thread_ts: str | None) -> None:
        """The bot posted in (or started) this thread."""
        ...

    def count_stream_edit(self) -> None:
        """One streamed post, update or append (the tokenbot_stream_edits metric)."""
        ...

    def stream_budget(self, team: str) -> TokenBucket:
        """Tier 2 budget for chat.startStream + chat.stopStream in one workspace."""
        ...

    def append_budget(self, team: str) -> TokenBucket:
        """Tier 4 budget for chat.appendStream in one workspace."""
        ...

    async def respond(self, destination: Destination, payload: dict[str, Any]) -> bool:
        """Post through the destination's response_url; False when it can't be used."""
        ...

    async def dm_channel(self, user: str) -> str:
        """The id of the bot's DM with `user`."""
        ...


class StreamTarget(Protocol):
    """Where a streamed answer goes: one conversation (`SlackConversation`)."""

    destination: Destination
    limits: Limits

    @property
    def platform(self) -> SlackWorkspaces:
        """The shared Slack state."""
        ...

    @property
    def client(self) -> Any:
        """The shared AsyncWebClient."""
        ...

    @property
    def team(self) -> str:
        """The workspace (team id) of the conversation."""
        ...

    def count_stream_edit(self) -> None:
        """One streamed post, update or append."""
        ...

    async def post_raw(self, message: SlackMessage, *, thread: str | None) -> MessageRef:
        """chat.postMessage here; SlackApiError is left to the caller."""
        ...

    async def post_elsewhere(self, message: SlackMessage) -> MessageRef:
        """The bot can't post here: the response_url, else a DM."""
        ...

    async def update_raw(self, ref: MessageRef, message: SlackMessage) -> None:
        """Replace a message posted earlier."""
        ...
