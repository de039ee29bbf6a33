"""Streamed answers in Slack.

- `PostUpdateStream`: the core's ThrottledStream over chat.postMessage + chat.update (at most
  one update per second per message; overflow continues in new messages, fence-safe). Where
  the bot can't post, the text is collected and delivered once at the end (response_url / DM).
- `NativeStream`: Slack's chat streaming (startStream / appendStream / stopStream) for replies
  in a thread, through the SDK's `AsyncChatStream` (`client.chat_stream`, what bolt's
  `say_stream` returns). If the API fails, or the text outgrows one streamed message, the rest
  continues as a PostUpdateStream in the same thread, reopening an open code fence.

Can the SDK's buffering hold us to one edit a second? No, so the pacing stays ours.
`AsyncChatStream.append` calls Slack whenever its buffer reaches `buffer_size` characters
(default 256) and never on a clock: twenty 300-character deltas in one second make 19
appendStream calls, while a slow model shows nothing until 256 characters have piled up
(there is no timer to flush the rest). A failed call also leaves the text in its
private buffer, to go out again with the next append or with `stop()`, which would duplicate
what the post + update fallback then posts. So NativeStream keeps its once-a-second clock and
the per-workspace Tier 4 budget, and hands every piece over as `chunks=[MarkdownTextChunk]`:
chunks bypass the SDK's buffer (it stays empty), so each append is exactly one API call and
a failed one leaves nothing behind.

Streamed text is model output: it is made inert like every markdown block. A native stream
is sent in pieces, so each piece is the inert form of the whole text sent so far minus what
Slack already has; the tail whose meaning the next characters could change is held back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.messages.chunk import Chunk, MarkdownTextChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream

from adapters.slack.errors import error_code, is_channel_error, retry_after, wrap
from adapters.slack.inert import inert_markdown, settled_length
from adapters.slack.limits import TokenBucket
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.ports import StreamTarget
from adapters.slack.render import SlackMessage, markdown_block, markdown_of, trailer_blocks
from bot.core.messages import MessageRef, Part
from bot.core.outbound_text import neutralise_controls
from bot.core.streaming import ThrottledStream
from bot.core.text_split import open_fence

log = logging.getLogger(__name__)

# A message's `text` (notifications) is capped by chat.update at 4,000 characters.
_TEXT_LIMIT = 4000
# Slack doesn't publish a size limit for a streamed message; past this, continue in new ones.
NATIVE_MAX_CHARS = 12_000
APPEND_INTERVAL_S = 1.0
# Network errors on appendStream are retried this many times before moving to post + update.
_MAX_FAILURES = 3


def _chunks(markdown: str) -> list[Chunk] | None:
    """`markdown` as the chunks of one streaming call (None for nothing)."""
    return [MarkdownTextChunk(text=markdown)] if markdown else None


def _message(markdown: str) -> SlackMessage:
    text = to_mrkdwn(markdown)
    if len(text) > _TEXT_LIMIT:
        text = text[: _TEXT_LIMIT - 1] + "…"
    return SlackMessage(blocks=[markdown_block(markdown)], text=text or " ")


class SlackSink:
    """The StreamSink of a ThrottledStream: post + update, or collect when the bot can't post."""

    def __init__(self, conversation: StreamTarget) -> None:
        self.conversation = conversation
        self.deferred: dict[str, str] = {}  # messages to deliver elsewhere at the end, in order
        self.posts = 0
        self.updates = 0

    def _defer(self, text: str) -> MessageRef:
        ref_id = f"deferred-{len(self.deferred)}"
        self.deferred[ref_id] = text
        return MessageRef(
            platform="slack",
            channel=self.conversation.destination.channel,
            id=ref_id,
            extras={"via": "deferred"},
        )

    async def post(self, text: str) -> MessageRef:
        """Post a new message (in the conversation's thread)."""
        if self.deferred:
            return self._defer(text)
        try:
            ref = await self.conversation.post_raw(
                _message(text), thread=self.conversation.destination.thread
            )
        except SlackApiError as exc:
            if is_channel_error(exc):
                # response_url allows 5 posts: stream into memory and deliver the final text once.
                return self._defer(text)
            raise wrap("chat.postMessage", exc) from exc
        self.posts += 1
        self.conversation.count_stream_edit()
        return ref

    async def update(self, ref: MessageRef, text: str) -> None:
        """Replace the text of a message posted earlier."""
        if ref.extras.get("via") == "deferred":
            self.deferred[ref.id] = text
            return
        await self.conversation.update_raw(ref, _message(text))
        self.updates += 1
        self.conversation.count_stream_edit()

    def render_trailer(self, trailer: Sequence[Part]) -> str:
        """The usage/cost line as Markdown."""
        return markdown_of(trailer)

    async def deliver_deferred(self) -> None:
        """Send what was collected through the response_url or the DM."""
        for text in self.deferred.values():
            await self.conversation.post_elsewhere(_message(text))
        self.deferred.clear()


class PostUpdateStream:
    """A TextStream: ThrottledStream over chat.postMessage + chat.update."""

    def __init__(self, conversation: StreamTarget) -> None:
        self.sink = SlackSink(conversation)
        self.stream = ThrottledStream(self.sink, conversation.limits)

    async def append(self, text: str) -> None:
        """Add text (shown at once the first time, then at most once a second)."""
        await self.stream.append(neutralise_controls(text))

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """Show the rest and the trailer; deliver collected text where the bot can't post."""
        try:
            await self.stream.finish(trailer)
        finally:
            await self.stream.aclose()
        if self.sink.deferred:
            await self.sink.deliver_deferred()


class NativeStream:
    """A TextStream over the SDK's AsyncChatStream in a thread, paced by us (≤ 1 append a second).

    See the module docstring for why the SDK's own buffering can't do the pacing.
    """

    def __init__(
        self,
        conversation: StreamTarget,
        append_budget: TokenBucket,
        *,
        interval: float = APPEND_INTERVAL_S,
        max_chars: int = NATIVE_MAX_CHARS,
    ) -> None:
        self.conversation = conversation
        self._budget = append_budget
        self._interval = interval
        self._max_chars = max_chars
        self._streamer: AsyncChatStream | None = None  # set once chat.startStream succeeded
        self._sent = ""  # text Slack has accepted into the streamed message
        self._sent_inert = ""  # … as it was sent: inert_markdown(self._sent)
        self._pending = ""
        self._held = False  # the pending text waits for more before it can be sent
        self._last = -math.inf
        self._blocked_until = -math.inf
        self._fallback: PostUpdateStream | None = None
        self._closing = False
        self._failures = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.appends = 0

    @property
    def fell_back(self) -> bool:
        """Whether the rest of the answer went to post + update."""
        return self._fallback is not None

    async def append(self, text: str) -> None:
        """Add text; the first text starts the stream, later text is appended once a second."""
        if self._closing:
            raise RuntimeError("stream already finished")
        if not text:
            return
        self._pending += neutralise_controls(text)
        self._held = False
        if self._fallback is not None:
            async with self._lock:  # the fallback throttles on its own
                await self._pump()
            return
        if not self._lock.locked():  # else a call is in flight; the timer sends this text
            async with self._lock:
                await self._pump()
        self._arm()

    async def _pump(self) -> None:
        """Send what is due. Called with the lock held."""
        if self._fallback is not None:
            if self._pending:
                text, self._pending = self._pending, ""
                await self._fallback.append(text)
            return
        if not self._pending:
            return
        if len(self._sent) + len(self._pending) > self._max_chars:
            await self._cut_over("the answer outgrew one streamed message")
            return
        if self._streamer is None:
            await self._start()
            return
        now = time.monotonic()
        if now < max(self._last + self._interval, self._blocked_until):
            return
        try:
            text, piece = self._next_piece(final=False)
        except _Unstable:
            await self._cut_over("earlier text changed meaning")
            return
        if not text:
            self._held = True  # the timer stops; the next append sends it
            return
        if not self._budget.try_take():
            self._blocked_until = now + 1 / max(self._budget.rate, 0.01)
            return
        self._pending = self._pending[len(text) :]
        self._last = now
        try:
            await self._streamer.append(chunks=_chunks(piece))
        except Exception as exc:
            self._pending = text + self._pending
            self._failures += 1
            wait = retry_after(exc)
            if wait or (not isinstance(exc, SlackApiError) and self._failures < _MAX_FAILURES):
                # Rate limited, or a network hiccup: keep the text and try again later.
                self._blocked_until = time.monotonic() + (wait or self._interval)
                return
            await self._cut_over(f"chat.appendStream failed ({error_code(exc)})")
            return
        self._failures = 0
        self._sent += text
        self._sent_inert += piece
        self.appends += 1
        self.conversation.count_stream_edit()

    def _next_piece(self, *, final: bool) -> tuple[str, str]:
        """The raw text to send next and what to send for it (its inert form's new part).

        ("", "") while the pending text can't be settled yet; `_Unstable` when appending
        it would change how the text already sent reads (continue in a new message).
        """
        whole = self._sent + self._pending
        end = len(whole) if final else max(settled_length(whole), len(self._sent))
        if end <= len(self._sent):
            return "", ""
        inert = inert_markdown(whole[:end])
        if not inert.startswith(self._sent_inert):
            raise _Unstable
        return whole[len(self._sent) : end], inert[len(self._sent_inert) :]

    async def _start(self) -> None:
        dest = self.conversation.destination
        text, piece = self._next_piece(final=False)  # nothing was sent: always stable
        if not text:
            self._held = True
            return
        self._pending = self._pending[len(text) :]
        self._last = time.monotonic()
        try:
            # chat_stream only builds the helper; its first append is chat.startStream.
            streamer: AsyncChatStream = await self.conversation.client.chat_stream(
                channel=dest.channel,
                thread_ts=dest.thread or "",
                recipient_user_id=dest.user,
                recipient_team_id=self.conversation.team,
                buffer_size=1,  # never hold text back: the pacing is ours (module docstring)
            )
            await streamer.append(chunks=_chunks(piece))
            if not streamer.ts:
                raise SlackRequestError("chat.startStream answered without a ts")
        except Exception as exc:
            log.warning(
                "chat.startStream failed (%s); posting and updating instead", error_code(exc)
            )
            self._pending = text + self._pending
            self._fallback = PostUpdateStream(self.conversation)
            await self._pump()
            return
        self._streamer = streamer
        self._sent, self._sent_inert = text, piece
        self.conversation.count_stream_edit()
        self.conversation.platform.note_answered(dest.channel, dest.thread)

    async def _cut_over(self, why: str) -> None:
        """Close the streamed message (closing an open fence) and continue with post + update."""
        log.info("continuing a streamed reply with post + update: %s", why)
        fence = open_fence(self._sent)
        closing = ""
        if fence is not None:
            closing = ("" if self._sent.endswith("\n") else "\n") + fence.marker
        if self._streamer is not None:
            try:
                await self._streamer.stop(chunks=_chunks(closing))
            except Exception as exc:
                log.warning("chat.stopStream failed (%s)", error_code(exc))
        reopen = fence.opener + "\n" if fence is not None else ""
        self._fallback = PostUpdateStream(self.conversation)
        text, self._pending = self._pending, ""
        if text:
            await self._fallback.append(reopen + text)

    def _arm(self) -> None:
        if self._closing or self._fallback is not None or not self._pending or self._held:
            return
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self._run_timer(), name="tokenbot-slack-stream"
            )

    async def _run_timer(self) -> None:
        failures = 0
        while not self._closing and self._pending and self._fallback is None and not self._held:
            due = max(self._last + self._interval, self._blocked_until)
            await asyncio.sleep(max(due - time.monotonic(), 0.01))
            async with self._lock:
                if self._closing:
                    return
                try:
                    await self._pump()
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("streamed reply update failed")
                    if failures >= 3:
                        return

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """Send the rest with chat.stopStream, the usage line as blocks under the text."""
        self._closing = True
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            timer.cancel()
            try:
                await timer
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves, not just the timer
        async with self._lock:
            if self._streamer is not None and self._fallback is None:
                await self._stop(trailer)
                return
            if self._fallback is None:
                self._fallback = PostUpdateStream(self.conversation)  # no text was ever shown
            if self._pending:
                text, self._pending = self._pending, ""
                await self._fallback.append(text)
            await self._fallback.finish(trailer)

    async def _stop(self, trailer: Sequence[Part]) -> None:
        """chat.stopStream with the rest and the trailer; post + update it if that fails."""
        assert self._streamer is not None
        try:
            text, piece = self._next_piece(final=True)
        except _Unstable:
            await self._cut_over("earlier text changed meaning")
            assert self._fallback is not None
            await self._fallback.finish(trailer)
            return
        self._pending = ""
        blocks = trailer_blocks(trailer)
        try:
            await self._streamer.stop(chunks=_chunks(piece), blocks=blocks or None)
        except Exception as exc:
            log.warning("chat.stopStream failed (%s); posting the rest", error_code(exc))
            fence = open_fence(self._sent)
            reopen = fence.opener + "\n" if fence is not None else ""
            self._fallback = PostUpdateStream(self.conversation)
            if text:
                await self._fallback.append(reopen + text)
            await self._fallback.finish(trailer)
            return
        self._sent += text
        self._sent_inert += piece
        self.conversation.count_stream_edit()


class _Unstable(Exception):
    """Appending the pending text would change how the streamed text reads."""
