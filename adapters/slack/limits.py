"""Small bounded bookkeeping: recently seen ids (retries, double deliveries) and rate budgets."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from adapters.slack.claims import Claim

if TYPE_CHECKING:
    from bot.store.events import SeenEvents

log = logging.getLogger(__name__)


class RecentKeys:
    """Remembers keys for `ttl_s` (at most `capacity` of them): `first_time(key)` dedupes."""

    def __init__(
        self,
        capacity: int = 20_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl_s
        self._clock = clock

    def first_time(self, key: Hashable) -> bool:
        """True the first time `key` is seen (within the TTL), False for repeats."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self._ttl and len(self._seen) < self._capacity:
                break
            self._seen.pop(oldest)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class SeenAnywhere:
    """Deliveries seen by any replica on the store (its `events_seen` table), under `namespace`.

    The store is the source of truth: two replicas racing on one key get one "first". While
    the store cannot be reached, this process's own memory decides instead (a repeat that
    reaches another replica meanwhile may then run twice, rather than a message be lost).
    """

    def __init__(
        self, events: SeenEvents | None, namespace: str, ttl_s: float, capacity: int = 20_000
    ) -> None:
        self._events = events
        self._namespace = namespace
        self._ttl = ttl_s
        self._local = RecentKeys(capacity=capacity, ttl_s=ttl_s)
        self._failing = False

    async def first_time(self, key: str) -> bool:
        """True the first time any replica sees `key` within the TTL, False for repeats."""
        locally_first = self._local.first_time(key)
        if self._events is None:
            return locally_first
        return await self._store_says(self._events, key, locally_first)

    def claim(self, key: str) -> Claim | bool:
        """At once False for a repeat this process saw; else the store's answer, asked when
        the work first awaits it (True without a store): the ack never waits for the store."""
        if not self._local.first_time(key):
            return False
        events = self._events
        if events is None:
            return True
        return Claim(lambda: self._store_says(events, key, True))

    async def _store_says(self, events: SeenEvents, key: str, locally_first: bool) -> bool:
        try:
            first = await events.first_time(f"{self._namespace}:{key}", self._ttl)
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "cannot check %s deliveries in the store (%s); deduplicating in this "
                    "process only until it answers",
                    self._namespace,
                    exc,
                )
            self._failing = True
            return locally_first
        if self._failing:
            log.info("%s deliveries are deduplicated in the store again", self._namespace)
            self._failing = False
        return first


class TokenBucket:
    """`rate_per_s` tokens per second, up to `burst`: a non-blocking budget for API tiers."""

    def __init__(
        self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._clock = clock
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_take(self, n: float = 1.0) -> bool:
        """Take `n` tokens if there are that many; never waits."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


class LruCounter:
    """Counts uses per key (e.g. a response_url's 5 uses), forgetting the oldest keys."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def get(self, key: str) -> int:
        """Uses so far."""
        return self._counts.get(key, 0)

    def add(self, key: str) -> int:
        """Count one more use; returns the new total."""
        total = self._counts.pop(key, 0) + 1
        self._counts[key] = total
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return total
