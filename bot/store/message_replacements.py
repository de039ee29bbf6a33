"""Messages posted again because the original could no longer be edited: `message_replacements`.

A platform message the bot keeps editing (a job's progress, a stream) may stop being editable:
someone deleted it, or the token that posted it expired. The adapter then posts a copy and
records it here, keyed by the original's id, so later edits — from this process after a
restart, or from another replica that resumed the job — go to the copy instead of posting
yet another one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.store.backend import StoreBackend

# A job edits its message for at most hours; a copy older than this is never asked for.
KEEP_S = 7 * 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0

_UPSERT = (
    "INSERT INTO message_replacements (platform, message_id, replacement, updated_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (platform, message_id) DO UPDATE SET"
    " replacement = excluded.replacement, updated_at = excluded.updated_at"
)


class MessageReplacementRows:
    """Repository for `message_replacements`; written at once, so any replica reads it."""

    def __init__(self, db: StoreBackend, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.clock = clock
        self._pruned_at = 0.0

    async def save(self, platform: str, message_id: str, copy: Mapping[str, Any]) -> None:
        """From now on edits of the message go to `copy` (a message ref as JSON; the latest
        copy wins)."""
        now = self.clock()
        raw = json.dumps(dict(copy), sort_keys=True)
        async with self._db.write() as tx:
            await tx.execute(_UPSERT, (platform, message_id, raw, now))
            if now - self._pruned_at >= PRUNE_INTERVAL_S:
                self._pruned_at = now
                await tx.execute(
                    "DELETE FROM message_replacements WHERE updated_at < ?", (now - KEEP_S,)
                )

    async def get(self, platform: str, message_id: str) -> dict[str, Any] | None:
        """The copy now standing in for the message (its ref as JSON), or None."""
        async with self._db.read() as tx:
            row = await tx.fetchone(
                "SELECT replacement FROM message_replacements"
                " WHERE platform = ? AND message_id = ?",
                (platform, message_id),
            )
        if row is None:
            return None
        try:
            value = json.loads(row["replacement"])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
