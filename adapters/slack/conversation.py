"""Conversation over Slack's Web API: messages, edits, streams, uploads, ephemerals, DMs, modals.

Where the bot can't post (`not_in_channel`, `channel_not_found`: a private channel or someone
else's DM), public replies go through the slash command's response_url and, when that is
used up or missing, to the person's DM with the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError

from adapters.slack.errors import EPHEMERAL_ERRORS, error_code, is_channel_error, wrap
from adapters.slack.guard import crash_text, log_crash
from adapters.slack.modals import closed_notice, form_view
from adapters.slack.ports import SlackWorkspaces
from adapters.slack.render import SlackMessage, render_messages
from adapters.slack.streams import NativeStream, PostUpdateStream
from bot.core.messages import (
    Destination,
    File,
    FormRequest,
    Image,
    Limits,
    MessageRef,
    Notice,
    Part,
    TextStream,
    split_files,
)
from bot.core.outbound_text import neutralise_controls

log = logging.getLogger(__name__)

# Slack's file size limit is 1 GB.
MAX_UPLOAD_BYTES = 1_000_000_000
_ALT_TEXT = 1000
_TITLE = 120
_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


class SlackConversation:
    """The Slack adapter's Conversation for one destination (channel, thread, person).

    It sees the platform only through the `SlackWorkspaces` protocol (adapters.slack.ports),
    so platform → conversation is the one direction an import goes.
    """

    def __init__(self, destination: Destination, platform: SlackWorkspaces) -> None:
        self.destination = destination
        self.platform = platform
        self.limits = Limits(
            max_message_chars=4000, edit_interval_s=1.0, max_upload_bytes=MAX_UPLOAD_BYTES
        )

    @property
    def client(self) -> Any:
        """The shared AsyncWebClient."""
        return self.platform.client

    def count_stream_edit(self) -> None:
        """One streamed post, update or append (the tokenbot_stream_edits metric)."""
        self.platform.count_stream_edit()

    @property
    def team(self) -> str:
        """The workspace (team id) this conversation is in."""
        return self.destination.extras.get("team") or self.destination.workspace

    # --- posting -------------------------------------------------------------------------------

    async def post_raw(self, message: SlackMessage, *, thread: str | None) -> MessageRef:
        """chat.postMessage here; SlackApiError is left to the caller."""
        resp = await self.client.chat_postMessage(
            channel=self.destination.channel,
            text=message.text,
            blocks=message.blocks or None,
            thread_ts=thread,
            unfurl_links=False,
            unfurl_media=False,
        )
        channel, ts = str(resp["channel"]), str(resp["ts"])
        self.platform.note_answered(channel, thread or ts)
        return MessageRef(platform="slack", channel=channel, id=ts)

    async def post_elsewhere(self, message: SlackMessage) -> MessageRef:
        """The bot can't post here: use the response_url (visible in the channel), else a DM."""
        payload = {"response_type": "in_channel", "text": message.text, "blocks": message.blocks}
        if await self.platform.respond(self.destination, payload):
            return MessageRef(
                platform="slack",
                channel=self.destination.channel,
                id="response_url",
                extras={"via": "response_url"},
            )
        return await self._post_dm(message)

    async def _post_dm(self, message: SlackMessage) -> MessageRef:
        channel = await self.platform.dm_channel(self.destination.user)
        try:
            resp = await self.client.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks or None
            )
        except SlackApiError as exc:
            raise wrap("chat.postMessage", exc) from exc
        return MessageRef(platform="slack", channel=str(resp["channel"]), id=str(resp["ts"]))

    async def _post(self, message: SlackMessage) -> MessageRef:
        try:
            return await self.post_raw(message, thread=self.destination.thread)
        except SlackApiError as exc:
            if is_channel_error(exc):
                log.info(
                    "can't post in %s (%s); replying elsewhere",
                    self.destination.channel,
                    error_code(exc),
                )
                return await self.post_elsewhere(message)
            raise wrap("chat.postMessage", exc) from exc

    @staticmethod
    def render(parts: Sequence[Part]) -> list[SlackMessage]:
        """The parts as messages; a renderer failure becomes "something went wrong (ref …)".

        Replies from jobs and handlers alike come through here, so no reply is ever lost to
        a rendering bug without the person and the log learning of it.
        """
        try:
            return render_messages(parts)
        except Exception as exc:
            ref = log_crash("rendering a reply", exc)
            return [SlackMessage(blocks=[], text=crash_text(ref))]

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Post the parts (several messages when they exceed one message's limits), then
        upload their files into the same channel/thread."""
        parts, files = split_files(parts)
        messages = self.render(parts) if parts or not files else []
        refs = [await self._post(message) for message in messages]
        for file in files:
            refs.append(await self.upload_file(file))
        return refs[0]

    async def update_raw(self, ref: MessageRef, message: SlackMessage) -> None:
        """Replace a message: chat.update, or the response_url for messages posted through it."""
        if ref.extras.get("via") == "response_url":
            payload = {"replace_original": True, "text": message.text, "blocks": message.blocks}
            if not await self.platform.respond(self.destination, payload):
                await self._post_dm(message)
            return
        try:
            await self.client.chat_update(
                channel=ref.channel, ts=ref.id, text=message.text, blocks=message.blocks
            )
        except SlackApiError as exc:
            if error_code(exc) == "message_not_found":
                await self._post(message)  # deleted meanwhile: show the new state anyway
                return
            raise wrap("chat.update", exc) from exc

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """Replace a message posted earlier (overflowing parts follow as new messages)."""
        first, *rest = self.render(parts)
        await self.update_raw(ref, first)
        for message in rest:
            await self._post(message)

    def stream(self) -> TextStream:
        """Native chat streaming inside a thread (within the Tier 2 budget), else post + update."""
        if (
            self.destination.thread
            and self.platform.native_streaming
            and self.platform.stream_budget(self.team).try_take(2)
        ):
            return NativeStream(self, self.platform.append_budget(self.team))
        return PostUpdateStream(self)

    # --- files ---------------------------------------------------------------------------------

    async def upload(self, image: Image) -> MessageRef:
        """files_upload_v2 into this channel/thread with the prompt as alt text."""
        data = await asyncio.to_thread(image.path.read_bytes)
        if len(data) > self.limits.max_upload_bytes:
            raise ValueError(f"image of {len(data)} bytes is over Slack's upload limit")
        suffix = _SUFFIXES.get(image.mime, image.path.suffix or ".png")
        filename = image.path.stem + suffix
        # The prompt is the alt text and title: no control characters in either.
        alt = neutralise_controls(image.alt)[:_ALT_TEXT]
        title = alt[:_TITLE] or filename
        try:
            resp = await self.client.files_upload_v2(
                file=data,
                filename=filename,
                title=title,
                alt_txt=alt or None,
                channel=self.destination.channel,
                thread_ts=self.destination.thread,
            )
            channel = self.destination.channel
        except SlackApiError as exc:
            if not is_channel_error(exc):
                raise wrap("files.upload", exc) from exc
            channel = await self.platform.dm_channel(self.destination.user)
            log.info(
                "can't upload in %s (%s); sending to the DM",
                self.destination.channel,
                error_code(exc),
            )
            try:
                resp = await self.client.files_upload_v2(
                    file=data, filename=filename, title=title, alt_txt=alt or None, channel=channel
                )
            except SlackApiError as dm_exc:
                raise wrap("files.upload", dm_exc) from dm_exc
        file = resp.get("file") or {}
        self.platform.note_answered(channel, self.destination.thread)
        return MessageRef(
            platform="slack", channel=channel, id=str(file.get("id", "")), extras={"kind": "file"}
        )

    async def upload_file(self, file: File, *, private: bool = False) -> MessageRef:
        """files_upload_v2 of a `File` part here, or (private: a file can't be ephemeral) into
        the person's DM with the bot."""
        data = await asyncio.to_thread(file.path.read_bytes)
        if len(data) > self.limits.max_upload_bytes:
            raise ValueError(f"file of {len(data)} bytes is over Slack's upload limit")
        name = neutralise_controls(file.name).replace("/", "_")[:_TITLE] or file.path.name
        channel, thread = self.destination.channel, self.destination.thread
        if private and not self.destination.is_direct:
            channel, thread = await self.platform.dm_channel(self.destination.user), None
        try:
            resp = await self.client.files_upload_v2(
                file=data, filename=name, title=name, channel=channel, thread_ts=thread
            )
        except SlackApiError as exc:
            if private or not is_channel_error(exc):
                raise wrap("files.upload", exc) from exc
            channel, thread = await self.platform.dm_channel(self.destination.user), None
            try:
                resp = await self.client.files_upload_v2(
                    file=data, filename=name, title=name, channel=channel
                )
            except SlackApiError as dm_exc:
                raise wrap("files.upload", dm_exc) from dm_exc
        uploaded = resp.get("file") or {}
        self.platform.note_answered(channel, thread)
        return MessageRef(
            platform="slack",
            channel=channel,
            id=str(uploaded.get("id", "")),
            extras={"kind": "file"},
        )

    # --- private replies -----------------------------------------------------------------------

    async def whisper(self, parts: Sequence[Part]) -> None:
        """An ephemeral message; via response_url or DM where ephemerals can't go.

        Files can't be ephemeral: they go to the person's DM with the bot, and the message says so.
        """
        parts, files = split_files(parts)
        if files and not self.destination.is_direct:
            names = ", ".join(neutralise_controls(f.name) for f in files)
            parts = [*parts, Notice(level="info", text=f"📎 {names}: sent to your DM with me.")]
        for message in self.render(parts) if parts or not files else []:
            try:
                await self.client.chat_postEphemeral(
                    channel=self.destination.channel,
                    user=self.destination.user,
                    text=message.text,
                    blocks=message.blocks or None,
                    thread_ts=self.destination.thread,
                )
                continue
            except SlackApiError as exc:
                if not is_channel_error(exc, EPHEMERAL_ERRORS):
                    raise wrap("chat.postEphemeral", exc) from exc
            payload = {"response_type": "ephemeral", "text": message.text, "blocks": message.blocks}
            if not await self.platform.respond(self.destination, payload):
                await self._post_dm(message)
        for file in files:
            await self.upload_file(file, private=True)

    async def direct(self, parts: Sequence[Part]) -> None:
        """A direct message from the bot."""
        for message in self.render(parts):
            await self._post_dm(message)

    async def request_form(self, request: FormRequest) -> None:
        """Open a modal (needs the trigger_id of a slash command or click from the last 3 s)."""
        trigger = self.destination.extras.get("trigger_id")
        if trigger:
            try:
                await self.client.views_open(
                    trigger_id=trigger, view=form_view(request, self.destination)
                )
                return
            except SlackApiError as exc:
                log.warning("views.open failed: %s", error_code(exc))
        await self.whisper([Notice(level="info", text=closed_notice(request.title))])

    async def delete_inbound(self) -> bool:
        """Slack bots can't delete a person's message."""
        return False
