"""Spending as handlers and jobs see it: which key pays, an estimate held against the caps
before a backend call, and the ledger row of every charged call.

The core knows no budgets. The `tokenbot` family registers a `SpendControl`
(`services.add(impl, as_=SpendControl)`); without one, `Unmetered` stands in: own keys only,
nothing is refused, and a charge still writes its usage and ledger rows in one transaction.
A handler holds before the call (`SpendRefused` if a cap says no: nothing is sent), then
settles with the real cost, or releases when the call failed. A long job keeps `hold.id` in
its state and rebuilds the hold with `SpendControl.held` when it settles.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

from bot.core.job_context import JobContext
from bot.core.messages import Conversation, Failure
from bot.store import LedgerEntry, Owner, Store, UsageRecord
from bot.store.models import CostSource, KeySource

__all__ = [
    "DEFAULT_HOLD_TTL_S",
    "CostSource",
    "Estimate",
    "KeySource",
    "SpendControl",
    "SpendHold",
    "SpendRefused",
    "Spender",
    "Unmetered",
    "control_in",
    "job_hold",
    "job_key",
    "job_usage",
    "ledger_entry",
]

log = logging.getLogger(__name__)

# How long a hold counts when its caller names no time: a chat answer is long done by then.
DEFAULT_HOLD_TTL_S = 900.0
# USD, or how to work it out: asked only when a cap applies (a price lookup costs a request).
Estimate = Decimal | Callable[[], Awaitable[Decimal]]


class SpendRefused(Exception):
    """A cap refused the call before anything was sent; the app whispers `failure`."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(failure.message)


@dataclass(frozen=True)
class Spender:
    """Who spends, in which channel (kept in the ledger), and where their private notices go."""

    owner: Owner
    conversation: Conversation

    @property
    def channel(self) -> str:
        """The channel the call came from ('' when the platform has none)."""
        return self.conversation.destination.channel


def ledger_entry(
    spender: Spender,
    usage: UsageRecord,
    cost: Decimal | None,
    source: CostSource,
    key_source: KeySource,
) -> LedgerEntry:
    """The ledger row of a charged call (never any prompt text): unknown cost is a 0 estimate."""
    if cost is None or not cost.is_finite() or cost < 0:
        cost, source = Decimal(0), "estimate"
    return LedgerEntry(
        owner=usage.owner,
        channel=spender.channel,
        service=usage.service,
        command=usage.command,
        model=usage.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=cost,
        cost_source=source,
        key_source=key_source,
        request_id=usage.request_id,
        created_at=usage.created_at,
    )


class SpendHold(Protocol):
    """An estimate held against the caps until the call's real cost is known."""

    @property
    def id(self) -> str | None:
        """The stored hold's id (a job keeps it in its state); None when nothing is held."""
        ...

    async def settle(self, usage: UsageRecord, cost: Decimal | None, source: CostSource) -> None:
        """Write the usage and ledger rows (one transaction) and drop the hold; once only.

        `cost` None: the backend said nothing, and the held estimate is recorded as one.
        """
        ...

    async def release(self) -> None:
        """Drop the hold uncharged (the call failed or was cancelled)."""
        ...


class SpendControl(Protocol):
    """Budgets and workspace keys, as the `tokenbot` family enforces them."""

    async def key_for(self, owner: Owner, service: str) -> tuple[str, KeySource]:
        """The owner's own key, else the workspace's; an empty key when there is neither."""
        ...

    async def hold(
        self,
        spender: Spender,
        service: str,
        command: str,
        estimate: Estimate,
        key_source: KeySource,
        *,
        ttl_s: float = DEFAULT_HOLD_TTL_S,
    ) -> SpendHold:
        """Reserve `estimate` if a cap applies; SpendRefused (before any backend call) if it
        would exceed one. Without an applicable cap nothing is stored and settle only records."""
        ...

    def held(
        self,
        spender: Spender,
        hold_id: str | None,
        service: str,
        command: str,
        key_source: KeySource,
    ) -> SpendHold:
        """A hold taken earlier (by a job's submit, maybe on another replica), to settle it."""
        ...

    async def record(
        self,
        spender: Spender,
        usage: UsageRecord,
        cost: Decimal | None,
        source: CostSource,
        key_source: KeySource,
    ) -> None:
        """A charged call that held nothing: its usage and ledger rows in one transaction."""
        ...


class _UnheldCharge:
    """A call no cap governs: settling it just records the charge."""

    def __init__(
        self, control: SpendControl, spender: Spender, key_source: KeySource, estimate: Decimal
    ) -> None:
        self._control = control
        self._spender = spender
        self._key_source = key_source
        self._estimate = estimate

    @property
    def id(self) -> str | None:
        """Nothing is stored."""
        return None

    async def settle(self, usage: UsageRecord, cost: Decimal | None, source: CostSource) -> None:
        """Record the charge (the estimate when the backend said nothing)."""
        if cost is None:
            cost, source = self._estimate, "estimate"
        await self._control.record(self._spender, usage, cost, source, self._key_source)

    async def release(self) -> None:
        """Nothing to release."""


class Unmetered:
    """The SpendControl when no family registers one: own keys, no caps, the ledger still kept."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def key_for(self, owner: Owner, service: str) -> tuple[str, KeySource]:
        """The owner's own key only ('' when none)."""
        return (await self.store.get_credential(owner, service) or ""), "own"

    async def hold(
        self,
        spender: Spender,
        service: str,
        command: str,
        estimate: Estimate,
        key_source: KeySource,
        *,
        ttl_s: float = DEFAULT_HOLD_TTL_S,
    ) -> SpendHold:
        """Nothing is capped: a hold that only records (an unknown cost as the estimate)."""
        amount = estimate if isinstance(estimate, Decimal) else Decimal(0)
        return _UnheldCharge(self, spender, key_source, amount)

    def held(
        self,
        spender: Spender,
        hold_id: str | None,
        service: str,
        command: str,
        key_source: KeySource,
    ) -> SpendHold:
        """Nothing was held here (a hold id from a metered start is settled as a plain charge)."""
        return _UnheldCharge(self, spender, key_source, Decimal(0))

    async def record(
        self,
        spender: Spender,
        usage: UsageRecord,
        cost: Decimal | None,
        source: CostSource,
        key_source: KeySource,
    ) -> None:
        """Usage and ledger rows, queued as one unit."""
        await self.store.record_charge(
            usage, ledger_entry(spender, usage, cost, source, key_source)
        )


def unheld(
    control: SpendControl, spender: Spender, key_source: KeySource, estimate: Decimal
) -> SpendHold:
    """A hold that stores nothing and records the charge when settled (no cap applies)."""
    return _UnheldCharge(control, spender, key_source, estimate)


T = TypeVar("T")


class FindsServices(Protocol):
    """The service registry as seen from here (bot.core.context imports this module)."""

    def find(self, kind: type[T]) -> T | None: ...


def control_in(services: FindsServices | None, store: Store) -> SpendControl:
    """The registered SpendControl, else `Unmetered` (no tokenbot family installed)."""
    # (A Protocol is registered by `as_=`; the cast only quiets mypy's abstract-type check.)
    found = services.find(cast("type[SpendControl]", SpendControl)) if services else None
    return found or Unmetered(store)


def job_hold(services: FindsServices | None, ctx: JobContext[Any], service: str) -> SpendHold:
    """The hold a job's submit took (its state's `spend_hold`; none: it only records)."""
    state = ctx.state
    spender = Spender(owner=ctx.owner, conversation=ctx.conversation)
    hold_id = getattr(state, "spend_hold", None)
    key_source: KeySource = getattr(state, "key_source", "own")
    return control_in(services, ctx.store).held(spender, hold_id, service, ctx.job.kind, key_source)


async def job_key(ctx: JobContext[Any], service: str) -> str | None:
    """The key a job was started with: the owner's own, or the workspace's (`key_source`)."""
    if getattr(ctx.state, "key_source", "own") == "workspace":
        owner = ctx.owner
        return await ctx.store.get_workspace_key(owner.platform, owner.workspace, service)
    return await ctx.store.get_credential(ctx.owner, service)


def job_usage(ctx: JobContext[Any], service: str, command: str, **fields: Any) -> UsageRecord:
    """The usage row of a job's charged call (owner and conversation from the job)."""
    conversation = getattr(ctx.state, "conversation_key", None) or None
    return UsageRecord(
        owner=ctx.owner,
        service=service,
        command=command,
        conversation_key=conversation,
        **fields,
    )
