"""What a conversation continues: the family it used last, and what a thread's plain replies run.

Rows of `conversations`, keyed by conversation key, so both survive a restart and reach every
replica. A thread's continuation is stored in a serialisable form (family, command, model);
the family rebuilds the parser from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from bot.store.backend import StoreBackend

# A conversation nobody wrote in for this long is forgotten (its thread then continues as the
# owning family's default). Long enough for any thread people still reply in.
KEEP_S = 90 * 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0
# Bound on the keys remembered as possibly still queued (see `_unflushed`).
_UNFLUSHED_KEYS = 50_000


class ThreadNote(BaseModel):
    """A thread continuation in serialisable form: which family's command, with which model."""

    model_config = ConfigDict(frozen=True)

    family: str
    command: str
    model: str | None = None


class ConversationRecord(BaseModel):
    """One conversation's stored state."""

    model_config = ConfigDict(frozen=True)

    conversation_key: str
    recent_family: str | None = None
    thread: ThreadNote | None = None


class ConversationRows:
    """Repository for the `conversations` table; writes go through the batched append queue."""

    def __init__(self, db: StoreBackend, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.clock = clock
        self._pruned_at = 0.0
        # Keys this process noted that may still wait in the append queue: a read of one of
        # them flushes first (read your own writes); a read of any other need not wait.
        self._unflushed: set[str] = set()

    def note_family(self, conversation_key: str, family: str) -> None:
        """Queue: this conversation just ran a command of `family`."""
        self._db.append(
            "INSERT INTO conversations (conversation_key, recent_family, updated_at)"
            " VALUES (?, ?, ?) ON CONFLICT (conversation_key) DO UPDATE SET"
            " recent_family = excluded.recent_family, updated_at = excluded.updated_at",
            (conversation_key, family, self.clock()),
        )
        self._note_unflushed(conversation_key)
        self._maybe_prune()

    def note_thread(self, conversation_key: str, note: ThreadNote) -> None:
        """Queue: plain replies in this thread continue `note`."""
        self._db.append(
            "INSERT INTO conversations (conversation_key, thread_family, thread_command,"
            " thread_model, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (conversation_key) DO UPDATE SET"
            " thread_family = excluded.thread_family, thread_command = excluded.thread_command,"
            " thread_model = excluded.thread_model, updated_at = excluded.updated_at",
            (conversation_key, note.family, note.command, note.model, self.clock()),
        )
        self._note_unflushed(conversation_key)

    def _note_unflushed(self, conversation_key: str) -> None:
        if len(self._unflushed) >= _UNFLUSHED_KEYS and self._db.health().queued_rows == 0:
            self._unflushed.clear()  # all written: only keys noted from now on may wait
        self._unflushed.add(conversation_key)

    async def get(self, conversation_key: str) -> ConversationRecord | None:
        """The stored state of one conversation (this process's queued writes included)."""
        if conversation_key in self._unflushed:
            await self._db.flush()  # read our own queued appends
            self._unflushed.discard(conversation_key)
        async with self._db.read() as tx:
            row = await tx.fetchone(
                "SELECT recent_family, thread_family, thread_command, thread_model"
                " FROM conversations WHERE conversation_key = ?",
                (conversation_key,),
            )
        if row is None:
            return None
        thread = None
        if row["thread_family"] and row["thread_command"]:
            thread = ThreadNote(
                family=row["thread_family"],
                command=row["thread_command"],
                model=row["thread_model"],
            )
        return ConversationRecord(
            conversation_key=conversation_key, recent_family=row["recent_family"], thread=thread
        )

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now - self._pruned_at < PRUNE_INTERVAL_S:
            return
        self._pruned_at = now
        self._db.append("DELETE FROM conversations WHERE updated_at < ?", (now - KEEP_S,))
