"""Operator faults end to end: bad job rows at start, crashing jobs, an unwritable images dir,
undecryptable keys, a failing store on /readyz, and start-up failures of the real CLI."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends.alltoken import image_keep
from bot.core.app import TokenBot
from bot.core.http_server import HttpServer
from bot.core.job_triage import NEWER_REPLICA_WAIT_S
from bot.core.jobs import JobContext
from bot.core.messages import Failure, Image, Link, Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner, SecretBox, Store, UsageRecord
from bot.store.db import Database
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def _bot(data: Path, sim: AllTokenSim) -> tuple[TokenBot, dict[str, RecordingConversation]]:
    b = await TokenBot.create(make_settings(data, sim))
    convs: dict[str, RecordingConversation] = {}
    for platform in ("console", "slack", "discord"):
        b.register_platform(
            platform, lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
        )
    b.test_conversations = convs  # type: ignore[attr-defined]
    return b, convs


def _failures(conv: RecordingConversation) -> list[Failure]:
    return [p for e in conv.events for p in e.parts if isinstance(p, Failure)]


def _rows(db: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(db) as raw:
        return {r[0]: (r[1], r[2]) for r in raw.execute("SELECT id, status, error FROM jobs")}


class Probe:
    """A job kind that says it ran and finishes."""

    kind = "probe"

    async def run(self, ctx: JobContext) -> None:
        await ctx.conversation.say([Notice(text=f"probe {ctx.job.id} ran")])
        await ctx.set_status("done")

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        await ctx.conversation.say([failure])


class Picky(Probe):
    """A job kind that cannot resume without a `size` in its state."""

    kind = "picky"

    def check_state(self, state: dict[str, Any]) -> None:
        if "size" not in state:
            raise ValueError("no size saved")


class Boom(Probe):
    """A job kind whose run raises what no job expects."""

    kind = "boom"

    async def run(self, ctx: JobContext) -> None:
        raise RuntimeError("kaboom")


class BoomNoReport(Boom):
    """Also fails to report: the runner must still reach the user."""

    kind = "boom-no-report"

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        raise ConnectionError("the progress message is gone")


# -- job rows that cannot be resumed ------------------------------------------------------------


async def test_bad_job_rows_are_quarantined_and_the_rest_resume(
    tmp_path: Path, sim: AllTokenSim, caplog: pytest.LogCaptureFixture
) -> None:
    bot, convs = await _bot(tmp_path / "data", sim)
    try:
        bot.jobs.register(Probe())
        bot.jobs.register(Picky())
        chat = Chat(bot, "alice")
        dest = chat.inbound_proto.destination()
        from bot.store import JobRecord

        for job_id, kind in [
            ("good", "probe"),
            ("bad-state", "probe"),
            ("bad-dest", "probe"),
            ("unknown", "teleport"),
            ("unloadable", "picky"),
        ]:
            await bot.store.create_job(
                JobRecord(
                    id=job_id, kind=kind, owner=chat.owner, destination=dest, status="running"
                )
            )
        db = bot.settings.db_path
        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE jobs SET state = '{\"half' WHERE id = 'bad-state'")
            raw.execute("UPDATE jobs SET destination = 'not json' WHERE id = 'bad-dest'")

        with caplog.at_level(logging.ERROR, logger="bot.core.jobs"):
            assert await bot.start() == 1  # and no exception: tokenbot starts
            assert await bot.jobs.wait_idle(5)
            # A kind only a newer release may have is left to its replicas a while first.
            assert _rows(db)["unknown"][0] == "running"
            await bot.jobs.claim_available(time.time() + NEWER_REPLICA_WAIT_S)

        rows = _rows(db)
        assert rows["good"][0] == "done"
        for job_id in ("bad-state", "bad-dest", "unknown", "unloadable"):
            assert rows[job_id][0] == "quarantined", job_id
        assert "does not decode" in (rows["bad-state"][1] or "")
        assert "unknown job kind 'teleport'" in (rows["unknown"][1] or "")
        assert "no size saved" in (rows["unloadable"][1] or "")
        quarantined = [
            r
            for r in caplog.records
            if r.name == "bot.core.jobs" and "quarantined" in r.getMessage()
        ]
        assert len(quarantined) == 4

        [conv] = convs.values()
        told = [f for f in _failures(conv) if f.code == "job_not_resumed"]
        # The owner of every row whose destination still decodes is told, with what to do.
        assert sorted(re.findall(r"ref ([\w-]+)\)", " ".join(f.message for f in told))) == [
            "bad-state",
            "unknown",
            "unloadable",
        ]
        assert all("Run the command again" in (f.hint or "") for f in told)
        assert sum("probe good ran" in e.text for e in conv.events) == 1
        assert await bot.start() == 0  # quarantined rows stay out of later resumes
    finally:
        await bot.aclose()


@pytest.mark.parametrize("kind", [Boom(), BoomNoReport()], ids=["reported", "report-fails"])
async def test_a_crashing_job_is_reported_with_a_ref(
    bot: TokenBot, kind: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    bot.jobs.register(kind)
    chat = Chat(bot, "alice")
    with caplog.at_level(logging.ERROR, logger="bot.core.jobs"):
        job = await bot.jobs.start(kind.kind, chat.owner, chat.inbound_proto.destination(), {})
        assert await bot.jobs.wait_idle(5)
    [failure] = _failures(chat.conv)
    match = re.search(
        r"Something went wrong while working on this \(ref ([0-9a-f]{8})\)", failure.message
    )
    assert match is not None, failure.message
    ref = match.group(1)
    crashed = [r for r in caplog.records if f"[ref {ref}]" in r.getMessage()]
    assert len(crashed) == 1 and crashed[0].exc_info is not None
    stored = await bot.store.get_job(job.id)
    assert stored is not None and stored.status == "failed" and ref in (stored.error or "")


# -- images that cannot be saved --------------------------------------------------------------


async def test_unwritable_images_dir_still_delivers_and_shows_the_link(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    sim.config.r2_copy = True  # the link is the R2 copy's (the simulator's switch, off by default)
    bot.settings.images_dir.write_text("a file where the images folder should be")
    await alice.send("/alltoken-image a lighthouse at dusk")
    assert await bot.jobs.wait_idle(10)
    [upload] = alice.conv.of("upload")
    assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)
    image = upload.parts[0]
    assert isinstance(image, Image) and not Path(image.path).exists()  # temporary copy removed
    final = alice.conv.events[-1]
    notes = [p.text for p in final.parts if isinstance(p, Notice)]
    assert any("Image ready" in n for n in notes)
    assert any("could not save it in its images folder" in n for n in notes)
    [link] = [p for p in final.parts if isinstance(p, Link)]
    assert link.url.startswith(sim.base_url) and link.expires_at is not None
    assert list(sim.stats.b64_deliveries.values()) == [1]
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done" and job.state.get("image_b64") is None


async def test_nowhere_to_keep_a_file_shows_the_link_and_keeps_the_bytes(
    alice: Chat, bot: TokenBot, sim: AllTokenSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root can write to /dev/shm and /tmp whatever their modes: a missing directory is the one
    # way to stand for "no temporary space either" here.
    monkeypatch.setattr(image_keep, "_SPILL_DIRS", (tmp_path / "no-such-dir",))
    sim.config.r2_copy = True  # the link is the R2 copy's (the simulator's switch, off by default)
    bot.settings.images_dir.write_text("not a directory")
    await alice.send("/alltoken-image a red kite")
    assert await bot.jobs.wait_idle(10)
    assert not alice.conv.of("upload")
    final = alice.conv.events[-1]
    text = " ".join(p.text for p in final.parts if isinstance(p, Notice))
    assert "could not be posted here" in text and "could not save it" in text
    [link] = [p for p in final.parts if isinstance(p, Link)]
    assert link.expires_at is not None
    async with httpx.AsyncClient() as client:
        assert (await client.get(link.url)).content.startswith(PNG_MAGIC)
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done"
    assert base64.b64decode(job.state["image_b64"]).startswith(PNG_MAGIC)  # never lost


# -- undecryptable keys -----------------------------------------------------------------------


async def test_undecryptable_key_is_named_in_status_and_commands(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    data = tmp_path / "data"
    bot, _ = await _bot(data, sim)
    try:
        await Chat(bot, "alice").give_key(sim.issue_key(5))
    finally:
        await bot.aclose()
    with sqlite3.connect(data / "tokenbot.db") as raw:
        raw.execute(
            "UPDATE credentials SET ciphertext = ?", (SecretBox.generate().encrypt("other"),)
        )
    bot, _ = await _bot(data, sim)
    try:
        chat = Chat(bot, "alice")
        await chat.send("/alltoken-key status")
        status = chat.conv.events[-1]
        assert status.kind == "whisper"
        assert "stored" in status.text and "cannot be read" in status.text
        assert "/alltoken-key" in status.text
        for command in ("/alltoken-chat hello there", "/alltoken-image a boat"):
            await chat.send(command)
            last = chat.conv.events[-1]
            assert last.kind == "whisper"
            [failure] = [p for p in last.parts if isinstance(p, Failure)]
            assert failure.code == "key_unreadable" and "master key" in failure.message
        assert not any(f.code == "internal_error" for f in _failures(chat.conv))
        audit = await bot.store.list_audit(chat.owner)
        assert {(a.outcome, a.detail) for a in audit if a.command in ("chat", "image")} == {
            ("failed", "key_unreadable")
        }
    finally:
        await bot.aclose()


# -- a failing store on /readyz and /metrics ----------------------------------------------------


async def test_readyz_reports_failing_store_writes(bot: TokenBot) -> None:
    assert isinstance(bot.store._db, Database)  # the fixture's store: a SQLite file
    bot.store._db.retry_interval_s = 3600
    server = HttpServer(bot)
    port = await server.start("127.0.0.1", 0)
    conn = bot.store._db.conn
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/readyz")).status_code == 200
            # SQLite's page limit gives the real SQLITE_FULL a full disk gives.
            async with conn.execute("PRAGMA page_count") as cur:
                row = await cur.fetchone()
            assert row is not None
            await conn.execute(f"PRAGMA max_page_count = {row[0]}")
            owner = Owner(platform="console", workspace="w1", user="alice")
            for i in range(200):
                await bot.store.record_usage(
                    UsageRecord(owner=owner, service="alltoken", command="c" * 200 + str(i))
                )
            await bot.store._db.flush()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store_writes"] is False
            metrics = (await client.get("/metrics")).text
            queued = re.search(r"^tokenbot_store_queued_rows (\S+)$", metrics, re.M)
            assert queued is not None and float(queued.group(1)) > 0
            await conn.execute("PRAGMA max_page_count = 1073741823")
            await bot.store._db.flush()
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await server.aclose()


# -- start-up failures of the real CLI ----------------------------------------------------------


def _env(data: Path, **extra: str) -> dict[str, str]:
    prefixes = ("TOKENBOT_", "SLACK_", "DISCORD_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["TOKENBOT_DATA_DIR"] = str(data)
    env.update(extra)
    return env


def _tokenbot(
    args: list[str], env: dict[str, str], preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )


async def _store_with_a_key(data: Path) -> None:
    store = await Store.open(data / "tokenbot.db", SecretBox.from_settings(None, data))
    await store.put_credential(
        Owner(platform="console", workspace="w", user="u"), "alltoken", "k" * 20
    )
    await store.close()


async def _under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("not a directory")
    return tmp / "file" / "data"


async def _garbage_db(tmp: Path) -> Path:
    (tmp / "data").mkdir()
    (tmp / "data" / "tokenbot.db").write_bytes(b"garbage, not sqlite " * 100)
    return tmp / "data"


async def _deleted_db(tmp: Path) -> Path:
    await _store_with_a_key(tmp / "data")
    (tmp / "data" / "tokenbot.db").unlink()
    return tmp / "data"


async def _bad_key_file(tmp: Path) -> Path:
    (tmp / "data").mkdir()
    key = tmp / "data" / "master.key"
    key.write_text("not a fernet key\n")
    key.chmod(0o600)
    return tmp / "data"


async def _newer_schema(tmp: Path) -> Path:
    await _store_with_a_key(tmp / "data")
    with sqlite3.connect(tmp / "data" / "tokenbot.db") as raw:
        raw.execute("INSERT INTO schema_version VALUES (999, '2030-01-01T00:00:00+00:00')")
    return tmp / "data"


async def _keyed_store(tmp: Path) -> Path:
    await _store_with_a_key(tmp / "data")
    return tmp / "data"


async def _fresh(tmp: Path) -> Path:
    return tmp / "data"


def _tiny_file_limit() -> None:
    # Any write past 16 KiB fails (EFBIG), as on a full disk; SIGXFSZ is ignored by Python.
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def _assert_one_clear_line(
    result: subprocess.CompletedProcess[str], expected: str, *, logs: bool = False
) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if logs:
        # `tokenbot run` logs to stderr by design; the verdict is still one line, the last.
        assert sum(line.startswith("tokenbot:") for line in lines) == 1, result.stderr
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenbot: cannot start: ") and expected in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("prepare", "extra", "expected"),
    [
        (_under_a_file, {}, "cannot use the data dir"),
        (_garbage_db, {}, "is not a readable tokenbot database"),
        (_deleted_db, {}, "TOKENBOT_ALLOW_NEW_STORE=1"),
        (_bad_key_file, {}, "is empty or corrupt"),
        (_newer_schema, {}, "newer than this tokenbot understands"),
        (
            _keyed_store,
            {"TOKENBOT_MASTER_KEY": "a passphrase that was never used here"},
            "master key changed",
        ),
    ],
    ids=[
        "data-dir-not-a-dir",
        "garbage-db",
        "deleted-db",
        "bad-key-file",
        "newer-schema",
        "wrong-master-key",
    ],
)
async def test_console_sim_start_up_failures_are_one_clear_line(
    tmp_path: Path,
    prepare: Callable[[Path], Awaitable[Path]],
    extra: dict[str, str],
    expected: str,
) -> None:
    data = await prepare(tmp_path)
    result = await asyncio.to_thread(_tokenbot, ["console", "--sim"], _env(data, **extra))
    line = _assert_one_clear_line(result, expected)
    assert str(data) in line or "TOKENBOT_MASTER_KEY" in line


async def test_full_disk_at_start_up_is_one_clear_line(tmp_path: Path) -> None:
    data = await _fresh(tmp_path)
    result = await asyncio.to_thread(_tokenbot, ["console", "--sim"], _env(data), _tiny_file_limit)
    line = _assert_one_clear_line(result, "")
    assert "disk" in line and str(data) in line


async def test_run_and_plain_console_fail_the_same_way(tmp_path: Path) -> None:
    data = await _garbage_db(tmp_path)
    for args, extra in [
        (["run"], {"SLACK_BOT_TOKEN": "xoxb-not-used", "SLACK_SIGNING_SECRET": "s"}),
        (["console"], {}),
    ]:
        result = await asyncio.to_thread(_tokenbot, args, _env(data, **extra))
        _assert_one_clear_line(result, "is not a readable tokenbot database", logs=args == ["run"])


@pytest.mark.slow(10)
async def test_new_store_flag_accepts_a_fresh_store_on_purpose(tmp_path: Path) -> None:
    data = await _deleted_db(tmp_path)
    refused = await asyncio.to_thread(_tokenbot, ["console", "--sim"], _env(data))
    _assert_one_clear_line(refused, "--new-store")
    accepted = await asyncio.to_thread(_tokenbot, ["console", "--sim", "--new-store"], _env(data))
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "tokenbot demo" in accepted.stdout
    # Accepted once: the next plain start opens the new store without the flag.
    again = await asyncio.to_thread(_tokenbot, ["console", "--sim"], _env(data))
    assert again.returncode == 0, again.stderr[-2000:]
