"""`make bench`: every benchmark, one table, each figure next to its baseline and target.

Each benchmark module exposes `async def rows() -> list[Row]`; a Row is
(name, measured, baseline, ratio, target, ok), with the baseline measured in the same run.
Gated figures are the median of BENCH_REPEATS (default 3) repeats, and a gate fails only when
the median misses its target by more than the repeats' spread (bench/gates.py). Each module
runs in a fresh interpreter, so the fakes and simulators some of them host in the bench process
answer from their own heap, not one the earlier modules grew. (The gap that prompted this, the
burst rows worse after the other modules than alone, turned out to be the machine's speed
moving between runs: bench_burst alone later gave the same figures.)
"""

from __future__ import annotations

import asyncio
import importlib
import json
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
        rows = await _rows_in_child(name)
        if rows is None:
            print(f"bench: {short} not present, skipped", file=sys.stderr, flush=True)
            continue
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


_ROWS_FLAG = "--rows-of"


async def _rows_in_child(name: str) -> list[Row] | None:
    """`name`'s rows, measured by a fresh `python -m bench --rows-of name`; None when the
    module is not there. Its progress goes straight to this stderr."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", _ROWS_FLAG, name, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    if child.returncode == 3:
        return None
    if child.returncode != 0:
        raise RuntimeError(f"bench module {name} failed (exit status {child.returncode})")
    return [tuple(row) for row in json.loads(out)]


async def _print_rows_of(name: str) -> int:
    """The child's side: run one module, print its rows as JSON (exit 3: no such module)."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return 3
    rows = await module.rows()
    print(json.dumps([list(row) for row in rows]))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [_ROWS_FLAG]:
        sys.exit(asyncio.run(_print_rows_of(sys.argv[2])))
    sys.exit(asyncio.run(main()))
