"""Splitting long Markdown into message-sized chunks (bot.core.text_split)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.text_split import (
    Fence,
    open_fence,
    split_chunks,
    split_markdown,
    stable_prefix,
)

WS = "[ \t\r\n]*"


def unclosed_fence(chunk: str) -> str | None:
    """The fence left open at the end of `chunk` (CommonMark rules, written independently)."""
    fence: str | None = None
    for line in chunk.split("\n"):
        m = re.fullmatch(r" {0,3}(`{3,}|~{3,})(.*)", line)
        if m is None:
            continue
        marker, info = m.groups()
        if fence is None:
            if not (marker[0] == "`" and "`" in info):
                fence = marker
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not info.strip():
            fence = None
    return fence


def rejoins(chunks: list[str], original: str) -> bool:
    """True if the chunks, minus added fence lines and whitespace at cuts, give `original`."""
    parts = []
    for chunk in chunks:
        # The splitter may have added a leading fence line and/or a trailing closing fence, so
        # accept any of those readings of the chunk as the source span.
        head = re.match(r" {0,3}(?:`{3,}|~{3,})[^\n]*\n", chunk)
        tail = re.search(r"\n(?:`{3,}|~{3,})$", chunk)
        h = head.end() if head else 0
        t = tail.start() if tail else len(chunk)
        spans = {chunk, chunk[h:], chunk[:t], chunk[h:t] if h <= t else ""} - {""}
        parts.append("(?:" + "|".join(re.escape(span) for span in spans) + ")")
    return re.fullmatch(WS + WS.join(parts) + WS, original) is not None


# Markdown-ish text: words, spaces, line breaks, blank lines, fences with and without info
# strings, inline backticks, indentation and non-ASCII. Fence tokens start with a line break so
# fence markers stay short (a 20-backtick fence can't be closed within a 20-char chunk).
TOKENS = st.sampled_from(
    [
        "word",
        "a",
        "longerword",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\n```",
        "\n```python",
        "\n````",
        "\n~~~",
        "\n   ```js",
        "x```y",
        "`code`",
        "\n    indented",
        "é",
        "🙂",
        "\r\n",
    ]
)
TEXTS = st.lists(TOKENS, max_size=120).map("".join)
LIMITS = st.integers(min_value=20, max_value=160)


def test_short_text_is_one_chunk() -> None:
    assert split_markdown("hello world", 100) == ["hello world"]


def test_empty_and_blank_give_no_chunks() -> None:
    assert split_markdown("", 10) == []
    assert split_markdown(" \n\n  ", 10) == []


def test_trailing_whitespace_is_dropped() -> None:
    assert split_markdown("hello\n\n", 100) == ["hello"]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_markdown("x", 0)


def test_prefers_paragraph_then_line_then_space() -> None:
    para = "first paragraph line one\nline two of it\n\nsecond paragraph goes here"
    assert split_markdown(para, 45) == [
        "first paragraph line one\nline two of it",
        "second paragraph goes here",
    ]
    lines = "line number one here\nline number two here\nline three"
    assert split_markdown(lines, 45) == ["line number one here\nline number two here", "line three"]
    words = "alpha beta gamma delta epsilon zeta eta theta"
    assert split_markdown(words, 20) == ["alpha beta gamma", "delta epsilon zeta", "eta theta"]


def test_early_paragraph_break_does_not_waste_a_message() -> None:
    # A blank line near the start would leave the chunk mostly empty; a later line break wins.
    text = "Hi.\n\n" + "\n".join(f"line {i:02d} of text" for i in range(10))
    chunks = split_markdown(text, 60)
    assert len(chunks[0]) > 30


def test_hard_cut_when_no_whitespace() -> None:
    assert split_markdown("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]


def test_code_fence_closed_and_reopened_with_info_string() -> None:
    code = "\n".join(f"print({i})" for i in range(12))
    text = f"Here is code:\n\n```python\n{code}\n```\n\nDone."
    chunks = split_markdown(text, 60)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert len(chunk) <= 60
        assert unclosed_fence(chunk) is None
    assert chunks[1].startswith("```python\n")
    assert chunks[0].endswith("\n```")
    assert chunks[-1].endswith("Done.")
    assert rejoins(chunks, text)


def test_cut_inside_fence_without_close_in_source() -> None:
    # A model that runs out of tokens mid-block still gets balanced chunks.
    text = "```\n" + "x = 1\n" * 20
    for chunk in split_markdown(text, 40):
        assert unclosed_fence(chunk) is None
    assert split_markdown("```sh\nls", 100) == ["```sh\nls\n```"]


def test_long_info_string_reopens_with_bare_fence() -> None:
    text = "```" + "x" * 30 + "\n" + "code line\n" * 10
    chunks = split_markdown(text, 50)
    assert chunks[1].startswith("```\n")
    assert all(unclosed_fence(c) is None and len(c) <= 50 for c in chunks)


def test_fence_continuation_argument() -> None:
    fence = Fence("```py", "`", 3)
    assert split_markdown("x = 1", 50, fence=fence) == ["```py\nx = 1\n```"]
    assert split_markdown("x = 1\n```\nafter", 50, fence=fence) == ["```py\nx = 1\n```\nafter"]


def test_open_fence() -> None:
    assert open_fence("a\n```js\ncode") == Fence("```js", "`", 3)
    assert open_fence("```js\ncode\n```") is None
    assert open_fence("````\n```\n") == Fence("````", "`", 4)  # shorter fence doesn't close
    assert open_fence("```a`b\n") is None  # backtick in info string: not a fence
    assert open_fence("~~~\n```\n") is not None


def test_stable_prefix_waits_for_lookahead() -> None:
    text = "word " * 5 + "wo"  # splits in two, but "wo" may still grow into the window
    assert len(split_markdown(text, 20)) == 2
    assert stable_prefix(text, 20) == ([], text, None)
    longer = "word " * 30
    final, rest, fence = stable_prefix(longer, 20)
    assert final and fence is None
    assert all(len(c) <= 20 for c in final)
    assert rejoins([*final, rest], longer)


def test_stable_prefix_carries_fence() -> None:
    text = "```python\n" + "".join(f"v{i} = {i}\n" for i in range(40))
    final, rest, fence = stable_prefix(text, 60)
    assert final and fence == Fence("```python", "`", 3)
    assert not rest.startswith("```")
    # The rest continues inside the fence; splitting it with `fence` reopens it.
    assert split_markdown(rest, 60, fence=fence)[0].startswith("```python\n")


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, limit=LIMITS)
def test_split_properties(text: str, limit: int) -> None:
    chunks = split_chunks(text, limit)
    texts = [c.text for c in chunks]
    assert texts == split_markdown(text, limit)
    for c in chunks:
        assert 0 < len(c.text) <= limit
        assert c.text.strip()
        assert unclosed_fence(c.text) is None
        # Exact reconstruction: each chunk is an optional added fence + source span + close.
        assert c.text == c.reopen + text[c.start : c.end] + c.close
        assert c.reopen == "" or re.fullmatch(r"(`{3,}|~{3,})[^\n]*\n", c.reopen)
        assert c.close == "" or re.fullmatch(r"\n(`{3,}|~{3,})", c.close)
    # What lies between chunks (and around them) is whitespace only, and nothing is skipped.
    bounds = [0] + [b for c in chunks for b in (c.start, c.end)] + [len(text)]
    for gap_start, gap_end in zip(bounds[::2], bounds[1::2], strict=True):
        assert gap_start <= gap_end
        assert text[gap_start:gap_end].strip(" \t\r\n") == ""
    if text.strip(" \t\r\n"):
        assert chunks
    assert rejoins(texts, text)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, limit=LIMITS, cut=st.integers(min_value=0, max_value=2000))
def test_stable_prefix_then_rest_is_a_valid_split(text: str, limit: int, cut: int) -> None:
    # Streaming: settle what we can from a prefix, then the rest arrives.
    head, tail = text[: cut % (len(text) + 1)], text[cut % (len(text) + 1) :]
    final, rest, fence = stable_prefix(head, limit)
    chunks = final + split_markdown(rest + tail, limit, fence=fence)
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert unclosed_fence(chunk) is None
    assert rejoins(chunks, text)
