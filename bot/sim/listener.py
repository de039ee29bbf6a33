"""Serving a simulator's aiohttp app on loopback: one way for all three simulators."""

from __future__ import annotations

from aiohttp import web


class Listener:
    """An aiohttp application served on host:port, with its base URL."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL without trailing slash."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        # A deep backlog so hundreds of clients connecting at once are not dropped.
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (open streams are cut after a short grace period)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
