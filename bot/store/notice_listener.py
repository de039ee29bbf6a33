"""One LISTEN connection per store for every change-notice channel (PostgreSQL).

Repositories that cache (credentials, policy) or react to other replicas (job cancels) each
listen on a channel of their own. They share one pooled connection, not one each: a pool of
ten minus one listener per repository would leave little for the work. When that connection is
lost every subscriber hears `on_lost` (notices sent meanwhile are gone: stop trusting caches),
and once it is back, `on_back` (forget what was cached meanwhile, trust notices again).
SQLite (one file, one process) sends and receives nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.store.backend import StoreBackend

log = logging.getLogger(__name__)

# How long to wait before listening again after the listening connection was lost.
RELISTEN_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class NoticeSubscriber:
    """What one repository does with its channel's notices, on a lost listener and once back.

    The callbacks run on the event loop and must not block.
    """

    on_notice: Callable[[str], None]
    on_lost: Callable[[], None]
    on_back: Callable[[], None]


class NoticeListener:
    """The store's one LISTEN connection, shared by every channel that wants notices."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db
        self.enabled = db.dialect.name == "postgresql"
        self._subscribers: dict[str, NoticeSubscriber] = {}
        self._wanted: set[str] = set()  # channels asked for with listen()
        self._active: set[str] = set()  # channels LISTENed on the live connection
        self._conn: Any | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = asyncio.Lock()

    def register(self, channel: str, subscriber: NoticeSubscriber) -> None:
        """Route `channel`'s notices to `subscriber` (once listen(channel) is called)."""
        self._subscribers[channel] = subscriber

    def listening(self, channel: str) -> bool:
        """Whether `channel`'s notices are being received now (never on SQLite)."""
        return self._conn is not None and channel in self._active

    async def listen(self, channel: str) -> None:
        """PostgreSQL: receive `channel`'s notices (connecting if need be); else nothing."""
        if not self.enabled:
            return
        self._wanted.add(channel)
        async with self._lock:
            conn = await self._connection()
            if channel not in self._active:
                await conn.add_listener(channel, self._dispatch)
                self._active.add(channel)
        self._subscribers[channel].on_back()

    async def unlisten(self, channel: str) -> None:
        """Stop receiving `channel`'s notices (the connection stays for the others)."""
        self._wanted.discard(channel)
        async with self._lock:
            conn = self._conn
            if conn is not None and channel in self._active:
                self._active.discard(channel)
                with contextlib.suppress(Exception):
                    await conn.remove_listener(channel, self._dispatch)
            if not self._wanted:
                await self._release()

    async def close(self) -> None:
        """Stop every channel and give the connection back (before the pool closes)."""
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relisten
            self._relisten = None
        for channel in list(self._wanted):
            await self.unlisten(channel)
        async with self._lock:
            await self._release()

    async def _connection(self) -> Any:
        if self._conn is None:
            pool = getattr(self._db, "pool")  # noqa: B009 - PostgresDatabase only
            conn = await pool.acquire()
            conn.add_termination_listener(self._on_lost)
            self._conn = conn
            self._active.clear()
        return self._conn

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._active.clear()
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._on_lost)
            for channel in list(self._subscribers):
                await conn.remove_listener(channel, self._dispatch)
        with contextlib.suppress(Exception):
            await getattr(self._db, "pool").release(conn)  # noqa: B009

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        subscriber = self._subscribers.get(channel)
        if subscriber is None:
            return
        try:
            subscriber.on_notice(payload)
        except Exception:
            log.exception("a %s notice could not be handled", channel)

    def _on_lost(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._active.clear()
        for channel in self._wanted:
            self._subscribers[channel].on_lost()
        if self._closing:
            return
        log.warning("lost the change-notice listener (%s); listening again", sorted(self._wanted))
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.get_running_loop().create_task(
                self._listen_again(conn), name="store-notice-relisten"
            )

    async def _listen_again(self, lost: Any) -> None:
        # The dead connection goes back to the pool, which replaces it (else its slot leaks).
        with contextlib.suppress(Exception):
            await getattr(self._db, "pool").release(lost)  # noqa: B009
        attempt = 0
        while not self._closing and self._wanted:
            await asyncio.sleep(RELISTEN_DELAYS_S[min(attempt, len(RELISTEN_DELAYS_S) - 1)])
            attempt += 1
            try:
                for channel in sorted(self._wanted):
                    await self.listen(channel)
            except Exception as exc:  # the database may still be away: try again later
                log.debug("change-notice listener not back yet: %s", exc)
                async with self._lock:
                    await self._release()
                continue
            log.info("change-notice listener is back (%s)", sorted(self._wanted))
            return
