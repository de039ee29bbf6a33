"""`/openclaw-token` in the console adapter as a real subprocess (`tokenbot console --sim`):
balance, a quote confirmed twice (charged once), a key shown once, GitHub sign-in, integrate.
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

import pytest


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENBOT_", "ALLTOKEN_", "OPENCLAW_", "OPENMARLIN_"))
    }
    env.update(TOKENBOT_SIM_TOKENS_PER_SECOND="0", PYTHONUNBUFFERED="1")
    return env


class Console:
    """Drives `python -m bot console --sim` line by line."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "console", "--sim", "--out", str(cwd / "out")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read output until `pattern` matches a line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {pattern!r}; output so far:\n{''.join(self.seen)}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def close(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        time.sleep(0.1)  # let the pump drain
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, self.proc.stderr.read()


@pytest.mark.slow(10)
def test_console_openclaw_session(tmp_path: Path) -> None:
    console = Console(tmp_path)
    try:
        console.send("/openclaw-token credits balance")
        console.expect(r"remaining\s+\$100\.00")
        console.send("/openclaw-token credits buy --amount 14.54")
        console.expect(r"platform fee.*\$0\.80")
        console.expect(r"total charged\s+\$15\.34")
        token = console.expect(r"/action openclaw\.confirm (\S+)`").group(1)
        console.send(f"/action openclaw.confirm {token}")
        console.send(f"/action openclaw.confirm {token}")
        console.expect(r"Already confirmed")
        console.expect(r"new balance\s+\$114\.54")
        console.send("/openclaw-token credits balance")
        console.expect(r"remaining\s+\$114\.54")  # charged once
        console.send(
            "/openclaw-token keys create --name console-agent --limit 1 --limit-reset daily"
        )
        key = console.expect(r"(sk-prov-[0-9a-f]{32})").group(1)
        console.expect(r"credit limit\s+\$1\.00 daily")
        console.send("/openclaw-token keys list --sort name")
        console.expect(r"console-agent\s+[0-9a-f]{16} · \$0\.00 used · \$1\.00 daily · active")
        console.send("/openclaw-token auth login")
        code = console.expect(r"enter the code \*\*([A-Z0-9]{4}-[A-Z0-9]{4})\*\*").group(1)
        console.expect(r"Enter the code on GitHub: http://127\.0\.0\.1:\d+/login/device")
        console.expect(r"Signed in to OpenClaw Token as demo@openclaw\.dev via GitHub")
        console.send("/openclaw-token integrate")
        console.expect(r"made it your fallback for AllToken chat and search")
        console.send("/openclaw-token credits buy --amount 2")
        console.expect(r"the minimum purchase is \$5\.00")
    finally:
        rc, stderr = console.close()
    out = "".join(console.seen)
    assert rc == 0, stderr
    assert out.count(key) == 1 and code
    assert "Traceback" not in out + stderr
