"""Where the console's lines come from: a line editor on a terminal, plain lines from a pipe.

On a terminal, prompt_toolkit reads in raw mode, so there is no 4,095-character line limit,
arrows move and recall history, Ctrl-C is a key (not a signal) and asynchronous output is
printed above the prompt. A pipe is read line by line in a daemon thread, so quitting never
waits for a line that will not come.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

PROMPT = "› "
# A terminal in canonical mode keeps at most this many characters of a line (Linux N_TTY):
# a line this long from a terminal without the line editor was probably cut.
TTY_LINE_LIMIT = 4095


class PromptInterrupted(Exception):
    """Ctrl-C at an empty prompt: the person wants to quit."""


class FieldCancelled(Exception):
    """Ctrl-C while a form field was being typed."""


class PipedLines:
    """Lines of a pipe (or of a terminal without the line editor), read in a daemon thread.

    One read is outstanding at a time: a wait that was given up (Ctrl-C) leaves its read
    running, and the next call picks up that line instead of racing a second thread for it.
    """

    def __init__(self, stdin: TextIO) -> None:
        self.stdin = stdin
        self._pending: asyncio.Future[str] | None = None

    async def readline(self) -> str:
        """The next line with its newline; "" at end of input."""
        if self._pending is None:
            self._pending = _in_daemon_thread(self.stdin.readline)
        line = await asyncio.shield(self._pending)
        self._pending = None
        return line

    def looks_cut(self, line: str) -> bool:
        """Whether a terminal's line limit probably cut this line."""
        try:
            tty = self.stdin.isatty()
        except (ValueError, OSError):
            return False
        return tty and len(line.rstrip("\r\n")) >= TTY_LINE_LIMIT


def _in_daemon_thread(read: Callable[[], str]) -> asyncio.Future[str]:
    """Run a blocking read in a daemon thread (asyncio.to_thread's pool is joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(result: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or "")

    def work() -> None:
        try:
            result = read()
        except Exception as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="console-stdin", daemon=True).start()
    return future


def _prompt_keys() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        buffer = event.app.current_buffer
        if buffer.text:
            buffer.reset()  # like a shell: drop what was typed, stay at the prompt
        else:
            event.app.exit(exception=PromptInterrupted())

    return keys


class TerminalLines:
    """prompt_toolkit's line editor: history (this session only), arrows, no length limit.

    History stays in memory: a line can hold a key typed by mistake, which must not land in a
    file. `toolbar` gives the lines shown under the prompt (the progress bars), or none.
    """

    def __init__(self, toolbar: Callable[[], list[str]] | None = None) -> None:
        self.toolbar = toolbar
        self.session: PromptSession[str] = PromptSession(
            history=InMemoryHistory(), key_bindings=_prompt_keys()
        )

    def _toolbar_text(self) -> FormattedText:
        lines = self.toolbar() if self.toolbar is not None else []
        return FormattedText([("", "\n".join(lines))])

    def refresh(self) -> None:
        """Show or hide the toolbar now (a progress bar began or ended)."""
        shown = bool(self.toolbar and self.toolbar())
        self.session.bottom_toolbar = self._toolbar_text if shown else None
        app = self.session.app
        if app.is_running:
            app.invalidate()

    async def readline(self) -> str:
        """The next line with a newline; "" on Ctrl-D; PromptInterrupted on Ctrl-C when empty."""
        self.refresh()
        try:
            text = await self.session.prompt_async(
                PROMPT,
                handle_sigint=False,  # the adapter owns SIGINT; raw mode makes Ctrl-C a key
                refresh_interval=0.5,  # the progress bars' elapsed time moves
            )
        except EOFError:
            return ""
        return text + "\n"

    async def read_field(self, prompt: str, secret: bool) -> str:
        """One form field, masked when secret; a fresh session so no value enters a history."""
        session: PromptSession[str] = PromptSession(history=InMemoryHistory())
        try:
            return await session.prompt_async(prompt, is_password=secret, handle_sigint=False)
        except KeyboardInterrupt:
            raise FieldCancelled from None
