"""OpenMarlin through the console adapter: `tokenbot console --sim` as a subprocess, one run.

The test plays the person: it types commands, opens the sign-in and checkout pages the bot
sends (POSTing Approve / Pay like a browser would), and reads what the terminal prints.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

_URL = re.compile(r"(http://127\.0\.0\.1:\d+/\S+)")


class Terminal:
    """A console subprocess with a reader thread, so output can be awaited line by line."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "console", "--sim", "--out", str(cwd / "out")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()

    def wait_for(self, needle: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not printed; got:\n{''.join(self.seen)}")

    def finish(self, timeout: float = 30) -> tuple[str, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.stderr is not None
        return "".join(self.seen), self.proc.stderr.read()


def _url(line: str) -> str:
    m = _URL.search(line)
    assert m, line
    return m.group(1)


@pytest.mark.slow(8)
def test_openmarlin_in_the_console_demo(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENBOT_", "ALLTOKEN_", "OPENMARLIN_"))
    }
    env.update(
        TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS="0.3",
        TOKENBOT_SIM_TOKENS_PER_SECOND="0",
        PYTHONUNBUFFERED="1",
    )
    term = Terminal(tmp_path, env)
    try:
        term.wait_for("/openclaw-token help")  # the demo banner's last line
        term.type(
            "use openmarlin models",
            "use openmarlin to say hello",
            "use openmarlin with labels tier=standard to say hi",
            "use openmarlin with model gpt-5.4 to say hi",
            "/openmarlin register",
        )
        link = term.wait_for("Sign in to OpenMarlin:")
        with httpx.Client() as client:
            assert client.post(_url(link), data={"decision": "approve"}).status_code == 200
        term.wait_for("stored for you")
        term.type("use openmarlin balance", "use openmarlin to generate a video of a plane")
        term.wait_for("available  10 credits")
        term.type("/openmarlin top up 5")
        checkout = term.wait_for("Open the checkout:")
        with httpx.Client() as client:
            assert client.post(_url(checkout), data={"decision": "pay"}).status_code == 200
        out, err = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert term.proc.returncode == 0, err
    assert "`openai-codex/gpt-5.4` — node-a (region=eu" in out
    assert "Hello! 👋" in out and "on `node-a`" in out
    assert "✖ execution_provider_ambiguous" in out and "labels `tier=standard`" in out
    assert "not a full model ref" in out and "Usage: `use openmarlin to <instruction>" in out
    assert "claw_wsk_" not in out  # neither the demo key nor the new one is ever printed
    assert re.search(r"OpenMarlin task `task_\w+` — queued", out)
    assert re.search(r"🔗 Open the result: http://127\.0\.0\.1:\d+/_media/tasks/task_\w+\.mp4", out)
    assert "Top-up of 5 credits: credit_applied" in out
    assert "Traceback" not in out + err
