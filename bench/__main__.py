"""`make bench`: every benchmark, one table, each figure next to its baseline and target.

Each benchmark module exposes `async def rows() -> list[Row]`; a Row is
(name, measured, baseline, ratio, target, ok), with the baseline measured in the same run.
Gated figures are the median of BENCH_REPEATS (default 3) repeats, and a gate fails only when
the median misses its target by more than the repeats' spread (bench/gates.py).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import Sequence

from bench.gates import REPEATS, Row, load_text, machine_line

MODULES = (
    "bench.bench_router",
    "bench.bench_chat",
    "bench.bench_flood",
    "bench.bench_slack",
    "bench.bench_discord",
    "bench.bench_burst",
    "bench.bench_load",
    "bench.bench_replicas",
)


def format_row(row: Row) -> str:
    """One Markdown table line; `reported` rows have no pass/FAIL."""
    name, measured, baseline, ratio, target, ok = row
    ratio_text = f"{ratio:.3f}" if ratio == ratio else ""  # NaN: a reported figure, no ratio
    result = "pass" if ok else "FAIL"
    if target == "reported":
        result = ""
    return f"| {name} | {measured} | {baseline} | {ratio_text} | {target} | {result} |"


async def main(args: Sequence[str] | None = None, modules: Sequence[str] = MODULES) -> int:
    """Run everything (or the modules named in `args`) and print a Markdown table; exit 1
    when a gate misses its target by more than its spread. Progress goes to stderr."""
    only = set(sys.argv[1:] if args is None else args)
    table: list[Row] = []
    chosen = [n for n in modules if not only or n.rsplit(".", 1)[-1] in only]
    load_before = os.getloadavg()
    began = time.perf_counter()
    for index, name in enumerate(chosen, 1):
        short = f"[{index}/{len(chosen)}] {name.rsplit('.', 1)[-1]}"
        print(f"bench: {short} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            print(f"bench: {short} not present, skipped", file=sys.stderr, flush=True)
            continue
        rows = await module.rows()
        table.extend(rows)
        elapsed = time.perf_counter() - started
        print(f"bench: {short} done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    # One header line (machine, load average, repeats), then the table alone.
    print(
        f"{machine_line()}; load average before {load_text(load_before)}, "
        f"after {load_text(load_after)}; {REPEATS} repeats per gated figure "
        f"(median, spread min–max); run time {time.perf_counter() - began:.0f} s; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(format_row(row))
    return 0 if all(row[5] for row in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
