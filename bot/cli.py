"""`tokenbot run | console [--sim] | sim`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from bot.log_setup import configure_logging
from bot.settings import Settings, load_settings


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        msgs = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"tokenbot: bad configuration: {msgs}") from None


async def _console(args: argparse.Namespace) -> int:
    from adapters.console.run import ConsoleAdapter
    from bot.app import TokenBot
    from bot.sim.cluster import SimCluster
    from bot.store import Owner

    cluster: SimCluster | None = None
    overrides: dict[str, object] = {}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.sim:
        cluster = await SimCluster().start()
        overrides.update(cluster.urls)
        if not os.environ.get("TOKENBOT_DATA_DIR"):
            # The simulators forget everything on exit, so the demo's data does too.
            tmp = tempfile.TemporaryDirectory(prefix="tokenbot-demo-")
            overrides["data_dir"] = Path(tmp.name)
    settings = _settings(**overrides)
    configure_logging(
        settings.log_level if args.verbose else "WARNING", settings.data_dir, stderr=args.verbose
    )
    user = args.user or ("demo" if args.sim else os.environ.get("USER", "you"))
    bot = await TokenBot.create(settings)
    try:
        if cluster is not None:
            owner = Owner(platform="console", workspace="console", user=user)
            for service, key in cluster.demo_keys.items():
                await bot.store.put_credential(owner, service, key)
            print(
                "tokenbot demo — simulated AllToken at "
                f"{cluster.alltoken.base_url}; your demo key is stored. Try:\n"
                "  /alltoken-chat write a haiku about lighthouses\n"
                "  /alltoken-image a lighthouse at dusk\n"
                "  /alltoken-video waves on a pier --duration=4\n"
                "  /alltoken-search what happened in tech this week\n"
                "  /alltoken-models --type=video   ·   how much did that cost   ·   /alltoken-help\n"
                "Ctrl-D to quit.",
                flush=True,
            )
        adapter = ConsoleAdapter(bot, user=user, out_dir=Path(args.out))
        return await adapter.run()
    finally:
        await bot.aclose()
        if cluster is not None:
            await cluster.stop()
        if tmp is not None:
            tmp.cleanup()


async def _sim(args: argparse.Namespace) -> int:
    from bot.sim.cluster import SimCluster

    configure_logging(os.environ.get("TOKENBOT_LOG_LEVEL", "WARNING"), None)
    cluster = await SimCluster().start(alltoken_port=args.alltoken_port)
    print(json.dumps({"ready": True, **cluster.urls, "demo_keys": cluster.demo_keys}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await cluster.stop()
    return 0


async def _run(args: argparse.Namespace) -> int:
    settings = _settings()
    configure_logging(settings.log_level, settings.data_dir)
    platforms = [
        name
        for name, env in (("Slack", "SLACK_BOT_TOKEN"), ("Discord", "DISCORD_TOKEN"))
        if os.environ.get(env)
    ]
    if not platforms:
        print(
            "tokenbot: no chat platform configured. Set SLACK_BOT_TOKEN (+ SLACK_APP_TOKEN or "
            "SLACK_SIGNING_SECRET) or DISCORD_TOKEN, or try `tokenbot console --sim`.",
            file=sys.stderr,
        )
        return 2
    print(
        f"tokenbot: the {' and '.join(platforms)} adapter is not part of this build yet.",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="tokenbot", description="AllToken, OpenMarlin and OpenClaw Token in your chat."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    console = sub.add_parser("console", help="chat with tokenbot in this terminal")
    console.add_argument(
        "--sim", action="store_true", help="start simulated backends in-process (no tokens needed)"
    )
    console.add_argument(
        "--user", default=None, help="console user id (default: $USER, or 'demo' with --sim)"
    )
    console.add_argument(
        "--out", default="tokenbot-out", help="where images are saved (default ./tokenbot-out)"
    )
    console.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sim = sub.add_parser("sim", help="run the backend simulators until interrupted")
    sim.add_argument("--alltoken-port", type=int, default=0)
    sub.add_parser("run", help="connect to Slack and/or Discord")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tokenbot` script."""
    args = build_parser().parse_args(argv)
    runner = {"console": _console, "sim": _sim, "run": _run}[args.cmd]
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130
