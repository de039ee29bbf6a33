"""Budgets enforced: the tokenbot family's `SpendControl` (bot/core/spend.py).

Which key pays (the caller's own, else the workspace key the admins set), whether a cap
governs the call (`budget.applies`), the check-and-hold in one store transaction
(`Store.reserve_spend`, correct across replicas), the ledger row written with the usage row,
and the 80 %/100 % notices, each claimed once per period across replicas (`claim_notice`):
the user's privately, the workspace budget's to every admin by direct message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from bot.core.family import Wiring
from bot.core.messages import Conversation, Destination, Failure, Notice, Part
from bot.core.settings import Settings
from bot.core.spend import (
    DEFAULT_HOLD_TTL_S,
    CostSource,
    Estimate,
    KeySource,
    SpendControl,
    Spender,
    SpendHold,
    SpendRefused,
    ledger_entry,
    unheld,
)
from bot.store import AuditEntry, Owner, Store, UsageRecord
from bot.store.models import SpendSnapshot, utcnow
from bot.teams import budget
from bot.teams.budget import CAP_NAMES, THRESHOLDS, BudgetCaps, BudgetDecision, CapName, Crossing
from bot.teams.gate import WorkspacePolicy

log = logging.getLogger(__name__)

# Services whose workspace key members may use. A management key (OpenClaw Token's account
# key) is never lent: it could revoke keys or buy credits on the admins' account.
LENDABLE_SERVICES = frozenset({"alltoken", "openmarlin"})
REFUSED_CODE = "budget_exceeded"
NOTICE_COMMAND = "tokenbot.budget.notice"
_CAP_WORDS: dict[CapName, str] = {
    "user_daily": "your daily cap",
    "user_monthly": "your monthly cap",
    "workspace_monthly": "the workspace's monthly budget",
}
ConversationFactory = Callable[[Destination], Conversation]


def usd(amount: Decimal) -> str:
    """`$1.25`; small amounts keep their digits (`$0.0042`)."""
    if amount != 0 and abs(amount) < Decimal("0.01"):
        return f"${amount.quantize(Decimal('0.000001')).normalize():f}"
    return f"${amount.quantize(Decimal('0.01')):f}"


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _spent(snapshot: SpendSnapshot, name: CapName) -> Decimal:
    if name == "user_daily":
        return snapshot.user_day_usd
    if name == "user_monthly":
        return snapshot.user_month_usd
    return snapshot.workspace_month_usd


def reached(snapshot: SpendSnapshot, caps: BudgetCaps, now: datetime) -> list[Crossing]:
    """Every 80 %/100 % line the spend in `snapshot` is at or past (notices are claimed once)."""
    day, month, next_day, next_month = budget.period_bounds(now)
    found: list[Crossing] = []
    for name in CAP_NAMES:
        cap = caps.cap(name)
        if cap is None or cap <= 0:
            continue  # a zero cap refuses everything: there is no "80 % of it" to announce
        spent = _spent(snapshot, name)
        daily = name == "user_daily"
        period = day.strftime("%Y-%m-%d") if daily else month.strftime("%Y-%m")
        for pct in THRESHOLDS:
            if spent >= cap * pct / 100:
                found.append(
                    Crossing(
                        cap_name=name,
                        pct=pct,
                        period=period,
                        cap_usd=cap,
                        spent_usd=spent,
                        resets_at=next_day if daily else next_month,
                    )
                )
    return found


@dataclass(frozen=True)
class _Peek:
    """A decision that never holds: it only carries the snapshot out of the transaction."""

    snapshot: SpendSnapshot
    allowed: bool = False


def _with(snapshot: SpendSnapshot, amount: Decimal) -> SpendSnapshot:
    return SpendSnapshot(
        user_day_usd=snapshot.user_day_usd + amount,
        user_month_usd=snapshot.user_month_usd + amount,
        workspace_month_usd=snapshot.workspace_month_usd + amount,
    )


class _Held:
    """A stored hold: settled into the ledger once, or released."""

    def __init__(
        self,
        control: TeamSpendControl,
        spender: Spender,
        hold_id: str,
        key_source: KeySource,
        amount: Decimal | None = None,
    ) -> None:
        self._control = control
        self._spender = spender
        self._id = hold_id
        self._key_source = key_source
        self._amount = amount

    @property
    def id(self) -> str | None:
        """The hold's id in the store."""
        return self._id

    async def settle(self, usage: UsageRecord, cost: Decimal | None, source: CostSource) -> None:
        """Turn the hold into the usage and ledger rows; the held estimate if no cost is known."""
        store = self._control.store
        if cost is None:
            amount = self._amount
            if amount is None:
                # A hold released meanwhile (a Cancel racing delivery) still settles.
                record = await store.get_spend_hold(self._id, released=True)
                amount = record.amount_usd if record is not None else Decimal(0)
            cost, source = amount, "estimate"
        entry = ledger_entry(self._spender, usage, cost, source, self._key_source)
        if not await store.settle_spend(self._id, usage, entry):
            # Settled before (a delivery resumed after a crash): never twice.
            log.warning("spend hold %s was already settled", self._id)
            return
        await self._control.after_charge(self._spender, self._key_source)

    async def release(self) -> None:
        """Drop the hold uncharged (a settled one is left as it is)."""
        try:
            await self._control.store.release_spend(self._id)
        except Exception:
            # The hold stops counting when it expires: a failed release must not hide the
            # failure the caller is reporting.
            log.exception("could not release spend hold %s", self._id)


def _budget_view(raw: dict[str, Any]) -> tuple[dict[str, Any], BudgetCaps | None]:
    """The policy with its caps (None: an unreadable budget), parsed once per policy change."""
    try:
        return raw, BudgetCaps.from_policy(raw.get("budget"))
    except ValidationError:
        return raw, None


class TeamSpendControl:
    """Workspace keys, caps and the ledger, per workspace policy (registered as SpendControl)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        conversation_for: ConversationFactory | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.conversation_for = conversation_for
        self.clock = clock

    # --- keys -------------------------------------------------------------------------------

    async def key_for(self, owner: Owner, service: str) -> tuple[str, KeySource]:
        """The caller's own key, else the workspace key (lendable services); '' if neither."""
        own = await self.store.get_credential(owner, service)
        if own:
            return own, "own"
        if service in LENDABLE_SERVICES:
            shared = await self.store.get_workspace_key(owner.platform, owner.workspace, service)
            if shared:
                return shared, "workspace"
        return "", "own"

    # --- policy -----------------------------------------------------------------------------

    async def _policy(self, owner: Owner) -> tuple[dict[str, Any], BudgetCaps]:
        raw, caps = await self.store.policy_view(owner.platform, owner.workspace, _budget_view)
        if caps is None:
            # An unreadable budget caps nothing rather than stopping every call; H5's admin
            # commands only store valid ones.
            log.warning("the budget policy of %s:%s is unreadable", owner.platform, owner.workspace)
            caps = BudgetCaps()
        return raw, caps

    def admins(self, platform: str, raw_policy: dict[str, Any]) -> list[str]:
        """TOKENBOT_ADMINS on this platform (bare ids match every platform), then policy admins."""
        found: list[str] = []
        for entry in sorted(self.settings.admin_ids):
            head, sep, rest = entry.partition(":")
            if not sep:
                found.append(entry)
            elif head == platform and rest:
                found.append(rest)
        found.extend(WorkspacePolicy.from_raw(raw_policy).admins)
        return list(dict.fromkeys(found))

    # --- holding ----------------------------------------------------------------------------

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
        """Hold the estimate against the caps that govern this call, or refuse it now."""
        owner = spender.owner
        raw, caps = await self._policy(owner)
        if not caps.any_set or not budget.applies(caps, owner.user, key_source):
            return unheld(self, spender, key_source, Decimal(0))
        amount = estimate if isinstance(estimate, Decimal) else await estimate()
        amount = max(amount, Decimal(0))
        now = self.clock()
        seen: list[SpendSnapshot] = []

        def decide(snapshot: SpendSnapshot) -> BudgetDecision:
            seen.append(snapshot)
            return budget.decide(snapshot, amount, caps, now)

        decision, record = await self.store.reserve_spend(
            owner, service, command, amount, key_source, decide=decide, now=now, ttl_s=ttl_s
        )
        if record is None:
            await self._refused_notice(spender, decision, raw, now)
            raise SpendRefused(self.refusal(decision, key_source, self.admins(owner.platform, raw)))
        await self._notify(spender, reached(_with(seen[-1], amount), caps, now), raw)
        return _Held(self, spender, record.id, key_source, record.amount_usd)

    def held(
        self,
        spender: Spender,
        hold_id: str | None,
        service: str,
        command: str,
        key_source: KeySource,
    ) -> SpendHold:
        """A hold a job took at submit (None: no cap applied then, so it only records)."""
        if hold_id is None:
            return unheld(self, spender, key_source, Decimal(0))
        return _Held(self, spender, hold_id, key_source)

    async def record(
        self,
        spender: Spender,
        usage: UsageRecord,
        cost: Decimal | None,
        source: CostSource,
        key_source: KeySource,
    ) -> None:
        """Usage and ledger rows in one unit, then the notices the spend now calls for."""
        await self.store.record_charge(
            usage, ledger_entry(spender, usage, cost, source, key_source)
        )
        await self.after_charge(spender, key_source)

    @staticmethod
    def refusal(decision: BudgetDecision, key_source: KeySource, admins: list[str]) -> Failure:
        """The refusal: which cap, what is spent, when it resets (UTC), whom to ask."""
        name = decision.cap_name or "workspace_monthly"
        cap = decision.cap_usd or Decimal(0)
        spent = decision.spent_usd or Decimal(0)
        whose = "the workspace key" if key_source == "workspace" else "your own key (opted in)"
        ask = (
            "ask a tokenbot admin (" + ", ".join(f"`{a}`" for a in admins) + ")"
            if admins
            else "ask the bot's operator (TOKENBOT_ADMINS names the admins)"
        )
        return Failure(
            code=REFUSED_CODE,
            message=f"Not sent: this call (about {usd(decision.amount_usd)}) would go over "
            f"{_CAP_WORDS[name]} of {usd(cap)} for calls with {whose}; {usd(spent)} is spent "
            "or held so far.",
            hint=f"It resets {_utc(decision.resets_at)}. To raise it, {ask}; "
            "`/tokenbot usage` shows your spend.",
        )

    # --- notices ----------------------------------------------------------------------------

    async def after_charge(self, spender: Spender, key_source: KeySource) -> None:
        """After a charge: the notices of every line the spend has now reached (claimed once)."""
        owner = spender.owner
        try:
            raw, caps = await self._policy(owner)
            if not caps.any_set or not budget.applies(caps, owner.user, key_source):
                return
            now = self.clock()
            peek, _ = await self.store.reserve_spend(
                owner, "tokenbot", "peek", Decimal(0), key_source,
                decide=_Peek, now=now, ttl_s=0.0,
            )  # fmt: skip
            await self._notify(spender, reached(peek.snapshot, caps, now), raw)
        except Exception:
            # The charge is recorded; a notice that could not go out must not fail the call.
            log.exception("budget notices after a charge failed")

    async def _refused_notice(
        self, spender: Spender, decision: BudgetDecision, raw: dict[str, Any], now: datetime
    ) -> None:
        """A call the workspace budget refused: the budget is spent, and admins hear it once."""
        if decision.cap_name != "workspace_monthly" or decision.cap_usd is None:
            return
        full = Crossing(
            cap_name="workspace_monthly",
            pct=100,
            period=budget.period_bounds(now)[1].strftime("%Y-%m"),
            cap_usd=decision.cap_usd,
            spent_usd=decision.spent_usd or Decimal(0),
            resets_at=decision.resets_at,
        )
        await self._notify(spender, [full], raw)

    async def _notify(
        self, spender: Spender, crossings: list[Crossing], raw: dict[str, Any]
    ) -> None:
        owner = spender.owner
        for line in crossings:
            if not line.for_workspace and line.pct != 80:
                continue  # users hear 80 %; at 100 % the refusal itself says so
            try:
                first = await self.store.claim_notice(
                    owner.platform, owner.workspace, line.notice_key(owner.user)
                )
            except Exception:
                log.exception("could not claim budget notice %s", line.notice_key(owner.user))
                continue
            if not first:
                continue
            if line.for_workspace:
                await self._tell_admins(spender, line, raw)
            else:
                await _safe(spender.conversation.whisper([_user_notice(line)]))

    async def _tell_admins(self, spender: Spender, line: Crossing, raw: dict[str, Any]) -> None:
        """A direct message to every admin; always an audit row, so it is on record."""
        owner = spender.owner
        admins = self.admins(owner.platform, raw)
        parts: list[Part] = [_admin_notice(line)]
        reached_by: list[str] = []
        for admin in admins:
            where = Destination(
                platform=owner.platform,
                workspace=owner.workspace,
                channel=spender.channel,
                user=admin,
                is_direct=True,
            )
            try:
                if self.conversation_for is None:
                    raise LookupError("no conversations to send through")
                await self.conversation_for(where).direct(parts)
                reached_by.append(admin)
            except Exception:
                log.warning("could not send the budget notice to admin %s", admin, exc_info=True)
        detail = f"workspace {line.pct}% of {usd(line.cap_usd)} ({line.period})"
        detail += f"; told {', '.join(reached_by)}" if reached_by else "; no admin reachable"
        await _safe(
            self.store.audit(
                AuditEntry(
                    owner=Owner(
                        platform=owner.platform, workspace=owner.workspace, user=owner.user
                    ),
                    command=NOTICE_COMMAND,
                    outcome="notified" if reached_by else "undelivered",
                    detail=detail,
                )
            )
        )


def _user_notice(line: Crossing) -> Notice:
    return Notice(
        level="warning",
        text=f"You have used {line.pct} % of {_CAP_WORDS[line.cap_name]} "
        f"({usd(line.spent_usd)} of {usd(line.cap_usd)}); it resets {_utc(line.resets_at)}.",
    )


def _admin_notice(line: Crossing) -> Notice:
    state = "is spent" if line.pct >= 100 else f"has passed {line.pct} %"
    return Notice(
        level="warning",
        text=f"tokenbot: this workspace's monthly budget {state} — {usd(line.spent_usd)} of "
        f"{usd(line.cap_usd)} this month (resets {_utc(line.resets_at)}). "
        "`/tokenbot usage --user all` shows who spent it.",
    )


async def _safe(work: Awaitable[object]) -> None:
    try:
        await work
    except Exception:
        log.exception("could not deliver a budget notice")


def attach_spend_control(wiring: Wiring) -> TeamSpendControl:
    """Register the budgets as the bot's SpendControl (the tokenbot family's attach calls it)."""
    control = TeamSpendControl(wiring.jobs.store, wiring.settings, wiring.jobs.conversation_for)
    wiring.services.add(control, as_=SpendControl)
    return control
