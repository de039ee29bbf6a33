"""Confirm buttons for `/openclaw-token` operations that spend money or can't be undone.

A pending confirmation is a row of the store (`bot.store.confirmations`), bound to the person
who asked, usable once, and expires after 15 minutes. Being a row, it survives a restart and
works on any replica; its token is consumed in one transaction, so a double click — even
across two replicas — runs the operation once. Whoever else clicks it is refused, so a button
seen in a channel can't act for them.

The audit log tells the prompt from the action: the command that shows the prompt is
recorded as "prompted", then its Confirm row says "confirmed" (or how the confirmed action
failed), "cancelled" or "expired" — an expiry nobody clicked is recorded when `sweep` next
runs (any click, or `audit show`), once across every replica.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.core.messages import Actions, Button
from bot.store import Confirmation, Owner, Store
from bot.store.confirmations import ConfirmationRows, TakeStatus

__all__ = [
    "CANCEL_ACTION",
    "CONFIRM_ACTION",
    "REFUSALS",
    "TTL_S",
    "Confirmations",
    "Pending",
    "TakeStatus",
    "confirm_buttons",
]

CONFIRM_ACTION = "openclaw.confirm"
CANCEL_ACTION = "openclaw.cancel"
TTL_S = 15 * 60.0

# One operation waiting for its Confirm click (a stored row).
Pending = Confirmation


def _who(owner: Owner) -> tuple[str, str, str]:
    return owner.platform, owner.workspace, owner.user


@dataclass
class Confirmations:
    """Pending confirmations of one bot, kept in its store (attached when the bot is built)."""

    store: Store | None = None
    ttl_s: float = TTL_S
    # Wall-clock seconds: rows are compared across restarts and replicas.
    clock: Callable[[], float] = time.time
    # Prompts offered per person by this process: a handler that offered one ended "prompted".
    _offered: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def attach(self, store: Store) -> None:
        """Keep confirmations in `store`."""
        self.store = store

    @property
    def _rows(self) -> ConfirmationRows:
        if self.store is None:
            raise RuntimeError("confirmations are not attached to a store")
        return self.store.confirmations

    async def offer(self, owner: Owner, action: str, payload: dict[str, str] | None = None) -> str:
        """Store an operation; the returned token goes into the button's value."""
        now = self.clock()
        token = secrets.token_urlsafe(12)
        pending = Pending(
            token=token,
            owner=owner,
            action=action,
            payload=dict(payload or {}),
            created_at=now,
            expires_at=now + self.ttl_s,
        )
        # Settled ones are kept one more TTL (a late click still reads right), then dropped.
        await self._rows.offer(pending, forget_before=now - 2 * self.ttl_s)
        self._offered[_who(owner)] += 1
        return token

    def offers_to(self, owner: Owner) -> int:
        """How many prompts `owner` was offered so far (by this process)."""
        return self._offered[_who(owner)]

    async def sweep(self) -> list[Pending]:
        """Confirmations that expired unclicked since the last sweep (each handed out once)."""
        return await self._rows.sweep(self.clock())

    async def take(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        """Claim the operation for running; only the first click by its owner gets "ok"."""
        return await self._rows.settle(owner, token, "taken", self.clock())

    async def cancel(self, owner: Owner, token: str) -> TakeStatus:
        """Drop an operation that has not run yet."""
        return (await self.take_for_cancel(owner, token))[0]

    async def take_for_cancel(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        """As `cancel`, with the operation (to audit which one was cancelled)."""
        return await self._rows.settle(owner, token, "cancelled", self.clock())

    async def report_expiry(self, pending: Pending) -> bool:
        """Claim the audit row for an expired confirmation; True only the first time anywhere."""
        if pending.expiry_reported:
            return False
        return await self._rows.report_expiry(pending.token)


def confirm_buttons(token: str, label: str, *, danger: bool = False) -> Actions:
    """Confirm / Cancel for one pending operation."""
    return Actions(
        buttons=[
            Button(
                action_id=CONFIRM_ACTION,
                label=label,
                value=token,
                style="danger" if danger else "primary",
            ),
            Button(action_id=CANCEL_ACTION, label="Cancel", value=token),
        ]
    )


REFUSALS: dict[TakeStatus, str] = {
    "expired": "This confirmation has expired; run the command again.",
    "not_yours": "Only the person who asked for this can confirm it.",
    "taken": "Already confirmed — it runs (or ran) once.",
    "cancelled": "This was cancelled; run the command again if you still want it.",
}
