"""Read a SQLite write-ahead log before SQLite does, to notice committed transactions it would drop.

SQLite replays a WAL only up to the first frame whose checksum or salt does not match and
silently ignores the rest, so a damaged `-wal` left by a crash loses its last commits without
a word. The format is public (https://www.sqlite.org/fileformat.html#the_write_ahead_log);
this module checks the same checksums SQLite does and reports damage that would lose data.
"""

from __future__ import annotations

import struct
from pathlib import Path

_MAGIC_LE = 0x377F0682  # checksums over little-endian words
_MAGIC_BE = 0x377F0683  # checksums over big-endian words
_HEADER_BYTES = 32
_FRAME_HEADER_BYTES = 24
_MASK = 0xFFFFFFFF


def _checksum(buf: bytes, seed: tuple[int, int], big_endian: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(buf) // 4}I", buf)
    s0, s1 = seed
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


def wal_damage(wal: Path) -> str | None:
    """None when `wal` is absent, empty or intact; else what is wrong, in a few words.

    A torn last frame (a write cut off by a crash before its commit) is normal and not
    reported; a committed frame SQLite would skip past a bad one is.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    if len(data) < _HEADER_BYTES:
        return f"its header is truncated ({len(data)} bytes)"
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in (_MAGIC_LE, _MAGIC_BE):
        return "its header is not a SQLite WAL header"
    big_endian = magic == _MAGIC_BE
    if _checksum(data[:24], (0, 0), big_endian) != (c1, c2):
        return "its header checksum does not match"
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return f"its header names an impossible page size ({page_size})"
    return _frame_damage(data, page_size, (salt1, salt2), (c1, c2), big_endian)


def _frame_damage(
    data: bytes, page_size: int, salts: tuple[int, int], seed: tuple[int, int], big_endian: bool
) -> str | None:
    frame_bytes = _FRAME_HEADER_BYTES + page_size
    frames = (len(data) - _HEADER_BYTES) // frame_bytes
    checksum = seed
    valid = 0
    # The valid prefix ends at the first frame of another generation (stale, left from before
    # the WAL was last reset: normal) or with a bad checksum (a torn write, or damage).
    for i in range(frames):
        off = _HEADER_BYTES + i * frame_bytes
        pgno, _commit, s1, s2, f1, f2 = struct.unpack(">6I", data[off : off + 24])
        if (s1, s2) != salts:
            break
        checksum = _checksum(data[off : off + 8], checksum, big_endian)
        checksum = _checksum(data[off + 24 : off + frame_bytes], checksum, big_endian)
        if checksum != (f1, f2) or pgno == 0:
            break
        valid += 1
    lost = 0
    for i in range(valid + 1, frames):
        off = _HEADER_BYTES + i * frame_bytes
        _pgno, commit, s1, s2, _f1, _f2 = struct.unpack(">6I", data[off : off + 24])
        # Stale frames carry other salts; a frame of this generation that ends a transaction
        # means a commit that SQLite would skip.
        if (s1, s2) == salts and commit != 0:
            lost += 1
    if lost:
        return (
            f"frame {valid + 1} of {frames} is damaged and {lost} committed "
            f"transaction(s) after it would be silently dropped"
        )
    return None
