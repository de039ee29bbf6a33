"""The spend ledger: one row per charged call, written with the call's usage row. Never prompt text.

Costs are kept twice: `cost_usd` is the exact decimal text as the backend gave it, and
`cost_units` the same amount in 1e-10 USD, so budget sums are exact integer sums in SQL on
both backends (SQLite has no decimal type).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from bot.store.backend import Row, StoreBackend
from bot.store.models import LedgerEntry, Owner, UsageRecord, epoch, from_iso, iso
from bot.store.usage import INSERT_USAGE, usage_params

# `cost_units` / `amount_units` are USD × 10**UNIT_DIGITS (AllToken reports ten decimals).
UNIT_DIGITS = 10

INSERT_LEDGER = (
    'INSERT INTO ledger (platform, workspace, "user", channel, service, command, model,'
    " prompt_tokens, completion_tokens, cost_usd, cost_units, cost_source, key_source,"
    " request_id, created_at, created_epoch)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    'platform, workspace, "user", channel, service, command, model, prompt_tokens,'
    " completion_tokens, cost_usd, cost_source, key_source, request_id, created_at"
)

Statement = tuple[str, Sequence[object]]


def to_units(amount: Decimal) -> int:
    """`amount` USD in 1e-10 USD, rounded half-even (for sums; the exact text is kept too)."""
    return int(amount.scaleb(UNIT_DIGITS).to_integral_value(ROUND_HALF_EVEN))


def from_units(units: int | Decimal) -> Decimal:
    """Inverse of `to_units` (a SQL sum arrives as int on SQLite, Decimal on PostgreSQL).

    Cents at least, and no trailing zeros beyond: 10**10 is Decimal("1.00").
    """
    amount = Decimal(units).scaleb(-UNIT_DIGITS)
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite: an integer sum
    return amount.quantize(Decimal(1).scaleb(min(exponent, -2)))


def ledger_params(entry: LedgerEntry) -> tuple[object, ...]:
    """The parameters of `INSERT_LEDGER` for one entry."""
    return (
        entry.owner.platform,
        entry.owner.workspace,
        entry.owner.user,
        entry.channel,
        entry.service,
        entry.command,
        entry.model,
        entry.prompt_tokens,
        entry.completion_tokens,
        str(entry.cost_usd),
        to_units(entry.cost_usd),
        entry.cost_source,
        entry.key_source,
        entry.request_id,
        iso(entry.created_at),
        entry.created_at.timestamp(),
    )


def charge_statements(usage: UsageRecord, entry: LedgerEntry) -> tuple[Statement, Statement]:
    """The usage row and the ledger row of one charged call; ValueError if owners differ."""
    if usage.owner != entry.owner:
        raise ValueError("a usage row and its ledger row must have the same owner")
    return (INSERT_USAGE, usage_params(usage)), (INSERT_LEDGER, ledger_params(entry))


class Ledger:
    """Repository for the `ledger` table."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def record_charge(self, usage: UsageRecord, entry: LedgerEntry) -> None:
        """Queue the usage row and the ledger row as one unit: one transaction, or neither."""
        self._db.append_unit(charge_statements(usage, entry))

    async def rows(
        self,
        platform: str,
        workspace: str,
        *,
        user: str | None,
        since: datetime,
        until: datetime | None = None,
    ) -> list[LedgerEntry]:
        """The workspace's entries (one user's, or everyone's for None) from `since`, oldest first."""
        await self._db.flush()  # read our own queued charges
        sql = f"SELECT {_COLUMNS} FROM ledger WHERE platform = ? AND workspace = ?"
        params: list[object] = [platform, workspace]
        if user is not None:
            sql += ' AND "user" = ?'
            params.append(user)
        sql += " AND created_epoch >= ?"
        params.append(epoch(since))
        if until is not None:
            sql += " AND created_epoch < ?"
            params.append(epoch(until))
        async with self._db.read() as tx:
            found = await tx.fetchall(sql + " ORDER BY created_epoch, id", params)
        return [_to_entry(row) for row in found]


def _to_entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        channel=row["channel"],
        service=row["service"],
        command=row["command"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=Decimal(row["cost_usd"]),
        cost_source=row["cost_source"],
        key_source=row["key_source"],
        request_id=row["request_id"],
        created_at=from_iso(row["created_at"]),
    )
