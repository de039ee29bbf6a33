"""`start_slack(bot, settings)`: connect tokenbot to Slack, in Socket Mode or HTTP mode.

Socket Mode (SLACK_APP_TOKEN set) needs no public URL. HTTP mode serves `/slack/events` on
TOKENBOT_HTTP_HOST:TOKENBOT_HTTP_PORT (under `tokenbot run`, on the bot's HTTP server next to
/healthz and /metrics) and verifies every request with SLACK_SIGNING_SECRET.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import claims
from adapters.slack.app import build_app
from adapters.slack.errors import error_code
from adapters.slack.guard import log_crash
from adapters.slack.platform import SlackIdentity, SlackPlatform, build_client
from adapters.slack.requests import RequestCheck
from adapters.slack.supervisor import AckFirst
from bot.core.http_server import LINGERING_S, LISTEN_BACKLOG
from bot.core.settings import Settings

if TYPE_CHECKING:
    from bot.core.app import TokenBot
    from bot.store.events import SeenEvents
log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class SlackConfigError(RuntimeError):
    """Slack can't be started with these settings (the message says what to fix)."""


class SlackRunner:
    """A running Slack adapter; `aclose()` disconnects and lets in-flight replies finish."""

    def __init__(
        self,
        bot: TokenBot,
        platform: SlackPlatform,
        app: AsyncApp,
        *,
        socket: AsyncSocketModeHandler | None = None,
        site: web.AppRunner | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.bot = bot
        self.platform = platform
        self.app = app
        self.socket = socket
        self._site_runner = site
        self._host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self._port = port
        self.mode = "socket" if socket is not None else "http"

    @property
    def url(self) -> str | None:
        """HTTP mode: where Slack's requests go (…/slack/events), once the server listens."""
        if self.mode != "http":
            return None
        port = self._port
        if port is None and self.bot.web_server is not None:
            port = self.bot.web_server.port
        return f"http://{self._host}:{port}{EVENTS_PATH}" if port is not None else None

    async def ready(self) -> bool:
        """For /readyz: the Socket Mode connection is up (HTTP mode is up while serving)."""
        if self.socket is not None:
            return bool(await self.socket.client.is_connected())
        return True

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until no handler runs (tests and benchmarks)."""
        return await self.platform.supervisor.wait_idle(timeout)

    async def aclose(self) -> None:
        """Stop taking requests, finish or cancel running handlers, close the session."""
        self.bot.readiness.pop("slack", None)
        try:
            if self.socket is not None:
                await self.socket.close_async()
            if self._site_runner is not None:
                await self._site_runner.cleanup()
            await self.platform.aclose()
        finally:
            await self.platform.session.close()


def events_handler(
    app: AsyncApp,
    gate: AckFirst | None = None,
    signing_secret: str | None = None,
    seen: SeenEvents | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of /slack/events: check the request, then bolt dispatches and acks.

    With `signing_secret`, every request is checked before anything reads it as JSON or a
    form (see `adapters.slack.requests`): garbage costs one short log line, never a traceback.
    With `seen` (the store's), a replayed signature is refused whichever replica it reaches.
    """
    check = RequestCheck(signing_secret, seen=seen) if signing_secret else None

    async def handle(request: web.Request) -> web.Response:
        if gate is not None:
            gate.enter()
        try:
            if check is None:
                bolt_request = await to_bolt_request(request)
                return await to_aiohttp_response(await app.async_dispatch(bolt_request))
            verdict = await check.admit(request)
            if isinstance(verdict, web.Response):
                return verdict
            try:
                bolt_request = AsyncBoltRequest(
                    body=verdict.text,
                    query=request.query_string,
                    headers=request.headers,  # type: ignore[arg-type]
                )
                with claims.pending(verdict.first):
                    response = await app.async_dispatch(bolt_request)
                return await to_aiohttp_response(response)
            except Exception as exc:
                # A signed request that bolt itself choked on: Slack must not retry it.
                ref = log_crash("dispatching a Slack request", exc)
                return web.Response(status=200, text="", headers={"X-Tokenbot-Ref": ref})
        finally:
            if gate is not None:
                gate.leave()

    return handle


class _DropNotice(logging.Filter):
    """Drops one known-harmless library warning."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _tame_library_logs() -> None:
    """Keep people's private text out of the logs, and a misleading warning out of sight.

    A slash command's text is private (it may be `/alltoken-key set …`): bolt logs the body of
    a refused request at INFO, and both Slack libraries log payloads at DEBUG.
    """
    logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
    for name in ("slack_bolt", "slack_sdk"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    # Bolt reads SLACK_BOT_TOKEN itself and warns that it is unused because we hand it a
    # client; our client does use that token.
    app_logger = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _DropNotice) for f in app_logger.filters):
        app_logger.addFilter(_DropNotice("`token` will be unused"))


async def _identity(client: AsyncWebClient) -> SlackIdentity:
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        raise SlackConfigError(
            f"Slack refused SLACK_BOT_TOKEN ({error_code(exc)}): copy the Bot User OAuth "
            "Token (xoxb-…) from the app's OAuth & Permissions page."
        ) from None
    return SlackIdentity(
        team_id=str(auth.get("team_id") or ""),
        bot_user_id=str(auth.get("user_id") or ""),
        bot_id=str(auth.get("bot_id") or ""),
    )


async def start_slack(bot: TokenBot, settings: Settings) -> SlackRunner:
    """Connect to Slack and register the platform's conversation factory with the bot."""
    if settings.slack_bot_token is None:
        raise SlackConfigError("SLACK_BOT_TOKEN is not set")
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    )
    if app_token is None and not secret:
        raise SlackConfigError(
            "Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode) for Slack."
        )
    _tame_library_logs()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        client = build_client(
            settings.slack_bot_token.get_secret_value(), settings.slack_api_url, session
        )
        platform = SlackPlatform(bot, client, session, await _identity(client))
        app = build_app(platform, secret)
        bot.register_platform("slack", platform.conversation_for)
        if app_token is not None:
            socket = AsyncSocketModeHandler(app, app_token)
            await socket.connect_async()
            log.info("Slack connected in Socket Mode as %s", platform.identity.bot_user_id)
            runner = SlackRunner(bot, platform, app, socket=socket)
            bot.readiness["slack"] = runner.ready
            return runner
        runner = await _serve_http(bot, platform, app, settings, secret or "")
        bot.readiness["slack"] = runner.ready
        return runner
    except BaseException:
        await session.close()
        raise


async def _serve_http(
    bot: TokenBot, platform: SlackPlatform, app: AsyncApp, settings: Settings, secret: str
) -> SlackRunner:
    """HTTP mode: /slack/events on the bot's own HTTP server, or on a server of our own."""
    handler = events_handler(app, platform.supervisor.gate, secret, bot.store.events)
    if bot.web_server is not None:
        # `tokenbot run` serves health and metrics on TOKENBOT_HTTP_PORT and starts after us.
        bot.web_server.app.router.add_post(EVENTS_PATH, handler)
        log.info("Slack HTTP mode: %s on the bot's HTTP server", EVENTS_PATH)
        return SlackRunner(bot, platform, app, host=settings.http_host)
    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, handler)
    site_runner = web.AppRunner(web_app, access_log=None, lingering_time=LINGERING_S)
    await site_runner.setup()
    # A deep accept queue, as on the bot's own server (bot.core.http_server.LISTEN_BACKLOG).
    site = web.TCPSite(site_runner, settings.http_host, settings.http_port, backlog=LISTEN_BACKLOG)
    try:
        await site.start()
    except BaseException:
        await site_runner.cleanup()
        raise
    port = site_runner.addresses[0][1] if site_runner.addresses else settings.http_port
    log.info("Slack HTTP mode: listening on %s:%s%s", settings.http_host, port, EVENTS_PATH)
    return SlackRunner(bot, platform, app, site=site_runner, host=settings.http_host, port=port)
