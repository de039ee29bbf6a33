"""Store checks a request's work waits for, while its ack does not.

A delivery seen before by this process is dropped at once (memory). Whether another replica
saw it is the store's answer, and a store round trip (a write, behind the lock the work's own
writes take) must not delay the ack: the work spawned for the request asks the store first
and is dropped if the store says "repeat". One request may carry several keys (signature,
event id, message); they are asked in order and a lost key stops the asking, so that of two
replicas sharing keys exactly one wins them all. The request's checks travel in a context
variable, which asyncio copies into every task the request spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

__all__ = ["Claim", "all_first", "pending", "pending_claims"]

log = logging.getLogger(__name__)


class Claim:
    """One key's "first time anywhere?", asked of the store once, when first awaited."""

    def __init__(self, ask: Callable[[], Awaitable[bool]]) -> None:
        self._ask = ask
        self._task: asyncio.Task[bool] | None = None

    async def first(self) -> bool:
        """The store's answer (asked once; every later call gets the same answer)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._ask())
        # Shielded: one waiter's cancellation must not cancel the answer others wait for.
        return await asyncio.shield(self._task)


_PENDING: ContextVar[tuple[Claim, ...]] = ContextVar("slack_pending_claims", default=())


@contextlib.contextmanager
def pending(claim: Claim | bool) -> Iterator[None]:
    """Work spawned inside this block runs only if `claim` comes out first (True: no store)."""
    if isinstance(claim, bool):
        yield
        return
    token = _PENDING.set((*_PENDING.get(), claim))
    try:
        yield
    finally:
        _PENDING.reset(token)


def pending_claims() -> tuple[Claim, ...]:
    """The checks of the request being handled here (read when its work is spawned)."""
    return _PENDING.get()


async def all_first(claims: tuple[Claim, ...]) -> bool:
    """Whether every check says first, asked in order; a failing check counts as first."""
    for claim in claims:
        try:
            first = await claim.first()
        except asyncio.CancelledError:
            raise
        except Exception:  # SeenAnywhere already falls back to memory; never lose work
            log.exception("a delivery check failed; processing the delivery")
            first = True
        if not first:
            return False
    return True
