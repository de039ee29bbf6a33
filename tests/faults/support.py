"""The fault matrix's pieces: the faults, the commands they hit, a rig of all three simulators
and a bot, fault injection per simulator, and the checks every case makes.

Policy on logged exceptions: an injected fault is an *expected* backend condition, so no case
may log an ERROR with a traceback from tokenbot (`bot.*`, `adapters.*`) nor from `asyncio`
("Task exception was never retrieved"). `log.exception` in tokenbot is reserved for bugs
(a job that crashed, a reply that could not be delivered); a fault that triggers one fails the
case. aiohttp's own server logs about a connection the simulator dropped on purpose are the
simulator's, not tokenbot's, and are not counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.service import AllTokenService
from bot.backends.openclaw_token.family import openclaw_token_family
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.backends.openmarlin.family import openmarlin_family
from bot.backends.openmarlin.jobs import OpenMarlinTiming
from bot.backends.openmarlin.service import OpenMarlinService
from bot.core.app import TokenBot
from bot.core.http import RetryPolicy
from bot.core.messages import Destination, Failure
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim, Fault
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawSimConfig, OpenClawTokenSim
from bot.sim.openmarlin.server import OpenMarlinFault, OpenMarlinSim, OpenMarlinSimConfig
from tests.conftest import Chat
from tests.fakes.conversation import RecordingConversation

Backend = Literal["alltoken", "openmarlin", "openclaw"]

# The client gives up after CLIENT_TIMEOUT_S in timeout cases; the backend answers much later.
# Every other request of the case must answer within it even when four test workers share two
# cores: with 0.25 s an unfaulted OpenMarlin submit once timed out first.
CLIENT_TIMEOUT_S = 1.0
SLOW_MS = 2500.0
RETRY_AFTER_S = 0.2
# The services' retry policy, with a short default 429 wait (the real one is 1 s).
FAST_RETRY = RetryPolicy(max_retries_on_429=1, default_wait_s=0.1, max_wait_s=30.0)
OM_TIMING = OpenMarlinTiming(poll_s=0.05)
OM_CONFIG = OpenMarlinSimConfig(task_queue_s=0.05, task_run_s=0.1, tokens_per_second=0)
OC_CONFIG = OpenClawSimConfig(device_interval_s=0.05, slow_down_increment_s=0.1)

# (target name, fault name) -> outcome, filled by the cases and printed by conftest.py.
OUTCOMES: dict[tuple[str, str], str] = {}
PLATFORM_OUTCOMES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault, as the user's request meets it."""

    name: str
    status: int | None = None
    retry_after: float | None = None
    slow: bool = False
    mode: Literal["error", "reset", "malformed_json", "malformed_sse"] = "error"


FAULTS: list[FaultKind] = [
    FaultKind("429+Retry-After", 429, RETRY_AFTER_S),
    FaultKind("429", 429),
    FaultKind("500", 500),
    FaultKind("502", 502),
    FaultKind("503", 503),
    FaultKind("timeout", slow=True),
    FaultKind("reset", mode="reset"),
    FaultKind("bad JSON", mode="malformed_json"),
    FaultKind("bad SSE", mode="malformed_sse"),
]


@dataclass(frozen=True)
class Target:
    """One command, and the backend request of it the fault hits."""

    name: str
    backend: Backend
    text: str
    method: str
    path: str
    streaming: bool = False
    job: bool = False
    user: str = "alice"

    def applies(self, fault: FaultKind) -> str | None:
        """Why `fault` cannot happen on this request (None when it can)."""
        if fault.mode == "malformed_sse" and not self.streaming:
            return "n/a: a JSON endpoint has no event stream to garble"
        if fault.mode == "reset" and self.backend == "openmarlin" and not self.streaming:
            return "n/a: the OpenMarlin simulator drops only execution streams"
        return None


TARGETS: list[Target] = [
    Target("chat", "alltoken", "/alltoken-chat hello there", "POST", "/v1/chat/completions", True),
    Target("search", "alltoken", "/alltoken-search tides", "POST", "/v1/chat/completions"),
    Target("models", "alltoken", "/alltoken-models", "GET", "/v1/models"),
    Target("cost", "alltoken", "/alltoken-cost gpt-5.4-mini 1000 500", "GET", "/api-account/"),
    Target(
        "image (submit)",
        "alltoken",
        "/alltoken-image a lighthouse",
        "POST",
        "/v1/images/generations/async",
        job=True,
    ),
    Target(
        "image (poll)",
        "alltoken",
        "/alltoken-image a lighthouse",
        "GET",
        "/v1/images/generations/",
        job=True,
    ),
    Target(
        "video (submit)",
        "alltoken",
        "/alltoken-video waves on a pier --duration=4",
        "POST",
        "/v1/videos/generations",
        job=True,
    ),
    Target(
        "video (poll)",
        "alltoken",
        "/alltoken-video waves on a pier --duration=4",
        "GET",
        "/v1/videos/generations/",
        job=True,
    ),
    Target(
        "openmarlin exec",
        "openmarlin",
        "use openmarlin to say hello",
        "POST",
        "/v1/executions",
        streaming=True,
    ),
    Target(
        "openmarlin task (submit)",
        "openmarlin",
        "use openmarlin to generate a video of a plane landing --duration=4s",
        "POST",
        "/v1/tasks",
        job=True,
    ),
    Target(
        "openmarlin task (poll)",
        "openmarlin",
        "use openmarlin to generate a video of a plane landing --duration=4s",
        "GET",
        "/v1/tasks/",
        job=True,
    ),
    Target("openclaw credits", "openclaw", "/openclaw-token credits balance", "GET", "/credits"),
    Target(
        "fallback chat",
        "openclaw",
        "/alltoken-chat hello there",
        "POST",
        "/v1/chat/completions",
        streaming=True,
        user="erin",
    ),
]


@dataclass
class Rig:
    """The three simulators and a TokenBot on them, with recording conversations."""

    bot: TokenBot
    alltoken: AllTokenSim
    openmarlin: OpenMarlinSim
    openclaw: OpenClawTokenSim

    async def user(self, target: Target) -> Chat:
        """The user a target runs as, with every key it needs."""
        chat = Chat(self.bot, target.user)
        store = self.bot.store
        await store.put_credential(chat.owner, "openclaw_token", DEMO_MGMT_KEY)
        if target.user == "erin":
            # An empty AllToken balance: chat answers 402 and falls back to OpenClaw Token.
            await chat.give_key(self.alltoken.issue_key(0.0))
            await chat.send("/openclaw-token integrate")
            assert not failures(chat.conv), chat.conv.text()
            chat.conv.events.clear()
        else:
            await chat.give_key(self.alltoken.issue_key(10.0))
            await store.put_credential(chat.owner, "openmarlin", self.openmarlin.issue_key(25))
        return chat


@asynccontextmanager
async def rig(
    data_dir: Path, alltoken: AllTokenSim, *, timeout_s: float = 5.0
) -> AsyncIterator[Rig]:
    """Start OpenMarlin and OpenClaw Token simulators next to `alltoken`, and a bot on all three."""
    # Images and videos are ready at the first poll (a faulted poll is retried after 50 ms).
    alltoken.config.image_seconds = 0.0
    alltoken.config.video_seconds = 0.0
    om = OpenMarlinSim(OM_CONFIG.model_copy())
    oc = OpenClawTokenSim(OC_CONFIG.model_copy())
    await om.start()
    await oc.start()
    bot: TokenBot | None = None
    try:
        settings = Settings(
            alltoken_base_url=alltoken.base_url,
            openmarlin_server_url=om.base_url,
            openclaw_token_api_base=oc.base_url,
            data_dir=data_dir,
            http_timeout_s=timeout_s,
            max_polls_per_second=1000.0,
        )
        bot = await TokenBot.create(
            settings,
            families=[alltoken_family(), openmarlin_family(OM_TIMING), openclaw_token_family()],
        )
        services = bot.services
        services.get(AllTokenService).retry = FAST_RETRY
        services.get(OpenMarlinService).retry = FAST_RETRY
        openclaw = services.get(OpenClawTokenService)
        # OpenClaw Token keeps its CLI's 5xx retries, with a short backoff.
        openclaw.retry = replace(FAST_RETRY, max_retries=3, backoff_s=0.01)
        openclaw.timeout_s = timeout_s
        conversations: dict[str, RecordingConversation] = {}

        def factory(dest: Destination) -> RecordingConversation:
            return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

        for platform in ("console", "slack", "discord"):
            bot.register_platform(platform, factory)
        bot.test_conversations = conversations  # type: ignore[attr-defined]
        yield Rig(bot, alltoken, om, oc)
    finally:
        if bot is not None:
            await bot.aclose()
        await oc.stop()
        await om.stop()


def inject(r: Rig, target: Target, fault: FaultKind) -> Callable[[], bool]:
    """Arm one single-shot fault on the target's request; returns "was it triggered?"."""
    latency = SLOW_MS if fault.slow else 0.0
    if target.backend == "alltoken":
        mode = {"reset": "reset_mid_stream"}.get(fault.mode, fault.mode)
        stored = r.alltoken.add_fault(
            Fault(
                method=target.method,
                path=target.path,
                status=fault.status,
                retry_after=fault.retry_after,
                latency_ms=latency or None,
                mode=mode,
                times=1,
            )
        )
        return lambda: stored.hits > 0
    status = fault.status or 503  # a slow fault answers 503 long after the client gave up
    if target.backend == "openmarlin":
        codes = {429: "rate_limited", 500: "server_error", 502: "bad_gateway", 503: "unavailable"}
        om_fault = OpenMarlinFault(
            method=target.method,
            path=target.path,
            status=status,
            error=codes.get(status, "server_error"),
            retry_after=fault.retry_after,
            latency_ms=latency,
            mode={"reset": "drop_stream"}.get(fault.mode, fault.mode),
            times=1,
        )
        r.openmarlin.faults.append(om_fault)
        return lambda: om_fault.hits > 0
    codes = {429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "UNAVAILABLE"}
    oc_fault = r.openclaw.fail_next(
        target.method,
        target.path,
        status,
        codes.get(status, "INTERNAL_ERROR"),
        retry_after=fault.retry_after,
        latency_ms=latency,
        mode={"reset": "reset_mid_stream"}.get(fault.mode, fault.mode),
    )
    return lambda: oc_fault.hits > 0


async def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    """Whether `predicate()` holds within `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def assert_no_unannounced_work(r: Rig, chat: Chat, fault: FaultKind) -> None:
    """A failed image/video job left no paid task at AllToken that the user was not warned of.

    After a timeout the slow request still reaches AllToken later: wait for it first.
    """
    if fault.slow:
        await asyncio.sleep(SLOW_MS / 1000 + 0.2)
    [job] = await r.bot.store.jobs_for(chat.owner)
    tasks = len(r.alltoken._images) + len(r.alltoken._videos)
    if job.status == "done":
        assert tasks == 1, f"{tasks} tasks at AllToken for one delivered job"
        return
    warned = any("may have started" in (f.hint or "") for f in failures(chat.conv))
    assert tasks == 0 or warned, f"{tasks} paid task(s) left at AllToken:\n{chat.conv.text()}"


def failures(conv: RecordingConversation) -> list[Failure]:
    """Every Failure part the conversation received."""
    return [p for e in conv.events for p in e.parts if isinstance(p, Failure)]


def reply_text(conv: RecordingConversation) -> str:
    """Everything the user could read, rendered text and raw parts."""
    return "\n".join(
        e.text + json.dumps([p.model_dump(mode="json") for p in e.parts]) for e in conv.events
    )


def outcome(conv: RecordingConversation) -> str:
    """What the user ended up with: the last Failure's code, or "↻ok" after a fault."""
    found = failures(conv)
    return found[-1].code if found else "↻ok"


def assert_clear_reply(conv: RecordingConversation) -> None:
    """A reply arrived; failures carry a code and a message; no traceback anywhere."""
    assert conv.events, "the user got no reply at all"
    for failure in failures(conv):
        assert failure.code and failure.message, failure
    if not failures(conv):
        kinds = ("say", "stream", "edit", "upload", "whisper")
        answered = [e for e in conv.events if e.kind in kinds]
        assert answered and any(e.text.strip() for e in answered), conv.text()
    text = reply_text(conv)
    for needle in ("Traceback (most recent call last)", 'File "/', "Exception:", "Error("):
        assert needle not in text, f"internal detail reached the user: {needle!r}\n{text}"


def unhandled_errors(records: list[logging.LogRecord]) -> list[str]:
    """ERROR records with a traceback from tokenbot or asyncio (see the module docstring)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR
        and (r.exc_info or r.name == "asyncio")
        and r.name.split(".")[0] in ("bot", "adapters", "asyncio")
    ]


def _fixture_task(task: asyncio.Task[object]) -> bool:
    """Tasks that belong to the simulators' and fakes' servers (connection handlers)."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", "") or ""
    module = getattr(getattr(coro, "cr_code", None), "co_filename", "") or ""
    return "RequestHandler" in name or "aiohttp/web_protocol" in module


def _lease_keeper(task: asyncio.Task[object]) -> bool:
    """The job runner's lease keeper: it lives as long as the bot (it also takes over other
    replicas' expired jobs), so it is not work a fault left behind."""
    return getattr(task.get_coro(), "__qualname__", "") == "LeaseKeeper._loop"


async def leftover_tasks(before: set[asyncio.Task[object]]) -> list[str]:
    """Tasks started since `before` that are still running (the servers' own and the lease
    keeper excepted)."""
    await asyncio.sleep(0.05)
    current = asyncio.current_task()
    return [
        f"{t.get_name()}: {t.get_coro()}"
        for t in asyncio.all_tasks() - before
        if t is not current and not t.done() and not _fixture_task(t) and not _lease_keeper(t)
    ]
