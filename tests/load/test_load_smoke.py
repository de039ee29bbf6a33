"""A small version of bench/bench_load.py: 100 mixed commands and 60 videos under a poll budget.

The bot runs in this process; the Slack requests come from a separate process and the
Discord interactions from the fake Discord in its own process, as in the benchmark.
"""

from __future__ import annotations

from bench.bench_load import load, load_rows, polling, polling_rows


async def test_100_mixed_commands_from_40_users_lose_no_reply() -> None:
    c = await load(100, 40)
    assert c["slack_answered"] == c["slack_sent"], c
    assert c["discord_answered"] == c["discord_sent"], c
    assert c["slack_bad_acks"] == 0 and c["slack_failed"] == 0, c
    assert c["discord_acked"] == c["discord_sent"], c
    assert c["images"] and c["videos"]
    rows = load_rows(c)
    assert rows[0][5], rows[0]
    # Each image: a submit, the polls its 1 s needs, the one read; each video likewise.
    assert c["image_requests_per_job"] <= 5 and c["video_requests_per_job"] <= 4, c


async def test_pending_videos_are_polled_within_the_budget_and_all_delivered() -> None:
    p = await polling(60, 20)
    rate_row, delivered_row = polling_rows(p)
    assert delivered_row[5], delivered_row
    assert rate_row[5], rate_row
    assert p["polls_per_video"] < 4, p
