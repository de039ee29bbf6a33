"""Pending Confirm buttons as rows: single-use tokens, consumed in one transaction.

A row is offered "open"; the first click by its owner moves it to "taken" (or "cancelled")
with one guarded UPDATE, so a double click — on one replica or two — runs the operation
once. Rows outlive a restart, so a pending button still works until it expires.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.store.backend import Row, StoreBackend, Tx
from bot.store.models import Owner

ConfirmationState = Literal["open", "taken", "cancelled", "expired"]
TakeStatus = Literal["ok", "expired", "not_yours", "taken", "cancelled"]

_COLUMNS = (
    'token, platform, workspace, "user", action, payload, created_at, expires_at, state,'
    " expiry_reported"
)
_OWNER = 'platform = ? AND workspace = ? AND "user" = ?'


class Confirmation(BaseModel):
    """One operation waiting for (or past) its Confirm click."""

    model_config = ConfigDict(frozen=True)

    token: str
    owner: Owner
    action: str
    payload: dict[str, str]
    created_at: float
    expires_at: float
    state: ConfirmationState = "open"
    # Whether its expiry has been handed out for the audit log (once per confirmation).
    expiry_reported: bool = False


class ConfirmationRows:
    """Repository for the `confirmations` table (times are epoch seconds, as the caller's clock)."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def offer(self, pending: Confirmation, *, forget_before: float) -> None:
        """Store a new open confirmation; settled ones created before `forget_before` go.

        An expiry not yet handed to the audit log stays until `sweep` hands it out.
        """
        async with self._db.write() as tx:
            await tx.execute(
                "DELETE FROM confirmations WHERE created_at < ? AND state <> 'open'"
                " AND (state <> 'expired' OR expiry_reported = 1)",
                (forget_before,),
            )
            await tx.execute(
                f"INSERT INTO confirmations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pending.token,
                    pending.owner.platform,
                    pending.owner.workspace,
                    pending.owner.user,
                    pending.action,
                    json.dumps(pending.payload),
                    pending.created_at,
                    pending.expires_at,
                    pending.state,
                    int(pending.expiry_reported),
                ),
            )

    async def get(self, token: str) -> Confirmation | None:
        """The confirmation with this token, as stored."""
        async with self._db.read() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM confirmations WHERE token = ?", (token,)
            )
        return None if row is None else _to_confirmation(row)

    async def settle(
        self, owner: Owner, token: str, new_state: Literal["taken", "cancelled"], now: float
    ) -> tuple[TakeStatus, Confirmation | None]:
        """Move `owner`'s open, unexpired confirmation to `new_state`; only one caller gets "ok".

        Otherwise says why not: "expired" (unknown, or too late — then the row is marked
        expired and returned if it is the caller's), "not_yours", "taken" or "cancelled".
        """
        async with self._db.write() as tx:
            changed = await tx.execute(
                f"UPDATE confirmations SET state = ? WHERE token = ? AND {_OWNER}"
                " AND state = 'open' AND expires_at >= ?",
                (new_state, token, owner.platform, owner.workspace, owner.user, now),
            )
            await _expire(tx, now, token)
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM confirmations WHERE token = ?", (token,)
            )
        found = None if row is None else _to_confirmation(row)
        if changed == 1 and found is not None:
            return "ok", found
        if found is None:
            return "expired", None
        mine = found.owner == owner
        if found.state == "expired":
            return "expired", found if mine else None
        if not mine:
            return "not_yours", None
        if found.state == "open":  # cannot happen: open, unexpired and ours was just taken
            return "taken", found
        return found.state, found

    async def sweep(self, now: float) -> list[Confirmation]:
        """Confirmations that expired unclicked and were not yet reported, each handed out once."""
        async with self._db.write() as tx:
            await _expire(tx, now)
            rows = await tx.fetchall(
                f"SELECT {_COLUMNS} FROM confirmations"
                " WHERE state = 'expired' AND expiry_reported = 0"
                f" ORDER BY created_at{self._db.dialect.lock_rows}"
            )
            found = [_to_confirmation(row) for row in rows]
            reported = []
            for item in found:
                # Guarded: of two replicas sweeping at once, one reports each expiry.
                if await tx.execute(
                    "UPDATE confirmations SET expiry_reported = 1"
                    " WHERE token = ? AND expiry_reported = 0",
                    (item.token,),
                ):
                    reported.append(item.model_copy(update={"expiry_reported": True}))
        return reported

    async def report_expiry(self, token: str) -> bool:
        """Claim the audit row for this expired confirmation; True only the first time."""
        async with self._db.write() as tx:
            changed = await tx.execute(
                "UPDATE confirmations SET expiry_reported = 1"
                " WHERE token = ? AND state = 'expired' AND expiry_reported = 0",
                (token,),
            )
        return changed == 1


async def _expire(tx: Tx, now: float, token: str | None = None) -> None:
    where = " AND token = ?" if token is not None else ""
    params: tuple[object, ...] = (now,) if token is None else (now, token)
    await tx.execute(
        f"UPDATE confirmations SET state = 'expired' WHERE state = 'open' AND expires_at < ?{where}",
        params,
    )


def _to_confirmation(row: Row) -> Confirmation:
    return Confirmation(
        token=row["token"],
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        action=row["action"],
        payload=json.loads(row["payload"]),
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        state=row["state"],
        expiry_reported=bool(row["expiry_reported"]),
    )
