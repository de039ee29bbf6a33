"""The fallback chain: AllToken 402 → the same request through the OpenClaw Token proxy.

Uses the AllToken simulator from tests/conftest.py with a zero-balance key, and the OpenClaw
Token simulator with a provisioned key integrated through the `integrate` command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.app import TokenBot
from bot.core.messages import Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import OpenClawTokenSim
from tests.conftest import Chat
from tests.integration.openclaw_support import (
    failures,
    parts_of,
    running_bot,
    running_sim,
    signed_in,
)


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


@pytest.fixture
async def ocbot(tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim) -> AsyncIterator[TokenBot]:
    async with running_bot(tmp_path / "data", sim, oc) as b:
        yield b


async def broke(bot: TokenBot, sim: AllTokenSim, *, fallback: str | None = "") -> Chat:
    """Erin: an empty AllToken key, signed in to OpenClaw Token, fallback set via `integrate`."""
    erin = await signed_in(bot, "erin")
    await erin.give_key(sim.issue_key(0.0))
    if fallback is not None:
        await erin.send(f"/openclaw-token integrate {fallback}".strip())
    erin.conv.events.clear()
    return erin


def notes(chat: Chat) -> str:
    return "\n".join(n.text for n in parts_of(chat, Notice))


async def test_chat_402_is_answered_through_the_fallback(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-chat claude-sonnet-4-6 explain tides")
    [streamed] = erin.conv.of("stream")
    assert "Simulated answer" in streamed.text and "claude-sonnet-4-6" in streamed.text
    assert not failures(erin)
    assert "came through your OpenClaw Token fallback (key tokenbot-fallback" in notes(erin)
    assert "`claude-sonnet-4-6`" in notes(erin) and "tokens" in notes(erin)
    assert oc.stats["proxy_requests"] == 1
    [key] = oc.account().keys.values()
    assert key.usage > 0 and key.events[0].model == "claude-sonnet-4-6"  # the SAME request
    [usage] = await ocbot.store.list_usage(erin.owner)
    assert usage.service == "openclaw_token" and usage.cost_usd == key.usage.normalize()
    [entry] = await ocbot.store.list_audit(erin.owner, 1)
    assert (entry.command, entry.outcome) == ("chat", "ok") and entry.request_id


async def test_thread_follow_ups_keep_falling_back(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-chat hello")
    await erin.send("and a follow-up", continues_thread=True, is_direct=False)
    assert len(erin.conv.of("stream")) == 2 and oc.stats["proxy_requests"] == 2


async def test_search_402_is_answered_through_the_fallback(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-search what happened this week")
    [said] = erin.conv.of("say")
    assert "Searched the web" in said.text and "`deepseek-v4-pro`" in said.text
    assert "OpenClaw Token fallback" in said.text
    assert oc.stats["proxy_requests"] == 1


async def test_the_proxys_credit_limit_is_a_clear_error(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim, fallback="--limit 0.01 --limit-reset daily")
    await erin.send("/alltoken-chat tell me a lot [[tokens=1000]]")  # $0.015: over the limit
    assert not failures(erin)
    await erin.send("/alltoken-chat and more")
    [f] = failures(erin)
    assert f.code == "CREDIT_LIMIT_EXCEEDED" and f.request_id
    assert "credit limit" in f.message and "resets at" in f.message
    [key] = oc.account().keys.values()
    assert f"keys update {key.hash} --limit" in (f.hint or "")
    assert "rate-limiting" not in (f.hint or "")
    assert "AllToken balance is empty" in notes(erin)
    assert oc.stats["proxy_requests"] == 1  # a spend limit is final: no retry
    [entry] = await ocbot.store.list_audit(erin.owner, 1)
    assert (entry.outcome, entry.detail) == ("failed", "CREDIT_LIMIT_EXCEEDED")


async def test_other_proxy_errors_are_plain(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    [key] = oc.account().keys.values()
    key.disabled = True
    await erin.send("/alltoken-chat hello")
    assert failures(erin)[-1].code == "KEY_DISABLED"
    assert "--enabled" in (failures(erin)[-1].hint or "")
    key.disabled = False
    oc.account().total_usage = oc.account().total_credits
    await erin.send("/alltoken-search news")
    assert failures(erin)[-1].code == "INSUFFICIENT_CREDITS"
    assert "credits buy" in (failures(erin)[-1].hint or "")


async def test_no_fallback_set_gives_the_plain_402(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim, fallback=None)
    await erin.send("/alltoken-chat hello")
    [f] = failures(erin)
    assert f.code == "insufficient_balance" and "top up" in (f.hint or "").lower()
    assert "fallback" not in erin.conv.text().lower()
    assert oc.stats["proxy_requests"] == 0


async def test_a_funded_alltoken_key_never_touches_the_fallback(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.give_key(sim.issue_key(5.0))
    await erin.send("/alltoken-chat hello")
    assert oc.stats["proxy_requests"] == 0 and "fallback" not in notes(erin)


async def test_images_and_videos_say_they_have_no_fallback(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-image a boat")
    await erin.send("/alltoken-video waves on a pier")
    assert await ocbot.jobs.wait_idle(10)
    found = failures(erin)
    assert [f.code for f in found] == ["insufficient_balance", "insufficient_balance"]
    assert all("no OpenClaw Token fallback" in (f.hint or "") for f in found)
    assert oc.stats["proxy_requests"] == 0
    assert oc.account().remaining == Decimal(100)
