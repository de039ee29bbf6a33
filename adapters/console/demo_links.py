"""`tokenbot console --sim`: keep copies of the simulators' media, since their links die with them.

The simulators run inside the demo process, so a presigned link that says "expires in 59 min"
really stops working when the demo exits. Media links to them are downloaded into the output
folder next to the images, and the reply says so.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from bot.core.messages import Link, Part
from bot.core.outbound_text import neutralise_controls

MEDIA_SUFFIXES = frozenset({".mp4", ".png", ".jpg", ".jpeg", ".webp"})
# The simulators' media are a few KB; anything far larger is not theirs to copy.
MAX_COPY_BYTES = 50 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class DemoMedia:
    """What the console does differently when its backends are the in-process simulators."""

    def __init__(self, sim_urls: Iterable[str], out_dir: Path) -> None:
        self.sim_urls = tuple(u.rstrip("/") + "/" for u in sim_urls if u)
        self.out_dir = out_dir
        self._saved: dict[str, Path] = {}

    def _is_sim_media(self, url: str) -> bool:
        suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
        return suffix in MEDIA_SUFFIXES and url.startswith(self.sim_urls)

    def _target(self, url: str) -> Path:
        name = _UNSAFE.sub("_", PurePosixPath(urlsplit(url).path).name)[-120:]
        return self.out_dir / f"demo-{name}"

    async def keep_copies(self, parts: Sequence[Part]) -> list[str]:
        """Download each simulator media link in `parts` once; lines saying where it went."""
        lines: list[str] = []
        for part in parts:
            if not isinstance(part, Link) or not self._is_sim_media(part.url):
                continue
            saved = self._saved.get(part.url)
            if saved is None:
                try:
                    saved = await self._download(part.url)
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    lines.append(
                        "⚠ Could not save a copy of that link "
                        f"({neutralise_controls(type(exc).__name__)}: "
                        f"{neutralise_controls(str(exc))[:200]}); it works only while this demo runs."
                    )
                    continue
                self._saved[part.url] = saved
            size = saved.stat().st_size
            lines.append(
                f"💾 saved a copy to {neutralise_controls(str(saved))} ({size:,} bytes): "
                "the link above works only while this demo runs"
            )
        return lines

    async def _download(self, url: str) -> Path:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(url)
        resp.raise_for_status()
        if len(resp.content) > MAX_COPY_BYTES:
            raise ValueError(f"{len(resp.content):,} bytes is more than a demo file")
        target = self._target(url)
        await asyncio.to_thread(_write, target, resp.content)
        return target


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
