"""Composition root: builds the HTTP client, store, jobs and families, and handles messages.

Commands come from command families (bot/core/family.py), registered at construction: the app
runs a family's parser, handlers, button actions and private forms, never naming a backend. Each
request gets its own HandlerContext (bot/core/context.py) with its own request id.
"""

from __future__ import annotations

import difflib
import enum
import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, SecretStr

from bot.core.command_spec import CommandSpec
from bot.core.context import (
    ConversationMemory,
    HandlerContext,
    MissingKey,
    RequestJobs,
    ServiceRegistry,
)
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure, generic_failure, new_error_ref, unexpected_failure
from bot.core.fair_work import message_queue
from bot.core.family import ActionHandler, CommandFamily, FormHandler, Handler, Wiring
from bot.core.grammar import ParseState, UsageError
from bot.core.http import build_http_client
from bot.core.job_leases import LeasePolicy
from bot.core.jobs import JobRunner
from bot.core.key_shapes import find_keys, fingerprint
from bot.core.keys import UNREADABLE_CODE, KeyDirectory, missing_key_notice, unreadable_key_failure
from bot.core.messages import Conversation, Destination, Failure, Inbound, Notice, Part
from bot.core.metrics import Metrics
from bot.core.outbound_text import scrub_surrogates
from bot.core.policy_gate import PolicyGate, policy_name, spec_for
from bot.core.poll_budget import PollBudget
from bot.core.secret_refusal import refuse_secret, typed_in_public, warn_leaked_key
from bot.core.settings import Settings
from bot.core.spend import SpendRefused
from bot.store import AuditEntry, Owner, SecretBox, Store
from bot.store.credentials import CredentialUnreadableError

if TYPE_CHECKING:
    from bot.core.http_server import HttpServer

log = logging.getLogger(__name__)

FamilyFactory = Callable[[], list[CommandFamily]]


class Outcome(enum.Enum):
    """What became of a message: a command ran, it was not for the bot, or it was not a command."""

    HANDLED = "handled"
    IGNORED = "ignored"
    # Said to the bot but not a command: the core already told the user so.
    UNKNOWN = "unknown"

    def __bool__(self) -> bool:
        # True when the message was a command (run, refused or malformed), as adapters ask.
        return self is Outcome.HANDLED


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


FAMILY_ENTRY_POINTS = "tokenbot.families"


def default_families() -> list[CommandFamily]:
    """A fresh instance of every installed family, found by entry point (pyproject.toml's
    `tokenbot.families`), so the core never imports a backend. Sorted by name, so the order in
    which their triggers are tried does not depend on how the package was installed."""
    found = sorted(entry_points(group=FAMILY_ENTRY_POINTS), key=lambda ep: ep.name)
    return [ep.load()() for ep in found]


class TokenBot:
    """The platform-neutral bot: adapters hand it Inbound messages and a Conversation."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        store: Store,
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
        self.services = ServiceRegistry()
        self.memory = ConversationMemory(store)
        self.fair_work = message_queue(settings)  # one user's flood waits in its own queue
        self.keys = KeyDirectory()
        self._conversation_factories: dict[str, Callable[[Destination], Conversation]] = {}
        self.jobs = JobRunner(
            store,
            self.conversation_for,
            PollBudget(settings.max_polls_per_second),
            leases=LeasePolicy.from_settings(settings),
        )
        self.jobs.keys = self.keys
        self.metrics.track_jobs(lambda: self.jobs.active)
        # Store write health on /readyz and /metrics (a full disk degrades it, see Store.health).
        self.store.max_queued_rows = settings.store_max_queued_rows
        self.readiness["store_writes"] = self.store.writes_ok
        self.metrics.track_store(self.store.health)
        self.actions: dict[str, ActionHandler] = {}
        self.forms: dict[str, FormHandler] = {}
        self.families = families if families is not None else default_families()
        self._handlers: dict[type[BaseModel], Handler] = {}
        self._family_of: dict[type[BaseModel], CommandFamily] = {}
        self._slash: dict[str, CommandFamily] = {}
        wiring = Wiring(
            settings, http, self.services, self.jobs, self.metrics, self.actions, self.forms
        )
        for family in self.families:
            self._handlers.update(family.handlers)
            self._family_of.update(dict.fromkeys(family.handlers, family))
            for name in family.slash_commands:
                self._slash[name.lstrip("/").lower()] = family
            for service in family.key_services:
                self.keys.add(service)
            if family.attach:
                family.attach(wiring)
        self._gate = self._policy_gate()
        self._markers = tuple(m for f in self.families for m in f.markers)
        self._by_name = {f.name: f for f in self.families}
        self.memory.resume_threads_of(self.families)
        forms = ", ".join(f.key_command for f in self.families if f.key_command)
        self._key_forms_hint = (
            f"Keys go only through the private forms: {forms}. Leave keys out of prompts."
        )
        self._rotate_hint = (
            "Rotate that key now at its provider, then store the new one privately "
            f"({forms} open private forms)."
        )
        # The first family's help lists every family's commands.
        helps = next((f.help_command for f in self.families if f.help_command), "")
        self._not_a_command = "That isn't a tokenbot command." + (
            f" Try {helps} for the list." if helps else ""
        )

    def _policy_gate(self) -> PolicyGate | None:
        """The workspace policy a family registered, told every installed command; or None."""
        gate = self.services.find(PolicyGate)
        if gate is not None:
            gate.know(self.specs)
        return gate

    @classmethod
    async def create(
        cls, settings: Settings, families: list[CommandFamily] | None = None
    ) -> TokenBot:
        """Open the store and the shared HTTP client; the families attach their services."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        box = SecretBox.from_settings(settings.master_key, settings.data_dir)
        store = await Store.open(
            settings.store_url,
            box,
            allow_new_store=settings.allow_new_store,
            data_dir=settings.data_dir,
        )
        metrics = Metrics()
        http = build_http_client(settings.http_timeout_s, metrics.http_hooks())
        return cls(settings, http, store, families, metrics)

    async def start(self) -> int:
        """Resume unfinished jobs (call once every adapter has registered its conversations)."""
        for family in self.families:
            if family.startup_note is not None:
                log.info("%s", family.startup_note())
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

    @property
    def specs(self) -> list[CommandSpec]:
        """Every command spec of every family (help, command trees, manifests)."""
        return [spec for family in self.families for spec in family.specs]

    def suggest(self, kind: str) -> list[str]:
        """Suggestions for an option's `suggest` list, from the families' caches (never the network)."""
        for family in self.families:
            if family.suggest is not None:
                found = family.suggest(kind)
                if found:
                    return found
        return []

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

    def context(self, inbound: Inbound, conversation: Conversation) -> HandlerContext:
        """A fresh per-request context (own request id, own record of jobs started)."""
        return HandlerContext(
            inbound=inbound,
            conversation=conversation,
            store=self.store,
            services=self.services,
            jobs=RequestJobs(self.jobs, self.settings),
            memory=self.memory,
            settings=self.settings,
            keys=self.keys,
        )

    # --- parsing ------------------------------------------------------------------------

    def parse_state(self, conversation_key: str | None = None) -> ParseState:
        """What a parser may know beyond the text."""
        return ParseState(
            conversation_key=conversation_key or "",
            recent_family=self.memory.recent_family(conversation_key),
        )

    def _explicit(self, inbound: Inbound) -> bool:
        """Said to the bot (slash command, DM, mention), a reply in the bot's thread, or text that
        spells a command out."""
        if inbound.command or inbound.is_direct or inbound.addressed or inbound.continues_thread:
            return True
        lowered = inbound.text.lower()
        return any(marker in lowered for marker in self._markers)

    async def _load_conversation_state(self, inbound: Inbound) -> None:
        """This conversation's stored state (last family, thread continuation) for the parsers,
        read only when a parser can use it: a thread reply, or text with a word whose meaning
        depends on the conversation ("how much did that cost"). Everything else costs no store
        round trip (measured: a read per message halved 500-concurrent chat throughput)."""
        if self._may_use_conversation_state(inbound):
            await self.memory.load(inbound.conversation_key)

    def _may_use_conversation_state(self, inbound: Inbound) -> bool:
        if inbound.continues_thread:
            return True
        if inbound.command:
            return False
        lowered = inbound.text.lower()
        return any(k in lowered for f in self.families for k in f.state_keywords)

    def _parse_slash(self, inbound: Inbound) -> BaseModel | None:
        assert inbound.command is not None
        family = self._slash.get(inbound.command.lstrip("/").lower())
        if family is None:
            return None
        state = self.parse_state(inbound.conversation_key)
        if inbound.options is not None and family.parse_options is not None:
            path = (inbound.command.lstrip("/").lower(), *(inbound.subcommand or "").split())
            spec = next((s for s in family.specs if s.path == path), None)
            if spec is not None:
                return family.parse_options(spec, inbound.options, state)
        return family.parse_slash(inbound.command, inbound.text, state)

    def _parse_thread_reply(self, inbound: Inbound) -> BaseModel | None:
        text = inbound.text.strip()
        continuation = self.memory.continuation(inbound.conversation_key)
        if continuation is not None:
            return continuation(text)
        owner = next((f for f in self.families if f.continue_thread is not None), None)
        return owner.continue_thread(text) if owner and owner.continue_thread else None

    def parse(self, inbound: Inbound) -> BaseModel | None:
        """Text (or a platform slash command) to a command; None when it is not for us."""
        if inbound.command:
            return self._parse_slash(inbound)
        lowered = inbound.text.lower()
        state: ParseState | None = None
        for family in self.families:
            # Most channel messages are not commands: reject them before any real work.
            if family.keywords and not any(k in lowered for k in family.keywords):
                continue
            state = state or self.parse_state(inbound.conversation_key)
            command = family.parse(inbound.text, state)
            if command is not None:
                return command
        if inbound.continues_thread and inbound.text.strip():
            return self._parse_thread_reply(inbound)
        return None

    # --- handling -----------------------------------------------------------------------

    async def handle(self, inbound: Inbound, conversation: Conversation) -> Outcome:
        """Handle one message and say what became of it. Never raises to the adapter."""
        try:
            return await self.fair_work.run(inbound, self._handle, _cleaned(inbound), conversation)
        except Exception:
            # Whatever a user typed, it must not end the process or go unanswered.
            ref = new_error_ref()
            log.exception("handling a message failed (ref %s)", ref)
            await self._safe_whisper(conversation, [unexpected_failure(ref)])
            return Outcome.HANDLED

    async def _handle(self, inbound: Inbound, conversation: Conversation) -> Outcome:
        owner = Owner.of(inbound)
        keys = find_keys(inbound.text)

        async def audit(command: str, outcome: str, detail: str) -> None:
            await self._audit(owner, command, outcome, detail)

        await self._load_conversation_state(inbound)
        try:
            command = self.parse(inbound)
        except UsageError as exc:
            return await self._usage_error(inbound, conversation, keys, exc, audit)
        if keys and (
            (command is not None and not _carries_only(command, keys))
            or (command is None and (inbound.is_direct or self._explicit(inbound)))
        ):
            # Not the key a `key set` stores (or not a command at all): say what happened.
            name = _command_name(command) if command is not None else "message"
            await refuse_secret(inbound, conversation, keys, self._key_forms_hint, audit, name)
            self.metrics.commands.labels(name, "refused").inc()
            return Outcome.HANDLED
        await warn_leaked_key(
            inbound,
            conversation,
            keys,
            command is not None,
            self._rotate_hint,
            audit,
        )
        if command is None:
            if keys or not (inbound.addressed or inbound.is_direct or inbound.command):
                # (A key in public chatter was already answered by the rotate warning.)
                return Outcome.IGNORED
            await self._safe_whisper(conversation, [self._not_a_command_notice(inbound.text)])
            return Outcome.UNKNOWN
        handler = self._handlers.get(type(command))
        if handler is None:
            log.error("no handler for %s", type(command).__name__)
            return Outcome.IGNORED
        await self._admit_and_run(command, handler, self.context(inbound, conversation))
        return Outcome.HANDLED

    async def _admit_and_run(
        self, command: BaseModel, handler: Handler, ctx: HandlerContext
    ) -> None:
        """Run the handler on the command as the workspace policy admits it, if it does."""
        admitted = await self._admit(command, ctx)
        if admitted is not None:
            await self._run(admitted, handler, ctx)

    async def _admit(self, command: BaseModel, ctx: HandlerContext) -> BaseModel | None:
        """The command as the workspace policy admits it; None when refused (said privately)."""
        if self._gate is None:
            return command
        family = self._family_of[type(command)]
        spec = spec_for(family.specs, command)
        name = policy_name(spec) if spec is not None else _command_name(command)
        verdict = await self._gate.admit(ctx, family.name, name, command)
        if not isinstance(verdict, Failure):
            return verdict
        await self._safe_whisper(ctx.conversation, [verdict])
        await self._audit(ctx.owner, _command_name(command), "denied", verdict.code)
        self.metrics.commands.labels(_command_name(command), "denied").inc()
        return None

    def _not_a_command_notice(self, text: str) -> Notice:
        """ "That isn't a tokenbot command", with the closest command when the first word is a typo."""
        first = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
        word = first.lstrip("/")
        names = [name.lstrip("/") for name in self.slash_commands]
        close = difflib.get_close_matches(word, names, n=1, cutoff=0.75) if word else []
        if close and (first.startswith("/") or "-" in word):
            return Notice(
                level="info", text=f"That isn't a tokenbot command: did you mean `/{close[0]}`?"
            )
        return Notice(level="info", text=self._not_a_command)

    async def _usage_error(
        self,
        inbound: Inbound,
        conversation: Conversation,
        keys: list[str],
        exc: UsageError,
        audit: Callable[[str, str, str], Awaitable[None]],
    ) -> Outcome:
        if keys:
            # The usage problem may quote the key: say only that a key was refused.
            await refuse_secret(
                inbound, conversation, keys, self._key_forms_hint, audit, exc.command
            )
            self.metrics.commands.labels(exc.command, "refused").inc()
            return Outcome.HANDLED
        if not self._explicit(inbound):
            # "are the alltoken models any good?" in a channel is conversation, not a
            # malformed command: only answer usage errors when the command was spelled out.
            log.debug("ignored a loose trigger in a channel message: %s", exc.problem)
            return Outcome.IGNORED
        await self._safe_whisper(
            conversation,
            [Failure(code="usage", message=exc.problem, hint=f"Usage: `{exc.usage}`")],
        )
        await audit(exc.command, "usage_error", exc.problem)
        self.metrics.commands.labels(exc.command, "usage_error").inc()
        return Outcome.HANDLED

    def _render(self, exc: BackendError) -> Failure:
        family = self._by_name.get(exc.backend)
        if family is not None and family.render_failure is not None:
            return family.render_failure(exc)
        return generic_failure(exc, family.display_name if family else exc.backend)

    async def _run(self, command: BaseModel, handler: Handler, ctx: HandlerContext) -> None:
        """Run one handler; audit its outcome with this request's own request id."""
        name = _command_name(command)
        outcome, detail = await self._outcome_of(handler(command, ctx), ctx, name)
        if outcome == "ok" and ctx.jobs.started:
            # The job audits how it ended; this row says only that it was started.
            outcome, detail = "started", ", ".join(job.id for job in ctx.jobs.started)
        elif outcome == "ok" and ctx.outcome:
            outcome = ctx.outcome
        await self._audit(ctx.owner, name, outcome, detail, ctx.request_id)
        self.metrics.commands.labels(name, outcome).inc()

    async def _outcome_of(
        self, work: Awaitable[object], ctx: HandlerContext, name: str, *, private: bool = False
    ) -> tuple[str, str | None]:
        """Await a handler (or action, or form) and turn what it raised into an audited outcome.

        A command's failure is said where the command was; a form's or a click's only to its user.
        """
        say = self._safe_whisper if private else self._safe_say
        try:
            await work
        except MissingKey as exc:
            await self._safe_whisper(ctx.conversation, [missing_key_notice(exc.service, self.keys)])
            return "denied", f"no {exc.service} key"
        except SpendRefused as exc:
            # A cap said no before anything was sent: only the caller hears why.
            await self._safe_whisper(ctx.conversation, [exc.failure])
            return "denied", exc.failure.code
        except HandledFailure as exc:
            ctx.request_id = ctx.request_id or exc.error.request_id
            return "failed", exc.error.code
        except CredentialUnreadableError as exc:
            await self._safe_whisper(
                ctx.conversation, [unreadable_key_failure(exc.service, self.keys)]
            )
            return "failed", UNREADABLE_CODE
        except BackendError as exc:
            ctx.request_id = exc.request_id
            await say(ctx.conversation, [self._render(exc)])
            return "failed", exc.code
        except Exception as exc:
            ref = new_error_ref()
            log.exception("%s failed (ref %s)", name, ref)
            await say(ctx.conversation, [unexpected_failure(ref)])
            return "failed", f"{type(exc).__name__} (ref {ref})"
        return "ok", None

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
        ctx = self.context(inbound, conversation)
        result: list[bool] = []

        async def submit() -> None:
            result.append(await handler(ctx, values))

        outcome, detail = await self._outcome_of(submit(), ctx, f"form {form_id}", private=True)
        ok = outcome == "ok" and result == [True]
        if outcome == "ok" and not ok:
            outcome = "failed"
        await self._audit(owner, f"form.{form_id}", outcome, detail, ctx.request_id)
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
        ctx = self.context(inbound, conversation)
        await self._outcome_of(handler(ctx, value), ctx, f"action {action_id}", private=True)

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


__all__ = ["Outcome", "TokenBot", "typed_in_public"]
