"""Oversized input gets a clear refusal before any backend call (the sims' counters stay put)."""

from __future__ import annotations

from collections import Counter

from bot.backends.alltoken import catalog
from bot.core.app import TokenBot
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat

OVER = "x" * (catalog.MAX_PROMPT_CHARS + 1)
TEN_MB = "y" * (10 * 1024 * 1024)


def requests(sim: AllTokenSim) -> Counter[tuple[str, str]]:
    return Counter(sim.stats.requests)


async def test_over_long_prompts_are_refused_before_any_backend_call(
    bot: TokenBot, sim: AllTokenSim, alice: Chat
) -> None:
    before = requests(sim)
    for command in ("/alltoken-chat", "/alltoken-image", "/alltoken-video", "/alltoken-search"):
        for text in (OVER, TEN_MB):
            assert await alice.send(f"{command} {text}")
            refusal = alice.conv.of("whisper")[-1].text
            assert "too long" in refusal and "32,000" in refusal, refusal[:300]
            assert len(refusal) < 2_000  # the refusal does not echo the input back
    # The same through a channel message that spells the command out.
    slack = Chat(bot, "alice", platform="slack", channel="C1")
    await slack.give_key(sim.issue_key(1.0))
    assert await slack.send(f"alltoken-chat {TEN_MB}", is_direct=False)
    assert "too long" in slack.conv.of("whisper")[-1].text
    assert requests(sim) == before
    assert not await bot.store.jobs_for(alice.owner)


async def test_an_over_long_follow_up_in_a_thread_is_refused_before_any_backend_call(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    chat = Chat(bot, "alice", platform="slack", channel="C1", thread="1.1")
    await chat.give_key(sim.issue_key(1.0))
    assert await chat.send("alltoken chat hello", is_direct=False)
    assert sim.stats.chat_completions == 1
    before = requests(sim)
    for text in (OVER, TEN_MB):
        # A follow-up continues the thread's chat; a plain reply in a bot thread does too.
        assert await chat.send(text, is_direct=False, continues_thread=True)
        refusal = chat.conv.of("whisper")[-1].text
        assert "too long" in refusal and len(refusal) < 2_000
    assert requests(sim) == before and sim.stats.chat_completions == 1


async def test_exactly_the_limit_is_still_accepted(alice: Chat, sim: AllTokenSim) -> None:
    assert await alice.send("/alltoken-chat " + "z" * catalog.MAX_PROMPT_CHARS)
    assert sim.stats.chat_completions == 1
