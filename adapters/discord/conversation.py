"""The Discord Conversation: replies through the interaction webhook, a channel or thread, or a DM.

Where a reply goes:
- a slash command's replies use its interaction webhook while the 15-minute token lasts (the
  first one replaces the "thinking…" message); after that, or without an interaction, they go to
  the channel (or the thread created from the triggering message), and by DM where the bot
  cannot post;
- private replies (whisper) are ephemeral follow-ups, or DMs when there is no live interaction.
Edits go through the webhook that posted the message, else through the channel (bot messages,
interaction responses included, can be edited there); a message that can't be edited any more
is posted again and later edits follow the new copy.

Every send and edit passes `allowed_mentions=none` explicitly, and the protocol methods are
guarded: an exception is logged with a ref and propagates, so the caller (the core, a job) says
what failed; when that reply fails too, a plain "something went wrong (ref …)" is posted in its
place, so a failed delivery is never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import discord

from adapters.discord.guard import NO_MENTIONS, crash_text, is_transient, log_crash
from adapters.discord.outgoing import Outgoing, RefReplacements
from adapters.discord.ports import ConversationHost
from adapters.discord.render import MAX_CONTENT, Rendered, inert, render, render_markdown
from adapters.discord.session import InteractionSession
from adapters.discord.user_install import rules_for
from adapters.discord.views import build_view
from bot.core.key_shapes import redact
from bot.core.messages import (
    Destination,
    Failure,
    File,
    FormRequest,
    Image,
    Limits,
    Link,
    MessageRef,
    Notice,
    Part,
    split_files,
)
from bot.core.streaming import ThrottledStream
from bot.core.text_split import split_markdown

log = logging.getLogger(__name__)

__all__ = ["NO_MENTIONS", "DiscordConversation", "DiscordSink", "Outgoing", "RefReplacements"]

# Extras of a Destination whose replies go into a thread still to be created from this message.
X_THREAD_FROM = "thread_from_message"
# What replaces a public "thinking…" message when the answer turns out to be private.
PRIVATE_PLACEHOLDER = "🔒 Answered privately."
SENT_BY_DM = "📬 Sent you a direct message."
THREAD_NAME_LIMIT = 90
_MIME_SUFFIX = {"image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
# Discord error codes: invalid webhook token, unknown webhook, thread already exists.
_TOKEN_GONE = {50027, 10015}
_THREAD_EXISTS = 160004
# A streamed answer is split below Discord's limit: making its text inert can lengthen it a
# little (`@everyone` gains a zero-width space, a bidi override becomes `[U+202E]`).
STREAM_LIMIT = MAX_CONTENT - 100


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _is_token_gone(exc: discord.HTTPException) -> bool:
    return exc.code in _TOKEN_GONE or exc.status == 401


def _streamed(text: str) -> str:
    """Model text of a stream, inert and (in the rare case it grew that much) within 2,000."""
    text = inert(text)
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


class DiscordSink:
    """The StreamSink of a Discord conversation: post once, then edit that message."""

    def __init__(self, conversation: DiscordConversation) -> None:
        self.conversation = conversation

    async def post(self, text: str) -> MessageRef:
        """Post a new message with this text."""
        return await self.conversation.post(Outgoing(content=_streamed(text)))

    async def update(self, ref: MessageRef, text: str) -> None:
        """Replace the text of a message posted earlier."""
        await self.conversation.edit_outgoing(ref, Outgoing(content=_streamed(text)))

    def render_trailer(self, trailer: Sequence[Part]) -> str:
        """The usage and cost line, as small grey text under the answer."""
        return render_markdown(trailer, subtext_notices=True)


class DiscordConversation:
    """A `Conversation` over an interaction, a channel / thread, or a DM."""

    def __init__(
        self,
        adapter: ConversationHost,
        destination: Destination,
        *,
        session: InteractionSession | None = None,
        message: discord.Message | None = None,
    ) -> None:
        self.rules, destination = rules_for(session, destination)  # user installs: few follow-ups
        self.adapter = adapter
        self.destination = destination
        self.session = session
        self.message = message  # the message being handled, for delete_inbound
        self._failed_ref: str | None = None  # a delivery failed; the caller's reply is due
        self._depth = 0  # guarded calls in progress (only the outermost one reports)
        self._told_ref: str | None = None  # the user was already told about this error ref
        upload = session.upload_limit if session else adapter.upload_limit(destination)
        self.limits = Limits(
            max_message_chars=MAX_CONTENT, edit_interval_s=1.0, max_upload_bytes=upload
        )

    @property
    def client(self) -> discord.Client:
        """The adapter's current client (it may be rebuilt after a reconnect)."""
        return self.adapter.client

    # --- the Conversation protocol --------------------------------------------------------

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Post a message visible to the conversation (follow-ups when it's long)."""
        async with self._guard("say"):
            parts, files = split_files(parts)
            refs = [await self.send(render(parts))] if parts or not files else []
            refs += [await self.post(await self.file_outgoing(file)) for file in files]
            return refs[0]

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """Replace a message; text beyond one message continues in new ones."""
        async with self._guard("edit"):
            first, *rest = self._chunks(render(parts))
            await self.edit_outgoing(ref, first)
            for chunk in rest:
                await self.post(chunk)

    def stream(self) -> ThrottledStream:
        """The shared throttled stream: at most one edit per second, split below 2,000 chars."""
        return self.rules.stream(DiscordSink(self), self.limits, STREAM_LIMIT, self.post)

    async def upload(self, image: Image) -> MessageRef:
        """Attach the image; when it is over the upload limit, link it instead and say why.

        Not guarded: the image job retries a failed upload and then says why itself.
        """
        data = await asyncio.to_thread(image.path.read_bytes)
        limit = self.limits.max_upload_bytes
        if len(data) > limit:
            return await self.say(self._too_large(image, len(data), limit))
        name = f"alltoken-image-{image.path.stem[:8]}{_MIME_SUFFIX.get(image.mime, '.png')}"
        return await self.post(Outgoing(file=(data, name, inert(image.alt))))

    async def whisper(self, parts: Sequence[Part]) -> None:
        """Only the requesting user sees it: an ephemeral follow-up, else a DM."""
        async with self._guard("whisper"):
            parts, files = split_files(parts)
            chunks = self._chunks(render(parts)) if parts or not files else []
            for out in [*chunks, *[await self.file_outgoing(file) for file in files]]:
                await self.post(out, private=True)

    async def file_outgoing(self, file: File) -> Outgoing:
        """A `File` part as an attachment; over the upload limit, a line saying so instead."""
        data, limit = await asyncio.to_thread(file.path.read_bytes), self.limits.max_upload_bytes
        name = inert(file.name).replace("/", "_") or file.path.name
        too_big = f"⚠️ {name} is {_mb(len(data))}, more than the {_mb(limit)} Discord accepts here."
        return Outgoing(content=too_big) if len(data) > limit else Outgoing(file=(data, name, ""))

    async def direct(self, parts: Sequence[Part]) -> None:
        """A direct message to the requesting user (and "thinking…" says where it went)."""
        if self.rules.live(self.session, self.adapter.clock()):
            return await self.whisper(parts)  # no DM needed: an ephemeral reply is as private
        async with self._guard("direct"):
            for chunk in self._chunks(render(parts)):
                await self._dm(chunk)
            await self.settle(SENT_BY_DM)

    async def settle(self, text: str, *, look_first: bool = False) -> bool:
        """Replace a still-showing "thinking…" with `text`; False when there was none.

        `look_first`: read the original first and leave it if it no longer shows "thinking…"
        (a job taken over by another replica may have answered through the same webhook).
        """
        session = self.session
        if session is None or not session.usable(self.adapter.clock()):
            return False
        async with session.lock:
            if session.state != "deferred":
                return False
            try:
                if look_first and not await self._still_thinking(session):
                    session.state = "used"
                    return False
                await self._edit_original(session, Outgoing(content=text))
            except discord.HTTPException as exc:
                log.info("could not settle the original response (%s %s)", exc.status, exc.code)
                return False
            session.state = "used"
        return True

    async def request_form(self, request: FormRequest) -> None:
        """Open a modal when this interaction can still answer with one, else offer a button."""
        async with self._guard("request_form"):
            await self._request_form(request)

    async def _request_form(self, request: FormRequest) -> None:
        session = self.session
        interaction = session.interaction if session else None
        if (
            session is not None
            and interaction is not None
            and session.state == "unanswered"
            and not interaction.response.is_done()
        ):
            await interaction.response.send_modal(
                self.adapter.form_modal(request, self.destination)
            )
            session.state = "modal"
            return
        # A modal can only be the first answer to an interaction; a button click is a new one.
        button = self.adapter.form_button(request, self.destination)
        await self.whisper(
            [
                Notice(
                    level="info",
                    text=f"**{request.title}**: press the button to open a private form "
                    "(only you can see it).",
                ),
                button,
            ]
        )

    async def delete_inbound(self) -> bool:
        """Delete the message being handled when the bot has Manage Messages there."""
        message = self.message
        if message is None or message.guild is None:
            return False  # slash commands have no message; nobody can delete a user's DM
        me = message.guild.me
        if me is not None:
            try:
                if not message.channel.permissions_for(me).manage_messages:
                    return False
            except (AttributeError, TypeError):
                pass  # an uncached channel: just try
        try:
            await message.delete()
        except discord.NotFound:
            return True  # already gone
        except discord.HTTPException as exc:
            log.info("could not delete a message (%s %s)", exc.status, exc.code)
            return False
        return True

    # --- errors ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Log an exception with a ref and let it propagate; when the caller's reply about it
        fails as well, tell the user in plain text instead.

        Transient failures only propagate: the caller retries or reports them (and a reply
        now would fail the same way).
        """
        self._depth += 1
        try:
            yield
        except Exception as exc:
            if is_transient(exc) or self._depth > 1:
                raise
            what = f"{what} in {self.destination.channel}"
            if self._failed_ref is None:
                self._failed_ref = log_crash(log, what, exc)
            else:
                # The reply about the first failure failed too: say it without rendering.
                await self.report_crash(what, exc, shown_ref=self._failed_ref)
            raise
        finally:
            self._depth -= 1
        self._failed_ref = None

    async def report_crash(
        self,
        what: str,
        exc: BaseException,
        *,
        secrets_inside: bool = False,
        shown_ref: str | None = None,
    ) -> str:
        """Log `exc` with a ref and tell the user "something went wrong (ref …)"; never raises.

        Privately while the interaction lasts; in the conversation's thread or channel
        otherwise (a reply to the message when even that fails). Once per conversation, and
        with `shown_ref` (the first failure's) when this one followed from it.
        """
        ref = log_crash(log, what, exc, secrets_inside=secrets_inside)
        if shown_ref is not None:
            log.error("discord: error ref %s followed from ref %s", ref, shown_ref)
            ref = shown_ref
        if self._told_ref is not None:
            log.info("error ref %s follows ref %s already reported", ref, self._told_ref)
            return self._told_ref
        self._told_ref = ref
        session = self.session
        private = session is not None and session.usable(self.adapter.clock())
        text = crash_text(ref)
        try:
            await self.post(Outgoing(content=text), private=private)
            return ref
        except Exception:
            log.exception("discord: could not report error ref %s in the conversation", ref)
        if self.message is not None:
            try:
                await self.message.reply(text, mention_author=False, allowed_mentions=NO_MENTIONS)
            except Exception:
                log.exception("discord: could not report error ref %s as a reply", ref)
        return ref

    # --- sending -----------------------------------------------------------------------------

    def _chunks(self, rendered: Rendered) -> list[Outgoing]:
        first, rest = self._split(rendered)
        return self.rules.fold([first, *rest], self.session)

    @staticmethod
    def _split(rendered: Rendered) -> tuple[Outgoing, list[Outgoing]]:
        """Content over 2,000 chars is split at paragraph / code-fence boundaries; the embeds and
        buttons go with the first chunk so the message that may be edited later keeps them."""
        pieces = split_markdown(rendered.content, MAX_CONTENT) if rendered.content else [""]
        first = Outgoing(
            content=pieces[0], embeds=rendered.embeds, view=build_view(rendered.buttons)
        )
        return first, [Outgoing(content=p) for p in pieces[1:]]

    async def send(self, rendered: Rendered) -> MessageRef:
        """Post a rendered message (several when long); the first one's ref is returned."""
        refs = [await self.post(chunk) for chunk in self._chunks(rendered)]
        return refs[0]

    async def post(self, out: Outgoing, *, private: bool = False) -> MessageRef:
        """Post one message: through the interaction while it lasts, else the channel or DM."""
        out.fill()
        session = self.session
        if session is not None and session.usable(self.adapter.clock()):
            try:
                return await self._post_interaction(session, out, private)
            except discord.HTTPException as exc:
                if not _is_token_gone(exc):
                    raise
                log.info("interaction token no longer accepted; replying in the channel")
                session.expire()
        if private or self.rules.interaction_only:  # the bot can't post in that channel
            return await self._dm(out)
        return await self._post_channel(out)

    def _ref(self, channel_id: str, message_id: str, *, via: str, private: bool) -> MessageRef:
        extras = {"via": via}
        if via == "webhook" and self.session is not None:
            extras["interaction"] = self.session.interaction_id
        if private:
            extras["ephemeral"] = "1"
        return MessageRef(platform="discord", channel=channel_id, id=message_id, extras=extras)

    def _reply_channel_id(self) -> str:
        return self.destination.thread or self.destination.channel

    async def _post_interaction(
        self, session: InteractionSession, out: Outgoing, private: bool
    ) -> MessageRef:
        webhook = self.rules.followups(session, self.client, self.destination.user)
        async with session.lock:
            interaction = session.interaction
            if (
                session.state == "unanswered"
                and interaction is not None
                and not interaction.response.is_done()
            ):
                callback = await interaction.response.send_message(
                    ephemeral=private, **out.send_kwargs()
                )
                session.state = "used"
                message_id = getattr(callback, "message_id", None)
                session.original_id = str(message_id) if message_id else session.original_id
                return self._ref(
                    self._reply_channel_id(),
                    session.original_id or "@original",
                    via="webhook",
                    private=private,
                )
            if session.state == "deferred":
                if private == session.ephemeral_defer:
                    message_id = await self._edit_original(session, out)
                    session.state = "used"
                    return self._ref(
                        self._reply_channel_id(), message_id, via="webhook", private=private
                    )
                # The first follow-up after a defer inherits the defer's visibility, whatever
                # its own flags say: settle the "thinking…" message first.
                await self._edit_original(session, Outgoing(content=PRIVATE_PLACEHOLDER))
                session.state = "used"
                message = await webhook.send(wait=True, ephemeral=private, **out.send_kwargs())
                if private and not session.ephemeral_defer:
                    await self._delete_original(session)
                return self._ref(
                    self._reply_channel_id(), str(message.id), via="webhook", private=private
                )
        message = await webhook.send(wait=True, ephemeral=private, **out.send_kwargs())
        return self._ref(self._reply_channel_id(), str(message.id), via="webhook", private=private)

    async def _edit_original(self, session: InteractionSession, out: Outgoing) -> str:
        """Write the original response (replacing "thinking…"); returns its message id."""
        message: discord.Message
        if session.interaction is not None:
            message = await session.interaction.edit_original_response(**out.edit_kwargs())
        elif session.original_id:
            webhook = session.webhook(self.client)
            message = await webhook.edit_message(int(session.original_id), **out.edit_kwargs())
        else:
            # Without the id there is nothing to edit; a follow-up takes the original's place.
            webhook = session.webhook(self.client)
            message = await webhook.send(wait=True, **out.send_kwargs())
        session.original_id = str(message.id)
        return session.original_id

    async def _still_thinking(self, session: InteractionSession) -> bool:
        """Whether the original response still shows "thinking…" (Discord's loading flag)."""
        message: discord.Message
        if session.interaction is not None:
            message = await session.interaction.original_response()
        elif session.original_id:
            message = await session.webhook(self.client).fetch_message(int(session.original_id))
        else:
            return True  # nothing to read: nobody has answered through it either
        return bool(message.flags.loading)

    async def _delete_original(self, session: InteractionSession) -> None:
        try:
            if session.interaction is not None:
                await session.interaction.delete_original_response()
            elif session.original_id:
                await session.webhook(self.client).delete_message(int(session.original_id))
            session.state = "gone"
        except discord.HTTPException as exc:
            log.info("could not remove the placeholder message (%s %s)", exc.status, exc.code)

    async def _post_channel(self, out: Outgoing) -> MessageRef:
        """Post in the conversation's thread (created on first use) or channel; else by DM."""
        try:
            channel, reference = await self._reply_target()
            kwargs = out.send_kwargs()
            if reference is not None:
                kwargs.update(reference=reference, mention_author=False)
            message = await channel.send(**kwargs)
        except (discord.Forbidden, discord.NotFound) as exc:
            log.info("cannot post in channel (%s %s); sending a DM instead", exc.status, exc.code)
            return await self._dm(out)
        return self._ref(str(message.channel.id), str(message.id), via="channel", private=False)

    async def _reply_target(
        self,
    ) -> tuple[discord.abc.Messageable, discord.MessageReference | None]:
        """The thread to reply in, creating it from the triggering message the first time."""
        dest = self.destination
        guild_id = int(dest.workspace) if dest.workspace.isdigit() else None
        source = dest.extras.get(X_THREAD_FROM)
        if source and dest.thread and not self.adapter.thread_ready(dest.thread):
            parent = self.client.get_partial_messageable(
                int(dest.channel), guild_id=guild_id, type=discord.ChannelType.text
            )
            try:
                await parent.get_partial_message(int(source)).create_thread(
                    name=self._thread_name(), auto_archive_duration=1440
                )
            except discord.HTTPException as exc:
                if exc.code != _THREAD_EXISTS:
                    # No thread here (permissions, channel type): answer as a reply instead.
                    log.info("could not start a thread (%s %s)", exc.status, exc.code)
                    reference = discord.MessageReference(
                        message_id=int(source),
                        channel_id=int(dest.channel),
                        guild_id=guild_id,
                        fail_if_not_exists=False,
                    )
                    return parent, reference
            self.adapter.mark_thread_ready(dest.thread)
        target = self.client.get_partial_messageable(
            int(self._reply_channel_id()), guild_id=guild_id
        )
        return target, None

    def _thread_name(self) -> str:
        text = self.message.content if self.message is not None else ""
        mention = f"<@{self.client.user.id}>" if self.client.user else ""
        words = " ".join(inert(redact(text.replace(mention, ""))).split())
        if len(words) > THREAD_NAME_LIMIT:
            words = words[: THREAD_NAME_LIMIT - 1] + "…"
        return words or "tokenbot"

    async def _dm(self, out: Outgoing) -> MessageRef:
        """A direct message to the conversation's user."""
        out.fill()
        dm = await self.client.create_dm(discord.Object(int(self.destination.user)))
        message = await dm.send(**out.send_kwargs())
        return self._ref(str(dm.id), str(message.id), via="channel", private=False)

    # --- editing -----------------------------------------------------------------------------

    async def edit_outgoing(self, ref: MessageRef, out: Outgoing) -> None:
        """Edit through the webhook that posted it, else the channel; else post it again."""
        out.fill()
        copies = self.adapter.replacements
        current = copies.resolve(ref)
        if await self._edited(current, out):
            return
        # Another replica (or this process before a restart) may have posted its copy already.
        stored = await copies.stored(ref)
        if stored is not None and stored.id != current.id and await self._edited(stored, out):
            return
        log.info("could not edit message %s; posting it again", current.id)
        await copies.replace(
            ref, await self.post(out, private=current.extras.get("ephemeral") == "1")
        )

    async def _edited(self, current: MessageRef, out: Outgoing) -> bool:
        """Whether `current` took the edit; False when it cannot be edited from here."""
        session = self.session
        try:
            if session is not None and session.usable(self.adapter.clock()):
                if await self._edit_via_interaction(session, current, out):
                    return True
            if self.rules.channel_may_edit(current):
                channel = self.client.get_partial_messageable(int(current.channel))
                await channel.get_partial_message(int(current.id)).edit(**out.edit_kwargs())
                return True
        except discord.HTTPException as exc:
            log.info("could not edit message %s (%s %s)", current.id, exc.status, exc.code)
        return False

    async def _edit_via_interaction(
        self, session: InteractionSession, ref: MessageRef, out: Outgoing
    ) -> bool:
        """Edit with this interaction's token when it posted the message or the button is on it."""
        posted_here = (
            ref.extras.get("via") == "webhook"
            and ref.extras.get("interaction") == session.interaction_id
        )
        clicked_on = session.component_message_id == ref.id
        if not posted_here and not clicked_on:
            return False
        try:
            if clicked_on and session.interaction is not None:
                # After a deferred update, a click's "original response" is the clicked message.
                await session.interaction.edit_original_response(**out.edit_kwargs())
            elif ref.id == "@original" or ref.id == session.original_id:
                await self._edit_original(session, out)
                session.state = "used"
            else:
                await session.webhook(self.client).edit_message(int(ref.id), **out.edit_kwargs())
        except discord.HTTPException as exc:
            if not _is_token_gone(exc):
                raise
            session.expire()
            return False
        return True

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _too_large(image: Image, size: int, limit: int) -> list[Part]:
        why = (
            f"The image is {_mb(size)}, more than the {_mb(limit)} Discord accepts here, "
            "so it is linked instead of attached."
        )
        if image.fallback_url:
            return [
                Notice(level="warning", text=why),
                Link(url=image.fallback_url, label="Open the image"),
            ]
        return [
            Failure(
                code="too_large",
                message=why.replace("so it is linked instead of attached", "and there is no link"),
                hint="Try a smaller size or lower quality.",
            )
        ]
