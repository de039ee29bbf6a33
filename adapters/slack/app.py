"""The AsyncApp: every Slack request is acked at once; the work continues in a supervised task.

Listeners: every slash command of the bot's families, app_mention and message events, block
actions (buttons) and modal submissions; the assistant thread (`adapters.slack.assistant`,
bolt's AsyncAssistant middleware) and the Home tab (`adapters.slack.app_home`). A global
middleware drops repeated deliveries of an event (Slack retries with X-Slack-Retry-Num when
an ack was slow or lost).

Every listener and every piece of work after an ack is guarded: an exception that escapes is
logged with a short ref and the person gets "something went wrong (ref …)" privately; bolt
never sees it (it would answer Slack with HTTP 500).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from adapters.slack import claims
from adapters.slack import inbound as mapping
from adapters.slack.app_home import AppHome, attach_app_home
from adapters.slack.assistant import build_assistant
from adapters.slack.errors import error_code
from adapters.slack.guard import log_crash, route_of, tell
from adapters.slack.limits import SeenAnywhere
from adapters.slack.modals import FORM_CALLBACK, decode_metadata, submitted_values
from adapters.slack.mrkdwn import escape
from adapters.slack.platform import SlackPlatform, build_client
from adapters.slack.render import LINK_ACTION
from bot.core.key_shapes import find_keys

log = logging.getLogger(__name__)


class SlackHandlers:
    """What each listener does after its ack."""

    def __init__(self, platform: SlackPlatform) -> None:
        self.platform = platform
        self.bot = platform.bot

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str,
        body: dict[str, Any],
        *,
        secrets_inside: bool = False,
    ) -> None:
        """Run after the ack, guarded: whatever escapes is answered with a ref."""
        checks = claims.pending_claims()
        self.platform.supervisor.spawn(
            self.guarded(coro, name, body, secrets_inside=secrets_inside, checks=checks), name
        )

    async def guarded(
        self,
        work: Coroutine[Any, Any, Any],
        what: str,
        body: dict[str, Any],
        *,
        secrets_inside: bool = False,
        checks: tuple[claims.Claim, ...] = (),
    ) -> None:
        """Await `work` (unless `checks` say another replica took this delivery); an exception
        becomes a logged ref and a private reply with it."""
        try:
            first = await claims.all_first(checks)
        except BaseException:
            work.close()
            raise
        if not first:
            work.close()
            log.info("dropped %s: another replica already took this delivery", what)
            return
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ref = log_crash(what, exc, secrets_inside=secrets_inside)
            await tell(self.platform, route_of(body), ref)

    def crashed(
        self, what: str, body: Any, exc: Exception, *, secrets_inside: bool = False
    ) -> None:
        """A listener itself failed (before or after its ack): log and reply in the background."""
        ref = log_crash(what, exc, secrets_inside=secrets_inside)
        self.platform.supervisor.spawn(tell(self.platform, route_of(body), ref), f"{what} ref")

    async def command(self, body: dict[str, Any]) -> None:
        """A slash command."""
        inbound, extras = mapping.command_inbound(body)
        conversation = self.platform.conversation_for(inbound.destination(**extras))
        # What is not a command is answered by the core, in the same words everywhere.
        await self.bot.handle(inbound, conversation)

    async def message(self, event: dict[str, Any], team: str, addressed: bool) -> None:
        """A mention, a DM or a channel message."""
        identity = self.platform.identity
        inbound, extras = mapping.message_inbound(event, team, identity)
        if mapping.is_thread_reply(event) and (
            addressed
            or self.platform.thread_answered(inbound.channel, inbound.thread or "") is not False
        ):
            thread = await mapping.thread_context(self.platform.client, identity, inbound)
            self.platform.note_checked(inbound.channel, inbound.thread or "", thread.bot_present)
            inbound = inbound.model_copy(
                update={"history": thread.history, "continues_thread": thread.answered_author}
            )
        conversation = self.platform.conversation_for(inbound.destination(**extras))
        await self.bot.handle(inbound.model_copy(update={"addressed": addressed}), conversation)

    async def action(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A button click routed to the core."""
        inbound, extras = mapping.action_inbound(body)
        if not inbound.channel:
            # A click outside a channel (e.g. a modal): answer in the person's DM.
            channel = await self.platform.dm_channel(inbound.user)
            inbound = inbound.model_copy(update={"channel": channel, "is_direct": True})
        conversation = self.platform.conversation_for(inbound.destination(**extras))
        await self.bot.handle_action(
            inbound,
            str(action.get("action_id") or ""),
            str(action.get("value") or ""),
            conversation,
        )

    async def form(
        self, body: dict[str, Any], meta: dict[str, Any], values: dict[str, str]
    ) -> None:
        """A submitted private form (the values are secrets: never logged)."""
        inbound, extras = mapping.form_inbound(body, meta)
        if not inbound.channel:
            channel = await self.platform.dm_channel(inbound.user)
            inbound = inbound.model_copy(update={"channel": channel, "is_direct": True})
        conversation = self.platform.conversation_for(inbound.destination(**extras))
        await self.bot.submit_form(inbound, str(meta["form"]), values, conversation)
        # The Home tab shows whether each key is set, and a form is how a key gets set: the
        # page is republished now, not only when the person next opens it.
        try:
            await AppHome(self).publish(inbound.user, inbound.workspace)
        except Exception as exc:
            log.info("could not refresh the Home tab after a form: %s", error_code(exc))


class DropRepeats(AsyncMiddleware):
    """Answers a repeated Events API delivery (same event_id) with a bare 200 and no work.

    A class, not a function middleware: bolt builds a function middleware's arguments on
    every request, and every slash command passes through here.
    """

    def __init__(self, events: SeenAnywhere) -> None:
        self.events = events

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        body = req.body
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return await next()
        # Memory answers now; the store's answer (other replicas) gates the spawned work.
        first = self.events.claim(str(event_id))
        if first is False:
            retry = req.headers.get("x-slack-retry-num", [""])
            log.info(
                "dropped a repeated delivery of %s (retry %s)", event_id, retry[0] if retry else ""
            )
            return BoltResponse(status=200, body="")
        with claims.pending(first):
            return await next()


def build_app(platform: SlackPlatform, signing_secret: str | None) -> AsyncApp:
    """The bolt app, wired to the platform's handlers."""
    identity = platform.identity
    handlers = SlackHandlers(platform)

    async def authorize(**_: Any) -> AuthorizeResult:
        # Identity comes from the auth.test made at start-up: no auth.test per request.
        return AuthorizeResult(
            enterprise_id=None,
            team_id=identity.team_id,
            bot_token=platform.client.token,
            bot_user_id=identity.bot_user_id,
            bot_id=identity.bot_id,
        )

    # Bolt gets a token-less client (it only needs one for Socket Mode's apps.connections.open,
    # which passes the app token explicitly); our calls use the platform's client.
    app = AsyncApp(
        name="tokenbot",
        client=build_client(None, platform.client.base_url, platform.session),
        signing_secret=signing_secret or "",
        # With a secret, HTTP mode's RequestCheck (adapters/slack/requests.py) has verified the
        # signature, its window and replays on the raw bytes before bolt sees a request; bolt
        # checking it again was one more HMAC per request on the ack path.
        request_verification_enabled=not signing_secret,
        authorize=authorize,
        # Listeners only ack and spawn: answering after they return is both fast and safe.
        process_before_response=True,
    )

    app.use(DropRepeats(platform.events))

    def has_keys(text: Any) -> bool:
        return isinstance(text, str) and bool(find_keys(text))

    known_commands = frozenset(platform.bot.slash_commands)

    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        command = str(body.get("command"))
        if command not in known_commands:
            # A command the manifest declares but this build has no family for (Slack would
            # otherwise show the person "dispatch_failed").
            try:
                await ack(
                    response_type="ephemeral",
                    text=f"`{escape(command)}` isn't available in this tokenbot. "
                    "Try `/alltoken-help`.",
                )
            except Exception as exc:
                handlers.crashed("slack unknown command", body, exc)
            return
        what = f"slack {command}"
        secret = has_keys(body.get("text"))
        try:
            await ack()
            handlers.spawn(handlers.command(body), what, body, secrets_inside=secret)
        except Exception as exc:
            handlers.crashed(what, body, exc, secrets_inside=secret)

    # Listener order is bolt's matching order, and each listener tried builds its arguments:
    # every slash command goes to one listener, tried first (nothing else matches a command).
    app.command(re.compile(r"^/.+"))(on_command)
    # Before the generic listeners: the assistant thread's events and messages, the Home tab
    # and its key buttons (bolt runs the first listener that matches).
    app.assistant(build_assistant(handlers))
    attach_app_home(app, handlers)

    def team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
        return str(body.get("team_id") or event.get("team") or identity.team_id)

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any]) -> None:
        secret = has_keys(event.get("text"))
        try:
            if not mapping.is_user_post(event, identity):
                return
            first = platform.messages.claim(f"{event.get('channel')}:{event.get('ts')}")
            if first is not False:
                with claims.pending(first):
                    work = handlers.message(event, team_of(body, event), True)
                    handlers.spawn(work, "slack mention", body, secrets_inside=secret)
        except Exception as exc:
            handlers.crashed("slack mention", body, exc, secrets_inside=secret)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        secret = has_keys(event.get("text"))
        try:
            if not mapping.is_user_post(event, identity):
                return
            direct = event.get("channel_type") == "im"
            if not direct and mapping.mentions_bot(event, identity):
                return  # the app_mention event for the same message handles it
            first = platform.messages.claim(f"{event.get('channel')}:{event.get('ts')}")
            if first is not False:
                with claims.pending(first):
                    work = handlers.message(event, team_of(body, event), direct)
                    handlers.spawn(work, "slack message", body, secrets_inside=secret)
        except Exception as exc:
            handlers.crashed("slack message", body, exc, secrets_inside=secret)

    @app.action(re.compile(".+"))
    async def on_action(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        what = f"slack action {action.get('action_id')}"
        try:
            await ack()
            if action.get("url") or action.get("action_id") == LINK_ACTION:
                return  # a link button: Slack opened the URL, nothing to do
            handlers.spawn(handlers.action(body, action), what, body)
        except Exception as exc:
            handlers.crashed(what, body, exc)

    @app.view(FORM_CALLBACK)
    async def on_form(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        # The submitted values are secrets: an error's message is never logged.
        try:
            await ack()  # closes the modal; the outcome is sent privately
            meta = decode_metadata(str(view.get("private_metadata") or ""))
            if not meta:
                log.warning("a form submission without tokenbot metadata")
                return
            work = handlers.form(body, meta, submitted_values(view))
            handlers.spawn(work, "slack form", body, secrets_inside=True)
        except Exception as exc:
            handlers.crashed("slack form", body, exc, secrets_inside=True)

    return app
