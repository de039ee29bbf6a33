"""`tokenbot migrate`, and `tokenbot run` refusing a schema newer than it knows (both backends)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from bot.store import SCHEMA_VERSION, SecretBox
from tests.store.conftest import BackendUnderTest

REPO = Path(__file__).resolve().parents[2]


def _env(backend: BackendUnderTest, **extra: str) -> dict[str, str]:
    prefixes = ("TOKENBOT_", "SLACK_", "DISCORD_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["TOKENBOT_DATA_DIR"] = str(backend.data_dir)
    if not backend.is_sqlite:
        env["TOKENBOT_DATABASE_URL"] = str(backend.where)
    env.update(extra)
    return env


async def _tokenbot(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_migrate_applies_the_migrations_once(backend: BackendUnderTest) -> None:
    first = await _tokenbot(["migrate"], _env(backend))
    assert first.returncode == 0, first.stderr
    assert f"from schema version 0 to {SCHEMA_VERSION}" in first.stdout
    again = await _tokenbot(["migrate"], _env(backend))
    assert again.returncode == 0, again.stderr
    assert f"is up to date (schema version {SCHEMA_VERSION})" in again.stdout
    rows = await backend.raw("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in rows] == list(range(1, SCHEMA_VERSION + 1))
    # The migrated database is then opened as is by the bot.
    async with await backend.open(SecretBox.from_settings(None, backend.data_dir)) as s:
        assert await s.schema_version() == SCHEMA_VERSION


async def test_run_and_migrate_refuse_a_newer_schema(backend: BackendUnderTest) -> None:
    assert (await _tokenbot(["migrate"], _env(backend))).returncode == 0
    newer = SCHEMA_VERSION + 5
    await backend.raw(f"INSERT INTO schema_version VALUES ({newer}, '2030-01-01T00:00:00+00:00')")
    env = _env(backend, SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="s" * 32)
    run = await _tokenbot(["run"], env)
    assert run.returncode == 2
    # One line says why (a log line about generating master.key may come before it).
    [line] = [x for x in run.stderr.splitlines() if x.startswith("tokenbot:")]
    assert line.startswith("tokenbot: cannot start: ")
    assert (
        f"schema version {newer}, newer than this tokenbot understands ({SCHEMA_VERSION})" in line
    )
    migrate = await _tokenbot(["migrate"], _env(backend))
    assert migrate.returncode == 2
    [line] = [x for x in migrate.stderr.splitlines() if x.startswith("tokenbot:")]
    assert line.startswith("tokenbot: cannot migrate: ") and "newer than" in line


async def test_migrate_does_not_recreate_a_lost_sqlite_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    backend = BackendUnderTest("sqlite", data / "tokenbot.db", data)
    async with await backend.open(SecretBox.from_settings(None, data)):
        pass
    (data / "tokenbot.db").unlink()
    refused = await _tokenbot(["migrate"], _env(backend))
    assert refused.returncode == 2 and "TOKENBOT_ALLOW_NEW_STORE=1" in refused.stderr
    assert not (data / "tokenbot.db").exists()
    accepted = await _tokenbot(["migrate", "--new-store"], _env(backend))
    assert accepted.returncode == 0, accepted.stderr
