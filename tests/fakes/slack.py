"""A fake Slack for tests and benchmarks: the Web API, Socket Mode, upload URLs and response_urls.

`FakeSlack` is an aiohttp server on a free loopback port that records every call. Point the
real AsyncApp at it with SLACK_API_URL (`fake.api_url`). It keeps channels' messages (so
conversations.replies returns real threads), native streams, uploads and opened views, and
lets a test inject faults: a 429 with Retry-After, `not_in_channel`, an expired trigger.

`SlackHarness` starts a TokenBot on the AllToken simulator, the Slack adapter (HTTP or Socket
Mode) and the fake, and drives inbound traffic either way: signed HTTP requests to the real
aiohttp web app, or envelopes over the fake Socket Mode websocket (acks are collected).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from tests import leaks

TEAM = "T0TEAM"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
SIGNING_SECRET = "test-signing-secret"
APP_TOKEN = "xapp-1-test"
BOT_TOKEN = "xoxb-test"
# Web API methods whose content only the requesting user sees (ephemerals and modals).
_PRIVATE_METHODS = frozenset(
    {"chat.postEphemeral", "views.open", "views.update", "views.push", "views.publish"}
)


@dataclass
class Call:
    """One Web API call as the fake received it."""

    method: str
    args: dict[str, Any]
    at: float
    token: str | None = None


@dataclass
class Fault:
    """A programmed failure for the next `times` calls of `method` (optionally one channel)."""

    method: str
    error: str
    status: int = 200
    retry_after: int | None = None
    times: int = 1
    channel: str | None = None


@dataclass
class Response:
    """One POST to a response_url."""

    url_id: str
    payload: dict[str, Any]
    at: float


@dataclass
class Stream:
    """A native stream (chat.startStream … stopStream)."""

    channel: str
    ts: str
    thread_ts: str
    recipient_user_id: str | None
    recipient_team_id: str | None
    text: str = ""
    appends: int = 0
    stopped: bool = False
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _chunks_text(chunks: Any) -> str:
    if isinstance(chunks, str):
        try:
            chunks = json.loads(chunks)
        except ValueError:
            return ""
    out = []
    for chunk in chunks or ():
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            out.append(str(chunk.get("text") or ""))
    return "".join(out)


class FakeSocketMode:
    """The Socket Mode websocket: sends envelopes to the connected app and collects its acks."""

    def __init__(self) -> None:
        self.connections: list[web.WebSocketResponse] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.sent_at: dict[str, float] = {}
        self.ack_at: dict[str, float] = {}
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections.append(ws)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
        )
        self._connected.set()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                envelope = data.get("envelope_id")
                if envelope:
                    self.acks[envelope] = data
                    self.ack_at[envelope] = time.perf_counter()
                    self._changed.set()
        finally:
            self.connections.remove(ws)
            if not self.connections:
                self._connected.clear()
        return ws

    async def send(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int | None = None
    ) -> str:
        """Send one envelope (`events_api`, `slash_commands`, `interactive`); returns its id."""
        await asyncio.wait_for(self._connected.wait(), 10)
        envelope_id = uuid.uuid4().hex
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout"
        self.sent_at[envelope_id] = time.perf_counter()
        await self.connections[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """The app's ack of an envelope."""

        async def loop() -> dict[str, Any]:
            while envelope_id not in self.acks:
                self._changed.clear()
                await self._changed.wait()
            return self.acks[envelope_id]

        return await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        for ws in list(self.connections):
            await ws.close()


class FakeSlack:
    """The fake Slack Web API server (plus upload URLs, response_urls and Socket Mode)."""

    def __init__(self, *, latency_s: float = 0.0, response_url_uses: int = 5) -> None:
        self.latency_s = latency_s
        self.response_url_uses = response_url_uses
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.not_in_channel: set[str] = set()
        self.expired_triggers: set[str] = set()
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.streams: dict[str, Stream] = {}
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.views: list[dict[str, Any]] = []
        self.responses: list[Response] = []
        self._response_counts: dict[str, int] = {}
        self.socket = FakeSocketMode()
        self.base_url = ""
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{url_id}", self._respond)
        app.router.add_get("/socket", self.socket.handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{host}:{bound[1]}"
        return self

    async def stop(self) -> None:
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL is set to."""
        return f"{self.base_url}/api/"

    # --- test helpers --------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """Every recorded call of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def fail(self, method: str, error: str = "ratelimited", **kw: Any) -> None:
        """Make the next call(s) of `method` fail (429s: status=429, retry_after=N)."""
        self.faults.append(Fault(method=method, error=error, **kw))

    def new_response_url(self) -> str:
        """A fresh response_url served by the fake."""
        return f"{self.base_url}/respond/{uuid.uuid4().hex[:12]}"

    def next_ts(self) -> str:
        """A new, increasing message timestamp."""
        return f"1700000000.{next(self._ts):06d}"

    def user_message(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """Record a person's message and return it as a message event."""
        ts = self.next_ts()
        msg: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts}
        if thread_ts:
            msg["thread_ts"] = thread_ts
        self.messages.setdefault(channel, []).append(msg)
        return {**msg, "channel": channel, "channel_type": "im" if channel[0] == "D" else "channel"}

    def bot_messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (all channels, or one)."""
        chans = [channel] if channel else list(self.messages)
        return [m for c in chans for m in self.messages.get(c, []) if m.get("user") == BOT_USER]

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One stored message."""
        for msg in self.messages.get(channel, []):
            if msg["ts"] == ts:
                return msg
        return None

    def all_text(self) -> str:
        """Every text the fake has seen from the bot (messages, updates, streams, ephemerals, responses)."""
        out: list[str] = []
        for call in self.calls:
            for key in ("text", "markdown_text", "blocks", "view", "chunks"):
                if key in call.args:
                    out.append(json.dumps(call.args[key]))
        out.extend(json.dumps(r.payload) for r in self.responses)
        return "\n".join(out)

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10) -> None:
        """Wait until `predicate(self)` holds."""

        async def loop() -> None:
            while not predicate(self):
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.2)
                except TimeoutError:
                    pass

        await asyncio.wait_for(loop(), timeout)

    # --- HTTP plumbing -------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.can_read_body:
            if ctype == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    args.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in ("blocks", "files", "view", "chunks", "users"):
            value = args.get(key)
            if isinstance(value, str) and value[:1] in "[{":
                args[key] = json.loads(value)
        return args

    def _fault(self, method: str, args: dict[str, Any]) -> Fault | None:
        for fault in self.faults:
            if fault.method != method or fault.times <= 0:
                continue
            if fault.channel and fault.channel not in (args.get("channel"), args.get("channel_id")):
                continue
            fault.times -= 1
            return fault
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        self.calls.append(
            Call(method, args, time.perf_counter(), auth.removeprefix("Bearer ") or None)
        )
        channel = str(args.get("channel") or args.get("channel_id") or "")
        private = method in _PRIVATE_METHODS or channel.startswith("D")
        leaks.reply(f"slack {method}", json.dumps(args, default=str), private=private)
        self._changed.set()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fault = self._fault(method, args)
        if fault is not None:
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            return web.json_response(
                {"ok": False, "error": fault.error}, status=fault.status, headers=headers
            )
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            result = handler(args)
        except _SlackError as exc:
            return web.json_response({"ok": False, "error": exc.code})
        self._changed.set()
        return web.json_response({"ok": True, **result})

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        self.uploads[file_id] = await request.read()
        self.calls.append(Call("upload", {"file_id": file_id}, time.perf_counter()))
        self._changed.set()
        return web.Response(text=f"OK - {len(self.uploads[file_id])}", content_type="text/plain")

    async def _respond(self, request: web.Request) -> web.Response:
        url_id = request.match_info["url_id"]
        uses = self._response_counts.get(url_id, 0)
        if uses >= self.response_url_uses:
            return web.json_response({"ok": False, "error": "used_url"}, status=404)
        self._response_counts[url_id] = uses + 1
        payload = await request.json()
        self.responses.append(Response(url_id, payload, time.perf_counter()))
        private = payload.get("response_type") != "in_channel"
        leaks.reply("slack response_url", json.dumps(payload), private=private)
        self._changed.set()
        return web.json_response({"ok": True})

    # --- Web API methods -----------------------------------------------------------------------

    def _check_channel(self, channel: str) -> None:
        if channel in self.not_in_channel:
            raise _SlackError("not_in_channel")

    def _bot_message(self, channel: str, args: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": args.get("text") or "",
            "blocks": args.get("blocks") or [],
            "ts": self.next_ts(),
        }
        if args.get("thread_ts"):
            msg["thread_ts"] = args["thread_ts"]
        self.messages.setdefault(channel, []).append(msg)
        return msg

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "tokenbot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
        }

    def m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.base_url.replace("http://", "ws://") + "/socket"}

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        if not args.get("text") and not args.get("blocks"):
            raise _SlackError("no_text")
        msg = self._bot_message(channel, args)
        return {"channel": channel, "ts": msg["ts"], "message": msg}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        msg = self.find_message(channel, str(args["ts"]))
        if msg is None:
            raise _SlackError("message_not_found")
        if len(str(args.get("text") or "")) > 4000:
            raise _SlackError("msg_too_long")
        if any(s.ts == msg["ts"] and not s.stopped for s in self.streams.values()):
            raise _SlackError("streaming_state_conflict")
        msg["text"] = args.get("text") or ""
        msg["blocks"] = args.get("blocks") or []
        return {"channel": channel, "ts": msg["ts"]}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        self.ephemerals.append(args)
        return {"message_ts": self.next_ts()}

    def m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        if not args.get("thread_ts"):
            raise _SlackError("invalid_arguments")
        if channel[0] != "D" and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            raise _SlackError("missing_recipient_user_id")
        text = str(args.get("markdown_text") or "") + _chunks_text(args.get("chunks"))
        msg = self._bot_message(channel, {"text": text, "thread_ts": args["thread_ts"]})
        self.streams[msg["ts"]] = Stream(
            channel,
            msg["ts"],
            str(args["thread_ts"]),
            args.get("recipient_user_id"),
            args.get("recipient_team_id"),
            text=text,
        )
        return {"channel": channel, "ts": msg["ts"]}

    def _stream(self, args: dict[str, Any]) -> Stream:
        stream = self.streams.get(str(args.get("ts")))
        if stream is None:
            raise _SlackError("message_not_found")
        if stream.stopped:
            raise _SlackError("message_not_in_streaming_state")
        return stream

    def _stream_text(self, stream: Stream, args: dict[str, Any]) -> None:
        stream.text += str(args.get("markdown_text") or "") + _chunks_text(args.get("chunks"))
        msg = self.find_message(stream.channel, stream.ts)
        if msg is not None:
            msg["text"] = stream.text

    def m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(args)
        stream.appends += 1
        self._stream_text(stream, args)
        return {"channel": stream.channel, "ts": stream.ts}

    def m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(args)
        self._stream_text(stream, args)
        stream.stopped = True
        stream.blocks = list(args.get("blocks") or [])
        msg = self.find_message(stream.channel, stream.ts)
        if msg is not None:
            msg["blocks"] = stream.blocks
        return {"channel": stream.channel, "ts": stream.ts}

    def m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = {
            "id": file_id,
            "name": args.get("filename"),
            "length": int(args.get("length") or 0),
            "alt_txt": args.get("alt_txt"),
        }
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel_id") or "")
        if channel:
            self._check_channel(channel)
        done = []
        for item in args.get("files") or []:
            info = self.files.get(item["id"])
            if info is None or item["id"] not in self.uploads:
                raise _SlackError("file_not_found")
            if len(self.uploads[item["id"]]) != info["length"]:
                raise _SlackError("file_size_mismatch")
            info.update(
                title=item.get("title"),
                channel=channel,
                thread_ts=args.get("thread_ts"),
                initial_comment=args.get("initial_comment"),
            )
            done.append({"id": item["id"], "title": item.get("title")})
        return {"files": done}

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = args.get("trigger_id")
        if not trigger:
            raise _SlackError("invalid_arguments")
        if trigger in self.expired_triggers:
            raise _SlackError("expired_trigger_id")
        view = args["view"]
        self.views.append(view)
        return {"view": {"id": f"V{next(self._ids):08d}", **view}}

    def m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        # The App Home tab: one view per user, replaced by each publish.
        view = args.get("view")
        if not args.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            raise _SlackError("invalid_arguments")
        return {"view": {"id": f"V{next(self._ids):08d}", **view}}

    def _assistant_thread(self, args: dict[str, Any]) -> None:
        if not args.get("channel_id") or not args.get("thread_ts"):
            raise _SlackError("invalid_arguments")
        self._check_channel(str(args["channel_id"]))

    def m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        if "status" not in args:  # "" clears the status; absent is an error
            raise _SlackError("invalid_arguments")
        return {}

    def m_assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise _SlackError("invalid_arguments")
        return {}

    def m_assistant_threads_setTitle(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        if not args.get("title"):
            raise _SlackError("invalid_arguments")
        return {}

    def m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        # Top-level messages of a channel, newest first (as Slack returns them).
        channel = str(args["channel"])
        self._check_channel(channel)
        limit = int(args.get("limit") or 100)
        top = [m for m in self.messages.get(channel, []) if m.get("thread_ts") in (None, m["ts"])]
        newest = sorted(top, key=lambda m: float(m["ts"]), reverse=True)
        return {"messages": newest[:limit], "has_more": len(newest) > limit}

    def m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = args.get("users")
        user = users[0] if isinstance(users, list) else str(users).split(",")[0]
        return {"channel": {"id": f"D{user}"}}

    def m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        latest = float(args.get("latest") or "inf")
        inclusive = str(args.get("inclusive", "0")) in ("1", "true", "True")
        limit = int(args.get("limit") or 1000)
        thread = [
            m for m in self.messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts
        ]
        thread = [
            m for m in thread if float(m["ts"]) < latest or (inclusive and float(m["ts"]) == latest)
        ]
        if not thread:
            raise _SlackError("thread_not_found")
        return {"messages": thread[:limit], "has_more": len(thread) > limit}


class _SlackError(Exception):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


# --- inbound payloads -----------------------------------------------------------------------


def slash_command(
    command: str,
    text: str = "",
    *,
    user: str = "U1",
    channel: str = "C1",
    team: str = TEAM,
    response_url: str = "",
    trigger_id: str | None = None,
    channel_name: str = "general",
) -> dict[str, str]:
    """A slash command payload (form fields over HTTP, the envelope payload in Socket Mode)."""
    return {
        "token": "unused",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": trigger_id or f"trig-{uuid.uuid4().hex[:8]}",
    }


def event_callback(
    event: dict[str, Any], *, event_id: str | None = None, team: str = TEAM
) -> dict[str, Any]:
    """An Events API envelope around one event."""
    return {
        "token": "unused",
        "team_id": team,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": BOT_USER, "is_bot": True}],
    }


def mention_event(
    fake: FakeSlack, channel: str, user: str, text: str, thread_ts: str | None = None
) -> dict[str, Any]:
    """An app_mention for a message recorded in the fake (so threads have it)."""
    msg = fake.user_message(channel, user, f"<@{BOT_USER}> {text}", thread_ts)
    msg.pop("channel_type", None)
    return {**msg, "type": "app_mention"}


def block_actions(
    action_id: str,
    value: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str = "",
    thread_ts: str | None = None,
    response_url: str = "",
    team: str = TEAM,
) -> dict[str, Any]:
    """A button click."""
    message: dict[str, Any] = {"ts": message_ts, "type": "message"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "team_id": team},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "trigger_id": f"trig-{uuid.uuid4().hex[:8]}",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }


def view_submission(
    view: dict[str, Any], values: dict[str, str], *, user: str = "U1", team: str = TEAM
) -> dict[str, Any]:
    """The submission of an opened view with `values` typed into its inputs."""
    state = {
        name: {"value": {"type": "plain_text_input", "value": v}} for name, v in values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "team_id": team},
        "api_app_id": "A1",
        "view": {**view, "id": "V1", "state": {"values": state}},
    }


def signed_headers(
    body: bytes, content_type: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Headers Slack sends with a request: timestamp and v0 signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body.decode())
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": content_type,
    }


def encode(kind: str, payload: dict[str, Any]) -> tuple[bytes, str]:
    """The HTTP body Slack sends for a payload kind (`slash_commands`, `events_api`, `interactive`)."""
    if kind == "slash_commands":
        return urllib.parse.urlencode(payload).encode(), "application/x-www-form-urlencoded"
    if kind == "interactive":
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return body.encode(), "application/x-www-form-urlencoded"
    return json.dumps(payload).encode(), "application/json"


# --- the harness ------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What Slack got back for one inbound request."""

    status: int
    body: str
    seconds: float


class SlackHarness:
    """A TokenBot on the AllToken simulator, its Slack adapter, and the fake Slack."""

    def __init__(
        self, fake: FakeSlack, bot: Any, runner: Any, socket_mode: bool, server: Any = None
    ) -> None:
        self.fake = fake
        self.bot = bot
        self.runner = runner
        self.socket_mode = socket_mode
        self.server = server  # the bot's own HttpServer, when the harness runs it
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
        )

    @classmethod
    async def start(
        cls,
        data_dir: Path,
        alltoken_url: str,
        *,
        socket_mode: bool = False,
        fake: FakeSlack | None = None,
        shared_server: bool = False,
        **settings: Any,
    ) -> SlackHarness:
        """Start the fake (unless given), the bot and the adapter.

        `shared_server`: like `tokenbot run`, the bot's HttpServer (health, metrics) also
        serves /slack/events, started after the adapter.
        """
        from adapters.slack.runner import start_slack
        from bot.core.app import TokenBot
        from bot.core.http_server import HttpServer
        from bot.core.settings import Settings

        fake = fake or await FakeSlack().start()
        config = Settings(
            alltoken_base_url=alltoken_url,
            data_dir=data_dir,
            http_timeout_s=10.0,
            max_polls_per_second=1000.0,
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN if socket_mode else None,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake.api_url,
            http_host="127.0.0.1",
            http_port=0,
            **settings,
        )
        bot = await TokenBot.create(config)
        server = HttpServer(bot) if shared_server else None
        bot.web_server = server
        try:
            runner = await start_slack(bot, config)
            if server is not None:
                await server.start("127.0.0.1", 0)
        except BaseException:
            await bot.aclose()
            raise
        await bot.start()
        return cls(fake, bot, runner, socket_mode, server)

    async def aclose(self, stop_fake: bool = True) -> None:
        """Stop everything this harness started."""
        await self.http.close()
        if self.server is not None:
            await self.server.aclose()
        await self.runner.aclose()
        await self.bot.aclose()
        if stop_fake:
            await self.fake.stop()

    @contextlib.contextmanager
    def work_held(self) -> Iterator[None]:
        """Inside, work spawned after an ack waits, as if another request were being acked
        for ever: an ack that comes back meanwhile did not wait for its command's work."""
        gate = self.runner.platform.supervisor.gate
        cap, gate.max_wait_s = gate.max_wait_s, 3600.0
        gate.enter()
        try:
            yield
        finally:
            gate.leave()
            gate.max_wait_s = cap

    async def settle(self, timeout: float = 15) -> None:
        """Wait until every handler and job has finished."""
        assert await self.runner.idle(timeout), "Slack handlers still running"
        assert await self.bot.jobs.wait_idle(timeout), "jobs still running"
        assert await self.runner.idle(timeout), "Slack handlers still running"

    async def post(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_num: int | None = None,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
    ) -> Delivery:
        """A signed HTTP request to the adapter's /slack/events."""
        body, ctype = encode(kind, payload)
        headers = signed_headers(body, ctype, secret=secret, timestamp=timestamp)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        start = time.perf_counter()
        async with self.http.post(self.runner.url, data=body, headers=headers) as resp:
            text = await resp.text()
            return Delivery(resp.status, text, time.perf_counter() - start)

    async def send(
        self, kind: str, payload: dict[str, Any], *, retry_num: int | None = None
    ) -> Delivery:
        """Deliver a payload the way this harness's adapter is connected (HTTP or Socket Mode)."""
        if not self.socket_mode:
            return await self.post(kind, payload, retry_num=retry_num)
        start = time.perf_counter()
        envelope = await self.fake.socket.send(kind, payload, retry_attempt=retry_num)
        ack = await self.fake.socket.wait_ack(envelope)
        return Delivery(200, json.dumps(ack), time.perf_counter() - start)

    async def command(self, command: str, text: str = "", **kw: Any) -> Delivery:
        """A slash command with a fresh response_url."""
        kw.setdefault("response_url", self.fake.new_response_url())
        return await self.send("slash_commands", slash_command(command, text, **kw))

    async def event(self, event: dict[str, Any], **kw: Any) -> Delivery:
        """An Events API delivery."""
        retry_num = kw.pop("retry_num", None)
        return await self.send("events_api", event_callback(event, **kw), retry_num=retry_num)
