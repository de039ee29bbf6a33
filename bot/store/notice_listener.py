"""One LISTEN connection per store for every change-notice channel (PostgreSQL).

Repositories that cache (credentials, policy) or react to other replicas (job cancels) each
listen on a channel of their own. They share one pooled connection, not one each: a pool of
ten minus one listener per repository would leave little for the work. When that connection is
lost every subscriber hears `on_lost` (notices sent meanwhile are gone: stop trusting caches),
and once it is back, `on_back` (forget what was cached meanwhile, trust notices again).
SQLite (one file, one process) sends and receives nothing.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import uuid
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


class CoherentCache(abc.ABC):
    """A repository's cache kept in step with other replicas by notices on one channel.

    Used always on SQLite (one process) and on PostgreSQL only while notices are being
    received: a lost listener could have missed some. Subclasses read `_coherent` before using
    their cache and bump `_generation` in `forget_cached`, so a read that raced a notice does
    not cache what it read; they parse notices in `_on_notice`.
    """

    _what = "cached values"  # for the log line when the listener is lost

    def __init__(self, db: StoreBackend, listener: NoticeListener | None, channel: str) -> None:
        self._db = db
        self._channel = channel
        self._coherent = db.dialect.name != "postgresql"
        self._generation = 0
        self._sender = uuid.uuid4().hex  # our own notices need not forget our own cache
        # The store's one LISTEN connection (a private one when used alone, as in tests).
        self._listener = listener if listener is not None else NoticeListener(db)
        self._listener.register(
            channel,
            NoticeSubscriber(
                on_notice=self._on_notice, on_lost=self._on_lost, on_back=self._on_back
            ),
        )

    @property
    def caching(self) -> bool:
        """Whether the cache is used (False on PostgreSQL while not listening)."""
        return self._coherent

    @abc.abstractmethod
    def forget_cached(self) -> None:
        """Drop every cached value (subclasses may take arguments to drop fewer)."""

    async def listen(self) -> None:
        """PostgreSQL: receive other replicas' changes on the store's listener; else nothing."""
        await self._listener.listen(self._channel)

    async def stop_listening(self) -> None:
        """Stop receiving notices, and so stop caching on PostgreSQL."""
        self._coherent = self._db.dialect.name != "postgresql"
        await self._listener.unlisten(self._channel)

    @abc.abstractmethod
    def _on_notice(self, payload: str) -> None:
        """Forget what one notice (another replica's change) makes stale."""

    def _on_back(self) -> None:
        # Anything cached before now may have missed a notice.
        self.forget_cached()
        self._coherent = True

    def _on_lost(self) -> None:
        # Notices sent meanwhile are lost: stop caching until listening again.
        self._coherent = False
        self.forget_cached()
        log.warning("lost the %s listener; reading them uncached until it is back", self._what)
