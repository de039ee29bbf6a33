"""The last line of defence at every Slack entry point: an error becomes a reply with a ref.

Whatever escapes a handler (a bug, an unexpected exception from the core) is logged with a
short reference and the person is told "something went wrong (ref …)", privately where Slack
allows it (an ephemeral, else the response_url, else a DM). Nothing here may raise: it runs
after something already did.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from adapters.slack.modals import decode_metadata
from adapters.slack.ports import SlackWorkspaces
from bot.core.failures import new_error_ref, unexpected_failure
from bot.core.messages import Destination

__all__ = ["ReplyRoute", "crash_text", "log_crash", "route_of", "tell"]

log = logging.getLogger(__name__)


def crash_text(ref: str) -> str:
    """The reply for an unexpected error: plain mrkdwn with no blocks, so it can't fail too."""
    failure = unexpected_failure(ref)
    return f"❌ *{failure.code}*: {failure.message}\n💡 {failure.hint}"


def log_crash(what: str, exc: BaseException, *, secrets_inside: bool = False) -> str:
    """Log `exc` with a new ref (the one the person is shown); returns the ref.

    `secrets_inside` (form values in play): the frames and the type, not the message, which
    may quote a value.
    """
    ref = new_error_ref()
    if secrets_inside:
        frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
        log.error("slack: %s failed (ref %s): %s\n%s", what, ref, type(exc).__name__, frames)
    else:
        log.error("slack: %s failed (ref %s)", what, ref, exc_info=exc)
    return ref


@dataclass(frozen=True)
class ReplyRoute:
    """Where to tell a person privately: channel (+thread) and user, or the response_url."""

    channel: str = ""
    user: str = ""
    thread: str | None = None
    response_url: str = ""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def route_of(body: Any) -> ReplyRoute:
    """The reply route of any Slack payload (slash command, event, click, form); never raises."""
    body = _dict(body)
    if body.get("type") == "event_callback":
        event = _dict(body.get("event"))
        # assistant_thread_started / _context_changed keep the thread inside "assistant_thread".
        inner = _dict(event.get("assistant_thread"))
        if inner:
            return ReplyRoute(
                _str(inner.get("channel_id")),
                _str(inner.get("user_id")),
                _str(inner.get("thread_ts")) or None,
            )
        thread = _str(event.get("thread_ts")) or _str(event.get("ts")) or None
        return ReplyRoute(_str(event.get("channel")), _str(event.get("user")), thread)
    if body.get("command"):
        return ReplyRoute(
            _str(body.get("channel_id")),
            _str(body.get("user_id")),
            response_url=_str(body.get("response_url")),
        )
    user = _str(_dict(body.get("user")).get("id"))
    if body.get("type") == "view_submission":
        meta = decode_metadata(_str(_dict(body.get("view")).get("private_metadata")))
        extras = _dict(meta.get("extras"))
        return ReplyRoute(
            _str(meta.get("channel")),
            user,
            _str(meta.get("thread")) or None,
            _str(extras.get("response_url")),
        )
    message = _dict(body.get("message"))
    container = _dict(body.get("container"))
    return ReplyRoute(
        _str(_dict(body.get("channel")).get("id")) or _str(container.get("channel_id")),
        user,
        _str(message.get("thread_ts")) or _str(container.get("thread_ts")) or None,
        _str(body.get("response_url")),
    )


async def tell(platform: SlackWorkspaces, route: ReplyRoute, ref: str) -> bool:
    """Tell the person about `ref`: ephemeral, else response_url, else DM. False if all failed."""
    text = crash_text(ref)
    client = platform.client
    if route.channel and route.user:
        try:
            await client.chat_postEphemeral(
                channel=route.channel, user=route.user, text=text, thread_ts=route.thread
            )
            return True
        except Exception as exc:
            log.info("slack: ephemeral for ref %s refused (%s)", ref, type(exc).__name__)
    if route.response_url:
        destination = Destination(
            platform="slack",
            workspace="",
            channel=route.channel,
            user=route.user,
            extras={"response_url": route.response_url},
        )
        try:
            if await platform.respond(destination, {"response_type": "ephemeral", "text": text}):
                return True
        except Exception as exc:
            log.info("slack: response_url for ref %s refused (%s)", ref, type(exc).__name__)
    if route.user:
        try:
            channel = await platform.dm_channel(route.user)
            await client.chat_postMessage(channel=channel, text=text)
            return True
        except Exception as exc:
            log.info("slack: DM for ref %s refused (%s)", ref, type(exc).__name__)
    log.warning("slack: could not tell anyone about error ref %s", ref)
    return False
