"""Confirm buttons for `/openclaw-token` operations that spend money or can't be undone.

A pending confirmation lives in memory, bound to the person who asked, usable once, and
expires after 15 minutes (after a restart the button answers "expired": run the command
again). Whoever else clicks it is refused, so a button seen in a channel can't act for them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.core.messages import Actions, Button
from bot.store import Owner

CONFIRM_ACTION = "openclaw.confirm"
CANCEL_ACTION = "openclaw.cancel"
TTL_S = 15 * 60.0

TakeStatus = Literal["ok", "expired", "not_yours", "taken", "cancelled"]


@dataclass
class Pending:
    """One operation waiting for its Confirm click."""

    token: str
    owner: Owner
    action: str
    payload: dict[str, str]
    created: float
    state: Literal["open", "taken", "cancelled"] = "open"


@dataclass
class Confirmations:
    """Pending confirmations of one bot."""

    ttl_s: float = TTL_S
    clock: Callable[[], float] = time.monotonic
    _pending: dict[str, Pending] = field(default_factory=dict)

    def offer(self, owner: Owner, action: str, payload: dict[str, str] | None = None) -> str:
        """Remember an operation; the returned token goes into the button's value."""
        now = self.clock()
        for token in [t for t, p in self._pending.items() if now - p.created > self.ttl_s]:
            del self._pending[token]
        token = secrets.token_urlsafe(12)
        self._pending[token] = Pending(token, owner, action, dict(payload or {}), now)
        return token

    def _find(self, owner: Owner, token: str) -> tuple[TakeStatus, Pending | None]:
        pending = self._pending.get(token)
        if pending is None or self.clock() - pending.created > self.ttl_s:
            return "expired", None
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
        status, pending = self._find(owner, token)
        if status == "ok" and pending is not None:
            pending.state = "cancelled"
        return status


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
