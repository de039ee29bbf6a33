"""The event-stream readers: however the bytes are cut into network reads, the lines are the same.

`sse_lines` yields one line at a time (what a plain client does); `sse_line_batches` yields the
complete lines of each read together, so the chat reader folds them in one pass. Both must agree
on every split, including one inside a multi-byte character or between "\\r" and "\\n".
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bot.core.openai_chat import sse_line_batches, sse_lines


class _Reads(httpx.AsyncByteStream):
    """A response body delivered in exactly these reads."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self._reads:
            yield read


def _response(reads: list[bytes]) -> httpx.Response:
    return httpx.Response(200, stream=_Reads(reads))


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


async def _lines(reads: list[bytes]) -> list[str]:
    return [line async for line in sse_lines(_response(reads))]


async def _batched(reads: list[bytes]) -> list[list[str]]:
    return [batch async for batch in sse_line_batches(_response(reads))]


# Text a server can send: any character UTF-8 can encode (no lone surrogates) but a line end.
_LINE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)


@given(
    lines=st.lists(_LINE, max_size=12),
    crlf=st.booleans(),
    tail=_LINE,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
async def test_batches_hold_the_same_lines_as_the_line_reader(
    lines: list[str], crlf: bool, tail: str, cuts: list[int]
) -> None:
    end = "\r\n" if crlf else "\n"
    data = ("".join(line + end for line in lines) + tail).encode()
    reads = _cut(data, cuts)
    batches = await _batched(reads)
    assert [line for batch in batches for line in batch] == await _lines(reads)
    assert all(batches), "an empty batch is a wake-up with nothing in it"


async def test_a_character_cut_between_two_reads_is_decoded_whole() -> None:
    data = 'data: {"content": "café ☕"}\n\n'.encode()
    at = data.index("☕".encode()) + 1  # inside the three bytes of the cup
    batches = await _batched([data[:at], data[at:]])
    assert batches == [['data: {"content": "café ☕"}', ""]]


async def test_every_event_of_one_read_comes_in_one_batch() -> None:
    reads = [b"data: 1\n\ndata: 2\n\ndata: 3", b"\n\n: cost\n"]
    assert await _batched(reads) == [
        ["data: 1", "", "data: 2", ""],
        ["data: 3", "", ": cost"],
    ]
