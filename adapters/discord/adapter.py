"""Discord <-> TokenBot: events become Inbounds, replies go through DiscordConversations.

Slash commands are acknowledged ("thinking…") before anything else runs, except the key
command, whose first answer must be able to be a modal. Messages in channels are handed to the
core (which ignores what is not a command, and deletes keys pasted in public); answers to them
go into a thread created from the message, and a reply in a tokenbot thread continues that
conversation with the thread's earlier messages as context.

Every entry point (slash command, message, button, modal submit) is guarded: whatever escapes
is logged with a ref and the person told "something went wrong (ref …)", privately where
Discord allows it. The gateway keeps running; the person is never left with silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord import inbound as inbound_of
from adapters.discord.client import TokenBotClient, build_client
from adapters.discord.conversation import X_THREAD_FROM, DiscordConversation, RefReplacements
from adapters.discord.guard import NO_MENTIONS, crash_text, log_crash, tell_interaction
from adapters.discord.render import parse_custom_id
from adapters.discord.session import (
    DEFAULT_UPLOAD_LIMIT,
    X_UPLOAD_LIMIT,
    InteractionSession,
    SessionRegistry,
)
from adapters.discord.views import FORM_TIMEOUT_S, FormModal
from bot.core.app import TokenBot
from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.family import CommandFamily
from bot.core.messages import Actions, Button, Destination, FormRequest, Inbound, Turn

log = logging.getLogger(__name__)

# The custom_id action of the button that opens a private form (handled here, not by the core).
FORM_ACTION = "discord.form"
# A command that said nothing visible (it answered by DM only, or a job is about to post):
# "thinking…" is replaced after this long rather than left until Discord times it out.
SETTLE_AFTER_S = 5.0
SETTLED = "✅ Done."
_MAX_THREADS = 10_000
_MAX_FORMS = 1_000


def default_intents(message_content: bool = True) -> discord.Intents:
    """Guild and DM messages, plus message content for "use openmarlin …" triggers in channels."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


@dataclass
class _PendingForm:
    request: FormRequest
    origin: Destination
    created_at: float


class DiscordAdapter:
    """Owns the discord.py client and turns its events into calls on the TokenBot."""

    def __init__(
        self,
        bot: TokenBot,
        *,
        intents: discord.Intents | None = None,
        clock: Callable[[], float] = time.time,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.bot = bot
        self.clock = clock
        self.intents = intents or default_intents()
        self.sessions = SessionRegistry()
        self.replacements = RefReplacements(bot.store.message_replacements)
        self._threads: OrderedDict[str, None] = OrderedDict()
        self._forms: OrderedDict[str, _PendingForm] = OrderedDict()
        self._client_options = dict(client_options or {})
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.settle_after_s = SETTLE_AFTER_S
        self._background: set[asyncio.Task[None]] = set()
        self.client = build_client(self, intents=self.intents, **self._client_options)
        bot.register_platform("discord", self.conversation_for)

    @contextlib.asynccontextmanager
    async def _busy(self) -> AsyncIterator[None]:
        """Count an event being handled, so shutdown can let in-flight replies finish."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no event is being handled; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def rebuild_client(self, intents: discord.Intents) -> TokenBotClient:
        """A fresh client with other intents (after Discord refused the privileged one)."""
        self.intents = intents
        self.client = build_client(self, intents=intents, **self._client_options)
        return self.client

    # --- conversations -------------------------------------------------------------------

    def conversation_for(self, destination: Destination) -> DiscordConversation:
        """A Conversation from a saved Destination alone (jobs, also after a restart)."""
        session: InteractionSession | None = None
        interaction_id = destination.extras.get("interaction_id")
        if interaction_id:
            session = self.sessions.get(interaction_id)
            if session is None:
                session = InteractionSession.from_extras(destination.extras)
                if session is not None:
                    self.sessions.add(session, self.clock())
        return DiscordConversation(self, destination, session=session)

    @staticmethod
    def upload_limit(destination: Destination) -> int:
        """The upload limit saved with the destination (Discord's default otherwise)."""
        try:
            return int(destination.extras.get(X_UPLOAD_LIMIT) or DEFAULT_UPLOAD_LIMIT)
        except ValueError:
            return DEFAULT_UPLOAD_LIMIT

    def thread_ready(self, thread_id: str) -> bool:
        """Whether the reply thread was created (by this process)."""
        return thread_id in self._threads

    def mark_thread_ready(self, thread_id: str) -> None:
        """Remember a created thread (bounded)."""
        self._threads[thread_id] = None
        while len(self._threads) > _MAX_THREADS:
            self._threads.popitem(last=False)

    # --- the command tree's questions (ports.SlashRunner) ----------------------------------

    @property
    def slash_commands(self) -> list[str]:
        """Every slash command the bot's families own, in their order."""
        return self.bot.slash_commands

    def _family_of(self, slash: str) -> CommandFamily | None:
        name = slash.lstrip("/").lower()
        return next(
            (
                f
                for f in self.bot.families
                if name in (s.lstrip("/").lower() for s in f.slash_commands)
            ),
            None,
        )

    def specs_for(self, slash: str) -> tuple[CommandSpec, ...]:
        """The specs whose first path word is this slash command."""
        name = slash.lstrip("/").lower()
        return tuple(s for s in self.bot.specs if s.path[0].lower() == name)

    def family_label(self, slash: str) -> str:
        """The owning family's display name."""
        family = self._family_of(slash)
        return family.display_name if family is not None else slash.lstrip("/")

    def suggestions(self, kind: str) -> list[str]:
        """Autocomplete values from the families' caches (the bot's hook never calls the network)."""
        return list(self.bot.suggest(kind))

    # --- slash commands ------------------------------------------------------------------

    async def run_slash(
        self,
        interaction: discord.Interaction,
        command: str,
        text: str,
        *,
        options: dict[str, OptionValue] | None = None,
        subcommand: str | None = None,
        defer: bool = True,
    ) -> None:
        """Acknowledge within Discord's 3 s, then let the core handle the command."""
        try:
            inbound = inbound_of.from_interaction(
                interaction, command, text, options=options, subcommand=subcommand
            )
            await self._run_slash(interaction, inbound, defer=defer)
        except Exception as exc:
            await tell_interaction(interaction, log_crash(log, f"slash command {command}", exc))

    async def _run_slash(
        self, interaction: discord.Interaction, inbound: Inbound, *, defer: bool
    ) -> None:
        command = inbound.command
        session_state = "unanswered"
        original_id: str | None = None
        if defer:
            try:
                callback = await interaction.response.defer(thinking=True)
            except discord.HTTPException as exc:
                log.warning("could not acknowledge %s (%s %s)", command, exc.status, exc.code)
                return
            session_state = "deferred"
            message_id = getattr(callback, "message_id", None)
            original_id = str(message_id) if message_id else None
        session = InteractionSession.of(interaction, session_state)  # type: ignore[arg-type]
        session.original_id = original_id
        self.sessions.add(session, self.clock())
        conversation = DiscordConversation(
            self, inbound.destination(**session.extras()), session=session
        )
        await self._handle(inbound, conversation)
        if session.state == "deferred":
            task = asyncio.create_task(self._settle_later(conversation))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _settle_later(self, conversation: DiscordConversation) -> None:
        """Give a job a moment to post its first message; then settle "thinking…" if unused."""
        await asyncio.sleep(self.settle_after_s)
        try:
            # Read first: the job may run on another replica, which answers in the original.
            await conversation.settle(SETTLED, look_first=True)
        except Exception:
            log.exception("discord: could not settle a silent command")

    async def aclose(self) -> None:
        """Cancel background settling (the client is closed by the runner)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, inbound: Inbound, conversation: DiscordConversation) -> None:
        async with self._busy():
            try:
                # The core answers what was addressed to the bot but is not a command itself.
                await self.bot.handle(inbound, conversation)
            except Exception as exc:
                # bot.handle never raises by contract; this also guards the adapter's delivery.
                await conversation.report_crash(f"handling {inbound.command or 'a message'}", exc)

    # --- messages ------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """A chat message: triggers in channels, anything in DMs, mentions, replies in our threads."""
        try:
            await self._on_message(message)
        except Exception as exc:
            ref = log_crash(log, f"message {message.id}", exc)
            try:
                await message.reply(
                    crash_text(ref), mention_author=False, allowed_mentions=NO_MENTIONS
                )
            except Exception:
                log.exception("discord: could not report error ref %s", ref)

    async def _on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        me = self.client.user
        bot_id = me.id if me else None
        if not inbound_of.strip_mention(message.content, bot_id):
            return  # nothing to read (without the message-content intent, most messages)
        channel = message.channel
        thread = channel if isinstance(channel, discord.Thread) else None
        ours = thread is not None and bot_id is not None and thread.owner_id == bot_id
        history = await self._history(thread, message) if ours and thread is not None else ()
        inbound = inbound_of.from_message(message, bot_id, continues_thread=ours, history=history)
        extras: dict[str, str] = {}
        if message.guild is not None:
            extras[X_UPLOAD_LIMIT] = str(message.guild.filesize_limit)
        destination = inbound.destination(**extras)
        if message.guild is not None and thread is None:
            # Answer in a thread started from this message; a thread started from a message has
            # the message's id, so the destination knows its thread before it exists.
            destination = destination.model_copy(
                update={
                    "thread": str(message.id),
                    "extras": {**extras, X_THREAD_FROM: str(message.id)},
                }
            )
        conversation = DiscordConversation(self, destination, message=message)
        await self._handle(inbound, conversation)

    async def _history(self, thread: discord.Thread, message: discord.Message) -> tuple[Turn, ...]:
        try:
            return await inbound_of.thread_history(self.client, thread, message)
        except discord.HTTPException as exc:
            log.warning("could not read thread history (%s %s)", exc.status, exc.code)
            return ()

    # --- buttons and forms ---------------------------------------------------------------

    async def on_component(self, interaction: discord.Interaction) -> None:
        """A tokenbot button: open a form, or route the click to the core's action."""
        try:
            await self._on_component(interaction)
        except Exception as exc:
            await tell_interaction(interaction, log_crash(log, "a button click", exc))

    async def _on_component(self, interaction: discord.Interaction) -> None:
        parsed = parse_custom_id(interaction.custom_id or "")
        if parsed is None:
            return
        action_id, value = parsed
        if action_id == FORM_ACTION:
            await self._open_form(interaction, value)
            return
        try:
            # A deferred update: no visible change; the clicked message can then be edited.
            await interaction.response.defer()
        except discord.HTTPException as exc:
            log.warning("could not acknowledge a click (%s %s)", exc.status, exc.code)
            return
        session = InteractionSession.of(interaction, "gone")
        self.sessions.add(session, self.clock())
        inbound = inbound_of.from_interaction(interaction, None, value)
        conversation = DiscordConversation(
            self, inbound.destination(**session.extras()), session=session
        )
        async with self._busy():
            try:
                await self.bot.handle_action(inbound, action_id, value, conversation)
            except Exception as exc:
                await conversation.report_crash(f"action {action_id}", exc)

    def form_modal(self, request: FormRequest, origin: Destination) -> FormModal:
        """The modal for a form; its values are submitted on behalf of `origin`'s user."""

        async def submit(
            interaction: discord.Interaction, req: FormRequest, values: dict[str, str]
        ) -> None:
            try:
                await self._submit_form(interaction, req, values, origin)
            except Exception as exc:
                what = f"form {req.form_id}"
                ref = log_crash(log, what, exc, secrets_inside=True)
                await tell_interaction(interaction, ref)

        return FormModal(request, submit)

    def form_button(self, request: FormRequest, origin: Destination) -> Actions:
        """A button that opens the form (a modal can only answer a fresh interaction)."""
        now = self.clock()
        while self._forms and (
            len(self._forms) >= _MAX_FORMS
            or next(iter(self._forms.values())).created_at < now - FORM_TIMEOUT_S
        ):
            self._forms.popitem(last=False)
        nonce = secrets.token_urlsafe(12)
        self._forms[nonce] = _PendingForm(request, origin, now)
        return Actions(
            buttons=[
                Button(
                    action_id=FORM_ACTION,
                    label=f"Open: {request.title}",
                    value=nonce,
                    style="primary",
                )
            ]
        )

    async def _open_form(self, interaction: discord.Interaction, nonce: str) -> None:
        pending = self._forms.get(nonce)
        try:
            if pending is None or pending.created_at < self.clock() - FORM_TIMEOUT_S:
                await interaction.response.send_message(
                    "That form has expired; run the command again.",
                    ephemeral=True,
                    allowed_mentions=NO_MENTIONS,
                )
            elif str(interaction.user.id) != pending.origin.user:
                await interaction.response.send_message(
                    "This form belongs to someone else.",
                    ephemeral=True,
                    allowed_mentions=NO_MENTIONS,
                )
            else:
                await interaction.response.send_modal(
                    self.form_modal(pending.request, pending.origin)
                )
        except discord.HTTPException as exc:
            log.warning("could not open a form (%s %s)", exc.status, exc.code)

    async def _submit_form(
        self,
        interaction: discord.Interaction,
        request: FormRequest,
        values: dict[str, str],
        origin: Destination,
    ) -> None:
        """Form values -> `TokenBot.submit_form`, as the user in the place the form came from."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as exc:
            log.warning("could not acknowledge a form (%s %s)", exc.status, exc.code)
            return
        session = InteractionSession.of(interaction, "deferred")
        session.ephemeral_defer = True
        self.sessions.add(session, self.clock())
        # Keys belong to a user in a workspace: the one where the form was asked for.
        inbound = Inbound(
            platform="discord",
            workspace=origin.workspace,
            channel=origin.channel,
            thread=origin.thread,
            user=str(interaction.user.id),
            text="",
            is_direct=origin.is_direct,
            is_public=False,
        )
        conversation = DiscordConversation(
            self, inbound.destination(**session.extras()), session=session
        )
        self._forms = OrderedDict(
            (k, v) for k, v in self._forms.items() if v.request is not request
        )
        async with self._busy():
            try:
                await self.bot.submit_form(inbound, request.form_id, values, conversation)
            except Exception as exc:
                await conversation.report_crash(f"form {request.form_id}", exc, secrets_inside=True)
