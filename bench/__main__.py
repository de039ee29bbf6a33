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

Row = tuple[str, str, str, float, str, bool]

MODULES = (
    "bench.bench_router",
    "bench.bench_chat",
    "bench.bench_slack",
    "bench.bench_discord",
    "bench.bench_load",
)


def _format(row: Row) -> str:
    name, measured, baseline, ratio, target, ok = row
    ratio_text = f"{ratio:.3f}" if ratio == ratio else ""  # NaN: a reported figure, no ratio
    result = "pass" if ok else "FAIL"
    if target == "reported":
        result = ""
    return f"| {name} | {measured} | {baseline} | {ratio_text} | {target} | {result} |"


async def main() -> int:
    """Run everything and print a Markdown table; exit 1 when a target is missed."""
    only = set(sys.argv[1:])
    table: list[Row] = []
    for name in MODULES:
        if only and name.rsplit(".", 1)[-1] not in only:
            continue
        module = importlib.import_module(name)
        table.extend(await module.rows())
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
