"""What a side-panel conversation is looking at: the `thread_contexts` table.

A platform's AI side panel (Slack's assistant threads) says which channel the person has open
when the thread starts and whenever they move on. The adapter keeps that here, not in memory,
so a restart or another replica still knows it. A context is a small JSON object of strings
(ids only, never message text), keyed by the adapter's thread key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from bot.store.backend import StoreBackend

# A thread nobody looked at for this long is forgotten (as conversations are).
KEEP_S = 90 * 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0
# Contexts hold a few ids: anything bigger is not one.
MAX_CONTEXT_CHARS = 2000

_UPSERT = (
    "INSERT INTO thread_contexts (thread_key, context, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (thread_key) DO UPDATE SET"
    " context = excluded.context, updated_at = excluded.updated_at"
)


class ThreadContextRows:
    """Repository for `thread_contexts`; written at once (not queued), so any replica reads it."""

    def __init__(self, db: StoreBackend, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.clock = clock
        self._pruned_at = 0.0

    async def save(self, thread_key: str, context: Mapping[str, str]) -> None:
        """Replace the thread's context (string values only)."""
        raw = json.dumps({str(k): str(v) for k, v in context.items()}, sort_keys=True)
        if len(raw) > MAX_CONTEXT_CHARS:
            raise ValueError(f"a thread context of {len(raw)} characters is not a context")
        now = self.clock()
        async with self._db.write() as tx:
            await tx.execute(_UPSERT, (thread_key, raw, now))
            if now - self._pruned_at >= PRUNE_INTERVAL_S:
                self._pruned_at = now
                await tx.execute(
                    "DELETE FROM thread_contexts WHERE updated_at < ?", (now - KEEP_S,)
                )

    async def get(self, thread_key: str) -> dict[str, str] | None:
        """The thread's stored context, or None."""
        async with self._db.read() as tx:
            row = await tx.fetchone(
                "SELECT context FROM thread_contexts WHERE thread_key = ?", (thread_key,)
            )
        if row is None:
            return None
        try:
            value = json.loads(row["context"])
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        return {str(k): str(v) for k, v in value.items()}
