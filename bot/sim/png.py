"""A tiny PNG encoder (zlib + struct) so the simulators can hand out real, decodable images."""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    # The CRC covers the chunk type and its data, not the length field.
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """Encode `rgb` (width*height*3 bytes, row-major, 8-bit RGB) as a PNG file."""
    if width <= 0 or height <= 0:
        raise ValueError("PNG dimensions must be positive")
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} RGB bytes, got {len(rgb)}")
    # Colour type 2 = truecolour, bit depth 8, no interlace; every row uses filter 0 (None).
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def gradient_png(seed: str, size: int) -> bytes:
    """A size x size diagonal gradient whose two colours are derived from `seed`."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    start, end = digest[0:3], digest[3:6]
    span = max(1, 2 * (size - 1))
    rows = bytearray()
    for y in range(size):
        for x in range(size):
            t = (x + y) / span
            rows.extend(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
    return encode_png(size, size, bytes(rows))
