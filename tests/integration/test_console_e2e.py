"""The console adapter end to end as real subprocesses: piped input, and a SIGKILL restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.sim.cluster import DEMO_ALLTOKEN_KEY

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBOT_", "ALLTOKEN_"))}
    env.update(
        TOKENBOT_SIM_IMAGE_SECONDS="0.3",
        TOKENBOT_SIM_VIDEO_SECONDS="0.5",
        TOKENBOT_SIM_TOKENS_PER_SECOND="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def test_console_demo_with_piped_input(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    script = "\n".join(
        [
            "/alltoken-chat write a haiku about lighthouses",
            "how much did that cost",
            "/alltoken-image a lighthouse at dusk",
            "/alltoken-video waves on a pier --duration=4",
            "/alltoken-models --type=image",
            "/alltoken-image bad --quality=ultra",
            "just chatting, not a command",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--sim", "--out", str(out_dir)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(),
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "haiku" in out.lower()
    assert "`gpt-5.4-mini`" in out and "tokens" in out
    assert "total cost" in out and "reported by AllToken" in out
    assert "gpt-image-2" in out
    assert "--quality must be one of" in out and "Usage: `/alltoken-image <prompt>" in out
    assert "isn't a tokenbot command" in out
    saved = list(out_dir.glob("*.png"))
    assert len(saved) == 1 and saved[0].read_bytes()[:4] == b"\x89PNG"
    assert f"saved {saved[0]}" in out
    assert "🔗 Download the video: http://127.0.0.1:" in out and "expires" in out
    assert "Traceback" not in out + proc.stderr


def test_a_line_that_once_crashed_the_console_does_not_end_it(tmp_path: Path) -> None:
    # This date overflowed while being parsed and the OverflowError ended the process (rc 1).
    script = "\n".join(
        [
            "/openclaw-token keys create --name e3137 --expires 9999-12-31T23:59:59-12:00",
            "/alltoken-help",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--sim", "--out", str(tmp_path / "out")],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ctrl-D" not in proc.stdout  # piped: no one to press it
    answers = proc.stdout.split("/openclaw-token help\n", 1)[1]
    first, _, rest = answers.partition("**tokenbot**")
    assert "--expires" in first or "something went wrong (ref" in first.lower()
    assert "/alltoken-chat" in rest  # the next line was answered
    assert "Traceback" not in proc.stdout + proc.stderr


def _start_sim(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "bot", "sim"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert sim.stdout is not None
    ready = json.loads(sim.stdout.readline())
    return sim, ready["alltoken_base_url"]


@pytest.mark.slow(17)
def test_sigkill_mid_image_and_video_then_restart_delivers_each_once(tmp_path: Path) -> None:
    env = _env(TOKENBOT_SIM_IMAGE_SECONDS="3", TOKENBOT_SIM_VIDEO_SECONDS="3")
    sim, url = _start_sim(env)
    try:
        bot_env = {**env, "ALLTOKEN_BASE_URL": url, "TOKENBOT_DATA_DIR": str(tmp_path / "data")}
        cmd = [
            sys.executable,
            "-m",
            "bot",
            "console",
            "--user",
            "alice",
            "--out",
            str(tmp_path / "out"),
        ]
        first = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=bot_env,
            cwd=tmp_path,
        )
        assert first.stdin is not None
        first.stdin.write(
            f"/alltoken-key set {DEMO_ALLTOKEN_KEY}\n/alltoken-image a lighthouse\n/alltoken-video a pier\n"
        )
        first.stdin.flush()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = httpx.get(f"{url}/_sim/stats").json()
            if stats["image_submissions"] == 1 and stats["video_submissions"] == 1:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the task ids are saved right after the submissions return
        first.send_signal(signal.SIGKILL)
        out1, _ = first.communicate(timeout=10)
        assert "saved" not in out1

        second = subprocess.run(
            cmd, input="", capture_output=True, text=True, timeout=60, env=bot_env, cwd=tmp_path
        )
        out2 = second.stdout
        assert second.returncode == 0, second.stderr
        assert "resuming 2 unfinished job(s)" in out2
        assert out2.count("🖼 saved") == 1
        assert out2.count("🔗 Download the video") == 1
        stats = httpx.get(f"{url}/_sim/stats").json()
        assert stats["image_submissions"] == 1 and stats["video_submissions"] == 1
        assert list(stats["b64_deliveries"].values()) == [1]
        assert len(list((tmp_path / "out").glob("*.png"))) == 1

        third = subprocess.run(
            cmd, input="", capture_output=True, text=True, timeout=30, env=bot_env, cwd=tmp_path
        )
        assert "resuming" not in third.stdout and "saved" not in third.stdout
    finally:
        sim.terminate()
        sim.wait(timeout=10)
