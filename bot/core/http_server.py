"""tokenbot's own HTTP server: /healthz, /readyz, /metrics (and Slack's /slack/events in HTTP mode).

One aiohttp application on TOKENBOT_HTTP_PORT; adapters that need HTTP routes add them to
`server.app` before `start()`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from bot.core.metrics import PROMETHEUS_CONTENT_TYPE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bot.core.metrics import Metrics
    from bot.store import Store
log = logging.getLogger(__name__)

# How long a response waits for the rest of a body it did not read (a refused 10 MB upload):
# aiohttp's default of 10 s lets a hostile client hold a connection, and a shutdown wait, that
# long; a client still sending after 2 s gets the connection closed.
LINGERING_S = 2.0
# Slack opens a connection per request: a deep accept queue keeps a burst of slash commands
# from overflowing it (an overflow costs each client a 1 s SYN retry; the kernel caps this at
# net.core.somaxconn).
LISTEN_BACKLOG = 2048
# Longest a readiness check may take: an unreachable database (a PostgreSQL server that is
# down, or a network that drops packets) answers "not ready" after this, never hangs the probe.
READY_TIMEOUT_S = 2.0


class ServedBot(Protocol):
    """What the health and metrics endpoints read from the bot."""

    store: Store
    metrics: Metrics
    readiness: dict[str, Callable[[], Awaitable[bool]]]


class HttpServer:
    """The health, readiness and metrics endpoints, plus whatever routes adapters add."""

    def __init__(self, bot: ServedBot) -> None:
        self.bot = bot
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/metrics", self.metrics)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        # Probes come every few seconds: an outage of the store is logged when it starts and
        # when it ends, not at every probe.
        self._store_down = False

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the event loop answers."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: the store answers and every platform connection is up."""
        checks: dict[str, bool] = {"store": await self._store_answers()}
        for name, check in self.bot.readiness.items():
            try:
                checks[name] = bool(await asyncio.wait_for(check(), READY_TIMEOUT_S))
            except Exception:
                checks[name] = False
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _store_answers(self) -> bool:
        """Whether the store answers a read within READY_TIMEOUT_S (logged once per outage)."""
        try:
            await asyncio.wait_for(self.bot.store.schema_version(), READY_TIMEOUT_S)
        except Exception as exc:
            if not self._store_down:
                self._store_down = True
                reason = " ".join(str(exc).split())[:300] or "no answer"
                log.error(
                    "readiness: the store %s does not answer (%s: %s); /readyz fails until it does",
                    self.bot.store.location,
                    type(exc).__name__,
                    reason,
                )
            return False
        if self._store_down:
            self._store_down = False
            log.warning("readiness: the store %s answers again", self.bot.store.location)
        return True

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text exposition."""
        body = self.bot.metrics.exposition()
        content_type, _, params = PROMETHEUS_CONTENT_TYPE.partition(";")
        charset = "utf-8" if "charset" in params else None
        return web.Response(body=body, content_type=content_type, charset=charset)

    async def start(self, host: str, port: int) -> int:
        """Listen (port 0 = any free port); returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None, lingering_time=LINGERING_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def aclose(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
