"""A small version of bench/bench_load.py: 100 mixed commands through both fakes.

The poll budget is covered by test_poll_budget.py (behaviour, not measured rates).

The bot runs in this process; the Slack requests come from a separate process and the
Discord interactions from the fake Discord in its own process, as in the benchmark.
"""

from __future__ import annotations

import pytest

from bench.bench_load import load, load_rows


@pytest.mark.slow(17)
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
