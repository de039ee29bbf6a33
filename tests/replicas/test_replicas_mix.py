"""Two `tokenbot run` processes on one PostgreSQL, ~500 mixed commands, one replica SIGKILLed.

Slack (HTTP mode) requests are spread round robin over both replicas' endpoints, as a load
balancer would; Discord commands go to the guilds of both shards. Each replica's long jobs
(images, videos, OpenMarlin tasks) are held unfinished in the simulators while replica r0 is
killed; its Slack traffic then goes to the survivor and a replacement takes its shard. Every
result must arrive exactly once, every image be read once, every purchase be charged once.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.store import Owner
from tests.replicas.cluster import LONG_JOB_KINDS, Cluster, ClusterOptions, running_cluster
from tests.replicas.traffic import LONG_KINDS, Sent, Traffic

SLACK_USERS = [f"U{i:03d}" for i in range(20)]
DISCORD_USERS = 10
# One round of traffic (sent twice: before and after the kill). Slack: per kind; Discord:
# per kind and shard. Long jobs are few and chats many, as in a real workspace.
SLACK_ROUND = {"chat": 92, "mention": 20, "search": 10, "image": 6, "video": 5, "task": 5, "buy": 4}
DISCORD_ROUND = {"chat": 40, "search": 5, "image": 3, "video": 2, "task": 2, "buy": 2}
RETRIED_MENTIONS = 10  # per round, delivered again (X-Slack-Retry-Num) to the other replica


def _owners(cluster: Cluster) -> list[Owner]:
    slack = [cluster.slack_owner(u) for u in SLACK_USERS]
    discord = [
        cluster.discord_owner(shard, k)
        for shard in range(cluster.options.shard_count)
        for k in range(DISCORD_USERS)
    ]
    return slack + discord


async def _round(traffic: Traffic, rng: random.Random, shards: int) -> list[Sent]:
    """One round of mixed commands, shuffled, sent concurrently; purchases double-clicked."""
    plan: list[tuple[str, str, int]] = [
        ("slack", kind, i) for kind, n in SLACK_ROUND.items() for i in range(n)
    ]
    plan += [
        ("discord", kind, shard)
        for kind, n in DISCORD_ROUND.items()
        for shard in range(shards)
        for _ in range(n)
    ]
    rng.shuffle(plan)

    async def send(platform: str, kind: str, i: int) -> Sent:
        if platform == "slack":
            retry = kind == "mention" and i < RETRIED_MENTIONS
            return await traffic.slack(kind, rng.choice(SLACK_USERS), retry_on_other=retry)
        return await traffic.discord(kind, i, rng.randrange(DISCORD_USERS))

    sent = await traffic.all(send(*step) for step in plan)
    await traffic.all(traffic.double_click(s) for s in sent if s.kind == "buy")
    return sent


@pytest.mark.slow(28)
async def test_two_replicas_one_killed_deliver_everything_exactly_once(
    tmp_path: Path, postgres_url: str
) -> None:
    rng = random.Random(11)
    options = ClusterOptions(
        discord_channels_per_shard=120,
        lease_s=3.0,
        renew_s=1.0,
        # The mix gives some users more long jobs than the in-flight limit allows, and every
        # result is counted: the limits are tested in tests/integration/test_job_limits.py.
        extra_env={"TOKENBOT_MAX_JOBS_PER_USER": "0", "TOKENBOT_MAX_JOBS_PER_WORKSPACE": "0"},
    )
    async with running_cluster(tmp_path, options=options, database_url=postgres_url) as cluster:
        await cluster.seed_keys(*_owners(cluster))
        await cluster.start_replicas(2)  # r0 holds shard 0, r1 shard 1
        traffic = Traffic(cluster)

        # Round 1: the long jobs stay in flight until r0 is dead.
        cluster.hold_long_jobs()
        await _round(traffic, rng, options.shard_count)
        quick = {"chat", "mention", "search", "buy"}
        await traffic.wait_delivered(kinds=quick)
        long_jobs = sum(traffic.count(kind) for kind in LONG_KINDS)
        rows = await cluster.wait_long_jobs_in_flight(long_jobs)
        assert len(rows) == long_jobs == cluster.long_jobs_submitted()
        victims = [r for r in rows if r["claimed_by"] == "r0"]
        assert {r["kind"] for r in victims} == LONG_JOB_KINDS, rows

        await cluster.kill("r0")
        # Its Slack share now goes to r1; its shard to a replacement.
        await cluster.start_replica("r0b", (0,))
        cluster.release_long_jobs()

        # Round 2 on the survivor and the replacement, with short long jobs.
        await _round(traffic, rng, options.shard_count)
        await traffic.wait_delivered(timeout=180)
        rows = await cluster.wait_jobs_finished()
        await traffic.wait_quiet()

        assert len(traffic.sent) >= 500
        assert traffic.wrong() == []
        assert cluster.unexpected_exits() == []
        # Nothing submitted twice: the replica taking a job over resumed its saved task.
        stats = cluster.alltoken.stats
        assert stats.image_submissions == traffic.count("image")
        assert stats.video_submissions == traffic.count("video")
        assert len(cluster.openmarlin._tasks) == traffic.count("task")
        # Every AllToken image read once (a second read would be a 410).
        assert len(stats.b64_deliveries) == traffic.count("image")
        assert set(stats.b64_deliveries.values()) == {1}
        assert not [e for e in stats.errors if e[0] == 410], stats.errors
        # Double-clicked Confirms charged once each.
        assert cluster.openclaw.stats["purchases"] == traffic.count("buy")
        # The killed replica's jobs were taken over and finished by the others.
        final = {r["id"]: r for r in rows}
        for victim in victims:
            row = final[victim["id"]]
            assert row["status"] == "done" and row["claimed_by"] in ("r1", "r0b"), row
        assert all(r["status"] == "done" for r in rows), [r for r in rows if r["status"] != "done"]
        # Retries reached the other replica and were dropped there, not run again: at once when
        # that replica had seen the delivery itself, else once the store said "seen" (the ack
        # does not wait for the store; the work does).
        dropped = sum(
            r.log().count("dropped a repeated delivery")
            + r.log().count("another replica already took this delivery")
            for r in cluster.replicas.values()
        )
        assert dropped == sum(1 for s in traffic.sent if s.retried)
