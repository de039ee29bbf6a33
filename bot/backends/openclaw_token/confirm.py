"""Confirm buttons for `/openclaw-token` operations that spend money or can't be undone.

A pending confirmation lives in memory, bound to the person who asked, usable once, and
expires after 15 minutes (after a restart the button answers "expired": run the command
again). Whoever else clicks it is refused, so a button seen in a channel can't act for them.

The audit log tells the prompt from the action: the command that shows the prompt is
recorded as "prompted", then its Confirm row says "confirmed" (or how the confirmed action
failed), "cancelled" or "expired" — an expiry nobody clicked is recorded when `sweep` next
runs (any click, or `audit show`).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.core.messages import Actions, Button
from bot.store import Owner

CONFIRM_ACTION = "openclaw.confirm"
CANCEL_ACTION = "openclaw.cancel"
TTL_S = 15 * 60.0

TakeStatus = Literal["ok", "expired", "not_yours", "taken", "cancelled"]
PendingState = Literal["open", "taken", "cancelled", "expired"]


def _who(owner: Owner) -> tuple[str, str, str]:
    return owner.platform, owner.workspace, owner.user


@dataclass
class Pending:
    """One operation waiting for its Confirm click."""

    token: str
    owner: Owner
    action: str
    payload: dict[str, str]
    created: float
    state: PendingState = "open"
    # Whether its expiry has been handed out for the audit log (once per confirmation).
    expiry_reported: bool = False


@dataclass
class Confirmations:
    """Pending confirmations of one bot."""

    ttl_s: float = TTL_S
    clock: Callable[[], float] = time.monotonic
    _pending: dict[str, Pending] = field(default_factory=dict)
    # Prompts offered per person so far: a handler that offered one ended "prompted".
    _offered: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def offer(self, owner: Owner, action: str, payload: dict[str, str] | None = None) -> str:
        """Remember an operation; the returned token goes into the button's value."""
        now = self.clock()
        # Settled ones are kept one more TTL (a late click still reads right), then dropped;
        # an expiry not yet reported to the audit log stays until `sweep` hands it out.
        for token in [t for t, p in self._pending.items() if self._forgettable(p, now)]:
            del self._pending[token]
        token = secrets.token_urlsafe(12)
        self._pending[token] = Pending(token, owner, action, dict(payload or {}), now)
        self._offered[_who(owner)] += 1
        return token

    def offers_to(self, owner: Owner) -> int:
        """How many prompts `owner` was offered so far."""
        return self._offered[_who(owner)]

    def _forgettable(self, pending: Pending, now: float) -> bool:
        if now - pending.created <= 2 * self.ttl_s:
            return False
        return pending.state != "open" and (pending.state != "expired" or pending.expiry_reported)

    def _expire(self, pending: Pending, now: float) -> None:
        if pending.state == "open" and now - pending.created > self.ttl_s:
            pending.state = "expired"

    def sweep(self) -> list[Pending]:
        """Confirmations that expired unclicked since the last sweep (each handed out once)."""
        now = self.clock()
        found = []
        for pending in self._pending.values():
            self._expire(pending, now)
            if pending.state == "expired" and not pending.expiry_reported:
                pending.expiry_reported = True
                found.append(pending)
        return found

    def _find(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        pending = self._pending.get(token)
        if pending is None:
            return "expired", None
        self._expire(pending, self.clock())
        if pending.state == "expired":
            return "expired", pending if pending.owner == owner else None
        if pending.owner != owner:
            return "not_yours", None
        if pending.state != "open":
            return pending.state, pending
        return "ok", pending

    def take(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        """Claim the operation for running; only the first click by its owner gets "ok"."""
        status, pending = self._find(owner, token)
        if status == "ok" and pending is not None:
            # Claimed before any await: a second click, however quick, sees "taken".
            pending.state = "taken"
        return status, pending

    def cancel(self, owner: Owner, token: str) -> TakeStatus:
        """Drop an operation that has not run yet."""
        return self.take_for_cancel(owner, token)[0]

    def take_for_cancel(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        """As `cancel`, with the operation (to audit which one was cancelled)."""
        status, pending = self._find(owner, token)
        if status == "ok" and pending is not None:
            pending.state = "cancelled"
        return status, pending


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
