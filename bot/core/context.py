"""What a handler receives: this request's message, conversation and request id, and typed ports.

A handler never sees the bot. It gets the store, the service registry, the job runner (as
`RequestJobs`, which remembers what this request started), the conversation memory and the
settings; `request_id` is this request's own, so concurrent commands never audit each other's.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import BaseModel

from bot.core.job_limits import JobLimits, check_room
from bot.core.key_shapes import redact
from bot.core.messages import Conversation, Destination, Inbound, Turn
from bot.core.spend import KeySource, SpendControl, Spender, Unmetered
from bot.store import JobRecord, Owner, Store, ThreadNote

if TYPE_CHECKING:
    from bot.core.jobs import JobRunner
    from bot.core.keys import KeyDirectory
    from bot.core.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

_RECENT_CONVERSATIONS = 10_000


@dataclass(frozen=True)
class Continuation:
    """Follow-up text in a thread -> the command that continues it (e.g. chat with one model).

    `family`, `command` and `model` are its serialisable form (stored, so a thread continues
    after a restart and on another replica); the family rebuilds `parse` from them.
    """

    family: str
    command: str
    model: str | None
    parse: Callable[[str], BaseModel] = field(compare=False, repr=False)

    def __call__(self, text: str) -> BaseModel:
        return self.parse(text)

    @property
    def note(self) -> ThreadNote:
        """The stored form."""
        return ThreadNote(family=self.family, command=self.command, model=self.model)


# (command, model) of a stored continuation -> the family's continuation again (None: unknown).
ThreadResumer = Callable[[str, "str | None"], "Continuation | None"]


class ResumesThreads(Protocol):
    """What the memory needs of a command family (bot.core.family imports this module)."""

    @property
    def name(self) -> str: ...

    @property
    def resume_thread(self) -> ThreadResumer | None: ...


class MissingKey(Exception):
    """The caller has no stored key for a service."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(service)


class ServiceRegistry:
    """The backends' clients, found by type: a family adds its own when the bot is built."""

    def __init__(self) -> None:
        self._by_type: dict[type[Any], object] = {}

    def add(self, service: object, as_: type[Any] | None = None) -> None:
        """Register `service` under its class (or under the protocol `as_` it implements)."""
        self._by_type[as_ or type(service)] = service

    def find(self, kind: type[T]) -> T | None:
        """The registered instance of `kind`, or None when no family provides one."""
        return cast("T | None", self._by_type.get(kind))

    def get(self, kind: type[T]) -> T:
        """The registered instance of `kind`; LookupError when its family is not installed."""
        found = self.find(kind)
        if found is None:
            raise LookupError(f"no {kind.__name__} is registered")
        return found


@dataclass
class HistoryWindow:
    """The thread turns that fit the context budget, and how many older ones did not."""

    turns: list[Turn]
    dropped: int = 0


class ConversationMemory:
    """Per-conversation state a reply depends on: which family ran last, what a thread continues.

    With a store, the store's `conversations` rows are the truth (they survive a restart and
    are shared by replicas): `load` reads a conversation's row before its message is parsed,
    and the notes are written through. The dictionaries only hold what was loaded or noted.
    """

    def __init__(self, store: Store | None = None, limit: int = _RECENT_CONVERSATIONS) -> None:
        self._store = store
        self._limit = limit
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._threads: OrderedDict[str, Continuation] = OrderedDict()
        self._resumers: dict[str, ThreadResumer] = {}

    def resume_threads_of(self, families: Iterable[ResumesThreads]) -> None:
        """Rebuild stored continuations through these families' `resume_thread`."""
        for family in families:
            if family.resume_thread is not None:
                self._resumers[family.name] = family.resume_thread

    def _remember(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._limit:
            cache.popitem(last=False)

    def note_call(self, family: str, *conversation_keys: str) -> None:
        """Remember that these conversations just ran a command of `family`."""
        for key in conversation_keys:
            self._remember(self._recent, key, family)
            if self._store is not None and key:
                self._store.conversations.note_family(key, family)

    def recent_family(self, conversation_key: str | None) -> str | None:
        """The family this conversation used last, if any (as of the last `load`)."""
        return self._recent.get(conversation_key) if conversation_key else None

    def note_thread(self, conversation_key: str, continuation: Continuation) -> None:
        """Plain replies in this thread continue the conversation through `continuation`."""
        self._remember(self._threads, conversation_key, continuation)
        if self._store is not None and conversation_key:
            self._store.conversations.note_thread(conversation_key, continuation.note)

    def continuation(self, conversation_key: str) -> Continuation | None:
        """What a plain reply in this thread continues, if the bot answered in it."""
        return self._threads.get(conversation_key)

    async def load(self, conversation_key: str | None) -> None:
        """Read this conversation's stored state (another replica, or before a restart, may
        have written it) so that `recent_family` and `continuation` answer from it."""
        if self._store is None or not conversation_key:
            return
        try:
            record = await self._store.conversations.get(conversation_key)
        except Exception as exc:
            # The store is unreachable: answer from what this process noted rather than
            # failing the message (at worst a thread continues with the default model).
            log.warning("conversation state unavailable, using this process's: %s", exc)
            return
        if record is None:
            self._recent.pop(conversation_key, None)
            self._threads.pop(conversation_key, None)
            return
        if record.recent_family:
            self._remember(self._recent, conversation_key, record.recent_family)
        else:
            self._recent.pop(conversation_key, None)
        resumed = self._resume(record.thread) if record.thread is not None else None
        if resumed is not None:
            self._remember(self._threads, conversation_key, resumed)
        else:
            self._threads.pop(conversation_key, None)

    def _resume(self, note: ThreadNote) -> Continuation | None:
        resume = self._resumers.get(note.family)
        return resume(note.command, note.model) if resume is not None else None

    @staticmethod
    def history(inbound: Inbound, budget: int) -> HistoryWindow:
        """The thread's earlier turns within `budget` characters, oldest dropped first."""
        kept: list[Turn] = []
        for turn in reversed(inbound.history):
            if len(turn.text) > budget:
                break
            budget -= len(turn.text)
            # An earlier message of the thread may hold a key someone pasted: never send it on.
            kept.append(turn.model_copy(update={"text": redact(turn.text)}))
        kept.reverse()
        return HistoryWindow(turns=kept, dropped=len(inbound.history) - len(kept))


class RequestJobs:
    """The job runner as one request sees it: it remembers the jobs this request started, and
    holds them to the settings' in-flight limits (bot.core.job_limits)."""

    def __init__(self, runner: JobRunner, settings: Settings | None = None) -> None:
        self.runner = runner
        self.started: list[JobRecord] = []
        self.limits = JobLimits.from_settings(settings) if settings is not None else JobLimits()

    async def check_room(self, kind: str, owner: Owner) -> None:
        """Refuse now (JobLimitReached) if `owner` could not start a `kind` job: call it before
        any backend request or spend hold a start needs."""
        await check_room(self.runner.store, owner, kind, self.runner.kinds, self.limits)

    async def start(
        self, kind: str, owner: Owner, destination: Destination, state: Any
    ) -> JobRecord:
        """Write the job's row, then run it in the background (see JobRunner.start); a start
        over an in-flight limit raises JobLimitReached and writes nothing."""
        job = await self.runner.start(kind, owner, destination, state, self.limits)
        self.started.append(job)
        return job

    def is_running(self, job_id: str) -> bool:
        """Whether this process is working on the job right now."""
        return self.runner.is_running(job_id)

    async def cancel_local(self, job_id: str) -> None:
        """Stop this process's task for a job (the caller records the cancellation)."""
        await self.runner.cancel_local(job_id)


@dataclass
class HandlerContext:
    """One command, button click or form being handled."""

    inbound: Inbound
    conversation: Conversation
    store: Store
    services: ServiceRegistry
    jobs: RequestJobs
    memory: ConversationMemory
    settings: Settings
    keys: KeyDirectory
    # The backend request id this request saw last: audited with the request's outcome.
    request_id: str | None = None
    # A handler's own word for how it ended when that is not plain "ok" (a Confirm prompt
    # shown: "prompted"); audited instead of "ok".
    outcome: str | None = None
    # Whose key `require_key` found per service ("workspace": the admins' key), for the ledger.
    key_sources: dict[str, KeySource] = field(default_factory=dict)

    @cached_property
    def owner(self) -> Owner:
        """Whose keys, usage and jobs this command uses."""
        # Cached: asked a dozen times per command, and the inbound is frozen.
        return Owner.of(self.inbound)

    def history(self) -> HistoryWindow:
        """The thread's earlier turns that fit the context budget."""
        return self.memory.history(self.inbound, self.settings.context_chars)

    @property
    def spend(self) -> SpendControl:
        """Budgets and workspace keys (the tokenbot family's), else own keys and no caps."""
        # (A Protocol is registered by `as_=`; the cast only quiets mypy's abstract-type check.)
        found = self.services.find(cast("type[SpendControl]", SpendControl))
        return found or Unmetered(self.store)

    @cached_property
    def spender(self) -> Spender:
        """The caller as budgets see them: who, which channel, where notices go."""
        return Spender(owner=self.owner, conversation=self.conversation)

    def key_source(self, service: str) -> KeySource:
        """Whose key `require_key` returned for `service` ("own" if it was not asked)."""
        return self.key_sources.get(service, "own")

    async def require_key(self, service: str, *, lend: bool = False) -> str:
        """The caller's own key for `service`, or MissingKey (answered privately by the app).

        With `lend` (charged calls: chat, search, images, videos, runs, tasks, and the model
        lists they choose from) a workspace key stands in when the tokenbot family offers one;
        never for account management (balance, activity, top-ups, keys).
        """
        # A stored key that no longer decrypts raises CredentialUnreadableError: the app
        # answers it privately with how to fix it, not as internal_error.
        source: KeySource = "own"
        if lend:
            key, source = await self.spend.key_for(self.owner, service)
        else:
            # Not lending is the default: a new call site can never spend or show the
            # workspace's account (balance, activity, top-ups) by forgetting a flag.
            key = await self.store.get_credential(self.owner, service) or ""
        if not key:
            raise MissingKey(service)
        self.key_sources[service] = source
        return key
