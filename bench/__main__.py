"""`make bench`: every benchmark, one table, each figure next to its baseline and target."""

from __future__ import annotations

import asyncio
import os
import platform
import sys

from bench import bench_chat, bench_router


def _row(name: str, measured: str, baseline: str, ratio: float, target: str, ok: bool) -> str:
    return f"| {name} | {measured} | {baseline} | {ratio:.3f} | {target} | {'pass' if ok else 'FAIL'} |"


async def main() -> int:
    """Run everything and print a Markdown table; exit 1 when a target is missed."""
    rows: list[str] = []
    failed = False

    r = bench_router.run()
    mps = float(r["messages_per_second"])
    ok = mps >= 100_000
    failed |= not ok
    rows.append(
        _row(
            "router: messages classified /s (90% chat, 10% commands)",
            f"{mps:,.0f}",
            "target 100,000",
            mps / 100_000,
            "≥ 1.0",
            ok,
        )
    )

    t = await bench_chat.ttft()
    ok = t["ratio"] <= 1.05
    failed |= not ok
    rows.append(
        _row(
            "chat: time to first token p50 (50 ms backend latency)",
            f"{t['bot_p50_ms']:.1f} ms",
            f"{t['direct_p50_ms']:.1f} ms direct",
            t["ratio"],
            "≤ 1.05",
            ok,
        )
    )

    c = await bench_chat.concurrent_chats(int(os.environ.get("BENCH_CONCURRENCY", "500")))
    ok = c["ratio"] >= 0.95 and c["bot_errors"] == 0
    failed |= not ok
    rows.append(
        _row(
            f"chat: {c['n']} concurrent commands, completed /s",
            f"{c['bot_per_s']:.1f}/s ({c['bot_errors']} errors)",
            f"{c['direct_per_s']:.1f}/s direct ({c['direct_errors']} errors)",
            c["ratio"],
            "≥ 0.95, 0 errors",
            ok,
        )
    )
    rows.append(
        f"| chat: peak RSS of the bot process | {c['peak_rss_mb']:.0f} MB | | | reported | |"
    )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )
    print("| benchmark | tokenbot | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
