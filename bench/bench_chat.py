"""Chat through tokenbot vs. straight from the simulator, measured side by side in one run.

- Time to first streamed token (50 ms simulated backend latency): p50 ratio bot/direct, one
  ratio per repeat of alternating samples (target ≤ 1.02).
- 500 concurrent chat commands: all succeed; throughput ratio bot/direct per round, direct and
  bot alternating (target ≥ 0.97); peak RSS. The simulator runs in its own process; the bot is
  driven in this one through TokenBot.handle (no platform), the direct side with the bot's own
  HTTP client; both under the collector settings `tokenbot run` applies once started
  (TOKENBOT_GC_FREEZE, TOKENBOT_GC_GEN0_THRESHOLD).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.gates import REPEATS, Sample, gated_row, ratios, reported_row
from bench.sim_process import sim_process
from bot.backends.alltoken.service import sse_lines
from bot.core.app import TokenBot
from bot.core.heap import settle_heap
from bot.core.http import build_http_client, release
from bot.core.messages import (
    Destination,
    Failure,
    FormRequest,
    Image,
    Inbound,
    Limits,
    MessageRef,
    Part,
)
from bot.core.settings import Settings
from bot.sim.cluster import DEMO_ALLTOKEN_KEY
from bot.store import Owner

PROMPT = "summarise the tides in one paragraph"
TTFT_TARGET = 1.02  # issue 14: time to first token bot ÷ direct
CONCURRENT_TARGET = 0.97  # issue 14: 500 concurrent chats, throughput bot ÷ direct


class _Stream:
    def __init__(self, conv: TimingConversation) -> None:
        self.conv = conv

    async def append(self, text: str) -> None:
        if self.conv.first_token_at is None:
            self.conv.first_token_at = time.perf_counter()
        self.conv.chars += len(text)

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        self.conv.finished = True
        self.conv.failures += sum(isinstance(p, Failure) for p in trailer)


class TimingConversation:
    """A Conversation that only records timings and failures (no platform in the way)."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.limits = Limits()
        self.first_token_at: float | None = None
        self.chars = 0
        self.finished = False
        self.failures = 0

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        self.failures += sum(isinstance(p, Failure) for p in parts)
        return MessageRef(platform="console", channel="c", id="1")

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        self.failures += sum(isinstance(p, Failure) for p in parts)

    def stream(self) -> _Stream:
        return _Stream(self)

    async def upload(self, image: Image) -> MessageRef:
        return MessageRef(platform="console", channel="c", id="1")

    async def whisper(self, parts: Sequence[Part]) -> None:
        self.failures += 1  # nothing in this benchmark should answer privately

    async def direct(self, parts: Sequence[Part]) -> None:
        self.failures += 1

    async def request_form(self, request: FormRequest) -> None:
        self.failures += 1

    async def delete_inbound(self) -> bool:
        return False


def _inbound(user: str) -> Inbound:
    return Inbound(
        platform="console",
        workspace="bench",
        channel=f"c-{user}",
        user=user,
        text=f"/alltoken-chat {PROMPT}",
        is_direct=True,
    )


async def _direct_ttft(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """Seconds to the first content delta and to the end, reading the stream like a client.

    Like AllToken's own recipe: parse each `data:` chunk and collect the content, so the
    baseline does the work any client must do and the ratio shows what tokenbot adds.
    """
    body = {
        "model": "gpt-5.4-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first: float | None = None
    async with client.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {DEMO_ALLTOKEN_KEY}"},
    ) as r:
        r.raise_for_status()
        text: list[str] = []
        async for line in sse_lines(r):
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    text.append(content)
    release(r)  # as the bot's BackendCall does: the baseline keeps no more garbage than it
    end = time.perf_counter()
    return (first or end) - start, end - start


async def _bot_ttft(bot: TokenBot, user: str) -> tuple[float, float, TimingConversation]:
    inbound = _inbound(user)
    conv = TimingConversation(inbound.destination())
    start = time.perf_counter()
    await bot.handle(inbound, conv)
    end = time.perf_counter()
    return (conv.first_token_at or end) - start, end - start, conv


async def _make_bot(url: str, data_dir: Path, users: int) -> TokenBot:
    bot = await TokenBot.create(Settings(alltoken_base_url=url, data_dir=data_dir))
    for i in range(users):
        await bot.store.put_credential(
            Owner(platform="console", workspace="bench", user=f"u{i}"),
            "alltoken",
            DEMO_ALLTOKEN_KEY,
        )
    return bot


async def ttft(samples: int = 15, repeats: int = REPEATS) -> dict[str, Any]:
    """p50 time to first token, bot vs direct, alternating requests; one ratio per repeat."""
    with (
        sim_process(TOKENBOT_SIM_LATENCY_MS="50", TOKENBOT_SIM_TOKENS_PER_SECOND="200") as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        bot = await _make_bot(url, Path(tmp), 1)
        client = build_http_client(30)
        try:
            for _ in range(3):  # warm both paths (connections, caches)
                await _direct_ttft(client, url)
                await _bot_ttft(bot, "u0")
            blocks: list[tuple[float, float]] = []
            for _ in range(repeats):
                direct: list[float] = []
                via_bot: list[float] = []
                for _ in range(samples):
                    direct.append((await _direct_ttft(client, url))[0])
                    via_bot.append((await _bot_ttft(bot, "u0"))[0])
                blocks.append((statistics.median(direct), statistics.median(via_bot)))
        finally:
            await client.aclose()
            await bot.aclose()
    return {
        "direct_ms": Sample.of([d * 1000 for d, _ in blocks]),
        "bot_ms": Sample.of([b * 1000 for _, b in blocks]),
        "ratio": ratios([b for _, b in blocks], [d for d, _ in blocks]),
    }


# Rounds per repeat of the 500-chat row: one round's ratio spread 0.73–1.02 within a run on a
# quiet machine, so each repeat is the median of a few alternating rounds.
ROUNDS_PER_REPEAT = 3


async def concurrent_chats(
    n: int = 500, repeats: int = REPEATS, per_repeat: int = ROUNDS_PER_REPEAT
) -> dict[str, Any]:
    """n chats at once through the bot, and n straight to the simulator, same pacing.

    The two sides alternate (after a warm-up) so neither profits from a warmer simulator; each
    repeat's ratio is the median of its `per_repeat` rounds' (direct time ÷ bot time).
    """
    rounds = repeats * per_repeat
    direct_times: list[float] = []
    bot_times: list[float] = []
    direct_errors = bot_errors = 0
    with (
        sim_process(TOKENBOT_SIM_LATENCY_MS="50", TOKENBOT_SIM_TOKENS_PER_SECOND="40") as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        # The direct client is the bot's own HTTP stack, so the ratio is what tokenbot adds.
        client = build_http_client(120)
        bot = await _make_bot(url, Path(tmp), n)
        try:
            await asyncio.gather(*(_direct_ttft(client, url) for _ in range(50)))
            await asyncio.gather(*(_bot_ttft(bot, f"u{i}") for i in range(50)))
            ceiling = await _raw_aiohttp_seconds(url, n)
            # The collector as `tokenbot run` sets it once started (TOKENBOT_GC_*): both sides
            # share this process, so both run under it.
            settings = Settings()
            settle_heap(settings.gc_freeze, settings.gc_gen0_threshold)
            for _ in range(rounds):
                start = time.perf_counter()
                results = await asyncio.gather(
                    *(_direct_ttft(client, url) for _ in range(n)), return_exceptions=True
                )
                direct_times.append(time.perf_counter() - start)
                direct_errors += sum(isinstance(r, BaseException) for r in results)
                start = time.perf_counter()
                outcomes = await asyncio.gather(
                    *(_bot_ttft(bot, f"u{i}") for i in range(n)), return_exceptions=True
                )
                bot_times.append(time.perf_counter() - start)
                bot_errors += sum(
                    1
                    for o in outcomes
                    if isinstance(o, BaseException)
                    or not o[2].finished
                    or o[2].failures
                    or not o[2].chars
                )
        finally:
            await client.aclose()
            await bot.aclose()
    direct_s, bot_s = statistics.median(direct_times), statistics.median(bot_times)
    per_round = ratios(direct_times, bot_times).values
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "direct_per_s": n / direct_s,
        "bot_per_s": n / bot_s,
        # Each round's direct ÷ bot time: throughput bot ÷ direct, paired within the round;
        # a repeat is the median of its rounds.
        "ratio": Sample.of(
            [statistics.median(per_round[k : k + per_repeat]) for k in range(0, rounds, per_repeat)]
        ),
        "rounds": rounds,
        "direct_errors": direct_errors,
        "bot_errors": bot_errors,
        "peak_rss_mb": rss_mb,
        "raw_per_s": n / ceiling,
    }


async def _raw_aiohttp_seconds(url: str, n: int) -> float:
    """The simulator's ceiling: n streams read by bare aiohttp, the leanest client there is."""
    body = {
        "model": "gpt-5.4-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {DEMO_ALLTOKEN_KEY}"}

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            async for _line in r.content:
                pass

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:
        await asyncio.gather(*(one(session) for _ in range(50)))
        start = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(n)))
        return time.perf_counter() - start


async def rows() -> list[tuple[str, str, str, float, str, bool]]:
    """This module's rows of the `make bench` table."""
    t = await ttft()
    c = await concurrent_chats(int(os.environ.get("BENCH_CONCURRENCY", "500")))
    return [
        gated_row(
            "chat: time to first token, p50, bot ÷ direct (50 ms backend latency)",
            f"{t['bot_ms'].text('.1f', ' ms')}",
            f"{t['direct_ms'].text('.1f', ' ms')} direct",
            t["ratio"],
            "<=",
            TTFT_TARGET,
        ),
        gated_row(
            f"chat: {c['n']} concurrent commands, throughput bot ÷ direct"
            f" (each repeat the median of {ROUNDS_PER_REPEAT} rounds)",
            f"{c['bot_per_s']:.1f}/s, {c['bot_errors']} errors",
            f"{c['direct_per_s']:.1f}/s direct, {c['direct_errors']} errors",
            c["ratio"],
            ">=",
            CONCURRENT_TARGET,
            also=c["bot_errors"] == 0,
        ),
        reported_row(
            f"chat: {c['n']} concurrent, vs. bare aiohttp reading the simulator (its ceiling)",
            f"{c['bot_per_s']:.1f}/s",
            f"{c['raw_per_s']:.1f}/s bare aiohttp",
            c["bot_per_s"] / c["raw_per_s"],
        ),
        reported_row("chat: peak RSS of the bot process", f"{c['peak_rss_mb']:.0f} MB", ""),
    ]
