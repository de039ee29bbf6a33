"""Reply parts for a terminal: Markdown rendered by rich (code blocks, tables, emphasis).

Pipes get `render.render`'s plain text; this module is used only when stdout is a terminal.
Every piece of user or backend text is neutralised before rich sees it, so the only escape
sequences printed are rich's own styles; links are shown as text, never as hidden OSC 8
hyperlinks, and rich markup in the text (`[red]`) is printed as it is.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from rich.console import Console, RenderableType
from rich.markdown import Markdown
from rich.text import Text as RichText

from adapters.console.render import render_part
from bot.core.messages import Failure, Notice, Part, Text
from bot.core.outbound_text import neutralise_controls as safe

# `code`, **bold**, _italic_ / *italic* in one-line notices.
_INLINE = re.compile(r"`([^`\n]+)`|\*\*([^*\n]+)\*\*|(?<![\w*])[_*]([^_*\n]+)[_*](?![\w*])")
_INLINE_STYLES = ("bold cyan", "bold", "italic")


def terminal_width() -> int:
    """The terminal's width, one column short so a full line never wraps on its own."""
    return max(shutil.get_terminal_size((100, 24)).columns - 1, 20)


def _to_ansi(renderable: RenderableType, width: int) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=True, width=width, highlight=False, soft_wrap=False
    )
    console.print(renderable)
    return buffer.getvalue()


def hard_breaks(text: str) -> str:
    """Keep each line break, as chat platforms do (CommonMark joins lines into one paragraph).

    Two trailing spaces make a hard break; code fences are left exactly as they are.
    """
    lines = text.split("\n")
    fenced = False
    for i, line in enumerate(lines[:-1]):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced and line.strip():
            lines[i] = line + "  "
    return "\n".join(lines)


def markdown(text: str) -> Markdown:
    """Markdown of neutralised text, line breaks kept, links shown as text."""
    return Markdown(hard_breaks(safe(text)), hyperlinks=False, code_theme="monokai")


def inline(text: str) -> RichText:
    """One line with inline Markdown styled (the rest of the text printed as it is)."""
    out = RichText()
    at = 0
    for found in _INLINE.finditer(text):
        out.append(text[at : found.start()])
        index = next(i for i, g in enumerate(found.groups()) if g is not None)
        out.append(found.group(index + 1), style=_INLINE_STYLES[index])
        at = found.end()
    out.append(text[at:])
    return out


def render_terminal_part(part: Part, width: int) -> str:
    """One part with Markdown rendered, as text with ANSI styles."""
    if isinstance(part, Text):
        return _to_ansi(markdown(part.markdown), width).rstrip("\n")
    if isinstance(part, Notice | Failure):
        lines = render_part(part).split("\n")  # already neutralised
        return "\n".join(_to_ansi(inline(line), width).rstrip("\n") for line in lines)
    return render_part(part)


def render_terminal(parts: Sequence[Part]) -> str:
    """All parts, one block each, for a terminal."""
    width = terminal_width()
    return "\n".join(render_terminal_part(p, width) for p in parts)


class MarkdownStream:
    """A streamed answer rendered as Markdown while it arrives.

    The whole text is rendered again on each update; lines that have settled (all but the
    last few) are printed once, the last few are redrawn in place, since the end of an answer
    still changes as it streams (an open code fence, a growing table).
    """

    LIVE_LINES = 6
    MIN_INTERVAL_S = 0.05  # re-rendering on every delta would cost O(n²) for long answers

    def __init__(
        self,
        out: TextIO,
        width: Callable[[], int] = terminal_width,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.width = width
        self.clock = clock
        self.text = ""
        self._settled = 0  # lines printed for good
        self._live = 0  # lines on screen below them, to redraw
        self._drawn_at = float("-inf")

    def append(self, delta: str) -> None:
        """Add streamed text (neutralised by the caller or here)."""
        self.text += safe(delta)
        if self.clock() - self._drawn_at >= self.MIN_INTERVAL_S:
            self._draw(final=False)

    def finish(self) -> None:
        """Print the whole answer in its final form."""
        self._draw(final=True)

    def _draw(self, final: bool) -> None:
        self._drawn_at = self.clock()
        lines = _to_ansi(markdown(self.text), self.width()).rstrip("\n").split("\n")
        if not self.text:
            lines = []
        settled = len(lines) if final else max(len(lines) - self.LIVE_LINES, self._settled)
        chunk = ""
        if self._live:
            # To the start of the first live line, and clear from there down.
            chunk += f"\x1b[{self._live}F\x1b[J"
        shown = lines[self._settled : settled] + ([] if final else lines[settled:])
        chunk += "".join(line + "\n" for line in shown)
        self._live = 0 if final else len(lines) - settled
        self._settled = settled
        self.out.write(chunk)
        self.out.flush()
