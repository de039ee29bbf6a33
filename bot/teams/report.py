"""Spend reports over the ledger: windows, aggregation by day/model/user/backend, CSV. Pure.

Days are UTC days, like the budget periods. A row's cost counts every charged call; the part
of it that came from a catalog estimate (the backend reported no cost) is kept apart so the
report can mark it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from bot.store.models import LedgerEntry

__all__ = [
    "CSV_COLUMNS",
    "MAX_WINDOW_DAYS",
    "NO_MODEL",
    "Dimension",
    "ReportRow",
    "ReportWindow",
    "ReportWindowError",
    "Totals",
    "UsageReport",
    "build_report",
    "csv_safe",
    "ledger_csv",
    "stack_dimension",
    "usd",
    "window_for",
]

Dimension = Literal["day", "model", "user", "backend"]

# A year of daily bars is the most a chart (and a chat table) can show readably.
MAX_WINDOW_DAYS = 366
NO_MODEL = "(no model)"
ZERO = Decimal("0")
CSV_COLUMNS = (
    "time_utc",
    "user",
    "channel",
    "backend",
    "command",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cost_source",
    "estimated",
    "key_source",
    "request_id",
)
# Spreadsheets run a cell that starts like a formula (CSV injection, OWASP): such text cells
# get a leading apostrophe, which the spreadsheet shows as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


class ReportWindowError(ValueError):
    """The asked window is not one a report can cover (in the future, over a year)."""


class ReportWindow(BaseModel):
    """The UTC interval a report covers and how to say it ("last 7 days")."""

    since: datetime
    until: datetime
    label: str

    def days(self) -> list[date]:
        """Every UTC day the window touches, oldest first (days without spend included)."""
        first, last = self.since.astimezone(UTC).date(), self.until.astimezone(UTC).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def window_for(since: date | None, since_days: int | None, now: datetime) -> ReportWindow:
    """`--since 7d` (today and the 6 days before, UTC) or `--since YYYY-MM-DD`, up to `now`."""
    now = now.astimezone(UTC)
    today = now.date()
    if since is not None:
        if since > today:
            raise ReportWindowError(f"{since.isoformat()} is in the future (UTC).")
        first, label = since, f"since {since.isoformat()}"
    else:
        days = 7 if since_days is None else since_days
        if days < 1:
            raise ReportWindowError("The window must be at least one day (`--since 1d`).")
        first = today - timedelta(days=days - 1)
        label = "today" if days == 1 else f"last {days} days"
    if (today - first).days + 1 > MAX_WINDOW_DAYS:
        raise ReportWindowError(
            f"A report covers at most {MAX_WINDOW_DAYS} days; pick a later `--since`."
        )
    return ReportWindow(since=datetime.combine(first, time(), UTC), until=now, label=label)


class Totals(BaseModel):
    """What a set of charged calls cost, and how much of that is estimated."""

    cost_usd: Decimal = ZERO
    estimated_usd: Decimal = ZERO
    calls: int = 0
    estimated_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def has_estimate(self) -> bool:
        """Some of the cost is a catalog estimate, not what the backend charged."""
        return self.estimated_calls > 0

    def add(self, entry: LedgerEntry) -> None:
        """Count one ledger entry."""
        self.cost_usd += entry.cost_usd
        self.calls += 1
        self.prompt_tokens += entry.prompt_tokens
        self.completion_tokens += entry.completion_tokens
        if entry.cost_source == "estimate":
            self.estimated_usd += entry.cost_usd
            self.estimated_calls += 1

    def merge(self, other: Totals) -> None:
        """Count everything `other` counted."""
        self.cost_usd += other.cost_usd
        self.estimated_usd += other.estimated_usd
        self.calls += other.calls
        self.estimated_calls += other.estimated_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


class ReportRow(BaseModel):
    """One row of the table: a day, a model, a user or a backend, and its totals."""

    key: str
    totals: Totals


class UsageReport(BaseModel):
    """The aggregated report: table rows, the grand total and the per-day stacks for the chart."""

    dimension: Dimension
    window: ReportWindow
    rows: list[ReportRow]
    total: Totals
    days: list[date]
    # Stack key (backend for --by day, else the dimension's key) -> cost per day, aligned
    # with `days`; keys ordered by total cost, largest first.
    stacks: dict[str, list[Decimal]] = Field(default_factory=dict)

    @property
    def stack_dimension(self) -> Dimension:
        """What the chart's bars are stacked by."""
        return stack_dimension(self.dimension)


def stack_dimension(dimension: Dimension) -> Dimension:
    """`--by day` stacks each day's bar by backend; the other dimensions stack by themselves."""
    return "backend" if dimension == "day" else dimension


def key_of(entry: LedgerEntry, dimension: Dimension) -> str:
    """The entry's value along a dimension (its UTC day as YYYY-MM-DD for `day`)."""
    if dimension == "day":
        return entry.created_at.astimezone(UTC).date().isoformat()
    if dimension == "model":
        return entry.model or NO_MODEL
    if dimension == "user":
        return entry.owner.user
    return entry.service


def _in_window(entry: LedgerEntry, window: ReportWindow) -> bool:
    return window.since <= entry.created_at <= window.until


def _rows(entries: Sequence[LedgerEntry], dimension: Dimension) -> list[ReportRow]:
    by_key: dict[str, Totals] = {}
    for entry in entries:
        by_key.setdefault(key_of(entry, dimension), Totals()).add(entry)
    if dimension == "day":
        ordered = sorted(by_key.items())  # chronological
    else:
        ordered = sorted(by_key.items(), key=lambda item: (-item[1].cost_usd, item[0]))
    return [ReportRow(key=key, totals=totals) for key, totals in ordered]


def _stacks(
    entries: Sequence[LedgerEntry], dimension: Dimension, days: list[date]
) -> dict[str, list[Decimal]]:
    index = {day: n for n, day in enumerate(days)}
    stacks: dict[str, list[Decimal]] = {}
    for entry in entries:
        values = stacks.setdefault(key_of(entry, dimension), [ZERO] * len(days))
        values[index[entry.created_at.astimezone(UTC).date()]] += entry.cost_usd
    ranked = sorted(stacks.items(), key=lambda item: (-sum(item[1], ZERO), item[0]))
    return dict(ranked)


def build_report(
    entries: Iterable[LedgerEntry], dimension: Dimension, window: ReportWindow
) -> UsageReport:
    """Aggregate the entries inside the window (others are ignored) along `dimension`."""
    inside = [entry for entry in entries if _in_window(entry, window)]
    total = Totals()
    for entry in inside:
        total.add(entry)
    days = window.days()
    return UsageReport(
        dimension=dimension,
        window=window,
        rows=_rows(inside, dimension),
        total=total,
        days=days,
        stacks=_stacks(inside, stack_dimension(dimension), days),
    )


def usd(value: Decimal) -> str:
    """Dollars as people read them: cents, with up to four decimals below $1 (calls cost little)."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    if value < Decimal("0.0001"):
        return "<$0.0001"
    text = f"{value:.4f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"${text}"


def csv_safe(text: str) -> str:
    """A text cell a spreadsheet shows as text: formula-like starts get a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_row(entry: LedgerEntry) -> list[str]:
    return [
        entry.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        csv_safe(entry.owner.user),
        csv_safe(entry.channel),
        csv_safe(entry.service),
        csv_safe(entry.command),
        csv_safe(entry.model or ""),
        str(entry.prompt_tokens),
        str(entry.completion_tokens),
        format(entry.cost_usd, "f"),
        entry.cost_source,
        "yes" if entry.cost_source == "estimate" else "no",
        entry.key_source,
        csv_safe(entry.request_id or ""),
    ]


def ledger_csv(entries: Iterable[LedgerEntry], window: ReportWindow) -> str:
    """The window's ledger entries as CSV (RFC 4180 quoting, CRLF), oldest first, with a header."""
    inside = sorted(
        (entry for entry in entries if _in_window(entry, window)), key=lambda e: e.created_at
    )
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(entry) for entry in inside)
    return out.getvalue()
