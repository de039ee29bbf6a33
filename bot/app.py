"""Composition root: builds the HTTP client, services, store and jobs, and handles commands."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot import catalog
from bot.command_models import (
    ChatCommand,
    Command,
    CostCommand,
    HelpCommand,
    ImageCommand,
    KeyCommand,
    ModelsCommand,
    SearchCommand,
    UsageError,
    VideoCommand,
)
from bot.commands import alltoken as alltoken_handlers
from bot.commands.alltoken import HandledFailure
from bot.commands.alltoken_jobs import CANCEL_ACTION, ImageJob, VideoJob
from bot.commands.context import KEY_HINTS, HandlerContext, MissingKey
from bot.commands.help import help_
from bot.commands.keys import SERVICE_NAMES, store_key
from bot.commands.keys import key as key_handler
from bot.failures import render_failure
from bot.jobs import JobRunner
from bot.key_shapes import find_keys, fingerprint
from bot.messages import Conversation, Destination, Failure, Inbound, MessageRef, Notice
from bot.poll_budget import PollBudget
from bot.router import RouterContext, parse, parse_slash
from bot.services.alltoken import AllTokenService, ChatMessage
from bot.services.errors import BackendError
from bot.services.http import build_http_client
from bot.settings import Settings
from bot.store import AuditEntry, Owner, SecretBox, Store

log = logging.getLogger(__name__)

Handler = Callable[[Any, HandlerContext], Awaitable[None]]

HANDLERS: dict[type[Any], Handler] = {
    ChatCommand: alltoken_handlers.chat,
    SearchCommand: alltoken_handlers.search,
    ModelsCommand: alltoken_handlers.models,
    CostCommand: alltoken_handlers.cost,
    ImageCommand: alltoken_handlers.image,
    VideoCommand: alltoken_handlers.video,
    KeyCommand: key_handler,
    HelpCommand: help_,
}

_RECENT_CONVERSATIONS = 10_000


def _explicit(inbound: Inbound) -> bool:
    """A slash command, a DM, or text that names a command (`/alltoken-…`, `alltoken-…`)."""
    if inbound.command or inbound.is_direct:
        return True
    lowered = inbound.text.lower()
    return "alltoken-" in lowered or "/alltoken" in lowered


@dataclass
class Services:
    """One client per backend, all on the shared httpx client."""

    alltoken: AllTokenService


class TokenBot:
    """The platform-neutral bot: adapters hand it Inbound messages and a Conversation."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        store: Store,
        services: Services,
    ) -> None:
        self.settings = settings
        self.http = http
        self.store = store
        self.services = services
        self._conversation_factories: dict[str, Callable[[Destination], Conversation]] = {}
        self.jobs = JobRunner(
            store, self.conversation_for, PollBudget(settings.max_polls_per_second)
        )
        self.jobs.register(
            ImageJob(services.alltoken, settings.images_dir, settings.image_timeout_s)
        )
        self.jobs.register(
            VideoJob(services.alltoken, settings.images_dir, settings.video_timeout_s)
        )
        # Conversations whose latest bot action was an AllToken call ("how much did that cost").
        self._alltoken_recent: OrderedDict[str, None] = OrderedDict()
        self.last_request_id: str | None = None

    @classmethod
    async def create(cls, settings: Settings) -> TokenBot:
        """Open the store and build the services."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        box = SecretBox.from_settings(
            settings.master_key.get_secret_value() if settings.master_key else None,
            settings.data_dir,
        )
        store = await Store.open(settings.db_path, box)
        http = build_http_client(settings.http_timeout_s)
        services = Services(
            alltoken=AllTokenService(
                http, settings.alltoken_base_url, models_ttl_s=settings.models_cache_ttl_s
            )
        )
        return cls(settings, http, store, services)

    async def start(self) -> int:
        """Resume unfinished jobs (call once every adapter has registered its conversations)."""
        return await self.jobs.resume()

    async def aclose(self) -> None:
        """Stop jobs (they resume next start), close the HTTP client and the store."""
        await self.jobs.aclose()
        await self.http.aclose()
        await self.store.close()

    # --- adapters -----------------------------------------------------------------------

    def register_platform(
        self, platform: str, factory: Callable[[Destination], Conversation]
    ) -> None:
        """How to rebuild a Conversation from a saved Destination (for jobs after a restart)."""
        self._conversation_factories[platform] = factory

    def conversation_for(self, destination: Destination) -> Conversation:
        """A Conversation for a saved destination."""
        factory = self._conversation_factories.get(destination.platform)
        if factory is None:
            raise LookupError(f"no adapter for platform {destination.platform} is running")
        return factory(destination)

    # --- router context -----------------------------------------------------------------

    def router_context(self, conversation_key: str | None = None) -> RouterContext:
        """What the router may know: cached model ids and whether the last call was AllToken."""
        cached = self.services.alltoken.cached_models("chat")
        models = (
            frozenset(m.id.lower() for m in cached) if cached else frozenset(catalog.CHAT_MODELS)
        )
        return RouterContext(
            chat_models=models,
            last_call_was_alltoken=bool(
                conversation_key and conversation_key in self._alltoken_recent
            ),
        )

    def note_alltoken_call(self, conversation_key: str) -> None:
        """Remember that this conversation just used AllToken (bounded memory)."""
        self._alltoken_recent[conversation_key] = None
        self._alltoken_recent.move_to_end(conversation_key)
        while len(self._alltoken_recent) > _RECENT_CONVERSATIONS:
            self._alltoken_recent.popitem(last=False)

    def history_for(self, inbound: Inbound) -> list[ChatMessage]:
        """Earlier turns of this thread to send as context (adapters supply them)."""
        return []

    # --- handling -----------------------------------------------------------------------

    def parse(self, inbound: Inbound) -> Command | None:
        """Text (or a platform slash command) to a Command; None when it is not for us."""
        ctx = self.router_context(inbound.conversation_key)
        if inbound.command:
            return parse_slash(inbound.command, inbound.text, ctx)
        return parse(inbound.text, ctx)

    async def handle(self, inbound: Inbound, conversation: Conversation) -> bool:
        """Handle one message; True when it was a command. Never raises to the adapter."""
        owner = Owner.of(inbound)
        try:
            command = self.parse(inbound)
        except UsageError as exc:
            if not _explicit(inbound):
                # "are the alltoken models any good?" in a channel is conversation, not a
                # malformed command: only answer usage errors when the command was spelled out.
                log.debug("ignored a loose trigger in a channel message: %s", exc.problem)
                return False
            await self._safe_whisper(
                conversation,
                [Failure(code="usage", message=exc.problem, hint=f"Usage: `{exc.usage}`")],
            )
            await self._audit(owner, exc.command, "usage_error", exc.problem)
            return True
        await self._warn_leaked_key(inbound, conversation, command)
        if command is None:
            return False
        self.last_request_id = None
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        outcome, detail = "ok", None
        try:
            await HANDLERS[type(command)](command, ctx)
        except MissingKey as exc:
            outcome, detail = "denied", f"no {exc.service} key"
            await self._safe_whisper(
                conversation,
                [
                    Notice(
                        level="warning",
                        text=f"You have no {SERVICE_NAMES.get(exc.service, exc.service)} key stored yet. "
                        + KEY_HINTS.get(exc.service, ""),
                    )
                ],
            )
        except HandledFailure as exc:
            outcome, detail = "failed", exc.error.code
        except BackendError as exc:
            outcome, detail = "failed", exc.code
            self.last_request_id = exc.request_id
            await self._safe_say(conversation, [render_failure(exc)])
        except Exception as exc:
            outcome, detail = "failed", type(exc).__name__
            log.exception("command %s failed", command.kind)
            await self._safe_say(
                conversation,
                [
                    Failure(
                        code="internal_error",
                        message="tokenbot hit an unexpected error.",
                        hint="Try again; if it keeps happening, tell the bot's operator the time it happened.",
                    )
                ],
            )
        await self._audit(owner, command.kind, outcome, detail, self.last_request_id)
        return True

    async def submit_secret(
        self, inbound: Inbound, service: str, value: str, conversation: Conversation
    ) -> bool:
        """A value from a private form (modal / no-echo prompt): check and store it."""
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        ok = await store_key(ctx, service, value)
        await self._audit(Owner.of(inbound), "key.set", "ok" if ok else "failed", service)
        return ok

    async def handle_action(
        self, inbound: Inbound, action_id: str, value: str, conversation: Conversation
    ) -> None:
        """A button click routed back by an adapter."""
        owner = Owner.of(inbound)
        if action_id == CANCEL_ACTION:
            await self._cancel_video(owner, value, conversation)
            return
        await self._safe_whisper(
            conversation, [Notice(level="warning", text="That button is no longer active.")]
        )

    async def _cancel_video(self, actor: Owner, job_id: str, conversation: Conversation) -> None:
        job = await self.store.get_job(job_id)
        if job is None or job.owner != actor:
            # Same answer for "not yours" and "does not exist": don't reveal others' jobs.
            await self._safe_whisper(
                conversation,
                [
                    Notice(
                        level="warning",
                        text="Only the person who started this video can cancel it.",
                    )
                ],
            )
            await self._audit(actor, "video.cancel", "denied", job_id)
            return
        if job.status not in ("pending", "running"):
            await self._safe_whisper(
                conversation, [Notice(level="info", text=f"This video is already {job.status}.")]
            )
            return
        key = await self.store.get_credential(actor, "alltoken")
        task_id = job.state.get("task_id")
        request_id = None
        if key and task_id:
            try:
                await self.services.alltoken.cancel_video(key, str(task_id))
            except BackendError as exc:
                if exc.status == 409:
                    await self._safe_whisper(
                        conversation,
                        [
                            Notice(
                                level="info",
                                text="The video had already finished; it will be posted here.",
                            )
                        ],
                    )
                    return
                await self._safe_whisper(conversation, [render_failure(exc)])
                await self._audit(actor, "video.cancel", "failed", exc.code, exc.request_id)
                return
        if not await self.store.transition_job(job_id, {"pending", "running"}, "cancelled"):
            await self._safe_whisper(
                conversation,
                [Notice(level="info", text="The video finished before it could be cancelled.")],
            )
            return
        await self.jobs.cancel_local(job_id)
        ref = job.state.get("progress_ref")
        parts = [Notice(level="warning", text="🎬 Video cancelled.")]
        try:
            if ref:
                await conversation.edit(MessageRef.model_validate(ref), parts)
            else:
                await conversation.say(parts)
        except Exception:
            log.exception("could not update the cancelled video message")
        await self._audit(actor, "video.cancel", "ok", job_id, request_id)

    async def _warn_leaked_key(
        self, inbound: Inbound, conversation: Conversation, command: Command | None
    ) -> None:
        """A key pasted where others can read it must be rotated; say so privately."""
        if inbound.is_direct or inbound.command is not None or inbound.platform == "console":
            return
        if isinstance(command, KeyCommand):
            return  # the key handler answers this case itself
        keys = find_keys(inbound.text)
        if not keys:
            return
        shown = ", ".join(fingerprint(k) for k in keys)
        await self._safe_whisper(
            conversation,
            [
                Failure(
                    code="key_exposed",
                    message=f"Your message contains what looks like an API key ({shown}); everyone in this channel can read it.",
                    hint="Rotate that key now at its provider, then store the new one with `/alltoken-key` (a private form).",
                )
            ],
        )
        await self._audit(Owner.of(inbound), "key.exposed", "warned", shown)

    async def _audit(
        self,
        owner: Owner,
        command: str,
        outcome: str,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> None:
        try:
            await self.store.audit(
                AuditEntry(
                    owner=owner,
                    command=command,
                    outcome=outcome,
                    detail=detail,
                    request_id=request_id,
                )
            )
        except Exception:
            log.exception("audit write failed")

    @staticmethod
    async def _safe_say(conversation: Conversation, parts: list[Any]) -> None:
        try:
            await conversation.say(parts)
        except Exception:
            log.exception("could not deliver a reply")

    @staticmethod
    async def _safe_whisper(conversation: Conversation, parts: list[Any]) -> None:
        try:
            await conversation.whisper(parts)
        except Exception:
            log.exception("could not deliver a private reply")
