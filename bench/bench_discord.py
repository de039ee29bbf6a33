"""The Discord adapter under load: streaming pace and acknowledgement latency, side by side.

Real discord.py against tests/fakes/discord.py, with the AllToken simulator in its own
process at 30 tokens/s.

- Streamed replies (fake on its own thread and loop, one clock with the bot): edits per reply
  (at most one per second) and the delay from the last token reaching the bot to the final
  edit reaching Discord (target ≤ 1.2 s); the baseline is the 1 s throttle plus the fake's
  measured edit round trip.
- 500 interactions dispatched at once (fake in its own process, as Discord would be): time
  from the gateway dispatch to the "thinking…" callback, p50/p99 (target p99 < 300 ms), and
  every reply delivered. The baseline is the fake's own REST latency under a burst of 500.

`python -m bench.bench_discord` prints the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from adapters.discord.runner import DiscordRunner, start_discord
from bench.sim_process import sim_process
from bot.backends.alltoken.family import alltoken_family
from bot.backends.alltoken.service import AllTokenService, ChatMessage, ChatResult
from bot.core.app import TokenBot
from bot.core.settings import Settings
from bot.sim.cluster import DEMO_ALLTOKEN_KEY
from bot.store import Owner
from tests.fakes.discord import BOT_TOKEN, LOADING, FakeDiscord, FakeInteraction

T = TypeVar("T")
Row = tuple[str, str, str, float, str, bool]

# 5 to 6.3 s at 30 tokens/s; varying lengths land the last token at different points of the
# one-second edit cycle, so the delay below is not one lucky phase.
STREAM_TOKENS = (150, 160, 170, 180, 190)
CONCURRENT = int(os.environ.get("BENCH_DISCORD_CONCURRENCY", "500"))
WEBHOOK_MESSAGE = "/webhooks/{application_id}/{token}/messages/{message_id}"


class FakeThread:
    """FakeDiscord serving from its own thread and loop; coroutines on it are awaited from here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake: FakeDiscord

    async def start(self) -> FakeThread:
        self._thread.start()

        async def make() -> FakeDiscord:
            return await FakeDiscord().start()

        self.fake = await self.run(make())
        return self

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the fake's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self) -> None:
        await self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class _TimedStream:
    """Wraps a ChatStream to note when the last token reached the bot."""

    def __init__(self, inner: Any, marks: list[float]) -> None:
        self._inner = inner
        self._marks = marks

    def __aiter__(self) -> AsyncIterator[str]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[str]:
        async for delta in self._inner:
            self._marks.append(time.perf_counter())
            yield delta

    @property
    def result(self) -> ChatResult:
        return self._inner.result


def _time_tokens(service: AllTokenService) -> dict[str, list[float]]:
    """Record each chat's token arrival times, keyed by the prompt."""
    original = service.stream_chat
    marks: dict[str, list[float]] = {}

    def stream_chat(key: str, model: str, messages: list[ChatMessage]) -> Any:
        return _TimedStream(
            original(key, model, messages), marks.setdefault(messages[-1].content, [])
        )

    service.stream_chat = stream_chat  # type: ignore[method-assign]
    return marks


@contextlib.asynccontextmanager
async def _world(url: str, users: int) -> AsyncIterator[tuple[FakeThread, TokenBot, DiscordRunner]]:
    ft = await FakeThread().start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            alltoken_base_url=url,
            data_dir=Path(tmp),
            discord_token=BOT_TOKEN,
            discord_api_url=ft.fake.api_url,
            discord_gateway_url=ft.fake.gateway_url,
            log_level="WARNING",
        )
        bot = await TokenBot.create(settings, [alltoken_family()])
        runner: DiscordRunner | None = None
        try:
            for i in range(users):
                await bot.store.put_credential(
                    Owner(
                        platform="discord", workspace=str(ft.fake.guild_id), user=_user_id(ft, i)
                    ),
                    "alltoken",
                    DEMO_ALLTOKEN_KEY,
                )
            runner = await start_discord(bot, settings, guild_ready_timeout=0.05)
            await runner.wait_ready(15)
            yield ft, bot, runner
        finally:
            await bot.jobs.aclose()
            if runner is not None:
                await runner.aclose()
            await bot.aclose()
            await ft.stop()


def _user_id(ft: FakeThread, i: int) -> str:
    return str(int(ft.fake.alice["id"]) + 1000 + i)


def _user(ft: FakeThread, i: int) -> dict[str, Any]:
    return {**ft.fake.alice, "id": _user_id(ft, i), "username": f"u{i}"}


def _done(ft: FakeThread, i: FakeInteraction) -> bool:
    """The reply is complete: settled, with the usage line at its end."""
    messages = ft.fake.replies(i)
    return (
        bool(messages)
        and all(not int(m["flags"]) & LOADING for m in messages)
        and ("completion" in messages[-1]["content"])
    )


async def _rest_baseline(ft: FakeThread, n: int) -> list[float]:
    """Round trips of n REST calls to the threaded fake (the edit floor)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {BOT_TOKEN}"}) as session:
        return await _rest_baseline_at(session, ft.fake.api_url, n)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def streaming_rows() -> list[Row]:
    """Edits per streamed reply and last-token-to-screen delay at 30 tokens/s."""
    with sim_process(TOKENBOT_SIM_TOKENS_PER_SECOND="30") as url:
        async with _world(url, 1) as (ft, bot, _runner):
            marks = _time_tokens(bot.services.get(AllTokenService))
            edits: list[int] = []
            delays: list[float] = []
            durations: list[float] = []
            gaps: list[float] = []
            rtts: list[float] = []
            for n, tokens in enumerate(STREAM_TOKENS):
                prompt = f"[[tokens={tokens}]] sample {n}"
                i = await ft.run(ft.fake.slash("alltoken-chat", prompt=prompt, user=_user(ft, 0)))
                await ft.run(ft.fake.wait_until(functools.partial(_done, ft, i), 30, what="reply"))
                token_times = marks[prompt]
                patches = [
                    c
                    for c in ft.fake.calls_to("PATCH", WEBHOOK_MESSAGE)
                    if c.params["token"] == i.token and c.status == 200
                ]
                edits.append(len(patches))
                delays.append(patches[-1].at - token_times[-1])
                durations.append(token_times[-1] - token_times[0])
                gaps.extend(b.at - a.at for a, b in itertools.pairwise(patches))
                rtts.extend(await _rest_baseline(ft, 5))
    per_reply = statistics.mean(edits)
    seconds = statistics.mean(durations)
    # One edit per started second of streaming, plus the final one with the usage line.
    ceiling = statistics.mean(math.ceil(d) + 1 for d in durations)
    rtt = statistics.median(rtts)
    floor = 1.0 + rtt  # the throttle may hold the last text up to one interval
    worst = max(delays)
    return [
        (
            "discord: edits per streamed reply (150-190 tokens at 30 tok/s)",
            f"{per_reply:.1f} edits over {seconds:.1f} s, min gap {min(gaps):.2f} s",
            f"≤ {ceiling:.1f} at 1 edit/s",
            per_reply / ceiling,
            "≤ 1.00, gaps ≥ 0.95 s",
            per_reply <= ceiling and min(gaps) >= 0.95,
        ),
        (
            f"discord: last token → shown (worst of {len(delays)})",
            f"{worst * 1000:.0f} ms (p50 {statistics.median(delays) * 1000:.0f} ms)",
            f"{floor * 1000:.0f} ms = 1 s throttle + edit RTT",
            worst / floor,
            "≤ 1.2 s",
            worst <= 1.2,
        ),
    ]


@contextlib.contextmanager
def fake_process() -> Iterator[dict[str, str]]:
    """tests/fakes/discord.py in its own process; yields its ready line (URLs and ids)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.discord"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _burst(session: aiohttp.ClientSession, base: str, n: int, tag: str) -> dict[str, Any]:
    """n /alltoken-chat at once; waits for every reply; returns the fake's report."""
    options = {"prompt": f"[[tokens=30]] {tag} {{k}}"}
    async with session.post(
        f"{base}/_fake/burst", json={"name": "alltoken-chat", "n": n, "options": options}
    ) as r:
        r.raise_for_status()
    deadline = time.monotonic() + 120
    while True:
        async with session.get(f"{base}/_fake/burst", params={"needle": "completion"}) as r:
            report: dict[str, Any] = await r.json()
        if report["delivered"] == n or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.25)


async def concurrency_rows(n: int = CONCURRENT) -> list[Row]:
    """n interactions at once: defer latency p50/p99 and no lost reply.

    The fake runs in its own process (as Discord would), so its work doesn't hold this
    process's GIL. The first burst opens the bot's HTTP connections; the second is measured,
    as in a running bot whose connection pool is warm. Both are reported.
    """
    with sim_process(TOKENBOT_SIM_TOKENS_PER_SECOND="30") as url, fake_process() as ready:
        base = ready["api_url"].removesuffix("/api/v10")
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                alltoken_base_url=url,
                data_dir=Path(tmp),
                discord_token=BOT_TOKEN,
                discord_api_url=ready["api_url"],
                discord_gateway_url=ready["gateway_url"],
                log_level="WARNING",
            )
            bot = await TokenBot.create(settings, [alltoken_family()])
            runner: DiscordRunner | None = None
            try:
                for k in range(n):
                    user = str(int(ready["alice_id"]) + 1000 + k)
                    owner = Owner(platform="discord", workspace=ready["guild_id"], user=user)
                    await bot.store.put_credential(owner, "alltoken", DEMO_ALLTOKEN_KEY)
                runner = await start_discord(bot, settings, guild_ready_timeout=0.05)
                await runner.wait_ready(15)
                async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bot {BOT_TOKEN}"}
                ) as session:
                    baseline = await _rest_baseline_at(session, ready["api_url"], n)
                    cold = await _burst(session, base, n, "cold")
                    warm = await _burst(session, base, n, "warm")
            finally:
                await bot.jobs.aclose()
                if runner is not None:
                    await runner.aclose()
                await bot.aclose()
    latencies: list[float] = warm["acked"]
    p50, p99 = _pct(latencies, 0.5), _pct(latencies, 0.99)
    cold_p99 = _pct(cold["acked"], 0.99)
    b50, b99 = _pct(baseline, 0.5), _pct(baseline, 0.99)
    got = min(warm["delivered"], cold["delivered"])
    acked = min(len(warm["acked"]), len(cold["acked"]))
    return [
        (
            f"discord: defer latency, {n} concurrent interactions",
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (cold pool p99 {cold_p99 * 1000:.0f} ms)",
            f"fake REST p50 {b50 * 1000:.0f} ms, p99 {b99 * 1000:.0f} ms",
            p99 / b99 if b99 else 0.0,
            "p99 < 300 ms",
            p99 < 0.3 and acked == n,
        ),
        (
            f"discord: replies delivered, {n} concurrent interactions (x2)",
            f"{got}/{n} ({n - got} lost)",
            f"{n} dispatched",
            got / n,
            "no lost reply",
            got == n,
        ),
    ]


async def _rest_baseline_at(session: aiohttp.ClientSession, api_url: str, n: int) -> list[float]:
    """Latency of n simultaneous authenticated REST calls to the fake (its own floor)."""

    async def one() -> float:
        start = time.perf_counter()
        async with session.get(f"{api_url}/users/@me") as r:
            await r.read()
        return time.perf_counter() - start

    await asyncio.gather(*(one() for _ in range(n)))  # open the connections first
    return list(await asyncio.gather(*(one() for _ in range(n))))


async def rows() -> list[Row]:
    """The streaming rows: (name, measured, baseline, ratio, target, ok).

    Defer latency under a burst is bench_burst's (the mix, against `tokenbot run`);
    `concurrency_rows` stays for 500 chats on Discord alone.
    """
    return await streaming_rows()


async def _main() -> int:
    table = await rows()
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for name, measured, baseline, ratio, target, ok in table:
        print(
            f"| {name} | {measured} | {baseline} | {ratio:.3f} | {target} | {'pass' if ok else 'FAIL'} |"
        )
    return 0 if all(r[5] for r in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
