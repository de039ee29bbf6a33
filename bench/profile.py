"""Sampling a bench's bot process with py-spy, and reading the samples back as top functions.

`make profile` sets BENCH_PROFILE_DIR and runs bench_burst: each burst's `tokenbot run` is
sampled by `py-spy record --pid` (collapsed stacks, `--format raw`) for the length of the burst,
and the top functions by own time and by total time are printed. py-spy is an outside process
that reads the bot's memory, so the bot runs unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Profile", "profile_dir", "profiled", "read_collapsed"]


def profile_dir() -> Path | None:
    """Where to write profiles (BENCH_PROFILE_DIR), None when not profiling."""
    value = os.environ.get("BENCH_PROFILE_DIR")
    if not value:
        return None
    where = Path(value)
    where.mkdir(parents=True, exist_ok=True)
    return where


@dataclass(frozen=True)
class Profile:
    """Samples per function: where the time went (own) and what it was under (total)."""

    samples: int
    own: Counter[str]
    total: Counter[str]

    def top(self, n: int = 15) -> str:
        """Two lists of the `n` heaviest functions, as percentages of all samples."""
        if not self.samples:
            return "no samples"
        lines = [f"{self.samples} samples; own time (the function itself running):"]
        lines += [f"  {c / self.samples:6.1%}  {f}" for f, c in self.own.most_common(n)]
        lines.append("total time (the function or anything it called):")
        lines += [f"  {c / self.samples:6.1%}  {f}" for f, c in self.total.most_common(n)]
        return "\n".join(lines)


def read_collapsed(text: str) -> Profile:
    """Parse py-spy's raw output: one `frame;frame;…;leaf count` line per distinct stack.

    A frame is `function (file:line)`; the line number is dropped so one function's samples
    add up. A recursive function counts once per stack in `total`.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return Profile(samples, own, total)


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    # Shorten site-packages and the repo's own paths to what identifies the module.
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


@contextlib.asynccontextmanager
async def profiled(pid: int, out: Path, rate: int = 250) -> AsyncIterator[None]:
    """Sample process `pid` with py-spy while the block runs; the stacks go to `out`."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    process = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # py-spy attaches before the burst starts
    try:
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        _, err = await process.communicate()
        if not out.exists():
            print(f"bench: py-spy wrote no profile: {err.decode()[-500:]}", file=sys.stderr)
