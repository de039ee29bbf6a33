"""The console's terminal pieces on their own: Ctrl-C policy, progress bars, Markdown stream."""

from __future__ import annotations

import asyncio
import io
import re

from adapters.console.interrupts import InterruptGate, QuitRequested
from adapters.console.progress import ProgressBoard
from adapters.console.terminal_render import MarkdownStream, hard_breaks, render_terminal
from bot.core.messages import Failure, Notice, Text

SGR = re.compile(r"\x1b\[[0-9;]*m")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_one_press_cancels_the_step_a_second_within_the_window_quits() -> None:
    clock = FakeClock()
    gate = InterruptGate(window_s=2.0, clock=clock)
    started = asyncio.Event()

    async def answer() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    async def press_when_started() -> None:
        await started.wait()
        gate.press()

    presser = asyncio.create_task(press_when_started())
    finished, result = await gate.cancellable(answer())
    await presser
    assert (finished, result) == (False, None) and not gate.quit.is_set()

    clock.now += 1.5  # the second press, within the window, while the next step runs
    started.clear()
    presser = asyncio.create_task(press_when_started())
    try:
        await gate.cancellable(answer())
        raise AssertionError("a second press within the window must quit")
    except QuitRequested:
        pass
    await presser
    assert gate.quit.is_set()


async def test_presses_far_apart_each_cancel_and_an_idle_press_quits() -> None:
    clock = FakeClock()
    gate = InterruptGate(window_s=2.0, clock=clock)
    for _ in range(2):
        clock.now += 10
        step = asyncio.ensure_future(asyncio.sleep(3600))
        asyncio.get_running_loop().call_soon(gate.press)
        assert await gate.cancellable(step) == (False, None)
        assert not gate.quit.is_set()
    clock.now += 10
    gate.press()  # nothing running: quit
    assert gate.quit.is_set()
    try:
        await gate.until_quit(asyncio.sleep(3600))
        raise AssertionError("until_quit must give up once quitting")
    except QuitRequested:
        pass


async def test_a_step_that_finishes_returns_its_result() -> None:
    gate = InterruptGate()

    async def quick() -> int:
        return 7

    assert await gate.cancellable(quick()) == (True, 7)
    assert await gate.until_quit(quick()) == 7


def test_a_progress_message_prints_once_then_moves_a_bar_until_it_ends() -> None:
    clock = FakeClock()
    changes: list[int] = []
    board = ProgressBoard({"video": 60.0, "image": 20.0}, clock=clock)
    board.on_change = lambda: changes.append(len(board.items))
    queued = [Notice(level="progress", text="🎬 Video queued — _waves_")]
    assert board.update("1", queued) is False  # the first version is printed
    clock.now += 15
    running = [Notice(level="progress", text="🎬 Video in_progress (15 s) — _waves_")]
    assert board.update("1", running) is True  # later versions only move the bar
    (line,) = board.lines()
    assert line.startswith("🎬 video ") and "15 s / ~60 s" in line and "in_progress" in line
    assert line.count("█") == 5  # a quarter of 20 cells
    done = [Notice(level="success", text="🎬 Video ready — _waves_")]
    assert board.update("1", done) is False and board.lines() == []
    assert changes == [1, 0]


def test_a_reported_percent_wins_and_other_messages_are_not_bars() -> None:
    board = ProgressBoard({"task": 5.0})
    text = "🎬 OpenMarlin task `t1` — running — 40 % — _a plane_"
    board.update("7", [Notice(level="progress", text=text)])
    (line,) = board.lines()
    assert "40 %" in line and line.count("█") == 8 and "running" in line
    assert (
        board.update("8", [Notice(level="progress", text="Waiting for you to approve…")]) is False
    )
    assert board.update("9", [Text(markdown="a video of a plane")]) is False
    assert list(board.items) == ["7"]


def test_markdown_is_rendered_and_line_breaks_kept() -> None:
    out = SGR.sub("", render_terminal([Text(markdown="**bold** and `code`\nsecond line")]))
    assert "bold and code" in out and "**" not in out and "`" not in out
    assert [line.rstrip() for line in out.splitlines()] == ["bold and code", "second line"]
    assert hard_breaks("a\n```\nx\n```\nb") == "a  \n```\nx\n```\nb"


def test_notices_and_failures_style_inline_markdown_only() -> None:
    out = render_terminal(
        [
            Notice(level="info", text="`gpt-5.4-mini` · 29 tokens — _a red cat_"),
            Failure(code="model_not_found", message="no", hint="Did you mean `claude-sonnet-4-6`?"),
        ]
    )
    plain = SGR.sub("", out)
    assert "ℹ gpt-5.4-mini · 29 tokens — a red cat" in plain
    assert "→ Did you mean claude-sonnet-4-6?" in plain
    assert SGR.search(out)  # styled


def test_a_streamed_answer_ends_as_its_rendered_markdown() -> None:
    out = io.StringIO()
    ticks = iter(range(1000))
    stream = MarkdownStream(out, width=lambda: 60, clock=lambda: float(next(ticks)))
    text = "# Title\n\nsome **bold** words\n\n```python\nprint('hi')\n```\n" + "line\n" * 10
    for i in range(0, len(text), 7):
        stream.append(text[i : i + 7])
    stream.finish()
    printed = out.getvalue()
    # Redraws go up and clear; what is left on screen is the whole answer, rendered.
    screen = _replay(printed)
    joined = "\n".join(screen)
    assert "Title" in joined and "some bold words" in joined and "print('hi')" in joined
    assert "**" not in joined and "```" not in joined
    assert sum(1 for line in screen if line.strip() == "line") == 10


def _replay(printed: str) -> list[str]:
    """The lines a terminal shows after `printed` (only the escapes MarkdownStream uses)."""
    lines: list[str] = [""]
    for token in re.split(r"(\x1b\[\d+F\x1b\[J|\n)", SGR.sub("", printed)):
        if token == "\n":
            lines.append("")
        elif token.startswith("\x1b["):
            up = int(token[2 : token.index("F")])
            del lines[len(lines) - 1 - up :]
            lines.append("")
        else:
            lines[-1] += token
    return lines
