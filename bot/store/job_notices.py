"""Cross-replica job notices: a job cancelled on one replica is stopped at once by its holder.

On PostgreSQL every write that moves a job row to 'cancelled' also sends a NOTIFY on
`tokenbot_jobs` (delivered when that transaction commits, and only then); each replica LISTENs
and hands the job id to its subscribers (the job runner), which stop their task for it. A
notice can be lost (the listening connection dropped), so the lease keeper's renewal round also
reads the statuses of the jobs it holds: the notice makes the stop prompt, the round makes it
certain. SQLite (one file, one process per data dir) sends and receives nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable

from bot.store.backend import StoreBackend, Tx
from bot.store.notice_listener import NoticeListener, NoticeSubscriber

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "tokenbot_jobs"

# Called with the id of a job another replica cancelled; runs on the event loop, must not block.
CancelledHandler = Callable[[str], None]


class JobNotices:
    """Sends (inside the cancelling transaction) and receives 'job cancelled' notices."""

    def __init__(self, db: StoreBackend, listener: NoticeListener | None = None) -> None:
        self._db = db
        self._enabled = db.dialect.name == "postgresql"
        # Our own notices are not for us: the replica that cancelled stops its own task itself.
        self._sender = uuid.uuid4().hex
        self._handlers: list[CancelledHandler] = []
        # The store's one LISTEN connection (a private one when used alone, as in tests).
        self._listener = listener if listener is not None else NoticeListener(db)
        self._listener.register(
            NOTIFY_CHANNEL,
            NoticeSubscriber(on_notice=self._on_notice, on_lost=self._on_lost, on_back=_nothing),
        )

    @property
    def listening(self) -> bool:
        """Whether notices are being received now (never on SQLite)."""
        return self._listener.listening(NOTIFY_CHANNEL)

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
        """PostgreSQL: receive other replicas' notices on the store's listener; else nothing."""
        await self._listener.listen(NOTIFY_CHANNEL)

    async def stop_listening(self) -> None:
        """Stop receiving notices (the store's listener stays for other channels)."""
        await self._listener.unlisten(NOTIFY_CHANNEL)

    def _on_notice(self, payload: str) -> None:
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

    def _on_lost(self) -> None:
        # Notices sent meanwhile are lost; the lease keeper's rounds stop those jobs instead.
        log.warning("lost the job-notice listener; cancelled jobs stop at the next lease round")


def _nothing() -> None:
    """Nothing to forget when the listener is back: a missed notice is caught by the lease round."""
