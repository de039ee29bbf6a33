"""`tokenbot console --sim` on a real pseudo-terminal: Ctrl-C once and twice, the line editor.

Each test starts the console as a subprocess whose stdin/stdout/stderr are a pty (so
prompt_toolkit and rich are in play, as for a person at a terminal) and reads what the
terminal would show. Timeouts are failure guards only, never measurements.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]")
GUARD_S = 30.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENBOT_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_"))
    }
    # No cursor-position requests: nobody here answers them.
    env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="120", LINES="40")
    env.update(extra)
    return env


def _controlling_terminal() -> None:
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# The console's prompt ("› "), drawn by prompt_toolkit once it reads the next line.
PROMPT_SHOWN = "\u203a"


class PtyConsole:
    """The console on a pty: type keys, wait for text (escapes stripped), see how it ended."""

    def __init__(self, cwd: Path, *, stdout_is_pipe: bool = False, **env: str) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        out: int | None = None if stdout_is_pipe else slave
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "console", "--sim", "--out", str(cwd / "out")],
            stdin=slave,
            stdout=subprocess.PIPE if stdout_is_pipe else out,
            stderr=slave,
            cwd=cwd,
            env=_env(**env),
            preexec_fn=_controlling_terminal,  # so ^C on the pty is SIGINT, as in a terminal
        )
        os.close(slave)
        self.raw = b""

    @property
    def screen(self) -> str:
        """Everything printed so far, escapes removed."""
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def _pump(self, wait_s: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait_s)
        if ready:
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                time.sleep(wait_s)

    def wait_for(self, pattern: str, after: int = 0, timeout: float = GUARD_S) -> int:
        """Wait until `pattern` (a regex) is on screen past offset `after`; its end offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.screen[after:])
            if found:
                return after + found.end()
            self._pump(0.05)
        raise AssertionError(f"{pattern!r} not shown; screen:\n{self.screen[-3000:]}")

    def type(self, keys: str) -> None:
        data = keys.encode()
        while data:
            _, writable, _ = select.select([], [self.master], [], GUARD_S)
            assert writable, "the console stopped reading its terminal"
            sent = os.write(self.master, data[:1024])
            data = data[sent:]
            self._pump(0)

    def wait_exit(self) -> int:
        deadline = time.monotonic() + GUARD_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.05)
        assert self.proc.poll() is not None, f"the console did not quit:\n{self.screen[-3000:]}"
        self._pump(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[PtyConsole]:
    # Slow streaming, so Ctrl-C lands mid-answer; a long video, so it is pending at quit.
    term = PtyConsole(
        tmp_path, TOKENBOT_SIM_TOKENS_PER_SECOND="3", TOKENBOT_SIM_VIDEO_SECONDS="600"
    )
    try:
        yield term
    finally:
        term.close()


def test_ctrl_c_once_stops_the_answer_twice_quits_naming_the_pending_video(
    console: PtyConsole,
) -> None:
    at = console.wait_for("Ctrl-D to quit")  # interactive: the hint is shown
    console.type("/alltoken-video waves on a pier --duration=4\r")
    at = console.wait_for(r"Video queued", at)
    console.type("/alltoken-chat hi\r")
    at = console.wait_for(r"Simulated answer", at)
    console.type("\x03")  # once: the answer in progress stops, the prompt comes back
    at = console.wait_for(r"Stopped \(Ctrl-C\)", at)
    at = console.wait_for("›", at)
    assert "completion" not in console.screen  # no usage line: the answer did not finish
    console.type("/alltoken-cost gpt-5.4 1000 2000\r")  # the prompt reads lines again
    at = console.wait_for(r"total cost\s+\$0\.021250", at)
    at = console.wait_for("›", at)
    console.type("\x03")  # at an empty prompt: quit
    at = console.wait_for(r"Quitting with 1 job\(s\) still pending", at)
    console.wait_for(r"video “waves on a pier” \(running, ref [0-9a-f]{8}\)", at)
    assert console.wait_exit() == 0
    assert "Key point" not in console.screen  # the stopped answer never went on
    assert "Traceback" not in console.screen and "KeyboardInterrupt" not in console.screen


def test_ctrl_c_with_piped_input_quits_at_once_naming_the_pending_video(tmp_path: Path) -> None:
    # The pipe stays open and silent: Ctrl-C used to hang here until a line came.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "console", "--sim", "--out", str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(TOKENBOT_SIM_VIDEO_SECONDS="600", PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("/alltoken-video waves on a pier --duration=4\n")
        proc.stdin.flush()
        guard = threading.Timer(GUARD_S, proc.kill)  # a hang fails the test, not the run
        guard.start()
        head = ""
        for line in proc.stdout:
            head += line
            if "Video queued" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()  # ends when the console exits
        guard.cancel()
        assert proc.wait(timeout=GUARD_S) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Ctrl-D" not in head  # no one to press it
    assert "Quitting with 1 job(s) still pending; this demo's data is temporary" in rest
    assert "video “waves on a pier” (running, ref " in rest


@pytest.mark.slow(10)
def test_history_arrows_and_a_line_longer_than_the_terminal_limit(console: PtyConsole) -> None:
    at = console.wait_for("Ctrl-D to quit")
    at = console.wait_for(PROMPT_SHOWN, at)
    console.type("/alltoken-cost gpt-5.4 1000 2000\r")
    at = console.wait_for(r"total cost\s+\$0\.021250", at)
    # Keys typed before the next prompt is drawn reach a terminal still in line mode, which
    # echoes them itself: wait for the prompt, as a person does.
    at = console.wait_for(PROMPT_SHOWN, at)
    console.type("\x1b[A\r")  # arrow up: the last line again, not `^[[A`
    at = console.wait_for(r"total cost\s+\$0\.021250", at)
    assert "^[[A" not in console.screen
    at = console.wait_for(PROMPT_SHOWN, at)
    # 1,300 words (~6,500 characters): a terminal in line mode keeps 4,095 of them, and the
    # marker at the end would be lost with the rest.
    words = " ".join(f"w{i:04d}" for i in range(1300))
    console.type(f"/alltoken-chat {words} [[tokens=5]]\r")
    found = re.search(r"([\d,]+) prompt \+ (\d+) completion", console.screen[at:])
    deadline = time.monotonic() + GUARD_S
    while found is None and time.monotonic() < deadline:
        console._pump(0.05)
        found = re.search(r"([\d,]+) prompt \+ (\d+) completion", console.screen[at:])
    assert found, console.screen[-2000:]
    assert int(found.group(1).replace(",", "")) >= 1300
    console.wait_for("›", at + found.end())  # the prompt is back (Ctrl-D typed before is lost)
    console.type("\x04")  # Ctrl-D
    assert console.wait_exit() == 0


def test_a_line_cut_by_the_terminal_is_reported_when_there_is_no_line_editor(
    tmp_path: Path,
) -> None:
    # stdin is a terminal but stdout a pipe: no line editor, the terminal's line mode reads.
    term = PtyConsole(tmp_path, stdout_is_pipe=True)
    try:
        term.type("/alltoken-cost gpt-5.4 1000 " + "1" * 5000 + "\n")
        term.type("\x04")
        assert term.proc.stdout is not None
        out = term.proc.stdout.read().decode()
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert "reached the terminal's 4,095-character limit and was probably cut" in out
