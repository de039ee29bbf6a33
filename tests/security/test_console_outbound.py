"""The console is a terminal: no escape sequence, bell, NUL or raw bidi override from user or
backend text may reach stdout, in any part type, streamed or not."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.console.conversation import ConsoleConversation, ConsolePrinter, ConsoleTextStream
from adapters.console.render import render, render_part
from adapters.console.run import ConsoleAdapter
from bot.backends.alltoken.family import alltoken_family
from bot.core.app import TokenBot
from bot.core.messages import (
    Actions,
    Button,
    Destination,
    Failure,
    Fields,
    Image,
    Link,
    Notice,
    Part,
    Text,
)
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.conftest import make_settings

# What must never be printed raw (newline and tab are fine).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE_PIECES = [
    "\x1b[31m",
    "\x1b[2J\x1b[H",
    "\x1b]8;;http://evil.test\x07",
    "\x1b]8;;\x1b\\",
    "\x1b]0;owned\x07",
    "\x1bP+q\x1b\\",
    "\x1b",
    "\x07",
    "\x00",
    "\r",
    "\x08",
    "\x9b31m",
    "\x9d8;;x\x9c",
    "\u202e",
    "\u2066",
    "]8;;",
    "[31m",
    "plain",
    " ",
    "\n",
]
hostile = st.lists(st.sampled_from(HOSTILE_PIECES) | st.text(max_size=6), max_size=10).map("".join)


@st.composite
def any_part(draw: st.DrawFn) -> Part:
    h = lambda: draw(hostile)  # noqa: E731 - a fresh hostile string per field
    parts: list[Part] = [
        Text(markdown=h()),
        Notice(level="info", text=h()),
        Failure(code=h(), message=h(), request_id=h() or None, hint=h() or None),
        Fields(title=h(), rows=[(h(), h()), (h(), h())]),
        Link(url=h(), label=h(), expires_at=datetime.now(UTC) + timedelta(hours=1)),
        Image(path=Path("/tmp") / (h().replace("/", "") or "x"), alt=h()),
        Actions(buttons=[Button(action_id=h() or "a", label=h() or "b", value=h())]),
    ]
    return draw(st.sampled_from(parts))


@pytest.mark.slow(10)
@settings(max_examples=200, deadline=None)
@given(any_part())
def test_every_part_type_is_printed_without_controls(part: Part) -> None:
    out = render_part(part)
    assert not CONTROL.search(out), repr(out)


def test_bidi_overrides_are_shown_and_text_survives() -> None:
    out = render([Text(markdown="invoice\u202etxt.exe \x1b[31mred\x1b[0m \x07done")])
    assert out == "invoice[U+202E]txt.exe red done"


async def test_streamed_escapes_split_across_deltas_never_reach_stdout() -> None:
    out = io.StringIO()
    stream = ConsoleTextStream(ConsolePrinter(out))
    for delta in [
        "click \x1b",
        "]8;;http://evil.test",
        "\x07here\x1b]8",
        ";;\x07 \x1b[",
        "2J ok\x00",
    ]:
        await stream.append(delta)
    await stream.finish([Notice(level="info", text="usage \x1b[5mblink")])
    printed = out.getvalue()
    assert not CONTROL.search(printed), repr(printed)
    assert "click" in printed and "ok" in printed and "usage blink" in printed


async def test_saved_image_line_has_no_controls(tmp_path: Path) -> None:
    out = io.StringIO()
    image = tmp_path / "abc.png"
    image.write_bytes(b"\x89PNG")
    destination = Destination(platform="console", workspace="c", channel="c", user="u")
    conversation = ConsoleConversation(destination, ConsolePrinter(out), tmp_path / "out")
    await conversation.upload(Image(path=image, alt="a cat \x1b]0;owned\x07\u202e"))
    assert not CONTROL.search(out.getvalue()) and "[U+202E]" in out.getvalue()


@pytest.fixture
async def bot(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[TokenBot]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim), [alltoken_family()])
    key = sim.issue_key(10.0)
    await b.store.put_credential(
        Owner(platform="console", workspace="console", user="eve"), "alltoken", key
    )
    try:
        yield b
    finally:
        await b.aclose()


async def test_a_hostile_prompt_echoed_by_the_backend_is_printed_inert(
    bot: TokenBot, tmp_path: Path
) -> None:
    prompt = "hi \x1b]8;;http://evil.test\x07link\x1b]8;;\x07 \x1b[2J\x07 \u202eexe.txt"
    lines = f"/alltoken-chat {prompt}\n/alltoken-image {prompt}\n/alltoken-chat --model=\x1b[31mx\n"
    out = io.StringIO()
    adapter = ConsoleAdapter(
        bot, user="eve", out_dir=tmp_path / "out", stdin=io.StringIO(lines), stdout=out
    )
    assert await adapter.run() == 0
    printed = out.getvalue()
    assert "You asked" in printed  # the simulator echoes the prompt in its answer
    assert "[U+202E]exe.txt" in printed  # the override is shown, not applied
    assert "saved" in printed  # the image job's lines too
    assert not CONTROL.search(printed), repr(printed)
