"""Composition root: builds the HTTP client, services, store and jobs, and handles messages.

Commands come from command families (bot/core/family.py); the app knows how to run a family's
parser, handlers, button actions and private forms, not what any particular command does.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, SecretStr

from bot.backends.alltoken import catalog
from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.grammar import RouterContext
from bot.backends.alltoken.handlers import HandledFailure
from bot.backends.alltoken.service import AllTokenService, ChatMessage
from bot.backends.alltoken.spec import ChatCommand, UsageError
from bot.backends.openclaw_token.family import openclaw_token_family
from bot.backends.openmarlin.family import openmarlin_family
from bot.core.context import KEY_HINTS, HandlerContext, MissingKey
from bot.core.errors import BackendError
from bot.core.failures import new_error_ref, render_failure, unexpected_failure
from bot.core.family import ActionHandler, CommandFamily, FormHandler, Handler
from bot.core.http import build_http_client
from bot.core.jobs import JobRunner
from bot.core.key_shapes import find_keys, fingerprint, redact
from bot.core.keys import SERVICE_NAMES, UNREADABLE_CODE, unreadable_key_failure
from bot.core.messages import Conversation, Destination, Failure, Inbound, Notice, Part
from bot.core.metrics import Metrics
from bot.core.outbound_text import scrub_surrogates
from bot.core.poll_budget import PollBudget
from bot.core.settings import Settings
from bot.store import AuditEntry, Owner, SecretBox, Store
from bot.store.credentials import CredentialUnreadableError

if TYPE_CHECKING:
    from bot.core.http_server import HttpServer
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


def _typed_in_public(inbound: Inbound) -> bool:
    """A message others in the channel can read (slash command text and DMs are not)."""
    return not (inbound.is_direct or inbound.command is not None or inbound.platform == "console")


def _command_name(command: BaseModel) -> str:
    return str(getattr(command, "kind", type(command).__name__))


def _carries_only(command: BaseModel, keys: list[str]) -> bool:
    """Whether every key in the text is the one the command exists to store (`key set …`)."""
    carried = getattr(command, "key", None)
    if not isinstance(carried, SecretStr):
        return False
    value = carried.get_secret_value().strip()
    return all(k == value for k in keys)


def _cleaned(inbound: Inbound) -> Inbound:
    """Undecodable input (lone surrogates) made encodable before anything parses or stores it."""
    text = scrub_surrogates(inbound.text)
    if text == inbound.text and not inbound.history:
        return inbound
    history = tuple(
        turn.model_copy(update={"text": scrub_surrogates(turn.text)}) for turn in inbound.history
    )
    return inbound.model_copy(update={"text": text, "history": history})


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
        # Store write health on /readyz and /metrics (a full disk degrades it, see Store.health).
        self.store.max_queued_rows = settings.store_max_queued_rows
        self.readiness["store_writes"] = self.store.writes_ok
        self.metrics.track_store(self.store.health)
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
        store = await Store.open(settings.db_path, box, allow_new_store=settings.allow_new_store)
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
            # An earlier message of the thread may hold a key someone pasted: never send it on.
            kept.append(ChatMessage(role=turn.role, content=redact(turn.text)))
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
        try:
            return await self._handle(_cleaned(inbound), conversation)
        except Exception:
            # Whatever a user typed, it must not end the process or go unanswered.
            ref = new_error_ref()
            log.exception("handling a message failed (ref %s)", ref)
            await self._safe_whisper(conversation, [unexpected_failure(ref)])
            return True

    async def _handle(self, inbound: Inbound, conversation: Conversation) -> bool:
        owner = Owner.of(inbound)
        keys = find_keys(inbound.text)
        try:
            command = self.parse(inbound)
        except UsageError as exc:
            if keys:
                # The usage problem may quote the key: say only that a key was refused.
                await self._refuse_secret(inbound, conversation, keys, exc.command)
                return True
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
        if keys and command is not None and not _carries_only(command, keys):
            await self._refuse_secret(inbound, conversation, keys, _command_name(command))
            return True
        if keys and command is None and (inbound.is_direct or _explicit(inbound)):
            # Not a command, but a key sent to the bot: say what happened rather than stay silent.
            await self._refuse_secret(inbound, conversation, keys, "message")
            return True
        await self._warn_leaked_key(inbound, conversation, command, keys)
        if command is None:
            return False
        handler = self._handlers.get(type(command))
        if handler is None:
            log.error("no handler for %s", type(command).__name__)
            return False
        self.last_request_id = None
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        name = _command_name(command)
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
        except CredentialUnreadableError as exc:
            outcome, detail = "failed", UNREADABLE_CODE
            await self._safe_whisper(conversation, [unreadable_key_failure(exc.service)])
        except BackendError as exc:
            outcome, detail = "failed", exc.code
            self.last_request_id = exc.request_id
            await self._safe_say(conversation, [render_failure(exc)])
        except Exception as exc:
            ref = new_error_ref()
            outcome, detail = "failed", f"{type(exc).__name__} (ref {ref})"
            log.exception("command %s failed (ref %s)", name, ref)
            await self._safe_say(conversation, [unexpected_failure(ref)])
        await self._audit(owner, name, outcome, detail, self.last_request_id)
        self.metrics.commands.labels(name, outcome).inc()
        return True

    async def _refuse_secret(
        self, inbound: Inbound, conversation: Conversation, keys: list[str], command: str
    ) -> None:
        """A key typed where it does not belong: nothing is sent, stored or echoed."""
        deleted = False
        if _typed_in_public(inbound):
            deleted = await self._delete_inbound(conversation)
        shown = ", ".join(fingerprint(k) for k in keys)
        if deleted:
            seen = " tokenbot deleted your message, but others may have seen it: rotate that key."
        elif _typed_in_public(inbound):
            seen = " Everyone in this channel can read your message: rotate that key."
        else:
            seen = ""
        await self._safe_whisper(
            conversation,
            [
                Failure(
                    code="key_in_text",
                    message=f"Your message contains what looks like an API key ({shown}), so "
                    f"tokenbot did not run it: nothing was sent to a backend or stored.{seen}",
                    hint="Keys go only through the private forms: `/alltoken-key`, "
                    "`/openmarlin key`, `/openclaw-token auth login`. Leave keys out of prompts.",
                )
            ],
        )
        await self._audit(
            Owner.of(inbound),
            command,
            "refused",
            f"key in text {shown}" + (" (deleted)" if deleted else ""),
        )
        self.metrics.commands.labels(command, "refused").inc()

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
        values = {name: scrub_surrogates(value) for name, value in values.items()}
        stray = [k for name, value in values.items() if name != "key" for k in find_keys(value)]
        if stray:
            # Only a form's key field may hold a key; one pasted into a name, e-mail or password
            # field would be sent to a backend as that field.
            await self._safe_whisper(
                conversation,
                [
                    Failure(
                        code="key_in_text",
                        message="That form has what looks like an API key "
                        f"({', '.join(fingerprint(k) for k in stray)}) in a field that is not "
                        "for keys, so tokenbot did not send it.",
                        hint="Run the command again and leave keys out of other fields.",
                    )
                ],
            )
            await self._audit(owner, f"form.{form_id}", "refused", "key in a non-key field")
            return False
        ctx = HandlerContext(inbound=inbound, conversation=conversation, bot=self)
        try:
            ok = await handler(ctx, values)
        except Exception:
            ref = new_error_ref()
            log.exception("form %s failed (ref %s)", form_id, ref)
            await self._safe_whisper(conversation, [unexpected_failure(ref)])
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
            ref = new_error_ref()
            log.exception("action %s failed (ref %s)", action_id, ref)
            await self._safe_whisper(conversation, [unexpected_failure(ref)])

    async def _warn_leaked_key(
        self,
        inbound: Inbound,
        conversation: Conversation,
        command: BaseModel | None,
        keys: list[str],
    ) -> None:
        """A key pasted where others can read it must be rotated: delete it if possible, say so privately."""
        if not keys or not _typed_in_public(inbound):
            return
        deleted = await self._delete_inbound(conversation)
        shown = ", ".join(fingerprint(k) for k in keys)
        not_stored = " It was not stored." if command is not None else ""
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

    @staticmethod
    async def _delete_inbound(conversation: Conversation) -> bool:
        try:
            return await conversation.delete_inbound()
        except Exception:
            log.exception("could not delete a message containing a key")
            return False

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
