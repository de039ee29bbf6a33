"""Chat, search, models and cost through TokenBot over real HTTP to the simulator."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from bot.backends.alltoken.service import AllTokenService
from bot.core.app import TokenBot
from bot.core.messages import Failure, Fields, Notice
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat


async def add_fault(sim: AllTokenSim, **fault: object) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{sim.base_url}/_sim/faults", json=fault)
        assert r.status_code == 201, r.text


def failures(chat: Chat) -> list[Failure]:
    return [p for e in chat.conv.events for p in e.parts if isinstance(p, Failure)]


async def test_chat_streams_text_then_usage_and_authoritative_cost(
    alice: Chat, bot: TokenBot
) -> None:
    assert await alice.send("/alltoken-chat explain **tides** briefly")
    [streamed] = alice.conv.of("stream")
    assert "tides" in streamed.text.lower()
    [trailer] = streamed.parts
    assert isinstance(trailer, Notice)
    assert "`gpt-5.4-mini`" in trailer.text and "tokens" in trailer.text and "$0.0" in trailer.text
    [usage] = await bot.store.list_usage(alice.owner)
    assert usage.model == "gpt-5.4-mini" and usage.completion_tokens > 0
    assert usage.cost_usd is not None and usage.cost_usd > 0
    last = await bot.store.get_last_call(alice.owner, alice.inbound("x").conversation_key)
    assert last is not None and last.cost_usd == usage.cost_usd


async def test_chat_with_explicit_model_and_hyphenated_prompt(alice: Chat) -> None:
    await alice.send("/alltoken-chat claude-sonnet-4-6 say hi")
    assert "`claude-sonnet-4-6`" in alice.conv.of("stream")[0].parts[0].text  # type: ignore[union-attr]
    await alice.send("/alltoken-chat state-of-the-art summary of tides")
    assert "`gpt-5.4-mini`" in alice.conv.of("stream")[1].parts[0].text  # type: ignore[union-attr]


async def test_no_key_gets_private_instructions(bot: TokenBot) -> None:
    bob = Chat(bot, "bob")
    assert await bob.send("/alltoken-chat hello")
    [w] = bob.conv.of("whisper")
    assert "no AllToken key" in w.text and "/alltoken-key" in w.text
    assert not bob.conv.of("say") and not bob.conv.of("stream")


async def test_bad_key_401_says_set_a_new_key(bot: TokenBot) -> None:
    bob = Chat(bot, "bob")
    await bob.give_key("sk-at-not-a-real-key-000000000000")
    await bob.send("/alltoken-chat hello")
    [f] = failures(bob)
    assert f.code == "invalid_api_key" and f.request_id
    assert "/alltoken-key" in (f.hint or "")


async def test_insufficient_balance_402(bot: TokenBot, sim: AllTokenSim) -> None:
    bob = Chat(bot, "bob")
    await bob.give_key(sim.issue_key(0.0))
    await bob.send("/alltoken-chat hello")
    [f] = failures(bob)
    assert f.code == "insufficient_balance" and "top up" in (f.hint or "").lower()


async def test_429_is_retried_once_after_retry_after(alice: Chat, sim: AllTokenSim) -> None:
    await add_fault(
        sim,
        method="POST",
        path="/v1/chat/completions",
        status=429,
        code="rate_limited",
        retry_after=0.2,
        times=1,
    )
    await alice.send("/alltoken-chat hello there")
    assert not failures(alice)
    assert alice.conv.of("stream")[0].text


async def test_429_twice_reports_rate_limit(alice: Chat, sim: AllTokenSim) -> None:
    await add_fault(
        sim,
        method="POST",
        path="/v1/chat/completions",
        status=429,
        code="rate_limited",
        retry_after=0.1,
        times=2,
    )
    await alice.send("/alltoken-chat hello there")
    [f] = failures(alice)
    assert f.code == "rate_limited" and f.request_id


async def test_all_providers_failed_names_alternatives_same_family_first(
    alice: Chat, sim: AllTokenSim
) -> None:
    await add_fault(
        sim,
        method="POST",
        path="/v1/chat/completions",
        status=503,
        code="all_providers_failed",
        times=1,
    )
    await alice.send("/alltoken-chat claude-opus-4-7 hello")
    [f] = failures(alice)
    assert f.code == "all_providers_failed"
    hint = f.hint or ""
    assert "claude-" in hint.split(",")[0]
    assert any(fam in hint for fam in ("gpt-", "gemini-", "deepseek-", "qwen"))


async def test_timeout_is_reported_plainly(bot: TokenBot, sim: AllTokenSim, alice: Chat) -> None:
    bot.services.get(AllTokenService).http.timeout = httpx.Timeout(0.3)
    await add_fault(sim, method="POST", path="/v1/chat/completions", latency_ms=2000, times=1)
    await alice.send("/alltoken-chat hello")
    [f] = failures(alice)
    assert f.code == "timeout" and "did not answer" in f.message


async def test_malformed_sse_is_a_clear_failure(alice: Chat, sim: AllTokenSim) -> None:
    await add_fault(sim, method="POST", path="/v1/chat/completions", mode="malformed_sse", times=1)
    await alice.send("/alltoken-chat hello")
    [f] = failures(alice)
    assert f.code == "bad_response"


async def test_reset_mid_stream_keeps_partial_text_and_says_it_stopped(
    alice: Chat, sim: AllTokenSim
) -> None:
    await add_fault(
        sim, method="POST", path="/v1/chat/completions", mode="reset_mid_stream", times=1
    )
    await alice.send("/alltoken-chat tell me a long story [[tokens=80]]")
    [f] = failures(alice)
    assert f.code in ("connection_error", "bad_response")
    streamed = alice.conv.of("stream") + alice.conv.of("say")
    assert streamed


async def test_search_with_deepseek_is_grounded(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-search what happened this week")
    [said] = alice.conv.of("say")
    assert "search" in said.text.lower()
    assert "`deepseek-v4-pro`" in said.text
    [usage] = await bot.store.list_usage(alice.owner)
    assert usage.command == "search"


async def test_search_refuses_non_search_model_before_calling(
    alice: Chat, sim: AllTokenSim
) -> None:
    before = dict(sim.stats.requests) if hasattr(sim.stats, "requests") else None
    await alice.send("/alltoken-search --model=gpt-5.4 latest news")
    [w] = alice.conv.of("whisper")
    assert "deepseek-v4-pro" in w.text and "Usage" in w.text
    if before is not None:
        assert dict(sim.stats.requests) == before


async def test_search_service_refuses_directly(bot: TokenBot) -> None:
    from bot.core.errors import BackendError

    with pytest.raises(BackendError) as info:
        await bot.services.get(AllTokenService).search("sk-at-x", "claude-opus-4-7", "q")
    assert info.value.code == "search_unsupported_model"


async def test_models_lists_and_filters(alice: Chat) -> None:
    await alice.send("/alltoken-models --filter=claude")
    text = alice.conv.of("say")[0].text
    assert "claude-sonnet-4-6" in text and "gpt-5.4" not in text
    await alice.send("/alltoken-models --type=video")
    assert "seedance-1.5-pro" in alice.conv.of("say")[1].text
    await alice.send("/alltoken-models")
    chat_list = alice.conv.of("say")[2].text
    assert (
        "gpt-5.4-mini" in chat_list
        and "gpt-image-2" not in chat_list
        and "seedance" not in chat_list
    )


async def test_cost_with_explicit_counts_uses_catalog(alice: Chat) -> None:
    await alice.send("/alltoken-cost gpt-5.4-mini 1000000 1000000")
    [said] = alice.conv.of("say")
    [table] = said.parts
    assert isinstance(table, Fields)
    rows = dict(table.rows)
    assert rows["model"] == "gpt-5.4-mini" and rows["total cost"].startswith("$")
    assert Decimal(rows["total cost"][1:]) > 0


@pytest.mark.parametrize(
    "model", ["gpt-5.4-mini", "claude-sonnet-4-6", "deepseek-v4-pro", "qwen3.6-flash"]
)
async def test_cost_reads_either_catalog_field_naming(alice: Chat, model: str) -> None:
    await alice.send(f"/alltoken-cost {model} 1000 1000")
    [table] = alice.conv.of("say")[0].parts
    assert isinstance(table, Fields)
    assert Decimal(dict(table.rows)["total cost"][1:]) > 0


async def test_cost_without_args_uses_the_last_call_here(alice: Chat) -> None:
    await alice.send("/alltoken-cost")
    assert "No AllToken call" in alice.conv.of("whisper")[0].text
    await alice.send("/alltoken-chat hi")
    await alice.send("how much did that cost?")
    [table] = alice.conv.of("say")[0].parts
    assert isinstance(table, Fields)
    assert "reported by AllToken" in dict(table.rows)["source"]


async def test_how_much_did_that_cost_is_ignored_without_an_alltoken_call(alice: Chat) -> None:
    assert not await alice.send("how much did that cost?")


async def test_usage_error_is_private_with_usage_line(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-image a cat --quality=ultra")
    [w] = alice.conv.of("whisper")
    assert "--quality" in w.text and "/alltoken-image <prompt>" in w.text
    [entry] = await bot.store.list_audit(alice.owner)
    assert entry.outcome == "usage_error"


async def test_help(alice: Chat) -> None:
    await alice.send("/alltoken-help")
    assert "/alltoken-video" in alice.conv.of("say")[0].text
