"""Usage, audit and last-call rows written in batches, and kept (bounded) while writes fail.

Shared by every backend: a backend provides `write()` (a transaction) and `_is_open()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from bot.store.backend import StoreError, StoreHealth, Tx

log = logging.getLogger("bot.store.db")  # the name operators' log filters already know
# Usage, audit and last-call rows kept in memory while the store cannot write them (disk
# full, read-only file system, database unreachable); beyond this the oldest are dropped.
DEFAULT_MAX_QUEUED_ROWS = 10_000
# How long a failing store waits before it tries the queued rows again on its own.
RETRY_INTERVAL_S = 5.0


class QueuedAppends(ABC):
    """Batched appends with retry; the base of every backend."""

    location: str

    def __init__(self) -> None:
        # Each entry is a unit: statements written in one transaction, kept or dropped together.
        self._pending: list[tuple[tuple[str, Sequence[object]], ...]] = []
        self._submitted = 0
        # Every row submitted before this index is written (or was dropped, and counted).
        self._committed = 0
        # Failed batch attempts so far: a flush() waiting on one is released by its failure.
        self._failures = 0
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self.max_queued_rows = DEFAULT_MAX_QUEUED_ROWS
        self.retry_interval_s = RETRY_INTERVAL_S
        self.dropped_rows = 0
        self._write_error: str | None = None
        self._episode_dropped = 0

    @abstractmethod
    def _is_open(self) -> bool:
        """Whether the connection (or pool) is still open."""

    @abstractmethod
    def write(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A write transaction."""

    async def _close_queue(self) -> None:
        """Stop retrying, try the queued rows once more, and count what is still unwritten."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._is_open() and (self._pending or (self._writer and not self._writer.done())):
            await self.flush()
        if self._pending:
            lost = len(self._pending)
            self.dropped_rows += lost
            self._pending = []
            log.error(
                "closing the store with %d usage/audit rows it could not write (%s); they are lost",
                lost,
                self._write_error,
            )

    def health(self) -> StoreHealth:
        """Queued and dropped appends, and the error while writes are failing."""
        return StoreHealth(
            degraded=self._write_error is not None,
            queued_rows=len(self._pending),
            dropped_rows=self.dropped_rows,
            error=self._write_error,
        )

    def append(self, sql: str, params: Sequence[object]) -> None:
        """Queue an append or upsert (usage, last call, audit) for the next batch.

        Every command writes three or four such rows; one transaction per batch, with one
        executemany per statement, instead of three round trips per row (with 500
        concurrent chats that was a third of the bot's CPU). Reads of those tables call
        `flush()` first, so callers still read their own writes. While the store cannot
        write, rows stay queued (at most `max_queued_rows`) and are retried.
        """
        self.append_unit(((sql, params),))

    def append_unit(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """Queue statements to be written in one transaction together, or kept or dropped together."""
        if not self._is_open():
            raise StoreError("the store is closed")
        self._pending.append(tuple(statements))
        self._submitted += 1
        if self._write_error is None:
            self._kick()
        else:
            self._trim()  # a retry is scheduled; keep memory bounded meanwhile

    async def flush(self) -> None:
        """Try to write everything queued so far; returns once that attempt has ended.

        When the store is failing, the rows stay queued (see `health()`) instead of being lost.
        """
        if not self._is_open():
            return
        target, failures = self._submitted, self._failures
        if self._committed >= target:
            return
        self._kick()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._committed >= target or self._failures > failures
            )

    def _kick(self) -> None:
        if self._is_open() and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_batches(), name="store-append-writer")

    def _trim(self) -> None:
        excess = len(self._pending) - max(self.max_queued_rows, 0)
        if excess > 0:
            # The oldest go first: the newest rows describe what users are doing now.
            del self._pending[:excess]
            self.dropped_rows += excess
            self._episode_dropped += excess

    async def _write_batches(self) -> None:
        while self._pending and self._is_open():
            batch, self._pending = self._pending, []
            upto = self._submitted
            grouped: dict[str, list[Sequence[object]]] = {}
            for unit in batch:
                for sql, params in unit:
                    grouped.setdefault(sql, []).append(params)
            try:
                await self._write_rows(grouped)
            except Exception as exc:
                self._pending = batch + self._pending
                self._trim()
                self._failed(exc)
                async with self._progress:
                    self._failures += 1
                    self._progress.notify_all()
                return
            self._recovered(len(batch))
            async with self._progress:
                self._committed = max(self._committed, upto)
                self._progress.notify_all()

    async def _write_rows(self, grouped: Mapping[str, Sequence[Sequence[object]]]) -> None:
        """One batch in one transaction: every statement's rows, or none of them (a backend
        may do it in fewer round trips)."""
        async with self.write() as tx:
            for sql, rows in grouped.items():
                await tx.executemany(sql, rows)

    def _failed(self, exc: Exception) -> None:
        if self._write_error is None:
            # Once per episode, not once per row or retry.
            log.error(
                "store writes to %s are failing (%s): keeping usage/audit rows in memory "
                "(up to %d) and retrying every %g s",
                self.location,
                exc,
                self.max_queued_rows,
                self.retry_interval_s,
            )
        self._write_error = f"{type(exc).__name__}: {exc}"
        if self._retry is None and self._is_open():
            self._retry = asyncio.get_running_loop().call_later(
                self.retry_interval_s, self._retry_now
            )

    def _retry_now(self) -> None:
        self._retry = None
        self._kick()

    def _recovered(self, written: int) -> None:
        if self._write_error is None:
            return
        log.warning(
            "store writes to %s work again: %d queued rows written, %d dropped meanwhile",
            self.location,
            written,
            self._episode_dropped,
        )
        self._write_error = None
        self._episode_dropped = 0
