"""A crash between claiming delivery and delivering: the next start still delivers, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.core.app import TokenBot
from bot.core.messages import Link
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation


async def _bot(
    tmp_path: Path, sim: AllTokenSim
) -> tuple[TokenBot, dict[str, RecordingConversation]]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim))
    convs: dict[str, RecordingConversation] = {}
    b.register_platform(
        "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
    )
    b.test_conversations = convs  # type: ignore[attr-defined]
    return b, convs


async def test_video_left_delivering_by_a_crash_is_delivered_after_restart(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    sim.config.video_seconds = 0.3
    bot1, _ = await _bot(tmp_path, sim)
    chat = Chat(bot1, "alice")
    await chat.give_key(sim.issue_key(10))
    await chat.send("/alltoken-video a pier")
    [job] = await bot1.store.jobs_for(chat.owner)
    async with asyncio.timeout(10):
        while not (await bot1.store.get_job(job.id)).state.get("task_id"):  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    await bot1.aclose()
    # As if the process died right after the running -> delivering compare-and-set.
    bot2, _ = await _bot(tmp_path, sim)
    assert await bot2.store.transition_job(job.id, {"running"}, "delivering")
    await bot2.aclose()

    bot3, convs = await _bot(tmp_path, sim)
    try:
        assert await bot3.start() == 1
        assert await bot3.jobs.wait_idle(10)
        [conv] = convs.values()
        links = [p for e in conv.events for p in e.parts if isinstance(p, Link)]
        assert len(links) == 1
        done = await bot3.store.get_job(job.id)
        assert done is not None and done.status == "done"
        assert await bot3.start() == 0
    finally:
        await bot3.aclose()
