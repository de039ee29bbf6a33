"""Thread follow-ups: plain replies continue the chat with the thread's turns as context."""

from __future__ import annotations

from bot.core.app import TokenBot
from bot.core.messages import Turn
from tests.conftest import Chat


async def test_reply_in_thread_continues_with_history_and_model(alice: Chat, bot: TokenBot) -> None:
    thread = Chat(bot, "alice", thread="t1")
    await thread.give_key(await bot.store.get_credential(alice.owner, "alltoken") or "")
    await thread.send("/alltoken-chat claude-haiku-4-5 remember the word teal")
    history = (
        Turn(role="user", text="remember the word teal"),
        Turn(role="assistant", text=thread.conv.of("stream")[0].text),
    )
    handled = await thread.send(
        "what word? [[echo-context]]", continues_thread=True, history=history
    )
    assert handled
    answer = thread.conv.of("stream")[1]
    assert "3 messages" in answer.text and "remember the word teal" in answer.text
    assert "`claude-haiku-4-5`" in answer.parts[0].text  # type: ignore[union-attr]


async def test_plain_message_outside_a_thread_is_ignored(alice: Chat) -> None:
    assert not await alice.send("what word?")
    assert not alice.conv.events


async def test_history_budget_drops_oldest_first(bot: TokenBot, alice: Chat) -> None:
    bot.settings.context_chars = 25
    inbound = alice.inbound(
        "x",
        history=(
            Turn(role="user", text="a" * 20),
            Turn(role="assistant", text="b" * 10),
            Turn(role="user", text="c" * 10),
        ),
    )
    kept = bot.history_for(inbound)
    assert [m.content[0] for m in kept] == ["b", "c"]
