"""`tokenbot run | console [--sim] | sim | migrate | discord-sync`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from bot.core.key_shapes import redact
from bot.core.log_setup import configure_logging
from bot.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.core.app import TokenBot


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        msgs = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"tokenbot: bad configuration: {msgs}") from None


class StartupError(Exception):
    """tokenbot cannot start; the message is one line saying what, where and what to do."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_message(exc: OSError, data_dir: Path) -> str:
    where = exc.filename or data_dir
    if exc.errno == errno.ENOSPC:
        return f"cannot write {where}: the disk is full; free space on it and start again"
    return (
        f"cannot use the data dir {data_dir} ({exc.strerror or exc}: {where}); make it a "
        "directory this user can write, or point TOKENBOT_DATA_DIR at one"
    )


@contextlib.asynccontextmanager
async def _starting(settings: Settings) -> AsyncIterator[None]:
    """Turn the known start-up failures into one clear line (StartupError), not a traceback."""
    from bot.store import SecretBoxError, StoreError

    try:
        yield
    except (StoreError, SecretBoxError) as exc:
        raise StartupError(_one_line(str(exc))) from None
    except sqlite3.Error as exc:
        raise StartupError(
            _one_line(
                f"cannot open the database {settings.db_path} ({exc}); restore it from a backup"
            )
        ) from None
    except OSError as exc:
        raise StartupError(_one_line(_os_message(exc, settings.data_dir))) from None


async def _create_bot(settings: Settings, new_store: bool) -> TokenBot:
    from bot.core.app import TokenBot

    if new_store:
        settings = settings.model_copy(update={"allow_new_store": True})
    async with _starting(settings):
        bot = await TokenBot.create(settings)
    if settings.allow_new_store:
        logging.getLogger(__name__).warning(
            "accepted store %s at %s as this data dir's store (--new-store)",
            bot.store.store_id,
            settings.db_path,
        )
    return bot


async def _console(args: argparse.Namespace) -> int:
    from adapters.console.demo_links import DemoMedia
    from adapters.console.run import ConsoleAdapter
    from bot.sim.cluster import SimCluster
    from bot.store import Owner

    cluster: SimCluster | None = None
    overrides: dict[str, object] = {}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.sim:
        cluster = await SimCluster(settings=_settings()).start()
        overrides.update(cluster.urls)
        if not os.environ.get("TOKENBOT_DATA_DIR"):
            # The simulators forget everything on exit, so the demo's data does too.
            tmp = tempfile.TemporaryDirectory(prefix="tokenbot-demo-")
            overrides["data_dir"] = Path(tmp.name)
    try:
        settings = _settings(**overrides)
        async with _starting(settings):
            configure_logging(
                settings.log_level if args.verbose else "WARNING",
                settings.data_dir,
                stderr=args.verbose,
            )
        bot = await _create_bot(settings, args.new_store)
    except BaseException:
        if cluster is not None:
            await cluster.stop()
        if tmp is not None:
            tmp.cleanup()
        raise
    user = args.user or ("demo" if args.sim else os.environ.get("USER", "you"))
    try:
        if cluster is not None:
            owner = Owner(platform="console", workspace="console", user=user)
            for service, key in cluster.demo_keys.items():
                await bot.store.put_credential(owner, service, key)
            print(
                "tokenbot demo — simulated backends at "
                f"{', '.join(cluster.urls.values())}; your demo keys are stored. Try:\n"
                "  /alltoken-chat write a haiku about lighthouses\n"
                "  /alltoken-image a lighthouse at dusk\n"
                "  /alltoken-video waves on a pier --duration=4\n"
                "  /alltoken-search what happened in tech this week\n"
                "  /alltoken-models --type=video   ·   how much did that cost   ·   /alltoken-help\n"
                "  use openmarlin to say hello   ·   use openmarlin to generate a video of a plane\n"
                "  /openmarlin balance   ·   /openmarlin register (opens a sign-in page)   ·   /openmarlin help\n"
                "  /openclaw-token credits balance   ·   /openclaw-token keys list   ·   /openclaw-token help"
                + ("\nCtrl-C stops an answer; Ctrl-D to quit." if sys.stdin.isatty() else ""),
                flush=True,
            )
        out_dir = Path(args.out)
        demo = DemoMedia(cluster.urls.values(), out_dir) if cluster is not None else None
        adapter = ConsoleAdapter(
            bot, user=user, out_dir=out_dir, demo=demo, jobs_resume=tmp is None
        )
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
    ports = {
        "alltoken": args.alltoken_port,
        "openmarlin": args.openmarlin_port,
        "openclaw_token": args.openclaw_token_port,
    }
    cluster = await SimCluster(host=args.host, settings=_settings()).start(ports)
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
    async with _starting(settings):
        configure_logging(settings.log_level, settings.data_dir)
    if not settings.slack_bot_token and not settings.discord_token:
        print(
            "tokenbot: no chat platform configured. Set SLACK_BOT_TOKEN (+ SLACK_APP_TOKEN or "
            "SLACK_SIGNING_SECRET) and/or DISCORD_TOKEN, or try `tokenbot console --sim`.",
            file=sys.stderr,
        )
        return 2
    from bot.core.heap import settle_heap
    from bot.core.http_server import HttpServer

    bot = await _create_bot(settings, args.new_store)
    # Adapters with HTTP routes (Slack's HTTP mode) add them to this app before it starts.
    web_server = HttpServer(bot)
    bot.web_server = web_server
    running: list[PlatformRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for name, start in platform_starters(settings):
            try:
                running.append(await start(bot, settings))
            except Exception as exc:
                # A wrong token or an unreachable platform: say so plainly, no traceback.
                reason = redact(str(exc)) or type(exc).__name__
                print(f"tokenbot: could not start {name}: {reason}", file=sys.stderr)
                return 1
        port = await web_server.start(settings.http_host, settings.http_port)
        logging.getLogger(__name__).info("health and metrics on port %d", port)
        async with _starting(settings):
            await bot.start()
        frozen = settle_heap(settings.gc_freeze, settings.gc_gen0_threshold)
        logging.getLogger(__name__).info("startup heap: %d objects frozen", frozen)
        await stop.wait()
        return 0
    finally:
        # Jobs first: a job posting during shutdown must find its platform still connected,
        # and stopped jobs stay unfinished in the DB, so the next start resumes them.
        await bot.jobs.aclose()
        for runner in reversed(running):
            with contextlib.suppress(Exception):
                await runner.aclose()
        await web_server.aclose()
        await bot.aclose()


async def _migrate(args: argparse.Namespace) -> int:
    """`tokenbot migrate`: bring the store's schema up to date, then exit (no master key needed)."""
    from bot.store import migrate_store

    settings = _settings()
    if args.new_store:
        settings = settings.model_copy(update={"allow_new_store": True})
    try:
        async with _starting(settings):
            configure_logging(settings.log_level, settings.data_dir)
            where, before, after = await migrate_store(
                settings.store_url,
                data_dir=settings.data_dir,
                allow_new_store=settings.allow_new_store,
            )
    except StartupError as exc:
        print(f"tokenbot: cannot migrate: {exc}", file=sys.stderr)
        return 2
    if after == before:
        print(f"tokenbot: {where} is up to date (schema version {after})")
    else:
        print(f"tokenbot: migrated {where} from schema version {before} to {after}")
    return 0


async def _discord_sync(args: argparse.Namespace) -> int:
    from adapters.discord.sync import run_sync

    settings = _settings()
    configure_logging(settings.log_level, settings.data_dir)
    return await run_sync(settings, guild_id=args.guild, force=args.force)


class PlatformRunner(Protocol):
    """A connected platform adapter."""

    async def aclose(self) -> None:
        """Disconnect."""


PlatformStarter = Callable[["TokenBot", Settings], Awaitable[PlatformRunner]]


def platform_starters(settings: Settings) -> list[tuple[str, PlatformStarter]]:
    """The adapters to start for these settings (Slack and Discord may run in one process)."""
    starters: list[tuple[str, PlatformStarter]] = []
    if settings.slack_bot_token:
        from adapters.slack.runner import start_slack

        starters.append(("Slack", start_slack))
    if settings.discord_token:
        from adapters.discord.runner import start_discord

        starters.append(("Discord", start_discord))
    return starters


_NEW_STORE_HELP = (
    "accept an empty or different database where the data dir had a store "
    "(same as TOKENBOT_ALLOW_NEW_STORE=1)"
)


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
    console.add_argument("--new-store", action="store_true", help=_NEW_STORE_HELP)
    sim = sub.add_parser("sim", help="run the backend simulators until interrupted")
    sim.add_argument("--alltoken-port", type=int, default=0)
    sim.add_argument("--openmarlin-port", type=int, default=0)
    sim.add_argument("--openclaw-token-port", type=int, default=0)
    sim.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (0.0.0.0 in a container)"
    )
    run = sub.add_parser("run", help="connect to Slack and/or Discord")
    run.add_argument("--new-store", action="store_true", help=_NEW_STORE_HELP)
    migrate = sub.add_parser(
        "migrate", help="apply the store's schema migrations (TOKENBOT_DATABASE_URL) and exit"
    )
    migrate.add_argument("--new-store", action="store_true", help=_NEW_STORE_HELP)
    discord_sync = sub.add_parser(
        "discord-sync", help="register the Discord slash commands (skipped when unchanged)"
    )
    discord_sync.add_argument(
        "--guild", type=int, default=None, help="sync to one guild (instant) instead of globally"
    )
    discord_sync.add_argument("--force", action="store_true", help="sync even when unchanged")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tokenbot` script."""
    args = build_parser().parse_args(argv)
    runner = {
        "console": _console,
        "sim": _sim,
        "run": _run,
        "migrate": _migrate,
        "discord-sync": _discord_sync,
    }[args.cmd]
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130
    except StartupError as exc:
        print(f"tokenbot: cannot start: {exc}", file=sys.stderr)
        return 2
