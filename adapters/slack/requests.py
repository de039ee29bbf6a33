"""HTTP mode's gate: a request to /slack/events is checked before anything parses it.

Order matters: size, then the v0 signature and its 5-minute timestamp window on the raw
bytes, then the content type, then whether the signed body parses the way bolt will parse
it. Anyone can send garbage, so a refusal costs one short log line and no traceback; only a
correctly signed request reaches bolt, exactly as Slack sent it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from adapters.slack.claims import Claim
from adapters.slack.limits import SeenAnywhere

if TYPE_CHECKING:
    from bot.store.events import SeenEvents

__all__ = ["MAX_BODY_BYTES", "MAX_SKEW_S", "Admitted", "RequestCheck"]

log = logging.getLogger(__name__)

# Slack's payloads are tens of kilobytes (a block action carries the clicked message).
MAX_BODY_BYTES = 1024 * 1024
# Slack's documented replay window.
MAX_SKEW_S = 5 * 60
_CONTENT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _parses_like_bolt(text: str, content_type: str) -> bool:
    """Whether bolt's body parser will read `text` as a payload (a dict) without failing."""
    try:
        if content_type == "application/json" or text.startswith("{"):
            return isinstance(json.loads(text), dict)
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            return isinstance(json.loads(form["payload"]), dict)
        return bool(form)
    except (ValueError, RecursionError):
        return False


@dataclass(frozen=True)
class Admitted:
    """A request bolt may see: its body, and the store's pending "first time?" for its
    signature (its work waits for that; its ack does not)."""

    text: str
    first: Claim | bool


class RequestCheck:
    """Admits correctly signed, fresh, parseable requests; answers everything else itself."""

    def __init__(
        self,
        signing_secret: str,
        clock: Callable[[], float] = time.time,
        seen: SeenEvents | None = None,
    ) -> None:
        self._secret = signing_secret.encode()
        self._clock = clock
        # Signatures seen within the window (by any replica on the store, when given one):
        # the same signed request twice is a replay, whichever replica it reaches.
        self._seen = SeenAnywhere(seen, "slack:signature", 2 * MAX_SKEW_S, capacity=50_000)
        self.refused = 0

    async def admit(self, request: web.Request) -> Admitted | web.Response:
        """The body when the request may go to bolt, else the response to send."""
        try:
            return await self._check(request)
        except _Refused as refusal:
            self.refused += 1
            log.warning(
                "refused a Slack request from %s: %s (%d)",
                request.remote,
                refusal.reason,
                refusal.status,
            )
            return web.Response(status=refusal.status, text=refusal.reason)

    async def _check(self, request: web.Request) -> Admitted | web.Response:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise _Refused(413, "body too large")
        try:
            body = await request.read()  # aiohttp stops at client_max_size (1 MiB by default)
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, "body too large") from None
        except (OSError, ValueError) as exc:
            raise _Refused(400, f"body unreadable ({type(exc).__name__})") from None
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, "body too large")
        return self._check_body(request.headers, request.content_type, body)

    def check_body(
        self, headers: Mapping[str, str], content_type: str, body: bytes
    ) -> Admitted | web.Response:
        """`admit` once the body is read (what the ack benchmark times): signature, window,
        content type, parse, replay; the response to send when it is refused."""
        try:
            return self._check_body(headers, content_type, body)
        except _Refused as refusal:
            self.refused += 1
            return web.Response(status=refusal.status, text=refusal.reason)

    def _check_body(
        self, headers: Mapping[str, str], content_type: str, body: bytes
    ) -> Admitted | web.Response:
        signature = self._verify(headers, body)
        if content_type not in _CONTENT_TYPES:
            raise _Refused(415, "unsupported content type")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, "body is not UTF-8") from None
        if not _parses_like_bolt(text, content_type):
            raise _Refused(400, "signed body does not parse")
        # This process's memory answers now; the store (other replicas) before the work runs.
        first = self._seen.claim(signature)
        if first is False:
            log.info("dropped a replayed Slack request (same signature)")
            return web.Response(status=200, text="")
        return Admitted(text, first)

    def _verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """The request's signature, when it is Slack's for this body; else refuse (401)."""
        stamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        if not stamp or not signature:
            raise _Refused(401, "missing signature headers")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise _Refused(401, "non-numeric timestamp")
        if abs(self._clock() - int(stamp)) > MAX_SKEW_S:
            raise _Refused(401, "stale timestamp")
        digest = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        expected = "v0=" + digest.hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise _Refused(401, "bad signature")
        return signature
