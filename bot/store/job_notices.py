"""Cross-replica job notices: a job cancelled on one replica is stopped at once by its holder.

On PostgreSQL every write that moves a job row to 'cancelled' also sends a NOTIFY on
`tokenbot_jobs` (delivered when that transaction commits, and only then); each replica LISTENs
and hands the job id to its subscribers (the job runner), which stop their task for it. A
notice can be lost (the listening connection dropped), so the lease keeper's renewal round also
reads the statuses of the jobs it holds: the notice makes the stop prompt, the round makes it
certain. SQLite (one file, one process per data dir) sends and receives nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from bot.store.backend import StoreBackend, Tx

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "tokenbot_jobs"
# How long to wait before listening again after the listening connection was lost.
RELISTEN_DELAYS_S = (0.5, 1.0, 2.0, 5.0)

# Called with the id of a job another replica cancelled; runs on the event loop, must not block.
CancelledHandler = Callable[[str], None]


class JobNotices:
    """Sends (inside the cancelling transaction) and receives 'job cancelled' notices."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db
        self._enabled = db.dialect.name == "postgresql"
        # Our own notices are not for us: the replica that cancelled stops its own task itself.
        self._sender = uuid.uuid4().hex
        self._handlers: list[CancelledHandler] = []
        self._listener: Any | None = None  # the pooled connection that LISTENs
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def listening(self) -> bool:
        """Whether notices are being received now (never on SQLite)."""
        return self._listener is not None

    def subscribe(self, handler: CancelledHandler) -> None:
        """Call `handler(job_id)` for every job another replica cancels (once per handler)."""
        if handler not in self._handlers:
            self._handlers.append(handler)

    def unsubscribe(self, handler: CancelledHandler) -> None:
        """Stop calling `handler`."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    async def cancelled(self, conn: Tx, job_id: str) -> None:
        """Within the transaction that cancels `job_id`: tell the other replicas at commit."""
        if not self._enabled:
            return
        payload = json.dumps({"from": self._sender, "job": job_id})
        await conn.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    async def listen(self) -> None:
        """PostgreSQL: receive other replicas' notices on a connection of the pool; else nothing."""
        if not self._enabled or self._listener is not None:
            return
        pool = getattr(self._db, "pool")  # noqa: B009 - PostgresDatabase only
        conn = await pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notice)
        except BaseException:
            await pool.release(conn)
            raise
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    async def stop_listening(self) -> None:
        """Stop receiving notices and give the connection back (before the pool closes)."""
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relisten
            self._relisten = None
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._on_lost)
            await conn.remove_listener(NOTIFY_CHANNEL, self._on_notice)
        with contextlib.suppress(Exception):
            await getattr(self._db, "pool").release(conn)  # noqa: B009

    def _on_notice(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = json.loads(payload)
            job_id = str(notice["job"])
            sender = notice.get("from")
        except (ValueError, KeyError, TypeError, AttributeError):
            # The renewal round still finds the cancelled row: nothing is lost by ignoring it.
            log.warning("ignored a malformed job notice")
            return
        if sender == self._sender:
            return
        for handler in list(self._handlers):
            try:
                handler(job_id)
            except Exception:
                log.exception("a job notice handler failed for job %s", job_id)

    def _on_lost(self, conn: Any) -> None:
        self._listener = None
        if self._closing:
            return
        # Notices sent meanwhile are lost; the lease keeper's rounds stop those jobs instead.
        log.warning("lost the job-notice listener; cancelled jobs stop at the next lease round")
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.get_running_loop().create_task(
                self._listen_again(conn), name="job-notice-relisten"
            )

    async def _listen_again(self, lost: Any) -> None:
        # The dead connection goes back to the pool, which replaces it (else its slot leaks).
        with contextlib.suppress(Exception):
            await getattr(self._db, "pool").release(lost)  # noqa: B009
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RELISTEN_DELAYS_S[min(attempt, len(RELISTEN_DELAYS_S) - 1)])
            attempt += 1
            try:
                await self.listen()
            except Exception as exc:  # the database may still be away: try again later
                log.debug("job-notice listener not back yet: %s", exc)
                continue
            log.info("job-notice listener is back")
            return
