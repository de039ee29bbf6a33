"""The same mixed load against one and then two `tokenbot run` replicas on one PostgreSQL.

Each run is a fresh cluster (tests/replicas/cluster.py): the simulators, the fake Slack (HTTP
mode, requests spread round robin over the replicas as a load balancer would) and the fake
Discord (two shards: one replica holds both, or each holds one) in this process, every replica
a `python -m bot run` subprocess, on its own database of one PostgreSQL server. The mix is that
of the replica tests: chats, @mentions, searches, images, videos and OpenMarlin tasks on Slack,
and the same kinds (no mentions) as Discord slash commands, each in a conversation of its own.

Figures: throughput (commands with their result delivered, per second, from the first command
sent to the last result seen), its ratio two replicas ÷ one, and the Slack ack latency p50/p99
(the HTTP round trip of each signed request to /slack/events) for each; every result must be
delivered exactly once. Both runs share this machine's cores, so the ratio says how well two
processes share the work here, not how far a cluster of machines would scale.

`python -m bench.bench_replicas` prints the rows; BENCH_REPLICAS_SCALE multiplies the mix (3:
462 commands, about the replica test's 500).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_slack import _percentile
from bot.store import Owner
from tests.replicas.cluster import Cluster, ClusterOptions, Pacing, running_cluster
from tests.replicas.traffic import Sent, Traffic

Row = tuple[str, str, str, float, str, bool]

SCALE = max(1, int(os.environ.get("BENCH_REPLICAS_SCALE", "3")))
SHARDS = 2
SLACK_USERS = [f"UB{i:03d}" for i in range(20)]
DISCORD_USERS = 10
# Per run: Slack commands per kind, Discord commands per kind and shard (short ones dominate).
SLACK_MIX = {"chat": 60, "mention": 15, "search": 8, "image": 5, "video": 4, "task": 4}
DISCORD_MIX = {"chat": 20, "search": 3, "image": 2, "video": 2, "task": 2}
CONCURRENCY = 32
DELIVERY_TIMEOUT_S = 300.0
SLACK_COMMANDS = {
    "chat": ("/alltoken-chat", "hello number {n}"),
    "search": ("/alltoken-search", "news about {n}"),
    "image": ("/alltoken-image", "a lighthouse number {n}"),
    "video": ("/alltoken-video", "waves on a pier {n}"),
    "task": ("/openmarlin", "generate a video of plane {n}"),
}


@dataclass
class Run:
    """What one cluster did with the mix."""

    replicas: int
    commands: int
    seconds: float
    acks: list[float]
    wrong: int  # results missing, doubled or failed

    @property
    def throughput(self) -> float:
        """Commands delivered per second."""
        return self.commands / self.seconds if self.seconds else 0.0


def _plan(rng: random.Random) -> list[tuple[str, str, int]]:
    plan = [("slack", kind, i) for kind, n in SLACK_MIX.items() for i in range(n * SCALE)]
    plan += [
        ("discord", kind, shard)
        for kind, n in DISCORD_MIX.items()
        for shard in range(SHARDS)
        for _ in range(n * SCALE)
    ]
    rng.shuffle(plan)
    return plan


def _owners(cluster: Cluster) -> list[Owner]:
    slack = [cluster.slack_owner(u) for u in SLACK_USERS]
    return slack + [
        cluster.discord_owner(shard, k) for shard in range(SHARDS) for k in range(DISCORD_USERS)
    ]


async def _slack(traffic: Traffic, kind: str, user: str, acks: list[float]) -> None:
    """One Slack command (as `Traffic.slack`, but keeping its ack latency)."""
    c = traffic.cluster
    n = len(traffic.sent)
    sent = Sent(n, "slack", kind, f"CB{n:06d}", user)
    traffic.sent.append(sent)
    if kind == "mention":
        payload = c.slack_mention(f"alltoken chat hi number {n}", user=user, channel=sent.channel)
        delivery = await c.slack_post("events_api", payload)
    else:
        command, text = SLACK_COMMANDS[kind]
        delivery = await c.slack_command(command, text.format(n=n), user=user, channel=sent.channel)
    if delivery.status != 200:
        raise RuntimeError(f"Slack request answered {delivery.status}: {delivery.body[:200]}")
    acks.append(delivery.seconds)


async def _run(root: Path, database_url: str, replicas: int) -> Run:
    rng = random.Random(7)
    plan = _plan(rng)
    per_shard = sum(DISCORD_MIX.values()) * SCALE
    options = ClusterOptions(
        shard_count=SHARDS,
        discord_channels_per_shard=per_shard,
        lease_s=30.0,
        renew_s=10.0,
        pacing=Pacing(image_seconds=0.5, video_seconds=1.0, openmarlin_task_seconds=1.0),
        # The in-flight limits (5 long jobs a user, 50 a workspace) would refuse part of the
        # mix, whose every result this counts: throughput is measured with them off.
        extra_env={"TOKENBOT_MAX_JOBS_PER_USER": "0", "TOKENBOT_MAX_JOBS_PER_WORKSPACE": "0"},
    )
    async with running_cluster(root, options=options, database_url=database_url) as cluster:
        await cluster.seed_keys(*_owners(cluster))
        await cluster.start_replicas(replicas)
        traffic = Traffic(cluster, concurrency=CONCURRENCY)
        gate = asyncio.Semaphore(CONCURRENCY)
        acks: list[float] = []

        async def send(platform: str, kind: str, i: int) -> None:
            async with gate:
                if platform == "slack":
                    await _slack(traffic, kind, rng.choice(SLACK_USERS), acks)
                else:
                    await traffic.discord(kind, i, rng.randrange(DISCORD_USERS))

        began = time.perf_counter()
        await asyncio.gather(*(send(*step) for step in plan))
        await traffic.wait_delivered(DELIVERY_TIMEOUT_S)
        seconds = time.perf_counter() - began
        await traffic.wait_quiet()  # late duplicates would show now
        return Run(replicas, len(plan), seconds, acks, len(traffic.wrong()))


async def measure() -> tuple[Run, Run]:
    """The mix against one replica, then two, each on a fresh database of one server."""
    from tests.store.postgres_server import start_test_postgres

    server = await asyncio.to_thread(start_test_postgres)
    try:
        runs: list[Run] = []
        with tempfile.TemporaryDirectory() as tmp:
            for count in (1, 2):
                name, url = await server.create_database()
                try:
                    runs.append(await _run(Path(tmp) / f"cluster-{count}", url, count))
                finally:
                    await server.drop_database(name)
        return runs[0], runs[1]
    finally:
        await asyncio.to_thread(server.stop)


def replica_rows(one: Run, two: Run) -> list[Row]:
    """Rows of one `measure()`."""
    ratio = two.throughput / one.throughput if one.throughput else float("nan")
    rows: list[Row] = [
        (
            f"replicas: {one.commands} mixed commands (Slack + Discord), 2 replicas ÷ 1",
            f"{two.throughput:.1f} commands/s with 2 ({two.seconds:.1f} s)",
            f"{one.throughput:.1f} commands/s with 1 ({one.seconds:.1f} s); "
            f"{os.cpu_count()} cores shared by every process",
            ratio,
            "reported",
            True,
        )
    ]
    for run in (one, two):
        rows.append(
            (
                f"replicas: Slack ack latency p50 / p99, {run.replicas} replica(s)",
                f"{_percentile(run.acks, 0.5) * 1000:.0f} / "
                f"{_percentile(run.acks, 0.99) * 1000:.0f} ms",
                f"{len(run.acks)} signed requests, round robin; the fakes share the sender's process",
                float("nan"),
                "reported",
                True,
            )
        )
    rows.append(
        (
            "replicas: results delivered exactly once, 1 and 2 replicas",
            f"{one.wrong} + {two.wrong} missing, doubled or failed",
            f"{one.commands} commands per run",
            float(one.wrong + two.wrong),
            "= 0",
            one.wrong == two.wrong == 0,
        )
    )
    return rows


async def rows() -> list[Row]:
    """The benchmark rows: (name, measured, baseline, ratio, target, ok)."""
    return replica_rows(*await measure())


async def _main() -> int:
    table = await rows()
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for name, measured, baseline, ratio, target, ok in table:
        result = "" if target == "reported" else ("pass" if ok else "FAIL")
        ratio_text = f"{ratio:.3f}" if ratio == ratio else ""
        print(f"| {name} | {measured} | {baseline} | {ratio_text} | {target} | {result} |")
    return 0 if all(r[5] for r in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
