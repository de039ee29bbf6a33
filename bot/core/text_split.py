"""Split long Markdown into message-sized chunks without breaking fenced code blocks.

Cuts prefer a blank line, then a line break, then a space, then a hard cut. A cut inside a
``` fence closes the fence at the end of the chunk and reopens it (same info string) at the
start of the next one, so every chunk renders on its own. Only whitespace at a cut is dropped.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "Chunk",
    "Fence",
    "Stable",
    "open_fence",
    "split_chunks",
    "split_markdown",
    "stable_prefix",
]

_WS = " \t\r\n"
_WS_RUN = re.compile(r"[ \t\r\n]+")
# CommonMark fence line: up to 3 spaces of indent, 3+ backticks or tildes, then the info string.
_FENCE_LINE = re.compile(r" {0,3}(?P<marker>`{3,}|~{3,})(?P<info>[^\n]*)")
# Decided by a line's first few characters only, so it never changes as a streamed line grows.
_FENCE_LIKE = re.compile(r" {0,3}(?:`{3}|~{3})")
# Give up on hard-cut searches after this many positions (only pathological input gets there).
_MAX_HARD_TRIES = 256


@dataclass(frozen=True)
class Fence:
    """An open fenced code block; `opener` is its opening line, reused to reopen after a cut."""

    opener: str
    char: str
    length: int

    @property
    def marker(self) -> str:
        """The bare fence (e.g. ```), which also closes it."""
        return self.char * self.length


@dataclass(frozen=True)
class Chunk:
    """One chunk: `text` is `reopen` + source[start:end] + `close`; `fence` is open at `end`."""

    text: str
    start: int
    end: int
    reopen: str
    close: str
    fence: Fence | None


class Stable(NamedTuple):
    """What a streamed text has settled: chunks that won't change, and the raw text after them."""

    final: list[str]
    rest: str
    fence: Fence | None


def _step(line: str, fence: Fence | None) -> Fence | None:
    """The fence open after `line`, given the one open before it."""
    m = _FENCE_LINE.fullmatch(line)
    if m is None:
        return fence
    marker, info = m["marker"], m["info"]
    if fence is None:
        if marker[0] == "`" and "`" in info:
            return None  # not a fence: backtick fences can't have backticks in the info string
        return Fence(line.strip(), marker[0], len(marker))
    if marker[0] == fence.char and len(marker) >= fence.length and not info.strip():
        return None
    return fence


def open_fence(text: str, fence: Fence | None = None) -> Fence | None:
    """The code fence still open at the end of `text` (which starts inside `fence`, if given)."""
    for line in text.split("\n"):
        fence = _step(line, fence)
    return fence


def _close(fence: Fence | None) -> str:
    return "" if fence is None else "\n" + fence.marker


def _reopen(fence: Fence | None, limit: int) -> tuple[str, Fence | None]:
    """The line that reopens `fence` in a new chunk, and the fence the chunk then starts in."""
    if fence is None:
        return "", None
    closing = 1 + fence.length
    full = fence.opener + "\n"
    if len(full) + closing <= limit // 2:
        return full, fence
    bare = fence.marker + "\n"  # a long info string costs too much room: drop it
    if len(bare) + closing < limit:
        return bare, fence
    return "", None  # the limit is too small for fences at all: plain split


@dataclass(frozen=True)
class _Line:
    start: int
    end: int  # index of its "\n" (or len(text))
    content_end: int  # before trailing whitespace
    before: Fence | None
    after: Fence | None
    fence_like: bool


def _scan_lines(text: str, pos: int, window: int, fence: Fence | None) -> list[_Line]:
    lines: list[_Line] = []
    s = pos
    while s <= window:
        e = text.find("\n", s)
        if e == -1:
            e = len(text)
        line = text[s:e]
        after = _step(line, fence)
        content_end = s + len(line.rstrip(_WS))
        lines.append(_Line(s, e, content_end, fence, after, bool(_FENCE_LIKE.match(line))))
        fence = after
        s = e + 1
    return lines


class _Cutter:
    """Chooses where the chunk starting at `pos` ends."""

    def __init__(self, text: str, pos: int, stop: int, budget: int, fence: Fence | None) -> None:
        self.text, self.pos, self.stop, self.budget = text, pos, stop, budget
        self.window = min(stop, pos + budget)
        self.lines = _scan_lines(text, pos, self.window, fence)
        self.starts = [ln.start for ln in self.lines]

    def line_at(self, c: int) -> _Line:
        return self.lines[bisect_right(self.starts, c) - 1]

    def fence_at(self, c: int) -> Fence | None:
        """The fence open at the end of a chunk cut at `c` (a cut line is parsed as it shows)."""
        ln = self.line_at(c)
        return ln.after if c >= ln.end else _step(self.text[ln.start : c], ln.before)

    def close_if_fits(self, c: int) -> str | None:
        close = _close(self.fence_at(c))
        return close if c - self.pos + len(close) <= self.budget else None

    def clean(self, c_start: int, c_end: int) -> bool:
        """True if the cut leaves every fence line whole, so chunks render like the original."""
        ln = self.line_at(c_start)
        if ln.fence_like and ln.start < c_start < ln.content_end:
            return False
        # Text continuing mid-line must not look like a fence once it starts the next chunk.
        mid_line = c_end < self.stop and self.text[c_end - 1] != "\n"
        return not (mid_line and _FENCE_LIKE.match(self.text, c_end))

    def runs(self) -> list[tuple[int, int, int]]:
        """Whitespace runs in the window as (rank, cut start, next start); rank 0 = blank line."""
        text, out = self.text, []
        bound = min(len(text), self.window + 1)
        for m in _WS_RUN.finditer(text, self.pos, bound):
            c_start = m.start()
            if c_start <= self.pos:
                continue  # indentation at the start: nothing before it to keep
            run_end = m.end()
            if run_end == bound:
                run_end = _WS_RUN.match(text, c_start).end()  # type: ignore[union-attr]
            newlines = text.count("\n", c_start, run_end)
            # Keep the next line's indentation: drop only up to the last line break.
            c_end = text.rfind("\n", c_start, run_end) + 1 if newlines else run_end
            out.append((0 if newlines >= 2 else 1 if newlines else 2, c_start, c_end))
        return out

    def soft_cut(self) -> tuple[int, int, str] | None:
        """The best whitespace cut: late in the window first, then by rank; None if none fits."""
        runs = self.runs()
        for min_c in (self.pos + self.budget // 2, self.pos + 1):
            for rank in (0, 1, 2):
                found = self.soft_cut_ranked(runs, min_c, rank)
                if found is not None:
                    return found
        return None

    def soft_cut_ranked(
        self, runs: list[tuple[int, int, int]], min_c: int, rank: int
    ) -> tuple[int, int, str] | None:
        """The last run of `rank` starting at or after `min_c` that leaves room and fences whole."""
        for r, c_start, c_end in reversed(runs):
            if c_start < min_c:
                break
            if r != rank:
                continue
            close = self.close_if_fits(c_start)
            if close is not None and self.clean(c_start, c_end):
                return c_start, c_end, close
        return None

    def hard_cut(self, strict: bool) -> tuple[int, int, str] | None:
        """The latest mid-text cut with room for the closing fence; `strict` keeps fence lines."""
        first = _WS_RUN.match(self.text, self.pos)
        content_from = first.end() if first else self.pos
        c, tries = self.window, 0
        while c > content_from and tries < _MAX_HARD_TRIES:
            tries += 1
            ln = self.line_at(c)
            if strict and ln.fence_like and ln.start < c < ln.content_end:
                c = ln.start  # never split a fence line when there's any other choice
                continue
            close = self.close_if_fits(c)
            if close is not None and (not strict or self.clean(c, c)):
                return c, c, close
            c -= 1
        return None

    def cut(self) -> tuple[int, int, str]:
        """(piece end, next chunk start, closing fence)."""
        return (
            self.soft_cut()
            or self.hard_cut(strict=True)
            or self.hard_cut(strict=False)
            or (self.window, self.window, "")  # nothing fits with a closing fence: plain cut
        )


def split_chunks(text: str, limit: int, *, fence: Fence | None = None) -> list[Chunk]:
    """Split `text` into chunks of at most `limit` chars; `fence`: the text continues a fence."""
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[Chunk] = []
    stop = len(text.rstrip(_WS))
    pos = 0
    while pos < stop:
        reopen, start_fence = _reopen(fence, limit)
        budget = limit - len(reopen)
        lead = _WS_RUN.match(text, pos)
        if lead:
            if lead.end() - pos >= budget:
                pos = lead.end()  # whitespace longer than a chunk is a separator, not content
                continue
            # Leading blank lines show as a gap at the top of a message; indentation is kept.
            pos = max(pos, text.rfind("\n", pos, lead.end()) + 1)
        if stop - pos <= budget:
            after = open_fence(text[pos:stop], start_fence)
            close = _close(after)
            if stop - pos + len(close) <= budget:
                chunks.append(
                    Chunk(reopen + text[pos:stop] + close, pos, stop, reopen, close, after)
                )
                break
        cutter = _Cutter(text, pos, stop, budget, start_fence)
        end, next_pos, close = cutter.cut()
        after = cutter.fence_at(end)
        chunks.append(Chunk(reopen + text[pos:end] + close, pos, end, reopen, close, after))
        pos, fence = next_pos, after
    return chunks


def split_markdown(text: str, limit: int, *, fence: Fence | None = None) -> list[str]:
    """Split Markdown into non-empty chunks of at most `limit` chars, each with balanced fences."""
    return [c.text for c in split_chunks(text, limit, fence=fence)]


def stable_prefix(
    text: str, limit: int, *, fence: Fence | None = None, lookahead: int = 8
) -> Stable:
    """Split a text that is still growing: the chunks more text can't change, and the rest.

    A chunk is final once the text runs `lookahead` chars past both its whole window and the
    start of the next chunk. Feed `rest` (plus what arrives later) back in with `fence`.
    """
    chunks = split_chunks(text, limit, fence=fence)
    n = len(chunks) - 1
    while n > 0:
        settled = chunks[n - 1].start + limit + lookahead
        if len(text) >= settled and len(text) >= chunks[n].start + lookahead:
            break
        n -= 1
    if n <= 0:
        return Stable([], text, fence)
    return Stable([c.text for c in chunks[:n]], text[chunks[n].start :], chunks[n - 1].fence)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with "…" where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int = 80) -> str:
    """Whitespace collapsed to single spaces, then clipped to `limit` characters."""
    return clip(" ".join(text.split()), limit)
