"""Budget rules, pure: which caps apply, whether a charge fits, which 80 %/100 % lines it crosses.

Periods are UTC days and UTC months (`period_bounds`). Money is `Decimal` throughout; a cap
is inclusive (spending exactly the cap is allowed, a cent more is not). No I/O here: the
store computes a `SpendSnapshot` inside its reserving transaction and calls `decide` on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.store.models import KeySource, SpendSnapshot, period_bounds

__all__ = [
    "CAP_NAMES",
    "THRESHOLDS",
    "BudgetCaps",
    "BudgetDecision",
    "CapName",
    "Crossing",
    "applies",
    "crossed_thresholds",
    "decide",
    "period_bounds",
]

CapName = Literal["user_daily", "user_monthly", "workspace_monthly"]
CAP_NAMES: tuple[CapName, ...] = ("user_daily", "user_monthly", "workspace_monthly")
# Percentages of a cap at which a notice goes out (the user's at 80; admins' at 80 and 100).
THRESHOLDS: tuple[int, ...] = (80, 100)
# The policy "budget" value's field for each cap.
_POLICY_FIELDS: dict[CapName, str] = {
    "workspace_monthly": "workspace_monthly_usd",
    "user_daily": "user_daily_usd",
    "user_monthly": "user_monthly_usd",
}
_Money = Decimal | None


class BudgetCaps(BaseModel):
    """The workspace's caps in USD (None: no such cap) and who opted their own key in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_monthly: _Money = Field(None, ge=0, allow_inf_nan=False)
    user_daily: _Money = Field(None, ge=0, allow_inf_nan=False)
    user_monthly: _Money = Field(None, ge=0, allow_inf_nan=False)
    own_key_opt_in: frozenset[str] = frozenset()

    @classmethod
    def from_policy(cls, value: Any) -> BudgetCaps:
        """Caps from the policy "budget" value ({"workspace_monthly_usd": "100.00", …}); none if unset.

        Raises pydantic's ValidationError for a value that is not money.
        """
        if not isinstance(value, Mapping):
            return cls()
        opted = value.get("own_key_opt_in") or []
        return cls(
            **{name: value.get(field) for name, field in _POLICY_FIELDS.items()},
            own_key_opt_in=frozenset(str(user) for user in opted),
        )

    def to_policy(self) -> dict[str, Any]:
        """The policy "budget" value for these caps (amounts as decimal text)."""
        out: dict[str, Any] = {
            field: None if (cap := self.cap(name)) is None else str(cap)
            for name, field in _POLICY_FIELDS.items()
        }
        out["own_key_opt_in"] = sorted(self.own_key_opt_in)
        return out

    def cap(self, name: CapName) -> Decimal | None:
        """The cap called `name`, or None when it is not set."""
        value: Decimal | None = getattr(self, name)
        return value

    @property
    def any_set(self) -> bool:
        """Whether at least one cap is set."""
        return any(self.cap(name) is not None for name in CAP_NAMES)


class Crossing(BaseModel):
    """A threshold (80 % or 100 % of one cap, in one period) that a charge reaches."""

    model_config = ConfigDict(frozen=True)

    cap_name: CapName
    pct: int
    period: str  # "2026-12-02" for the daily cap, "2026-12" for a monthly one
    cap_usd: Decimal
    spent_usd: Decimal  # with this charge
    resets_at: datetime

    @property
    def for_workspace(self) -> bool:
        """Whether this is the workspace budget's line (admins are told), not a user's cap."""
        return self.cap_name == "workspace_monthly"

    def notice_key(self, user: str) -> str:
        """The "notices" key that makes its notice single-use: "<period>:<who>:<pct>"."""
        who = "workspace" if self.for_workspace else user
        return f"{self.period}:{who}:{self.pct}"


class BudgetDecision(BaseModel):
    """Whether a charge may go ahead, and the cap that says so.

    `cap_name`/`cap_usd`/`spent_usd`/`resets_at` name the cap that refused, or when allowed
    the one with the least room left (all None but `resets_at`, the next UTC day, when no
    cap is set). `spent_usd` is what counts so far, without this charge.
    """

    model_config = ConfigDict(frozen=True)

    allowed: bool
    amount_usd: Decimal
    cap_name: CapName | None = None
    cap_usd: Decimal | None = None
    spent_usd: Decimal | None = None
    remaining_usd: Decimal | None = None
    resets_at: datetime
    crossed: list[Crossing] = Field(default_factory=list)


def applies(caps: BudgetCaps, user: str, key_source: KeySource) -> bool:
    """Whether the caps govern this call: always on the workspace key, on one's own if opted in."""
    return key_source == "workspace" or user in caps.own_key_opt_in


def _spent(snapshot: SpendSnapshot, name: CapName) -> Decimal:
    if name == "user_daily":
        return snapshot.user_day_usd
    if name == "user_monthly":
        return snapshot.user_month_usd
    return snapshot.workspace_month_usd


def _period(name: CapName, now: datetime) -> tuple[str, datetime]:
    day, month, next_day, next_month = period_bounds(now)
    if name == "user_daily":
        return day.strftime("%Y-%m-%d"), next_day
    return month.strftime("%Y-%m"), next_month


def crossed_thresholds(
    snapshot: SpendSnapshot, amount: Decimal, caps: BudgetCaps, now: datetime
) -> list[Crossing]:
    """The 80 %/100 % lines that spending `amount` on top of `snapshot` reaches for the first time."""
    found: list[Crossing] = []
    for name in CAP_NAMES:
        cap = caps.cap(name)
        if cap is None:
            continue
        before = _spent(snapshot, name)
        after = before + amount
        period, resets = _period(name, now)
        for pct in THRESHOLDS:
            line = cap * pct / 100
            if before < line <= after:
                found.append(
                    Crossing(
                        cap_name=name,
                        pct=pct,
                        period=period,
                        cap_usd=cap,
                        spent_usd=after,
                        resets_at=resets,
                    )
                )
    return found


def decide(
    snapshot: SpendSnapshot, amount: Decimal, caps: BudgetCaps, now: datetime
) -> BudgetDecision:
    """Allow `amount` only if it fits under every cap set; say which cap and when it resets.

    Of several caps it would exceed, the one that resets last is named (waiting for the
    daily cap to reset would not help while the monthly one is also spent).
    """
    if amount < 0:
        raise ValueError("a charge cannot be negative")
    refusing: tuple[CapName, Decimal, Decimal, datetime] | None = None
    tightest: tuple[CapName, Decimal, Decimal, datetime] | None = None
    # Workspace first: of two caps resetting together, the workspace's is named.
    for name in reversed(CAP_NAMES):
        cap = caps.cap(name)
        if cap is None:
            continue
        spent = _spent(snapshot, name)
        resets = _period(name, now)[1]
        if spent + amount > cap and (refusing is None or resets > refusing[3]):
            refusing = (name, cap, spent, resets)
        if tightest is None or cap - spent < tightest[1] - tightest[2]:
            tightest = (name, cap, spent, resets)
    chosen = refusing or tightest
    if chosen is None:
        return BudgetDecision(allowed=True, amount_usd=amount, resets_at=period_bounds(now)[2])
    name, cap, spent, resets = chosen
    allowed = refusing is None
    return BudgetDecision(
        allowed=allowed,
        amount_usd=amount,
        cap_name=name,
        cap_usd=cap,
        spent_usd=spent,
        remaining_usd=max(cap - spent, Decimal(0)),
        resets_at=resets,
        crossed=crossed_thresholds(snapshot, amount, caps, now) if allowed else [],
    )
