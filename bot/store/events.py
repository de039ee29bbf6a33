"""Deliveries already seen by any process on this store: the `events_seen` table.

Slack retries an event it thinks we missed, sends a mention as two events, and a replayed
HTTP request carries a signature seen before; with several replicas the repeat may reach
another process, or this one after a restart. `first_time` answers "seen before?" with one
atomic statement, so of two replicas racing on one key exactly one hears "first".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from bot.store.backend import StoreBackend
from bot.store.models import iso, utcnow

# Keys this process knows were seen (it recorded them, or the store said so), kept to answer
# a repeat without a round trip. Only ever says "seen": "not in here" always asks the store.
FRONT_CACHE_KEYS = 20_000
# Expired rows are deleted at most this often (seconds), by whichever call comes next.
PRUNE_INTERVAL_S = 60.0

# Inserts the key, or takes over a row whose expiry has passed (not yet pruned); a live row
# is left alone. The changed-row count is 1 exactly for the first sighting.
_CLAIM = (
    "INSERT INTO events_seen (key, first_seen, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET first_seen = excluded.first_seen,"
    " expires_at = excluded.expires_at WHERE events_seen.expires_at <= ?"
)


class SeenEvents:
    """Repository for `events_seen` (key, first seen, expires), with a local front cache."""

    def __init__(self, db: StoreBackend, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.clock = clock
        self._front: OrderedDict[str, float] = OrderedDict()
        self._pruned_at = 0.0

    async def first_time(self, key: str, ttl_s: float) -> bool:
        """True the first time any process asks about `key` within `ttl_s`; False for repeats.

        Raises what the backend raises when the store cannot be written (the caller decides
        whether to process or drop a delivery it cannot check).
        """
        now = self.clock()
        known_until = self._front.get(key)
        if known_until is not None and known_until > now:
            return False
        expires = now + ttl_s
        async with self._db.write() as tx:
            first = await tx.execute(_CLAIM, (key, iso(utcnow()), expires, now)) == 1
            if now - self._pruned_at >= PRUNE_INTERVAL_S:
                self._pruned_at = now
                await tx.execute("DELETE FROM events_seen WHERE expires_at <= ?", (now,))
        # A repeat's row may live longer than our ttl; ours is a lower bound either way.
        self._remember(key, expires)
        return first

    def _remember(self, key: str, until: float) -> None:
        self._front[key] = until
        self._front.move_to_end(key)
        while len(self._front) > FRONT_CACHE_KEYS:
            self._front.popitem(last=False)

    async def prune(self) -> int:
        """Delete every expired row now; how many went."""
        now = self.clock()
        self._pruned_at = now
        async with self._db.write() as tx:
            return await tx.execute("DELETE FROM events_seen WHERE expires_at <= ?", (now,))

    def forget_local(self) -> None:
        """Empty the front cache (tests: as if this were a fresh process)."""
        self._front.clear()
