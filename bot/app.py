"""Composition root: builds the HTTP client, services, store and jobs, and handles messages.

Commands come from command families (bot/family.py); the app knows how to run a family's
parser, handlers, button actions and private forms, not what any particular command does.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from bot import catalog
from bot.command_models import ChatCommand, KeyCommand, UsageError
from bot.commands.alltoken import HandledFailure
from bot.commands.alltoken_family import alltoken_family
from bot.commands.context import KEY_HINTS, HandlerContext, MissingKey
from bot.commands.keys import SERVICE_NAMES
from bot.commands.openclaw_family import openclaw_token_family
from bot.commands.openmarlin_family import openmarlin_family
from bot.failures import render_failure
from bot.family import ActionHandler, CommandFamily, FormHandler, Handler
from bot.jobs import JobRunner
from bot.key_shapes import find_keys, fingerprint
from bot.messages import Conversation, Destination, Failure, Inbound, Notice, Part
from bot.metrics import Metrics
from bot.poll_budget import PollBudget
from bot.router import RouterContext
from bot.services.alltoken import AllTokenService, ChatMessage
from bot.services.errors import BackendError
from bot.services.http import build_http_client
from bot.settings import Settings
from bot.store import AuditEntry, Owner, SecretBox, Store

if TYPE_CHECKING:
    from bot.http_server import HttpServer

log = logging.getLogger(__name__)

_RECENT_CONVERSATIONS = 10_000

# Follow-up text in a thread -> the command that continues it (e.g. chat with the same model).
Continuation = Callable[[str], BaseModel]


def _explicit(inbound: Inbound) -> bool:
    """A slash command, a DM, a reply in the bot's thread, or text that spells a command out."""
    if inbound.command or inbound.is_direct or inbound.continues_thread:
        return True
    lowered = inbound.text.lower()
    return any(
        marker in lowered for marker in ("alltoken-", "/alltoken", "openmarlin", "openclaw-token")
    )


@dataclass
class Services:
    """One client per backend, all on the shared httpx client. Families attach theirs."""

    alltoken: AllTokenService
    openmarlin: Any = None
    openclaw_token: Any = None


def default_families() -> list[CommandFamily]:
    """Every command family this build has."""
    return [alltoken_family(), openmarlin_family(), openclaw_token_family()]


class TokenBot:
    """The platform-neutral bot: adapters hand it Inbound messages and a Conversation."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        store: Store,
        services: Services,
        families: list[CommandFamily] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        # Adapters register "is my platform connection up?" checks for /readyz.
        self.readiness: dict[str, Callable[[], Awaitable[bool]]] = {}
        # The process's HTTP server (health, metrics, Slack HTTP mode) when `tokenbot run` has one.
        self.web_server: HttpServer | None = None
        self.http = http
        self.store = store
        self.services = services
        self._conversation_factories: dict[str, Callable[[Destination], Conversation]] = {}
        self.jobs = JobRunner(
            store, self.conversation_for, PollBudget(settings.max_polls_per_second)
        )
        self.metrics.track_jobs(lambda: self.jobs.active)
        self.actions: dict[str, ActionHandler] = {}
        self.forms: dict[str, FormHandler] = {}
        self.families = families if families is not None else default_families()
        self._handlers: dict[type[BaseModel], Handler] = {}
        self._slash: dict[str, CommandFamily] = {}
        for family in self.families:
            self._handlers.update(family.handlers)
            for name in family.slash_commands:
                self._slash[name.lstrip("/").lower()] = family
            if family.attach:
                family.attach(self)
        # Conversations whose latest bot action was an AllToken call ("how much did that cost").
        self._alltoken_recent: OrderedDict[str, None] = OrderedDict()
        self._threads: OrderedDict[str, Continuation] = OrderedDict()
        self.last_request_id: str | None = None
        self._models_source: object = None
        self._chat_models: frozenset[str] = frozenset(catalog.CHAT_MODELS)

    @classmethod
    async def create(
        cls, settings: Settings, families: list[CommandFamily] | None = None
    ) -> TokenBot:
        """Open the store and build the services."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        box = SecretBox.from_settings(settings.master_key, settings.data_dir)
        store = await Store.open(settings.db_path, box)
        metrics = Metrics()
        http = build_http_client(settings.http_timeout_s, metrics.http_hooks())
        metrics.name_backend(settings.alltoken_base_url, "alltoken")
        metrics.name_backend(settings.openmarlin_server_url, "openmarlin")
        metrics.name_backend(settings.openclaw_token_api_base, "openclaw_token")
        services = Services(
            alltoken=AllTokenService(
                http, settings.alltoken_base_url, models_ttl_s=settings.models_cache_ttl_s
            )
        )
        return cls(settings, http, store, services, families, metrics)

    async def start(self) -> int:
        """Resume unfinished jobs (call once every adapter has registered its conversations)."""
        return await self.jobs.resume()

    async def aclose(self) -> None:
        """Stop jobs (they resume next start), close the HTTP client and the store."""
        await self.jobs.aclose()
        await self.http.aclose()
        await self.store.close()

    # --- adapters -----------------------------------------------------------------------

    @property
    def slash_commands(self) -> list[str]:
        """Every platform slash command the families own (for manifests and command trees)."""
        return [f"/{name}" for name in self._slash]

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

    # --- conversation state -------------------------------------------------------------

    def router_context(self, conversation_key: str | None = None) -> RouterContext:
        """What the router may know: cached model ids and whether the last call was AllToken."""
        cached = self.services.alltoken.cached_models("chat")
        if cached is not self._models_source:
            # Rebuilt only when the service refreshed its cache, not per message.
            self._models_source = cached
            self._chat_models = (
                frozenset(m.id.lower() for m in cached)
                if cached
                else frozenset(catalog.CHAT_MODELS)
            )
        recent = bool(conversation_key and conversation_key in self._alltoken_recent)
        return RouterContext(chat_models=self._chat_models, last_call_was_alltoken=recent)

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _RECENT_CONVERSATIONS:
            cache.popitem(last=False)

    def note_alltoken_call(self, *conversation_keys: str) -> None:
        """Remember that these conversations just used AllToken (bounded memory)."""
        for key in conversation_keys:
            self._remember(self._alltoken_recent, key, None)

    def note_thread(self, conversation_key: str, continuation: Continuation) -> None:
        """Plain replies in this thread continue the conversation through `continuation`."""
        self._remember(self._threads, conversation_key, continuation)

    def history_for(self, inbound: Inbound) -> list[ChatMessage]:
        """The thread's earlier turns within the context budget, oldest dropped first."""
        budget = self.settings.context_chars
        kept: list[ChatMessage] = []
        for turn in reversed(inbound.history):
            if len(turn.text) > budget:
                break
            budget -= len(turn.text)
            kept.append(ChatMessage(role=turn.role, content=turn.text))
        kept.reverse()
        return kept

    # --- handling -----------------------------------------------------------------------

    def parse(self, inbound: Inbound) -> BaseModel | None:
        """Text (or a platform slash command) to a command; None when it is not for us."""
        if inbound.command:
            family = self._slash.get(inbound.command.lstrip("/").lower())
            if family is None:
                return None
            ctx = self.router_context(inbound.conversation_key)
            return family.parse_slash(inbound.command, inbound.text, ctx)
        lowered = inbound.text.lower()
        context: RouterContext | None = None
        for family in self.families:
            # Most channel messages are not commands: reject them before any real work.
            if family.keywords and not any(k in lowered for k in family.keywords):
                continue
            context = context or self.router_context(inbound.conversation_key)
            command = family.parse(inbound.text, context)
            if command is not None:
                return command
        if inbound.continues_thread and inbound.text.strip():
            if len(inbound.text.strip()) > catalog.MAX_PROMPT_CHARS:
                # The same limit as a spelled-out prompt, before anything reaches a backend.
                raise UsageError(
                    "chat",
                    f"that message is too long ({len(inbound.text.strip()):,} characters; "
                    f"the limit is {catalog.MAX_PROMPT_CHARS:,})",
                )
            continuation = self._threads.get(inbound.conversation_key)
            if continuation is not None:
                return continuation(inbound.text)
            return ChatCommand(prompt=inbound.text.strip())
        return None

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
            self.metrics.commands.labels(exc.command, "usage_error").inc()
            return True
        await self._warn_leaked_key(inbound, conversation, command)
        if command is None:
            return False
        handler = self._handlers.get(type(command))
        if handler is None:
            log.error("no handler for %s", type(command).__name__)
            return False
        self.last_request_id = None
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        name = str(getattr(command, "kind", type(command).__name__))
        outcome, detail = "ok", None
        try:
            await handler(command, ctx)
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
            log.exception("command %s failed", name)
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
        await self._audit(owner, name, outcome, detail, self.last_request_id)
        self.metrics.commands.labels(name, outcome).inc()
        return True

    async def submit_form(
        self, inbound: Inbound, form_id: str, values: dict[str, str], conversation: Conversation
    ) -> bool:
        """Values from a private form (modal / no-echo prompt), routed to the form's handler."""
        handler = self.forms.get(form_id)
        owner = Owner.of(inbound)
        if handler is None:
            await self._safe_whisper(
                conversation,
                [Notice(level="warning", text="That form has expired; run the command again.")],
            )
            return False
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        try:
            ok = await handler(ctx, values)
        except Exception:
            log.exception("form %s failed", form_id)
            await self._safe_whisper(
                conversation,
                [
                    Failure(
                        code="internal_error",
                        message="tokenbot could not process that form.",
                        hint="Try again.",
                    )
                ],
            )
            ok = False
        await self._audit(owner, f"form.{form_id}", "ok" if ok else "failed")
        return ok

    async def handle_action(
        self, inbound: Inbound, action_id: str, value: str, conversation: Conversation
    ) -> None:
        """A button click routed back by an adapter."""
        handler = self.actions.get(action_id)
        if handler is None:
            await self._safe_whisper(
                conversation, [Notice(level="warning", text="That button is no longer active.")]
            )
            return
        try:
            await handler(self, inbound, value, conversation)
        except Exception:
            log.exception("action %s failed", action_id)
            await self._safe_whisper(
                conversation,
                [Failure(code="internal_error", message="That action failed.", hint="Try again.")],
            )

    async def _warn_leaked_key(
        self, inbound: Inbound, conversation: Conversation, command: BaseModel | None
    ) -> None:
        """A key pasted where others can read it must be rotated: delete it if possible, say so privately."""
        if inbound.is_direct or inbound.command is not None or inbound.platform == "console":
            return
        keys = find_keys(inbound.text)
        if not keys:
            return
        try:
            deleted = await conversation.delete_inbound()
        except Exception:
            log.exception("could not delete a message containing a key")
            deleted = False
        shown = ", ".join(fingerprint(k) for k in keys)
        not_stored = " It was not stored." if isinstance(command, KeyCommand) else ""
        where = (
            "tokenbot deleted the message, but others may have seen it"
            if deleted
            else "everyone in this channel can read it"
        )
        await self._safe_whisper(
            conversation,
            [
                Failure(
                    code="key_exposed",
                    message=f"Your message contained what looks like an API key ({shown}); {where}.{not_stored}",
                    hint="Rotate that key now at its provider, then store the new one privately "
                    "(`/alltoken-key`, `/openmarlin key`, `/openclaw-token auth login` open private forms).",
                )
            ],
        )
        await self._audit(
            Owner.of(inbound), "key.exposed", "deleted" if deleted else "warned", shown
        )

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
    async def _safe_say(conversation: Conversation, parts: list[Part]) -> None:
        try:
            await conversation.say(parts)
        except Exception:
            log.exception("could not deliver a reply")

    @staticmethod
    async def _safe_whisper(conversation: Conversation, parts: list[Part]) -> None:
        try:
            await conversation.whisper(parts)
        except Exception:
            log.exception("could not deliver a private reply")
