"""State that must outlive a message, across a restart and across two replicas on one database
(SQLite file or PostgreSQL): pending Confirm buttons, thread continuations, the last family."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.backends.openclaw_token.confirm import CONFIRM_ACTION
from bot.core.app import TokenBot
from bot.core.messages import Fields, Notice, Turn
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from tests.conftest import Chat
from tests.integration.openclaw_support import button, click, parts_of, running_sim
from tests.restart.replicas import SharedDatabase, replica, shared_db

__all__ = ["shared_db"]  # the fixture, used by the tests below


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


def _chat(bot: TokenBot, thread: str | None = None) -> Chat:
    return Chat(bot, "alice", channel="C1", thread=thread, platform="slack")


def _purchases_shown(*chats: Chat) -> int:
    return sum(
        1 for chat in chats for p in parts_of(chat, Fields) if p.title == "Credits purchased"
    )


async def _audit(bot: TokenBot, chat: Chat) -> list[tuple[str, str]]:
    return [(e.command, e.outcome) for e in reversed(await bot.store.list_audit(chat.owner, 50))]


async def test_a_pending_confirm_still_works_after_a_restart(
    shared_db: SharedDatabase, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    async with replica(shared_db, "a", sim, oc) as before:
        alice = _chat(before)
        await before.store.put_credential(alice.owner, "openclaw_token", DEMO_MGMT_KEY)
        await alice.send("/openclaw-token credits buy --amount 20")
        token = button(alice, CONFIRM_ACTION).value
    async with replica(shared_db, "a", sim, oc) as after:
        again = _chat(after)
        await click(again, CONFIRM_ACTION, token)
        assert await after.jobs.wait_idle(5)
        assert "expired" not in again.conv.text()
        assert _purchases_shown(again) == 1
        assert oc.account().remaining == 120 and oc.stats["purchases"] == 1
        # The audit outcomes still tell the prompt from the confirmation.
        rows = await _audit(after, again)
        assert ("openclaw.credits.buy", "prompted") in rows
        assert ("openclaw.credits.buy.confirm", "confirmed") in rows


async def test_a_double_clicked_confirm_across_two_replicas_charges_once(
    shared_db: SharedDatabase, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    async with replica(shared_db, "a", sim, oc) as a, replica(shared_db, "b", sim, oc) as b:
        on_a, on_b = _chat(a), _chat(b)
        await a.store.put_credential(on_a.owner, "openclaw_token", DEMO_MGMT_KEY)
        await on_a.send("/openclaw-token credits buy --amount 20")
        token = button(on_a, CONFIRM_ACTION).value
        await asyncio.gather(
            *(click(chat, CONFIRM_ACTION, token) for chat in (on_a, on_b, on_a, on_b))
        )
        assert await a.jobs.wait_idle(5) and await b.jobs.wait_idle(5)
        assert oc.stats["purchases"] == 1 and oc.account().remaining == 120
        assert _purchases_shown(on_a, on_b) == 1
        assert "Already confirmed" in on_a.conv.text() + on_b.conv.text()
        confirmed = [
            row
            for row in await _audit(a, on_a)
            if row == ("openclaw.credits.buy.confirm", "confirmed")
        ]
        assert len(confirmed) == 1


async def test_an_expired_confirm_is_audited_once_across_replicas(
    shared_db: SharedDatabase, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    from bot.backends.openclaw_token.confirm import Confirmations

    now = [10_000.0]
    async with replica(shared_db, "a", sim, oc) as a, replica(shared_db, "b", sim, oc) as b:
        for bot in (a, b):
            bot.services.get(Confirmations).clock = lambda: now[0]
        on_a, on_b = _chat(a), _chat(b)
        await a.store.put_credential(on_a.owner, "openclaw_token", DEMO_MGMT_KEY)
        await on_a.send("/openclaw-token auth rotate")
        token = button(on_a, CONFIRM_ACTION).value
        now[0] += 16 * 60
        await asyncio.gather(
            on_a.send("/openclaw-token audit show"), click(on_b, CONFIRM_ACTION, token)
        )
        await on_b.send("/openclaw-token audit show")
        assert "expired" in on_b.conv.text()
        rows = await _audit(b, on_b)
        assert rows.count(("openclaw.auth.rotate.confirm", "expired")) == 1
        assert not any(outcome == "confirmed" for _, outcome in rows)


async def _chat_in_thread(bot: TokenBot, sim: AllTokenSim, model: str) -> Chat:
    thread = _chat(bot, thread="1700000000.000100")
    await thread.give_key(sim.issue_key(10.0))
    await thread.send(f"/alltoken-chat {model} remember the word teal")
    return thread


async def _follow_up(thread: Chat) -> str:
    history = (Turn(role="user", text="remember the word teal"),)
    assert await thread.send("and now? [[echo-context]]", continues_thread=True, history=history)
    usage = thread.conv.of("stream")[-1].parts[0]
    assert isinstance(usage, Notice), usage
    return usage.text


async def test_a_thread_keeps_its_model_after_a_restart(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with replica(shared_db, "a", sim) as before:
        await _chat_in_thread(before, sim, "claude-haiku-4-5")
    async with replica(shared_db, "a", sim) as after:
        usage = await _follow_up(_chat(after, thread="1700000000.000100"))
    assert "`claude-haiku-4-5`" in usage


async def test_a_thread_continues_on_the_other_replica(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with replica(shared_db, "a", sim) as a, replica(shared_db, "b", sim) as b:
        thread = await _chat_in_thread(a, sim, "claude-haiku-4-5")
        key = thread.inbound("x").conversation_key
        # The note is a batched append, written as soon as the answer is done; a person's reply
        # takes longer than that. Wait for a's write (a read flushes a's queue) as a reply would.
        await a.store.conversations.get(key)
        usage = await _follow_up(_chat(b, thread="1700000000.000100"))
        assert "`claude-haiku-4-5`" in usage
        # A new model chosen on b is what a continues with next.
        await _chat_in_thread(b, sim, "gpt-5.4-mini")
        await b.store.conversations.get(key)
        assert "`gpt-5.4-mini`" in await _follow_up(_chat(a, thread="1700000000.000100"))


async def test_without_a_stored_continuation_a_thread_gets_the_default_model(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    """The control: a thread nobody noted continues with the default, so the tests above
    show the stored model, not a coincidence."""
    async with replica(shared_db, "a", sim) as bot:
        thread = _chat(bot, thread="1700000000.000200")
        await thread.give_key(sim.issue_key(10.0))
        usage = await _follow_up(thread)
    assert "`claude-haiku-4-5`" not in usage


async def test_the_last_family_used_survives_a_restart(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with replica(shared_db, "a", sim) as before:
        alice = _chat(before)
        await alice.give_key(sim.issue_key(10.0))
        await alice.send("/alltoken-chat hello")
    async with replica(shared_db, "a", sim) as after:
        alice = _chat(after)
        await after.memory.load(alice.inbound("x").conversation_key)
        assert after.parse_state(alice.inbound("x").conversation_key).recent_family == "alltoken"
