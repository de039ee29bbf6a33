"""First-hour hygiene: quiet library logs, one-line discord-sync failures, a lean demo
install and visible benchmark progress."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from bench.__main__ import main as bench_main
from bot.core.log_setup import LIBRARY_LOGGERS, configure_logging

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the next tests."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    root_level = root.level
    try:
        yield
    finally:
        configure_logging("WARNING", None, stderr=False)  # drops tokenbot's handlers
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_tokenbot_logging_keeps_libraries_at_warning(level: str, restore_logging: None) -> None:
    configure_logging(level, None, stderr=False)
    assert logging.getLogger("aiosqlite").level == logging.WARNING
    assert not logging.getLogger("aiosqlite").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("bot.core.jobs").isEnabledFor(logging.getLevelName(level))


def test_debug_all_is_debug_for_the_libraries_too(restore_logging: None) -> None:
    configure_logging("DEBUG-ALL", None, stderr=False)
    assert logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("bot").isEnabledFor(logging.DEBUG)


async def test_captured_test_logs_hold_no_aiosqlite_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a failing test prints: every record caught at DEBUG.
    caplog.set_level(logging.DEBUG)
    async with aiosqlite.connect(tmp_path / "t.db") as db:
        await db.execute("CREATE TABLE t (x)")
        await db.execute("INSERT INTO t VALUES (1)")
        await db.commit()
    logging.getLogger("bot.probe").debug("tokenbot's own debug line")
    assert [r.name for r in caplog.records] == ["bot.probe"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_discord_sync_says_in_one_line_that_discord_is_unreachable(tmp_path: Path) -> None:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBOT_", "DISCORD_"))}
    env.update(
        DISCORD_TOKEN="not-a-real-token",
        DISCORD_API_URL=f"http://127.0.0.1:{port}/api/v10",
        TOKENBOT_DATA_DIR=str(tmp_path / "data"),
        TOKENBOT_MASTER_KEY="hygiene test passphrase",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "discord-sync"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"tokenbot: cannot reach Discord at http://127.0.0.1:{port}/api/v10")
    assert "DISCORD_API_URL" in lines[0] and "not-a-real-token" not in proc.stderr
    assert proc.stdout == ""


def _make_dry_run(target: str, tmp_path: Path) -> str:
    """The commands `make <target>` would run on a fresh checkout (nothing is executed)."""
    proc = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_demo_installs_no_test_extras(tmp_path: Path) -> None:
    demo = [line for line in _make_dry_run("demo", tmp_path).splitlines() if "pip install" in line]
    assert [line for line in demo if "-e '.[sim]'" in line], demo
    assert not [line for line in demo if "[test" in line or "test]" in line], demo
    test = _make_dry_run("test", tmp_path)
    assert "pip install --quiet -e '.[test,sim]'" in test
    lint = _make_dry_run("lint", tmp_path)
    assert "pip install --quiet -e '.[test,sim]'" in lint and "ruff check" in lint
    # A production install (`make install`, the Dockerfile) leaves the simulators' extra out.
    install = _make_dry_run("install", tmp_path).splitlines()
    install = [line for line in install if "pip install" in line]
    assert install and not [line for line in install if "[" in line], install


async def test_bench_shows_progress_on_stderr_and_only_the_table_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hygiene_bench_stub.py").write_text(
        "async def rows():\n"
        "    return [('stub: things/s', '5/s', 'target 4/s', 1.25, '≥ 1.0', True)]\n"
    )
    # Each module runs in a child interpreter, which finds the stub (and bench) on its path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    assert await bench_main([], modules=("hygiene_bench_stub",)) == 0
    out, err = capsys.readouterr()
    progress = err.splitlines()
    assert progress[0] == "bench: [1/1] hygiene_bench_stub …"
    assert progress[1].startswith("bench: [1/1] hygiene_bench_stub done in ")
    assert progress[1].endswith(" s")
    assert "bench:" not in out
    assert out.splitlines()[1:] == [
        "| benchmark | tokenbot | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|",
        "| stub: things/s | 5/s | target 4/s | 1.250 | ≥ 1.0 | pass |",
    ]
