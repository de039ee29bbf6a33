"""`make bench`: every benchmark, one table, each figure next to its baseline and target.

Each benchmark module exposes `async def rows() -> list[Row]`; a Row is
(name, measured, baseline, ratio, target, ok), with the baseline measured in the same run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import sys
import time
from collections.abc import Sequence

Row = tuple[str, str, str, float, str, bool]

MODULES = (
    "bench.bench_router",
    "bench.bench_chat",
    "bench.bench_slack",
    "bench.bench_discord",
    "bench.bench_load",
    "bench.bench_replicas",
)


def _format(row: Row) -> str:
    name, measured, baseline, ratio, target, ok = row
    ratio_text = f"{ratio:.3f}" if ratio == ratio else ""  # NaN: a reported figure, no ratio
    result = "pass" if ok else "FAIL"
    if target == "reported":
        result = ""
    return f"| {name} | {measured} | {baseline} | {ratio_text} | {target} | {result} |"


async def main(args: Sequence[str] | None = None, modules: Sequence[str] = MODULES) -> int:
    """Run everything (or the modules named in `args`) and print a Markdown table; exit 1
    when a target is missed. Progress goes to stderr, so stdout is the table alone."""
    only = set(sys.argv[1:] if args is None else args)
    table: list[Row] = []
    chosen = [n for n in modules if not only or n.rsplit(".", 1)[-1] in only]
    for index, name in enumerate(chosen, 1):
        short = f"[{index}/{len(chosen)}] {name.rsplit('.', 1)[-1]}"
        # The table comes at the end (~140 s for all): say on stderr what is running meanwhile.
        print(f"bench: {short} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        module = importlib.import_module(name)
        rows = await module.rows()
        table.extend(rows)
        elapsed = time.perf_counter() - started
        print(f"bench: {short} done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(_format(row))
    return 0 if all(row[5] for row in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
