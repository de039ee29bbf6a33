"""Mixed load through the Slack fake and the Discord fake, and poll efficiency under a budget.

- Load: N concurrent mixed commands (chat, search, models, cost, image, video, OpenMarlin
  execution, OpenClaw balance) from 200 users, half as signed Slack slash commands (sent from a
  separate process, one connection each) and half as Discord interactions (the fake Discord in
  its own process dispatches them at once). One bot process serves both platforms. Figures:
  lost replies (target 0), ack latency p50/p99 on each platform against the fakes' own latency
  under the same burst, peak RSS against the same process idle, and backend requests per
  image/video job (from the AllToken simulator's stats).
- Polling: V pending videos (the simulator keeps them pending for a while) under
  TOKENBOT_MAX_POLLS_PER_SECOND = B: the highest rate of GET /v1/videos/generations/{id} over
  any 2 s window stays within B, and every video is still delivered.

`python -m bench.bench_load` prints the rows; BENCH_LOAD_COMMANDS / BENCH_LOAD_VIDEOS scale it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from adapters.discord.runner import DiscordRunner, start_discord
from bench.bench_discord import _rest_baseline_at, fake_process
from bench.bench_slack import _fire, _percentile
from bot.core.app import TokenBot
from bot.core.messages import Inbound, Link
from bot.core.settings import Settings
from bot.store import Owner
from tests.fakes.conversation import RecordingConversation
from tests.fakes.discord import BOT_TOKEN as DISCORD_BOT_TOKEN
from tests.fakes.slack import TEAM, FakeSlack, SlackHarness, encode, signed_headers, slash_command

Row = tuple[str, str, str, float, str, bool]

COMMANDS = int(os.environ.get("BENCH_LOAD_COMMANDS", "1000"))
USERS = 200
VIDEOS = int(os.environ.get("BENCH_LOAD_VIDEOS", "1000"))
POLL_BUDGET = float(os.environ.get("BENCH_LOAD_POLL_BUDGET", "100"))
ACK_P99_TARGET_S = 0.300
VIDEO_GET = "GET /v1/videos/generations/{id}"
IMAGE_GET = "GET /v1/images/generations/{id}"

# (Slack command, text) and (Discord command, options), the same eight kinds on both sides.
SLACK_MIX: list[tuple[str, str]] = [
    ("/alltoken-chat", "one line on tides {k}"),
    ("/alltoken-search", "tide tables {k}"),
    ("/alltoken-models", "--type=image"),
    ("/alltoken-cost", ""),
    ("/alltoken-image", "a lighthouse, take {k}"),
    ("/alltoken-video", "waves on a pier {k} --duration=4"),
    ("/openmarlin", "say hello {k}"),
    ("/openclaw-token", "credits balance"),
]
DISCORD_MIX: list[dict[str, Any]] = [
    {"name": "alltoken-chat", "options": {"prompt": "one line on tides {k}"}},
    {"name": "alltoken-search", "options": {"query": "tide tables {k}"}},
    {"name": "alltoken-models", "options": {"type": "image"}},
    {"name": "alltoken-cost", "options": {}},
    {"name": "alltoken-image", "options": {"prompt": "a lighthouse, take {k}"}},
    {"name": "alltoken-video", "options": {"prompt": "waves on a pier {k}", "duration": 4}},
    {"name": "openmarlin", "subcommand": "run", "options": {"instruction": "say hello {k}"}},
    {"name": "openclaw-token", "subcommand": "credits balance", "options": {}},
]


@contextmanager
def sims(**env: str) -> Iterator[dict[str, Any]]:
    """`tokenbot sim` in its own process with TOKENBOT_SIM_* overrides; yields its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sim"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TOKENBOT_SIM_TOKENS_PER_SECOND": "0", **env},
    )
    try:
        assert proc.stdout is not None
        ready: dict[str, Any] = json.loads(proc.stdout.readline())
        yield ready
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> dict[str, Any]:
    async with http.request(method, url, **kw) as r:
        r.raise_for_status()
        data: dict[str, Any] = await r.json()
        return data


def _rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()


async def _keys(bot: TokenBot, owners: list[Owner], keys: dict[str, str]) -> None:
    for owner in owners:
        for service, key in keys.items():
            await bot.store.put_credential(owner, service, key)


def _slack_requests(
    fake: FakeSlack, n: int, users: int
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Signed slash commands, each in its own channel with its own response_url."""
    requests, where = [], []
    for k in range(n):
        name, text = SLACK_MIX[k % len(SLACK_MIX)]
        channel, response_url = f"CL{k:04d}", fake.new_response_url()
        payload = slash_command(
            name,
            text.replace("{k}", str(k)),
            user=f"UL{k % users:03d}",
            channel=channel,
            response_url=response_url,
        )
        body, ctype = encode("slash_commands", payload)
        requests.append({"body": body.decode(), "headers": signed_headers(body, ctype)})
        where.append((channel, response_url.rsplit("/", 1)[-1]))
    return requests, where


def _slack_answered(fake: FakeSlack, where: list[tuple[str, str]]) -> tuple[int, int]:
    """(answered, answered with a failure) over the commands sent."""
    replies: dict[str, list[str]] = {}
    for call in fake.calls:
        channel = str(call.args.get("channel") or call.args.get("channel_id") or "")
        if channel.startswith("CL") and call.method != "files.getUploadURLExternal":
            replies.setdefault(channel, []).append(json.dumps(call.args, default=str))
    for response in fake.responses:
        replies.setdefault(response.url_id, []).append(json.dumps(response.payload))
    answered = failed = 0
    for channel, url_id in where:
        got = replies.get(channel, []) + replies.get(url_id, [])
        answered += bool(got)
        failed += any("❌" in text for text in got)
    return answered, failed


async def _discord_burst(http: aiohttp.ClientSession, base: str, n: int, users: int) -> None:
    await _json(
        http,
        "POST",
        f"{base}/_fake/burst",
        json={"n": n, "users": users, "commands": DISCORD_MIX, "name": "mixed"},
    )


async def _discord_report(
    http: aiohttp.ClientSession, base: str, n: int, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report = await _json(http, "GET", f"{base}/_fake/burst", params={"needle": ""})
        if report["delivered"] >= n or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.25)


async def load(n: int = COMMANDS, users: int = USERS) -> dict[str, Any]:
    """n mixed commands at once, half through Slack and half through Discord."""
    n_slack, n_discord = n - n // 2, n // 2
    slack_users, discord_users = users - users // 2, users // 2
    env = {
        "TOKENBOT_SIM_IMAGE_SECONDS": "1",
        "TOKENBOT_SIM_VIDEO_SECONDS": "2",
    }
    with (
        sims(**env) as ready,
        fake_process() as discord,
        tempfile.TemporaryDirectory() as tmp,
    ):
        at, om = ready["alltoken_base_url"], ready["openmarlin_server_url"]
        base = discord["api_url"].removesuffix("/api/v10")
        http = aiohttp.ClientSession(headers={"Authorization": f"Bot {DISCORD_BOT_TOKEN}"})
        fake = await FakeSlack().start()
        harness = await SlackHarness.start(
            Path(tmp),
            at,
            fake=fake,
            shared_server=True,
            openmarlin_server_url=om,
            openclaw_token_api_base=ready["openclaw_token_api_base"],
            discord_token=DISCORD_BOT_TOKEN,
            discord_api_url=discord["api_url"],
            discord_gateway_url=discord["gateway_url"],
            log_level="WARNING",
        )
        runner: DiscordRunner | None = None
        try:
            bot = harness.bot
            keys = {
                "alltoken": (await _json(http, "POST", f"{at}/_sim/keys", json={"balance": 1e6}))[
                    "key"
                ],
                "openmarlin": (await _json(http, "POST", f"{om}/_sim/keys", json={"balance": 1e6}))[
                    "key"
                ],
                "openclaw_token": ready["demo_keys"]["openclaw_token"],
            }
            owners = [
                Owner(platform="slack", workspace=TEAM, user=f"UL{u:03d}")
                for u in range(slack_users)
            ]
            owners += [
                Owner(
                    platform="discord",
                    workspace=discord["guild_id"],
                    user=str(int(discord["alice_id"]) + 1000 + u),
                )
                for u in range(discord_users)
            ]
            await _keys(bot, owners, keys)
            runner = await start_discord(bot, bot.settings, guild_ready_timeout=0.05)
            await runner.wait_ready(15)
            requests, where = _slack_requests(fake, n_slack, slack_users)
            slack_base = await asyncio.to_thread(_fire, fake.api_url + "auth.test", requests)
            discord_base = await _rest_baseline_at(http, discord["api_url"], n_discord)
            before = await _json(http, "GET", f"{at}/_sim/stats")
            idle_rss = _current_rss_mb()
            started = time.perf_counter()
            acks, _ = await asyncio.gather(
                asyncio.to_thread(_fire, harness.runner.url, requests),
                _discord_burst(http, base, n_discord, discord_users),
            )
            report = await _discord_report(http, base, n_discord, 120)
            await harness.settle(120)
            elapsed = time.perf_counter() - started
            after = await _json(http, "GET", f"{at}/_sim/stats")
            answered, failed = _slack_answered(fake, where)
            peak_rss = _rss_mb()
        finally:
            await bot.jobs.aclose()
            if runner is not None:
                await runner.aclose()
            await harness.aclose()
            await http.close()

    def delta(key: str) -> int:
        return int(after["requests"].get(key, 0)) - int(before["requests"].get(key, 0))

    images = after["image_submissions"] - before["image_submissions"]
    videos = after["video_submissions"] - before["video_submissions"]
    discord_acks: list[float] = report["acked"]
    return {
        "n": n,
        "users": users,
        "slack_sent": n_slack,
        "slack_answered": answered,
        "slack_failed": failed,
        "slack_p50": statistics.median(acks),
        "slack_p99": _percentile(acks, 0.99),
        "slack_bad_acks": sum(math.isinf(a) for a in acks),
        "slack_base_p50": statistics.median(slack_base),
        "slack_base_p99": _percentile(slack_base, 0.99),
        "discord_sent": n_discord,
        "discord_answered": int(report["delivered"]),
        "discord_acked": len(discord_acks),
        "discord_p50": _percentile(discord_acks, 0.5) if discord_acks else math.inf,
        "discord_p99": _percentile(discord_acks, 0.99) if discord_acks else math.inf,
        "discord_base_p50": _percentile(discord_base, 0.5),
        "discord_base_p99": _percentile(discord_base, 0.99),
        "idle_rss_mb": idle_rss,
        "peak_rss_mb": peak_rss,
        "images": images,
        "videos": videos,
        "image_requests_per_job": (delta(IMAGE_GET) + delta("POST /v1/images/generations"))
        / max(images, 1),
        "video_requests_per_job": (delta(VIDEO_GET) + delta("POST /v1/videos/generations"))
        / max(videos, 1),
        "seconds": elapsed,
    }


async def polling(videos: int = VIDEOS, budget: float = POLL_BUDGET) -> dict[str, Any]:
    """`videos` pending at once under a poll budget: the peak poll rate, and all delivered."""
    # Long enough that every video is polled while pending at least once under the budget.
    video_seconds = max(2.0, videos / budget / 2)
    with (
        sims(TOKENBOT_SIM_VIDEO_SECONDS=f"{video_seconds:g}") as ready,
        tempfile.TemporaryDirectory() as tmp,
    ):
        at = ready["alltoken_base_url"]
        settings = Settings(
            alltoken_base_url=at,
            data_dir=Path(tmp),
            max_polls_per_second=budget,
            # The in-flight limits (5 a user, 50 a workspace) would refuse most of the videos:
            # this measures the poll budget, so every video must be pending at once.
            max_jobs_per_user=0,
            max_jobs_per_workspace=0,
            log_level="WARNING",
        )
        bot = await TokenBot.create(settings)
        convs: dict[str, RecordingConversation] = {}
        bot.register_platform(
            "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
        )
        http = aiohttp.ClientSession()
        try:
            key = (await _json(http, "POST", f"{at}/_sim/keys", json={"balance": 1e6}))["key"]
            inbounds = []
            for k in range(videos):
                inbound = Inbound(
                    platform="console",
                    workspace="load",
                    channel=f"V{k:04d}",
                    user=f"u{k % USERS}",
                    text=f"/alltoken-video waves {k} --duration=4",
                    is_direct=True,
                )
                inbounds.append(inbound)
            for u in range(min(USERS, videos)):
                await bot.store.put_credential(
                    Owner(platform="console", workspace="load", user=f"u{u}"), "alltoken", key
                )

            started = time.perf_counter()
            # All at once, so that every video is pending together (one by one, a slow disk
            # made the submissions outlast the first videos).
            await asyncio.gather(
                *(
                    bot.handle(
                        inbound,
                        convs.setdefault(
                            inbound.destination().conversation_key,
                            RecordingConversation(inbound.destination()),
                        ),
                    )
                    for inbound in inbounds
                )
            )
            done = await bot.jobs.wait_idle(videos / budget * 4 + 60)
            elapsed = time.perf_counter() - started
            stats = await _json(http, "GET", f"{at}/_sim/stats")
            delivered = sum(
                1
                for conv in convs.values()
                if any(isinstance(p, Link) for e in conv.events for p in e.parts)
            )
        finally:
            await bot.aclose()
            await http.close()
    # Timed by the simulator as each poll arrived, from the first submission on (sampling its
    # counters from here mistimed the windows by as much as this busy loop was late).
    peak = float(stats["peak_rates"].get(VIDEO_GET, 0.0))
    polls = int(stats["requests"].get(VIDEO_GET, 0))
    return {
        "videos": videos,
        "budget": budget,
        "video_seconds": video_seconds,
        "peak_rate": peak,
        "mean_rate": polls / elapsed,
        "polls_per_video": polls / videos,
        "delivered": delivered,
        "all_done": done,
        "seconds": elapsed,
    }


def load_rows(c: dict[str, Any]) -> list[Row]:
    """Rows of one `load()` run."""
    n, sent_s, sent_d = c["n"], c["slack_sent"], c["discord_sent"]
    got = c["slack_answered"] + c["discord_answered"]
    lost = n - got
    return [
        (
            f"load: {n} concurrent mixed commands, {c['users']} users (Slack + Discord), replies",
            f"{got}/{n} answered ({lost} lost; {c['slack_failed']} Slack replies were failures) "
            f"in {c['seconds']:.1f} s",
            f"{n} sent ({sent_s} Slack, {sent_d} Discord)",
            got / n,
            "= 1.0, no lost reply",
            lost == 0 and c["slack_bad_acks"] == 0,
        ),
        (
            f"load: Slack ack latency p50 / p99 ({sent_s} of the mix)",
            f"{c['slack_p50'] * 1000:.0f} / {c['slack_p99'] * 1000:.0f} ms",
            f"fake Slack {c['slack_base_p50'] * 1000:.0f} / {c['slack_base_p99'] * 1000:.0f} ms; "
            f"ratio is p99 / {ACK_P99_TARGET_S * 1000:.0f} ms",
            c["slack_p99"] / ACK_P99_TARGET_S,
            # Issue 7 asks for these figures; the 300 ms target is for 500 on one platform
            # (the slack:/discord: rows). Here the fake Slack shares the bot's process.
            "reported",
            True,
        ),
        (
            f"load: Discord defer latency p50 / p99 ({sent_d} of the mix)",
            f"{c['discord_p50'] * 1000:.0f} / {c['discord_p99'] * 1000:.0f} ms",
            f"fake Discord REST {c['discord_base_p50'] * 1000:.0f} / "
            f"{c['discord_base_p99'] * 1000:.0f} ms; ratio is p99 / {ACK_P99_TARGET_S * 1000:.0f} ms",
            c["discord_p99"] / ACK_P99_TARGET_S,
            "reported",
            c["discord_acked"] == sent_d,
        ),
        (
            "load: peak RSS of the bot process (fake Slack in-process)",
            f"{c['peak_rss_mb']:.0f} MB",
            f"{c['idle_rss_mb']:.0f} MB idle, same process",
            c["peak_rss_mb"] / c["idle_rss_mb"],
            "reported",
            True,
        ),
        (
            f"load: AllToken requests per image job ({c['images']} jobs, 1 s each)",
            f"{c['image_requests_per_job']:.1f}",
            "1 submit + ~1 poll a second (next_poll_after_ms / Retry-After) + the read",
            c["image_requests_per_job"] / 5,
            "≤ 5",
            c["image_requests_per_job"] <= 5,
        ),
        (
            f"load: AllToken requests per video job ({c['videos']} jobs, 2 s each)",
            f"{c['video_requests_per_job']:.1f}",
            "1 submit + 1 poll per 2 s",
            c["video_requests_per_job"] / 4,
            "≤ 4",
            c["video_requests_per_job"] <= 4,
        ),
    ]


def polling_rows(p: dict[str, Any]) -> list[Row]:
    """Rows of one `polling()` run."""
    ok_rate = p["peak_rate"] <= p["budget"] * 1.05
    return [
        (
            f"polling: {p['videos']} pending videos, peak GET rate in any 2 s (simulator-timed)",
            f"{p['peak_rate']:.0f} polls/s (mean {p['mean_rate']:.0f}/s, "
            f"{p['polls_per_video']:.1f} per video)",
            f"TOKENBOT_MAX_POLLS_PER_SECOND = {p['budget']:g}",
            p["peak_rate"] / p["budget"],
            "≤ 1.0 (+5%: transit jitter)",
            ok_rate,
        ),
        (
            f"polling: {p['videos']} videos delivered under the budget",
            f"{p['delivered']}/{p['videos']} in {p['seconds']:.1f} s",
            f"{p['videos']} submitted ({p['video_seconds']:g} s each)",
            p["delivered"] / p["videos"],
            "= 1.0",
            p["delivered"] == p["videos"] and p["all_done"],
        ),
    ]


async def rows() -> list[Row]:
    """The polling rows: (name, measured, baseline, ratio, target, ok).

    The mixed burst is bench_burst's, against `tokenbot run` with the fakes and the generator
    out of its process; `load()` (the bot in this process) stays for tests/load's smoke test.
    """
    return polling_rows(await polling())


async def _main() -> int:
    table = await rows()
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for name, measured, baseline, ratio, target, ok in table:
        result = "" if target == "reported" else ("pass" if ok else "FAIL")
        print(f"| {name} | {measured} | {baseline} | {ratio:.3f} | {target} | {result} |")
    return 0 if all(r[5] for r in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
