"""Fair work under a flood: another user's chat latency while one user sends 200 images.

In one run: user B's time to first token alone, then with 200 image commands from user A
handed to the bot at the same moment (the in-flight job limit off, so every image starts);
ratio = median(during the flood) / median(alone), each the median of >= 3 repeats. Measured
with the fair-work queue (TOKENBOT_MAX_HANDLERS_PER_USER default) and without it (0).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path

from bench.bench_chat import TimingConversation, _bot_ttft
from bench.gates import REPEATS, Row, Sample, gated_row, ratios, reported_row
from bench.sim_process import sim_process
from bot.core.app import TokenBot
from bot.core.messages import Inbound
from bot.core.settings import Settings
from bot.sim.cluster import DEMO_ALLTOKEN_KEY
from bot.store import Owner

FLOOD = int(os.environ.get("BENCH_FLOOD_IMAGES", "200"))
TARGET = 1.2


def _image(k: int) -> Inbound:
    return Inbound(
        platform="console",
        workspace="bench",
        channel="c-flood",
        user="u1",
        text=f"/alltoken-image a lighthouse, take {k}",
        is_direct=True,
    )


async def _flooded_ttft(bot: TokenBot) -> float:
    """B's time to first token with FLOOD image commands from A arriving just before."""
    flood = [
        asyncio.create_task(bot.handle(_image(k), TimingConversation(_image(k).destination())))
        for k in range(FLOOD)
    ]
    await asyncio.sleep(0)  # the flood is handed over first, as an adapter would
    ttft, _end, _conv = await _bot_ttft(bot, "u0")
    await asyncio.gather(*flood)
    await bot.jobs.wait_idle(120)
    return ttft


async def _alone_ttft(bot: TokenBot) -> float:
    return (await _bot_ttft(bot, "u0"))[0]


async def measure(per_user: int) -> dict[str, Sample]:
    """Median TTFT alone and during the flood (medians of REPEATS), fair work at `per_user`."""
    with (
        sim_process(
            TOKENBOT_SIM_LATENCY_MS="50",
            TOKENBOT_SIM_TOKENS_PER_SECOND="200",
            TOKENBOT_SIM_IMAGE_SECONDS="1",
        ) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        settings = Settings(
            alltoken_base_url=url,
            data_dir=Path(tmp),
            max_jobs_per_user=0,
            max_polls_per_second=1000,
            max_handlers_per_user=per_user,
        )
        bot = await TokenBot.create(settings)
        bot.register_platform("console", TimingConversation)
        for user in ("u0", "u1"):
            owner = Owner(platform="console", workspace="bench", user=user)
            await bot.store.put_credential(owner, "alltoken", DEMO_ALLTOKEN_KEY)
        try:
            for _ in range(3):
                await _alone_ttft(bot)  # warm connections and caches
            alone, flooded = [], []
            for _ in range(REPEATS):
                alone.append(statistics.median([await _alone_ttft(bot) for _ in range(5)]))
                flooded.append(await _flooded_ttft(bot))
        finally:
            await bot.aclose()
    return {
        "alone_ms": Sample.of([a * 1000 for a in alone]),
        "flood_ms": Sample.of([f * 1000 for f in flooded]),
        # Each repeat's flooded TTFT ÷ the alone TTFT measured just before it.
        "ratio": ratios(flooded, alone),
    }


async def rows() -> list[Row]:
    """This module's rows of the `make bench` table."""
    fair = await measure(Settings.model_fields["max_handlers_per_user"].default)
    unfair = await measure(0)
    return [
        gated_row(
            f"flood: another user's chat TTFT during {FLOOD} images from one user ÷ alone",
            fair["flood_ms"].text(".1f", " ms"),
            f"{fair['alone_ms'].text('.1f', ' ms')} alone",
            fair["ratio"],
            "<=",
            TARGET,
        ),
        reported_row(
            "flood: the same without fair work (TOKENBOT_MAX_HANDLERS_PER_USER=0)",
            unfair["flood_ms"].text(".1f", " ms"),
            f"{unfair['alone_ms'].text('.1f', ' ms')} alone",
            unfair["ratio"].median,
        ),
    ]


if __name__ == "__main__":
    for row in asyncio.run(rows()):
        print(row)
