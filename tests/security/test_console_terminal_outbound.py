"""On a terminal the console prints rich's styles, and nothing from user or backend text:
after removing the SGR colour codes (and the stream's own redraw codes) no escape, bell,
NUL or raw bidi override is left, in any part type, rendered or streamed."""

from __future__ import annotations

import io
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.console.terminal_render import MarkdownStream, render_terminal_part
from bot.core.messages import Part, Text
from tests.security.test_console_outbound import CONTROL, any_part, hostile

OURS = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\d+F\x1b\[J")


@pytest.mark.slow(8)
@settings(max_examples=200, deadline=None)
@given(any_part())
def test_every_part_type_rendered_for_a_terminal_has_only_our_styles(part: Part) -> None:
    out = OURS.sub("", render_terminal_part(part, 80))
    assert not CONTROL.search(out), repr(out)


@settings(max_examples=100, deadline=None)
@given(st.lists(hostile, max_size=8))
def test_a_streamed_answer_on_a_terminal_has_only_our_escapes(deltas: list[str]) -> None:
    out = io.StringIO()
    ticks = itertools.count()
    stream = MarkdownStream(out, width=lambda: 80, clock=lambda: float(next(ticks)))
    for delta in ["```\n", *deltas, "\n```\n", "[link](http://evil.test) **b**"]:
        stream.append(delta)
    stream.finish()
    printed = OURS.sub("", out.getvalue())
    assert not CONTROL.search(printed), repr(printed)
    assert "\x1b]8" not in out.getvalue()  # links are text, never hidden hyperlinks


def test_rich_markup_in_backend_text_is_printed_as_it_is() -> None:
    out = OURS.sub("", render_terminal_part(Text(markdown="[bold red]alarm[/] :smile:"), 80))
    assert "[bold red]alarm[/]" in out
