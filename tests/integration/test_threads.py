"""Thread follow-ups: plain replies continue the chat with the thread's turns as context."""

from __future__ import annotations

from bot.core.app import Outcome, TokenBot
from bot.core.messages import Notice, Turn
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
    assert not await alice.send("what word?", is_direct=False)
    assert not alice.conv.events


async def test_a_plain_message_said_to_the_bot_gets_one_hint(alice: Chat) -> None:
    outcome = await alice.send("what word?")  # a DM: said to the bot, but not a command
    assert outcome is Outcome.UNKNOWN and not outcome
    [hint] = alice.conv.events
    assert hint.kind == "whisper" and "isn't a tokenbot command" in hint.text


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
    window = bot.memory.history(inbound, bot.settings.context_chars)
    assert [t.text[0] for t in window.turns] == ["b", "c"]
    assert window.dropped == 1


async def test_the_answer_says_when_older_thread_messages_were_left_out(
    bot: TokenBot, alice: Chat
) -> None:
    bot.settings.context_chars = 25
    history = (
        Turn(role="user", text="a" * 20),
        Turn(role="assistant", text="b" * 10),
        Turn(role="user", text="c" * 10),
    )
    assert await alice.send("/alltoken-chat go on", history=history)
    [streamed] = alice.conv.of("stream")
    notes = [p.text for p in streamed.parts if isinstance(p, Notice)]
    assert any("1 oldest message of this thread did not fit" in n for n in notes)


async def test_no_notice_when_the_whole_thread_fits(alice: Chat) -> None:
    history = (Turn(role="user", text="short"), Turn(role="assistant", text="reply"))
    assert await alice.send("/alltoken-chat go on", history=history)
    [streamed] = alice.conv.of("stream")
    assert not any("did not fit" in getattr(p, "text", "") for p in streamed.parts)


async def test_a_mistyped_command_gets_the_closest_one(alice: Chat) -> None:
    assert not await alice.send("/alltoken-imgae a lighthouse")
    [hint] = alice.conv.events
    assert "did you mean `/alltoken-image`?" in hint.text
    alice.conv.events.clear()
    assert not await alice.send("/weather tomorrow")
    [plain] = alice.conv.events
    assert "did you mean" not in plain.text and "isn't a tokenbot command" in plain.text
