""" "How much did that cost" after an image or a video: the reported cost, or an explicit
"not priced" with what is known, never the chat catalog's `no_prices`."""

from __future__ import annotations

from decimal import Decimal

from bot.backends.alltoken.render import media_cost, reported_cost
from bot.core.app import TokenBot
from bot.core.messages import Failure, Fields, Notice
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat


def _answer(chat: Chat) -> tuple[list[Notice], Fields]:
    said = chat.conv.of("say")[-1]
    assert not any(isinstance(p, Failure) for p in said.parts), chat.conv.text()
    notices = [p for p in said.parts if isinstance(p, Notice)]
    [table] = [p for p in said.parts if isinstance(p, Fields)]
    return notices, table


async def test_cost_after_an_image_names_what_is_known(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-image a lighthouse at dusk --size=1536x1024 --quality=high")
    assert await bot.jobs.wait_idle(10)
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done"

    assert await alice.send("how much did that cost?")
    notices, table = _answer(alice)
    rows = dict(table.rows)
    assert rows["model"] == "gpt-image-2"
    assert rows["size"] == "1536x1024" and rows["quality"] == "high"
    assert rows["request id"] == job.state["task_id"]
    assert rows["total cost"] == "not priced"
    [note] = notices
    assert "AllToken did not report a price for images" in note.text
    assert "size" in note.text and "request id" in note.text


async def test_cost_command_after_a_video(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-video waves on a pier --duration=4 --ratio=9:16")
    assert await bot.jobs.wait_idle(10)
    [job] = await bot.store.jobs_for(alice.owner)

    await alice.send("/alltoken-cost")
    notices, table = _answer(alice)
    rows = dict(table.rows)
    assert rows["model"] == "seedance-1.5-pro"
    assert rows["duration"] == "4 s" and rows["ratio"] == "9:16" and rows["resolution"] == "480p"
    assert rows["request id"] == job.state["task_id"] and rows["total cost"] == "not priced"
    assert "did not report a price for videos" in notices[0].text


async def test_an_image_still_running_is_that(alice: Chat, bot: TokenBot, sim: AllTokenSim) -> None:
    await alice.send("/alltoken-chat hi")
    sim.config.image_seconds = 30.0
    await alice.send("/alltoken-image a slow red kite")
    assert await alice.send("how much did that cost?")
    notices, table = _answer(alice)
    rows = dict(table.rows)
    assert rows["model"] == "gpt-image-2" and rows["total cost"] == "not priced"
    assert rows["status"] in ("pending", "running")
    assert "still" in notices[0].text


async def test_a_chat_after_an_image_is_that(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-image a boat")
    assert await bot.jobs.wait_idle(10)
    await alice.send("/alltoken-chat hi")
    await alice.send("how much did that cost?")
    _, table = _answer(alice)
    rows = dict(table.rows)
    assert "reported by AllToken" in rows["source"] and rows["total cost"].startswith("$")


async def test_media_of_another_conversation_is_not_that(bot: TokenBot, sim: AllTokenSim) -> None:
    here = Chat(bot, "erin", channel="here")
    there = Chat(bot, "erin", channel="there")
    await here.give_key(sim.issue_key(10))
    await there.send("/alltoken-image a cat")
    assert await bot.jobs.wait_idle(10)
    await here.send("/alltoken-cost")
    assert "No AllToken call" in here.conv.of("whisper")[0].text


def test_a_reported_media_cost_is_shown_as_reported() -> None:
    usage = {"total_tokens": 1056, "cost": "0.0420"}
    parts = media_cost(
        "image",
        {"model": "gpt-image-2", "size": "auto", "quality": "low"},
        status="done",
        request_id="igen_1",
        usage=usage,
        cost=reported_cost(usage),
    )
    [table] = parts
    assert isinstance(table, Fields)
    rows = dict(table.rows)
    assert Decimal(rows["total cost"][1:]) == Decimal("0.042")
    assert rows["source"] == "reported by AllToken" and rows["tokens"] == "1,056"


def test_reported_cost_ignores_what_is_not_a_price() -> None:
    for usage in ({}, None, {"cost": "NaN"}, {"cost": "-1"}, {"cost": True}, {"cost": "x"}):
        assert reported_cost(usage) is None
