"""A rolling deploy: replica A runs long jobs, B starts, A stops gracefully (SIGTERM) and hands
its claims back; B takes the jobs over at once and finishes them. Nothing lost, nothing doubled."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.replicas.cluster import ClusterOptions, running_cluster
from tests.replicas.traffic import LONG_KINDS, Traffic

SLACK_USERS = ["U001", "U002", "U003"]


@pytest.mark.slow(24)
async def test_a_graceful_stop_hands_long_jobs_to_the_new_replica(
    tmp_path: Path, postgres_url: str
) -> None:
    # A lease far longer than the test: B can only have A's jobs because A handed them back.
    options = ClusterOptions(discord_channels_per_shard=12, lease_s=600.0, renew_s=0.5)
    async with running_cluster(tmp_path, options=options, database_url=postgres_url) as cluster:
        owners = [cluster.slack_owner(u) for u in SLACK_USERS]
        owners += [cluster.discord_owner(shard, 0) for shard in range(options.shard_count)]
        await cluster.seed_keys(*owners)
        await cluster.start_replica("a", (0, 1))
        traffic = Traffic(cluster)
        rng = random.Random(7)

        cluster.hold_long_jobs()
        sends = [
            traffic.slack(kind, rng.choice(SLACK_USERS)) for kind in LONG_KINDS for _ in range(3)
        ]
        sends += [traffic.discord(kind, shard, 0) for kind in LONG_KINDS for shard in (0, 1)]
        sends += [traffic.slack("chat", rng.choice(SLACK_USERS)) for _ in range(5)]
        await traffic.all(sends)
        await traffic.wait_delivered(kinds={"chat"})
        expected = sum(traffic.count(kind) for kind in LONG_KINDS)
        in_flight = await cluster.wait_long_jobs_in_flight(expected)
        assert len(in_flight) == expected == cluster.long_jobs_submitted()
        assert {(r["status"], r["claimed_by"]) for r in in_flight} == {("running", "a")}

        # The new version starts (and takes the Discord shards' connections), then A stops.
        await cluster.start_replica("b", (0, 1))
        assert await cluster.terminate("a") == 0
        rows = {r["id"]: r for r in await cluster.jobs()}
        assert all(rows[r["id"]]["claimed_by"] != "a" for r in in_flight), rows
        cluster.release_long_jobs()
        # Traffic keeps coming, to B alone now.
        await traffic.all(
            [*(traffic.slack("chat", u) for u in SLACK_USERS), traffic.discord("image", 1, 0)]
        )

        await traffic.wait_delivered(timeout=120)
        final = {r["id"]: r for r in await cluster.wait_jobs_finished()}
        await traffic.wait_quiet()
        assert traffic.wrong() == []
        assert cluster.unexpected_exits() == []
        for job in in_flight:
            assert final[job["id"]]["status"] == "done"
            assert final[job["id"]]["claimed_by"] == "b"
        stats = cluster.alltoken.stats
        assert stats.image_submissions == traffic.count("image")
        assert stats.video_submissions == traffic.count("video")
        assert len(cluster.openmarlin._tasks) == traffic.count("task")
        assert len(stats.b64_deliveries) == traffic.count("image")
        assert set(stats.b64_deliveries.values()) == {1}
        released = f"released {expected} unfinished job(s) for another replica"
        assert released in cluster.replicas["a"].log()
