"""1,000 mixed commands at once against a real `tokenbot run`, and its memory with 1,000 of each.

The bot is a `python -m bot run` subprocess (tests/replicas/cluster.py, one replica, SQLite as
a single deployment has it); the simulators and the fake Slack and Discord run in this process,
and the Slack requests come from a third process (bench_slack's `_fire`, one connection each,
like Slack), so neither the generator nor the fakes share the bot's event loop.

Per repeat: 500 signed Slack slash commands and 500 Discord interactions of the same eight
kinds (chat, search, models, cost, image, video, OpenMarlin, OpenClaw balance) from 200 users,
sent together. Baselines in the same repeat: the fake Slack answering the same 500 requests
from the same generator (auth.test: no work at all), and the fake Discord's REST latency under
500 simultaneous calls. Before tokenbot starts, the same bursts go to bench/bare_acks.py (the
libraries alone: bolt acking, discord.py deferring, no work), reported as the floor. Gates
(median of the repeats, spread min–max): Slack ack p99 < 300 ms and ≤ 1.5 × the fake's p99;
Discord defer p99 < 300 ms; every reply delivered.

The bursts run with the default settings (in-flight limits of 5 long jobs a user and 50 a
workspace included: a refused job's reply counts as delivered). Memory: a fresh `tokenbot run`
with the in-flight limits off, its RSS (/proc/<pid>/status) idle, then with 1,000
conversations that each had a chat and then an image held pending in the simulator (1,000
pending jobs), reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp

from bench.bench_discord import _rest_baseline_at
from bench.bench_load import SLACK_MIX  # the same eight kinds as the in-process load test
from bench.bench_slack import _fire
from bench.gates import REPEATS, Row, Sample, gated_row, percentile, ratios, reported_row
from bench.profile import profile_dir, profiled, read_collapsed
from tests.fakes.discord import BOT_TOKEN as DISCORD_BOT_TOKEN
from tests.fakes.discord import LOADING
from tests.fakes.slack import encode, signed_headers, slash_command
from tests.replicas.cluster import Cluster, ClusterOptions, Pacing, Replica, running_cluster

N_SLACK = 500
N_DISCORD = 500
USERS = 200
CONVERSATIONS = 1000
ACK_P99_TARGET_MS = 300.0
ACK_VS_FAKE_TARGET = 1.5
DELIVERY_TIMEOUT_S = 60.0
_UNLIMITED = {"TOKENBOT_MAX_JOBS_PER_USER": "0", "TOKENBOT_MAX_JOBS_PER_WORKSPACE": "0"}

DISCORD_MIX: list[tuple[str, str | None, dict[str, Any]]] = [
    ("alltoken-chat", None, {"prompt": "one line on tides {k}"}),
    ("alltoken-search", None, {"query": "tide tables {k}"}),
    ("alltoken-models", None, {"type": "image"}),
    ("alltoken-cost", None, {}),
    ("alltoken-image", None, {"prompt": "a lighthouse, take {k}"}),
    ("alltoken-video", None, {"prompt": "waves on a pier {k}", "duration": 4}),
    ("openmarlin", "run", {"instruction": "say hello {k}"}),
    ("openclaw-token", "credits balance", {}),
]


@dataclass
class Repeat:
    """One burst: latencies (seconds) and deliveries."""

    slack_acks: list[float]
    slack_base: list[float]
    discord_acks: list[float]
    discord_base: list[float]
    slack_answered: int
    discord_answered: int
    seconds: float


@dataclass
class Burst:
    """Every repeat, and the memory figures."""

    repeats: list[Repeat] = field(default_factory=list)
    idle_rss_mb: float = 0.0
    after_bursts_rss_mb: float = 0.0
    loaded_rss_mb: float = 0.0
    pending_jobs: int = 0
    conversations: int = 0
    # The same bursts against bench/bare_acks.py: (Slack acks, Discord defers) per repeat.
    bare: list[tuple[list[float], list[float]]] = field(default_factory=list)


def _slack_user(u: int) -> str:
    return f"UL{u:03d}"


def _slack_requests(
    cluster: Cluster, tag: str, items: list[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """Signed slash commands (command, text, channel), each with its own response_url."""
    out = []
    for k, (command, text, channel) in enumerate(items):
        payload = slash_command(
            command,
            text.replace("{k}", f"{tag}{k}"),
            user=_slack_user(k % (USERS // 2)),
            channel=channel,
            response_url=cluster.slack.new_response_url(),
        )
        body, ctype = encode("slash_commands", payload)
        out.append({"body": body.decode(), "headers": signed_headers(body, ctype)})
    return out


def _slack_answered(cluster: Cluster, channels: set[str], url_ids: set[str]) -> int:
    """How many of the commands (one channel and response_url each) got any reply."""
    seen: set[str] = set()
    for call in cluster.slack.calls:
        channel = str(call.args.get("channel") or call.args.get("channel_id") or "")
        if channel in channels:
            seen.add(channel)
    by_url = {r.url_id for r in cluster.slack.responses if r.url_id in url_ids}
    return len(seen) + len(by_url)


def _url_id(request: dict[str, Any]) -> str:
    body = request["body"]
    start = body.index("response_url=") + len("response_url=")
    end = body.find("&", start)
    return unquote(body[start : end if end != -1 else None]).rsplit("/", 1)[-1]


async def _discord_burst(cluster: Cluster, tag: str) -> list[Any]:
    async def one(k: int) -> Any:
        name, sub, options = DISCORD_MIX[k % len(DISCORD_MIX)]
        filled: dict[str, Any] = {
            key: v.replace("{k}", f"{tag}{k}") if isinstance(v, str) else v
            for key, v in options.items()
        }
        user = cluster.discord_user(k % (USERS // 2))
        return await cluster.discord_slash(0, name, user=user, subcommand=sub, **filled)

    return list(await asyncio.gather(*(one(k) for k in range(N_DISCORD))))


def _discord_answered(cluster: Cluster, interactions: list[Any]) -> int:
    done = 0
    for i in interactions:
        replies = cluster.discord.replies(i)
        done += bool(replies) and all(not int(m["flags"]) & LOADING for m in replies)
    return done


def _slack_items(index: int) -> list[tuple[str, str, str]]:
    """The burst's slash commands: (command, text, channel), one channel each."""
    return [
        (cmd, text, f"CB{index}{k:04d}")
        for k, (cmd, text) in ((k, SLACK_MIX[k % len(SLACK_MIX)]) for k in range(N_SLACK))
    ]


async def _bare_repeat(
    cluster: Cluster, bare: Replica, index: int
) -> tuple[list[float], list[float]]:
    """One burst against the libraries alone: Slack ack and Discord defer latencies."""
    tag = f"b{index}-"
    requests = _slack_requests(cluster, tag, _slack_items(index))
    acks, interactions = await asyncio.gather(
        asyncio.to_thread(_fire, bare.events_url, requests), _discord_burst(cluster, tag)
    )
    await asyncio.sleep(1.0)  # the last callbacks land before the next burst
    defers = [i.callback_at - i.dispatched_at for i in interactions if i.callback_at is not None]
    return acks, defers


async def _one_repeat(
    cluster: Cluster, replica: Replica, index: int, http: aiohttp.ClientSession
) -> Repeat:
    tag = f"r{index}-"
    items = _slack_items(index)
    channels = {c for _, _, c in items}
    base_requests = _slack_requests(cluster, tag, items)
    slack_base = await asyncio.to_thread(_fire, cluster.slack.api_url + "auth.test", base_requests)
    discord_base = await _rest_baseline_at(http, cluster.discord.api_url, N_DISCORD)
    requests = _slack_requests(cluster, tag, items)  # fresh response_urls and signatures
    url_ids = {_url_id(r) for r in requests}
    where = profile_dir()
    sampling = (
        profiled(replica.process.pid, where / f"burst-{index}.txt")
        if where is not None
        else contextlib.nullcontext()
    )
    # The profile covers the ack window (until every Slack request is acked and every
    # interaction sent): what an ack waits for is the question.
    async with sampling:
        began = time.perf_counter()
        acks, interactions = await asyncio.gather(
            asyncio.to_thread(_fire, replica.events_url, requests), _discord_burst(cluster, tag)
        )
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        s = _slack_answered(cluster, channels, url_ids)
        d = _discord_answered(cluster, interactions)
        if s >= N_SLACK and d >= N_DISCORD:
            break
        await asyncio.sleep(0.25)
    seconds = time.perf_counter() - began
    if where is not None:
        profile = read_collapsed((where / f"burst-{index}.txt").read_text())
        (where / f"burst-{index}-top.txt").write_text(profile.top(25) + "\n")
        print(f"bench_burst: repeat {index + 1} profile\n{profile.top(15)}", file=sys.stderr)
    discord_acks = [
        i.callback_at - i.dispatched_at for i in interactions if i.callback_at is not None
    ]
    return Repeat(
        acks,
        slack_base,
        discord_acks,
        discord_base,
        _slack_answered(cluster, channels, url_ids),
        _discord_answered(cluster, interactions),
        seconds,
    )


def rss_mb(pid: int) -> float:
    """A process's resident set size now (MB), from /proc (NaN where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def _memory(cluster: Cluster, replica: Replica, result: Burst) -> None:
    """1,000 conversations with a chat each, then an image each held pending."""
    pid = replica.process.pid
    chats = [("/alltoken-chat", "remember tides {k}", f"CM{k:04d}") for k in range(CONVERSATIONS)]
    await asyncio.to_thread(_fire, replica.events_url, _slack_requests(cluster, "m-", chats))
    channels = {c for _, _, c in chats}
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while _slack_answered(cluster, channels, set()) < CONVERSATIONS:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    result.conversations = _slack_answered(cluster, channels, set())
    submitted = cluster.long_jobs_submitted()
    cluster.hold_long_jobs()
    images = [("/alltoken-image", "tide pool {k}", f"CM{k:04d}") for k in range(CONVERSATIONS)]
    await asyncio.to_thread(_fire, replica.events_url, _slack_requests(cluster, "i-", images))
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while cluster.long_jobs_submitted() - submitted < CONVERSATIONS:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # the job rows and their pollers settle
    result.pending_jobs = cluster.long_jobs_submitted() - submitted
    result.loaded_rss_mb = rss_mb(pid)


async def measure(repeats: int = REPEATS) -> Burst:
    """The bursts, then the memory phase, on one `tokenbot run`."""
    result = Burst()
    options = ClusterOptions(
        shard_count=1,
        pacing=Pacing(image_seconds=1.0, video_seconds=2.0, openmarlin_task_seconds=1.0),
        stop_timeout_s=20.0,
        # The production lease (30 s, renewed every 10 s), not the replica tests' 3 s: with
        # 1,000 pending jobs writing their state, one SQLite store answered a renewal in more
        # than 3 s, and a 3 s lease then stopped and resumed all of them over and over.
        lease_s=30.0,
        renew_s=10.0,
        # BENCH_BOT_TOKENBOT_X=v runs the bot with TOKENBOT_X=v (a setting's effect, measured).
        extra_env={
            k.removeprefix("BENCH_BOT_"): v
            for k, v in os.environ.items()
            if k.startswith("BENCH_BOT_TOKENBOT_")
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'bench.db'}"
        async with running_cluster(root, options=options, database_url=url) as cluster:
            owners = [cluster.slack_owner(_slack_user(u)) for u in range(USERS // 2)]
            owners += [cluster.discord_owner(0, k) for k in range(USERS // 2)]
            await cluster.seed_keys(*owners, alltoken_usd=1e6)
            # First the libraries alone (they hold shard 0 until stopped), then tokenbot.
            bare = await cluster.start_replica("bare", (0,), argv=("-m", "bench.bare_acks"))
            for index in range(repeats):
                result.bare.append(await _bare_repeat(cluster, bare, index))
            print(f"bench_burst: {repeats} bursts against the libraries alone", file=sys.stderr)
            await cluster.terminate(bare.name)
            [replica] = await cluster.start_replicas(1)
            headers = {"Authorization": f"Bot {DISCORD_BOT_TOKEN}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                for index in range(repeats):
                    result.repeats.append(await _one_repeat(cluster, replica, index, http))
                    print(f"bench_burst: repeat {index + 1}/{repeats} done", file=sys.stderr)
            result.after_bursts_rss_mb = rss_mb(replica.process.pid)
            await cluster.terminate(replica.name)
            # A fresh process for the memory figure, the in-flight limits off (their defaults,
            # 5 a user and 50 a workspace, would refuse most of 1,000 pending jobs).
            memory = await cluster.start_replica("m0", (0,), env=_UNLIMITED)
            await asyncio.sleep(1.0)
            result.idle_rss_mb = rss_mb(memory.process.pid)
            await _memory(cluster, memory, result)
    return result


def burst_rows(b: Burst) -> list[Row]:
    """Rows of one `measure()`."""
    reps = b.repeats
    s99 = Sample.of([percentile(r.slack_acks, 0.99) * 1000 for r in reps])
    s50 = Sample.of([percentile(r.slack_acks, 0.5) * 1000 for r in reps])
    f99 = Sample.of([percentile(r.slack_base, 0.99) * 1000 for r in reps])
    d99 = Sample.of([percentile(r.discord_acks, 0.99) * 1000 for r in reps])
    d50 = Sample.of([percentile(r.discord_acks, 0.5) * 1000 for r in reps])
    r99 = Sample.of([percentile(r.discord_base, 0.99) * 1000 for r in reps])
    vs_fake = ratios(list(s99.values), list(f99.values))
    b99 = Sample.of([percentile(acks, 0.99) * 1000 for acks, _ in b.bare])
    bd99 = Sample.of([percentile(defers, 0.99) * 1000 for _, defers in b.bare])
    n = N_SLACK + N_DISCORD
    all_slack = all(r.slack_answered == N_SLACK and len(r.slack_acks) == N_SLACK for r in reps)
    slack_ok = all_slack and all(a != float("inf") for r in reps for a in r.slack_acks)
    discord_ok = all(len(r.discord_acks) == N_DISCORD for r in reps)
    delivered = Sample.of([(r.slack_answered + r.discord_answered) / n for r in reps])
    out = [
        gated_row(
            f"burst: Slack ack p99, {n} mixed commands ({N_SLACK} Slack), `tokenbot run`, "
            "generator out of process",
            f"p99 {s99.text('.0f', ' ms')}; p50 {s50.median:.0f} ms",
            f"fake Slack p99 {f99.text('.0f', ' ms')}",
            s99,
            "<",
            ACK_P99_TARGET_MS,
            also=slack_ok,
        ),
        gated_row(
            "burst: Slack ack p99 ÷ the fake Slack's own p99 (same burst, same generator)",
            f"{vs_fake.median:.2f} ×",
            f"fake p99 {f99.median:.0f} ms",
            vs_fake,
            "<=",
            ACK_VS_FAKE_TARGET,
        ),
        gated_row(
            f"burst: Discord defer p99, same mix ({N_DISCORD} interactions)",
            f"p99 {d99.text('.0f', ' ms')}; p50 {d50.median:.0f} ms",
            f"fake Discord REST p99 {r99.text('.0f', ' ms')}",
            d99,
            "<",
            ACK_P99_TARGET_MS,
            also=discord_ok,
        ),
        reported_row(
            "burst: Slack ack p99, slack-bolt alone acking the same burst (bench/bare_acks.py)",
            f"p99 {b99.text('.0f', ' ms')}",
            f"tokenbot p99 {s99.median:.0f} ms",
            s99.median / b99.median if b99.median else float("nan"),
        ),
        reported_row(
            "burst: Discord defer p99, discord.py alone deferring the same burst",
            f"p99 {bd99.text('.0f', ' ms')}",
            f"tokenbot p99 {d99.median:.0f} ms",
            d99.median / bd99.median if bd99.median else float("nan"),
        ),
        gated_row(
            f"burst: {n} mixed commands, replies delivered",
            f"{min(r.slack_answered + r.discord_answered for r in reps)}/{n} at worst, "
            f"{max(r.seconds for r in reps):.1f} s at worst",
            f"{n} sent per repeat",
            delivered,
            "==",
            1.0,
            also=all(r.slack_answered + r.discord_answered == n for r in reps),
        ),
        reported_row(
            f"memory: RSS of `tokenbot run` with {b.conversations} conversations "
            f"and {b.pending_jobs} pending jobs",
            f"{b.loaded_rss_mb:.0f} MB",
            f"{b.idle_rss_mb:.0f} MB idle (a fresh process, in-flight limits off); the burst's "
            f"process: {b.after_bursts_rss_mb:.0f} MB after {len(reps)} bursts of {n}",
            b.loaded_rss_mb / b.idle_rss_mb if b.idle_rss_mb else float("nan"),
        ),
    ]
    return out


async def rows() -> list[Row]:
    """The benchmark rows: (name, measured, baseline, ratio, target, ok)."""
    return burst_rows(await measure())


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(asyncio.run(main(["bench_burst"])))
