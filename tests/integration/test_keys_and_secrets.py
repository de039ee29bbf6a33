"""`/alltoken-key` and the secrets rule: keys encrypted at rest, never logged, never echoed."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.core.app import TokenBot
from bot.core.log_setup import configure_logging
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat


def all_text(chat: Chat) -> str:
    return chat.conv.text()


async def test_set_status_remove(bot: TokenBot, sim: AllTokenSim) -> None:
    key = sim.issue_key(3)
    bob = Chat(bot, "bob")
    await bob.send(f"/alltoken-key set {key}")
    assert "Stored your AllToken key …" + key[-4:] in bob.conv.of("whisper")[0].text
    assert await bot.store.get_credential(bob.owner, "alltoken") == key
    await bob.send("/alltoken-key status")
    assert key[-4:] in bob.conv.of("whisper")[1].text
    await bob.send("/alltoken-key remove")
    assert "Removed" in bob.conv.of("whisper")[2].text
    assert await bot.store.get_credential(bob.owner, "alltoken") is None
    assert key not in all_text(bob)
    assert not bob.conv.of("say")  # everything about keys is private


async def test_a_refused_key_is_not_stored(bot: TokenBot) -> None:
    bob = Chat(bot, "bob")
    await bob.send("/alltoken-key set sk-at-wrong-000000000000000000")
    assert "refused that key" in bob.conv.of("whisper")[0].text
    assert await bot.store.get_credential(bob.owner, "alltoken") is None


async def test_bare_key_command_opens_a_private_form(bot: TokenBot, sim: AllTokenSim) -> None:
    bob = Chat(bot, "bob")
    await bob.send("/alltoken-key")
    [req] = bob.conv.forms
    assert req.form_id == "key.alltoken" and req.fields[0].secret
    key = sim.issue_key(1)
    assert await bot.submit_form(bob.inbound("/alltoken-key"), req.form_id, {"key": key}, bob.conv)
    assert await bot.store.get_credential(bob.owner, "alltoken") == key


async def test_key_typed_in_a_public_channel_is_refused_and_flagged(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    key = sim.issue_key(1)
    bob = Chat(bot, "bob", platform="slack")
    await bob.send(f"alltoken-key set {key}", is_direct=False)
    assert "Rotate" in bob.conv.of("whisper")[0].text
    assert await bot.store.get_credential(bob.owner, "alltoken") is None


async def test_key_pasted_in_public_gets_a_rotate_warning(bot: TokenBot) -> None:
    bob = Chat(bot, "bob", platform="slack")
    handled = await bob.send("oops here is my key sk-at-abcdef0123456789abcdef", is_direct=False)
    assert not handled
    [w] = bob.conv.of("whisper")
    assert "Rotate" in w.text and "abcdef0123456789abcdef" not in w.text


async def test_no_key_in_db_or_logs_after_a_session(tmp_path: Path, sim: AllTokenSim) -> None:
    from tests.conftest import make_settings

    data = tmp_path / "data"
    settings = make_settings(data, sim)
    log_file = configure_logging("DEBUG", data, stderr=False)
    bot = await TokenBot.create(settings)
    from tests.fakes.conversation import RecordingConversation

    convs: dict[str, RecordingConversation] = {}
    bot.register_platform(
        "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
    )
    bot.test_conversations = convs  # type: ignore[attr-defined]
    keys = [sim.issue_key(5) for _ in range(3)]
    try:
        for i, key in enumerate(keys):
            chat = Chat(bot, f"user{i}")
            await chat.send(f"/alltoken-key set {key}")
            await chat.send("/alltoken-chat hello")
            await chat.send("/alltoken-image a cat")
            await Chat(bot, f"user{i}", platform="slack").send(f"my key is {key}", is_direct=False)
            logging.getLogger("tokenbot.test").warning("user pasted %s by mistake", key)
            assert key not in chat.conv.text()
        await bot.jobs.wait_idle(10)
    finally:
        await bot.aclose()
        configure_logging("WARNING", None, stderr=False)
    assert log_file is not None and log_file.exists()
    blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    assert len(blobs) >= 3  # the DB, the log, the master key file (and the images)
    for key in keys:
        for blob in blobs:
            assert key.encode() not in blob
        assert key[-10:].encode() not in log_file.read_bytes()


async def test_loose_trigger_in_a_channel_stays_silent_but_spelled_out_command_answers(
    bot: TokenBot,
) -> None:
    carol = Chat(bot, "carol", platform="slack")
    assert not await carol.send("are the alltoken models any good?", is_direct=False)
    assert not carol.conv.events
    assert await carol.send("/alltoken-image a cat --quality=ultra", is_direct=False)
    assert "--quality" in carol.conv.of("whisper")[0].text


async def test_key_pasted_in_public_is_deleted_where_the_platform_allows(bot: TokenBot) -> None:
    dave = Chat(bot, "dave", platform="discord")
    dave.conv.deletable = True
    await dave.send("token: sk-at-abcdef0123456789abcdef", is_direct=False)
    assert dave.conv.deleted == 1
    assert "deleted the message" in dave.conv.of("whisper")[0].text
