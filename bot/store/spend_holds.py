"""Spend reservations: check a budget and hold the estimate in one transaction, settle later.

`reserve` reads what the workspace has spent (ledger rows plus open holds) and inserts the
hold in the same write transaction, serialised per workspace on every replica (PostgreSQL:
an advisory lock; SQLite: BEGIN IMMEDIATE), so twenty jobs submitted at once cannot all pass
a cap only one of them fits under. A hold whose job died stops counting when it expires.

A hold is never deleted when it ends: it keeps a state, 'open', 'settled' or 'released', so
a settle that comes after a release (a Cancel racing the delivery of a result the backend
already charged for) still records the charge, and a second settle records nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from bot.store.backend import StoreBackend, Tx
from bot.store.ledger import charge_statements, from_units, to_units
from bot.store.models import (
    KeySource,
    LedgerEntry,
    Owner,
    SpendHoldRecord,
    SpendSnapshot,
    UsageRecord,
    epoch,
    period_bounds,
)
from bot.store.policy import lock_workspace, own_key_opt_in

# An expired hold is kept (not counted) this long, so a job that outlived its hold still
# settles its real cost instead of finding nothing and recording no charge.
KEEP_EXPIRED_S = 7 * 24 * 3600.0


class Verdict(Protocol):
    """What a budget decision must say: whether the spend may go ahead."""

    @property
    def allowed(self) -> bool: ...


V = TypeVar("V", bound=Verdict)


def _counted(opted_in: Sequence[str]) -> tuple[str, list[object]]:
    # Workspace-key spend always counts against caps; own-key spend only for users who opted in.
    if not opted_in:
        return " AND key_source = 'workspace'", []
    marks = ", ".join("?" for _ in opted_in)
    return f" AND (key_source = 'workspace' OR \"user\" IN ({marks}))", list(opted_in)


async def capped_spend(tx: Tx, owner: Owner, now: datetime) -> SpendSnapshot:
    """What counts against `owner`'s caps at `now`: this UTC day's, this UTC month's and the
    workspace's month's ledger rows, plus every unexpired hold (call inside the workspace lock)."""
    day, month, _, next_month = period_bounds(now)
    counted, extra = _counted(await own_key_opt_in(tx, owner.platform, owner.workspace))
    spent = await tx.fetchone(
        'SELECT COALESCE(SUM(CASE WHEN "user" = ? AND created_epoch >= ? THEN cost_units'
        ' ELSE 0 END), 0), COALESCE(SUM(CASE WHEN "user" = ? THEN cost_units ELSE 0 END), 0),'
        " COALESCE(SUM(cost_units), 0) FROM ledger WHERE platform = ? AND workspace = ?"
        f" AND created_epoch >= ? AND created_epoch < ?{counted}",
        (
            owner.user,
            epoch(day),
            owner.user,
            owner.platform,
            owner.workspace,
            epoch(month),
            epoch(next_month),
            *extra,
        ),
    )
    held = await tx.fetchone(
        'SELECT COALESCE(SUM(CASE WHEN "user" = ? THEN amount_units ELSE 0 END), 0),'
        " COALESCE(SUM(amount_units), 0) FROM spend_holds"
        " WHERE platform = ? AND workspace = ? AND state = 'open' AND expires_epoch > ?"
        f"{counted}",
        (owner.user, owner.platform, owner.workspace, epoch(now), *extra),
    )
    assert spent is not None and held is not None  # an aggregate always has one row
    return SpendSnapshot(
        user_day_usd=from_units(spent[0] + held[0]),
        user_month_usd=from_units(spent[1] + held[0]),
        workspace_month_usd=from_units(spent[2] + held[1]),
    )


class SpendHolds:
    """Repository for `spend_holds`, and the settling of a hold into the ledger."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def reserve(
        self,
        owner: Owner,
        service: str,
        command: str,
        amount: Decimal,
        key_source: KeySource,
        *,
        decide: Callable[[SpendSnapshot], V],
        now: datetime,
        ttl_s: float,
    ) -> tuple[V, SpendHoldRecord | None]:
        """Snapshot the spend, ask `decide`, and hold `amount` if it allows: one transaction.

        `decide` runs inside the write transaction, so it must be quick and do no I/O.
        """
        record = SpendHoldRecord(
            id=uuid.uuid4().hex,
            owner=owner,
            service=service,
            command=command,
            amount_usd=amount,
            key_source=key_source,
            expires_epoch=epoch(now) + ttl_s,
        )
        await self._db.flush()  # this replica's queued charges count too
        async with self._db.write() as tx:
            await lock_workspace(tx, self._db.dialect.name, owner.platform, owner.workspace)
            verdict = decide(await capped_spend(tx, owner, now))
            if not verdict.allowed:
                return verdict, None
            await tx.execute(
                "DELETE FROM spend_holds WHERE platform = ? AND workspace = ?"
                " AND expires_epoch < ?",
                (owner.platform, owner.workspace, epoch(now) - KEEP_EXPIRED_S),
            )
            await tx.execute(
                'INSERT INTO spend_holds (id, platform, workspace, "user", service, command,'
                " amount_usd, amount_units, key_source, created_epoch, expires_epoch)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    owner.platform,
                    owner.workspace,
                    owner.user,
                    service,
                    command,
                    str(amount),
                    to_units(amount),
                    key_source,
                    epoch(now),
                    record.expires_epoch,
                ),
            )
        return verdict, record

    async def settle(self, hold_id: str, usage: UsageRecord, entry: LedgerEntry) -> bool:
        """Mark the hold settled and write the call's usage and ledger rows, in one transaction.

        A released hold settles too (the backend charged although the caller gave up). False,
        writing nothing, when that workspace has no such hold or it is settled already: a hold
        is charged at most once.
        """
        statements = charge_statements(usage, entry)
        owner = entry.owner
        async with self._db.write() as tx:
            # The lock: a reservation reading the ledger, then the holds, never sees both or neither.
            await lock_workspace(tx, self._db.dialect.name, owner.platform, owner.workspace)
            changed = await tx.execute(
                "UPDATE spend_holds SET state = 'settled' WHERE id = ? AND platform = ?"
                " AND workspace = ? AND state IN ('open', 'released')",
                (hold_id, owner.platform, owner.workspace),
            )
            if changed != 1:
                return False
            for sql, params in statements:
                await tx.execute(sql, params)
        return True

    async def release(self, hold_id: str) -> bool:
        """Stop a hold counting, uncharged (the call failed); True if it was open.

        A settled hold stays settled. The row is kept, so a settle arriving later still records.
        """
        async with self._db.write() as tx:
            changed = await tx.execute(
                "UPDATE spend_holds SET state = 'released' WHERE id = ? AND state = 'open'",
                (hold_id,),
            )
        return changed == 1

    async def get(self, hold_id: str, *, released: bool = False) -> SpendHoldRecord | None:
        """The hold with this id while it is open (expired or not); with `released`, also once
        released (it may still settle then)."""
        # A settled hold is never returned; an open one always.
        also = "released" if released else "open"
        async with self._db.read() as tx:
            row = await tx.fetchone(
                "SELECT * FROM spend_holds WHERE id = ? AND state IN ('open', ?)", (hold_id, also)
            )
        if row is None:
            return None
        return SpendHoldRecord(
            id=row["id"],
            owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
            service=row["service"],
            command=row["command"],
            amount_usd=Decimal(row["amount_usd"]),
            key_source=row["key_source"],
            expires_epoch=float(row["expires_epoch"]),
        )
